"""The Quickstart's job as a new user runs it: `nst stylize` on the bundled Tübingen photo and The Starry Night with
the defaults, in a fresh process. Records the run's wall time, its schedule and its peak memory (from the run
folder's record), and with --figure copies the output to the README's figure.

    python benchmarks/bench_quickstart.py [--figure]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, ROOT, STYLE, run_nst, write  # noqa: E402

FIGURE = ROOT / "results" / "figures" / "quickstart_tubingen_starry_night.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", action="store_true", help="copy the output to the README's Quickstart figure")
    args = parser.parse_args()
    content, style = (str(path.relative_to(ROOT)) for path in (CONTENT, STYLE))
    wall, record = run_nst([content, style], keep_output=FIGURE if args.figure else None)
    config = record["config"]
    write(
        "quickstart",
        {
            "command": "nst stylize data/content/tubingen_neckarfront.jpg data/style/vangogh_starry_night.jpg",
            "wall_seconds_with_start_up": round(wall, 1),
            "run_seconds": record["timings"]["total"],
            "timings": record["timings"],
            "schedule": record.get("schedule"),
            "final_scale_steps": record.get("steps_done"),  # the record counts steps per scale
            "total_steps": sum(s["steps"] for s in record.get("schedule") or []),
            "peak_memory_mb": record.get("peak_memory_mb"),
            "settings": {k: config[k] for k in ("arch", "weights", "size", "steps", "optimizer", "pyramid_levels")},
            "device": record.get("device"),
        },
    )


if __name__ == "__main__":
    main()
