"""Resolution (seed 001 §VIII-D, extended to 4K): one content × style stylised at sizes from 256 px to 3840 px
with the same config, the style image's size either proportional to the output's or fixed in pixels, with the
time and peak memory each size took (notebook 10).

Each case runs in its own Python process, so its peak memory is its own (a process's peak resident set only grows),
and lands in its own run folder ``out/<size>px_<mode>/``; a case whose folder already holds a completed run of the
same config is read back, not run again, and one stopped part-way goes on from its checkpoint, so an interrupted
study picks up where it stopped.

    runs = resolution_study("photo.jpg", "style.jpg", [256, 1024, 3840], StyleConfig(), out="results/resolution")
    resolution_grid(runs); detail_crops(runs); cost_plot(runs)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import OUTPUT_FIELDS, StyleConfig
from ..errors import NSTError
from ..images import DecodedImage, ImageLike, load_image, resize, save_image
from ..runs import Run, changed_setting
from ..transfer import tiff_to_write
from .sweeps import changed_inputs
from .viz import figure, image_grid

# "proportional": the style image is resized with the output (style_scale of the config), so its brush strokes
# cover the same share of the picture at every size; "fixed": the style image keeps a long side of
# ``fixed_style_size`` px, so its strokes keep their size in pixels and shrink relative to a larger picture.
STYLE_MODES = ("proportional", "fixed")


@dataclass
class ResolutionRun:
    """One case of the study: its size and style mode, run folder, and what the run recorded."""

    size: int
    mode: str
    run_dir: Path
    seconds: float
    peak_memory_mb: float | None
    shape: tuple[int, int]
    schedule: list[dict]
    started: str = ""  # when the case ran (ISO time): cases of one study may run on different days

    @property
    def megapixels(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6

    @property
    def max_tiles(self) -> int:
        return max((s.get("tiles") or 1) for s in self.schedule) if self.schedule else 1

    def image(self) -> np.ndarray:
        return load_image(self.run_dir / "output.png")

    def row(self) -> dict:
        return {
            "size": self.size,
            "mode": self.mode,
            "height": self.shape[0],
            "width": self.shape[1],
            "megapixels": round(self.megapixels, 3),
            "seconds": self.seconds,
            "peak_memory_mb": self.peak_memory_mb,
            "scales": [s["long_side"] for s in self.schedule],
            "steps": [s["steps"] for s in self.schedule],
            "tiles": [s.get("tiles") for s in self.schedule],
            "run_dir": self.run_dir.name,
            "started": self.started,
        }


def crop_to_aspect(image: ImageLike, aspect: float) -> np.ndarray:
    """The largest centred crop of ``image`` with width / height = ``aspect`` (16 / 9 for 4K UHD)."""
    img = load_image(image)
    h, w = img.shape[:2]
    if w / h > aspect:
        new_w = round(h * aspect)
        x = (w - new_w) // 2
        return img[:, x : x + new_w]
    new_h = round(w / aspect)
    y = (h - new_h) // 2
    return img[y : y + new_h]


def case_config(config: StyleConfig, size: int, mode: str, fixed_style_size: int = 512) -> StyleConfig:
    """The config of one case: ``size``, and for ``mode="fixed"`` the style scale that keeps the style image at
    ``fixed_style_size`` px whatever the size."""
    if mode not in STYLE_MODES:
        raise NSTError(f"style mode {mode!r}: choose from {', '.join(STYLE_MODES)}")
    scale = config.style_scale if mode == "proportional" else fixed_style_size / size
    return config.replace(size=size, style_scale=scale)


def _runs_of(folder: Path, config: StyleConfig, content: ImageLike, style: ImageLike) -> list[Run]:
    """The runs under ``folder`` made with ``config`` from ``content`` and ``style`` (a study's earlier settings or
    images are not this one's), newest first."""
    if not folder.is_dir():
        return []
    paths = sorted((p for p in folder.iterdir() if (p / "config.json").is_file()), reverse=True)
    runs = [Run.open(path) for path in paths]
    return [
        r
        for r in runs
        if not changed_setting(r.record.get("config") or {}, config.to_dict(), OUTPUT_FIELDS)
        and not changed_inputs(r.record, content, style)
    ]


def _completed(folder: Path, config: StyleConfig, content: ImageLike, style: ImageLike) -> Run | None:
    """The newest completed run of ``config`` on these images under ``folder``, if any."""
    for run in _runs_of(folder, config, content, style):
        if run.record.get("status") == "completed" and (run.path / "output.png").is_file():
            return run
    return None


def _resumable(folder: Path, config: StyleConfig, content: ImageLike, style: ImageLike) -> Run | None:
    """The newest run of ``config`` on these images under ``folder`` that stopped part-way (interrupted, or killed
    while running) with a checkpoint to go on from."""
    for run in _runs_of(folder, config, content, style):
        if run.record.get("status") != "completed" and (run.path / "checkpoint.npz").is_file():
            return run
    return None


def _run_child(code: str, argument: str) -> int:
    """``code`` in a new Python process; Ctrl-C here (or a notebook's interrupt, which the child does not see) is
    passed on as SIGINT, so the child stops after its step and checkpoints instead of being killed; a second Ctrl-C
    kills it."""
    paths = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    # its own session: a terminal's Ctrl-C reaches only this process, which passes it on once (a second SIGINT could
    # land while the child writes its checkpoint)
    child = subprocess.Popen([sys.executable, "-c", code, argument], env=env, start_new_session=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        try:
            child.wait()
        except KeyboardInterrupt:
            child.kill()
        raise


def _read(run: Run, size: int, mode: str) -> ResolutionRun:
    record = run.record
    # a case resumed in a later session: its time is all its sessions', its peak the highest of theirs; a session
    # that ran no step (one that only wrote the TIFF asked for later) is not the case's time
    sessions = [
        *record.get("earlier_timings", []),
        {**record["timings"], "peak_memory_mb": record.get("peak_memory_mb")},
    ]
    sessions = [s for s in sessions if "per_step" in s] or sessions
    peaks = [p for s in sessions if (p := (s.get("peak_memory_mb") or {}).get("host")) is not None]
    with Image.open(run.path / "output.png") as png:  # the header only: a 4K output is not decoded here
        width, height = png.size
    return ResolutionRun(
        size,
        mode,
        run.path,
        sum(float(s.get("total", 0.0)) for s in sessions),
        max(peaks) if peaks else None,
        (height, width),
        list(record.get("schedule", [])),
        record.get("started", ""),
    )


_CHILD = """
import json, pathlib, sys
from nst_lib import StyleConfig, resume, stylize
spec = json.loads(sys.argv[1])
try:
    if spec.get("resume"):
        resume(spec["resume"], progress=spec["progress"], **spec["outputs"])
    else:
        stylize(spec["content"], spec["style"], StyleConfig.from_dict(spec["config"]), out=spec["out"],
                name=spec["name"], progress=spec["progress"])
except Exception as exc:  # one line for the study's warning, not a traceback in the notebook
    text = (str(exc).strip().splitlines() or [""])[0]
    pathlib.Path(spec["reason"]).write_text(f"{type(exc).__name__}: {text}")
    sys.exit(1)
"""


def resolution_study(
    content: ImageLike,
    style: ImageLike,
    sizes: Sequence[int],
    config: StyleConfig,
    out: str | Path,
    modes: Sequence[str] = STYLE_MODES,
    fixed_style_size: int = 512,
    progress: bool = True,
) -> list[ResolutionRun]:
    """Stylise ``content`` with ``style`` at each size and style mode (each in its own process), or read back the
    cases already completed under ``out`` with the same config; a case stopped part-way (Ctrl-C, a notebook's
    interrupt, a killed process) goes on from its checkpoint. A case that fails is reported with a warning and left
    out; the others still run. ``content`` and ``style`` must be files (a child process loads them)."""
    out = Path(out)
    for path in (content, style):
        if not Path(path).is_file():
            raise NSTError(f"{path}: not a file (resolution_study runs each case in a new process, which loads it)")
    images = DecodedImage(content), DecodedImage(style)  # decoded once, to tell earlier runs on other images
    runs = []
    for size in sizes:
        for mode in modes:
            folder = out / f"{size}px_{mode}"
            cfg = case_config(config, size, mode, fixed_style_size)
            run = _completed(folder, cfg, *images)
            # a completed case asked for a TIFF it did not write goes through resume, which writes it (no step runs);
            # its result stands whatever happens to that
            for_tiff = run if run is not None and tiff_to_write(run.path, cfg) else None
            if run is None or for_tiff is not None:
                earlier = for_tiff or _resumable(folder, cfg, *images)
                spec = {
                    "content": str(content),
                    "style": str(style),
                    "config": cfg.to_dict(),
                    "out": str(folder),
                    "name": f"{size}px_{mode}",
                    "progress": progress,
                    "resume": str(earlier.path) if earlier else None,
                    # what this call asks a resumed case to write (a case is the same whatever these are)
                    "outputs": {name: getattr(cfg, name) for name in OUTPUT_FIELDS},
                }
                if progress:
                    print(f"resolution study: {size} px, style {mode}{', resumed' if earlier else ''}", flush=True)
                with tempfile.TemporaryDirectory() as scratch:
                    reason_file = Path(scratch) / "reason.txt"
                    code = _run_child(_CHILD, json.dumps({**spec, "reason": str(reason_file)}))
                    reason = reason_file.read_text() if reason_file.is_file() else f"exit code {code}"
                run = _completed(folder, cfg, *images)
                if run is None and for_tiff is not None:  # the resume failed part-way: the record says 'failed'
                    run = Run.open(for_tiff.path)
                if run is None:
                    warnings.warn(
                        f"{folder}: the {size} px case (style {mode}) failed ({reason}); left out", stacklevel=2
                    )
                    continue
                if cfg.tiff16 and not (run.path / "output.tif").is_file():  # the resume for it refused or failed
                    warnings.warn(f"{run.path}: output.tif was not written ({reason}); the case is kept", stacklevel=2)
            runs.append(_read(run, size, mode))
    return runs


def _by_mode_and_size(runs: Sequence[ResolutionRun], cell, title: str):
    """A figure of ``cell(run)`` with the style modes as rows and the sizes as columns (blank where a case is
    missing)."""
    modes = list(dict.fromkeys(r.mode for r in runs))
    sizes = sorted({r.size for r in runs})
    by = {(r.mode, r.size): r for r in runs}
    cells = [[None if (mode, size) not in by else cell(by[mode, size]) for size in sizes] for mode in modes]
    return image_grid(cells, [f"style {m}" for m in modes], [f"{s} px" for s in sizes], title=title)


def resolution_grid(runs: Sequence[ResolutionRun], display: int = 384, title: str | None = None):
    """Outputs by style mode (rows) and size (columns), each shown downscaled to ``display`` px wide."""

    def downscaled(run: ResolutionRun) -> np.ndarray:
        img = run.image()
        return resize(img, (max(1, round(img.shape[0] * display / img.shape[1])), display))

    return _by_mode_and_size(runs, downscaled, title or "The same config by size")


def detail_crops(runs: Sequence[ResolutionRun], crop: int = 256, centre: tuple[float, float] = (0.35, 0.5)):
    """100 % crops: ``crop`` × ``crop`` output pixels around the same relative point of every output, so the
    detail each size adds (or the texture scale it keeps) is seen at the pixel level."""
    return _by_mode_and_size(
        runs,
        lambda run: centre_crop(run.image(), crop, centre),
        f"100 % crops ({crop} × {crop} output pixels at the same point)",
    )


def centre_crop(image: np.ndarray, crop: int, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """A ``crop`` × ``crop`` window (smaller where the image is) around ``centre`` (relative y, x)."""
    h, w = image.shape[:2]
    ch, cw = min(crop, h), min(crop, w)
    y = min(max(0, round(centre[0] * h - ch / 2)), h - ch)
    x = min(max(0, round(centre[1] * w - cw / 2)), w - cw)
    return image[y : y + ch, x : x + cw]


def cost_plot(runs: Sequence[ResolutionRun], title: str | None = None):
    """Wall time and peak memory against megapixels, one line per style mode (log-log), with a footer saying when
    the cases started."""
    fig = figure(9, 3.4)
    ax_t, ax_m = fig.subplots(1, 2)
    labelled = set()  # one label per size and tile count: the modes' points nearly coincide
    for mode in dict.fromkeys(r.mode for r in runs):
        rs = sorted((r for r in runs if r.mode == mode), key=lambda r: r.megapixels)
        mp = [r.megapixels for r in rs]
        ax_t.plot(mp, [r.seconds / 60 for r in rs], "o-", label=f"style {mode}")
        ax_m.plot(mp, [(r.peak_memory_mb or np.nan) / 1024 for r in rs], "o-", label=f"style {mode}")
        for r in rs:
            if r.max_tiles > 1 and (r.size, r.max_tiles) not in labelled:
                labelled.add((r.size, r.max_tiles))
                point = (r.megapixels, (r.peak_memory_mb or np.nan) / 1024)
                tiles = f"{r.max_tiles} tiles"
                ax_m.annotate(tiles, point, (-6, 6), textcoords="offset points", ha="right", fontsize=7)
    for ax, label in ((ax_t, "minutes (whole run)"), (ax_m, "peak memory, GiB (process RSS)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("megapixels")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title or "Cost by size (each case in its own process)", fontsize=11)
    # cases read back may have run in other sessions, and a shared machine's speed drifts between them
    started = sorted(r.started for r in runs if r.started)
    if started:
        fig.supxlabel(
            f"cases started {started[0][:16]} to {started[-1][:16]} (numbers.json has each case's start): "
            "times from different sessions compare only roughly",
            fontsize=7,
            style="italic",
        )
    return fig


def save_crop(image: ImageLike, path: str | Path, aspect: float = 16 / 9) -> Path:
    """Write the ``aspect`` crop of ``image`` to ``path`` (a PNG): the study's content at 4K UHD's 16:9."""
    return save_image(path, crop_to_aspect(image, aspect))
