"""Sweeps: a grid of StyleConfig variations (contents × styles × any fields), each cell a normal run folder.

    result = sweep({"tubingen": "data/content/tubingen_neckarfront.jpg"},
                   {"starry": "data/style/vangogh_starry_night.jpg"},
                   vary={"arch": ["vgg16", "vgg19"], "style_weight": [1e-4, 1e-3, 1e-2]},
                   out="results/sweeps/arch_x_beta")
    fig = result.figure(rows="arch", cols="style_weight")

Cell folders are named after the cell (``tubingen__starry__arch=vgg16__style_weight=0.001``), so running
the same sweep again skips finished cells and resumes interrupted ones. Cells run one after another:
batching cells of equal size was measured on CPU and not faster (benchmarks/results/batch.json).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..config import StyleConfig
from ..images import ImageLike, source_name
from ..optim import Callback, StepInfo
from ..runs import Run, slug
from ..transfer import resume, schedule, stylize, total_steps
from .viz import image_grid


@dataclass
class SweepCell:
    content: str
    style: str
    overrides: dict[str, Any]
    run_dir: Path
    status: str = "pending"
    final: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def value(self, key: str) -> Any:
        return {"content": self.content, "style": self.style, **self.overrides}[key]

    @property
    def image(self) -> np.ndarray:
        return np.asarray(Image.open(self.run_dir / "output.png").convert("RGB"))

    def row(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "style": self.style,
            **self.overrides,
            "status": self.status,
            "run_dir": str(self.run_dir),
            **{f"final_{k}": v for k, v in self.final.items() if k in ("total", "content", "style", "tv")},
        }


class SweepResult(list):
    """The sweep's cells, in grid order, with helpers to tabulate and plot them."""

    def table(self) -> list[dict[str, Any]]:
        return [cell.row() for cell in self]

    def to_csv(self, path: str | Path) -> Path:
        rows = self.table()
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    def grid(self, rows: str, cols: str, **fixed: Any):
        """(images, row_labels, col_labels) with one row per value of ``rows`` and one column per value of
        ``cols``, among the cells matching ``fixed``; a missing combination is None."""
        cells = [c for c in self if all(c.value(k) == v for k, v in fixed.items())]
        row_values = list(dict.fromkeys(c.value(rows) for c in cells))
        col_values = list(dict.fromkeys(c.value(cols) for c in cells))
        lookup = {}
        for c in cells:
            key = (c.value(rows), c.value(cols))
            if key in lookup:
                raise ValueError(f"several cells for {rows}={key[0]!r}, {cols}={key[1]!r}: fix the other fields")
            lookup[key] = c
        images = [[lookup[(r, k)].image if (r, k) in lookup else None for k in col_values] for r in row_values]
        return images, [_label(rows, r) for r in row_values], [_label(cols, k) for k in col_values]

    def figure(self, rows: str, cols: str, title: str | None = None, footnote: str | None = None, **fixed: Any):
        images, row_labels, col_labels = self.grid(rows, cols, **fixed)
        return image_grid(images, row_labels, col_labels, title, footnote=footnote)


def _label(key: str, value: Any) -> str:
    if key in ("content", "style"):
        return str(value)
    if isinstance(value, float):
        return f"{key}={value:g}"
    return f"{key}={value}"


def _named(images: Mapping[str, ImageLike] | Sequence[ImageLike] | ImageLike) -> dict[str, ImageLike]:
    if isinstance(images, Mapping):
        return dict(images)
    if isinstance(images, (str, Path)) or not isinstance(images, Sequence):
        images = [images]
    named = {}
    for i, img in enumerate(images):
        name = source_name(img)
        named[Path(name).stem if not name.startswith("<") else f"image{i}"] = img
    return named


class _SweepProgress(Callback):
    def __init__(self, bar, label: str):
        self.bar, self.label = bar, label

    def on_step(self, info: StepInfo):
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.label} loss={info.losses['total']:.3g}", refresh=False)


def cell_name(content: str, style: str, overrides: Mapping[str, Any]) -> str:
    parts = [content, style] + [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()]
    return slug("__".join(parts))


def sweep(
    contents: Mapping[str, ImageLike] | Sequence[ImageLike] | ImageLike,
    styles: Mapping[str, ImageLike] | Sequence[ImageLike] | ImageLike,
    base: StyleConfig | None = None,
    vary: Mapping[str, Sequence[Any]] | None = None,
    out: str | Path = "results/sweeps/sweep",
    progress: bool = True,
    callbacks: Sequence = (),
) -> SweepResult:
    """Run every combination of content × style × ``vary`` values (StyleConfig fields) from ``base``.
    Each cell is a run folder under ``out``; cells finished earlier are skipped, interrupted ones resumed.
    ``styles`` values may be lists to blend several styles in one cell."""
    base = base or StyleConfig()
    vary = dict(vary or {})
    base.replace(**{k: v[0] for k, v in vary.items()})  # unknown fields fail now, not after hours
    out = Path(out)
    contents, styles = _named(contents), _named(styles)
    combos = [dict(zip(vary, values)) for values in itertools.product(*vary.values())] or [{}]
    cells = SweepResult(SweepCell(c, s, o, out / cell_name(c, s, o)) for c in contents for s in styles for o in combos)
    configs = [base.replace(**cell.overrides) for cell in cells]
    total = sum(total_steps(cfg) for cfg in configs)
    bar = tqdm(total=total, desc=f"sweep {out.name}", disable=not progress, dynamic_ncols=True)
    try:
        for cell, config in zip(cells, configs):
            callbacks_here = [_SweepProgress(bar, f"{cell.content}×{cell.style}"), *callbacks]
            record = _record(cell.run_dir)
            if record.get("status") == "completed" and record.get("steps_done", 0) >= config.steps:
                cell.status = "skipped (done)"
                cell.history = Run.open(cell.run_dir).read_rows("losses.csv")
                bar.update(total_steps(config))
            elif record and (cell.run_dir / "checkpoint.npz").is_file():
                done = Run.open(cell.run_dir).load_arrays(keys=("level", "step"))
                earlier = schedule(config, config.size)[: int(done["level"])]
                bar.update(int(done["step"]) + sum(scale.steps for scale in earlier))
                result = resume(cell.run_dir, callbacks=callbacks_here, progress=False, steps=config.steps)
                cell.status, cell.history = f"resumed, {result.status}", result.history
            else:
                if cell.run_dir.exists():  # a start that never reached a checkpoint: keep it aside
                    cell.run_dir.rename(_free(cell.run_dir.with_name(cell.run_dir.name + ".incomplete")))
                result = stylize(
                    contents[cell.content],
                    styles[cell.style],
                    config,
                    out=out,
                    name=cell.run_dir.name,
                    timestamp=False,
                    callbacks=callbacks_here,
                    progress=False,
                )
                cell.status, cell.history = result.status, result.history
            cell.final = cell.history[-1] if cell.history else {}
            if cell.status.endswith(("interrupted", "stopped")):
                break
    finally:
        bar.close()
    if any(c.status != "pending" for c in cells):
        out.mkdir(parents=True, exist_ok=True)
        cells.to_csv(out / "sweep.csv")
    return cells


def _record(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _free(path: Path) -> Path:
    candidate, i = path, 1
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}-{i}")
    return candidate
