"""The same 8-cell sweep in-process and on a local Ray: cells per minute, and what Ray adds per cell.

Each variant runs in a fresh process and times one ``sweep(...)`` call on an empty folder: in-process
(``executor="local"``, TensorFlow on every core), and on a local Ray (started by the script, as ``sweep`` would, and
timed on its own) with 1 worker (1 CPU), 1 worker given 2 CPUs (the in-process run's threads: the difference is
Ray's overhead) and 2 workers (1 CPU each, two cells at a time). Ray's time includes starting the local Ray and, in
every worker, TensorFlow and the network.
Variants alternate over ``--repeats`` rounds; medians are reported. A variant's ``workers`` is the local Ray's
CPU count (``ray.init(num_cpus=...)``): 2 for the 1-worker variant given 2 CPUs.

    python benchmarks/bench_ray_sweep.py [--size 128] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, ROOT, STYLE, write  # noqa: E402

CELLS = 8
VARIANTS = {
    "in_process": {"executor": "local"},
    "ray_1_worker": {"executor": "ray", "workers": 1},
    "ray_1_worker_2_cpus": {"executor": "ray", "workers": 2, "resources": {"CPU": 2}},
    "ray_2_workers": {"executor": "ray", "workers": 2},
}


def one_run(variant: str, size: int, steps: int, out: str) -> dict:
    """In a fresh process: the sweep's wall time and each cell's own time on its worker (from its record)."""
    from nst_lib import StyleConfig
    from nst_lib.workbench.sweeps import sweep

    base = StyleConfig(weights=None, size=size, steps=steps, snapshot_every=10)
    styles = {"starry": STYLE, "mandala": ROOT / "data" / "style" / "mandala.png"}
    vary = {"style_weight": [1e-4, 1e-3, 1e-2, 1e-1]}  # 1 content × 2 styles × 4 = 8 cells
    options = dict(VARIANTS[variant])
    start = 0.0
    if options["executor"] == "ray":  # started here, as sweep() would, to time the start-up on its own
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=options.pop("workers"), include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = sweep({"tubingen": CONTENT}, styles, base, vary, out=out, progress=False, **options)
    cells = time.perf_counter() - t0
    assert len(result) == CELLS and all(c.status == "completed" for c in result), [c.status for c in result]
    records = [json.loads((c.run_dir / "config.json").read_text()) for c in result]
    return {
        "start_s": start,
        "sweep_s": cells,
        "wall_s": start + cells,
        "cell_s": [r["timings"]["total"] for r in records],
        # in-process TensorFlow uses every core (its default); a Ray cell the threads of its CPUs
        "threads": [r.get("worker", {}).get("threads", os.cpu_count()) for r in records],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_run(args.variant, args.size, args.steps, args.out)))
        return

    import ray

    runs = {name: [] for name in VARIANTS}
    for r in range(args.repeats):
        for name in VARIANTS:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--variant", name, "--out", tmp]
                cmd += ["--size", str(args.size), "--steps", str(args.steps)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)

    rows = {}
    for name, measured in runs.items():
        wall = statistics.median(m["wall_s"] for m in measured)
        start = statistics.median(m["start_s"] for m in measured)
        swept = statistics.median(m["sweep_s"] for m in measured)
        cell = statistics.median(statistics.median(m["cell_s"]) for m in measured)
        work = statistics.median(sum(m["cell_s"]) for m in measured)
        rows[name] = {
            **{k: v for k, v in VARIANTS[name].items() if k != "executor"},
            "wall_s": round(wall, 2),
            "ray_start_s": round(start, 2),
            "sweep_s": round(swept, 2),
            "cells_per_minute": round(CELLS / wall * 60, 2),
            "cells_per_minute_after_start": round(CELLS / swept * 60, 2),
            "cell_s_median": round(cell, 2),  # a cell's own time (stylize's total) on its worker
            "cells_work_s": round(work, 2),
            "tf_threads_per_cell": measured[0]["threads"][0],
            "wall_s_rounds": [round(m["wall_s"], 2) for m in measured],
        }
    local = rows["in_process"]["wall_s"]
    same_threads = rows["ray_1_worker_2_cpus"]
    payload = {
        "settings": {
            "cells": CELLS,
            "grid": "1 content (tubingen) × 2 styles (starry, mandala) × style_weight 1e-4, 1e-3, 1e-2, 1e-1",
            "config": {"weights": None, "arch": "vgg19", "size": args.size, "steps": args.steps, "snapshot_every": 10},
            "repeats": args.repeats,
            "timed": "one sweep() call on an empty folder in a fresh process; for Ray, ray.init of a local Ray "
            "(ray_start_s) and then the call (sweep_s); wall_s is their sum",
        },
        "versions": {"ray": ray.__version__, "python": sys.version.split()[0]},
        "variants": rows,
        # what Ray adds, per cell, with the in-process run's thread count: local Ray start-up, worker processes
        # importing TensorFlow and building the network, scheduling, progress reports and result transfer
        "ray_overhead_per_cell_s": round((same_threads["wall_s"] - local) / CELLS, 2),
        # the same without starting the local Ray (a cluster that is already up)
        "ray_overhead_per_cell_after_start_s": round((same_threads["sweep_s"] - local) / CELLS, 2),
        "ray_2_workers_speedup_vs_in_process": round(local / rows["ray_2_workers"]["wall_s"], 3),
        "note": "2-core CPU shared with other work; rounds are listed to show the spread",
    }
    print(json.dumps(payload, indent=2))
    write("ray_sweep", payload)


if __name__ == "__main__":
    main()
