"""Figures for reports: labelled image grids, loss curves and snapshot strips, exported to PNG and PDF."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: works headless and in threads


def _figure(width: float, height: float):
    return Figure(figsize=(width, height), constrained_layout=True)


def figure(width: float, height: float):
    """A blank matplotlib Figure (no pyplot) for composing panels with ``ax=`` arguments."""
    return _figure(width, height)


def image_grid(
    images: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_size: float = 2.4,
    footnote: str | None = None,
):
    """A rows × columns figure of images with row labels on the left and column labels on top.
    ``None`` cells stay blank. Returns a matplotlib Figure."""
    rows, cols = len(images), max(len(r) for r in images)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    fig = _figure(cell_size * cols + (0.6 if row_labels else 0), cell_size * rows + (0.5 if title else 0.2))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            image = images[i][j] if j < len(images[i]) else None
            if image is not None:
                ax.imshow(np.asarray(image).astype(np.uint8) if np.asarray(image).dtype != np.uint8 else image)
            if i == 0 and col_labels is not None:
                ax.set_title(col_labels[j], fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    if footnote:
        fig.supxlabel(footnote, fontsize=8, style="italic")
    return fig


def loss_curves(histories: Mapping[str, Sequence[dict]], keys=("content", "style"), title=None, log=True, ax=None):
    """Per-step loss terms of one or more runs (``StyleResult.history`` rows), one line per run and key."""
    fig = None
    if ax is None:
        fig = _figure(5.0, 3.2)
        ax = fig.subplots()
    for label, history in histories.items():
        steps = np.arange(1, len(history) + 1)
        for key in keys:
            ax.plot(steps, [row[key] for row in history], label=f"{label}: {key}" if len(histories) > 1 else key)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss term")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig if fig is not None else ax.figure


def training_curves(results, keys=("d_loss", "g_loss"), title=None, smooth: int = 1, ax=None, log=False):
    """Per-step loss terms of training runs (``{label: TrainResult}``), one line per run and key; ``smooth``
    > 1 draws a running mean over that many steps (raw GAN losses are noisy)."""
    fig = None
    if ax is None:
        fig = _figure(5.0, 3.2)
        ax = fig.subplots()
    for label, result in results.items():
        for key in keys:
            y = np.array([row[key] for row in result.steps], float)
            if smooth > 1 and len(y) >= smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = np.arange(1, len(y) + 1) + (smooth - 1 if smooth > 1 and len(result.steps) >= smooth else 0)
            ax.plot(x, y, label=f"{label}: {key}" if len(results) > 1 else key)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss" + (f" (running mean of {smooth})" if smooth > 1 else ""))
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return fig if fig is not None else ax.figure


def snapshot_strip(snapshots: Sequence[tuple[int, np.ndarray]], title: str | None = None, cell_size: float = 2.0):
    """One row of snapshots labelled by step."""
    return image_grid([[img for _, img in snapshots]], None, [f"step {s}" for s, _ in snapshots], title, cell_size)


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def save_figure(fig, path: str | Path, dpi: int = 150, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (a figure suffix of ``path`` is replaced; any other
    dot stays in the name: ``beta_0.5`` → ``beta_0.5.png``, not ``beta_0.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower().lstrip(".") in FIGURE_FORMATS:
        path = path.with_suffix("")
    written = []
    for fmt in formats:
        target = path.with_name(f"{path.name}.{fmt}")
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        written.append(target)
    return written
