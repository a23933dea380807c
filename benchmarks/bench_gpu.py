"""The engine on a GPU with the JAX backend: step time against the two-forward floor, float32 against mixed
precision, peak GPU memory by size (whole image and tiled, up to 3840×2160), and the Quickstart job's time.

Needs keras, jax (with its CUDA plugin on a GPU), numpy, pillow, h5py, tqdm and the VGG19 weight file, no
TensorFlow: it runs on a machine that has JAX but no TensorFlow. Each measurement runs in a fresh process
(XLA_PYTHON_CLIENT_PREALLOCATE=false, so the allocator's peak is that measurement's); on a CPU the peak is the
process's resident memory instead. ``--smoke`` runs every case once, tiny, in one process (its peaks are then
the process's so far: only that each case runs is checked).

    KERAS_HOME=... python benchmarks/bench_gpu.py                 # the full set: writes results/gpu_<device>.json
    python benchmarks/bench_gpu.py --smoke --out /tmp/x.json      # tiny sizes, a minute on a CPU (tests run this)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONTENT = ROOT / "data" / "content" / "tubingen_neckarfront.jpg"
STYLE = ROOT / "data" / "style" / "vangogh_starry_night.jpg"

FULL = {
    "step_sizes": [512, 1024, 2048],
    "precision_size": 512,
    "precision_steps": 200,
    "memory_sizes": [512, 1024, 2048, "3840x2160"],
    "tile_size": 1024,
    "timed_steps": 10,
}
# CI runs this: one case of each kind, since each is a process paying JAX's start-up and compilation; the memory
# case is given as W×H so that form of size stays tested
SMOKE = {
    "step_sizes": [64],
    "precision_size": 64,
    "precision_steps": 4,
    "memory_sizes": ["128x96"],
    "tile_size": 192,
    "timed_steps": 2,
}


# --- measurements, each in its own process ------------------------------------------------------------------
def _peak_bytes() -> int:
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform == "gpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # CPU: the process's peak resident memory


def _images(size):
    from nst_lib.images import load_image, resize

    if isinstance(size, str):  # "WxH": the content cropped to that aspect, then resized
        w, h = (int(v) for v in size.split("x"))
        content = load_image(CONTENT)
        ch = round(content.shape[1] * h / w)
        top = (content.shape[0] - ch) // 2
        content = resize(content[max(0, top) : max(0, top) + ch], (h, w))
        return content, load_image(STYLE, max(h, w))
    return load_image(CONTENT, size), load_image(STYLE, size)


def measure_step(size, steps: int, precision: str = "float32", weights="imagenet") -> dict:
    import numpy as np
    from keras import ops

    from nst_lib import StyleConfig, backend
    from nst_lib.objective import Objective, extractor_for
    from nst_lib.optim import make_optimizer

    content, style = _images(size)
    config = StyleConfig(size=max(content.shape[:2]), weights=weights, precision=precision, tile_size=0)
    extractor = extractor_for(config)
    problem = Objective(extractor, config, content, [style])
    x = ops.convert_to_tensor(content[None])

    def two_forward(x, params):
        return [*extractor.apply(params, x).values(), *extractor.apply(params, x + 1.0).values()]

    floor_fn = backend.compile_forward(two_forward)
    optimizer = make_optimizer(config, noise=extractor.loss_noise)  # as the engine builds it
    state = {"x": content.reshape(-1).astype(np.float32)}

    def step():
        state["x"] = optimizer.step(state["x"], problem)

    def floor():
        [backend.to_numpy(t) for t in floor_fn(x, extractor.params)]

    for _ in range(2):
        step()
        floor()
    floors, steps_t = [], []
    for _ in range(steps):
        t = time.perf_counter()
        floor()
        floors.append(time.perf_counter() - t)
        t = time.perf_counter()
        step()
        steps_t.append(time.perf_counter() - t)
    floors.sort()
    steps_t.sort()
    f, s = floors[len(floors) // 2], steps_t[len(steps_t) // 2]
    return {
        "size": size,
        "image_hw": list(content.shape[:2]),
        "precision": precision,
        "floor_two_forward_s": round(f, 4),
        "step_s": round(s, 4),
        "ratio": round(s / f, 3),
        "peak_bytes": _peak_bytes(),
    }


def measure_precision(size, steps: int, precision: str, weights="imagenet") -> dict:
    """``steps`` L-BFGS steps at one scale (``pyramid_levels=1``: the default schedule would run 800 steps over three
    scales); the time per step from the run's own step clock after its first step (which traces and compiles),
    the peak before anything else runs, and the output re-scored in float32 so that the precisions' losses
    compare."""
    from nst_lib import StyleConfig, evaluate, stylize

    config = StyleConfig(
        size=size, steps=steps, pyramid_levels=1, precision=precision, weights=weights, snapshot_every=0, tile_size=0
    )
    result = stylize(CONTENT, STYLE, config, out=None, progress=False)
    peak = _peak_bytes()
    rows = result.history
    per_step = (rows[-1]["time_s"] - rows[0]["time_s"]) / max(1, len(rows) - 1)
    return {
        "size": size,
        "precision": precision,
        "steps": len(rows),
        "seconds": round(result.timings["optimise"], 2),
        "seconds_per_step_after_the_first": round(per_step, 4),
        "own_precision_final_loss": rows[-1]["total"],
        "float32_loss_of_output": evaluate(result.image, CONTENT, STYLE, config.replace(precision="float32")).total,
        "peak_bytes": peak,
    }


def measure_memory(size, tiled: bool, tile_size: int, weights="imagenet") -> dict:
    from nst_lib import StyleConfig
    from nst_lib.objective import Objective, extractor_for

    content, style = _images(size)
    config = StyleConfig(size=max(content.shape[:2]), weights=weights, tile_size=tile_size if tiled else 0)
    extractor = extractor_for(config)
    problem = Objective(extractor, config, content, [style], tile_size if tiled else 0)
    t = time.perf_counter()
    evaluation = problem.evaluate(content)
    return {
        "size": size,
        "image_hw": list(content.shape[:2]),
        "tiled": tiled,
        "tiles": evaluation.tiles,
        "seconds_first_evaluation": round(time.perf_counter() - t, 2),
        "peak_bytes": _peak_bytes(),
    }


def measure_quickstart(weights="imagenet", **overrides) -> dict:
    from nst_lib import StyleConfig, stylize

    t = time.perf_counter()
    result = stylize(CONTENT, STYLE, StyleConfig(weights=weights, **overrides), out=None, progress=False)
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "steps": len(result.history),
        "final_loss": result.history[-1]["total"],
        "peak_bytes": _peak_bytes(),
    }


# --- the driver ------------------------------------------------------------------------------------------------
MEASURES = {
    "step": measure_step,
    "precision": measure_precision,
    "memory": measure_memory,
    "quickstart": measure_quickstart,
}


RESULT = "nst-result "  # marks the child's result lines among anything else a library prints


def _run_jobs(jobs: list) -> list[dict]:
    """Run ``[kind, kwargs]`` jobs in one fresh JAX process; one result a job, ``{"error": ...}`` where it failed."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(jobs)], env=env, capture_output=True, text=True
    )
    results = []
    for line in out.stdout.splitlines():
        if line.startswith(RESULT):
            try:
                results.append(json.loads(line[len(RESULT) :]))
            except json.JSONDecodeError:  # cut off by the process's death
                break
    # a process that died (out of memory, say) leaves the jobs after its last printed result without one
    last = (out.stderr.strip().splitlines() or ["no message"])[-1]
    died = f"the process died (exit status {out.returncode}) before this case ended: {last}"
    missing = [
        {"error": died if i == 0 else "not run: the process died", **kwargs}
        for i, (_, kwargs) in enumerate(jobs[len(results) :])
    ]
    return results + missing


def _child(jobs: list) -> None:
    for kind, kwargs in jobs:
        try:
            result = (_versions if kind == "versions" else MEASURES[kind])(**kwargs)
            result["tensorflow_imported"] = "tensorflow" in sys.modules  # the engine must run without it
            line = json.dumps(result, default=float)
        except Exception as e:  # reported in the results file, next to the case that failed
            line = json.dumps({"error": f"{type(e).__name__}: {e}", **kwargs, "tensorflow_imported": None})
        print(RESULT + line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and steps, random weights (a CPU test)")
    parser.add_argument("--out", type=Path, default=None, help="results file (default: results/gpu_<device>.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    plan = SMOKE if args.smoke else FULL
    weights = {"weights": None} if args.smoke else {}
    jobs = [["versions", {}]]
    jobs += [["step", {"size": size, "steps": plan["timed_steps"], **weights}] for size in plan["step_sizes"]]
    for precision in ("float32", "mixed"):
        kw = {"size": plan["precision_size"], "steps": plan["precision_steps"], "precision": precision, **weights}
        jobs.append(["precision", kw])
    for size in plan["memory_sizes"]:
        for tiled in (False, True):
            jobs.append(["memory", {"size": size, "tiled": tiled, "tile_size": plan["tile_size"], **weights}])
    quick = {"size": 64, "steps": 3, "pyramid_levels": 1, "snapshot_every": 0} if args.smoke else {}
    jobs.append(["quickstart", {**quick, **weights}])
    # each measurement in its own process, so that a peak is that measurement's; the smoke run (tiny sizes, where
    # only that every case runs is checked) runs them all in one process, paying JAX's start-up once
    if args.smoke:
        results = _run_jobs(jobs)
    else:
        results = []
        for job in jobs:
            results += _run_jobs([job])
            print(results[-1], flush=True)
    info, rows = results[0], {"step": [], "precision": [], "memory": []}
    for (kind, _), result in zip(jobs[1:], results[1:]):
        if kind == "quickstart":
            rows["quickstart"] = result
        else:
            rows[kind].append(result)
    payload = {
        "benchmark": "gpu",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "smoke": args.smoke,
        "machine": info,
        "plan": plan,
        **rows,
    }
    device = info.get("device", "unknown").replace("GPU: ", "").replace("CPU: ", "cpu-")
    path = args.out or RESULTS / f"gpu_{''.join(c if c.isalnum() else '_' for c in device).strip('_').lower()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


def _versions() -> dict:
    from nst_lib import backend

    return {"device": backend.device_name(), "platform": platform.platform(), **backend.versions()}


if __name__ == "__main__":
    main()
