"""Ast-GAN (seed 004 §3.3, Fig. 2): a batch of style images from a trained generator → Gatys transfer whose
style loss is the mean of the single-image style losses over the batch → the content photo painted in the
batch's "generalised" style.

    model = load_trained("results/<run>")                     # a DCGAN trained on paintings
    result = ast_gan(model, "data/content/tubingen_neckarfront.jpg", n_styles=16, seed=0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import StyleConfig
from ..errors import ConfigError
from ..images import ImageLike
from ..transfer import stylize


def generated_styles(model, n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """``n`` images from ``model.generate(n, seed)`` as a list of uint8 arrays (the engine upsamples them
    to the style size, ``StyleConfig.style_scale`` × the content's long side)."""
    return list(model.generate(n, seed))


def ast_gan(
    model,
    content: ImageLike,
    n_styles: int = 16,
    seed: int = 0,
    config: StyleConfig | None = None,
    **kwargs: Any,
):
    """Stylise ``content`` with the batch-averaged style of ``n_styles`` generated images. ``config``
    defaults to the ``seed004`` preset (VGG19, conv_4 content, conv_1..5 style, MSE Grams); keyword
    arguments go to ``stylize`` (``out``, ``name``, ``progress``, config overrides such as ``style_weight``)."""
    if n_styles < 1:
        raise ConfigError(f"ast_gan: n_styles must be ≥ 1, got {n_styles}")
    config = config or StyleConfig.preset("seed004")
    kwargs.setdefault("name", f"astgan_{model.kind}_{n_styles}styles_seed{seed}")
    return stylize(content, np.stack(generated_styles(model, n_styles, seed)), config, **kwargs)
