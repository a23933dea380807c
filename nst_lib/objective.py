"""The objective of one scale: an image's loss against targets computed once (content features, style Grams) and
the gradient of that loss with respect to its pixels, evaluated on the whole image or, exactly, tile by tile.

    evaluate(image, content, style, config=None, **overrides)  →  Evaluation(total, content, style, tv, grad)

Whole image: one compiled function (``backend.value_and_grad``) returns the loss terms and d loss / d pixels.

Tiles (for images whose activations do not fit the memory budget), with the same result:
  The image is cut into tiles whose *interiors* partition it on the grid of the deepest layer's stride S, each
  tile widened by a halo of at least that layer's receptive-field reach (``FeatureExtractor.halo``). A feature
  position then belongs to exactly one interior, and there its value equals the whole image's.
  pass 1  forward only, tile by tile: each style layer's Gram matrix accumulated over the interiors, hence the
          style loss and, in closed form, its gradient D_l = dE_l/dG_l.
  pass 2  tile by tile, back-propagate to the tile's pixels the gradient of
              Σ_l <F_l K_l, F_l>  +  the content loss of the interior,
          with F masked to the interior and K_l = β w_l D_l (÷ M_l for the normalised Grams): its gradient with
          respect to F is exactly dL/dF, so the tile adds exactly its interior's share of the gradient.
  TV is local on the pixels and computed on the whole image (NumPy).
  Memory: one tile's activations and a few image-sized arrays, whatever the image's size.

Loss terms as in ``losses`` (see its docstring for what α and β mean under each normalisation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from . import backend
from .config import StyleConfig
from .errors import ConfigError, ImageError
from .features import LAYER_PRESETS, FeatureExtractor, get_extractor
from .images import (
    LUMINANCE_WEIGHTS,
    ImageLike,
    grayscale,
    load_image,
    match_luminance,
    resize,
    source_name,
    style_list,
)
from .losses import content_loss, gram_matrix, normalize_weights, style_layer_loss, tv_loss, tv_loss_and_grad

# A forward-only tile's side relative to a forward-and-backward tile's (Objective.forward_tiles). Forward-only
# passes need about a quarter of the memory per pixel, but the allocator keeps what pass 1 used while pass 2 runs:
# measured on a tiled 1920 × 1080 run, twice the side (4× the area) added 0.4 GB to a 1 GB budget's peak, and
# within a fixed budget equal tiles leave the most room to both passes.
FORWARD_TILE_FACTOR = 1

# An extractor with constant_weights (bfloat16) compiles its weights into the whole-image loss of images up to this
# many pixels, on a CPU with AMX. Measured on the 2-core Intel CPU with AMX (bench_precision.py): a bfloat16 step at
# 256 px (49k pixels) takes 0.85x the time of one reading the variables, at 512 px (197k) no less; and each compiled
# function holding the weights keeps ~0.6 GB more resident (the constants, their folded bfloat16 cast, oneDNN's
# reordered filters). On an AMD EPYC with AVX512-BF16 alone the step took 0.98-0.99x: not worth the memory there.
# So: small single-scale runs on AMX only (the live preview; stylize passes False for a multi-scale run, whose small
# scales' traces would stay resident through its large ones); larger images, and tiles, read the variables.
INLINE_WEIGHTS_MAX_PIXELS = 2**17


def inline_weights_pay(pixels: int) -> bool:
    """Whether a bfloat16 whole-image loss of this many pixels should take its weights as constants (see above)."""
    amx = "amx_bf16" in backend.cpu_bf16_instructions()
    return pixels <= INLINE_WEIGHTS_MAX_PIXELS and amx and backend.cpu_has_bf16_matmul()  # NST_CPU_BF16=0 says no


# The memory budget's defaults when StyleConfig.memory_budget_mb is None. The budget covers the loss evaluation's
# activations and image-sized arrays and the optimiser's state; the network, the framework and the process's own
# memory come on top (about 0.7 GB for VGG19 on CPU).
GPU_BUDGET_BYTES = 16 * 2**30  # a 16 GB card (Colab's T4, a V100) when the device cannot say
GPU_BUDGET_SHARE = 0.75  # of the accelerator's memory: the rest for the framework, the weights, fragmentation
CPU_BUDGET_SHARE = 0.25  # of the machine's RAM ...
CPU_BUDGET_MAX = 4 * 2**30  # ... at most 4 GB, so a 4K run stays near 6 GB of RAM, as it must on a 16 GB GPU
# the share of the budget the optimiser's state (L-BFGS pairs, Adam moments) may take; the evaluation the rest
OPTIMIZER_BUDGET_SHARE = 0.25


@dataclass
class Evaluation:
    """The loss terms (weighted, as in ``StyleResult.history``) and d total / d pixel (H×W×3 float32, on the
    0–255 scale) of one image; ``tiles`` is how many tiles it was evaluated in (1: the whole image)."""

    total: float
    content: float
    style: float
    tv: float
    grad: np.ndarray
    tiles: int = 1


def resolve_layers(config: StyleConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(content layers, style layers) of a config: its own, or its architecture's presets."""
    preset = LAYER_PRESETS[config.arch]
    return config.content_layers or preset["content"], config.style_layers or preset["style"]


def extractor_for(config: StyleConfig) -> FeatureExtractor:
    content_layers, style_layers = resolve_layers(config)
    return get_extractor(
        config.arch,
        content_layers + style_layers,
        config.weights,
        config.pooling,
        config.preprocessing,
        config.normalize_features,
        config.precision,
        seed=config.seed,  # random weights are drawn from the run's seed: a resume gets the same network
    )


# --- tiles --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """A tile: its input rows/columns [top, bottom) × [left, right) and its interior [y0, y1) × [x0, x1), in
    image pixels."""

    top: int
    bottom: int
    left: int
    right: int
    y0: int
    y1: int
    x0: int
    x1: int


def memory_budget(config: StyleConfig) -> int:
    """Bytes the loss evaluation and the optimiser's state may use together: ``config.memory_budget_mb``, else
    three quarters of the GPU's memory (16 GB when it cannot say) or a quarter of the RAM, at most 4 GB."""
    if config.memory_budget_mb:
        return int(config.memory_budget_mb * 2**20)
    if backend.gpu_available():
        return int(GPU_BUDGET_SHARE * (backend.device_memory_bytes() or GPU_BUDGET_BYTES))
    return int(min(CPU_BUDGET_SHARE * backend.ram_bytes(), CPU_BUDGET_MAX))


def tile_size_for(config: StyleConfig, extractor: FeatureExtractor, height: int, width: int) -> int:
    """The tile side to use for an image of height × width: 0 = the whole image at once.

    ``config.tile_size`` 0 never tiles; a number tiles with tiles of that long side (halo included); None tiles
    only when the whole image's activations would exceed the memory budget, then with the largest tiles that fit."""
    smallest = 2 * extractor.halo + extractor.stride
    if config.tile_size == 0:
        return 0
    if config.tile_size is not None:
        if config.tile_size < smallest:
            raise ConfigError(
                f"tile_size {config.tile_size} is too small for {extractor.arch}'s layers: a tile needs a "
                f"{extractor.halo}-px halo on each side, so at least {smallest} px"
            )
        return 0 if config.tile_size >= max(height, width) else int(config.tile_size)
    per_pixel = extractor.bytes_per_pixel()
    # the evaluation's share of the budget, less its own image-sized arrays (image, gradient, tile buffers)
    budget = (1 - OPTIMIZER_BUDGET_SHARE) * memory_budget(config) - 16 * height * width * 3
    if per_pixel * height * width <= budget:
        return 0
    side = int(math.sqrt(max(budget, 0) / per_pixel)) // extractor.stride * extractor.stride
    if side < smallest:  # no tile fits: the smallest the halo allows, over the budget, said
        warnings.warn(
            f"the memory budget ({memory_budget(config) / 2**20:.0f} MB) fits tiles of {side} px, less than "
            f"{extractor.arch}'s layers need ({smallest} px with their {extractor.halo}-px halo): using {smallest} px "
            f"tiles, about {per_pixel * smallest * smallest / 2**30:.2f} GB; raise memory_budget_mb or use "
            "shallower layers",
            stacklevel=2,
        )
    return max(side, smallest)


def plan_tiles(height: int, width: int, tile_size: int, halo: int, stride: int) -> list[Tile]:
    """Tiles of at most ``tile_size`` per side whose interiors partition the image on the ``stride`` grid, each
    input window covering its interior widened by ``halo`` (clipped at the image's edges). Interiors are as equal as
    the grid allows, and every window has the same shape: one compiled function and one set of the backend's cached
    kernels serve them all (each new shape costs a trace and, on CPU, a copy of the network's weights)."""
    core = tile_size - 2 * halo
    if core < stride:
        raise ConfigError(f"tile_size {tile_size} leaves no interior inside a {halo}-px halo")

    def windows(length: int, core: int) -> list[tuple[int, int, int, int]]:
        """(window start, window end, interior start, interior end) along one axis."""
        cells = math.ceil(length / stride)  # interior boundaries stay on the stride grid
        n = max(1, math.ceil(cells / max(1, core // stride)))
        edges = [min(length, round(i * cells / n) * stride) for i in range(n + 1)]
        edges[-1] = length
        cuts = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        if len(cuts) == 1:
            return [(0, length, 0, length)]
        starts = [max(0, a - halo) // stride * stride for a, _ in cuts]  # on the grid: features align
        need = max(min(length, b + halo) - s for s, (_, b) in zip(starts, cuts))
        # one window length for all, ≡ length (mod stride): a window ending at the image's edge starts on the grid
        span = min(length, need + (length - need) % stride)
        return [(min(s, length - span), min(s, length - span) + span, a, b) for s, (a, b) in zip(starts, cuts)]

    def axis(length: int) -> list[tuple[int, int, int, int]]:
        if length <= tile_size:  # one window spans the axis: no halo to recompute
            return [(0, length, 0, length)]
        out = windows(length, core)
        if out[0][1] - out[0][0] > tile_size and core - stride >= stride:
            out = windows(length, core - stride)  # the rounding took a window past tile_size: narrower interiors
        if out[0][1] - out[0][0] > tile_size:  # a tile with room for one stride only: windows of their own sizes
            out = [(max(0, a - halo), min(length, b + halo), a, b) for _, _, a, b in out]
        return out

    return [
        Tile(top, bottom, left, right, y0, y1, x0, x1)
        for top, bottom, y0, y1 in axis(height)
        for left, right, x0, x1 in axis(width)
    ]


# --- the objective ----------------------------------------------------------------------------------------------
class Objective:
    """The loss and pixel gradient of images of one shape against fixed targets. Called as the optimisers'
    ``fg(x_flat) -> (total, parts, grad_flat)``; ``evaluate(image)`` returns an ``Evaluation``."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        config: StyleConfig,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        tile_size: int = 0,
        inline_weights: bool | None = None,
    ):
        """``inline_weights``: compile the weights into the whole-image loss as constants (where the extractor's
        ``constant_weights`` allows); None = for images up to ``INLINE_WEIGHTS_MAX_PIXELS`` on a CPU with AMX."""
        self.extractor, self.config = extractor, config
        content_layers, style_layers = resolve_layers(config)
        self.content_layers = [extractor.keras_name(n) for n in content_layers]
        self.style_layers = [extractor.keras_name(n) for n in style_layers]
        self.shape = tuple(content.shape)
        self.layer_weights = normalize_weights(config.style_layer_weights, len(style_layers), "style_layer_weights")
        self.blend = normalize_weights(config.style_blend_weights, len(styles), "style_blend_weights")
        # float16 backward passes underflow on small gradients: scale the loss up, the gradient back down, and halve
        # the scale whenever the scaled gradient overflows
        self.loss_scale = 2.0**10 if extractor.mixed else 1.0
        self.tile_size = tile_size
        h, w = self.shape[:2]
        self.tiles = plan_tiles(h, w, tile_size, extractor.halo, extractor.stride) if tile_size else None
        # forward-only passes (the Grams of pass 1, the targets): tiles FORWARD_TILE_FACTOR times as large per side
        forward_size = min(FORWARD_TILE_FACTOR * tile_size, max(h, w)) // extractor.stride * extractor.stride
        self.forward_tiles = (
            plan_tiles(h, w, forward_size, extractor.halo, extractor.stride)
            if forward_size > tile_size
            else self.tiles  # the same tiles (the default factor 1): not planned twice
        )
        if tile_size:
            backend.return_large_buffers()
        self.graph = _loss_graph(extractor, self.content_layers, self.style_layers, self.layer_weights, config)
        self.normalized = self.graph.normalized  # Grams divided by their positions (not Gatys' raw sums)
        # the weights are inputs of the compiled functions, not constants in them: a new α, β or TV weight reuses
        # the traced code (what a live preview does after every slider move)
        self.weights = np.array([config.content_weight, config.style_weight, config.tv_weight], np.float32)
        # targets: once per scale, never per step; small ones remembered for the next Objective on the same inputs
        small = content.nbytes + sum(s.nbytes for s in styles) <= _TARGETS_MAX_BYTES
        key = (self.graph, bool(tile_size), _digest(content), tuple(_digest(s) for s in styles)) if small else None
        cached = _TARGETS.get(key)
        if cached is None:
            self.content_targets = self._content_targets(content)
            grams = [self._grams(s) for s in styles]
            self.style_targets = [np.stack([g[layer] for g in grams]) for layer in self.style_layers]
            if key is not None:
                _remember(key, (self.content_targets, self.style_targets))
        else:
            _TARGETS.move_to_end(key)
            self.content_targets, self.style_targets = cached
        if inline_weights is None:
            inline_weights = inline_weights_pay(h * w)
        self.inline_weights = bool(
            inline_weights and extractor.constant_weights and self.tiles is None and backend.name() == "tensorflow"
        )  # JAX passes the weights as arguments whatever this says: one compiled program, not two
        self._whole = self.graph.whole_inlined if self.inline_weights else self.graph.whole
        if self.tiles is None:
            self._whole_args = (
                [ops.convert_to_tensor(t) for t in self.content_targets],
                [ops.convert_to_tensor(t) for t in self.style_targets],
                ops.convert_to_tensor(self.blend),
                ops.convert_to_tensor(self.weights),
            )

    # --- targets ------------------------------------------------------------------------------------------
    def _content_targets(self, content: np.ndarray) -> list[np.ndarray]:
        if self.tiles is None:
            feats = self.extractor(content[None])
            return [backend.to_numpy(feats[layer]) for layer in self.content_layers]
        h, w = content.shape[:2]
        shapes = self.extractor.feature_shapes(h, w)
        out = [np.zeros((1, *shapes[layer]), np.float32) for layer in self.content_layers]
        for tile in self.forward_tiles:
            feats = self.graph.content_features(_crop(content, tile)[None], self.extractor.params)
            for target, layer, f in zip(out, self.content_layers, feats):
                (gy0, gy1, ly0), (gx0, gx1, lx0) = self._interior(tile, layer, h, w)
                target[0, gy0:gy1, gx0:gx1] = backend.to_numpy(f)[0, ly0 : ly0 + gy1 - gy0, lx0 : lx0 + gx1 - gx0]
        return out

    def _grams(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """{style layer: Gram of ``image``} (÷M for the normalised losses), tiled when the image is larger than a
        tile (a style image as large as a 4K output) — the content's tile, or where the content runs whole, the
        tile the style image itself would need (a style larger than the content: ``style_scale`` > 1)."""
        h, w = image.shape[:2]
        tile = self.tile_size or tile_size_for(self.config, self.extractor, h, w)
        forward_size = FORWARD_TILE_FACTOR * tile
        if not tile or max(h, w) <= forward_size:
            feats = self.extractor(image[None])
            return {
                layer: backend.to_numpy(gram_matrix(feats[layer], normalize=self.normalized))[0]
                for layer in self.style_layers
            }
        tiles = plan_tiles(h, w, forward_size, self.extractor.halo, self.extractor.stride)
        grams, positions = self._accumulate_grams(image, tiles)
        return {
            layer: (grams[layer] / (positions[layer] if self.normalized else 1.0)).astype(np.float32)
            for layer in self.style_layers
        }

    def _accumulate_grams(self, image: np.ndarray, tiles: list[Tile]) -> tuple[dict, dict]:
        """Raw Grams Σ FᵀF over the tiles' interiors (float64) and each layer's number of positions M."""
        h, w = image.shape[:2]
        shapes = self.extractor.feature_shapes(h, w)
        # summed per entry of the layer list, not per name: a layer listed twice (two names of one layer, or one
        # name repeated to weight it) would otherwise be summed twice into one Gram
        totals = [0.0] * len(self.style_layers)
        for tile in tiles:
            masks = self._masks(tile, self.style_layers, h, w)
            result = self.graph.tile_grams(_crop(image, tile)[None], self.extractor.params, masks)
            for i, g in enumerate(result):
                totals[i] = totals[i] + backend.to_numpy(g).astype(np.float64)
        grams = dict(zip(self.style_layers, totals))
        positions = {layer: shapes[layer][0] * shapes[layer][1] for layer in self.style_layers}
        return grams, positions

    # --- where a tile's interior lies in each layer ---------------------------------------------------------
    def _interior(self, tile: Tile, layer: str, height: int, width: int):
        """((global first row, global end row, row in the tile), (the same for columns)) of ``tile``'s interior in
        ``layer``'s feature map; the last tile of a row or column runs to the feature map's end."""
        jump = self.extractor.geometry[layer].jump
        full_h, full_w, _ = self.extractor.feature_shapes(height, width)[layer]
        rows = (tile.y0 // jump, full_h if tile.y1 == height else tile.y1 // jump, tile.y0 // jump - tile.top // jump)
        cols = (tile.x0 // jump, full_w if tile.x1 == width else tile.x1 // jump, tile.x0 // jump - tile.left // jump)
        return rows, cols

    def _masks(self, tile: Tile, layers: Sequence[str], height: int, width: int) -> list[np.ndarray]:
        """Per layer, a (rows, cols, 1) mask of the tile's feature map: 1 on its interior, 0 on the halo."""
        shapes = self.extractor.feature_shapes(tile.bottom - tile.top, tile.right - tile.left)
        masks = []
        for layer in layers:
            (gy0, gy1, ly0), (gx0, gx1, lx0) = self._interior(tile, layer, height, width)
            rows, cols, _ = shapes[layer]
            mask = np.zeros((rows, cols, 1), np.float32)
            mask[ly0 : ly0 + gy1 - gy0, lx0 : lx0 + gx1 - gx0] = 1.0
            masks.append(mask)
        return masks

    # --- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, image: np.ndarray) -> Evaluation:
        image = np.asarray(image, np.float32).reshape(self.shape)
        if self.tiles is None:
            return self._evaluate_whole(image)
        return self._evaluate_tiled(image)

    def __call__(self, x_flat: np.ndarray) -> tuple[float, dict, np.ndarray]:
        e = self.evaluate(x_flat)
        return e.total, {"content": e.content, "style": e.style, "tv": e.tv}, e.grad.reshape(-1)

    def _evaluate_whole(self, image: np.ndarray) -> Evaluation:
        x = ops.convert_to_tensor(image[None])
        while True:
            scale = ops.convert_to_tensor(self.loss_scale)
            aux, g = self._whole(x, self.extractor.params, *self._whole_args, scale)
            g = backend.to_numpy(g)[0] / self.loss_scale
            if self.loss_scale <= 1.0 or np.isfinite(g).all():
                break
            self.loss_scale /= 2.0
        total, lc, ls, lt = (float(backend.to_numpy(v)) for v in aux)
        return Evaluation(total, lc, ls, lt, g.astype(np.float32))

    def _evaluate_tiled(self, image: np.ndarray) -> Evaluation:
        h, w = image.shape[:2]
        c = self.config
        # pass 1: the whole image's Grams, hence the style loss and the quadratic forms whose gradients are dL/dF
        grams, positions = self._accumulate_grams(image, self.forward_tiles)
        norm = {"size": 4.0, "mean": 1.0, "gatys": 4.0}[c.gram_norm]
        ls, quadratics = 0.0, []
        for w_l, layer, targets in zip(self.layer_weights, self.style_layers, self.style_targets):
            m = positions[layer]
            n = targets.shape[-1]
            g = grams[layer] / m if self.normalized else grams[layer]
            diff = g[None] - targets.astype(np.float64)
            scale = n * n * (m * m if c.gram_norm == "gatys" else 1.0) * norm
            per_style = np.sum(diff**2, axis=(1, 2)) / scale
            ls += float(w_l) * float(np.sum(self.blend * per_style))
            d = np.tensordot(self.blend, 2.0 * diff / scale, axes=1)  # dE/dG (dE/dĜ for normalised Grams)
            quadratics.append((c.style_weight * float(w_l) * d / (m if self.normalized else 1.0)).astype(np.float32))
        ls *= c.style_weight
        # each content layer's weight on its tile's Σ (F - P)²: ½ α / layers ('gatys'), α / layers / the whole
        # feature map's size ('mean')
        shapes = self.extractor.feature_shapes(h, w)
        per_layer = c.content_weight / len(self.content_layers)
        coefs = ops.convert_to_tensor(
            np.array(
                [
                    0.5 * per_layer if c.content_loss == "gatys" else per_layer / np.prod(shapes[la])
                    for la in self.content_layers
                ],
                np.float32,
            )
        )
        # pass 2: each tile's interior's share of the gradient, with the content loss of the interior
        while True:
            grad = np.zeros((h, w, 3), np.float32)
            lc = 0.0
            for tile in self.tiles:
                targets = []
                for layer, full in zip(self.content_layers, self.content_targets):
                    (gy0, gy1, ly0), (gx0, gx1, lx0) = self._interior(tile, layer, h, w)
                    local_shape = self.extractor.feature_shapes(tile.bottom - tile.top, tile.right - tile.left)[layer]
                    local = np.zeros((1, *local_shape), np.float32)
                    local[0, ly0 : ly0 + gy1 - gy0, lx0 : lx0 + gx1 - gx0] = full[0, gy0:gy1, gx0:gx1]
                    targets.append(local)
                part, g = self.graph.tile_pass(
                    _crop(image, tile)[None],
                    self.extractor.params,
                    self._masks(tile, self.style_layers, h, w),
                    quadratics,
                    self._masks(tile, self.content_layers, h, w),
                    targets,
                    coefs,
                    ops.convert_to_tensor(self.loss_scale),
                )
                grad[tile.top : tile.bottom, tile.left : tile.right] += backend.to_numpy(g)[0] / self.loss_scale
                lc += float(backend.to_numpy(part))
            if self.loss_scale <= 1.0 or np.isfinite(grad).all():
                break
            self.loss_scale /= 2.0
        lt, tv_grad = tv_loss_and_grad(image)
        lt *= c.tv_weight
        grad += c.tv_weight * tv_grad
        return Evaluation(lc + ls + lt, lc, ls, lt, grad, tiles=len(self.tiles))


# --- the compiled functions, shared ----------------------------------------------------------------------------
class _LossGraph:
    """The compiled loss functions of one loss definition (network, layers, layer weights, normalisations), shared
    by every Objective that uses it. The targets, the α/β/TV weights and the image are inputs, so a new scale, new
    targets or a moved slider reuse code already traced (TensorFlow) or compiled for the shape (JAX)."""

    def __init__(self, extractor, content_layers, style_layers, layer_weights, gram_norm, content_loss):
        self.extractor = extractor
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.layer_weights = [float(w) for w in layer_weights]
        self.gram_norm, self.content_loss = gram_norm, content_loss
        self.normalized = gram_norm != "gatys"
        self.whole = backend.value_and_grad(self._whole_objective)
        self.whole_inlined = backend.value_and_grad(self._whole_objective_inlined)  # traced only if used
        self.tile_grams = backend.compile_forward(self._tile_grams)
        self.tile_pass = backend.value_and_grad(self._tile_objective)
        self.content_features = backend.compile_forward(self._content_features)

    def _whole_objective_inlined(self, x, params, *args):
        return self._whole_objective(x, params, *args, constants=True)

    def _whole_objective(self, x, params, content_targets, style_targets, blend, weights, scale, constants=False):
        feats = self.extractor.apply(params, x, constants)
        lc = 0.0
        for layer, target in zip(self.content_layers, content_targets):
            lc = lc + content_loss(feats[layer], target, self.content_loss) / len(self.content_layers)
        ls = 0.0
        for w, layer, targets in zip(self.layer_weights, self.style_layers, style_targets):
            f = feats[layer]
            shape = ops.shape(f)
            gram = gram_matrix(f, normalize=self.normalized)
            ls = ls + w * style_layer_loss(gram, targets, shape[3], shape[1] * shape[2], self.gram_norm, blend)
        lc, ls, lt = weights[0] * lc, weights[1] * ls, weights[2] * tv_loss(x)
        total = lc + ls + lt
        return total * scale, (total, lc, ls, lt)

    def _tile_grams(self, x, params, masks):
        feats = self.extractor.apply(params, x)
        return [
            gram_matrix(feats[layer] * mask[None], normalize=False)[0] for layer, mask in zip(self.style_layers, masks)
        ]

    def _tile_objective(self, x, params, style_masks, quadratics, content_masks, content_targets, coefs, scale):
        feats = self.extractor.apply(params, x)
        s = 0.0
        for layer, mask, k in zip(self.style_layers, style_masks, quadratics):
            f = feats[layer] * mask[None]
            flat = ops.reshape(f, (-1, ops.shape(f)[3]))
            s = s + ops.sum(ops.matmul(flat, k) * flat)
        lc = 0.0
        for i, (layer, mask, target) in enumerate(zip(self.content_layers, content_masks, content_targets)):
            lc = lc + coefs[i] * ops.sum(ops.square(feats[layer] - target) * mask[None])
        return (s + lc) * scale, lc

    def _content_features(self, x, params):
        feats = self.extractor.apply(params, x)
        return [feats[layer] for layer in self.content_layers]


def _loss_graph(extractor, content_layers, style_layers, layer_weights, config: StyleConfig) -> _LossGraph:
    definition = (
        tuple(content_layers),
        tuple(style_layers),
        tuple(float(w) for w in layer_weights),
        config.gram_norm,
        config.content_loss,
    )
    graphs = extractor.__dict__.setdefault("_loss_graphs", {})  # they live and die with their extractor
    if definition not in graphs:
        graphs[definition] = _LossGraph(extractor, *definition)
    return graphs[definition]


# Targets of recent small problems (a preview's inputs), so a slider move recomputes no features: at most
# _TARGETS_KEPT entries, of inputs and targets of at most _TARGETS_MAX_BYTES each (a large run's are never kept).
_TARGETS: OrderedDict = OrderedDict()
_TARGETS_KEPT = 4
_TARGETS_MAX_BYTES = 64 * 2**20


def _digest(image: np.ndarray) -> tuple:
    image = np.ascontiguousarray(image, np.float32)
    return image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


def _remember(key, targets) -> None:
    content_targets, style_targets = targets
    if sum(t.nbytes for t in [*content_targets, *style_targets]) > _TARGETS_MAX_BYTES:
        return
    _TARGETS[key] = targets
    while len(_TARGETS) > _TARGETS_KEPT:
        _TARGETS.popitem(last=False)


def _crop(image: np.ndarray, tile: Tile) -> np.ndarray:
    return np.ascontiguousarray(image[tile.top : tile.bottom, tile.left : tile.right], np.float32)


def check_size(
    image: np.ndarray, extractor: FeatureExtractor, name: str, what: str, fix: int | None = None, pixels: int = 0
) -> None:
    """An input too thin for the layers stops the run with a message naming the file and, where known, ``fix``:
    the smallest ``size`` at which every input is wide enough, and ``pixels``, the ``max_pixels`` it needs where
    the budget would downscale an input there again."""
    if min(image.shape[:2]) < extractor.min_side:
        remedy = f"size {fix} or more works (--size {fix})" if fix else "raise size"
        if fix and pixels:
            remedy = f"size {fix} with max_pixels {pixels} works (--size {fix} --max-pixels {pixels})"
        raise ImageError(
            f"{name}: {image.shape[0]}×{image.shape[1]} px {what} is too small for the layers chosen on "
            f"{extractor.arch} (needs at least {extractor.min_side} px on each side; {remedy}, or choose "
            "shallower layers)"
        )


# --- the public function ----------------------------------------------------------------------------------
def evaluate(
    image: ImageLike,
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    config: StyleConfig | None = None,
    **overrides: Any,
) -> Evaluation:
    """The loss terms of ``image`` against ``content`` and ``style`` (one image, a list to blend, or an N×H×W×3
    batch whose styles are averaged, as ``stylize`` takes them) and d total /
    d pixel, exactly as ``stylize`` computes them at the image's size. Inputs are loaded as ``stylize`` loads them
    (long side ``config.size``; the style at ``style_scale`` × that); ``image`` is resized to the content's shape.
    Tiled when ``config.tile_size`` says so (or the image would not fit the memory budget).

    With ``preserve_color`` the terms are those of the luminance problem a colour-preserving run optimises: the
    image's luminance against the content's and the styles' luminance matched to it; ``grad`` is then d total /
    d pixel of ``image`` through its luminance (a run's own iterate is not kept in its colour output, so its
    history can differ where that iterate strayed from grey)."""
    config = (config or StyleConfig()).replace(**overrides)
    content_img = load_image(content, config.size, config.max_pixels)
    h, w = content_img.shape[:2]
    styles = style_list(style)
    long_side = config.style_long_side(max(h, w))
    style_imgs = [load_image(s, long_side, config.max_pixels) for s in styles]
    x = load_image(image)
    if x.shape[:2] != (h, w):
        x = resize(x, (h, w))
    extractor = extractor_for(config)
    for img, src in [(content_img, content), *zip(style_imgs, styles)]:  # as stylize says it, not a pooling error
        check_size(img, extractor, source_name(src), "after resizing")
    if config.preserve_color:
        style_imgs = [match_luminance(s, content_img) for s in style_imgs]
        content_img, x = grayscale(content_img), grayscale(x)
    objective = Objective(extractor, config, content_img, style_imgs, tile_size_for(config, extractor, h, w))
    result = objective.evaluate(x)
    if config.preserve_color:  # the luminance's three equal channels each take Y = 0.299 R + 0.587 G + 0.114 B
        y_grad = result.grad.sum(axis=-1, keepdims=True)
        result = dataclasses.replace(result, grad=(y_grad * LUMINANCE_WEIGHTS).astype(np.float32))
    return result
