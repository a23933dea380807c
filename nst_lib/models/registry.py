"""The generative models by name, and the one place that turns a run folder back into a model.

Models never read run folders: what a model depends on is handed to its constructor (a VQ prior's frozen VQGAN,
a style-VAE stage's starting weights), as taming-transformers hands its second stage the first. This module
loads those dependencies from the run folders a config names (``vqgan_run``, ``init_from``) when a model is
rebuilt from a record (``load_trained``, ``resume_training``) or trained from a config that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, NSTError
from ..runs import Run
from .callbacks import load_checkpoint
from .cyclegan import CycleGAN, CycleGANConfig
from .dcgan import DCGAN, DCGANConfig
from .style_vae import StyleVAE, StyleVAEConfig
from .stylegan import StyleGAN, StyleGANConfig
from .vaegan import VAEGAN, VAEGANConfig
from .vqgan import VQGAN, VQGANConfig, VQPrior, VQPriorConfig

MODELS: dict[str, tuple[type, type]] = {
    "dcgan": (DCGAN, DCGANConfig),
    "vaegan": (VAEGAN, VAEGANConfig),
    "style_vae": (StyleVAE, StyleVAEConfig),
    "cyclegan": (CycleGAN, CycleGANConfig),
    "vqgan": (VQGAN, VQGANConfig),
    "vq_prior": (VQPrior, VQPriorConfig),
    "stylegan": (StyleGAN, StyleGANConfig),
}


def model_classes() -> dict[str, tuple[type, type]]:
    """kind → (model class, config class)."""
    return dict(MODELS)


def build_model(kind: str, config: dict[str, Any] | None = None, *, start_weights: bool = True, **overrides: Any):
    """A new model of ``kind`` from a config dict (a run record's ``model_config``), with the run folders its
    config names loaded and handed in: a VQ prior's frozen VQGAN always, a style-VAE stage's starting weights
    when ``start_weights`` (not needed when a checkpoint is restored right after)."""
    if kind not in MODELS:
        raise ConfigError(f"unknown model {kind!r}; choose from {', '.join(MODELS)}")
    model_cls, config_cls = MODELS[kind]
    cfg = config_cls.from_dict(config or {}).replace(**overrides)
    if kind == "vq_prior":
        if not cfg.vqgan_run:
            raise ConfigError("a VQ prior's config names its VQGAN's run folder (vqgan_run)")
        return VQPrior(cfg, vqgan=load_trained(cfg.vqgan_run))
    model = model_cls(cfg)
    if start_weights:
        load_start_weights(model)
    return model


def load_start_weights(model) -> None:
    """Give a model whose config names a run to start from (``init_from``: the previous style-VAE stage) that
    run's network weights, unless it was handed them already."""
    init_from = getattr(model.config, "init_from", "")
    if init_from and not getattr(model, "started_from", ""):
        previous = load_trained(init_from)
        if previous.kind != model.kind:
            raise NSTError(f"{init_from}: a {previous.kind!r} run, not a {model.kind!r} run")
        model.start_from(previous)


def load_trained(run_dir: str | Path):
    """The model of a training run, with its last checkpoint's weights (for sampling, Ast-GAN, a prior, ...)."""
    run = Run.open(run_dir, kind="training")
    model = build_model(run.record["model"], run.record["model_config"], start_weights=False)
    if load_checkpoint(run, model) == 0:
        raise NSTError(f"{run.path}: no checkpoint yet (no epoch completed)")
    model.source_run = str(run.path)  # recorded by what is built on it (a prior, a guidance run)
    return model
