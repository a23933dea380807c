"""Keras callbacks that make a training run self-describing and resumable, on the shared run-folder API
(``nst_lib.runs.Run``): per-step loss rows, per-epoch checkpoint + summary row + sample grid from fixed
inputs, and a tqdm progress bar."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
from tqdm.auto import tqdm

from ..runs import Run


class StepLog(keras.callbacks.Callback):
    """Appends the model's raw per-step values (``model.step_values``) to ``losses.csv`` once per epoch."""

    def __init__(self, run: Run, steps_per_epoch: int):
        super().__init__()
        self.run, self.steps_per_epoch = run, steps_per_epoch
        self.rows: list[dict] = []
        self.all_rows: list[dict] = []
        self.steps_run = 0  # also those of an epoch cut short, which are not kept but took their time

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps_run += 1
        row = {"step": self.epoch * self.steps_per_epoch + batch + 1, "epoch": self.epoch + 1}
        row.update({k: float(v.numpy()) for k, v in self.model.step_values.items()})
        self.rows.append(row)

    def on_epoch_end(self, epoch, logs=None):
        self.run.append_rows("losses.csv", self.rows)
        self.all_rows.extend(self.rows)


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: the sample grid from fixed inputs (``samples/epoch_NNN.png``, drawn by the model's
    ``sample_grid``), one row of epoch means and timing in ``epochs.csv``, and the checkpoint."""

    def __init__(self, run: Run, sample_inputs, batch_size: int, steps_per_epoch: int, every: int = 1):
        super().__init__()
        self.run, self.sample_inputs, self.every = run, sample_inputs, max(1, every)
        self.images_per_epoch = batch_size * steps_per_epoch
        self.rows: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.t0
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row.update(seconds=round(seconds, 3), images_per_s=round(self.images_per_epoch / seconds, 2))
        self.run.append_rows("epochs.csv", [row])
        self.rows.append(row)
        if (epoch + 1) % self.every == 0:
            self.run.save_image(f"samples/epoch_{epoch + 1:03d}.png", self.model.sample_grid(self.sample_inputs))
        save_checkpoint(self.run, self.model, epoch + 1)


class Progress(keras.callbacks.Callback):
    """One tqdm bar over all remaining steps with the current epoch means."""

    def __init__(self, total_steps: int, initial: int, desc: str):
        super().__init__()
        self.bar = tqdm(total=total_steps, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and batch % 5 == 0:
            self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)

    def close(self):
        self.bar.close()


def save_checkpoint(run: Run, model, epoch: int) -> None:
    """The model's whole state and the epochs it has completed, in one atomic .npz (``checkpoint.json`` repeats
    the epoch count for people and for readers of earlier folders)."""
    run.save_arrays({**model.get_state(), "epochs_done": np.asarray(epoch)})
    tmp = run.path / "checkpoint.json.tmp"  # a stop mid-write keeps the earlier file
    tmp.write_text(json.dumps({"epoch": epoch}))
    tmp.replace(run.path / "checkpoint.json")


def load_checkpoint(run: Run, model) -> int:
    """Restore the model's full state; returns the number of epochs it had completed (0 if none)."""
    state = run.load_arrays()
    if state is None:
        return 0
    epochs = state.pop("epochs_done", None)
    model.set_state(state)
    if epochs is None:  # written before the count was kept in the checkpoint itself
        return int(json.loads((run.path / "checkpoint.json").read_text())["epoch"])
    return int(epochs)


def epochs_done(run: Run) -> int:
    path = run.path / "checkpoint.json"
    return int(json.loads(path.read_text())["epoch"]) if path.is_file() else 0
