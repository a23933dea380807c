"""What every generative model shares: a frozen config dataclass whose fields cite their sources, latent
sampling, ``generate(n, seed)`` returning uint8 images, and the exact state a checkpoint holds (network
weights, BatchNorm statistics, optimiser moments and step counters, the noise generator's state)."""

from __future__ import annotations

import keras
import numpy as np

from ..backend import require_tensorflow
from ..config import Config
from ..errors import ConfigError
from ..images import from_unit, tile


class ModelConfig(Config):
    """Base of the models' frozen config dataclasses (``nst_lib.config.Config`` plus a model's size check)."""

    def check_image_size(self, size: int, smallest: int = 16) -> None:
        if size < smallest or size & (size - 1):
            raise ConfigError(f"image_size must be a power of two ≥ {smallest}, got {size}")


def leaf_seed(seed: int, index: int) -> int:
    """A distinct, reproducible integer seed for the index-th initialiser of a model seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# --- data parallelism (tf.distribute) ----------------------------------------------------------------------
# A train step under a strategy runs once per replica on that replica's slice of the global batch. These helpers
# make such a step compute what the single-device step computes on the whole batch; on one device each is the
# identity, so single-device graphs (and their results) are unchanged.
def replicas() -> int:
    """Replicas of the current ``tf.distribute`` strategy (1 without one)."""
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_context():
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def _multi_worker() -> bool:
    """Under a MultiWorkerMirroredStrategy with more than one worker (where Keras 3's ``fit`` reduces each
    step's logs with ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars)."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    in_multi_worker_mode = getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and in_multi_worker_mode()


def global_batch(n):
    """The global batch size for a replica's batch of ``n`` (random draws are made for the whole batch)."""
    k = replicas()
    return n if k == 1 else n * k


def local_part(x):
    """This replica's contiguous slice of a tensor made for the global batch (the slice of the batch it holds),
    so noise drawn from the shared seed generator pairs with the same images as on one device."""
    ctx = _replica_context()
    if ctx is None:
        return x
    import tensorflow as tf

    size = tf.shape(x)[0] // ctx.num_replicas_in_sync
    part = tf.slice(
        x,
        tf.concat([[ctx.replica_id_in_sync_group * size], tf.zeros_like(tf.shape(x)[1:])], 0),
        tf.concat([[size], tf.shape(x)[1:]], 0),
    )
    if x.shape[0] is not None:
        part = tf.ensure_shape(part, [x.shape[0] // ctx.num_replicas_in_sync, *x.shape[1:]])
    return part


def gathered(x, gradient: bool = False):
    """The global batch of a per-replica tensor, in replica order. With ``gradient``, gradients flow back to every
    replica's slice (TensorFlow's all-gather sums them over replicas), else none flows through it."""
    ctx = _replica_context()
    if ctx is None:
        return x
    import tensorflow as tf

    out = ctx.all_gather(x if gradient else tf.stop_gradient(x), axis=0)
    if x.shape[0] is not None:  # a static batch size, as loops over the batch need
        out = tf.ensure_shape(out, [x.shape[0] * ctx.num_replicas_in_sync, *x.shape[1:]])
    return out


def replica_mean(x):
    """The mean over replicas of a per-replica batch mean: the mean over the global batch (equal slices)."""
    ctx = _replica_context()
    if ctx is None:
        return x
    import tensorflow as tf

    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, x)


def replica_gradients(grads):
    """Gradients of per-replica batch means, scaled for Keras' optimisers, which sum gradients over replicas: the
    sum is then the gradient of the global batch mean (Keras' own ``compute_loss`` scales the loss the same way)."""
    k = replicas()
    if k == 1:
        return grads
    import tensorflow as tf

    def scale(g):
        if isinstance(g, tf.IndexedSlices):  # an embedding's gradient (ops.take of a codebook)
            return tf.IndexedSlices(g.values / k, g.indices, g.dense_shape)
        return None if g is None else g / k

    return [scale(g) for g in grads]


class SeededInitializers:
    """A source of Keras initialisers ``make(seed=…)`` with distinct, reproducible seeds: the k-th call uses
    ``leaf_seed(seed, offset + k)``. Each network builder takes its own offset, so adding a layer to one network
    leaves the others' weights unchanged."""

    def __init__(self, seed: int, offset: int, make):
        self.seed, self.i, self.make = seed, offset, make

    def __call__(self):
        self.i += 1
        return self.make(seed=leaf_seed(self.seed, self.i))


class GenerativeModelMixin:
    """Shared by the keras.Model subclasses in this package. Subclasses define ``kind``, ``config``,
    ``seed_generator``, ``networks()`` and ``optimizers()`` (the same names → network / its optimiser) and
    ``_decode(z)``."""

    kind = "model"

    # --- losses reported by train_step -------------------------------------------------------------------
    def make_trackers(self, names) -> None:
        """Epoch means (``keras.metrics.Mean``) and the last step's raw values (read by the per-step log).
        Every model calls it while it is built: under another backend than TensorFlow it fails here, in one line."""
        require_tensorflow(type(self).__name__)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in names}
        self.step_values = {k: keras.Variable(0.0, trainable=False, name=f"last_{k}") for k in names}

    def record_step(self, values: dict) -> dict:
        """Update the trackers and last-step values; returns what ``train_step`` reports. Under a strategy each
        value is first averaged over the replicas (the global batch's value), so every replica stores the same."""
        for k, v in values.items():
            v = replica_mean(v)
            self.trackers[k].update_state(v)
            self.step_values[k].assign(v)
        if _multi_worker():  # Keras reduces logs over workers along a batch axis: give them one (README)
            return {k: keras.ops.reshape(t.result(), (1,)) for k, t in self.trackers.items()}
        return {k: t.result() for k, t in self.trackers.items()}

    def prepare_for_strategy(self) -> None:
        """Called by ``train`` once the model lives in a strategy's scope: optimiser slots built, BatchNorm
        statistics synchronised over replicas (the global batch's, as on one device), and the model marked built
        (Keras' symbolic build under a strategy would call ``call`` with a training batch, which a GAN's ``call``
        — the generator, on latents — does not take)."""
        self.build_all()
        if replicas() > 1:
            for layer in self._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build_all(self) -> None:
        """Create every optimiser's slots now (a checkpoint is restored into them before the first step);
        ``optimizers()`` and ``networks()`` share their keys."""
        nets = self.networks()
        for name, opt in self.optimizers().items():
            if not opt.built:
                opt.build(nets[name].trainable_variables)

    def latents(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` standard-normal latent vectors drawn from ``seed`` (NumPy, so sampling never touches the
        training noise generator's state)."""
        return np.random.default_rng(seed).standard_normal((n, self.config.latent_dim)).astype(np.float32)

    def decode(self, z, batch_size: int = 256) -> np.ndarray:
        """Images in [-1, 1] (float32 NHWC) for latents ``z``, with BatchNorm in inference mode."""
        z = np.asarray(z, np.float32)
        out = [np.asarray(self._decode(z[i : i + batch_size])) for i in range(0, len(z), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)

    def generate(self, n: int = 16, seed: int = 0) -> np.ndarray:
        """``n`` new images as uint8 N×H×W×3; the same seed gives the same images."""
        return from_unit(self.decode(self.latents(n, seed)))

    def sample_inputs(self, data, n: int, seed: int):
        """What the per-epoch sample grids are drawn from, fixed for the whole run: ``n`` latents."""
        return self.latents(n, seed)

    def sample_grid(self, inputs) -> np.ndarray:
        """One uint8 grid image for ``sample_inputs``' value."""
        return tile(from_unit(self.decode(inputs)))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.image_size, self.config.image_size, 3)

    # --- checkpoint state ------------------------------------------------------------------------------
    def state_variables(self) -> dict[str, list]:
        """Every variable whose value a resumed run needs, by group, in a fixed order."""
        self.build_all()
        groups = {"model": list(self.weights), "noise": [self.seed_generator.state]}
        for name, opt in self.optimizers().items():
            groups[f"optimizer_{name}"] = list(opt.variables)
        return groups

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            f"{group}/{i:04d}": np.asarray(v.numpy())
            for group, variables in self.state_variables().items()
            for i, v in enumerate(variables)
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        for group, variables in self.state_variables().items():
            stored = sorted(k for k in state if k.startswith(group + "/"))
            if len(stored) != len(variables):
                raise ConfigError(
                    f"checkpoint holds {len(stored)} '{group}' variables, the model has {len(variables)}: "
                    "was it written by a different model config?"
                )
            for key, v in zip(stored, variables):
                value = state[key]
                if tuple(value.shape) != tuple(v.shape):
                    raise ConfigError(
                        f"checkpoint variable {key} has shape {value.shape}, the model's {v.path} {v.shape}"
                    )
                v.assign(value)

    def training_callbacks(self, epochs: int) -> list:
        """Schedules the model needs during ``fit`` (e.g. DCGAN's label-smoothing switch)."""
        return []

    def count_params(self) -> dict[str, int]:
        """Trainable parameters of each sub-network."""
        self.build_all()
        return {
            name: int(sum(np.prod(w.shape) for w in net.trainable_weights)) for name, net in self.networks().items()
        }
