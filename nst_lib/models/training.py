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
epoch/state, and everything else is in the checkpoint.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, NSTError
from ..runs import Run, device_name, versions
from .callbacks import EpochEnd, Progress, StepLog, load_checkpoint, read_rows, truncate_rows


def model_classes() -> dict[str, tuple[type, type]]:
    """kind → (model class, config class)."""
    from .cyclegan import CycleGAN, CycleGANConfig
    from .dcgan import DCGAN, DCGANConfig
    from .style_vae import StyleVAE, StyleVAEConfig
    from .stylegan import StyleGAN, StyleGANConfig
    from .vaegan import VAEGAN, VAEGANConfig
    from .vqgan import VQGAN, VQGANConfig, VQPrior, VQPriorConfig

    return {"dcgan": (DCGAN, DCGANConfig), "vaegan": (VAEGAN, VAEGANConfig), "style_vae": (StyleVAE, StyleVAEConfig),
            "cyclegan": (CycleGAN, CycleGANConfig), "vqgan": (VQGAN, VQGANConfig), "vq_prior": (VQPrior, VQPriorConfig),
            "stylegan": (StyleGAN, StyleGANConfig)}


def build_model(kind: str, config: dict[str, Any] | None = None, **overrides: Any):
    classes = model_classes()
    if kind not in classes:
        raise ConfigError(f"unknown model {kind!r}; choose from {', '.join(classes)}")
    model_cls, config_cls = classes[kind]
    return model_cls(config_cls.from_dict(config or {}).replace(**overrides))


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
        from PIL import Image

        if self.run_dir is None:
            return []
        files = sorted((self.run_dir / "samples").glob("epoch_*.png"))
        return [(int(p.stem.split("_")[1]), np.asarray(Image.open(p).convert("RGB"))) for p in files]


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
        raise ConfigError(f"data is {data.size} px, the model {model.config.image_size} px: load it with size={model.config.image_size}")
    run = Run.create(out, name or model.kind, timestamp=timestamp, subdirs=("samples",))
    run.write_record(
        kind="training",
        model=model.kind,
        model_config=model.config.to_dict(),
        data={**data.spec, "images": len(data), "skipped": len(data.skipped)},
        epochs=int(epochs),
        samples={"n": samples, "seed": sample_seed, "every": sample_every},
        seed=model.config.seed,
        versions=versions(),
        device=device_name(),
        status="running",
        started=datetime.now().isoformat(timespec="seconds"),
    )
    return _fit(model, data, run, 0, epochs, callbacks, progress)


def resume_training(run_dir: str | Path, data=None, *, epochs: int | None = None, callbacks=(), progress: bool = True) -> TrainResult:
    """Continue a training run from its last checkpoint up to ``epochs`` (default: the epochs it was started
    with). ``data`` defaults to the dataset recorded in the run (a folder or the bundled tiny set)."""
    run = Run.open(run_dir)
    if run.record.get("kind") != "training":
        raise NSTError(f"{run.path}: not a training run")
    model = build_model(run.record["model"], run.record["model_config"])
    if data is None:
        from ..data import from_spec

        data = from_spec({k: v for k, v in run.record["data"].items() if k not in ("images", "skipped")}, progress)
    start = load_checkpoint(run.path, model)
    epochs = int(epochs or run.record["epochs"])
    spe = data.steps_per_epoch(model.config.batch_size)
    truncate_rows(run.path / "losses.csv", "step", start * spe)
    truncate_rows(run.path / "epochs.csv", "epoch", start)
    run.write_record(epochs=epochs, status="running")
    return _fit(model, data, run, start, epochs, callbacks, progress)


def train_or_load(model, data, epochs: int, out: str | Path, name: str, progress: bool = True, **kwargs) -> TrainResult:
    """``out/name`` as a cache: a finished run there with the same model config, data and epochs is read
    back, an unfinished one resumed, anything else trained anew (a mismatching folder is kept aside as
    ``name-2`` …, never overwritten) — also a run whose checkpoint no longer fits the networks. Notebooks call this so that re-running a cell does not retrain."""
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
            warnings.warn(f"{path}: its checkpoint does not fit this version's networks ({err}); training anew beside it",
                          stacklevel=2)
    # anything else, and a run that finished no epoch, trains anew beside what is there
    return train(model, data, epochs, out=out, name=name, timestamp=False, progress=progress, **kwargs)


def load_trained(run_dir: str | Path):
    """The model of a training run, with its last checkpoint's weights (for sampling, Ast-GAN, ...)."""
    run = Run.open(run_dir)
    model = build_model(run.record["model"], run.record["model_config"])
    if load_checkpoint(run.path, model) == 0:
        raise NSTError(f"{run.path}: no checkpoint yet (no epoch completed)")
    model.source_run = str(run.path)  # recorded by what is built on it (a prior, a guidance run)
    return model


def load_result(run_dir: str | Path) -> TrainResult:
    """A finished (or stopped) training run read back: model, histories, status."""
    run = Run.open(run_dir)
    return TrainResult(
        load_trained(run_dir),
        run.path,
        read_rows(run.path / "losses.csv"),
        read_rows(run.path / "epochs.csv"),
        run.record.get("status", "?"),
        run.record.get("timings", {}),
    )


def _fit(model, data, run: Run, start: int, epochs: int, callbacks, progress: bool) -> TrainResult:
    import time

    cfg = model.config
    spe = data.steps_per_epoch(cfg.batch_size)
    rec = run.record["samples"]
    step_log = StepLog(run.path / "losses.csv", spe)
    epoch_end = EpochEnd(run.path, model.sample_inputs(data, rec["n"], rec["seed"]), cfg.batch_size, spe, rec["every"])
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
    run.write_record(
        status=status,
        epochs_done=int(_epochs_done(run.path)),
        timings=timings,
        finished=datetime.now().isoformat(timespec="seconds"),
    )
    return TrainResult(
        model, run.path, read_rows(run.path / "losses.csv"), read_rows(run.path / "epochs.csv"), status, timings
    )


def _epochs_done(path: Path) -> int:
    import json

    f = path / "checkpoint.json"
    return json.loads(f.read_text())["epoch"] if f.exists() else 0
