"""``train`` / ``resume_training`` / ``load_trained``: every model trains with ``model.fit`` into a run folder.

    results/<YYYYmmdd-HHMMSS>_<name>/
        config.json       model kind and config (each default's source in the model's config class),
                          dataset spec and size, epochs, seed, versions, device, status, timings
        losses.csv        step, epoch, and the raw value of each loss term at that step
        epochs.csv        epoch means of the same terms, seconds, images/s
        samples/          epoch_001.png, ... grids from the same fixed latents every epoch
        output.png        the last grid
        checkpoint.npz    weights, BatchNorm statistics, optimiser moments, noise-generator state
        checkpoint.json   epochs completed

A run stopped at any point (Ctrl-C, a crash) resumes from its last completed epoch and then continues
exactly as the uninterrupted run would have: data order and noise are functions of the seed and the
epoch/state, and everything else is in the checkpoint. Models are rebuilt from a record by the registry
(``registry.build_model``), which also loads what a model depends on.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..runs import Run
from .callbacks import EpochEnd, Progress, StepLog, epochs_done, load_checkpoint
from .data import from_spec
from .registry import build_model, load_start_weights, load_trained
from .style_vae import STAGES, StyleVAE, StyleVAEConfig


@dataclass
class TrainResult:
    """What ``train`` returns: the model, its run folder, per-step and per-epoch histories."""

    model: Any
    run_dir: Path | None
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    status: str = "completed"
    timings: dict[str, float] = field(default_factory=dict)

    def losses(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.steps])

    def samples(self) -> list[tuple[int, np.ndarray]]:
        """(epoch, sample grid) for every saved grid."""
        return [] if self.run_dir is None else Run(self.run_dir).numbered_images("samples", "epoch_*.png")


def train(
    model,
    data,
    epochs: int,
    *,
    out: str | Path = "results",
    name: str | None = None,
    timestamp: bool = True,
    samples: int = 64,
    sample_seed: int = 1234,
    sample_every: int = 1,
    callbacks=(),
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (a DCGAN, VAEGAN, ...) on ``data`` (an ``nst_lib.data.ImageFolder``; a StyleVAE takes
    an ``nst_lib.data.ContentStyleData``) for ``epochs`` epochs into a new run folder ``out/<time>_<name>``.
    A sample grid (``samples`` latents drawn from ``sample_seed``, or fixed images) is drawn after every
    ``sample_every`` epochs. Ctrl-C stops after the current step; the run folder then
    resumes from its last completed epoch with ``resume_training``."""
    if epochs < 1:
        raise ConfigError("epochs must be ≥ 1")
    if data.size != model.config.image_size:
        raise ConfigError(
            f"data is {data.size} px, the model {model.config.image_size} px: "
            f"load it with size={model.config.image_size}"
        )
    load_start_weights(model)  # a style-VAE stage whose config names the previous stage's run
    run = Run.create(out, name or model.kind, timestamp=timestamp, subdirs=("samples",))
    run.begin(
        "training",
        model=model.kind,
        model_config=model.config.to_dict(),
        data={**data.spec, "images": len(data), "skipped": len(data.skipped)},
        epochs=int(epochs),
        samples={"n": samples, "seed": sample_seed, "every": sample_every},
        seed=model.config.seed,
    )
    return _fit(model, data, run, 0, epochs, callbacks, progress)


def resume_training(
    run_dir: str | Path, data=None, *, epochs: int | None = None, callbacks=(), progress: bool = True
) -> TrainResult:
    """Continue a training run from its last checkpoint up to ``epochs`` (default: the epochs it was started
    with). ``data`` defaults to the dataset recorded in the run (a folder or the bundled tiny set)."""
    run = Run.open(run_dir, kind="training")
    model = build_model(run.record["model"], run.record["model_config"], start_weights=False)
    if data is None:
        data = from_spec({k: v for k, v in run.record["data"].items() if k not in ("images", "skipped")}, progress)
    start = load_checkpoint(run, model)
    epochs = int(epochs or run.record["epochs"])
    spe = data.steps_per_epoch(model.config.batch_size)
    run.truncate_rows("losses.csv", "step", start * spe)
    run.truncate_rows("epochs.csv", "epoch", start)
    run.write_record(epochs=epochs, status="running")
    return _fit(model, data, run, start, epochs, callbacks, progress)


def train_or_load(model, data, epochs: int, out: str | Path, name: str, progress: bool = True, **kwargs) -> TrainResult:
    """``out/name`` as a cache: a finished run there with the same model config, data and epochs is read
    back, an unfinished one resumed, anything else trained anew (a mismatching folder is kept aside as
    ``name-2`` …, never overwritten) — also a run whose checkpoint no longer fits the networks. Notebooks call
    this so that re-running a cell does not retrain."""
    path = Path(out) / name
    if (path / "config.json").is_file():
        record = Run.open(path).record
        same = (
            record.get("model") == model.kind
            and record.get("model_config") == model.config.to_dict()
            and {k: v for k, v in record.get("data", {}).items() if k not in ("images", "skipped")} == data.spec
            and record.get("epochs") == epochs
        )
        try:
            if same and record.get("status") == "completed":
                return load_result(path)
            if same and (path / "checkpoint.npz").is_file():
                return resume_training(path, data, progress=progress)
        except ConfigError as err:  # same config, but the networks changed since (a library update)
            warnings.warn(
                f"{path}: its checkpoint does not fit this version's networks ({err}); training anew beside it",
                stacklevel=2,
            )
    # anything else, and a run that finished no epoch, trains anew beside what is there
    return train(model, data, epochs, out=out, name=name, timestamp=False, progress=progress, **kwargs)


def train_style_vae(
    data, epochs=(4, 4, 4), *, out="results", name: str = "style_vae", progress: bool = True, **overrides
) -> dict:
    """The three stages of seed 002 §IV in turn, each a resumable run folder ``out/<name>_<k>_<stage>`` that
    starts from the previous stage's weights: returns {stage: TrainResult}. Re-running reuses finished
    stages (``train_or_load``). ``overrides`` are StyleVAEConfig fields shared by all stages."""
    if len(epochs) != 3:
        raise ConfigError("epochs: one number per stage (autoencoder, style, variational)")
    results, previous = {}, ""
    for k, (stage, n) in enumerate(zip(STAGES, epochs), 1):
        model = StyleVAE(StyleVAEConfig(stage=stage, init_from=previous, **overrides))
        results[stage] = train_or_load(model, data, int(n), out, f"{name}_{k}_{stage}", progress=progress)
        previous = str(results[stage].run_dir)
    return results


def load_result(run_dir: str | Path) -> TrainResult:
    """A finished (or stopped) training run read back: model, histories, status."""
    run = Run.open(run_dir, kind="training")
    return TrainResult(
        load_trained(run_dir),
        run.path,
        run.read_rows("losses.csv"),
        run.read_rows("epochs.csv"),
        run.record.get("status", "?"),
        run.record.get("timings", {}),
    )


def _fit(model, data, run: Run, start: int, epochs: int, callbacks, progress: bool) -> TrainResult:
    cfg = model.config
    model.source_run = str(run.path)  # what is built on this model (a prior, guidance) records where it came from
    spe = data.steps_per_epoch(cfg.batch_size)
    rec = run.record["samples"]
    step_log = StepLog(run, spe)
    epoch_end = EpochEnd(run, model.sample_inputs(data, rec["n"], rec["seed"]), cfg.batch_size, spe, rec["every"])
    cbs = [*model.training_callbacks(epochs), step_log, epoch_end, *callbacks]
    bar = None
    if progress and start < epochs:
        bar = Progress(epochs * spe, start * spe, f"{model.kind} {run.path.name}")
        cbs.append(bar)
    status = "completed"
    t0 = time.perf_counter()
    try:
        if start < epochs:
            model.fit(
                data.dataset(cfg.batch_size, seed=cfg.seed, initial_epoch=start, flip=cfg.flip),
                epochs=epochs,
                initial_epoch=start,
                steps_per_epoch=spe,
                callbacks=cbs,
                verbose=0,
                shuffle=False,  # the dataset shuffles itself, per epoch from the seed
            )
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    done_steps = len(step_log.all_rows)
    grids = sorted((run.path / "samples").glob("epoch_*.png"))
    if grids:
        (run.path / "output.png").write_bytes(grids[-1].read_bytes())
    timings = {
        "train_s": round(seconds, 2),
        "images_per_s": round(done_steps * cfg.batch_size / seconds, 2) if done_steps else 0.0,
    }
    run.end(status, epochs_done=epochs_done(run), timings=timings)
    return TrainResult(model, run.path, run.read_rows("losses.csv"), run.read_rows("epochs.csv"), status, timings)
