"""Feature extractors: VGG16, VGG19 and ResNet50 from ``keras.applications``, truncated after the deepest
requested layer, frozen, with the preprocessing of their weights applied inside.

Layer names are Keras names. Keras fuses the ReLU into each conv layer, so ``block4_conv2`` outputs what
Caffe calls ``relu4_2``; the aliases below accept Caffe (``relu4_2``, ``conv4_2``) and PyTorch-tutorial
(``conv_4`` = the 4th conv layer) spellings for the VGGs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from . import backend
from .errors import ConfigError, WeightsNotFoundError
from .images import load_image

# Representation layers per architecture (content, style). VGG: Gatys et al. 2016. ResNet50: seed 001
# does not list its layers; these are the last outputs of each stage, content at stage 4 like VGG's conv4.
LAYER_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "vgg19": {
        "content": ("block4_conv2",),
        "style": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    },
    "vgg16": {
        "content": ("block4_conv2",),
        "style": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    },
    "resnet50": {
        "content": ("conv4_block6_out",),
        "style": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    },
}

KERAS_WEIGHT_FILES = {
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
TORCHVISION_VGG16_FILE = "vgg16_torchvision_imagenet1k_v1_notop_keras.h5"

# Activations kept for the backward pass, their gradients and the framework's temporaries, relative to the
# activations alone. bench_memory.py's whole-image peaks (benchmarks/results/memory.json) grow by 2313 B per pixel for
# VGG19, of which ~530 are the 20 L-BFGS pairs and image-sized arrays; 3.0 (3840 B per pixel) looks generous for the
# backward tiles, but pass 1's forward-only memory, which the allocator keeps, comes on top: with 3.0 a whole 4K run
# peaked at 6.1 GB (results/figures/4k/run_record.json; with 2.0 and larger forward tiles, 8.6 GB).
ACTIVATION_OVERHEAD = 3.0

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_APPS = {
    "vgg16": lambda **kw: keras.applications.VGG16(**kw),
    "vgg19": lambda **kw: keras.applications.VGG19(**kw),
    "resnet50": lambda **kw: keras.applications.ResNet50(**kw),
}


def preprocess(images, mode: str):
    """RGB float images in [0, 255] → network input. 'caffe': BGR minus the ImageNet mean (Keras' VGG and
    ResNet weights); 'torch': /255, minus mean, over std (torchvision weights)."""
    if mode == "caffe":
        # a flip, not a [..., ::-1] slice: TensorFlow's gradient of a slice is a slow kernel of its own
        images = ops.convert_to_tensor(images)
        if not keras.backend.standardize_dtype(images.dtype).startswith(("float", "bfloat")):
            images = ops.cast(images, "float32")  # integer pixels (uint8) would wrap round below 0
        return ops.flip(images, axis=-1) - _CAFFE_MEAN_BGR
    if mode == "torch":
        return (images / 255.0 - _TORCH_MEAN) / _TORCH_STD
    raise ConfigError(f"unknown preprocessing {mode!r}")


# --- weights -------------------------------------------------------------------------------------------
def keras_cache_dir() -> Path:
    """Where Keras keeps downloads: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def weight_search_dirs() -> list[Path]:
    """Folders searched for weight files, in order: the Keras cache, ``$NST_WEIGHTS_DIR`` (os.pathsep-separated),
    and a ``shared/weights`` folder beside the repository (this project's offline layout)."""
    dirs = [keras_cache_dir()]
    dirs += [Path(p) for p in os.environ.get("NST_WEIGHTS_DIR", "").split(os.pathsep) if p]
    repo = Path(__file__).resolve().parent.parent
    dirs += [repo.parent / "shared" / "weights", Path.cwd().parent / "shared" / "weights"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def find_weight_file(filename: str) -> Path | None:
    for d in weight_search_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


def resolve_weights(arch: str, weights: str | None) -> tuple[str | None, str]:
    """(argument for keras.applications, preprocessing mode) for a weights setting, without loading."""
    if weights is None:
        return None, "caffe"
    if weights == "auto":  # ImageNet when it can be had, else random (notebooks label such figures)
        if imagenet_obtainable(arch):
            return resolve_weights(arch, "imagenet")
        warnings.warn(f"no ImageNet weights for {arch} offline; using random weights", stacklevel=2)
        return None, "caffe"
    if weights == "torchvision":
        if arch != "vgg16":
            raise ConfigError(f"weights='torchvision' exists for vgg16 only, not {arch}")
        path = find_weight_file(TORCHVISION_VGG16_FILE)
        if path is None:
            raise WeightsNotFoundError(
                f"{TORCHVISION_VGG16_FILE} not found in {', '.join(map(str, weight_search_dirs()))}"
            )
        return str(path), "torch"
    if weights == "imagenet":
        path = find_weight_file(KERAS_WEIGHT_FILES[arch])
        if path is not None:
            return str(path), "caffe"
        if arch == "vgg16" and find_weight_file(TORCHVISION_VGG16_FILE) and not _online():
            warnings.warn(
                "Keras' VGG16 ImageNet file is not available offline; using torchvision's VGG16 ImageNet "
                "weights with torchvision preprocessing instead",
                stacklevel=2,
            )
            return resolve_weights(arch, "torchvision")
        return "imagenet", "caffe"  # Keras downloads it into its cache
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{weights}: weights file not found")
    return str(path), ("torch" if "torch" in path.name.lower() else "caffe")


def weights_available(arch: str, weights: str = "imagenet") -> bool:
    """True when the weights can be loaded without a download (used by tests to skip with a reason)."""
    if weights == "imagenet":
        return find_weight_file(KERAS_WEIGHT_FILES[arch]) is not None
    if weights == "torchvision":
        return find_weight_file(TORCHVISION_VGG16_FILE) is not None
    return True


def imagenet_obtainable(arch: str) -> bool:
    """ImageNet weights for ``arch`` are on disk (for VGG16 the torchvision stand-in counts) or Keras can
    download them."""
    on_disk = weights_available(arch, "imagenet") or (arch == "vgg16" and weights_available(arch, "torchvision"))
    return on_disk or _online()


@functools.cache  # asked by every 'auto' resolution and notebook check: one probe (up to 3 s offline) a process
def _online() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


# --- layer names ---------------------------------------------------------------------------------------
def _vgg_conv_names(model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def valid_layer_names(model) -> list[str]:
    """Layers whose outputs can serve as representations (4-D activations)."""
    names = []
    for layer in model.layers[1:]:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D)):
            continue
        if model.name.startswith("resnet") and not re.search(r"(_out|_relu|_pool)$", layer.name):
            continue  # ResNet's inner conv/bn layers are legal but never what a user means
        names.append(layer.name)
    return names


def layer_alias(name: str, names, convs: Sequence[str] | None) -> str | None:
    """The one of ``names`` that ``name`` means: itself, or where ``convs`` (a VGG's convolutions in order) is
    given, a Caffe/PyTorch-tutorial alias (``relu4_2`` and ``conv4_2`` = ``block4_conv2``, ``pool4`` =
    ``block4_pool``, ``conv_4`` = the fourth convolution); None where it means none of them."""
    if name in names:
        return name
    if convs is not None:
        m = re.fullmatch(r"(?:relu|conv)(\d)_(\d)", name)
        if m and f"block{m[1]}_conv{m[2]}" in names:
            return f"block{m[1]}_conv{m[2]}"
        m = re.fullmatch(r"pool(\d)", name)
        if m and f"block{m[1]}_pool" in names:
            return f"block{m[1]}_pool"
        m = re.fullmatch(r"conv_(\d+)", name)
        if m and 1 <= int(m[1]) <= len(convs) and convs[int(m[1]) - 1] in names:
            return convs[int(m[1]) - 1]
    return None


def resolve_layer_name(name: str, model) -> str:
    """Keras layer name for ``name`` (a Keras name or, for VGG, a Caffe/PyTorch-tutorial alias)."""
    convs = _vgg_conv_names(model) if model.name.startswith("vgg") else None
    resolved = layer_alias(name, {layer.name for layer in model.layers}, convs)
    if resolved is None:
        raise ConfigError(
            f"unknown layer {name!r} for {model.name}; valid layers: {', '.join(valid_layer_names(model))}"
        )
    return resolved


# --- extractor -----------------------------------------------------------------------------------------
def _swap_pooling(layer):
    if isinstance(layer, keras.layers.MaxPooling2D):
        return keras.layers.AveragePooling2D(
            pool_size=layer.pool_size,
            strides=layer.strides,
            padding=layer.padding,
            name=layer.name,
            dtype=layer.dtype_policy,
        )
    return layer  # shared, so the pretrained weights are reused as they are


class _FoldedBatchNorm(keras.layers.Layer):
    """Stands where a BatchNormalization was folded into the conv before it: passes inputs through."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """The same function without BatchNormalization layers: each inference-mode BN that directly follows a
    Conv2D (ResNet's ``*_conv`` → ``*_bn``) is folded into that conv's kernel and bias,
    w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β, and replaced by an identity. Frozen extractors only."""
    follows = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            prev = layer._inbound_nodes[0].parent_nodes[0].operation if layer._inbound_nodes else None
            if isinstance(prev, keras.layers.Conv2D):
                follows[prev.name] = layer
    folded_bn = {bn.name for bn in follows.values()}

    def clone(layer):
        if layer.name in folded_bn:
            return _FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy)
        if layer.name in follows:
            bn = follows[layer.name]
            gamma = bn.gamma.numpy() if bn.scale else 1.0
            beta = bn.beta.numpy() if bn.center else 0.0
            scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            kernel = layer.kernel.numpy() * scale
            bias = layer.bias.numpy() if layer.use_bias else 0.0
            conv = keras.layers.Conv2D.from_config({**layer.get_config(), "use_bias": True})
            conv.build(layer.input.shape)
            conv.set_weights([kernel, (bias - bn.moving_mean.numpy()) * scale + beta])
            return conv
        return layer

    return keras.models.clone_model(model, clone_function=clone) if follows else model


# --- receptive fields ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Where a layer's feature position p looks in the input image: rows (and columns) p·jump − before …
    p·jump + after. ``jump`` is the layer's downsampling factor; ``before``/``after`` its receptive-field reach."""

    jump: int
    before: int
    after: int


def layer_geometry(model: keras.Model) -> dict[str, Geometry]:
    """The ``Geometry`` of every layer of a functional model, worked out from its convolutions, poolings and
    paddings (square kernels, symmetric padding; 'same' only with stride 1, whose padding does not depend on the
    input's size). Exact tiling rests on it: a tile whose interior starts on the ``jump`` grid and whose halo
    covers ``before``/``after`` computes the interior's features exactly as the whole image does."""
    geometry: dict[str, Geometry] = {}
    by_node: dict[int, Geometry] = {}
    # the model's own graph (a layer shared with the model it was cloned from has nodes in both), inputs first
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            by_node[id(node)] = geometry[node.operation.name] = _node_geometry(
                node.operation, [by_node[id(p)] for p in node.parent_nodes]
            )
    return geometry


def _node_geometry(layer, inputs: list[Geometry]) -> Geometry:
    """One layer's geometry from its inputs'; layers that keep positions (activations, batch norm, Add) keep it."""
    if not inputs:
        return Geometry(1, 0, 0)
    jump = inputs[0].jump
    if any(g.jump != jump for g in inputs):
        raise ConfigError(f"{layer.name}: inputs with different strides cannot be tiled")
    before, after = max(g.before for g in inputs), max(g.after for g in inputs)
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        if len({top, bottom, left, right}) != 1:
            raise ConfigError(f"{layer.name}: asymmetric padding cannot be tiled")
        return Geometry(jump, before + top * jump, after - top * jump)
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        conv = isinstance(layer, keras.layers.Conv2D)
        size = layer.kernel_size if conv else layer.pool_size
        stride = layer.strides
        dilation = layer.dilation_rate if conv else (1, 1)
        if size[0] != size[1] or stride[0] != stride[1] or dilation[0] != dilation[1]:
            raise ConfigError(f"{layer.name}: non-square kernels cannot be tiled")
        k = dilation[0] * (size[0] - 1) + 1
        if layer.padding == "same":
            if stride[0] != 1:
                raise ConfigError(f"{layer.name}: strided 'same' padding depends on the input size; cannot tile")
            low, high = -((k - 1) // 2), k - 1 - (k - 1) // 2
        else:
            low, high = 0, k - 1
        return Geometry(jump * stride[0], before - low * jump, after + high * jump)
    return Geometry(jump, before, after)


class FeatureExtractor:
    """Named activations of a truncated, frozen network for RGB images in [0, 255].

    ``extractor(images)`` returns ``{layer_name: NHWC tensor}`` for the requested layers (aliases resolved).
    Compiled code calls ``extractor.apply(extractor.params, images)`` instead, so the weights are an argument
    of the compiled function under JAX, and under TensorFlow read from the variables or, with ``constant_weights``
    (bfloat16 by default) where the caller asks (``apply(..., constants=True)``: a small image's whole-image
    loss), compiled in as constants (see ``backend``). ``geometry`` holds each layer's receptive
    field, ``stride`` the deepest layer's downsampling and ``halo`` the margin a tile needs for exact features.
    """

    def __init__(
        self,
        arch: str = "vgg19",
        layers: Sequence[str] = (),
        weights: str | None = "imagenet",
        pooling: str = "max",
        preprocessing: str | None = None,
        normalize: bool = False,
        precision: str = "float32",
        seed: int = 0,
        constant_weights: bool | None = None,
    ):
        if arch not in _APPS:
            raise ConfigError(f"unknown architecture {arch!r}; choose from {', '.join(_APPS)}")
        if pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        keras_weights, default_pre = resolve_weights(arch, weights)
        self.arch, self.weights, self.pooling = arch, weights, pooling
        self.preprocessing = preprocessing or default_pre
        self.weights_source = keras_weights
        precision = resolve_precision(precision)
        if precision not in _POLICIES:
            raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(_POLICIES)} or 'auto'")
        self.precision = precision
        # Where asked (``apply(constants=True)``: the whole-image loss of a small single-scale run, see
        # ``objective.INLINE_WEIGHTS_MAX_PIXELS``), a TensorFlow function takes this extractor's weights as graph
        # constants rather than read its variables: oneDNN then reorders each convolution filter into its blocked
        # layout once and caches it (a variable's filter it reorders on every call), and the bfloat16 cast of a
        # constant folds away at compile time: a bfloat16 step at 256 px takes 0.85x the time on the Intel CPU
        # with AMX (bench_precision.py; 0.98x on an AMD EPYC with AVX512-BF16 alone, where it is not asked). Each
        # such function holds its own copies of the weights (the constants, their folded cast, oneDNN's reordered
        # filters: ~0.6 GB for VGG19), hence small images only; target and tile functions read the variables.
        # float32 always does (the reorders are a smaller share there). None = bfloat16 only.
        self.constant_weights = precision == "bfloat16" if constant_weights is None else constant_weights
        base = build_base(arch, keras_weights, _POLICIES[precision], seed)
        self.names = {n: resolve_layer_name(n, base) for n in layers}  # as requested → Keras (aliases resolved)
        self.layers = list(dict.fromkeys(self.names.values()))  # one layer asked for under two names is one output
        if not self.layers:
            raise ConfigError("no layers requested")
        with dtype_policy(_POLICIES[precision]):  # the layers made here too (pooling, folded convolutions)
            # A functional model on inner outputs keeps only the layers they need: the truncation.
            model = keras.Model(base.input, [base.get_layer(n).output for n in self.layers], name=f"{arch}_features")
            if pooling == "avg":
                model = keras.models.clone_model(model, clone_function=_swap_pooling)
            model = fold_batchnorm(model)  # ResNet: fewer ops forward and backward, same function
        self.model = model
        self.model.trainable = False
        self._all_geometry = layer_geometry(model)
        self.geometry = {name: self._all_geometry[name] for name in self.layers}
        self.stride = max(g.jump for g in self.geometry.values())  # downsampling of the deepest requested layer
        # a tile's margin: the deepest reach on either side, on the stride grid so tile offsets stay aligned
        reach = max(max(g.before, g.after - g.jump + 1) for g in self.geometry.values())
        self.halo = -(-reach // self.stride) * self.stride
        self.normalize = normalize
        self.scales = {name: 1.0 for name in self.layers}
        if normalize:
            self.scales = self._unit_mean_scales()

    def _unit_mean_scales(self) -> dict[str, float]:
        """1 / mean activation of each layer over the bundled sample images at 128 px: Gatys et al.'s
        normalised network (per layer), so that alpha/beta mean the same for any network and weight set."""
        data = Path(__file__).resolve().parent.parent / "data"
        paths = sorted(p for p in data.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not paths:
            raise ConfigError(f"normalize_features needs the bundled images in {data}")
        sums = dict.fromkeys(self.layers, 0.0)
        for path in paths:
            feats = self._raw(load_image(path, 128)[None])
            for name in self.layers:
                sums[name] += float(ops.mean(feats[name]))
        return {name: len(paths) / max(total, 1e-12) for name, total in sums.items()}

    @property
    def loss_noise(self) -> float:
        """The loss's relative evaluation noise at this precision (``LOSS_NOISE``). On a GPU, float32 convolutions
        and matrix products run as TF32 by default on both backends (NVIDIA Ampere and later: float16's 10-bit
        mantissa), so float32 there is given float16's allowance (estimated, not measured: no GPU was lent)."""
        if self.precision == "float32" and backend.gpu_available():
            return LOSS_NOISE["mixed"]
        return LOSS_NOISE[self.precision]

    @property
    def mixed(self) -> bool:
        """float16 network: the objective scales its loss so the gradient stays in float16's range."""
        return self.precision == "mixed"

    @property
    def min_side(self) -> int:
        """Smallest image side accepted: the deepest layer's total stride, so that each of its positions comes from
        a stride's worth of image. VGG's pooling leaves a smaller image no position at all; ResNet's padded strided
        convolutions would still give a 1×1 map, made mostly of padding, which is refused as well."""
        return self.stride

    @functools.cached_property
    def params(self):
        """The frozen weights as compiled functions take them: (trainable, non-trainable) value lists on JAX,
        None on TensorFlow (which reads its variables, or where asked compiles them in as constants:
        ``constant_weights``, ``apply(constants=True)``)."""
        if backend.name() != "jax":
            return None
        return [v.value for v in self.model.trainable_variables], [v.value for v in self.model.non_trainable_variables]

    def _raw(self, images, params=None, constants: bool = False) -> dict:
        x = preprocess(ops.cast(images, "float32"), self.preprocessing)
        if params is None and constants and self.constant_weights:
            trainable = backend.graph_constants(self.model.trainable_variables)
            if trainable is not None:  # tracing a TensorFlow function
                params = (trainable, backend.graph_constants(self.model.non_trainable_variables))
        if params is None:
            outputs = self.model(x, training=False)
        else:
            outputs, _ = self.model.stateless_call(params[0], params[1], x, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(self.layers, outputs))

    def apply(self, params, images, constants: bool = False) -> dict:
        """``{layer: features}`` of float32 RGB images in [0, 255], with the weights ``params`` (``self.params``).
        ``constants``: a TensorFlow function being traced takes the weights as graph constants if
        ``constant_weights`` allows it."""
        outputs = self._raw(images, params, constants)
        if self.precision != "float32":  # Grams sum over thousands of positions: float32 from here on
            outputs = {name: ops.cast(out, "float32") for name, out in outputs.items()}
        if self.normalize:
            return {name: out * self.scales[name] for name, out in outputs.items()}
        return outputs

    def __call__(self, images) -> dict:
        return self.apply(self.params, images)

    def feature_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """(rows, columns, channels) of each layer's features for an image of height × width."""
        shapes = self.model.compute_output_shape((1, height, width, 3))
        if isinstance(shapes, tuple) and shapes and isinstance(shapes[0], int | None):
            shapes = [shapes]
        return {name: (int(s[1]), int(s[2]), int(s[3])) for name, s in zip(self.layers, shapes)}

    def bytes_per_pixel(self) -> float:
        """Estimated memory of one forward and backward pass per input pixel: every activation up to the deepest
        layer (kept for the backward pass) with its gradient, in the compute dtype."""
        itemsize = 4 if self.precision == "float32" else 2
        total = 0.0
        for layer in self.model.layers:
            shape = getattr(layer, "output", None)
            shape = getattr(shape, "shape", None)
            if shape is None or len(shape) != 4 or isinstance(layer, keras.layers.InputLayer):
                continue
            total += shape[-1] / self._all_geometry[layer.name].jump ** 2
        return ACTIVATION_OVERHEAD * itemsize * total

    def resolved(self) -> dict[str, str]:
        """Which weights and preprocessing ``weights='imagenet'`` / ``'auto'`` resolved to on this machine: Keras'
        file, torchvision's VGG16 in its stead, or random weights (by file name: no machine's path). Run records
        keep it, so that a resume elsewhere cannot go on against another network unnoticed."""
        source = self.weights_source
        if source == "imagenet":  # Keras downloads it now, as the file a resume will then find on disk
            source = KERAS_WEIGHT_FILES[self.arch]
        weights = "random" if source is None else Path(source).name
        return {"weights": weights, "preprocessing": self.preprocessing}

    def keras_name(self, name: str) -> str:
        """The Keras name of a layer this extractor computes, asked for by any of its names (``relu4_2``)."""
        if name in self.names:
            return self.names[name]
        resolved = resolve_layer_name(name, self.model)
        if resolved not in self.layers:
            raise ConfigError(f"layer {name!r} is not one this extractor computes ({', '.join(self.layers)})")
        return resolved

    def __repr__(self) -> str:
        return (
            f"FeatureExtractor(arch={self.arch!r}, weights={self.weights!r}, pooling={self.pooling!r}, "
            f"preprocessing={self.preprocessing!r}, layers={self.layers})"
        )


# the Keras dtype policy of each precision: the network computes in it, the losses in float32
# always set while a network is built: a policy the user set globally (keras.mixed_precision) must not turn a
# float32 network into a bfloat16 one unnoticed
_POLICIES = {"float32": "float32", "mixed": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# the loss's relative evaluation noise at each precision, which L-BFGS's line search must allow for: bfloat16 measured
# (VGG19 at 256 px, a 300-step image, the default loss: the residual of f(x + δ) around its linearisation has a
# standard deviation of 1.6-3.3e-5 of f for δ of 0.01-1 grey levels; float32's is 1e-7), taken at twice that;
# float16 rounds 8x finer than bfloat16 (11 significant bits against 8), estimated from it, not measured
LOSS_NOISE = {"float32": 0.0, "mixed": 1e-5, "bfloat16": 5e-5}


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` while networks are built, then restored."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def build_base(arch: str, keras_weights: str | None, policy: str = "float32", seed: int | None = None):
    """The headless network in the dtype ``policy`` (whatever policy is set globally); with
    ``keras_weights=None`` and a ``seed``, its random weights are ``seed_weights``'."""
    try:
        with dtype_policy(policy):
            model = _APPS[arch](include_top=False, weights=keras_weights, input_shape=(None, None, 3))
        if keras_weights is None and seed is not None:
            seed_weights(model, seed)
        return model
    except Exception as exc:  # Keras raises plain Exceptions for download failures
        if keras_weights == "imagenet":
            raise WeightsNotFoundError(
                f"{arch} ImageNet weights are not in {keras_cache_dir()} and could not be downloaded "
                f"({_first_line(exc)}); put {KERAS_WEIGHT_FILES[arch]} there or set NST_WEIGHTS_DIR"
            ) from None
        if keras_weights is not None:
            raise WeightsNotFoundError(f"{keras_weights}: cannot load as {arch} weights ({_first_line(exc)})") from None
        raise


def seed_weights(model, seed: int) -> None:
    """Random weights that are a function of ``seed`` alone. Keras' initialisers are unseeded in
    ``keras.applications``, so two processes (two sweep workers, a run and its ``resume``) would otherwise
    optimise against different networks. Every convolution kernel is drawn again from Keras' default
    Glorot-uniform distribution with NumPy (the same numbers on every machine, device and backend), the k-th
    variable from ``(seed, k)``, so the weights of a layer do not depend on how the network is truncated later;
    biases and BatchNorm variables keep their constant initial values."""
    for k, variable in enumerate(model.weights):
        shape = tuple(variable.shape)
        if len(shape) != 4:
            continue
        receptive = shape[0] * shape[1]
        limit = np.sqrt(6.0 / (receptive * shape[2] + receptive * shape[3]))
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, k])
        variable.assign(rng.uniform(-limit, limit, shape).astype(np.float32))


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


_CACHE: dict[tuple, FeatureExtractor] = {}


def resolve_precision(precision: str) -> str:
    """'auto' is 'mixed' (float16 network, float32 losses) on a GPU, 'bfloat16' (bfloat16 network, float32
    losses) on a CPU with bfloat16 arithmetic (Intel AMX or AVX512-BF16) under TensorFlow, whose oneDNN convolutions
    use it (``benchmarks/bench_precision.py`` measures the gain), and 'float32' elsewhere."""
    if precision != "auto":
        return precision
    if backend.gpu_available():
        return "mixed"
    if backend.name() == "tensorflow" and backend.cpu_has_bf16_matmul():
        return "bfloat16"
    return "float32"


def get_extractor(
    arch, layers, weights="imagenet", pooling="max", preprocessing=None, normalize=False, precision="float32", seed=0
):
    """A cached FeatureExtractor: building one loads tens of MB of weights, sweeps reuse it. ``seed`` draws the
    random weights (``weights`` None, or 'auto' without ImageNet weights) and is ignored otherwise."""
    precision = resolve_precision(precision)
    seeded = seed if weights in (None, "auto") else None  # pretrained networks are shared across seeds
    key = (arch, tuple(layers), weights, pooling, preprocessing, normalize, precision, seeded)
    if key not in _CACHE:
        _CACHE[key] = FeatureExtractor(
            arch, layers, weights, pooling, preprocessing, normalize, precision, seed=0 if seeded is None else seeded
        )
    return _CACHE[key]
