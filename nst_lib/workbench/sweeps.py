"""Sweeps: a grid of StyleConfig variations (contents × styles × any fields), each cell a normal run folder.

    result = sweep({"tubingen": "data/content/tubingen_neckarfront.jpg"},
                   {"starry": "data/style/vangogh_starry_night.jpg"},
                   vary={"arch": ["vgg16", "vgg19"], "style_weight": [1e-4, 1e-3, 1e-2]},
                   out="results/sweeps/arch_x_beta")
    fig = result.figure(rows="arch", cols="style_weight")

Cell folders are named after the cell (``tubingen__starry__arch=vgg16__style_weight=0.001``), so running
the same sweep again skips finished cells and resumes interrupted ones. In-process (``executor="local"``), cells
run one after another: batching cells of equal size was measured on CPU and not faster
(benchmarks/results/batch.json). With ``executor="ray"`` each cell is a Ray task on a local Ray or a cluster
(``ray_executor``); the cells, their folders and the table are the same.
"""

from __future__ import annotations

import csv
import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..config import CELL_RETRIES, EXECUTORS, OUTPUT_FIELDS, PRESETS, StyleConfig
from ..errors import ConfigError
from ..images import ImageLike, pixel_digest, read_image, source_name, style_list
from ..optim import Callback, StepInfo
from ..runs import Run, changed_setting, hold, slug
from ..transfer import resume, stylize, tiff_to_write, total_steps
from .ray_executor import failed_status
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

    @property
    def finished(self) -> bool:
        """Ran (or had run) all its steps: ``completed``, ``skipped (done)``, ``resumed, completed``."""
        return self.status.endswith(("completed", "(done)"))

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

    @property
    def failed(self) -> list[SweepCell]:
        """Cells that raised or whose worker died (status ``failed: …``); the next call resumes them."""
        return [c for c in self if c.status.startswith("failed")]

    def summary(self) -> str:
        """The table as aligned text: one line per cell (content, style, varied fields, status, final losses)."""
        rows = [{k: _short(v) for k, v in row.items() if k != "run_dir"} for row in self.table()]
        if not rows:
            return ""
        keys = list(dict.fromkeys(k for row in rows for k in row))
        widths = {k: max(len(k), *(len(row.get(k, "")) for row in rows)) for k in keys}
        lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
        lines += ["  ".join(row.get(k, "").ljust(widths[k]) for k in keys) for row in rows]
        return "\n".join(line.rstrip() for line in lines)

    def to_csv(self, path: str | Path) -> Path:
        rows = self.table()
        path = Path(path)
        with path.open("w", newline="") as fh:
            # every row's columns: a failed or pending first cell has no final losses
            writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        return path

    def grid(self, rows: str, cols: str, **fixed: Any):
        """(images, row_labels, col_labels) with one row per value of ``rows`` and one column per value of
        ``cols``, among the cells matching ``fixed``; a missing combination, and a cell that has not finished
        (pending, failed, stopped part-way: its output would be a half-optimised image), is None."""
        cells = self._matching(fixed)
        row_values = list(dict.fromkeys(c.value(rows) for c in cells))
        col_values = list(dict.fromkeys(c.value(cols) for c in cells))
        lookup = {}
        for c in cells:
            key = (c.value(rows), c.value(cols))
            if key in lookup:
                raise ValueError(f"several cells for {rows}={key[0]!r}, {cols}={key[1]!r}: fix the other fields")
            lookup[key] = c
        images = [
            [lookup[(r, k)].image if (r, k) in lookup and lookup[(r, k)].finished else None for k in col_values]
            for r in row_values
        ]
        return images, [_label(rows, r) for r in row_values], [_label(cols, k) for k in col_values]

    def _matching(self, fixed: Mapping[str, Any]) -> list[SweepCell]:
        """The cells whose values are those of ``fixed`` (a list as the tuple the cells hold)."""
        fixed = {k: _hashable(v) for k, v in fixed.items()}
        return [c for c in self if all(c.value(k) == v for k, v in fixed.items())]

    def figure(self, rows: str, cols: str, title: str | None = None, footnote: str | None = None, **fixed: Any):
        images, row_labels, col_labels = self.grid(rows, cols, **fixed)
        unfinished = [c for c in self._matching(fixed) if not c.finished]
        if unfinished:  # a blank square says why
            blank = (
                f"blank: {len(unfinished)} cell(s) not finished ({', '.join(sorted({c.status for c in unfinished}))})"
            )
            footnote = f"{footnote}; {blank}" if footnote else blank
        return image_grid(images, row_labels, col_labels, title, footnote=footnote)


def _hashable(value: Any) -> Any:
    """A list (a spec file's style_layers) as the tuple StyleConfig holds: cells are looked up by value."""
    return tuple(value) if isinstance(value, list) else value


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
    names = []
    for i, img in enumerate(images):
        name = source_name(img)
        names.append((Path(name).stem, Path(name).parent.name) if not name.startswith("<") else (f"image{i}", ""))
    stems = [stem for stem, _ in names]
    # two files of one name in different folders: each named after its folder too, never one dropped for the other
    keys = [f"{parent}_{stem}" if stems.count(stem) > 1 and parent else stem for stem, parent in names]
    if len(set(keys)) < len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"two images would both be named {twice!r} in the sweep: pass them as a dict of names")
    return dict(zip(keys, images))


class _SweepProgress(Callback):
    def __init__(self, bar, label: str):
        self.bar, self.label = bar, label

    def on_step(self, info: StepInfo):
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.label} loss={info.losses['total']:.3g}", refresh=False)


def run_cell(cell: SweepCell, config: StyleConfig, content: ImageLike, style: ImageLike, callbacks, report) -> None:
    """One cell, wherever it runs (this process or a Ray worker): skipped when its folder holds a completed run,
    resumed from its checkpoint when it holds an interrupted one, started otherwise. ``report(n)`` is told the
    steps already done before any step runs (the progress bar's offset), and the steps the sweep planned for the
    cell when it completes; ``callbacks`` see every step. A cell another process is running (a second sweep of the
    same spec) fails with ``RunInUseError``."""
    cell.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with hold(cell.run_dir):  # from before its folder is looked at to the end of its run
        _run_cell(cell, config, content, style, callbacks, report)


def _run_cell(cell: SweepCell, config: StyleConfig, content: ImageLike, style: ImageLike, callbacks, report) -> None:
    record = _record(cell.run_dir)
    changed = other_run(record, config, content, style)
    if changed:  # another sweep's result under this cell's name: kept aside, never reused as this one's
        aside = _free(cell.run_dir.with_name(cell.run_dir.name + ".other-settings"))
        warnings.warn(
            f"sweep cell {cell.run_dir.name} was run with {changed}; that run moved to {aside.name}", stacklevel=2
        )
        cell.run_dir.rename(aside)
        record = {}
    # a finished cell asked for a TIFF it did not write goes through resume, which writes it (no step runs) from
    # its checkpoint; without one it is kept as it is, with a warning
    done = record.get("status") == "completed" and record.get("steps_done", 0) >= config.steps
    tiff_missing = done and tiff_to_write(cell.run_dir, config)
    if done and not tiff_missing:
        cell.status = "skipped (done)"
        cell.history = Run.open(cell.run_dir).read_rows("losses.csv")
        report(total_steps(config))
    elif record and (cell.run_dir / "checkpoint.npz").is_file():
        run = Run.open(cell.run_dir)
        done = run.load_arrays(keys=("level", "step"))
        at = (int(done["level"]), int(done["step"]))  # the steps the resume keeps, as resume counts them
        report(sum((row["level"], row["step"]) <= at for row in run.read_rows("losses.csv")))
        # more steps, and what this call asks it to write (snapshots, the TIFF)
        outputs = {name: getattr(config, name) for name in OUTPUT_FIELDS}
        result = resume(cell.run_dir, callbacks=callbacks, progress=False, steps=config.steps, **outputs)
        cell.status, cell.history = f"resumed, {result.status}", result.history
    else:
        if cell.run_dir.exists():  # a start that never reached a checkpoint: keep it aside
            cell.run_dir.rename(_free(cell.run_dir.with_name(cell.run_dir.name + ".incomplete")))
        result = stylize(
            content,
            style,
            config,
            out=cell.run_dir.parent,
            name=cell.run_dir.name,
            timestamp=False,
            callbacks=callbacks,
            progress=False,
        )
        cell.status, cell.history = result.status, result.history
    cell.final = cell.history[-1] if cell.history else {}
    if cell.status.endswith("completed"):  # all its steps counted, as the sweep's total planned them (a coarse
        report(total_steps(config))  # scale too small for the network's layers is left out, and not run)


# fields a cell may change between calls without being another cell: more steps resume it, the rest is output
_RESUMABLE_FIELDS = ("steps", *OUTPUT_FIELDS)


def _changed_settings(record: dict, config: StyleConfig) -> str:
    return changed_setting(record.get("config") or {}, config.to_dict(), _RESUMABLE_FIELDS)


def changed_inputs(record: dict, content: ImageLike, style: ImageLike) -> str:
    """'content: a.png → b.png' where the cell's recorded run had other input files (compared by file name, so a
    moved repository or another working folder is the same cell), 'content: a.png (other pixels)' where a file
    of the same name now holds another image (records since the digests were kept); '' otherwise."""
    inputs = record.get("inputs")
    if not inputs:
        return ""
    sources = [content, *style_list(style)]
    wanted = {"content": [source_name(content)], "styles": [source_name(s) for s in sources[1:]]}
    for key, names in wanted.items():
        had = inputs.get(key)
        had = [had] if isinstance(had, str) else list(had or [])
        if [Path(n).name for n in had] != [Path(n).name for n in names]:
            return f"{key}: {', '.join(had)} → {', '.join(names)}"
    digests = inputs.get("digests")
    if digests and len(digests) == len(sources):
        for i, (src, digest) in enumerate(zip(sources, digests)):
            if _digest(src) != digest:
                return f"{'content' if i == 0 else 'styles'}: {source_name(src)} (other pixels)"
    return ""


_DIGESTS: dict[tuple, str] = {}  # (file, size, mtime) → its pixels' digest: a sweep's cells share a few inputs


def _digest(src: ImageLike) -> str:
    """``pixel_digest`` of ``src``; a file is decoded once a process while its size and modification time stay
    (each cell decoded every input again; a file rewritten to the same size within the clock's tick is missed)."""
    if not isinstance(src, (str, Path)):
        return pixel_digest(read_image(src))
    try:
        path = Path(src).expanduser()
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:  # read_image names the missing file
        return pixel_digest(read_image(src))
    if key not in _DIGESTS:
        _DIGESTS[key] = pixel_digest(read_image(src))
    return _DIGESTS[key]


def other_run(record: dict, config: StyleConfig, content: ImageLike, style: ImageLike) -> str:
    """Why a cell folder's recorded run is not this cell's ('' when it is): other settings or other input files."""
    return _changed_settings(record, config) or changed_inputs(record, content, style)


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
    executor: str = EXECUTORS[0],
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    workers: int | None = None,
    retries: int = CELL_RETRIES,
) -> SweepResult:
    """Run every combination of content × style × ``vary`` values (StyleConfig fields) from ``base``.
    Each cell is a run folder under ``out``; cells finished earlier are skipped, interrupted ones resumed.
    ``styles`` values may be lists to blend several styles in one cell.

    ``executor="local"`` runs the cells here, one after another. ``executor="ray"`` runs each cell as a Ray
    task (``pip install 'nst-workbench[ray]'``): on the Ray this process is connected to, else on the cluster at
    ``address`` (``"auto"``, ``"ray://head:10001"``), else on a local Ray started for the call with ``workers``
    CPUs (default: all). A cell takes one GPU where the cluster has GPUs and one CPU otherwise; ``resources``
    (Ray resource names: ``{"CPU": 2}``, ``{"GPU": 0.5}``, custom ones) overrides that. ``out`` must be a path
    every worker sees. A cell whose worker dies is run again up to ``retries`` times, each time from its last
    checkpoint; a cell that still fails is reported by name and its status in the table starts with
    ``failed``. Ctrl-C cancels the cells not yet started and stops the running ones at their next step, so
    every started cell can be resumed by calling ``sweep`` again. ``callbacks`` see every step where the cells run
    (with Ray, on the workers: they must pickle)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not one of local, ray")
    if executor == "ray":
        from .ray_executor import require_ray

        require_ray()  # before anything else: a missing extra fails at once
    base = base or StyleConfig()
    vary = {k: [_hashable(v) for v in values] for k, values in (vary or {}).items()}
    base.replace(**{k: v[0] for k, v in vary.items()})  # unknown fields fail now, not after hours
    out = Path(out)
    contents, styles = _named(contents), _named(styles)
    combos = [dict(zip(vary, values)) for values in itertools.product(*vary.values())] or [{}]
    cells = SweepResult(SweepCell(c, s, o, out / cell_name(c, s, o)) for c in contents for s in styles for o in combos)
    names = [cell.run_dir.name for cell in cells]
    for i, name in enumerate(names):  # names are cut at 120 characters, floats to 6 digits, accents dropped
        if name in names[:i]:
            first = cells[names.index(name)]
            raise ConfigError(
                f"two sweep cells would share the folder {name!r} ({first.content}, {first.style}, {first.overrides} "
                f"and {cells[i].content}, {cells[i].style}, {cells[i].overrides}): shorten the names or values"
            )
    configs = [base.replace(**cell.overrides) for cell in cells]
    total = sum(total_steps(cfg) for cfg in configs)
    desc = f"sweep {out.name}"
    try:
        if executor == "ray":
            from .ray_executor import run_on_ray

            run_on_ray(
                run_cell,
                cells,
                configs,
                contents,
                styles,
                callbacks,
                progress,
                total,
                desc,
                address,
                resources,
                workers,
                retries,
                other_run,
            )
        else:
            _run_local(cells, configs, contents, styles, callbacks, progress, total, desc)
    finally:  # also where a second Ctrl-C cut the wait for the stopping cells short: the table of what is known
        if any(c.status != "pending" for c in cells):
            out.mkdir(parents=True, exist_ok=True)
            cells.to_csv(out / "sweep.csv")
    for cell in cells.failed:
        warnings.warn(f"sweep cell {cell.run_dir.name} {cell.status}", stacklevel=2)
    return cells


def _run_local(cells, configs, contents, styles, callbacks, progress, total, desc) -> None:
    bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        for cell, config in zip(cells, configs):
            callbacks_here = [_SweepProgress(bar, f"{cell.content}×{cell.style}"), *callbacks]

            def report(done: int, start: int = bar.n) -> None:  # this cell's steps so far, done before this call
                bar.update(start + done - bar.n)

            try:
                run_cell(cell, config, contents[cell.content], styles[cell.style], callbacks_here, report)
            except Exception as exc:  # reported by name (and nst sweep exits 1); the other cells still run
                cell.status = failed_status(exc)
                continue
            if cell.status.endswith(("interrupted", "stopped")):
                break
    finally:
        bar.close()


def _record(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _free(path: Path) -> Path:
    candidate, i = path, 1
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}-{i}")
    return candidate


# --- sweep specs (``nst sweep SPEC``) ----------------------------------------------------------------------
SPEC_FIELDS = ("contents", "styles", "base", "preset", "vary", "out")


class SpecError(ConfigError):
    """A sweep spec that cannot be used; the message names the file and the field."""


def load_spec(path: str | Path, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """``sweep``'s arguments (contents, styles, base, vary, out) from a JSON or TOML file:

        out = "results/sweeps/beta"          # relative paths are relative to the spec file
        preset = "gatys2016"                 # optional; base's fields and ``overrides`` are applied on top
        [contents]                           # name = path (or a list of paths, or one path)
        tubingen = "data/content/tubingen_neckarfront.jpg"
        [styles]                             # a list of paths as a value blends them in one cell
        starry = "data/style/vangogh_starry_night.jpg"
        [base]                               # StyleConfig fields; the rest keep StyleConfig's defaults
        size = 256
        [vary]                               # StyleConfig field = list of values
        style_weight = [1e-4, 1e-3, 1e-2]

    ``preset`` and ``overrides`` (the command line's flags) take precedence over the file's, its ``vary`` too: a
    flag for a varied field fixes it at the flag's value. Every problem is a ``SpecError`` naming the file and
    the field."""
    path = Path(path)
    data = _read_spec(path)
    unknown = [k for k in data if k not in SPEC_FIELDS]
    if unknown:
        raise SpecError(f"{path}: unknown field {unknown[0]!r} (a spec has {', '.join(SPEC_FIELDS)})")
    here = path.resolve().parent
    contents = _spec_images(path, data, "contents", here)
    styles = _spec_images(path, data, "styles", here, blend=True)
    base_fields = data.get("base", {})
    if not isinstance(base_fields, Mapping):
        raise SpecError(f"{path}: base: a table of StyleConfig fields")
    base_fields = {k: _spec_value(path, f"base.{k}", k, v) for k, v in base_fields.items()}
    if preset is None:
        preset = data.get("preset", "default")
        if preset not in PRESETS:
            raise SpecError(f"{path}: preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    try:
        base = StyleConfig.preset(preset).replace(**base_fields)
    except ConfigError as err:
        raise SpecError(f"{path}: base: {err}") from None
    base = base.replace(**dict(overrides or {}))  # the command line's flags: their errors are not the file's
    vary = data.get("vary", {})
    if not isinstance(vary, Mapping):
        raise SpecError(f"{path}: vary: a table of StyleConfig field = list of values")
    checked = {}
    for key, values in vary.items():
        if key in (overrides or {}):
            continue
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: vary.{key}: a non-empty list of values")
        checked[key] = [_spec_value(path, f"vary.{key}", key, v) for v in values]
        for v in checked[key]:
            try:
                base.replace(**{key: v})
            except ConfigError as err:
                raise SpecError(f"{path}: vary.{key}: {err}") from None
    out = data.get("out", f"results/sweeps/{path.stem}")
    if not isinstance(out, str) or not out:
        raise SpecError(f"{path}: out: a folder path")
    return {"contents": contents, "styles": styles, "base": base, "vary": checked, "out": here / out}


def _read_spec(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read ({err})") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"{path}: not valid TOML ({err})") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"{path}: not valid JSON ({err})") from None
    else:
        raise SpecError(f"{path}: a sweep spec is a .json or .toml file")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a table (JSON object) of {', '.join(SPEC_FIELDS)}")
    return data


def _spec_images(path: Path, data: dict, key: str, here: Path, blend: bool = False) -> dict[str, Any]:
    if key not in data:
        raise SpecError(f"{path}: {key} is missing")
    value = data[key]
    named = value if isinstance(value, Mapping) else _named(value if isinstance(value, list) else [value])
    if not named:
        raise SpecError(f"{path}: {key} is empty")
    out = {}
    for name, images in named.items():
        where = f"{key}.{name}" if isinstance(value, Mapping) else key
        many = isinstance(images, list)
        if many and not blend:
            raise SpecError(f"{path}: {where}: one image path per content")
        files = []
        for image in images if many else [images]:
            if not isinstance(image, str):
                raise SpecError(f"{path}: {where}: an image path, got {image!r}")
            file = here / image
            if not file.is_file():
                raise SpecError(f"{path}: {where}: {file} not found")
            files.append(file)
        out[str(name)] = files if many else files[0]
    return out


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _spec_value(path: Path, where: str, key: str, value: Any) -> Any:
    """``value`` for StyleConfig field ``key`` if its type fits (TOML and JSON give ints for 1e3-free numbers)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(StyleConfig)
    if key not in {f.name for f in dataclasses.fields(StyleConfig)}:
        raise SpecError(f"{path}: {where}: unknown StyleConfig field")
    hint = hints[key]
    args = typing.get_args(hint)
    if type(None) in args and (value is None or value == "none"):
        return None
    kind = next((a for a in args if a is not type(None)), hint) if args else hint
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = value if isinstance(value, list) else [value]
        return [_check_type(path, where, item, v) for v in items]
    return _check_type(path, where, kind, value)


def _check_type(path: Path, where: str, kind: type, value: Any) -> Any:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise SpecError(f"{path}: {where}: expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
    return value
