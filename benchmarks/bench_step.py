"""Time per optimisation step against the floor measured in the same run.

floor = two forward passes of the same truncated extractor on the same image (about what one
forward + backward pass costs); also reported: a plain forward + backward of the same network with a
trivial loss (the network's own gradient cost); step = one L-BFGS step of the engine (loss, gradient, line search,
two-loop recursion, host copies). Target on CPU: step / floor <= 1.2.

    python benchmarks/bench_step.py [--sizes 256 512] [--archs vgg16 vgg19 resnet50] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, STYLE, median_time, write  # noqa: E402


def bench(arch: str, size: int, steps: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from nst_lib import StyleConfig
    from nst_lib.features import get_extractor
    from nst_lib.images import load_image
    from nst_lib.optim import make_optimizer
    from nst_lib.transfer import _Problem, resolve_layers

    # random weights: the timing of a network does not depend on its weight values
    config = StyleConfig(arch=arch, weights=None, size=size)
    content_layers, style_layers = resolve_layers(config)
    extractor = get_extractor(arch, content_layers + style_layers, None)
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    problem = _Problem(extractor, config, content, [style])
    x_tf = tf.constant(content[None])

    @tf.function
    def two_forward(x):
        a = extractor(x)
        b = extractor(x + 1.0)
        return [v for v in a.values()] + [v for v in b.values()]

    @tf.function
    def forward_backward(x):  # the network's own gradient cost, with a trivial loss and no Grams
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            loss = tf.add_n([tf.reduce_sum(v) for v in extractor(x).values()])
        return tape.gradient(loss, x)

    optimizer = make_optimizer(config)
    state = {"x": content.reshape(-1).astype(np.float32)}

    def one_step():
        state["x"] = optimizer.step(state["x"], problem)

    def floor_pass():
        [t.numpy() for t in two_forward(x_tf)]

    def fwd_bwd_pass():
        forward_backward(x_tf).numpy()

    for _ in range(3):  # trace the functions and get past L-BFGS' first, scaled-gradient steps
        one_step()
        floor_pass()
        fwd_bwd_pass()
    evals0 = optimizer.evaluations
    floors, steps_t, fbs = [], [], []
    for _ in range(steps):  # interleaved, so machine drift hits all alike
        floors.append(median_time(floor_pass, repeats=1, warmup=0))
        steps_t.append(median_time(one_step, repeats=1, warmup=0))
        fbs.append(median_time(fwd_bwd_pass, repeats=1, warmup=0))
    floor, step, fwd_bwd = statistics.median(floors), statistics.median(steps_t), statistics.median(fbs)
    evals_per_step = (optimizer.evaluations - evals0) / steps
    row = {
        "arch": arch,
        "size": size,
        "image_hw": list(content.shape[:2]),
        "floor_two_forward_s": round(floor, 4),
        "step_s": round(step, 4),
        "ratio": round(step / floor, 3),
        "plain_forward_backward_s": round(fwd_bwd, 4),
        "plain_forward_backward_over_floor": round(fwd_bwd / floor, 3),
        "evaluations_per_step": round(evals_per_step, 2),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--archs", nargs="+", default=["vgg16", "vgg19", "resnet50"])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    rows = [bench(a, s, args.steps) for a in args.archs for s in args.sizes]
    write("step_time", {"target": "step / floor <= 1.2 on CPU", "optimizer": "lbfgs", "rows": rows})


if __name__ == "__main__":
    main()
