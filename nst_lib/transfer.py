"""``stylize()``: the Gatys image-optimisation engine with multi-style blending, colour preservation,
coarse-to-fine pyramids, run folders and resume.

One stylisation: inputs → float RGB at ``size`` → targets computed once per level (content features,
style Grams) → optimiser steps on the pixels (callbacks: progress bar, snapshots, checkpoints, user
callbacks) → output image and run folder.

A stylisation's run folder (``runs.Run``, kind "stylize") holds, besides the record and ``losses.csv``
(step, level, scale, total, content, style, tv, time_s: weighted terms, total = their sum): ``inputs/`` (content.npy,
style_0.npy, … exactly what was optimised against), ``snapshots/step_00050.png`` … (``L<level>_step_…`` with a
pyramid; ``last_good.png`` after a non-finite loss), ``checkpoint.npz`` (level, step, image and the
optimiser's state as ``opt_*``) and ``output.png`` (and ``output.tif``, 16-bit, with ``tiff16``).
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RESUME_OVERRIDES, RUNS_DIR, StyleConfig
from .errors import ConfigError, ImageError, NonFiniteLossError, NSTError
from .images import (
    ImageLike,
    fit_image,
    fit_size,
    grayscale,
    load_image,
    match_luminance,
    pixel_digest,
    read_image,
    resize,
    save_tiff16,
    smallest_size,
    source_name,
    style_list,
    to_uint8,
    transfer_luminance,
)
from .objective import (
    OPTIMIZER_BUDGET_SHARE,
    Objective,
    check_size,
    extractor_for,
    memory_budget,
    tile_size_for,
)
from .optim import Adam, Callback, StepInfo, as_callbacks, make_optimizer, run_steps
from .runs import Run, Timer, check_network, hold

LOSS_COLUMNS = ("step", "level", "scale", "total", "content", "style", "tv", "time_s")


@dataclass
class StyleResult:
    """What ``stylize`` returns. ``history`` rows hold the weighted loss terms (total = content + style + tv)."""

    image: np.ndarray
    history: list[dict]
    snapshots: list[tuple[int, np.ndarray]]
    config: StyleConfig
    run_dir: Path | None
    timings: dict[str, float]
    status: str = "completed"
    network: dict[str, str] | None = None  # the weights file (or 'random') and preprocessing the run resolved to
    precision: str | None = None  # what it computed in ('auto' resolved)
    initial: np.ndarray | None = None  # the image its first scale started from, where one was given (a warm start)

    def losses(self, key: str = "total", level: int | None = None) -> np.ndarray:
        return np.array([r[key] for r in self.history if level is None or r["level"] == level])


@dataclass(frozen=True)
class Scale:
    """One scale of the coarse-to-fine schedule: its index, the image's long side, and its steps."""

    level: int
    long_side: int
    steps: int


def schedule(config: StyleConfig, long_side: int, fits: Callable[[int], bool] | None = None) -> list[Scale]:
    """The scales of a stylisation, coarse to fine, the last at ``long_side``: ``pyramid_levels`` of them (each
    ``pyramid_ratio`` smaller than the next), or, with ``pyramid_levels=None``, as many as fit between
    ``pyramid_min_size`` and ``long_side``. The coarsest runs ``first_scale_steps`` (default 2 × ``steps``), every
    other ``steps``. Coarse scales for which ``fits(long_side)`` is false (an input too small there for the network's
    layers) are left out."""
    n = config.pyramid_levels
    if n is None:
        ratio = long_side / config.pyramid_min_size
        n = 1 + max(0, math.floor(math.log(ratio) / math.log(config.pyramid_ratio) + 1e-9)) if ratio > 1 else 1
    sizes = [max(1, round(long_side / config.pyramid_ratio ** (n - 1 - i))) for i in range(n)]
    if fits is not None:
        sizes = [s for s in sizes[:-1] if fits(s)] + sizes[-1:]
    first = config.first_scale_steps or 2 * config.steps
    return [Scale(i, size, first if i == 0 and len(sizes) > 1 else config.steps) for i, size in enumerate(sizes)]


def scale_config(config: StyleConfig, scale: Scale, final: Scale) -> StyleConfig:
    """The config a coarser scale optimises with. The content ('mean') and style ('size') losses already mean the
    same at every size; the TV term does not: downsampling an image by k makes its neighbour differences about k
    times larger, so the same TV weight would smooth a coarse scale k² times harder. Its weight is therefore
    scaled by (scale / final size)²; the final scale's loss is the single-scale loss."""
    return config.replace(tv_weight=config.tv_weight * (scale.long_side / final.long_side) ** 2)


def level_sizes(config: StyleConfig, long_side: int) -> list[int]:
    """Long side of each scale, coarse to fine; the last is the output size."""
    return [scale.long_side for scale in schedule(config, long_side)]


def total_steps(config: StyleConfig, long_side: int | None = None) -> int:
    """Steps of the whole schedule (at the long side ``config.size`` unless given)."""
    return sum(scale.steps for scale in schedule(config, long_side or config.size))


# image-sized float32 arrays L-BFGS holds besides its pairs while it evaluates a trial point: the iterate, its
# gradient, the direction, the trial point and the trial's gradient
LBFGS_WORKING_ARRAYS = 5


def lbfgs_pairs(config: StyleConfig, values: int) -> int:
    """Curvature pairs L-BFGS keeps for an image of ``values`` floats: ``lbfgs_history``, fewer where its state —
    the pairs (2 × 4 bytes a value each) and its working arrays — would take more than a quarter of the memory
    budget (a 4K image's 20 pairs alone would take 4 GB); the budget cuts them to no fewer than 3, which at 4K
    within the default 4 GB budget take, with the working arrays, 1.09 GB of the 1.07 GB share. A smaller
    ``lbfgs_history`` asked for is kept."""
    share = OPTIMIZER_BUDGET_SHARE * memory_budget(config) - LBFGS_WORKING_ARRAYS * 4 * values
    fit = int(share / (8 * values))
    return min(config.lbfgs_history, max(3, fit))


def _resized_adam_state(state: dict, old_shape: tuple, new_shape: tuple) -> dict:
    """Adam's moments carried to the next scale (as crowsonkb/style-transfer-pytorch warm-starts its scales): the
    first moment resized smoothly, the second bilinearly and kept non-negative; the step count goes on."""
    m = resize(state["m"].reshape(old_shape), new_shape[:2], clip=False)
    v = np.maximum(resize(state["v"].reshape(old_shape), new_shape[:2], method="bilinear", clip=False), 0.0)
    return {**state, "m": m.reshape(-1), "v": v.reshape(-1)}


def _initial_image(config: StyleConfig, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    if config.init == "content":
        return content.copy()
    if config.init == "style":
        return resize(style, content.shape[:2])
    rng = np.random.default_rng(config.seed)
    return rng.uniform(0.0, 255.0, content.shape).astype(np.float32)


class _Recorder(Callback):
    """Snapshots, checkpoints and the running history; keeps the run folder current."""

    def __init__(self, engine: _Engine, scale: Scale, optimizer, every: int):
        self.engine, self.level, self.scale, self.optimizer, self.every = engine, scale.level, scale, optimizer, every

    def on_step(self, info: StepInfo):
        row = {"step": info.step, "level": self.level, "scale": self.scale.long_side, **info.losses}
        row["time_s"] = round(info.elapsed, 4)
        self.engine.history.append(row)
        if self.every and info.step % self.every == 0:
            image = info.image()
            self.engine.snapshots.append((info.step, image))
            if self.engine.run:
                self.engine.run.save_image(f"snapshots/{self.engine.snapshot_name(self.level, info.step)}", image)
                self.engine.checkpoint(self.level, info.step, self.optimizer, info.x)
        return None


class _Engine:
    def __init__(
        self,
        config: StyleConfig,
        content: np.ndarray,
        styles: list[np.ndarray],
        run: Run | None,
        min_side: int = 1,
        initial: np.ndarray | None = None,
        source_hws: list[tuple[int, int]] | None = None,
    ):
        self.config, self.content, self.styles, self.run = config, content, styles, run
        self.initial = initial  # a warm start for the first scale
        # the inputs' sizes before loading resized them (their aspect ratios, for the smallest size that fits); a
        # resumed run has only the resized inputs, whose aspect ratios are the same
        self.source_hws = source_hws or [content.shape[:2], *(s.shape[:2] for s in styles)]

        def fits(long_side: int) -> bool:  # every input keeps the deepest layer at least one position wide there
            content_hw, style_hws = self.level_shapes(long_side)
            return all(min(hw) >= min_side for hw in [content_hw, *style_hws])

        self.scales = schedule(config, max(content.shape[:2]), fits)
        self.history: list[dict] = []
        self.snapshots: list[tuple[int, np.ndarray]] = []
        self.tiles: dict[int, int] = {}  # level → tiles its evaluations used (1: the whole image)
        self.problem = None  # the scale's objective while it runs

    def snapshot_name(self, level: int, step: int) -> str:
        return f"step_{step:05d}.png" if len(self.scales) == 1 else f"L{level}_step_{step:05d}.png"

    def checkpoint(self, level: int, step: int, optimizer, x: np.ndarray) -> None:
        if self.run:
            state = {f"opt_{k}": v for k, v in optimizer.state_dict().items()}
            # float16's loss scale, as lowered by overflows so far: a resume starting again from 2¹⁰ would round
            # its first gradients otherwise
            scale = {"loss_scale": self.problem.loss_scale} if self.problem is not None else {}
            # the rows first: a kill between the two writes then leaves rows past the checkpoint, which a resume
            # drops, and not a checkpoint past the rows, whose missing steps it could not write again
            self.run.write_rows("losses.csv", self.history, LOSS_COLUMNS)
            self.run.save_arrays({"level": level, "step": step, "x": x, **state, **scale})

    def smallest_size(self, min_side: int) -> int:
        """The smallest ``size`` at which the content and every style are ``min_side`` px wide at least."""
        content_hw, *style_hws = self.source_hws
        scale = self.config.style_scale
        return max([smallest_size(content_hw, min_side), *(smallest_size(hw, min_side, scale) for hw in style_hws)])

    def pixels_needed(self, size: int, min_side: int) -> int:
        """The smallest ``max_pixels`` at which every input, loaded at ``size`` as ``stylize`` loads them (the
        content through the budget, the styles at ``style_scale`` × the content's long side, then through the
        budget), stays ``min_side`` px wide, where the current budget would not keep them so (0 where it does)."""
        content_hw, *style_hws = self.source_hws

        def shapes(pixels: int | None) -> list[tuple[int, int]]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                content = fit_size(content_hw, size, pixels)
                side = self.config.style_long_side(max(content))
                return [content, *(fit_size(hw, side, pixels) for hw in style_hws)]

        def wide_enough(pixels: int | None) -> bool:
            return all(min(hw) >= min_side for hw in shapes(pixels))

        budget = self.config.max_pixels
        if not budget or wide_enough(budget) or not wide_enough(None):
            return 0
        # no budget above the largest input's own pixels changes anything
        low, high = budget + 1, max(budget + 1, max(h * w for h, w in shapes(None)))
        while low < high:  # the first budget that keeps them wide enough: loading is monotone in the budget
            mid = (low + high) // 2
            low, high = (mid + 1, high) if not wide_enough(mid) else (low, mid)
        return low

    def level_shapes(self, long_side: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """(content, [styles]) heights and widths at a scale. The pixel budget was applied at load: a style it
        shrank there is never enlarged past that size again (``style_scale`` > 1 asks for more pixels than the
        content's)."""
        target = self.config.style_long_side(long_side)
        return fit_size(self.content.shape[:2], long_side), [
            fit_size(s.shape[:2], min(target, max(s.shape[:2]))) for s in self.styles
        ]

    def level_images(self, level: int) -> tuple[np.ndarray, list[np.ndarray]]:
        content_hw, style_hws = self.level_shapes(self.scales[level].long_side)
        return resize(self.content, content_hw), [resize(s, hw) for s, hw in zip(self.styles, style_hws)]

    def run_all(self, extractor, names, callbacks, progress, timer, start=None) -> tuple[np.ndarray, str]:
        """Every scale from ``start``; returns the result unrounded (float32 [0, 255], with the content's colours
        where ``preserve_color``) and the run's status."""
        config = self.config
        start_level = start["level"] if start else 0
        x_img = final = previous = None
        status = "completed"
        last = len(self.scales) - 1
        for scale in self.scales[start_level:]:
            level = scale.level
            with timer("targets"):
                content, styles = self.level_images(level)
                what = "after resizing" if level == last else f"at scale {level + 1} of {last + 1}"
                fix = self.smallest_size(extractor.min_side) if level == last else None
                pixels = self.pixels_needed(fix, extractor.min_side) if fix else 0
                check_size(content, extractor, names[0], what, fix, pixels)
                for s, n in zip(styles, names[1:]):
                    check_size(s, extractor, n, what, fix, pixels)
                content_opt, styles_opt = content, styles
                if config.preserve_color:  # luminance-only transfer (Gatys et al. 2017)
                    content_opt = grayscale(content)
                    styles_opt = [match_luminance(s, content) for s in styles]
                tile = tile_size_for(config, extractor, *content_opt.shape[:2])
                problem = Objective(
                    extractor,
                    scale_config(config, scale, self.scales[-1]),
                    content_opt,
                    styles_opt,
                    tile,
                    # weights compiled in (bfloat16, small images) for one scale only: a multi-scale run would keep
                    # its small scales' compiled copies (~0.6 GB each) resident through the large ones
                    inline_weights=None if len(self.scales) == 1 else False,
                )
                self.tiles[level] = len(problem.tiles) if problem.tiles else 1
                self.problem = problem
            optimizer = make_optimizer(config, pairs=lbfgs_pairs(config, content.size), noise=extractor.loss_noise)
            step0 = 0
            if start and level == start_level:
                x = start["x"].reshape(-1).astype(np.float32)
                optimizer.load_state_dict(start.pop("optimizer"))  # not kept beyond its scale
                step0 = start["step"]
                problem.loss_scale = start.get("loss_scale", problem.loss_scale)
            elif x_img is None:
                if self.initial is not None:
                    x = resize(self.initial, content.shape[:2])
                else:
                    x = _initial_image(config, content_opt, styles_opt[0])
                if config.preserve_color:  # the luminance problem starts from a luminance image (a warm start in
                    x = grayscale(x)  # colour, colour noise), as evaluate(..., preserve_color=True) scores it
                x = x.astype(np.float32).reshape(-1)
            else:  # each scale starts from the previous result, upsampled; Adam keeps its moments
                x = resize(x_img, content.shape[:2]).reshape(-1)
                if isinstance(optimizer, Adam):
                    optimizer.load_state_dict(_resized_adam_state(previous, x_img.shape, content.shape))

            def to_float(xf, content=content, shape=content.shape):
                img = xf.reshape(shape)
                return transfer_luminance(img, content) if config.preserve_color else img

            def to_image(xf):
                return to_uint8(to_float(xf))

            recorder = _Recorder(self, scale, optimizer, config.snapshot_every)
            desc = "stylize" if last == 0 else f"stylize {level + 1}/{last + 1} ({scale.long_side} px)"
            with timer("optimise"):
                try:
                    loop = run_steps(
                        optimizer,
                        problem,
                        x,
                        step0,
                        scale.steps,
                        [recorder, *callbacks],
                        level,
                        to_image,
                        progress,
                        desc,
                    )
                except NonFiniteLossError as exc:
                    self._keep_last_good(exc, to_image)
                    raise
            x_img = loop.x.reshape(content.shape)
            # Adam's moments go on to the next scale; L-BFGS's pairs cannot (kept, they would hold a gigabyte at 4K)
            previous = optimizer.state_dict() if isinstance(optimizer, Adam) else None
            final = to_float(loop.x)  # a view of the optimiser's pixels unless colours are kept
            self.checkpoint(level, loop.steps_done, optimizer, loop.x)
            if loop.interrupted or loop.stopped:
                status = "interrupted" if loop.interrupted else "stopped"
                break
            # the finished scale's optimiser state and targets go before the next scale builds its own
            problem = optimizer = recorder = loop = self.problem = None
        return final, status

    def _keep_last_good(self, exc, to_image) -> None:
        partial = getattr(exc, "partial", None)
        if partial is None or self.run is None:
            return
        path = self.run.save_image("snapshots/last_good.png", to_image(partial.x))
        self.run.write_rows("losses.csv", self.history, LOSS_COLUMNS)
        self.run.write_record(status="failed: non-finite loss", steps_done=partial.steps_done)
        exc.args = (f"{exc.args[0]} at step {partial.steps_done + 1}; the last good image is kept in {path}",)


def _run_name(content_name: str, style_names: list[str]) -> str:
    def stem(n: str) -> str:
        return Path(n).stem if not n.startswith("<") else "array"

    styles = "+".join(stem(n) for n in style_names[:3]) + ("+more" if len(style_names) > 3 else "")
    return f"{stem(content_name)}_x_{styles}"


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike] | np.ndarray,
    config: StyleConfig | None = None,
    *,
    out: str | Path | None = RUNS_DIR,
    name: str | None = None,
    callbacks: Sequence = (),
    progress: bool = True,
    timestamp: bool = True,
    initial: ImageLike | None = None,
    **overrides: Any,
) -> StyleResult:
    """Paint ``content`` in the style of ``style`` (one image, a list to blend, or an N×H×W×3 batch whose
    styles are averaged as in seed 004). ``config`` defaults to ``StyleConfig()``; keyword ``overrides``
    replace its fields. With ``out=None`` nothing is written and ``run_dir`` is None; the run folder is
    ``out/<time>_<name>`` (``out/<name>`` with ``timestamp=False``), never an existing one.

    ``initial`` starts the optimisation from that image (resized to the first scale) instead of ``config.init``:
    a warm start, such as a preview continued from the current result after a slider moved.

    Callbacks are callables or ``Callback`` objects called after every step with a ``StepInfo``;
    returning True stops the run. Ctrl-C stops after the current step and keeps what was done.
    """
    config = (config or StyleConfig()).replace(**overrides)
    timer = Timer()
    styles_in = style_list(style)
    names = [source_name(content)] + [source_name(s) for s in styles_in]
    with timer("load"):
        source_hws = []  # the inputs' own sizes: their aspect ratios tell the smallest size that fits the layers
        digests = []  # the inputs' pixels, for a sweep to tell a changed file of the same name from its own

        def load(src, name, size):
            rgb = read_image(src)
            source_hws.append(rgb.shape[:2])
            digests.append(pixel_digest(rgb))
            return fit_image(rgb, size, config.max_pixels, name)

        content_img = load(content, names[0], config.size)
        style_side = config.style_long_side(max(content_img.shape[:2]))
        style_imgs = [load(s, n, style_side) for s, n in zip(styles_in, names[1:])]
        initial_img = None if initial is None else load_image(initial)
    run = None
    with ExitStack() as held:
        if out is not None:
            run = Run.create(out, name or _run_name(names[0], names[1:]), timestamp, subdirs=("snapshots", "inputs"))
            held.enter_context(hold(run.path))  # a resume of it started meanwhile is refused while this runs
            _save_inputs(run, content_img, style_imgs)
            if initial_img is not None:  # what the first scale starts from, for a resume before the first checkpoint
                np.save(run.path / "inputs" / "initial.npy", initial_img)
            run.begin(
                "stylize",
                config=config.to_dict(),
                inputs={"content": names[0], "styles": names[1:], "digests": digests},
                seed=config.seed,
            )
        return _execute(
            config,
            content_img,
            style_imgs,
            names,
            run,
            callbacks,
            progress,
            timer,
            initial=initial_img,
            source_hws=source_hws,
        )


def resume(run_dir: str | Path, *, callbacks: Sequence = (), progress: bool = True, **overrides: Any) -> StyleResult:
    """Continue a run from its folder's last checkpoint. Overrides (only ``RESUME_OVERRIDES``) replace recorded
    config fields: ``steps=`` sets the steps a scale from the checkpoint's scale on (a finished run's final scale
    continues to it). A changed config is recorded with the one it replaced in ``earlier_configs``. A run another
    process is running (a second resume of it) is refused with ``RunInUseError``."""
    with Run.held(run_dir, kind="stylize") as run:
        return _resume(run, callbacks, progress, overrides)


def tiff_to_write(run_dir: Path, config: StyleConfig) -> bool:
    """Whether a completed run that ``config`` asks for a 16-bit TIFF (``tiff16``) lacks it and can still write it:
    ``resume`` does, from its checkpoint, with no step run. Without a checkpoint it is kept as it is, with a
    warning."""
    if not config.tiff16 or (run_dir / "output.tif").is_file():
        return False
    if not (run_dir / "checkpoint.npz").is_file():
        warnings.warn(f"{run_dir}: no checkpoint to write output.tif from; kept without it", stacklevel=3)
        return False
    return True


def _resume(run: Run, callbacks: Sequence, progress: bool, overrides: dict[str, Any]) -> StyleResult:
    fixed = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if fixed:
        raise ConfigError(
            f"{run.path}: a resume cannot change {', '.join(fixed)} (only {', '.join(RESUME_OVERRIDES)}); "
            "start a new run for another problem"
        )
    if run.record.get("resumable") is False:
        raise NSTError(f"{run.path}: a saved result (an export), not a resumable run: it has no checkpoint or inputs")
    if not isinstance(run.record.get("config"), dict) or not isinstance(run.record.get("inputs"), dict):
        raise NSTError(f"{run.path / 'config.json'}: the record has no config or inputs to resume from")
    recorded = run.record["config"]
    if "pyramid_ratio" not in recorded:  # written before the schedule had a ratio: its levels halved
        recorded = {**recorded, "pyramid_ratio": 2.0}
    old = StyleConfig.from_dict(recorded)
    config = old.replace(**overrides)
    timer = Timer()
    content_img, style_imgs = _load_inputs(run)
    names = [run.record["inputs"]["content"], *run.record["inputs"]["styles"]]
    start = _load_checkpoint(run)
    if start is not None:
        rows = run.read_rows("losses.csv")
        start["history"] = [r for r in rows if (r["level"], r["step"]) <= (start["level"], start["step"])]

    def going_on() -> None:  # once the run is known to go on here (the same network and precision), not before
        if config.to_dict() != old.to_dict():  # the one it ran with is kept
            run.write_record(earlier_configs=[*run.record.get("earlier_configs", []), run.record["config"]])
            longer = (config.steps, config.first_scale_steps) != (old.steps, old.first_scale_steps)
            if longer and run.record.get("status") == "completed":  # a finished run taken further keeps its result
                done = run.record.get("steps_done", 0)
                for name in ("output.png", "output.tif"):
                    path = run.path / name
                    if path.is_file():
                        shutil.copy2(path, run.path / f"{path.stem}_{done}_steps{path.suffix}")
        run.write_record(config=config.to_dict(), status="running")

    warm = run.path / "inputs" / "initial.npy"
    initial = np.load(warm) if warm.is_file() else None
    return _execute(
        config, content_img, style_imgs, names, run, callbacks, progress, timer, start, initial, going_on=going_on
    )


def _execute(
    config,
    content_img,
    style_imgs,
    names,
    run,
    callbacks,
    progress,
    timer,
    start=None,
    initial=None,
    source_hws=None,
    going_on: Callable[[], None] | None = None,
) -> StyleResult:
    """The run, once its inputs are loaded. A resume that would go on against another network or in another
    precision is refused with its record untouched; ``going_on`` then writes what the resume changes."""
    resumed_steps = len(start["history"]) if start is not None else 0
    start_level = start["level"] if start is not None else 0
    refused = False
    try:
        with timer("build"):
            extractor = extractor_for(config)
        if run is not None:
            try:
                check_network(run, "network", extractor.resolved(), "weights")
                # 'auto' resolves by machine: a run goes on in the precision it computed in
                recorded = run.record.get("precision") if start is not None else None
                if recorded and recorded != extractor.precision:
                    raise ConfigError(
                        f"{run.path}: the run computed in {recorded}; here precision={config.precision!r} resolves "
                        f"to {extractor.precision}: resume it on a machine where it resolves to {recorded}"
                    )
            except ConfigError:
                refused = True
                raise
            if going_on is not None:
                going_on()
            # recorded from the start: a run killed later still says what it computed in
            run.write_record(network=extractor.resolved(), precision=extractor.precision)
        engine = _Engine(config, content_img, style_imgs, run, extractor.min_side, initial, source_hws)
        if start is not None:
            engine.history = list(start["history"])
            engine.snapshots = run.numbered_images("snapshots", "*step_*.png")
        unrounded, status = engine.run_all(extractor, names, as_callbacks(callbacks), progress, timer, start)
    except Exception as exc:  # a bad layer name, blend weights, an input too thin: the folder must not say running
        if run is not None and not refused and not str(run.record.get("status", "")).startswith("failed"):
            run.write_record(status=f"failed: {type(exc).__name__}: {exc}")
        raise
    except KeyboardInterrupt:  # Ctrl-C before the first step (while building or computing targets)
        if run is not None:
            run.write_record(status="interrupted")
        raise
    image = to_uint8(unrounded)
    steps_done = engine.history[-1]["step"] if engine.history else 0
    timings = timer.summary(len(engine.history) - resumed_steps)  # this session's steps, not the resumed ones
    if run is not None:
        with timer("save"):
            run.write_rows("losses.csv", engine.history, LOSS_COLUMNS)
            run.save_image("output.png", image)
            tif = run.path / "output.tif"
            if config.tiff16:
                save_tiff16(tif, unrounded)
            else:  # resumed without it: no TIFF of an earlier image beside the new PNG
                tif.unlink(missing_ok=True)
            # a resumed run's scales before the one it resumed in ran in an earlier session: as that recorded them
            before = {s["level"]: s for s in run.record.get("schedule") or []} if start is not None else {}
            scales = [
                before[s.level]
                if s.level < start_level and s.level in before
                else {"level": s.level, "long_side": s.long_side, "steps": s.steps, "tiles": engine.tiles.get(s.level)}
                for s in engine.scales
            ]
            run.end(status, steps_done=steps_done, timings=timings, schedule=scales)
    return StyleResult(
        image=image,
        history=engine.history,
        snapshots=engine.snapshots,
        config=config,
        run_dir=run.path if run else None,
        timings=timings,
        status=status,
        network=extractor.resolved(),
        precision=extractor.precision,
        initial=initial,
    )


# --- the stylisation's part of its run folder ------------------------------------------------------------
def save_result(result: StyleResult, out: str | Path, name: str, inputs: dict[str, Any]) -> Path:
    """A new run folder for a result computed without one (``out=None``, e.g. the widget panel's runs): the
    record (with the network and precision it computed with), ``losses.csv`` and ``output.png``. A result warm-started
    from an image (the panel's previews) keeps that image, which with its config, inputs and seed reproduces it
    (``stylize(..., initial=<run>/inputs/initial.png)``): ``inputs/initial.png`` where its values are 8-bit (a
    preview's are), else also ``inputs/initial.npy`` (0–255 floats); the record names the exact one. It has no
    checkpoint, so it is a record, not a resumable run; and no ``output.tif`` whatever ``tiff16`` says (the result
    holds the 8-bit image only)."""
    run = Run.create(out, name, subdirs=("snapshots",))
    started = {}
    if result.initial is not None:
        initial = np.asarray(result.initial, np.float32)
        (run.path / "inputs").mkdir()
        run.save_image("inputs/initial.png", initial)
        started = {"initial": "inputs/initial.png"}
        if not np.array_equal(initial, np.clip(np.round(initial), 0, 255)):  # the PNG would round it
            np.save(run.path / "inputs" / "initial.npy", initial)
            started = {"initial": "inputs/initial.npy"}
    run.begin(
        "stylize",
        config=result.config.to_dict(),
        inputs={**inputs, **started},
        seed=result.config.seed,
        resumable=False,
        network=result.network,
        precision=result.precision,
    )
    run.write_rows("losses.csv", result.history, LOSS_COLUMNS)
    run.save_image("output.png", result.image)
    steps = result.history[-1]["step"] if result.history else 0
    run.end(result.status, steps_done=steps, timings=result.timings)
    return run.path


def _save_inputs(run: Run, content: np.ndarray, styles: list[np.ndarray]) -> None:
    """Exactly what is optimised against (float arrays, for resume) and a PNG of each for people."""
    np.save(run.path / "inputs" / "content.npy", content.astype(np.float32))
    run.save_image("inputs/content.png", content)
    for i, s in enumerate(styles):
        np.save(run.path / "inputs" / f"style_{i}.npy", s.astype(np.float32))
        run.save_image(f"inputs/style_{i}.png", s)


def _load_inputs(run: Run) -> tuple[np.ndarray, list[np.ndarray]]:
    paths = sorted((run.path / "inputs").glob("style_*.npy"), key=lambda p: int(p.stem.split("_")[-1]))
    arrays = []
    for path in [run.path / "inputs" / "content.npy", *paths]:
        try:
            arrays.append(np.load(path))
        except (OSError, ValueError) as err:  # deleted or damaged: the run cannot go on against other inputs
            raise ImageError(f"{path}: the run's input is missing or damaged ({err})") from None
    if len(arrays) < 2:
        raise ImageError(f"{run.path / 'inputs'}: the run's style inputs (style_0.npy …) are missing")
    return arrays[0], arrays[1:]


def _load_checkpoint(run: Run) -> dict[str, Any] | None:
    state = run.load_arrays()
    if state is None:
        return None
    return {
        "level": int(state["level"]),
        "step": int(state["step"]),
        "x": state["x"],
        "optimizer": {k[4:]: v for k, v in state.items() if k.startswith("opt_")},
        **({"loss_scale": float(state["loss_scale"])} if "loss_scale" in state else {}),
    }
