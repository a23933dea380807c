"""L-BFGS against Adam with the TF tutorial's optimiser settings (lr 0.02 on a 0..1 image, beta1 0.99,
epsilon 0.1, 1000 steps) at 256 px on VGG19: the wall time each needs to reach the loss Adam reaches at
step 1000. Both minimise the same loss (the default StyleConfig). Target: L-BFGS needs <= 1/3 of Adam's time.

    python benchmarks/bench_lbfgs_vs_adam.py [--size 256] [--adam-steps 1000]
"""

from __future__ import annotations

import argparse
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import CONTENT, STYLE, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--adam-steps", type=int, default=1000)
    args = parser.parse_args()

    from nst_lib import StyleConfig, stylize
    from nst_lib.features import weights_available
    from nst_lib.images import load_image

    weights = "imagenet" if weights_available("vgg19") else None
    tutorial = StyleConfig.preset("tf_tutorial")
    # one scale, both: the comparison is of the optimisers (the coarse-to-fine default has its own, bench_schedule adam)
    base = StyleConfig(weights=weights, size=args.size, snapshot_every=0, pyramid_levels=1)
    adam_cfg = base.replace(
        optimizer="adam",
        learning_rate=tutorial.learning_rate,
        adam_beta1=tutorial.adam_beta1,
        adam_epsilon=tutorial.adam_epsilon,
        steps=args.adam_steps,
    )
    content, style = load_image(CONTENT, args.size), load_image(STYLE, args.size)
    stylize(content, style, base.replace(steps=2), out=None, progress=False)  # warm-up: build, trace

    adam = stylize(content, style, adam_cfg, out=None, progress=False)
    target = adam.history[-1]["total"]
    adam_time = adam.history[-1]["time_s"]

    lbfgs = stylize(
        content,
        style,
        base.replace(steps=args.adam_steps),
        out=None,
        progress=False,
        callbacks=[lambda info: info.losses["total"] <= target],
    )
    reached = lbfgs.history[-1]["total"] <= target
    lbfgs_time = lbfgs.history[-1]["time_s"]
    row = {
        "size": args.size,
        "weights": weights or "random",
        "adam": {
            "steps": args.adam_steps,
            "final_loss": target,
            "time_s": round(adam_time, 2),
            "settings": "lr 0.02*255, beta1 0.99, epsilon 0.1/255 (TF tutorial on the 0-255 scale)",
        },
        "lbfgs": {
            "steps_to_reach": len(lbfgs.history),
            "reached": reached,
            "time_s": round(lbfgs_time, 2),
            "final_loss": lbfgs.history[-1]["total"],
        },
        "time_ratio_lbfgs_over_adam": round(lbfgs_time / adam_time, 3),
        "target": "<= 0.333",
    }
    print(row)
    write("lbfgs_vs_adam", row)


if __name__ == "__main__":
    main()
