"""Training speed of the style VAE's stages (seed 002) at 64 px, batch 16, in images per second, and each
stage's step time over the time of the perceptual network alone.

A style stage cannot cost less than running its frozen VGG16 trunk forward on the content, the output and
the style batch and backward through it once (for the output); ``vgg_floor_s`` times exactly that, and
``step_over_vgg_floor`` says how much the trainable networks and the fixpoint loss's extra encoder passes
add. Each stage trains through ``model.fit`` on the bundled tiny sets; after a warm-up epoch (tracing),
rounds of ``--steps`` steps alternate between stages, the floor timed in each round too, and the medians are
reported (with every round's times).
Writes benchmarks/results/style_vae_throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import median_time, write


def weights_name(source):
    """The weights file's name, not this machine's path to it (a results file is committed)."""
    return Path(source).name if isinstance(source, str) else source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    import tensorflow as tf

    from nst_lib.models import StyleVAE
    from nst_lib.models.data import ContentStyleData, tiny_paintings, tiny_photos

    n = args.batch * args.steps
    data = ContentStyleData(tiny_photos(n, args.size, seed=0), tiny_paintings(n, args.size, seed=1))
    common = dict(image_size=args.size, batch_size=args.batch, perceptual_weights="auto")
    variants = {
        "autoencoder": StyleVAE(stage="autoencoder", **common),
        "style": StyleVAE(stage="style", **common),
        "variational": StyleVAE(stage="variational", **common),
        "variational_triplet": StyleVAE(stage="variational", triplet_weight=1.0, **common),
    }

    def epoch(model) -> float:
        t = time.perf_counter()
        model.fit(data.dataset(args.batch, seed=0), epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
        return time.perf_counter() - t

    vgg = variants["style"].perceptual
    x = tf.random.uniform((args.batch, args.size, args.size, 3), 0, 255)

    @tf.function
    def vgg_floor(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = vgg(x)
            loss = tf.add_n([tf.reduce_mean(v) for v in out.values()])
        vgg(x)  # content
        vgg(x)  # style
        return tape.gradient(loss, x)

    warmup = {name: round(epoch(m), 2) for name, m in variants.items()}
    vgg_floor(x).numpy()  # traced before the rounds
    times: dict[str, list[float]] = {name: [] for name in variants}
    floors = []  # the floor in each round, beside the stages it is the floor of (a shared machine's load moves both)
    for r in range(args.rounds):
        for name, model in variants.items():
            times[name].append(epoch(model))
        floors.append(median_time(lambda: vgg_floor(x).numpy(), repeats=3, warmup=1))
        stages = ", ".join(f"{k} {t[-1]:.2f} s" for k, t in times.items())
        print(f"round {r + 1}: {stages}, floor {floors[-1]:.3f} s", flush=True)
    floor = statistics.median(floors)
    results = {}
    for name, ts in times.items():
        step = statistics.median(ts) / args.steps
        results[name] = {
            "images_per_s": round(args.batch / step, 1),
            "step_s": round(step, 4),
            "step_over_vgg_floor": round(step / floor, 2),
            "warmup_epoch_s": warmup[name],
            "rounds_s": [round(t, 3) for t in ts],  # each round's time, of which the median is quoted
        }
        print(
            f"{name:20s} {results[name]['images_per_s']:7.1f} images/s  {step:.3f} s/step  "
            f"{results[name]['step_over_vgg_floor']:.2f}× the VGG floor"
        )
    write(
        "style_vae_throughput",
        {
            "settings": {
                "batch": args.batch,
                "size": args.size,
                "steps_per_round": args.steps,
                "rounds": args.rounds,
                "perceptual_weights": weights_name(vgg.weights_source),
            },
            "vgg_floor_s": round(floor, 4),
            "vgg_floor_rounds_s": [round(f, 4) for f in floors],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
