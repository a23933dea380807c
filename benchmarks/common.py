"""Shared helpers for the benchmarks: timing, environment description, results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
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
    """The device, cores and library versions (whichever Keras backend runs)."""
    from nst_lib import backend

    out = {"device": backend.device_name(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    out.update({k: v for k, v in backend.versions().items() if k not in ("platform", "python")})
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
