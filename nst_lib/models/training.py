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

Data parallel (``distribute=``): the model is rebuilt in a ``tf.distribute`` strategy's scope with the state of the
one handed in, and ``model.fit`` runs each step on every replica. The configured batch is the global batch: replica
k gets its k-th contiguous slice, and the train steps (``models.base``: global noise, replica-scaled gradients,
synchronised BatchNorm, cross-replica means) compute what one device computes on the whole batch. With
``MultiWorkerMirroredStrategy`` only the chief writes the run folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RUNS_DIR
from ..errors import ConfigError
from ..runs import Run, hold, record_network
from .callbacks import EpochEnd, Progress, StepLog, epochs_done, load_checkpoint
from .data import DataError, from_spec
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
    out: str | Path = RUNS_DIR,
    name: str | None = None,
    timestamp: bool = True,
    samples: int = 64,
    sample_seed: int = 1234,
    sample_every: int = 1,
    callbacks=(),
    progress: bool = True,
    distribute=None,
) -> TrainResult:
    """Train ``model`` (a DCGAN, VAEGAN, ...) on ``data`` (an ``nst_lib.data.ImageFolder``; a StyleVAE takes
    an ``nst_lib.data.ContentStyleData``) for ``epochs`` epochs into a new run folder ``out/<time>_<name>``.
    A sample grid (``samples`` latents drawn from ``sample_seed``, or fixed images) is drawn after every
    ``sample_every`` epochs. Ctrl-C stops after the current step; the run folder then
    resumes from its last completed epoch with ``resume_training``.

    ``distribute``: None (one device), ``"mirrored"`` (``tf.distribute.MirroredStrategy``: every GPU of this
    machine) or a strategy object (a ``MultiWorkerMirroredStrategy`` created at program start, ``TF_CONFIG`` naming
    the workers; only the chief writes the run folder). The configured batch size is the global batch, split
    across replicas; the returned model is the one trained in the strategy's scope (a model built in that scope
    is trained as it is, any other is copied into it)."""
    if epochs < 1:
        raise ConfigError("epochs must be ≥ 1")
    if data.size != model.config.image_size:
        raise ConfigError(
            f"data is {data.size} px, the model {model.config.image_size} px: "
            f"load it with size={model.config.image_size}"
        )
    load_start_weights(model)  # a style-VAE stage whose config names the previous stage's run
    strategy = resolve_strategy(distribute)
    scratch = None
    if strategy is not None:
        model = in_strategy(model, strategy)
        if not is_chief(strategy):  # another worker of a multi-worker run: its copy of the folder is thrown away
            out = scratch = tempfile.mkdtemp(prefix="nst-worker-")
    run = Run.create(out, name or model.kind, timestamp=timestamp, subdirs=("samples",))
    run.begin(
        "training",
        model=model.kind,
        model_config=model.config.to_dict(),
        data={**data.spec, "images": len(data), "skipped": len(data.skipped), "pixels": data.fingerprint},
        epochs=int(epochs),
        samples={"n": samples, "seed": sample_seed, "every": sample_every},
        seed=model.config.seed,
        distribute=describe_strategy(strategy),
    )
    with hold(run.path):  # a resume of it started meanwhile is refused while this trains
        return _without_scratch(_fit(model, data, run, 0, epochs, callbacks, progress, strategy), scratch)


def resume_training(
    run_dir: str | Path,
    data=None,
    *,
    epochs: int | None = None,
    callbacks=(),
    progress: bool = True,
    distribute=None,
) -> TrainResult:
    """Continue a training run from its last checkpoint up to ``epochs`` (default: the epochs it was started
    with). ``data`` defaults to the dataset recorded in the run (a folder or the bundled tiny set). ``distribute``
    as for ``train``; a run may resume on another number of replicas (the same global batch, so the same steps).
    A run another process is training is refused (``RunInUseError``)."""
    strategy = resolve_strategy(distribute)
    chief = strategy is None or is_chief(strategy)  # the other workers of a multi-worker run write a copy
    with Run.held(run_dir, kind="training") if chief else nullcontext(Run.open(run_dir, kind="training")) as run:
        return _resume_training(run, data, epochs, callbacks, progress, strategy)


def _resume_training(run: Run, data, epochs, callbacks, progress, strategy) -> TrainResult:
    scratch = None
    if strategy is not None and not is_chief(strategy):  # a multi-worker run's other workers write elsewhere
        scratch = tempfile.mkdtemp(prefix="nst-worker-")
        # without the chief's temporary files, which vanish under the copy as the chief renames them
        temporary = shutil.ignore_patterns("*.tmp", "*.tmp.npz", ".*.partial")
        run = Run.open(shutil.copytree(run.path, Path(scratch) / run.path.name, ignore=temporary), kind="training")
    if strategy is None:
        model = build_model(run.record["model"], run.record["model_config"], start_weights=False)
    else:
        with strategy.scope():
            model = build_model(run.record["model"], run.record["model_config"], start_weights=False)
            model.prepare_for_strategy()
    if data is None:
        data = from_spec(_spec(run.record["data"]), progress)
    if not _same_pixels(run.record["data"], data):  # its seeded epochs would be other batches of other images
        raise DataError(
            f"{run.path}: trained on other images than these ({run.record['data'].get('images')} then, {len(data)} "
            "now: the folder changed since, or other data was given); resume with the images it was trained on"
        )
    start = load_checkpoint(run, model)
    epochs = int(epochs or run.record["epochs"])
    spe = data.steps_per_epoch(model.config.batch_size)
    run.truncate_rows("losses.csv", "step", start * spe)
    run.truncate_rows("epochs.csv", "epoch", start)
    run.write_record(epochs=epochs, status="running", distribute=describe_strategy(strategy))
    return _without_scratch(_fit(model, data, run, start, epochs, callbacks, progress, strategy), scratch)


def train_or_load(model, data, epochs: int, out: str | Path, name: str, progress: bool = True, **kwargs) -> TrainResult:
    """``out/name`` as a cache: a finished run there (or in ``name-2`` …, where runs of other settings went) with
    the same model config, data and epochs is read back, an unfinished one resumed, anything else trained anew
    beside them (as ``name-2`` …, never overwriting) — also a run whose checkpoint no longer fits the networks.
    Notebooks call this so that re-running a cell does not retrain."""
    for path in _numbered(Path(out), name):  # out/name, and the runs trained beside it before, newest first
        record = Run.open(path).record
        same = (
            record.get("model") == model.kind
            and record.get("model_config") == model.config.to_dict()
            and _same_data(record.get("data", {}), data)
            and record.get("epochs") == epochs
        )
        try:
            if same and record.get("status") == "completed":
                return load_result(path)
            if same and (path / "checkpoint.npz").is_file():
                # the same callbacks and devices a new run would get (the rest are in the run's record)
                keep = {k: v for k, v in kwargs.items() if k in ("callbacks", "distribute")}
                return resume_training(path, data, progress=progress, **keep)
        except ConfigError as err:  # same config, but the networks changed since (a library update)
            warnings.warn(
                f"{path}: its checkpoint does not fit this version's networks ({err}); training anew beside it",
                stacklevel=2,
            )
    # anything else, and a run that finished no epoch, trains anew beside what is there
    return train(model, data, epochs, out=out, name=name, timestamp=False, progress=progress, **kwargs)


def _spec(recorded: dict) -> dict:
    """A run's recorded dataset spec, without what the record adds (counts, the pixels' digest)."""
    return {k: v for k, v in recorded.items() if k not in ("images", "skipped", "pixels")}


def _paths(spec: dict, replace) -> dict:
    """A dataset spec with ``replace(path)`` for each of its folders' paths (a union's and a pair's too), without
    their ``cache_dir`` (where decoded images are kept is not which images they are)."""
    if spec.get("kind") == "folder" and "path" in spec:
        return {**{k: v for k, v in spec.items() if k != "cache_dir"}, "path": replace(spec["path"])}
    nested = {k: _paths(v, replace) for k, v in spec.items() if isinstance(v, dict)}
    parts = {"parts": [_paths(p, replace) for p in spec["parts"]]} if isinstance(spec.get("parts"), list) else {}
    return {**spec, **nested, **parts}


def _same_data(recorded: dict, data) -> bool:
    """Whether a run's recorded dataset is ``data``: the same spec and the same pixels. Where the digest of its
    pixels was recorded, folders count as the same wherever they are now (moved, another clone); before that, by
    path, absolute from this working folder (records then held paths as given)."""
    spec = _spec(recorded)
    if _paths(spec, lambda p: "") != _paths(data.spec, lambda p: ""):
        return False
    if "pixels" not in recorded:
        absolute = lambda p: str(Path(p).resolve())  # noqa: E731
        return _paths(spec, absolute) == _paths(data.spec, absolute) and _same_pixels(recorded, data)
    return _same_pixels(recorded, data)


def _same_pixels(recorded: dict, data) -> bool:
    """Whether ``data`` holds the images a run recorded (runs recorded before the digest was kept: by count)."""
    if "pixels" in recorded:
        return recorded["pixels"] == data.fingerprint
    return recorded.get("images", len(data)) == len(data)


def _numbered(out: Path, name: str) -> list[Path]:
    """The run folders ``out/name``, ``out/name-2``, … (``Run.create``'s names for runs beside it), newest first."""
    found = {1: out / name} if (out / name / "config.json").is_file() else {}
    for path in out.glob(f"{name}-*") if out.is_dir() else ():
        number = path.name[len(name) + 1 :]
        if number.isdigit() and (path / "config.json").is_file():
            found[int(number)] = path
    return [found[k] for k in sorted(found, reverse=True)]


def train_style_vae(
    data, epochs=(4, 4, 4), *, out=RUNS_DIR, name: str = "style_vae", progress: bool = True, **overrides
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


# --- data parallelism ----------------------------------------------------------------------------------------
def resolve_strategy(distribute):
    """None, a ``tf.distribute.Strategy``, or "mirrored" (every GPU of this machine). A MultiWorkerMirroredStrategy
    is passed as an object: TensorFlow requires it to be created at program start, before any model exists."""
    if distribute is None:
        return None
    import tensorflow as tf

    if isinstance(distribute, tf.distribute.Strategy):
        return distribute
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ConfigError(f"distribute={distribute!r}: none, 'mirrored' or a tf.distribute.Strategy object")


def _without_scratch(result: TrainResult, scratch: str | None) -> TrainResult:
    """A non-chief worker's result: its scratch copy of the run folder removed (the chief's is the run)."""
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
        result.run_dir = None
    return result


def describe_strategy(strategy) -> dict | None:
    if strategy is None:
        return None
    import tensorflow as tf

    # TensorFlow's class behind MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy: record the public name
    multi = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    name = "MultiWorkerMirroredStrategy" if multi else type(strategy).__name__
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}


def is_chief(strategy) -> bool:
    """False only on the non-chief workers of a multi-worker strategy (TF_CONFIG's task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    kind, index = resolver.task_type, resolver.task_id
    return kind == "chief" or kind is None or (kind == "worker" and index == 0 and "chief" not in cluster)


def in_strategy(model, strategy):
    """``model`` ready to train under ``strategy``: itself when built in its scope, else a model of the same kind
    and config built there, with ``model``'s state (weights, optimiser moments, noise generator) copied in."""
    if getattr(model, "_distribute_strategy", None) is not strategy:
        with strategy.scope():
            twin = build_model(model.kind, model.config.to_dict(), start_weights=False)
            twin.build_all()
        twin.set_state(model.get_state())
        for attr in ("started_from", "source_run"):
            if hasattr(model, attr):
                setattr(twin, attr, getattr(model, attr))
        model = twin
    with strategy.scope():
        model.prepare_for_strategy()
    return model


def distributed_dataset(data, cfg, start: int, strategy):
    """The training batches for ``strategy``'s replicas: every input pipeline (one per worker) builds the same
    global batches from the seed and feeds each of its replicas its contiguous slice (replica k of n gets
    images k·B/n … (k+1)·B/n − 1 of the batch of B), so the global batch is the configured one and a run is
    the same on any number of replicas."""
    import tensorflow as tf

    n = strategy.num_replicas_in_sync
    if cfg.batch_size % n:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split across {n} replicas: make it a multiple of {n}")
    per_replica = cfg.batch_size // n

    def pipeline(ctx):
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * local * per_replica

        def split(x):  # this pipeline's slice, one row per local replica
            return tf.reshape(x[first : first + local * per_replica], [local, per_replica, *x.shape[1:]])

        batches = data.dataset(cfg.batch_size, seed=cfg.seed, initial_epoch=start, flip=cfg.flip)
        return batches.map(
            lambda *parts: tf.nest.map_structure(split, parts[0] if len(parts) == 1 else parts)
        ).unbatch()

    return strategy.distribute_datasets_from_function(pipeline)


def _fit(model, data, run: Run, start: int, epochs: int, callbacks, progress: bool, strategy=None) -> TrainResult:
    cfg = model.config
    perceptual = getattr(model, "_perceptual", None)  # a loss network whose weights 'auto' resolves per machine
    if perceptual is not None:
        record_network(run, "perceptual_network", perceptual.resolved(), "perceptual weights")
    model.source_run = str(run.path)  # what is built on this model (a prior, guidance) records where it came from
    spe = data.steps_per_epoch(cfg.batch_size)
    rec = run.record["samples"]
    step_log = StepLog(run, spe)
    epoch_end = EpochEnd(run, model.sample_inputs(data, rec["n"], rec["seed"]), cfg.batch_size, spe, rec["every"])
    cbs = [*model.training_callbacks(epochs), step_log, epoch_end, *callbacks]
    bar = None
    if progress and start < epochs and (strategy is None or is_chief(strategy)):
        bar = Progress(epochs * spe, start * spe, f"{model.kind} {run.path.name}")
        cbs.append(bar)
    status = "completed"
    t0 = time.perf_counter()
    try:
        if start < epochs:
            if strategy is None:
                dataset = data.dataset(cfg.batch_size, seed=cfg.seed, initial_epoch=start, flip=cfg.flip)
            else:
                dataset = distributed_dataset(data, cfg, start, strategy)
            model.fit(
                dataset,
                epochs=epochs,
                initial_epoch=start,
                steps_per_epoch=spe,
                callbacks=cbs,
                verbose=0,
                shuffle=False,  # the dataset shuffles itself, per epoch from the seed
            )
    except KeyboardInterrupt:
        status = "interrupted"
        # its weights are mid-epoch, not the folder's checkpoint: what is built on it (a prior) must not record the
        # folder as its source, since resuming would then load other weights (load_trained gives the checkpoint's)
        model.source_run = ""
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    done_steps = step_log.steps_run  # this session's, an interrupted epoch's included: its time is in seconds
    grids = sorted((run.path / "samples").glob("epoch_*.png"), key=lambda p: int(p.stem.split("_")[-1]))
    if grids:
        (run.path / "output.png").write_bytes(grids[-1].read_bytes())
    timings = {
        "train_s": round(seconds, 2),
        "images_per_s": round(done_steps * cfg.batch_size / seconds, 2) if done_steps else 0.0,
    }
    run.end(status, epochs_done=epochs_done(run), timings=timings)
    return TrainResult(model, run.path, run.read_rows("losses.csv"), run.read_rows("epochs.csv"), status, timings)
