"""Run folders: one self-describing folder per run, never overwritten, resumable.

    results/<YYYYmmdd-HHMMSS>_<name>/
        output.png          final image
        snapshots/          step_0050.png, ... (and last_good.png after a non-finite loss)
        losses.csv          step, level, total, content, style, tv, time_s (weighted terms; total = their sum)
        config.json         StyleConfig, inputs, versions, seed, device, status, timings
        inputs/             content.npy, style_0.npy, ... exactly what was optimised against (for resume)
        checkpoint.npz      image and optimiser state at the last checkpoint (for resume)
"""

from __future__ import annotations

import csv
import json
import platform
import re
import sys
import time
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import StyleConfig
from .errors import NSTError
from .images import save_image

LOSS_COLUMNS = ("step", "level", "total", "content", "style", "tv", "time_s")


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from . import __version__

    return {
        "nst_lib": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            return "GPU: " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        except Exception:  # details are best effort
            return "GPU: " + gpus[0].name
    return f"CPU: {platform.processor() or platform.machine()}"


def slug(text: str) -> str:
    """A folder-name-safe version of ``text`` (accents transliterated: 'Tübingen' → 'Tubingen')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._=+]+", "-", ascii_text).strip("-")[:120] or "run"


class Run:
    """A run folder. ``Run.create`` never reuses an existing folder; ``Run.open`` reads one back."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.record: dict[str, Any] = {}

    @classmethod
    def create(
        cls, root: str | Path = "results", name: str = "run", timestamp: bool = True, subdirs=("snapshots", "inputs")
    ) -> Run:
        """A new folder ``root/<time>_<name>`` (``root/<name>`` without timestamp); a taken name gets -2, -3…"""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        stem = f"{datetime.now():%Y%m%d-%H%M%S}_{slug(name)}" if timestamp else slug(name)
        for i in range(1, 10_000):
            path = root / (stem if i == 1 else f"{stem}-{i}")
            try:
                path.mkdir()  # atomic: fails if another run took the name
            except FileExistsError:
                continue
            for sub in subdirs:
                (path / sub).mkdir()
            return cls(path)
        raise NSTError(f"{root}: cannot find a free run folder name for {stem}")

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise NSTError(f"{path}: not a run folder (no config.json)")
        run = cls(path)
        run.record = json.loads((path / "config.json").read_text())
        return run

    # --- writing -------------------------------------------------------------------------------------
    def write_record(self, **fields: Any) -> None:
        self.record.update(fields)
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=2, default=str))
        tmp.replace(self.path / "config.json")

    def start(self, config: StyleConfig, inputs: dict[str, Any]) -> None:
        self.write_record(
            config=config.to_dict(),
            inputs=inputs,
            seed=config.seed,
            versions=versions(),
            device=device_name(),
            status="running",
            started=datetime.now().isoformat(timespec="seconds"),
        )

    def save_inputs(self, content: np.ndarray, styles: list[np.ndarray]) -> None:
        np.save(self.path / "inputs" / "content.npy", content.astype(np.float32))
        save_image(self.path / "inputs" / "content.png", content)
        for i, s in enumerate(styles):
            np.save(self.path / "inputs" / f"style_{i}.npy", s.astype(np.float32))
            save_image(self.path / "inputs" / f"style_{i}.png", s)

    def load_inputs(self) -> tuple[np.ndarray, list[np.ndarray]]:
        content = np.load(self.path / "inputs" / "content.npy")
        styles = [np.load(p) for p in sorted((self.path / "inputs").glob("style_*.npy"), key=_index)]
        return content, styles

    def save_snapshot(self, step: int, image: np.ndarray, name: str | None = None) -> Path:
        return save_image(self.path / "snapshots" / (name or f"step_{step:05d}.png"), image)

    def save_losses(self, history: list[dict]) -> None:
        tmp = self.path / "losses.csv.tmp"
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        tmp.replace(self.path / "losses.csv")

    def load_losses(self) -> list[dict]:
        path = self.path / "losses.csv"
        if not path.is_file():
            return []
        with path.open() as fh:
            return [
                {k: (int(v) if k in ("step", "level") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]

    def save_checkpoint(self, level: int, step: int, x: np.ndarray, optimizer_state: dict, history: list) -> None:
        tmp = self.path / "checkpoint.tmp.npz"
        np.savez(tmp, level=level, step=step, x=x, **{f"opt_{k}": v for k, v in optimizer_state.items()})
        tmp.replace(self.path / "checkpoint.npz")
        self.save_losses(history)

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.path / "checkpoint.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            state = {k: data[k] for k in data.files}
        return {
            "level": int(state["level"]),
            "step": int(state["step"]),
            "x": state["x"],
            "optimizer": {k[4:]: v for k, v in state.items() if k.startswith("opt_")},
        }

    def finish(self, image: np.ndarray, status: str, timings: dict[str, float], steps_done: int) -> None:
        save_image(self.path / "output.png", image)
        self.write_record(
            status=status,
            steps_done=steps_done,
            timings=timings,
            finished=datetime.now().isoformat(timespec="seconds"),
        )


def _index(path: Path) -> int:
    return int(path.stem.split("_")[-1])


class Timer:
    """Accumulates wall time per phase: ``with timer('optimise'): ...``."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, phase: str):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[phase] = timer.times.get(phase, 0.0) + time.perf_counter() - self.t

        return _Phase()

    def summary(self, steps: int) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.times.items()}
        out["total"] = round(time.perf_counter() - self._t0, 3)
        if steps and "optimise" in self.times:
            out["per_step"] = round(self.times["optimise"] / steps, 4)
        return out
