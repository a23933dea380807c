"""Normalisation layers shared by the style models: instance normalisation and adaptive instance
normalisation (AdaIN), each a pure function with a Keras layer around it.

    IN(x)            = (x − μ(x)) / σ(x)                 μ, σ per image and channel, over H×W
    AdaIN(x, s, b)   = s · IN(x) + b                      Huang & Belongie 2017, eq. 8 (s = σ(y), b = μ(y))

so AdaIN's output has, per image and channel, mean b and standard deviation s (up to the ε in σ).
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-5


def channel_moments(x, epsilon: float = EPSILON):
    """Per-image, per-channel mean and standard deviation √(var + ε) over H×W of NHWC ``x``, shaped
    (N, 1, 1, C)."""
    mean, var = ops.moments(x, axes=(1, 2), keepdims=True)
    return mean, ops.sqrt(var + epsilon)


def instance_norm(x, epsilon: float = EPSILON):
    """(x − μ) / σ per image and channel (Ulyanov et al. 2016)."""
    mean, std = channel_moments(x, epsilon)
    return (x - mean) / std


def adain(x, scale, bias, epsilon: float = EPSILON):
    """scale · IN(x) + bias; ``scale`` and ``bias`` are (N, C) (or broadcastable to (N, 1, 1, C))."""
    if len(ops.shape(scale)) == 2:
        scale, bias = scale[:, None, None, :], bias[:, None, None, :]
    return scale * instance_norm(x, epsilon) + bias


@keras.saving.register_keras_serializable("nst_lib")
class InstanceNorm(keras.layers.Layer):
    """Instance normalisation with a learned per-channel scale and offset (the affine part)."""

    def build(self, input_shape):
        c = input_shape[-1]
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

    def call(self, x):
        return instance_norm(x) * self.gamma + self.beta


@keras.saving.register_keras_serializable("nst_lib")
class AdaIN(keras.layers.Layer):
    """``AdaIN()([x, params])``: instance normalisation whose affine parameters come from ``params``
    (N, 2C) — the first C are added to 1 to give the scale (so zero parameters leave IN(x)), the last C
    are the bias. The style models compute ``params`` from a style code with an MLP."""

    def call(self, inputs):
        x, params = inputs
        c = ops.shape(x)[-1]
        params = ops.cast(params, x.dtype)
        return adain(x, 1.0 + params[:, :c], params[:, c:])

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable("nst_lib")
class ReflectionPad(keras.layers.Layer):
    """Reflection padding of H and W by ``pad`` pixels (CycleGAN's generators pad before every 3×3 and
    7×7 convolution so that borders carry no zero-padding artefacts)."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        return ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")

    def compute_output_shape(self, s):
        p = 2 * self.pad
        return (s[0], None if s[1] is None else s[1] + p, None if s[2] is None else s[2] + p, s[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


# --- vector quantisation (van den Oord et al. 2017; Esser et al. 2021, seed 000 §2.2) -----------------------
def quantize(z, codebook):
    """Nearest codebook entry for every vector of ``z`` (…, D) under the Euclidean distance
    ‖z − e_k‖² = ‖z‖² − 2 z·e_k + ‖e_k‖²; returns (z_q, indices) with z_q = codebook[indices]."""
    z = ops.cast(z, "float32")
    codebook = ops.cast(codebook, "float32")
    flat = ops.reshape(z, (-1, ops.shape(z)[-1]))
    d = (
        ops.sum(ops.square(flat), axis=1, keepdims=True)
        - 2.0 * ops.matmul(flat, ops.transpose(codebook))
        + ops.sum(ops.square(codebook), axis=1)[None, :]
    )
    idx = ops.argmin(d, axis=1)
    z_q = ops.reshape(ops.take(codebook, idx, axis=0), ops.shape(z))
    return z_q, ops.reshape(idx, ops.shape(z)[:-1])


def straight_through(z, z_q):
    """z + sg[z_q − z]: the value of z_q, the gradient of the identity — the decoder's gradient passes the
    non-differentiable lookup unchanged to the encoder (van den Oord et al. 2017 §3.2)."""
    return z + ops.stop_gradient(z_q - z)


@keras.saving.register_keras_serializable("nst_lib")
class VectorQuantizer(keras.layers.Layer):
    """A codebook Z of ``codes`` vectors of size ``dim``. ``quantizer(z_e)`` returns (z_q with
    straight-through gradients, indices, z_q without them); the codebook learns from
    ``models.losses.vq_losses``. Initialised U(−1/K, 1/K) as in the VQ-VAE / taming reference code."""

    def __init__(self, codes: int, dim: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.codes, self.dim, self.seed = int(codes), int(dim), int(seed)

    def build(self, input_shape):
        limit = 1.0 / self.codes
        self.codebook = self.add_weight(
            shape=(self.codes, self.dim),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            name="codebook",
            dtype="float32",
        )
        # exponential moving average of how many positions each code takes per batch (for restarts)
        self.usage = self.add_weight(
            shape=(self.codes,), initializer="ones", trainable=False, name="usage", dtype="float32"
        )

    def restart_dead_codes(self, z_e, indices, seed_generator, threshold: float, decay: float = 0.99):
        """Dhariwal et al. 2020 (Jukebox) random restarts: update each code's usage average with this batch's
        counts; a code whose average falls below ``threshold`` positions per batch is moved onto a randomly
        chosen encoder output of the batch, so that the codebook cannot collapse onto a handful of codes. Its
        average is reset to twice the threshold: a grace of ln 2 / (1 − decay) batches (69 at 0.99) to be chosen
        before it can be moved again (reset to 1, one batch without a hit moved it again, so new codes kept being
        thrown away). Every average starts at 1, so unused codes move onto the data at the first step. Returns the
        number of codes restarted."""
        counts = ops.sum(ops.one_hot(ops.reshape(ops.cast(indices, "int32"), (-1,)), self.codes), axis=0)
        usage = decay * self.usage.value + (1.0 - decay) * counts
        dead = usage < threshold
        flat = ops.reshape(ops.stop_gradient(ops.cast(z_e, "float32")), (-1, self.dim))
        pick = keras.random.randint((self.codes,), 0, ops.shape(flat)[0], seed=seed_generator, dtype="int32")
        self.codebook.assign(ops.where(dead[:, None], ops.take(flat, pick, axis=0), self.codebook.value))
        self.usage.assign(ops.where(dead, ops.full_like(usage, 2.0 * threshold), usage))
        return ops.sum(ops.cast(dead, "float32"))

    def call(self, z):
        z_q, idx = quantize(z, self.codebook)
        return straight_through(ops.cast(z, "float32"), z_q), idx, z_q

    def lookup(self, indices):
        """Code vectors for integer ``indices`` of any shape → shape + (dim,)."""
        return ops.take(self.codebook, ops.cast(indices, "int32"), axis=0)

    def compute_output_shape(self, s):
        return s, s[:-1], s

    def get_config(self):
        return {**super().get_config(), "codes": self.codes, "dim": self.dim, "seed": self.seed}
