"""Shared helpers for the benchmarks: timing, environment description, results files."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONTENT = ROOT / "data" / "content" / "tubingen_neckarfront.jpg"
STYLE = ROOT / "data" / "style" / "vangogh_starry_night.jpg"


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> dict:
    """``backend.machine()`` (the device by its CPU model, cores, bfloat16 instructions, versions) less Python's
    version, with TensorFlow's thread count (whichever Keras backend runs)."""
    from nst_lib import backend

    out = {k: v for k, v in backend.machine().items() if k != "python"}
    if backend.name() == "tensorflow":
        import tensorflow as tf

        out["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return out


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def run_nst(arguments: list[str], keep_output: Path | None = None) -> tuple[float, dict]:
    """``nst stylize ARGUMENTS`` as a user runs it, in a fresh process with its run folder in a temporary directory:
    the wall time (start-up included) and the run's record (its config.json); ``keep_output`` gets output.png."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run(["nst", "stylize", *arguments, "--out", out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        (run_dir,) = [p for p in Path(out).iterdir() if (p / "config.json").is_file()]
        if keep_output is not None:
            shutil.copyfile(run_dir / "output.png", keep_output)
        return wall, json.loads((run_dir / "config.json").read_text())


def report_rows(rows: list[dict]) -> None:
    """A per-backend worker's result: its rows and versions as the last line of stdout (``run_per_backend``)."""
    from nst_lib import backend

    print(json.dumps({"versions": backend.versions(), "rows": rows}))


def run_per_backend(script: str, worker_args: list[str], backends: list[str]) -> tuple[list[dict], dict]:
    """Run ``script --worker worker_args`` once per Keras backend, each in its own process (KERAS_BACKEND is read
    when Keras is imported); the rows of all of them, and each backend's versions."""
    rows, versions = [], {}
    for name in backends:
        cmd = [sys.executable, script, "--worker", *worker_args]
        out = subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": name}, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{Path(script).stem}: the {name} run failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows += result["rows"]
        versions[name] = result["versions"]
    return rows, versions
