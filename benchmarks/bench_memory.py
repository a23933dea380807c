"""Peak memory and time by image size, the whole image against tiles; and the cost of tiling at 1024 px.

    python benchmarks/bench_memory.py [--sizes 512 1024 2048 3840x2160] [--steps 2]
                                      [--ratio-tiles 512,768] [--repeats 5]

Each measurement runs in a fresh process and reports its peak resident set size (VGG19, the default losses and
layers, L-BFGS, one scale): ``untiled`` (tile_size=0) while the whole image's activations fit in RAM, ``tiled``
with the tiles the default memory budget chooses (a quarter of RAM here; none where the whole image fits it).
``tiled_over_untiled_at_1024`` times the whole-image and the tiled loss-and-gradient evaluation
interleaved in one process at 1024 px. Also fits the activations' memory per pixel, which calibrates
``features.ACTIVATION_OVERHEAD``. Results: benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, STYLE, write  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
mode, size, steps, tile = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
content_path, style_path = sys.argv[5], sys.argv[6]
from nst_lib import StyleConfig, stylize
from nst_lib.features import weights_available
from nst_lib.images import load_image, resize
from nst_lib.objective import extractor_for, tile_size_for
weights = "imagenet" if weights_available("vgg19") else None

def content_at(size):
    if "x" in size:  # WxH: the content centre-cropped to that aspect, then resized
        w, h = (int(v) for v in size.split("x"))
        c = load_image(content_path)
        ch = round(c.shape[1] * h / w)
        top = max(0, (c.shape[0] - ch) // 2)
        return resize(c[top : top + ch], (h, w))
    return load_image(content_path, int(size))

def peak_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

if mode == "base":
    extractor_for(StyleConfig(weights=weights))
    print(json.dumps({"peak_rss_mb": peak_mb()}))
elif mode == "stylize":
    content = content_at(size)
    config = StyleConfig(weights=weights, size=max(content.shape[:2]), steps=steps, snapshot_every=0,
                         pyramid_levels=1, tile_size=None if tile < 0 else tile, max_pixels=4096 * 4096)
    chosen = tile_size_for(config, extractor_for(config), *content.shape[:2])
    t = time.perf_counter()
    r = stylize(content, style_path, config, out=None, progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({"peak_rss_mb": peak_mb(), "tile_size": chosen, "seconds": round(seconds, 1),
                      "seconds_per_step": round(r.timings["per_step"], 3), "image_hw": list(content.shape[:2])}))
"""

RATIO = r"""
import json, os, statistics, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
size, repeats, tiles = int(sys.argv[1]), int(sys.argv[2]), [int(t) for t in sys.argv[3].split(",")]
from nst_lib import StyleConfig
from nst_lib.features import weights_available
from nst_lib.images import load_image
from nst_lib.objective import Objective, extractor_for
config = StyleConfig(weights="imagenet" if weights_available("vgg19") else None, size=size)
content, style = load_image(sys.argv[4], size), load_image(sys.argv[5], size)
extractor = extractor_for(config)
image = np.clip(content + np.random.default_rng(0).normal(0, 20, content.shape), 0, 255).astype(np.float32)
objectives = {0: Objective(extractor, config, content, [style], 0)}
objectives.update({t: Objective(extractor, config, content, [style], t) for t in tiles})
for o in objectives.values():
    o.evaluate(image)  # compile
times = {t: [] for t in objectives}
for _ in range(repeats):  # interleaved
    for t, o in objectives.items():
        t0 = time.perf_counter()
        o.evaluate(image)
        times[t].append(time.perf_counter() - t0)
whole = statistics.median(times[0])
rows = []
for t, v in times.items():
    n = len(objectives[t].tiles) if t else 1
    m = statistics.median(v)
    rows.append({"tile_size": t, "tiles": n, "seconds": round(m, 3), "over_untiled": round(m / whole, 3)})
print(json.dumps(rows))
"""


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def pixels(size: str) -> int:
    from nst_lib.images import load_image

    if "x" in size:
        w, h = (int(v) for v in size.split("x"))
        return w * h
    return int(__import__("numpy").prod(load_image(CONTENT, int(size)).shape[:2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512", "1024", "2048", "3840x2160"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--ratio-tiles", default="512,768", help="tile sizes timed against the whole image at 1024 px")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from nst_lib import StyleConfig, backend
    from nst_lib.objective import extractor_for

    ram_mb = backend.ram_bytes() / 2**20
    extractor = extractor_for(StyleConfig(weights=None))
    estimate = extractor.bytes_per_pixel()
    base = child("base", "0", "0", "0", str(CONTENT), str(STYLE))["peak_rss_mb"]
    rows = []
    for size in args.sizes:
        px = pixels(size)
        for tiled in (False, True):
            if not tiled and estimate * px / 2**20 > 0.8 * ram_mb:
                rows.append({"size": size, "pixels": px, "tiled": False, "skipped": "the whole image does not fit"})
                continue
            result = child("stylize", size, str(args.steps), "-1" if tiled else "0", str(CONTENT), str(STYLE))
            rows.append({"size": size, "pixels": px, "tiled": tiled, **result})
            print(rows[-1], flush=True)
    # activations per pixel: the slope of the whole-image peaks over pixels (above the base process)
    whole = [r for r in rows if not r["tiled"] and "peak_rss_mb" in r]
    slope = None
    if len(whole) >= 2:
        xs, ys = [r["pixels"] for r in whole], [r["peak_rss_mb"] * 2**20 for r in whole]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    out = subprocess.run(
        [sys.executable, "-c", RATIO, "1024", str(args.repeats), args.ratio_tiles, str(CONTENT), str(STYLE)],
        capture_output=True,
        text=True,
    )
    ratio = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}
    print(ratio, flush=True)
    write(
        "memory",
        {
            "base_rss_mb_extractor_only": base,
            "settings": {
                "arch": "vgg19",
                "optimizer": "lbfgs",
                "steps": args.steps,
                "tiled_over_untiled_repeats": args.repeats,
                "schedule": "one scale",
                "budget": "default: a quarter of RAM, at most 4 GB (evaluation 3/4, optimiser 1/4)",
                "ram_mb": round(ram_mb),
            },
            "rows": rows,
            "measured_bytes_per_pixel": None if slope is None else round(slope),
            "estimated_bytes_per_pixel": round(estimate),
            "tiled_over_untiled_at_1024": ratio,
            "targets": {"4K peak RSS MB": "<= 6144", "tiled step / untiled step at 1024 px": "<= 2"},
        },
    )


if __name__ == "__main__":
    main()
