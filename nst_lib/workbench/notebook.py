"""What every notebook's first cells need: the repository root as working directory, the device, QUICK
sizing (papermill parameter) and where figures go. Full-mode figures go to ``results/figures/``;
QUICK-mode figures to ``results/quick_figures/`` so a CI run never overwrites the committed ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..features import imagenet_obtainable
from ..runs import device_name
from .viz import save_figure

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class NotebookEnv:
    name: str
    quick: bool
    root: Path
    fig_dir: Path
    device: str
    vgg19_weights: bool

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` in QUICK mode (tiny sizes and step counts for CI)."""
        return quick if self.quick else full

    def save(self, fig, stem: str, dpi: int = 150) -> list[Path]:
        paths = save_figure(fig, self.fig_dir / stem, dpi=dpi if not self.quick else 60)
        print("saved", ", ".join(str(p.relative_to(self.root)) for p in paths))
        return paths

    def data(self, kind: str, name: str) -> Path:
        matches = sorted((self.root / "data" / kind).glob(name + ".*"))
        if not matches:
            raise FileNotFoundError(f"data/{kind}/{name}.*")
        return matches[0]

    @property
    def weights(self) -> str | None:
        """'imagenet' when VGG19's weights are on disk or downloadable (Colab), else None (random: the figures
        say so)."""
        return "imagenet" if self.vgg19_weights else None


def _show_figures_inline() -> None:
    """Display matplotlib Figures returned by a cell as images (nst_lib never imports pyplot)."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})


def setup(name: str, quick: bool = False) -> NotebookEnv:
    """Change to the repository root, report the device and weights, and return the notebook's settings."""
    os.chdir(ROOT)
    _show_figures_inline()
    fig_dir = ROOT / "results" / ("quick_figures" if quick else "figures") / name
    env = NotebookEnv(name, bool(quick), ROOT, fig_dir, device_name(), imagenet_obtainable("vgg19"))
    print(f"{name}: {'QUICK' if quick else 'full'} mode on {env.device}; figures → {fig_dir.relative_to(ROOT)}")
    if not env.vgg19_weights:
        print("VGG19 ImageNet weights neither on disk nor downloadable: random weights (figures are labelled)")
    return env
