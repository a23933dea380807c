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
