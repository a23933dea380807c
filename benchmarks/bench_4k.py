"""The issue's 4K command end to end: `nst stylize` at 3840 × 2160 with the default config and schedule (fewer steps a
scale on a CPU) on the 16:9 crop of the bundled Tübingen photo × The Starry Night, in a fresh process. Records the
run's wall time by phase, its scales and tiles, and its peak resident memory (from the run folder's record) against
the 6 GiB target (what a 16 GB GPU leaves).

    python benchmarks/bench_4k.py [--steps 10]      # 4k_run.json; about 40 minutes on a 2-core CPU at 10 steps

Peak memory hardly depends on the step count (each scale's arrays and tiles are the same at any count), so a
10-step run checks the memory target in half the time of the 20 steps of notebook 10's 4K case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, STYLE, run_nst, write  # noqa: E402

TARGET_MB = 6144  # 6 GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps a scale (the coarsest runs twice as many)")
    args = parser.parse_args()
    from nst_lib.workbench.resolution import save_crop

    with tempfile.TemporaryDirectory() as inputs:  # 1024 × 576: exactly 3840 × 2160 at size 3840
        content = save_crop(CONTENT, Path(inputs) / "tubingen_16x9.png")
        wall, record = run_nst([str(content), str(STYLE), "--size", "3840", "--steps", str(args.steps)])
    peak = record["peak_memory_mb"]["host"]
    write(
        "4k_run",
        {
            "command": "nst stylize tubingen_16x9.png data/style/vangogh_starry_night.jpg --size 3840 "
            f"--steps {args.steps}",
            "content": "the 16:9 centre crop of data/content/tubingen_neckarfront.jpg (1024 × 576)",
            "wall_seconds_with_start_up": round(wall, 1),
            "timings": record["timings"],
            "schedule": record.get("schedule"),
            "total_steps": sum(s["steps"] for s in record.get("schedule") or []),
            "peak_memory_mb": record["peak_memory_mb"],
            "target_peak_mb": TARGET_MB,
            "within_target": peak <= TARGET_MB,
            "settings": {k: record["config"][k] for k in ("arch", "weights", "size", "steps", "precision")},
            "device": record.get("device"),
        },
    )


if __name__ == "__main__":
    main()
