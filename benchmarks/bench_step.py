"""Time per optimisation step against the floor measured in the same run, on each Keras backend.

floor = two forward passes of the same truncated extractor on the same image (about what one forward + backward
pass costs); also reported: a plain forward + backward of the same network with a trivial loss (the network's own
gradient cost); step = one L-BFGS step of the engine (loss, gradient, line search, two-loop recursion, host
copies). Target on CPU: step / floor <= 1.2. Each backend runs in its own process (KERAS_BACKEND is read when Keras
is imported); the rows of all of them land in one results file.

    python benchmarks/bench_step.py [--sizes 256 512] [--archs vgg16 vgg19 resnet50] [--steps 12]
                                    [--backends tensorflow jax]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, STYLE, median_time, report_rows, run_per_backend, write  # noqa: E402


def bench(arch: str, size: int, steps: int) -> dict:
    import numpy as np
    from keras import ops

    from nst_lib import StyleConfig, backend
    from nst_lib.images import load_image
    from nst_lib.objective import Objective, extractor_for
    from nst_lib.optim import make_optimizer

    # random weights: the timing of a network does not depend on its weight values
    config = StyleConfig(arch=arch, weights=None, size=size)
    extractor = extractor_for(config)
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    problem = Objective(extractor, config, content, [style])
    x = ops.convert_to_tensor(content[None])

    def two_forward(x, params):
        a, b = extractor.apply(params, x), extractor.apply(params, x + 1.0)
        return [*a.values(), *b.values()]

    def plain(x, params):  # the network's own gradient cost, with a trivial loss and no Grams
        loss = sum(ops.sum(v) for v in extractor.apply(params, x).values())
        return loss, loss

    floor_fn, plain_fn = backend.compile_forward(two_forward), backend.value_and_grad(plain)
    optimizer = make_optimizer(config)
    state = {"x": content.reshape(-1).astype(np.float32)}

    def one_step():
        state["x"] = optimizer.step(state["x"], problem)

    def floor_pass():
        [backend.to_numpy(t) for t in floor_fn(x, extractor.params)]

    def fwd_bwd_pass():
        backend.to_numpy(plain_fn(x, extractor.params)[1])

    for _ in range(3):  # compile the functions and get past L-BFGS' first, scaled-gradient steps
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
    row = {
        "backend": backend.name(),
        "arch": arch,
        "size": size,
        "image_hw": list(content.shape[:2]),
        "floor_two_forward_s": round(floor, 4),
        "step_s": round(step, 4),
        "ratio": round(step / floor, 3),
        "plain_forward_backward_s": round(fwd_bwd, 4),
        "plain_forward_backward_over_floor": round(fwd_bwd / floor, 3),
        "evaluations_per_step": round((optimizer.evaluations - evals0) / steps, 2),
    }
    print(row, file=sys.stderr, flush=True)
    return row


def worker(args) -> None:
    report_rows([bench(a, s, args.steps) for a in args.archs for s in args.sizes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--archs", nargs="+", default=["vgg16", "vgg19", "resnet50"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    worker_args = ["--steps", str(args.steps), "--sizes", *map(str, args.sizes), "--archs", *args.archs]
    rows, versions = run_per_backend(__file__, worker_args, args.backends)
    payload = {"target": "step / floor <= 1.2 on CPU", "optimizer": "lbfgs", "steps_timed": args.steps}
    write("step_time", {**payload, "versions_by_backend": versions, "rows": rows})


if __name__ == "__main__":
    main()
