"""bfloat16 against float32 on this CPU: the network in bfloat16 (Keras 'mixed_bfloat16': weights kept in
float32, convolutions in bfloat16), the Grams and losses in float32 (``precision="bfloat16"``).

One process per backend, every size in it: the L-BFGS step time of both precisions (interleaved, medians), the
agreement of the loss terms and the pixel gradient with float32's on an image that is neither content nor style,
and (TensorFlow) the quality of a whole run: ``--run-steps`` L-BFGS steps from the content image at each precision, both
outputs then scored by the float32 loss. Under TensorFlow also the bfloat16 step with the weights read from
variables (``constant_weights=False``) against the weights compiled in as constants (timed so at every size), and
with ``--memory`` the resident memory each way costs. Decides ``precision="auto"`` on a CPU (bfloat16 where it
pays), ``objective.INLINE_WEIGHTS_MAX_PIXELS`` and the live preview's speed.

    python benchmarks/bench_precision.py [--sizes 256 512] [--steps 12] [--run-steps 100]
                                         [--backends tensorflow jax] [--name precision_cpu]
    python benchmarks/bench_precision.py --memory [--sizes 256 512]   # precision_memory.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, STYLE, median_time, report_rows, run_per_backend, write  # noqa: E402

# bfloat16 with the weights read from variables in every call (what tiles, larger images and multi-scale runs do)
VARIABLES = "bfloat16, weights as variables"


def bench(size: int, steps: int, run_steps: int) -> dict:
    import numpy as np

    from nst_lib import StyleConfig, backend, evaluate, stylize
    from nst_lib.features import weights_available
    from nst_lib.images import load_image
    from nst_lib.objective import Objective, extractor_for, inline_weights_pay
    from nst_lib.optim import make_optimizer

    weights = "imagenet" if weights_available("vgg19") else None
    base = StyleConfig(weights=weights, size=size, pyramid_levels=1, snapshot_every=0)
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    rng = np.random.default_rng(0)
    probe = np.clip(content + rng.normal(0, 40, content.shape), 0, 255).astype(np.float32)  # neither input

    problems, evals, state, optimizers = {}, {}, {}, {}
    for precision in ("float32", "bfloat16"):
        config = base.replace(precision=precision)
        # bfloat16 with its weights compiled in at every size (the rule's evidence: objective.INLINE_WEIGHTS_MAX_PIXELS)
        problems[precision] = Objective(extractor_for(config), config, content, [style], inline_weights=True)
        evals[precision] = problems[precision].evaluate(probe)
        optimizers[precision] = make_optimizer(config, noise=problems[precision].extractor.loss_noise)
        state[precision] = content.reshape(-1).astype(np.float32)
    if backend.name() == "tensorflow":  # the same bfloat16 network reading its weights from variables (before)
        from nst_lib.features import FeatureExtractor

        config, frozen = base.replace(precision="bfloat16"), problems["bfloat16"].extractor
        read = FeatureExtractor(
            frozen.arch,
            frozen.layers,
            frozen.weights,
            frozen.pooling,
            frozen.preprocessing,
            frozen.normalize,
            precision="bfloat16",
            seed=base.seed,
            constant_weights=False,
        )
        problems[VARIABLES] = Objective(read, config, content, [style])
        optimizers[VARIABLES] = make_optimizer(config, noise=read.loss_noise)
        state[VARIABLES] = content.reshape(-1).astype(np.float32)
    engine_weights = "constants" if inline_weights_pay(content.shape[0] * content.shape[1]) else "variables"
    ref, low = evals["float32"], evals["bfloat16"]
    cosine = float(np.sum(ref.grad * low.grad) / np.linalg.norm(ref.grad) / np.linalg.norm(low.grad))

    def stepper(precision):
        def one_step():
            state[precision] = optimizers[precision].step(state[precision], problems[precision])

        return one_step

    for _ in range(3):  # compile, and get past L-BFGS' first scaled-gradient steps
        for precision in problems:
            stepper(precision)()
    times = {p: [] for p in problems}
    for _ in range(steps):  # interleaved: machine drift hits both alike
        for precision in problems:
            times[precision].append(median_time(stepper(precision), repeats=1, warmup=0))
    step = {p: statistics.median(t) for p, t in times.items()}
    row = {
        "backend": backend.name(),
        "size": size,
        "image_hw": list(content.shape[:2]),
        "weights": weights or "random",
        "step_s": {p: round(s, 4) for p, s in step.items()},
        "float32_over_bfloat16_step": round(step["float32"] / step["bfloat16"], 2),
        # the bfloat16 step the engine runs here: weights as constants only where objective.inline_weights_pay
        **(
            {
                "engine_bfloat16_weights": engine_weights,
                "float32_over_engine_bfloat16_step": round(
                    step["float32"] / step["bfloat16" if engine_weights == "constants" else VARIABLES], 2
                ),
            }
            if VARIABLES in step
            else {}
        ),
        **(
            {"bfloat16_constant_over_variable_weights_step": round(step["bfloat16"] / step[VARIABLES], 3)}
            if VARIABLES in step
            else {}
        ),
        "agreement_on_a_noisy_photo": {
            "gradient_relative_l2": float(np.linalg.norm(low.grad - ref.grad) / np.linalg.norm(ref.grad)),
            "gradient_cosine": cosine,
            **{
                f"{term}_relative_error": abs(getattr(low, term) - getattr(ref, term)) / abs(getattr(ref, term))
                for term in ("total", "content", "style", "tv")
            },
        },
    }
    if run_steps and backend.name() == "tensorflow":
        finals = {}
        for precision in ("float32", "bfloat16"):
            result = stylize(
                CONTENT, STYLE, base.replace(precision=precision, steps=run_steps), out=None, progress=False
            )
            finals[precision] = {
                "seconds": round(result.timings["optimise"], 2),
                "float32_loss_of_output": evaluate(result.image, CONTENT, STYLE, base).total,
            }
        row["run"] = {
            "steps": run_steps,
            "init": "content",
            "by_precision": finals,
            "bfloat16_over_float32_loss": round(
                finals["bfloat16"]["float32_loss_of_output"] / finals["float32"]["float32_loss_of_output"], 4
            ),
            "float32_over_bfloat16_seconds": round(finals["float32"]["seconds"] / finals["bfloat16"]["seconds"], 2),
        }
    print(row, file=sys.stderr, flush=True)
    return row


def worker(args) -> None:
    report_rows([bench(s, args.steps, args.run_steps) for s in args.sizes])


def memory_case(size: int, inline: bool) -> dict:
    """Resident memory a bfloat16 whole-image objective adds, its weights compiled in or read (a fresh process)."""
    import numpy as np

    from nst_lib import StyleConfig
    from nst_lib.features import weights_available
    from nst_lib.images import load_image
    from nst_lib.objective import Objective, extractor_for

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    weights = "imagenet" if weights_available("vgg19") else None
    config = StyleConfig(weights=weights, size=size, pyramid_levels=1, precision="bfloat16", tile_size=0)
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    extractor = extractor_for(config)
    before = rss_mb()
    problem = Objective(extractor, config, content, [style], inline_weights=inline)
    for _ in range(3):
        problem.evaluate(content.astype(np.float32))
    after = rss_mb()
    return {
        "size": size,
        "inline_weights": problem.inline_weights,
        "weights": weights or "random",
        "rss_with_extractor_mb": round(before),
        "rss_after_3_evaluations_mb": round(after),
        "added_mb": round(after - before),
    }


def memory(sizes: list[int]) -> None:
    import json
    import subprocess

    os.environ["KERAS_BACKEND"] = "tensorflow"  # the cases' backend, before this process imports Keras
    from nst_lib import backend

    rows, by = [], {}
    for size in sizes:
        for inline in (True, False):
            cmd = [sys.executable, __file__, "--memory-case", str(size), str(int(inline))]
            out = subprocess.run(cmd, capture_output=True, text=True)  # inherits KERAS_BACKEND, set above
            if out.returncode:
                sys.exit(f"bench_precision: the memory case {size} px failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            assert rows[-1]["inline_weights"] == inline, rows[-1]
            by[size, inline] = rows[-1]["added_mb"]
            print(rows[-1], flush=True)
    write(
        "precision_memory",
        {
            "settings": {
                "arch": "vgg19",
                "precision": "bfloat16",
                "backend": "tensorflow",
                "measure": "resident set size after building the objective and 3 whole-image evaluations, minus "
                "that with the extractor built; one fresh process per case, one sample each",
            },
            "versions": backend.versions(),
            "rows": rows,
            "inline_over_variables_added_mb": {str(s): by[(s, True)] - by[(s, False)] for s in sizes},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=12, help="L-BFGS steps timed per precision")
    parser.add_argument("--run-steps", type=int, default=100, help="steps of the quality runs (0 = none)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--memory", action="store_true", help="only the memory the compiled-in weights cost")
    parser.add_argument("--name", default="precision_cpu", help="results file name (another CPU model's run)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-case", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.memory_case:
        import json

        print(json.dumps(memory_case(args.memory_case[0], bool(args.memory_case[1]))))
        return
    if args.memory:
        return memory(args.sizes)
    from nst_lib import backend

    worker_args = ["--steps", str(args.steps), "--run-steps", str(args.run_steps), "--sizes", *map(str, args.sizes)]
    rows, versions = run_per_backend(__file__, worker_args, args.backends)
    write(
        args.name,
        {
            "cpu_has_bf16_matmul": backend.cpu_has_bf16_matmul(),
            "settings": {
                "arch": "vgg19",
                "optimizer": "lbfgs",
                "steps_timed": args.steps,
                "load_average_1_5_15_min": os.getloadavg(),
            },
            "versions_by_backend": versions,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
