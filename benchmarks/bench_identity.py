"""The identity test f(C, C) = C and the grayscale test f(C, g(C)) = g(C) of seed 003, from white noise as seed
003 ran them: SSIM (luminance) to C, or to g(C), after each number of steps, for the default VGG19 layers and
for a shallower content layer (block2_conv2). From the content image these tests would measure nothing but the
TV term's blur (the content and style losses are 0 at the first step).

    python benchmarks/bench_identity.py [--size 128] [--steps 100 300 500]
"""

from __future__ import annotations

import argparse
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 300, 500])
    args = parser.parse_args()

    from nst_lib import StyleConfig
    from nst_lib.features import weights_available
    from nst_lib.workbench.experiments import grayscale_test, identity_test

    weights = "imagenet" if weights_available("vgg19") else None
    rows = []
    for test, fn in (("identity", identity_test), ("grayscale", grayscale_test)):
        for content_layers in (None, ("block2_conv2",)):
            config = StyleConfig(
                weights=weights, size=args.size, steps=max(args.steps), init="noise", snapshot_every=0,
                content_layers=content_layers, pyramid_levels=1,
            )  # fmt: skip
            t0 = time.perf_counter()
            r = fn(CONTENT, config, checkpoints=args.steps, progress=False)
            row = {
                "test": test,
                "content_layers": content_layers or "VGG19 preset (block4_conv2)",
                "init": r["init"],
                "steps": r["steps"],
                "ssim_at_step": {str(k): round(v, 4) for k, v in sorted(r["ssim_at"].items())},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            if test == "grayscale":
                row.update(saturation=round(r["saturation"], 4), content_saturation=round(r["content_saturation"], 4))
            print(row)
            rows.append(row)
    write(
        "identity_from_noise",
        {
            "content": CONTENT.name,
            "size": args.size,
            "weights": weights or "random",
            "config": "StyleConfig defaults (L-BFGS, alpha 1, beta 1e-3, TV 1) from white noise, one scale",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
