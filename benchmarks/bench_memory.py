"""Peak memory by image size: each size runs in a fresh process (5 L-BFGS steps of the default VGG19
config) and reports its peak resident set size; a process that only builds the extractor gives the base.

    python benchmarks/bench_memory.py [--sizes 256 512 768 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, STYLE, write  # noqa: E402

CHILD = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
size, steps = int(sys.argv[1]), int(sys.argv[2])
from nst_lib import StyleConfig, stylize
from nst_lib.features import get_extractor, weights_available
from nst_lib.objective import resolve_layers
weights = "imagenet" if weights_available("vgg19") else None
config = StyleConfig(weights=weights, size=max(size, 16), steps=max(steps, 1), snapshot_every=0)
if steps == 0:
    get_extractor("vgg19", sum(resolve_layers(config), ()), weights)
else:
    stylize(sys.argv[3], sys.argv[4], config, out=None, progress=False)
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def measure(size: int, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), str(steps), str(CONTENT), str(STYLE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768, 1024])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    base = measure(0, 0)
    rows = []
    for size in args.sizes:
        peak = measure(size, args.steps)
        rows.append({"size": size, "peak_rss_mb": peak, "above_base_mb": round(peak - base, 1)})
        print(rows[-1], flush=True)
    write("memory", {"base_rss_mb_extractor_only": base, "optimizer": "lbfgs (history 20)", "rows": rows})


if __name__ == "__main__":
    main()
