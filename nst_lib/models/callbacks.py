"""Keras callbacks that make a training run self-describing and resumable: per-step loss log, per-epoch
checkpoint + summary + sample grid from fixed noise, and a tqdm progress bar."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import keras
import numpy as np

from ..images import save_image


def tile(images: np.ndarray, cols: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """N×H×W×3 uint8 → one grid image, ``cols`` wide (√N by default), ``pad`` pixels of ``fill`` between."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = img
    return out


class StepLog(keras.callbacks.Callback):
    """Appends the model's raw per-step values (``model.step_values``) to ``losses.csv`` once per epoch."""

    def __init__(self, path: Path, steps_per_epoch: int):
        super().__init__()
        self.path, self.steps_per_epoch = Path(path), steps_per_epoch
        self.rows: list[dict] = []
        self.all_rows: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        row = {"step": self.epoch * self.steps_per_epoch + batch + 1, "epoch": self.epoch + 1}
        row.update({k: float(v.numpy()) for k, v in self.model.step_values.items()})
        self.rows.append(row)

    def on_epoch_end(self, epoch, logs=None):
        write_rows(self.path, self.rows)
        self.all_rows.extend(self.rows)


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: the sample grid from fixed inputs (``samples/epoch_NNN.png``, drawn by the model's
    ``sample_grid``), one row of epoch means and timing in ``epochs.csv``, and the checkpoint
    (``checkpoint.npz``, written atomically)."""

    def __init__(self, run_path: Path, sample_inputs, batch_size: int, steps_per_epoch: int, every: int = 1):
        super().__init__()
        self.path, self.sample_inputs, self.every = Path(run_path), sample_inputs, max(1, every)
        self.images_per_epoch = batch_size * steps_per_epoch
        self.rows: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.t0
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row.update(seconds=round(seconds, 3), images_per_s=round(self.images_per_epoch / seconds, 2))
        write_rows(self.path / "epochs.csv", [row])
        self.rows.append(row)
        if (epoch + 1) % self.every == 0:
            grid = self.model.sample_grid(self.sample_inputs)
            save_image(self.path / "samples" / f"epoch_{epoch + 1:03d}.png", grid)
        save_checkpoint(self.path, self.model, epoch + 1)


class Progress(keras.callbacks.Callback):
    """One tqdm bar over all remaining steps with the current epoch means."""

    def __init__(self, total_steps: int, initial: int, desc: str):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and batch % 5 == 0:
            self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)

    def close(self):
        self.bar.close()


def write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with Path(path).open(newline="") as f:
        return [{k: float(v) if k not in ("step", "epoch") else int(v) for k, v in r.items()} for r in csv.DictReader(f)]


def truncate_rows(path: Path, key: str, last: int) -> list[dict]:
    """Keep the rows with ``key`` ≤ ``last`` (a resumed run drops what came after its checkpoint)."""
    rows = [r for r in read_rows(path) if r[key] <= last]
    if Path(path).exists():
        Path(path).unlink()
    write_rows(Path(path), rows)
    return rows


def save_checkpoint(run_path: Path, model, epoch: int) -> None:
    tmp = Path(run_path) / "checkpoint.tmp.npz"
    np.savez(tmp, **model.get_state())
    tmp.replace(Path(run_path) / "checkpoint.npz")
    (Path(run_path) / "checkpoint.json").write_text(json.dumps({"epoch": epoch}))


def load_checkpoint(run_path: Path, model) -> int:
    """Restore the model's full state; returns the number of epochs it had completed (0 if none)."""
    path = Path(run_path) / "checkpoint.npz"
    if not path.exists():
        return 0
    with np.load(path) as z:
        model.set_state({k: z[k] for k in z.files})
    return int(json.loads((Path(run_path) / "checkpoint.json").read_text())["epoch"])
