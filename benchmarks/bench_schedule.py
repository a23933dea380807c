"""The coarse-to-fine schedule, measured: which ratio, first-scale steps and per-scale steps make the default.

    python benchmarks/bench_schedule.py identity   # f(C, C) from white noise on a held-out 128×192 photo: SSIM to C
    python benchmarks/bench_schedule.py quality    # 1024 px Tübingen × Starry Night: schedule vs single scale
    python benchmarks/bench_schedule.py adam       # 256 px: time to reach the TF tutorial Adam's 1000-step loss
    python benchmarks/bench_schedule.py average    # 256 px: would an average of the iterates beat the last one?
    python benchmarks/bench_schedule.py limit      # f(C, C): does the default loss single out C? (its loss at C)
    python benchmarks/bench_schedule.py warm       # f(C, C) from C itself at a coarser scale: does a scale add detail?

The runs that compare schedules (``quality``, ``adam``, ``identity``) record wall time and a machine-independent
cost: Σ over loss evaluations of the pixels evaluated (an evaluation's time grows with its pixels), so schedules
compare fairly even on a busy machine. Real VGG19 weights.
Results: benchmarks/results/schedule_<part>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONTENT, RESULTS, ROOT, STYLE, write  # noqa: E402

HELD_OUT = ROOT / "data" / "content" / "skimage_chelsea.png"  # not used to calibrate any default

# candidate schedules (StyleConfig overrides); "default" is whatever StyleConfig holds now
CANDIDATES = {
    "default": {},
    "single scale, 300 steps": dict(pyramid_levels=1, steps=300),
    "single scale, 1000 steps": dict(pyramid_levels=1, steps=1000),
    "×2 from 48 px, 200 + 100/scale": dict(pyramid_levels=None, pyramid_min_size=48, first_scale_steps=200, steps=100),
    "×2 from 48 px, 300/scale": dict(pyramid_levels=None, pyramid_min_size=48, first_scale_steps=300, steps=300),
    "×2 from 48 px, 100 + 50/scale": dict(pyramid_levels=None, pyramid_min_size=48, first_scale_steps=100, steps=50),
    "×2 from 64 px, 200 + 100/scale": dict(pyramid_levels=None, pyramid_min_size=64, first_scale_steps=200, steps=100),
    "×√2 from 48 px, 200 + 50/scale": dict(
        pyramid_levels=None, pyramid_min_size=48, pyramid_ratio=2**0.5, first_scale_steps=200, steps=50
    ),
    "×√2 from 64 px, 100 + 50/scale": dict(
        pyramid_levels=None, pyramid_min_size=64, pyramid_ratio=2**0.5, first_scale_steps=100, steps=50
    ),
    # the comparison: a shallower content layer (block2_conv2) keeps the pixels far more tightly
    "single scale, 1000 steps, content block2_conv2": dict(
        pyramid_levels=1, steps=1000, content_layers=("block2_conv2",)
    ),
    # whether the default budget would do with that layer: the default schedule, and one from 48 px
    "default, content block2_conv2": dict(content_layers=("block2_conv2",)),
    "×2 from 48 px, 200 + 100/scale, content block2_conv2": dict(
        pyramid_levels=None, pyramid_min_size=48, first_scale_steps=200, steps=100, content_layers=("block2_conv2",)
    ),
    "×2 from 48 px, 300/scale, content block2_conv2": dict(
        pyramid_levels=None, pyramid_min_size=48, first_scale_steps=300, steps=300, content_layers=("block2_conv2",)
    ),
}


class Meter:
    """Counts the pixels of every loss evaluation and the wall time of a run."""

    def __init__(self):
        from nst_lib import objective

        self.pixels = 0
        original = objective.Objective.evaluate
        meter = self

        def counting(obj, image):
            meter.pixels += obj.shape[0] * obj.shape[1]
            return original(obj, image)

        objective.Objective.evaluate = counting

    def run(self, fn):
        self.pixels, t0 = 0, time.perf_counter()
        result = fn()
        return result, {
            "megapixel_evaluations": round(self.pixels / 1e6, 3),
            "seconds": round(time.perf_counter() - t0, 1),
        }


def float32_loss(image, config) -> float:
    """The loss of ``image`` (uint8 or float) stylising CONTENT with STYLE under ``config``, computed in float32: one
    scale for outputs computed at different precisions."""
    from nst_lib import evaluate

    return evaluate(image, CONTENT, STYLE, config.replace(precision="float32")).total


def tutorial_adam(base, **overrides):
    """``base``'s loss optimised as the TF tutorial optimises its own: Adam with its step size, β1 and ε, 1000 steps
    at one scale."""
    from nst_lib import StyleConfig

    tutorial = StyleConfig.preset("tf_tutorial", size=base.size)
    return base.replace(
        optimizer="adam",
        learning_rate=tutorial.learning_rate,
        adam_beta1=tutorial.adam_beta1,
        adam_epsilon=tutorial.adam_epsilon,
        steps=1000,
        pyramid_levels=1,
        **overrides,
    )


def identity(args) -> None:
    from nst_lib import StyleConfig, stylize
    from nst_lib.images import load_image
    from nst_lib.metrics import ssim

    meter = Meter()
    content = load_image(HELD_OUT, 192)
    rows = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        config = StyleConfig(init="noise", size=192, snapshot_every=0, **overrides)
        result, cost = meter.run(lambda config=config: stylize(content, content, config, out=None, progress=False))
        row = {"schedule": name, "overrides": overrides, "ssim": round(ssim(result.image, content), 4), **cost}
        row["steps"] = len(result.history)
        rows.append(row)
        print(row, flush=True)
    if args.only:  # a partial run replaces its rows in the results file and keeps the others
        previous = RESULTS / "schedule_identity.json"
        if previous.is_file():
            fresh = {r["schedule"] for r in rows}
            kept = [r for r in json.loads(previous.read_text())["rows"] if r["schedule"] not in fresh]
            rows = kept + rows
            rows.sort(key=lambda r: list(CANDIDATES).index(r["schedule"]) if r["schedule"] in CANDIDATES else 99)
    write("schedule_identity", {"photo": HELD_OUT.name, "image_hw": list(content.shape[:2]), "rows": rows})


def quality(args) -> None:
    """A schedule, then single scale for the same cost (megapixel-evaluations, which wall time is proportional to
    on a quiet machine; a busy machine slows both alike); both judged at full size and, downsampled, at 256 px."""
    from nst_lib import StyleConfig, evaluate, stylize
    from nst_lib.images import load_image, resize

    meter = Meter()
    size = args.size
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    base = StyleConfig(size=size, snapshot_every=0, **json.loads(args.overrides))
    scheduled, cost_a = meter.run(lambda: stylize(content, style, base, out=None, progress=False))
    budget = cost_a["megapixel_evaluations"] * 1e6

    def stop_at_budget(info):
        return meter.pixels >= budget

    single_cfg = base.replace(pyramid_levels=1, steps=100_000)
    single, cost_b = meter.run(
        lambda: stylize(content, style, single_cfg, out=None, progress=False, callbacks=[stop_at_budget])
    )
    small = load_image(CONTENT, 256).shape[:2]
    rows = []
    for name, result, cost in (("schedule", scheduled, cost_a), ("single scale, same cost", single, cost_b)):
        full = evaluate(result.image, content, style, base.replace(pyramid_levels=1))
        low = evaluate(resize(result.image.astype("float32"), small), CONTENT, STYLE, base.replace(size=256))
        rows.append(
            {"run": name, "steps": len(result.history), "full_size_loss": full.total, "loss_at_256": low.total, **cost}
        )
        print(rows[-1], flush=True)
    ratios = {
        "full_size_loss": rows[0]["full_size_loss"] / rows[1]["full_size_loss"],
        "loss_at_256": rows[0]["loss_at_256"] / rows[1]["loss_at_256"],
    }
    if args.save_images:
        from nst_lib.images import save_image

        for name, result in (("schedule", scheduled), ("single", single)):
            save_image(Path(args.save_images) / f"quality{args.tag}_{name}.png", result.image)
    write(
        f"schedule_quality{args.tag}",
        {
            "size": size,
            "overrides": json.loads(args.overrides),
            "rows": rows,
            "schedule_over_single": {k: round(v, 3) for k, v in ratios.items()},
            "targets": {"full_size_loss": "<= 1.1", "loss_at_256": "<= 0.5"},
        },
    )


def adam(args) -> None:
    """Time for the default schedule to reach the loss the TF tutorial's Adam reaches in 1000 steps, at 256 px.

    At 256 px the default schedule has two scales (128 and 256 px); its coarse scale runs as configured, its final
    scale runs until its loss reaches Adam's (at most 2000 steps), so the time to quality counts both scales.
    ``--adam-precision`` computes Adam at another precision than the schedule (the tutorial computes in float32);
    both losses are the network's at its own precision, so compare like with like unless that is the question."""
    from nst_lib import StyleConfig, stylize
    from nst_lib.features import resolve_precision
    from nst_lib.transfer import schedule

    size = 256
    base = StyleConfig(size=size, snapshot_every=0, **json.loads(args.overrides))
    meter = Meter()  # the machine-independent cost beside the wall time: this machine's speed drifts within a run
    # the comparison is on the default loss (the tutorial's settings only choose the optimiser's path)
    adam_run = stylize(
        CONTENT,
        STYLE,
        tutorial_adam(base, precision=args.adam_precision or base.precision),
        out=None,
        progress=True,
    )
    target = adam_run.history[-1]["total"]
    adam_pixels, reached_pixels = meter.pixels, []
    meter.pixels = 0

    adam_seconds = adam_run.history[-1]["time_s"]
    scales = schedule(base, size)
    last = len(scales) - 1
    extended = base.replace(first_scale_steps=scales[0].steps, steps=2000) if last == 1 else base

    def reached_target(info):
        if info.level == last and info.losses["total"] <= target:
            reached_pixels.append(meter.pixels)
            return True
        return False

    scheduled = stylize(CONTENT, STYLE, extended, out=None, progress=True, callbacks=[reached_target])
    clock, previous, level, reached, steps_at_last = 0.0, 0.0, 0, None, 0
    for r in scheduled.history:  # time_s restarts at each scale: add up the increments
        if r["level"] != level:
            level, previous = r["level"], 0.0
        clock += r["time_s"] - previous
        previous = r["time_s"]
        if r["level"] == last:
            steps_at_last += 1
            if r["total"] <= target and reached is None:
                reached = clock
    write(
        f"schedule_adam{args.tag}",
        {
            "size": size,
            "schedule": [(s.long_side, s.steps) for s in scales],
            "precision": {
                "schedule": resolve_precision(base.precision),
                "adam": resolve_precision(adam_run.config.precision),
            },
            "adam_steps": 1000,
            "adam_loss": target,
            "adam_seconds": adam_seconds,
            "schedule_seconds_to_adam_loss": None if reached is None else round(reached, 1),
            "schedule_final_scale_steps_to_adam_loss": steps_at_last if reached is not None else None,
            "ratio": None if reached is None else round(reached / adam_seconds, 3),
            "adam_megapixel_evaluations": round(adam_pixels / 1e6, 3),
            "schedule_megapixel_evaluations_to_adam_loss": round(reached_pixels[0] / 1e6, 3) if reached else None,
            "cost_ratio": round(reached_pixels[0] / adam_pixels, 3) if reached else None,
            # the stopping image scored in float32, over Adam's loss scored the same way (checks mixed precisions)
            "float32_loss_at_stop_over_adam": round(
                float32_loss(scheduled.image, scheduled.config) / float32_loss(adam_run.image, adam_run.config), 4
            ),
            "target": "<= 0.15",
        },
    )


# exponential moving averages of the iterates compared (crowsonkb/style-transfer-pytorch outputs one, decay 0.99)
AVERAGE_DECAYS = (0.9, 0.95, 0.99)


def average(args) -> None:
    """Iterate averaging, measured before building it: each run keeps exponential moving averages of its iterates
    (restarted at each scale, as the run's own image is) beside the run, without feeding them back, and scores the
    final scale's averages against the run's output, both as uint8 images and in float32. An average that scores
    worse than the output it averages would also hand each next scale a worse start: the first test it must pass."""
    import numpy as np

    from nst_lib import StyleConfig, stylize
    from nst_lib.optim import Callback

    class Averages(Callback):
        def __init__(self):
            self.level, self.means = None, {}

        def on_step(self, info):
            if info.level != self.level:  # a new scale: its first iterate starts the averages
                self.level, self.means = info.level, {d: info.x.astype(np.float64) for d in AVERAGE_DECAYS}
            else:
                for d, mean in self.means.items():
                    mean *= d
                    mean += (1 - d) * info.x
            return False

    size = 256
    base = StyleConfig(size=size, snapshot_every=0, **json.loads(args.overrides))
    runs = {
        "L-BFGS, the default schedule": base,
        "Adam, the default schedule": base.replace(optimizer="adam"),
        "Adam with the TF tutorial's step size, 1000 steps at one scale": tutorial_adam(base),
    }
    rows = []
    for name, config in runs.items():
        averages = Averages()
        t0 = time.perf_counter()
        result = stylize(CONTENT, STYLE, config, out=None, progress=False, callbacks=[averages])
        output = float32_loss(result.image, result.config)
        row = {"run": name, "steps": len(result.history), "seconds": round(time.perf_counter() - t0, 1)}
        row["output_loss"] = output
        for d, mean in averages.means.items():
            image = np.clip(mean.reshape(result.image.shape), 0, 255).round().astype(np.uint8)
            row[f"average_{d}_loss_over_output"] = round(float32_loss(image, result.config) / output, 4)
        rows.append(row)
        print(row, flush=True)
    write("schedule_average", {"size": size, "decays": list(AVERAGE_DECAYS), "rows": rows})


LIMIT_EVERY = 250  # steps between the limit part's samples


def limit(args) -> None:
    """How firmly the default loss points f(C, C) from noise at C: long single-scale runs on the identity test's
    photo, sampled every LIMIT_EVERY steps (SSIM to C and the loss), against the loss of C itself. The run from C
    shows whether C is a minimum and how low the loss goes near it; the run from noise, how low a loss it reaches
    how far from C (a loss barely above the near-C one at a low SSIM means the loss points at C only weakly); the
    run without TV, what TV contributes."""
    from nst_lib import StyleConfig, evaluate, stylize
    from nst_lib.images import load_image
    from nst_lib.metrics import ssim

    content = load_image(HELD_OUT, 192)
    base = StyleConfig(size=192, snapshot_every=0, pyramid_levels=1)
    runs = {  # name: StyleConfig overrides of the run (also of its loss, but for the starting image and steps)
        "from noise, the default loss": dict(init="noise", steps=2000),
        "from C, the default loss": dict(init="content", steps=1000),
        "from noise, no TV": dict(init="noise", steps=1000, tv_weight=0.0),
    }
    rows = []
    for name, overrides in runs.items():
        config, samples = base.replace(**overrides), []

        def sample(info, samples=samples):
            if info.step % LIMIT_EVERY == 0:
                s = {"step": info.step, "ssim": round(ssim(info.image(), content), 4)}
                samples.append({**s, "loss": round(info.losses["total"], 2)})
            return False

        t0 = time.perf_counter()
        stylize(content, content, config, out=None, progress=False, callbacks=[sample])
        at_c = evaluate(content, content, content, config)
        row = {"run": name, "overrides": overrides, "seconds": round(time.perf_counter() - t0, 1)}
        row["samples"] = samples
        row["loss_of_c"] = {"total": round(at_c.total, 2), "content": at_c.content, "style": at_c.style, "tv": at_c.tv}
        rows.append(row)
        print(row, flush=True)
    write("schedule_limit", {"photo": HELD_OUT.name, "image_hw": list(content.shape[:2]), "rows": rows})


WARM_FROM = (96, 64, 48)  # long sides of the coarser copies of C the warm part starts from (C's is 192)


def warm(args) -> None:
    """The best start a coarse-to-fine schedule could hand its last scale on the identity test: C itself at a
    coarser scale (long side WARM_FROM), upsampled, as a perfect previous scale would leave it. From there the
    default per-scale budget (``steps``, one scale) runs with the default loss and with the content at
    block2_conv2: if a scale's steps do not bring that start back towards C's detail, no schedule built of such
    scales reaches C from noise."""
    from nst_lib import StyleConfig, evaluate, stylize
    from nst_lib.images import load_image, resize
    from nst_lib.metrics import ssim

    content = load_image(HELD_OUT, 192)
    h, w = content.shape[:2]
    base = StyleConfig(size=192, snapshot_every=0, pyramid_levels=1, **json.loads(args.overrides))
    losses = {"the default loss": {}, "content block2_conv2": dict(content_layers=("block2_conv2",))}
    rows = []
    for low in WARM_FROM:
        start = resize(resize(content, (round(h * low / max(h, w)), round(w * low / max(h, w)))), (h, w))
        for name, overrides in losses.items():
            config = base.replace(**overrides)
            t0 = time.perf_counter()
            result = stylize(content, content, config, out=None, progress=False, initial=start)
            row = {"from_long_side": low, "loss": name, "steps": len(result.history)}
            row["ssim_start"] = round(ssim(start, content), 4)
            row["ssim_end"] = round(ssim(result.image, content), 4)
            row["loss_start"] = round(evaluate(start, content, content, config).total, 1)
            row["loss_end"] = round(evaluate(result.image, content, content, config).total, 1)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(row, flush=True)
    write("schedule_warm", {"photo": HELD_OUT.name, "image_hw": [h, w], "steps": base.steps, "rows": rows})


PARTS = {"identity": identity, "quality": quality, "adam": adam, "average": average, "limit": limit, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=list(PARTS))
    parser.add_argument(
        "--only", nargs="*", help="identity: only schedules whose name is one of these (their rows replace the file's)"
    )
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--overrides", default="{}", help="StyleConfig overrides (JSON) of the runs")
    parser.add_argument("--adam-precision", default=None, help="adam: Adam's precision (default: the schedule's)")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument("--save-images", default=None, help="quality: a folder for both outputs")
    args = parser.parse_args()
    PARTS[args.part](args)


if __name__ == "__main__":
    main()
