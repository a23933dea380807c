"""The papers' experiments as functions, so the notebooks stay thin.

- Content and style reconstructions (Gatys et al. 2016 Fig. 1; seed 000 Figs 9-11).
- The identity test f(C, C) ≈ C and the grayscale test f(C, g(C)) ≈ g(C) (seed 003 §4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import StyleConfig
from .images import ImageLike, grayscale, load_image
from .metrics import mean_saturation, ssim
from .transfer import stylize


def content_reconstruction(content: ImageLike, layer: str, config: StyleConfig, **kw) -> np.ndarray:
    """Reconstruct ``content`` from white noise using only one layer's content loss."""
    cfg = config.replace(content_layers=(layer,), style_weight=0.0, tv_weight=0.0, init="noise")
    return stylize(content, content, cfg, **{"out": None, **kw}).image


def style_reconstruction(style: ImageLike, layers: Sequence[str], config: StyleConfig, **kw) -> np.ndarray:
    """Synthesise the texture of ``style`` from white noise using only the Gram losses of ``layers``."""
    cfg = config.replace(style_layers=tuple(layers), style_layer_weights=None, content_weight=0.0, init="noise")
    return stylize(style, style, cfg, **{"out": None, **kw}).image


def identity_test(content: ImageLike, config: StyleConfig, **kw) -> dict:
    """f(C, C): returns the output and its SSIM (luminance) to C."""
    c = load_image(content, config.size, config.max_pixels)
    out = stylize(c, c, config, **{"out": None, **kw}).image
    return {"image": out, "ssim": ssim(out, c)}


def grayscale_test(content: ImageLike, config: StyleConfig, **kw) -> dict:
    """f(C, g(C)): returns the output, its mean saturation next to C's, and its SSIM to g(C)."""
    c = load_image(content, config.size, config.max_pixels)
    g = grayscale(c)
    out = stylize(c, g, config, **{"out": None, **kw}).image
    return {
        "image": out,
        "gray": g,
        "saturation": mean_saturation(out),
        "content_saturation": mean_saturation(c),
        "ssim_to_gray": ssim(out, g),
    }
