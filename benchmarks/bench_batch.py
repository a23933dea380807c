"""Is optimising several sweep cells of equal size together, as one batch, faster than one after another?

Times one loss-and-gradient evaluation (the engine's whole per-step network work) for a batch of B images
against B evaluations of one image, at the same size, in one run. Sweeps batch cells only if this says so.

    python benchmarks/bench_batch.py [--size 256] [--batch 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, STYLE, median_time, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    import tensorflow as tf

    from nst_lib import StyleConfig
    from nst_lib.features import get_extractor
    from nst_lib.images import load_image
    from nst_lib.losses import StyleLoss, tv_loss
    from nst_lib.objective import resolve_layers

    config = StyleConfig(weights=None, size=args.size)
    content_layers, style_layers = resolve_layers(config)
    extractor = get_extractor("vgg19", content_layers + style_layers, None)
    content, style = load_image(CONTENT, args.size), load_image(STYLE, args.size)
    targets = extractor(content[None])
    style_loss = StyleLoss.from_style_features(list(style_layers), [extractor(style[None])], weight=1e-3)

    @tf.function  # one trace per batch size
    def value_and_grad(x):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            feats = extractor(x)
            loss = tf.reduce_mean(tf.square(feats[content_layers[0]] - targets[content_layers[0]]))
            # per-image Gram losses, summed over the batch
            loss += tf.add_n([style_loss({k: v[i : i + 1] for k, v in feats.items()}) for i in range(x.shape[0])])
            loss += tv_loss(x)
        return loss, tape.gradient(loss, x)

    single = tf.constant(content[None])
    batch = tf.constant(tf.repeat(content[None], args.batch, axis=0))
    one = lambda: value_and_grad(single)[1].numpy()  # noqa: E731
    many = lambda: value_and_grad(batch)[1].numpy()  # noqa: E731
    t_one, t_batch = [], []
    for _ in range(args.repeats):
        t_one.append(median_time(one, 1, warmup=1))
        t_batch.append(median_time(many, 1, warmup=1))
    sequential = args.batch * statistics.median(t_one)
    batched = statistics.median(t_batch)
    row = {
        "size": args.size,
        "batch": args.batch,
        "sequential_s": round(sequential, 4),
        "batched_s": round(batched, 4),
        "speedup": round(sequential / batched, 3),
        "decision": "batch sweep cells" if sequential / batched > 1.1 else "run cells one after another",
    }
    print(row)
    write("batch", row)


if __name__ == "__main__":
    main()
