"""One config base for every settings object, and ``StyleConfig``: the single source of every default of a
stylisation, read by the API, the CLI and the widgets.

Every config of the library (``StyleConfig``, each generative model's config, ``GuidanceConfig``) is a frozen
dataclass deriving from ``Config`` whose fields are declared with ``option(default, help, source=…,
choices=…)``. ``Config`` gives them all the same behaviour in one place: lists become tuples (so a config read
back from JSON is equal and hashable), the string ``"none"`` becomes None for optional fields, choices are
checked, ``validate()`` runs, and ``replace`` / ``to_dict`` / ``from_dict`` / ``sources`` / ``help`` work alike.
The CLI builds its flags from these fields, so the defaults shown by ``nst stylize --help`` cannot drift.

Loss formulas and what alpha/beta mean under each normalisation are documented in ``nst_lib.losses``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

ARCHS = ("vgg16", "vgg19", "resnet50")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
CONTENT_LOSSES = ("mean", "gatys")
GRAM_NORMS = ("size", "gatys", "mean")
POOLINGS = ("max", "avg")
PREPROCESSINGS = ("caffe", "torch")
PRECISIONS = ("float32", "mixed", "bfloat16", "auto")
# defaults that the API's signatures and the `nst` command share (the command cannot read them off the engine's
# signatures without loading TensorFlow for every `nst --help`)
RUNS_DIR = "results"  # where a run folder goes
EXECUTORS = ("local", "ray")  # where a sweep's cells run; the first is the default
CELL_RETRIES = 1  # re-runs of a sweep cell whose worker died


def option(default: Any, help: str = "", *, source: str = "", choices: tuple | None = None) -> Any:
    """A config field: its default, a help text, where the default comes from (a paper's section, a reference
    implementation, or "a choice"), and the allowed values."""
    metadata = {"help": help or source, "source": source}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


def cited(default: Any, source: str, **kw: Any) -> Any:
    """A field whose help text is its source (the generative models cite a paper for nearly every default)."""
    return option(default, source=source, **kw)


class Config:
    """Base of the library's frozen config dataclasses. Subclasses declare fields with ``option``/``cited`` and
    put their own checks in ``validate()``; everything else lives here."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind, optional = _unwrap(hints[f.name])
            if optional and isinstance(value, str) and value.lower() == "none":
                object.__setattr__(self, f.name, None)
            elif value is not None and typing.get_origin(kind) is tuple and not isinstance(value, tuple):
                # lists from JSON or user code; a lone string is a one-item tuple
                object.__setattr__(self, f.name, (value,) if isinstance(value, str) else tuple(value))
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if kind is str and isinstance(value, os.PathLike):  # a weights file or a run folder as a Path
                value = os.fspath(value)
                object.__setattr__(self, f.name, value)
            if value is None and not optional and kind in (bool, int, float, str):
                raise ConfigError(f"{f.name} must not be none")
            if value is not None:
                _check_type(f.name, value, kind)
                # numpy's scalars as Python's: the record is JSON
                object.__setattr__(
                    self, f.name, tuple(map(_plain, value)) if isinstance(value, tuple) else _plain(value)
                )
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{f.name}={value!r} is not one of {', '.join(map(str, choices))}")
        self.validate()

    def validate(self) -> None:
        """Checks beyond the choices; raise ``ConfigError`` naming the field."""

    # --- deriving and serialising ----------------------------------------------------------------------
    def replace(self, **overrides: Any):
        unknown = sorted(set(overrides) - self.field_names())
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """The config a ``to_dict`` (or a run folder's record) describes; keys this version does not know are
        ignored, so records written by other versions still load."""
        known = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # --- documentation ---------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def sources(cls) -> dict[str, str]:
        """Where each default comes from."""
        return {f.name: f.metadata.get("source", "") for f in dataclasses.fields(cls)}

    @classmethod
    def help(cls, name: str) -> str:
        return cls._field(name).metadata.get("help", "")

    @classmethod
    def choices(cls, name: str) -> tuple:
        return cls._field(name).metadata.get("choices", ())

    @classmethod
    def _field(cls, name: str):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f
        raise ConfigError(f"unknown {cls.__name__} field {name!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_type(name: str, value: Any, kind: Any) -> None:
    """A one-line ``ConfigError`` for a value of the wrong type (the string "1e-3" for a weight, "false" for a
    flag, which Python reads as true, 2.5 steps, nan), instead of a TypeError deep in a run or a silent mistake."""
    if typing.get_origin(kind) is tuple:
        (item, *_) = typing.get_args(kind) or (Any,)
        for v in value:
            _check_type(name, v, item)
        return
    is_bool = isinstance(value, (bool, np.bool_))  # numpy's too (a sweep's varied values may be numpy's)
    if kind is bool and not is_bool:
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if kind is int and (is_bool or not isinstance(value, numbers.Integral)):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if kind is float and (is_bool or not isinstance(value, numbers.Real) or not math.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


# StyleConfig fields that change what a run writes, not what it computes: a sweep cell or a resolution case run with
# other values of these is still the same cell
OUTPUT_FIELDS = ("snapshot_every", "tiff16")

# What a resume may change: how long it goes on, what it writes, and how the same loss is computed (tiles are
# exact). Anything else would make the checkpoint another problem's, or not fit it (another size or schedule).
RESUME_OVERRIDES = ("steps", "first_scale_steps", *OUTPUT_FIELDS, "tile_size", "memory_budget_mb")


@dataclass(frozen=True)
class StyleConfig(Config):
    """Everything that determines one stylisation. Frozen: derive variants with ``replace``."""

    # --- network -----------------------------------------------------------------------------------
    arch: str = option("vgg19", "feature network", choices=ARCHS)
    weights: str | None = option(
        "imagenet",
        "'imagenet', 'torchvision' (VGG16 only), 'auto' (ImageNet if available, else random), a .h5 path, or none",
    )
    preprocessing: str | None = option(
        None, "input preprocessing; none picks the one the weights were trained with", choices=PREPROCESSINGS
    )
    pooling: str = option("max", "pooling layers; 'avg' is Gatys' swap of max for average pooling", choices=POOLINGS)
    precision: str = option(
        "float32",
        "'mixed': float16 network with float32 losses (GPU); 'bfloat16': bfloat16 network with float32 losses "
        "(CPUs with AMX or AVX512-BF16); 'auto': mixed on a GPU, bfloat16 on such a CPU, else float32",
        choices=PRECISIONS,
    )
    normalize_features: bool = option(
        False, "scale each layer to unit mean activation on the bundled images (Gatys' normalised network)"
    )
    content_layers: tuple[str, ...] | None = option(
        None, "content layers (Keras names or aliases such as relu4_2); none = the architecture's preset"
    )
    style_layers: tuple[str, ...] | None = option(None, "style layers; none = the architecture's preset")
    style_layer_weights: tuple[float, ...] | None = option(
        None, "one weight per style layer, normalised to sum 1; none = equal weights"
    )
    # --- loss ----------------------------------------------------------------------------------------
    content_weight: float = option(1.0, "alpha: weight of the content loss")
    # Calibrated on VGG19/ImageNet with the size-invariant losses below (a beta sweep on Tübingen × Starry
    # Night): a clearly painted image that keeps the content's layout. 1e-4 is subtle, 1e-2 loses the content.
    style_weight: float = option(1e-3, "beta: weight of the style loss")
    tv_weight: float = option(1.0, "weight of the total-variation smoothness loss")
    content_loss: str = option("mean", "content loss: 'mean' squared error or 'gatys' 1/2 sum", choices=CONTENT_LOSSES)
    gram_norm: str = option(
        "size",
        "style loss normalisation: 'size' (Gram/M, 1/4N^2, size-invariant), 'gatys' (1/4N^2M^2), 'mean' (TF tutorial)",
        choices=GRAM_NORMS,
    )
    # --- images --------------------------------------------------------------------------------------
    size: int = option(512, "long side of the output in pixels")
    style_scale: float = option(1.0, "style image long side relative to size")
    style_blend_weights: tuple[float, ...] | None = option(
        None, "one weight per style image, normalised to sum 1; none = equal (seed 004's batch average)"
    )
    # 4K UHD (3840×2160) and a 3840-px 4:3 photo fit; the tiled evaluation keeps memory bounded at any size
    max_pixels: int = option(4096 * 3072, "pixel budget; larger requests are downscaled with a warning")
    preserve_color: bool = option(False, "luminance-only transfer keeping the content's colours (Gatys et al. 2017)")
    # --- optimisation --------------------------------------------------------------------------------
    # The schedule's defaults were chosen by measurement (benchmarks/bench_schedule.py, README "Speed and memory"):
    # ×2 from 128 px with 2 × 100 steps at the coarsest scale and 100 at each other matched the full-size loss of a
    # single-scale run of equal cost (1.05×) with 0.40× its loss at 256 px (large-scale structure) at 512 px.
    steps: int = option(100, "optimisation steps at each scale (the coarsest takes first_scale_steps)")
    optimizer: str = option("lbfgs", "optimiser", choices=OPTIMIZERS)
    learning_rate: float | None = option(
        None, "step size; none = the optimiser's default (L-BFGS 1.0, Adam 5.0 on the 0-255 pixel scale)"
    )
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_epsilon: float = option(1e-8, "Adam epsilon (on the 0-255 pixel scale)")
    # scipy's L-BFGS-B keeps 10 pairs, Torch's 100; 20 converges as well here at a fraction of the memory.
    lbfgs_history: int = option(20, "L-BFGS curvature pairs kept (at most; afresh at each scale)")
    init: str = option("content", "starting image", choices=INITS)
    seed: int = option(
        0, "random seed (noise init, and the network when weights=none); same seed and inputs give the same output"
    )
    pyramid_levels: int | None = option(
        None,
        "coarse-to-fine scales, each pyramid_ratio smaller than the next; 1 = one scale; none = as many as fit "
        "between pyramid_min_size and size",
    )
    pyramid_ratio: float = option(2.0, "size ratio between consecutive scales of the coarse-to-fine schedule")
    pyramid_min_size: int = option(
        128, "when pyramid_levels is none: scales divide size by pyramid_ratio while their long side stays >= this"
    )
    first_scale_steps: int | None = option(None, "steps at the coarsest scale of a multi-scale run; none = 2 × steps")
    snapshot_every: int = option(50, "save a snapshot and a resumable checkpoint every k steps; 0 = off")
    tiff16: bool = option(
        False, "also write output.tif: the result as a 16-bit RGB TIFF for print, without output.png's 8-bit rounding"
    )
    # --- memory --------------------------------------------------------------------------------------
    tile_size: int | None = option(
        None,
        "evaluate the loss in tiles of this long side (halo included) with exact gradients; 0 = never; "
        "none = only when the whole image would not fit memory_budget_mb",
    )
    memory_budget_mb: int | None = option(
        None,
        "memory the loss evaluation and the optimiser's state may use together; none = 3/4 of the GPU's memory, "
        "or a quarter of the RAM (at most 4 GB) on a CPU",
    )

    def validate(self) -> None:
        # whole numbers, finite numbers, flags and strings are checked by type before this (Config.__post_init__)
        if not 0 <= self.seed < 2**32:  # the random network's and the noise's seeds keep 32 bits
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed!r}")
        if not 0 <= self.adam_beta1 < 1:  # 1 would divide by 1 - beta1^t = 0 on the first step
            raise ConfigError(f"adam_beta1 must be in [0, 1), got {self.adam_beta1!r}")
        if not self.adam_epsilon > 0:
            raise ConfigError(f"adam_epsilon must be positive, got {self.adam_epsilon!r}")
        positive = ("size", "steps", "lbfgs_history", "max_pixels", "style_scale", "pyramid_min_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("pyramid_levels", "first_scale_steps"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.pyramid_ratio > 1:
            raise ConfigError(f"pyramid_ratio must be above 1, got {self.pyramid_ratio!r}")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ConfigError(f"memory_budget_mb must be positive, got {self.memory_budget_mb!r}")
        for name in ("content_weight", "style_weight", "tv_weight", "snapshot_every", "tile_size"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}")
        for name in ("style_layer_weights", "style_blend_weights"):
            w = getattr(self, name)
            if w is not None and (any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0):
                raise ConfigError(f"{name} must be non-negative with a positive sum, got {w!r}")
        if self.style_layer_weights is not None and self.style_layers is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ConfigError(
                    f"style_layer_weights has {len(self.style_layer_weights)} values "
                    f"for {len(self.style_layers)} style layers"
                )

    def style_long_side(self, content_long_side: int) -> int:
        """The long side the styles are loaded at beside a content of this long side (before the pixel budget):
        the one rule ``stylize``, ``evaluate`` and the schedule's scales share."""
        return max(1, round(content_long_side * self.style_scale))

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> StyleConfig:
        """A paper's configuration; see ``PRESETS`` for each value's source."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        unknown = sorted(set(overrides) - cls.field_names())
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**{**PRESETS[name]["values"], **overrides})


def field_help(name: str) -> str:
    return StyleConfig.help(name)


# One preset per paper or reference implementation. "values" are StyleConfig overrides; "sources" say
# where each value comes from. Keras' VGG is not the mean-activation-normalised VGG that Gatys used,
# so published alpha/beta ratios are quoted for the record and the weights are re-scaled where noted.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "values": {},
        "sources": {
            "*": "StyleConfig defaults: Gatys 2016 layers on VGG19 with size-invariant losses; weights calibrated here",
        },
    },
    "gatys2016": {
        "values": {
            "pyramid_levels": 1,
            "arch": "vgg19",
            "content_layers": ("block4_conv2",),
            "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
            "style_layer_weights": (0.2, 0.2, 0.2, 0.2, 0.2),
            "content_loss": "gatys",
            "gram_norm": "gatys",
            "pooling": "avg",
            "init": "noise",
            "optimizer": "lbfgs",
            "content_weight": 1.0,
            "style_weight": 1e3,
            "tv_weight": 0.0,
            "size": 512,
            "steps": 500,
        },
        "sources": {
            "pyramid_levels": "the paper optimises at the output size only (no coarse-to-fine schedule)",
            "arch": "Gatys, Ecker, Bethge, CVPR 2016, §2: VGG-19",
            "content_layers": "ibid. §3: conv4_2 (Keras block4_conv2 is Caffe relu4_2, ReLU fused)",
            "style_layers": "ibid. §3 / Fig. 2: conv1_1 ... conv5_1",
            "style_layer_weights": "ibid. §2.2: w_l = 1/5 on the five layers",
            "content_loss": "ibid. eq. 1: 1/2 sum of squared differences",
            "gram_norm": "ibid. eq. 4: 1/(4 N^2 M^2)",
            "pooling": "ibid. §2: max pooling replaced by average pooling",
            "init": "ibid. §2: white noise (Fig. 6 compares content/style init)",
            "optimizer": "ibid. §2: L-BFGS",
            "content_weight": "ibid. eq. 7: alpha, kept at 1 so beta alone sets the ratio",
            "style_weight": "paper's alpha/beta = 1e-3 is for its normalised VGG; 1e3 matches the default's balance"
            " at 512 px (½·SSE over block4_conv2's 1.6M terms); the content term grows with pixels, so divide"
            " beta by (512/size)^2 at other sizes",
            "tv_weight": "not used in the paper",
            "size": "ibid. §3: about 512 px",
            "steps": "not stated; 500 L-BFGS steps converge visually here",
        },
    },
    "tf_tutorial": {
        "values": {
            "pyramid_levels": 1,
            "arch": "vgg19",
            "content_layers": ("block5_conv2",),
            "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
            "content_loss": "mean",
            "gram_norm": "mean",
            "content_weight": 1e4,
            "style_weight": 1e-2,
            "tv_weight": 30.0 / 255.0**2,
            "optimizer": "adam",
            "learning_rate": 0.02 * 255.0,
            "adam_beta1": 0.99,
            "adam_epsilon": 0.1 / 255.0,
            "init": "content",
            "size": 512,
            "steps": 1000,
        },
        "sources": {
            "pyramid_levels": "the paper optimises at the output size only (no coarse-to-fine schedule)",
            "*": "TensorFlow tutorial 'Neural style transfer' (tensorflow.org/tutorials/generative/style_transfer)",
            "content_layers": "tutorial: content_layers = ['block5_conv2']",
            "style_layers": "tutorial: block1_conv1 ... block5_conv1",
            "gram_norm": "tutorial: gram / num_locations, loss = mean((G - A)^2) per layer",
            "content_weight": "tutorial: content_weight = 1e4",
            "style_weight": "tutorial: style_weight = 1e-2",
            "tv_weight": "tutorial: total_variation_weight = 30 on a 0..1 image; squared TV here, rescaled to 0..255",
            "learning_rate": "tutorial: Adam(learning_rate=0.02) on a 0..1 image = 5.1 on 0..255",
            "adam_beta1": "tutorial: beta_1 = 0.99",
            "adam_epsilon": "tutorial: epsilon = 1e-1 on a 0..1 image = 0.1/255 on 0..255",
            "size": "tutorial: max_dim = 512",
            "steps": "tutorial: epochs = 10 x steps_per_epoch = 100",
        },
    },
    "seed001": {
        "values": {
            "pyramid_levels": 1,
            "arch": "vgg19",
            "content_layers": ("block5_conv2",),
            "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
            "content_loss": "gatys",
            "gram_norm": "gatys",
            "init": "content",
            "optimizer": "lbfgs",
            "style_weight": 2e2,
            "size": 512,
            "steps": 300,
        },
        "sources": {
            "pyramid_levels": "the paper optimises at the output size only (no coarse-to-fine schedule)",
            "*": "seed 001 (architecture comparison VGG16/VGG19/ResNet50), §II-V",
            "style_weight": "seed 001 tunes it by hand (§VI); 2e2 matches the default's balance at 512 px"
            " (½·SSE over block5_conv2's 0.4M terms); divide by (512/size)^2 at other sizes",
            "content_loss": "seed 001 §II: L_content = 1/2 sum (F - P)^2",
            "gram_norm": "seed 001 §II: E_l = 1/(4 N^2 M^2) sum (G - A)^2",
            "content_layers": "seed 001 does not list its layers; the Keras example's block5_conv2 it builds on",
            "style_layers": "Keras example: block1_conv1 ... block5_conv1",
            "arch": "seed 001 compares vgg16/vgg19/resnet50; set arch to switch (layer presets per arch)",
            "size": "seed 001 uses 1024 px and 128 px; 512 px fits a laptop, set size for the resolution study",
        },
    },
    "seed004": {
        "values": {
            "pyramid_levels": 1,
            "arch": "vgg19",
            "content_layers": ("conv_4",),
            "style_layers": ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"),
            "content_loss": "mean",
            "gram_norm": "mean",
            "init": "content",
            "optimizer": "lbfgs",
            "style_weight": 1e-3,
            "size": 256,
            "steps": 300,
        },
        "sources": {
            "pyramid_levels": "the paper optimises at the output size only (no coarse-to-fine schedule)",
            "*": "seed 004 (Ast-GAN) §3.3, which follows the PyTorch NST tutorial",
            "content_layers": "seed 004 §3.3: content layer conv_4 (4th conv of VGG19 = block2_conv2)",
            "style_layers": "seed 004 §3.3: conv_1 ... conv_5 (block1_conv1 ... block3_conv1)",
            "content_loss": "seed 004 eq. for L_content: 1/n sum (F_X - F_C)^2",
            "gram_norm": "seed 004: mean squared error between Gram matrices",
            "style_weight": "seed 004 §4.3 sweeps the style weight (Fig. 8) without giving values; a mid value here",
            "size": "seed 004 works on 64 px generated styles; 256 px output",
        },
    },
}
