"""What fewer L-BFGS curvature pairs cost a scale's progress: the default schedule at a small size (384 px: 192 then
384 px, 10 steps a scale, 20 at the coarsest, as bench_4k's 4K run) with the history at 3, 5 and 20 pairs, and the
loss after each step of the last scale. A proxy for the 4K run, where the default CPU budget leaves room for 3 pairs
beside L-BFGS's working arrays (``transfer.lbfgs_pairs``) and a 16 GB GPU's for 13.

    python benchmarks/bench_lbfgs_pairs.py [--size 384] [--steps 10] [--pairs 3,5,20]   # lbfgs_pairs.json
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, STYLE, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=10, help="steps a scale (the coarsest runs twice as many)")
    parser.add_argument("--pairs", default="3,5,20")
    args = parser.parse_args()

    from nst_lib import StyleConfig, stylize
    from nst_lib.features import weights_available
    from nst_lib.images import load_image

    weights = "imagenet" if weights_available("vgg19") else None
    config = StyleConfig(weights=weights, size=args.size, steps=args.steps, snapshot_every=0)
    content, style = load_image(CONTENT, args.size), load_image(STYLE, args.size)
    rows = []
    for pairs in (int(p) for p in args.pairs.split(",")):
        result = stylize(content, style, config.replace(lbfgs_history=pairs), out=None, progress=False)
        last = [row["total"] for row in result.history if row["scale"] == args.size]
        rows.append({"pairs": pairs, "last_scale_losses": last, "final_loss": last[-1]})
        print(pairs, last[-1], flush=True)
    base = next((r for r in rows if r["pairs"] == 5), rows[0])["final_loss"]
    for row in rows:
        row["final_over_5_pairs"] = round(row["final_loss"] / base, 4)
    write(
        "lbfgs_pairs",
        {
            "settings": {
                "size": args.size,
                "steps_a_scale": args.steps,
                "weights": weights or "random",
                "content": CONTENT.name,
                "style": STYLE.name,
                "config": "StyleConfig defaults (VGG19, L-BFGS, the coarse-to-fine schedule) but the history",
            },
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
