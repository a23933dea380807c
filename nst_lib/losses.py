r"""Content, Gram-style and total-variation losses: pure functions on NHWC feature maps, with loss objects
that hold their own targets and weights.

Notation: a layer's features F have N channels and M = H·W positions, reshaped to an M×N matrix.

Content loss (one layer, P = the content image's features)
    'gatys':  L = ½ Σ (F − P)²                      (Gatys et al. 2016, eq. 1; grows with image size)
    'mean':   L = mean (F − P)²                     (size-invariant; TF tutorial, seed 004)

Gram matrix
    G = Fᵀ F                 (raw, used by 'gatys')
    Ĝ = Fᵀ F / M             (normalised by positions, used by 'size' and 'mean')

Style loss (one layer, A / Â = the style image's Gram at its own size)
    'gatys':  E = Σ (G − A)² / (4 N² M²)            (Gatys et al. 2016, eq. 4; M of the output image)
    'size':   E = Σ (Ĝ − Â)² / (4 N²)               (equals 'gatys' when style and output have equal M;
                                                      otherwise invariant to either image's size)
    'mean':   E = Σ (Ĝ − Â)² / N²  = 4 · 'size'       (TF tutorial)
    L_style = Σ_l w_l Σ_k b_k E_l(x, S_k)            (w_l layer weights and b_k style blend weights,
                                                      each normalised to sum 1; equal b_k is the
                                                      batch-averaged style of seed 004)

Total variation (squared, on the 0–255 image)
    L_tv = mean (x[i+1, j] − x[i, j])² + mean (x[i, j+1] − x[i, j])²

Total:  L = α · Σ_c L_content / n_content + β · L_style + γ · L_tv.

So α/β is only comparable between runs that use the same normalisation; 'size' and 'mean' keep the ratio
meaningful across resolutions, 'gatys' does not (its content term grows with M).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

from . import backend
from .errors import ConfigError


def normalize_weights(weights: Sequence[float] | None, n: int, what: str = "weights") -> np.ndarray:
    """Weights as a float32 vector summing to 1; ``None`` gives equal weights."""
    if weights is None:
        return np.full(n, 1.0 / n, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ConfigError(f"{what}: expected {n} values, got {len(w)}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"{what} must be non-negative with a positive sum, got {list(weights)}")
    return (w / w.sum()).astype(np.float32)


def gram_matrix(features, normalize: bool = True):
    """Gram matrix of NHWC features: Fᵀ F per batch item, divided by M = H·W when ``normalize``.

    Returns a (B, N, N) tensor.
    """
    shape = ops.shape(features)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    gram = backend.gram(ops.reshape(features, (b, h * w, c)))
    if normalize:
        gram = gram / ops.cast(h * w, gram.dtype)
    return gram


def content_loss(features, target, mode: str = "mean"):
    """'gatys': ½ Σ (F − P)²; 'mean': mean (F − P)²."""
    diff2 = ops.square(features - target)
    if mode == "gatys":
        return 0.5 * ops.sum(diff2)
    if mode == "mean":
        return ops.mean(diff2)
    raise ConfigError(f"unknown content loss {mode!r}")


def style_layer_loss(gram, target_grams, n_channels: int, n_positions, mode: str = "size", blend=None):
    """One layer's style loss against K target Grams, blended with weights ``blend`` (sum 1).

    ``gram`` is (1, N, N) or (N, N); ``target_grams`` is (K, N, N). Grams must be raw for 'gatys' and
    normalised (÷M) for 'size' and 'mean'. ``n_positions`` is M of the output image ('gatys' only).
    """
    k = ops.shape(target_grams)[0]
    per_style = ops.sum(ops.square(gram - target_grams), axis=(1, 2))  # (K,)
    n2 = float(n_channels) ** 2
    if mode == "size":
        per_style = per_style / (4.0 * n2)
    elif mode == "mean":
        per_style = per_style / n2
    elif mode == "gatys":
        m = ops.cast(n_positions, per_style.dtype)
        per_style = per_style / (4.0 * n2 * m * m)
    else:
        raise ConfigError(f"unknown gram normalisation {mode!r}")
    if blend is None:
        blend = ops.ones((k,), per_style.dtype) / ops.cast(k, per_style.dtype)
    return ops.sum(per_style * ops.cast(blend, per_style.dtype))


def style_loss(features: Sequence, target_grams: Sequence, layer_weights=None, mode: str = "size", blend=None):
    """Σ_l w_l E_l over style layers; ``features`` NHWC per layer, ``target_grams`` (K, N, N) per layer."""
    lw = normalize_weights(layer_weights, len(features), "style_layer_weights")
    total = 0.0
    for w, f, a in zip(lw, features, target_grams):
        shape = ops.shape(f)
        g = gram_matrix(f, normalize=mode != "gatys")
        total = total + float(w) * style_layer_loss(g, a, shape[3], shape[1] * shape[2], mode, blend)
    return total


def tv_loss(image):
    """Squared total variation of NHWC images: mean of squared vertical plus horizontal differences (computed by
    ``backend.squared_difference_means``, which avoids TensorFlow's slow gradient of a slice)."""
    vertical, horizontal = backend.squared_difference_means(ops.convert_to_tensor(image))
    return vertical + horizontal


def tv_loss_and_grad(image: np.ndarray) -> tuple[float, np.ndarray]:
    """``tv_loss`` of one H×W×C image and its gradient, in NumPy (the tiled evaluation adds it on the whole
    image): d/dx mean(dy²) = 2·dy/|dy| pushed back onto both pixels of each difference."""
    x = np.asarray(image, np.float64)
    dy, dx = x[1:] - x[:-1], x[:, 1:] - x[:, :-1]
    grad = np.zeros_like(x)
    if dy.size:
        gy = 2.0 * dy / dy.size
        grad[1:] += gy
        grad[:-1] -= gy
    if dx.size:
        gx = 2.0 * dx / dx.size
        grad[:, 1:] += gx
        grad[:, :-1] -= gx
    value = (np.mean(dy**2) if dy.size else 0.0) + (np.mean(dx**2) if dx.size else 0.0)
    return float(value), grad.astype(np.float32)


class ContentLoss:
    """Content loss of one layer against a fixed target, with its weight."""

    def __init__(self, layer: str, target, weight: float = 1.0, mode: str = "mean"):
        self.layer, self.target, self.weight, self.mode = layer, target, weight, mode

    def __call__(self, features: dict):
        return self.weight * content_loss(features[self.layer], self.target, self.mode)


class StyleLoss:
    """Blended Gram style loss over several layers; targets are computed once from the style images."""

    def __init__(self, layers, target_grams, layer_weights=None, blend=None, weight: float = 1.0, mode="size"):
        self.layers = list(layers)
        self.target_grams = list(target_grams)
        self.layer_weights = normalize_weights(layer_weights, len(self.layers), "style_layer_weights")
        # one weight per style image (the targets' batch), summing to 1 as style_layer_loss expects
        n_styles = int(self.target_grams[0].shape[0]) if self.target_grams else 0
        self.blend = None if blend is None else normalize_weights(blend, n_styles, "style_blend_weights")
        self.weight, self.mode = weight, mode

    @classmethod
    def from_style_features(cls, layers, style_features: Sequence[dict], **kw) -> StyleLoss:
        """Targets from one feature dict per style image (each image may have its own size)."""
        normalize = kw.get("mode", "size") != "gatys"
        grams = [
            ops.concatenate([gram_matrix(sf[layer], normalize) for sf in style_features], axis=0) for layer in layers
        ]
        return cls(layers, grams, **kw)

    def __call__(self, features: dict):
        feats = [features[layer] for layer in self.layers]
        return self.weight * style_loss(feats, self.target_grams, self.layer_weights, self.mode, self.blend)
