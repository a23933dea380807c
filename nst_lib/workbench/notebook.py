"""What every notebook's first cells need: the repository root as working directory, the device, QUICK sizing
(papermill parameter), where results and figures go, and a record of the numbers a notebook reports.

Full-mode figures go to ``results/figures/<notebook>/``; QUICK-mode figures to ``results/quick_figures/`` so a CI
run never overwrites the committed ones. ``NST_RESULTS_DIR`` moves ``results/`` elsewhere (on Colab: Google Drive,
which the setup cell mounts when the parameters cell sets ``RESULTS_TO_DRIVE = True``).

Each notebook's setup cell (the cell after the parameters) is generated here from the repository URL in
``pyproject.toml`` (``[project.urls] Repository``), as are the Colab links; ``python -m nst_lib.workbench.notebook
--write`` rewrites the notebooks after a change, without it lists those that drifted (a test runs the check).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PYPROJECT = ROOT / "pyproject.toml"
DISTRIBUTION = "nst-workbench"
BRANCH = "main"
DRIVE_RESULTS = "/content/drive/MyDrive/nst-workbench/results"

# What a notebook needs beyond the package's own dependencies: {notebook: extras of pyproject.toml}
NOTEBOOK_EXTRAS = {"08_cnn_vs_vqgan": ("clip",)}
# The module each extra's requirement provides, so the setup cell can tell whether it is installed
REQUIREMENT_MODULES = {"keras-hub": "keras_hub"}
SETUP_MARKER = "# Setup (generated"
COLAB_MARKER = "**Colab.**"


# --- the repository URL, in one place ---------------------------------------------------------------------------
def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(PYPROJECT.read_text())


def repository_url() -> str:
    """``[project.urls] Repository`` of pyproject.toml; from the installed package's metadata when the source tree
    is not beside this module."""
    if PYPROJECT.is_file():
        return _pyproject()["project"]["urls"]["Repository"]
    from importlib.metadata import metadata

    for entry in metadata(DISTRIBUTION).get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise LookupError(f"{DISTRIBUTION} names no Repository URL")


def github_repo(url: str | None = None) -> str:
    """'owner/name' of a GitHub repository URL."""
    url = url or repository_url()
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?", url)
    if not match:
        raise ValueError(f"not a GitHub repository URL: {url}")
    return match.group(1)


def colab_url(name: str, url: str | None = None) -> str:
    return f"https://colab.research.google.com/github/{github_repo(url)}/blob/{BRANCH}/notebooks/{name}.ipynb"


def colab_badge(name: str, url: str | None = None) -> str:
    """The README's "Open in Colab" badge for a notebook."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name, url)})"


def extra_requirements(name: str) -> list[str]:
    """The requirements of the extras a notebook needs (``NOTEBOOK_EXTRAS``), as pyproject.toml lists them."""
    extras = _pyproject()["project"]["optional-dependencies"]
    return [req for extra in NOTEBOOK_EXTRAS.get(name, ()) for req in extras[extra]]


def _module_of(requirement: str) -> str:
    dist = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return REQUIREMENT_MODULES.get(dist, dist.replace("-", "_"))


# --- generated cells -------------------------------------------------------------------------------------------
_SETUP = """\
# Setup (generated from pyproject.toml by `python -m nst_lib.workbench.notebook --write`: edit it there).
# Colab or local: installs nst_lib when it is missing (a fresh Colab runtime clones the repository first) and what
# this notebook needs besides; RESULTS_TO_DRIVE = True (parameters cell) keeps results in Google Drive.
import importlib.util, os, subprocess, sys
from pathlib import Path

REPO_URL = os.environ.get("NST_REPO_URL", {url})
NEEDS = {needs}  # {{module: requirement}} beyond the package's own


class SetupError(Exception):  # shown as one line, without a traceback
    def _render_traceback_(self):
        return [f"nst setup: {{self}}"]


def _last_line(proc):
    return (proc.stderr.strip().splitlines() or ["no message"])[-1]


if RESULTS_TO_DRIVE and not os.environ.get("NST_RESULTS_DIR"):
    try:
        from google.colab import drive
    except ImportError:
        raise SetupError("RESULTS_TO_DRIVE works on Colab only; elsewhere set NST_RESULTS_DIR to a folder") from None
    drive.mount("/content/drive")
    os.environ["NST_RESULTS_DIR"] = {drive}
if importlib.util.find_spec("nst_lib") is None:
    root = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "nst_lib").is_dir()), None)
    if root is None:  # a fresh Colab runtime
        root = Path("nst-workbench").resolve()
        if not root.exists():
            git = subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(root)], capture_output=True, text=True)
            if git.returncode:
                raise SetupError(f"could not clone {{REPO_URL}} ({{_last_line(git)}}): set os.environ['NST_REPO_URL'] "
                                 "to your copy's Git URL (or upload the repository folder) and run this cell again")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", root], capture_output=True, text=True)
    if pip.returncode:
        raise SetupError(f"pip could not install {{root}} ({{_last_line(pip)}}): fix that and run this cell again")
    sys.path.insert(0, str(root))
missing = [req for module, req in NEEDS.items() if importlib.util.find_spec(module) is None]
if missing:
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], capture_output=True, text=True)
    if pip.returncode:
        raise SetupError(f"pip could not install {{' '.join(missing)}} ({{_last_line(pip)}}): this notebook needs it")

from nst_lib.workbench.notebook import setup
QUICK = QUICK or os.environ.get("NST_QUICK") == "1"
ENV = setup({name}, QUICK)"""


def setup_cell(name: str, url: str | None = None) -> str:
    """The source of notebook ``name``'s setup cell."""
    needs = {_module_of(req): req for req in extra_requirements(name)}
    # json.dumps writes Python literals here (strings and a dict of strings), in the notebooks' double quotes
    values = {"url": url or repository_url(), "needs": needs, "drive": DRIVE_RESULTS, "name": name}
    return _SETUP.format(**{k: json.dumps(v) for k, v in values.items()})


def colab_note(name: str, url: str | None = None) -> str:
    """The paragraph that ends every notebook's first markdown cell."""
    drive = DRIVE_RESULTS.removeprefix("/content/drive/")
    return (
        f"{COLAB_MARKER} [Open this notebook in Colab]({colab_url(name, url)}): the setup cell installs everything. "
        "Runs and figures go to `results/` in the clone, which a runtime reset deletes: set `RESULTS_TO_DRIVE = True` "
        f"in the parameters cell to mount Google Drive and keep them in `{drive}` (or set the environment variable "
        "`NST_RESULTS_DIR` to any folder)."
    )


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def sync_notebook(path: Path, write: bool = False, url: str | None = None) -> list[str]:
    """What differs between a notebook and its generated parts (the setup cell, the Colab note of its first
    cell, the RESULTS_TO_DRIVE parameter); with ``write`` the notebook is brought in line."""
    name = path.stem
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    problems = []
    first = _source(cells[0])
    intro = first.split(f"\n\n{COLAB_MARKER}")[0].rstrip("\n")
    if first != f"{intro}\n\n{colab_note(name, url)}":
        problems.append("first markdown cell: Colab note")
        cells[0]["source"] = _lines(f"{intro}\n\n{colab_note(name, url)}")
    params = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    if not re.search(r"^RESULTS_TO_DRIVE = ", _source(cells[params]), re.M):
        problems.append("parameters cell: RESULTS_TO_DRIVE")
        text = _source(cells[params]).rstrip("\n")
        line = "RESULTS_TO_DRIVE = False  # Colab: True mounts Google Drive and keeps runs and figures there"
        cells[params]["source"] = _lines(f"{text}\n{line}")
    setup_index = params + 1
    if _source(cells[setup_index]) != setup_cell(name, url):
        problems.append("setup cell")
        cells[setup_index]["source"] = _lines(setup_cell(name, url))
    if write and problems:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return problems


def sync_notebooks(write: bool = False, folder: Path = NOTEBOOKS) -> dict[str, list[str]]:
    """{notebook: what drifted} over every notebook in ``folder``."""
    out = {}
    for path in sorted(folder.glob("*.ipynb")):
        problems = sync_notebook(path, write)
        if problems:
            out[path.stem] = problems
    return out


# what a figure made without VGG19's ImageNet weights says (its images are a random network's: not a result)
RANDOM_WEIGHTS_LABEL = "random VGG19 weights: not a result"


# --- the numbers a notebook reports ------------------------------------------------------------------------------
@dataclass
class NotebookEnv:
    name: str
    quick: bool
    root: Path
    fig_dir: Path
    device: str
    vgg19_weights: bool
    results: Path = None  # where runs go: NST_RESULTS_DIR or <root>/results
    numbers: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        self.results = self.results or self.root / "results"

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` in QUICK mode (tiny sizes and step counts for CI)."""
        return quick if self.quick else full

    def save(self, fig, stem: str, dpi: int = 150) -> list[Path]:
        """Write ``fig`` as PNG and PDF beside the notebook's other figures. Without VGG19's ImageNet weights a
        figure that does not already say so is labelled as made with random weights."""
        from matplotlib.text import Text

        from .viz import save_figure

        if not self.vgg19_weights and not any("random" in t.get_text().lower() for t in fig.findobj(Text)):
            fig.text(0.5, 0.0, RANDOM_WEIGHTS_LABEL, ha="center", va="bottom", fontsize=8, color="firebrick")
        paths = save_figure(fig, self.fig_dir / stem, dpi=dpi if not self.quick else 60)
        print("saved", ", ".join(_shown(p, self.root) for p in paths))
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

    @property
    def weights_note(self) -> str | None:
        """A figure's footnote: None with VGG19's ImageNet weights, else the random-weights label."""
        return None if self.vgg19_weights else RANDOM_WEIGHTS_LABEL

    def weights_for(self, arch: str) -> str | None:
        """'auto' where ``arch``'s ImageNet weights are on disk or downloadable (VGG16's torchvision file counts),
        else None: random weights, which the figure must say. VGG19's are ``weights``; a model's VGG16 perceptual
        loss or a VGG16 measure asks here, since one file can be present without the other."""
        from ..features import imagenet_obtainable

        return "auto" if imagenet_obtainable(arch) else None

    @property
    def numbers_file(self) -> Path:
        return self.fig_dir / "numbers.json"

    def setting(self, **values: Any) -> None:
        """Record the settings the reported numbers were measured with (sizes, steps, epochs, …)."""
        self.settings.update(values)
        self._write_numbers()

    def record(self, key: str, value: float, low: float | None = None, high: float | None = None, what: str = ""):
        """Record one number this notebook reports, with the bounds it must lie in (``low``/``high``; None = no
        bound) and what it is, in ``numbers.json`` beside the figures (with the machine, versions, settings and
        date). A number that is not finite or out of bounds is recorded as it is, with a printed warning; the
        notebook test fails on it. Returns the value."""
        value = float("nan") if value is None else float(value)  # a measurement that did not happen: not finite
        self.numbers[key] = {"value": value, "low": low, "high": high, "what": what}
        if not within(value, low, high):
            print(f"warning: {self.name}: {key} = {value} is outside [{low}, {high}]", file=sys.stderr)
        self._write_numbers()
        return value

    def _write_numbers(self) -> None:
        from ..backend import machine

        self.fig_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "notebook": self.name,
            "mode": "QUICK" if self.quick else "full",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            # every number says whether VGG19 had its ImageNet weights (random ones are no result)
            "settings": {"vgg19_weights": "imagenet" if self.vgg19_weights else "random", **self.settings},
            "numbers": self.numbers,
        }
        self.numbers_file.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=_plain) + "\n")


def within(value: float, low: float | None, high: float | None) -> bool:
    """``value`` is finite and inside [low, high] (a None bound is open)."""
    return math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)


def _plain(value):
    """JSON for the settings' NumPy scalars and arrays, tuples of them and paths."""
    if hasattr(value, "tolist"):  # a NumPy array or scalar (an array's .item() raises for more than one value)
        return value.tolist()
    return str(value)


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


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


def results_dir() -> Path:
    """``NST_RESULTS_DIR`` when set (e.g. a Google Drive folder), else ``results/`` in the repository."""
    return Path(os.environ.get("NST_RESULTS_DIR") or ROOT / "results").expanduser()


def setup(name: str, quick: bool = False) -> NotebookEnv:
    """Change to the repository root, report the device and weights, and return the notebook's settings."""
    from ..features import imagenet_obtainable
    from ..runs import device_name

    os.chdir(ROOT)
    _show_figures_inline()
    results = results_dir()
    fig_dir = results / ("quick_figures" if quick else "figures") / name
    env = NotebookEnv(name, bool(quick), ROOT, fig_dir, device_name(), imagenet_obtainable("vgg19"), results)
    print(f"{name}: {'QUICK' if quick else 'full'} mode on {env.device}; figures → {_shown(fig_dir, ROOT)}")
    if not env.vgg19_weights:
        print("VGG19 ImageNet weights neither on disk nor downloadable: random weights (figures are labelled)")
    return env


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nst_lib.workbench.notebook",
        description="Check or rewrite the notebooks' generated parts (setup cell, Colab note) from pyproject.toml",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the notebooks that drifted")
    args = parser.parse_args(argv)
    drifted = sync_notebooks(write=args.write)
    for name, problems in drifted.items():
        print(f"{name}: {'rewrote' if args.write else 'drifted'}: {', '.join(problems)}")
    return 1 if drifted and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
