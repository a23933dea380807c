"""Guided generation with a VQGAN (seed 000 §3, "VQGAN + CLIP"): optimise the VQGAN latent z so that the
decoded image G(q(z)) matches a prompt, starting from the content photo's encoding E(content).

    z₀ = E(content);   z ← Adam step on  Σ_p w_p · L_p(G(q(z))) + init_weight · mean (z − z₀)²

q quantises with straight-through gradients, so z moves freely while every decoded image is made of codebook
entries. Prompts (each holds its target and weight, with the pure ``spherical_distance`` behind it):

  TextPrompt(text, clip)     CLIP embedding of random cutouts of the image against the text's embedding
  ImagePrompt(image, clip)   the same against a style painting's CLIP embedding
  GramPrompt(image)          Gram statistics of VGG19 features against the painting's (Gatys et al.), no
                             CLIP and no download: the offline image prompt

CLIP is keras-hub's (``load_clip``: preset ``clip_vit_base_patch32`` when its weights can be loaded, e.g. on
Colab). Where they cannot, ``load_clip`` returns — with a warning — a small *randomly initialised* CLIP of the
same keras-hub classes (``tiny_clip``), or without keras-hub a random stand-in (``random_clip``): the code path
runs and is tested, the images mean nothing.

Each run is a folder: config.json, inputs/, snapshots/iter_NNNNN.png at the requested iterations (seed 000
Figs 6–8: 0, 50, 500), losses.csv, checkpoint.npz (z, Adam state) every ``checkpoint_every`` iterations and
on Ctrl-C; ``guide(..., resume=run_dir)`` continues it exactly (cutouts are drawn from (seed, iteration)).
"""

from __future__ import annotations

import json
import string
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from ..backend import require_tensorflow
from ..config import RUNS_DIR, Config, cited
from ..errors import ConfigError, NSTError
from ..features import get_extractor
from ..images import centre_crop_resize, from_unit, load_image, pixel_digest, to_uint8
from ..losses import StyleLoss
from ..optim import Adam, Callback, StepInfo, as_callbacks, run_steps
from ..runs import Run, changed_setting, hold, json_default
from .losses import spherical_distance

# CLIP's image normalisation (Radford et al. 2021, the released preprocessing)
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
GATYS_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


# --- CLIP -------------------------------------------------------------------------------------------------
class ClipModel:
    """A keras-hub CLIPBackbone with its tokenizer behind two calls: ``encode_text(prompts)`` and
    ``encode_image(images in [0, 1], any size)``, both returning L2-normalised (N, D) embeddings and both
    differentiable (images are resized and normalised with TensorFlow ops)."""

    def __init__(self, backbone, tokenizer, sequence_length: int, name: str, pretrained: bool):
        self.backbone, self.tokenizer = backbone, tokenizer
        self.sequence_length, self.name, self.pretrained = int(sequence_length), name, pretrained

    @property
    def image_size(self) -> int:
        return int(self.backbone.vision_encoder.image_shape[0])

    def token_ids(self, prompts) -> np.ndarray:
        """Start token, BPE ids, end token, padding — CLIP's text input (truncated to the sequence length)."""
        t = self.tokenizer
        out = np.full((len(prompts), self.sequence_length), t.pad_token_id, np.int32)
        for i, ids in enumerate(t(list(prompts))):
            ids = [int(v) for v in np.asarray(ids).reshape(-1)][: self.sequence_length - 2]
            row = [t.start_token_id, *ids, t.end_token_id]
            out[i, : len(row)] = row
        return out

    def encode_text(self, prompts):
        e = self.backbone.get_text_embeddings(self.token_ids(prompts))
        return _unit(e)

    def encode_image(self, images):
        import tensorflow as tf

        x = tf.cast(images, tf.float32)
        if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
            x = tf.image.resize(x, (self.image_size, self.image_size), method="bilinear", antialias=True)
        x = (x - CLIP_MEAN) / CLIP_STD
        return _unit(self.backbone.get_vision_embeddings(x))


def _unit(e):
    e = ops.cast(e, "float32")
    return e / ops.sqrt(ops.sum(ops.square(e), axis=-1, keepdims=True) + 1e-12)


def _keras_hub():
    try:
        import keras_hub
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise NSTError(
            "text prompts need CLIP from keras-hub: pip install 'nst-workbench[clip]' (or keras-hub)"
        ) from err
    return keras_hub


def tiny_clip(seed: int = 0, image_size: int = 32, dim: int = 32) -> ClipModel:
    """A small, randomly initialised CLIP built from keras-hub's own classes (a character-level BPE
    vocabulary, 2-layer encoders): the same interface and code path as the real model, meaningless
    embeddings. For tests and offline notebook runs."""
    kh = _keras_hub()
    keras.utils.set_random_seed(seed)
    chars = string.ascii_lowercase + string.digits + ".,'!?-"
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    for token in ("th", "th</w>", "<|startoftext|>", "<|endoftext|>"):  # one merge: keras-hub needs ≥ 1
        vocab[token] = len(vocab)
    tokenizer = kh.models.CLIPTokenizer(vocabulary=vocab, merges=["t h"])
    vision = kh.models.CLIPVisionEncoder(
        patch_size=8,
        hidden_dim=dim,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * dim,
        image_shape=(image_size, image_size, 3),
    )
    text = kh.models.CLIPTextEncoder(
        vocabulary_size=len(vocab),
        embedding_dim=dim,
        hidden_dim=dim,
        num_layers=2,
        num_heads=2,
        intermediate_dim=2 * dim,
        max_sequence_length=16,
    )
    backbone = kh.models.CLIPBackbone(vision, text, projection_dim=dim)
    return ClipModel(backbone, tokenizer, 16, "tiny random CLIP (untrained)", pretrained=False)


class _CharTokenizer:
    """Characters to ids (3–63; 0 pads, 1 starts, 2 ends): the stand-in CLIP's tokenizer."""

    pad_token_id, start_token_id, end_token_id = 0, 1, 2

    def __call__(self, texts):
        return [[3 + ord(c) % 61 for c in text.lower()] for text in texts]


class _RandomClipEncoders:
    """Random projections in place of CLIP's encoders, for when keras-hub is not installed: the mean of
    character embeddings for text, an 8×8-patch convolution averaged over the image for images. Same calls
    as a CLIPBackbone (``get_text_embeddings``, ``get_vision_embeddings``, ``vision_encoder.image_shape``),
    differentiable in the image, meaningless embeddings."""

    def __init__(self, seed: int = 0, image_size: int = 32, dim: int = 32):
        from types import SimpleNamespace

        self.vision_encoder = SimpleNamespace(image_shape=(image_size, image_size, 3))
        self.table = keras.initializers.RandomNormal(0.0, 1.0, seed=seed)((64, dim))
        self.patches = keras.initializers.GlorotUniform(seed=seed + 1)((8, 8, 3, dim))

    def get_text_embeddings(self, ids):
        ids = ops.convert_to_tensor(ids)
        mask = ops.cast(ids > 2, "float32")[..., None]  # characters only: no padding, start or end
        return ops.sum(ops.take(self.table, ids, axis=0) * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def get_vision_embeddings(self, images):
        return ops.mean(ops.conv(images, self.patches, strides=8), axis=(1, 2))


def random_clip(seed: int = 0, image_size: int = 32, dim: int = 32) -> ClipModel:
    """An untrained stand-in CLIP that needs no keras-hub (``_RandomClipEncoders``): what ``load_clip`` falls
    back to when keras-hub is missing, so the code path still runs."""
    return ClipModel(_RandomClipEncoders(seed, image_size, dim), _CharTokenizer(), 16, "random stand-in CLIP", False)


def load_clip(preset: str = "clip_vit_base_patch32", allow_random: bool = True) -> ClipModel:
    """keras-hub's pretrained CLIP ``preset``; when it cannot be loaded (keras-hub missing, no network, no Kaggle
    access) and ``allow_random``, an untrained CLIP with a warning that says so: ``tiny_clip`` (keras-hub's own
    classes) or, without keras-hub, ``random_clip``."""
    try:
        kh = _keras_hub()
        backbone = kh.models.CLIPBackbone.from_preset(preset)
        tokenizer = kh.models.CLIPTokenizer.from_preset(preset)
    except Exception as err:  # noqa: BLE001 - any import/download/format failure means: no real weights here
        if not allow_random:
            if isinstance(err, NSTError):
                raise
            raise NSTError(f"CLIP preset {preset!r} could not be loaded: {err}") from err
        missing = isinstance(err, NSTError)  # keras-hub is not installed
        reason = "keras-hub is not installed: pip install 'nst-workbench[clip]'" if missing else type(err).__name__
        warnings.warn(
            f"CLIP preset {preset!r} could not be loaded ({reason}); using an untrained "
            f"{'stand-in' if missing else 'tiny'} CLIP: the code runs, but text and CLIP image prompts are "
            "meaningless without real weights (run on Colab)",
            stacklevel=2,
        )
        return random_clip() if missing else tiny_clip()
    return ClipModel(backbone, tokenizer, 77, preset, pretrained=True)


# --- prompts ----------------------------------------------------------------------------------------------
class Prompt:
    """A loss on the decoded image. ``uses_cutouts`` prompts score the random cutouts, others the whole
    image (``images01``: (1, H, W, 3) in [0, 1])."""

    uses_cutouts = True
    weight = 1.0

    def loss(self, images01, cutouts01):
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class ClipPrompt(Prompt):
    """A target embedding ``self.target`` in ``self.clip``'s space; the loss is the mean spherical distance of
    the cutouts' CLIP embeddings to it."""

    clip: ClipModel
    target: Any

    def loss(self, images01, cutouts01):
        return ops.mean(spherical_distance(self.clip.encode_image(cutouts01), self.target))


class TextPrompt(ClipPrompt):
    """Seed 000 §3: 'Apply Van Gogh style of The Starry Night' through CLIP."""

    def __init__(self, text: str, clip: ClipModel, weight: float = 1.0):
        self.text, self.clip, self.weight = text, clip, float(weight)
        self.target = clip.encode_text([text])

    def describe(self):
        return {
            "type": "text",
            "text": self.text,
            "clip": self.clip.name,
            "pretrained": self.clip.pretrained,
            "weight": self.weight,
        }


class ImagePrompt(ClipPrompt):
    """A style painting's CLIP embedding as the target."""

    def __init__(self, image, clip: ClipModel, weight: float = 1.0, name: str = "image"):
        self.clip, self.weight, self.name = clip, float(weight), name
        self.pixels = pixel_digest(np.asarray(image))  # a resume must go on towards the same painting
        self.target = clip.encode_image(np.asarray(image, np.float32)[None] / 255.0)

    def describe(self):
        return {
            "type": "clip_image",
            "image": self.name,
            "pixels": self.pixels,
            "clip": self.clip.name,
            "pretrained": self.clip.pretrained,
            "weight": self.weight,
        }


class GramPrompt(Prompt):
    """Gatys et al.'s style loss ('size' normalisation, equal layer weights) of the decoded image against a
    painting, through VGG19 with features scaled to unit mean (so the value is O(1)): fully offline."""

    uses_cutouts = False

    def __init__(
        self, image, layers=GATYS_LAYERS, weights: str | None = "auto", weight: float = 1.0, name: str = "image"
    ):
        self.layers, self.weight, self.name, self.weights = tuple(layers), float(weight), name, weights
        self.extractor = get_extractor("vgg19", self.layers, weights=weights, normalize=True)
        self.pixels = pixel_digest(np.asarray(image))  # a resume must go on towards the same painting
        feats = self.extractor(np.asarray(image, np.float32)[None])
        self.style = StyleLoss.from_style_features(self.layers, [feats], mode="size")

    def loss(self, images01, cutouts01):
        return self.style(self.extractor(images01 * 255.0))

    def distance(self, image: np.ndarray) -> float:
        """This prompt's loss for one uint8 image: its style distance to the painting (used to judge outputs)."""
        return float(self.loss(np.asarray(image, np.float32)[None] / 255.0, None))

    def describe(self):
        return {
            "type": "gram",
            "image": self.name,
            "pixels": self.pixels,
            "layers": list(self.layers),
            "vgg_weights": str(self.weights),
            "vgg_network": self.extractor.resolved(),  # what "auto" became here: a resume needs the same
            "weight": self.weight,
        }


# --- cutouts ----------------------------------------------------------------------------------------------
def make_cutouts(
    image01, n: int, size: int, seed, cut_power: float = 1.0, min_fraction: float = 0.25, noise: float = 0.1
):
    """``n`` random square crops of (1, H, W, 3) ``image01`` resized to ``size`` — differentiable in the
    image. Side = (min_fraction + (1 − min_fraction)·u^cut_power) of the shorter side, position uniform;
    half are mirrored; each gets Gaussian noise of a random std in [0, noise] (the VQGAN+CLIP notebooks'
    augmentations). ``seed``: a (2,) int tensor/array, so iteration k always draws the same cutouts."""
    import tensorflow as tf

    seed = tf.cast(seed, tf.int32)
    u = tf.random.stateless_uniform((n, 4), seed)
    h, w = tf.cast(tf.shape(image01)[1], tf.float32), tf.cast(tf.shape(image01)[2], tf.float32)
    side = tf.minimum(h, w) * (min_fraction + (1.0 - min_fraction) * u[:, 0] ** cut_power)
    y0 = u[:, 1] * (h - side) / h
    x0 = u[:, 2] * (w - side) / w
    boxes = tf.stack([y0, x0, y0 + side / h, x0 + side / w], axis=1)
    cuts = tf.image.crop_and_resize(image01, boxes, tf.zeros(n, tf.int32), (size, size))
    flip = (u[:, 3] < 0.5)[:, None, None, None]
    cuts = tf.where(flip, tf.reverse(cuts, axis=[2]), cuts)
    if noise > 0:
        # the noise's own streams, (s, −2k−1) and (s, −2k−2) for the pair (s, k ≥ 0): seed + 1 and seed + 2 were
        # the cutout seeds of run s + 1 at iteration k + 1 and of run s + 2 at k + 2, so neighbouring seeds'
        # augmentations were correlated
        s, k = seed[0], seed[1]
        scale = tf.random.stateless_uniform((n, 1, 1, 1), tf.stack([s, -2 * k - 1]), maxval=noise)
        cuts = cuts + scale * tf.random.stateless_normal(tf.shape(cuts), tf.stack([s, -2 * k - 2]))
    return tf.clip_by_value(cuts, 0.0, 1.0)


# --- the optimisation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuidanceConfig(Config):
    iterations: int = cited(500, "seed 000 Fig. 8: 500 iterations")
    snapshots: tuple[int, ...] = cited((0, 50, 500), "seed 000 Figs 6–8: the image at 0, 50 and 500 iterations")
    learning_rate: float = cited(0.1, "Adam step size of the VQGAN+CLIP notebooks (Crowson 2021)")
    cutouts: int = cited(32, "cutouts per iteration (the notebooks use 32–64)")
    cut_power: float = cited(1.0, "cutout size distribution exponent (notebooks: cut_pow 1)")
    min_fraction: float = cited(0.25, "smallest cutout side as a fraction of the image (a choice)")
    noise: float = cited(0.1, "largest cutout noise std (notebooks: noise_fac 0.1)")
    init_weight: float = cited(
        0.0,
        "pull back towards z₀ = E(content) (notebooks' init_weight; 0 lets the image drift, "
        "as seed 000 observed at 500 iterations)",
    )
    size: int = cited(
        128,
        "side of the generated image (the content photo is centre-cropped and resized to it; a "
        "multiple of the VQGAN's factor)",
    )
    checkpoint_every: int = cited(50, "iterations between checkpoints")
    seed: int = cited(0, "cutouts and augmentations")

    def validate(self) -> None:
        if self.iterations < 0 or self.cutouts < 1 or self.learning_rate <= 0:
            raise ConfigError("iterations ≥ 0, cutouts ≥ 1 and learning_rate > 0")
        if any(s < 0 for s in self.snapshots):
            raise ConfigError("snapshot iterations must be ≥ 0")
        if self.checkpoint_every < 1 or self.size < 1:
            raise ConfigError(f"checkpoint_every and size must be ≥ 1, got {self.checkpoint_every} and {self.size}")
        if not 0 < self.min_fraction <= 1 or self.noise < 0:
            raise ConfigError(f"min_fraction must be in (0, 1] and noise ≥ 0, got {self.min_fraction} and {self.noise}")
        if not self.cut_power > 0 or self.init_weight < 0:  # a power ≤ 0 draws cutouts larger than the image
            raise ConfigError(f"cut_power must be > 0 and init_weight ≥ 0, got {self.cut_power} and {self.init_weight}")
        if not 0 <= self.seed < 2**31:  # a stateless seed of the cutouts' int32 pair
            raise ConfigError(f"seed must be in [0, 2**31), got {self.seed}")


@dataclass
class GuidanceResult:
    image: np.ndarray
    snapshots: dict[int, np.ndarray]
    losses: list[dict] = field(default_factory=list)
    run_dir: Path | None = None
    status: str = "completed"
    timings: dict[str, float] = field(default_factory=dict)

    def loss(self, key: str = "total") -> np.ndarray:
        return np.array([r[key] for r in self.losses])


def guide(
    vqgan,
    content,
    prompts,
    config: GuidanceConfig | None = None,
    *,
    clip_size: int | None = None,
    out: str | Path = RUNS_DIR,
    name: str = "guided",
    resume: str | Path | None = None,
    progress: bool = True,
    callbacks=(),
    **overrides,
) -> GuidanceResult:
    """Optimise the VQGAN latent of ``content`` (uint8 image or path) towards ``prompts`` (a Prompt or a
    list). Writes a run folder under ``out`` (or continues the run folder ``resume``). Runs on the engine's step
    loop (``optim.run_steps``): progress bar, ``callbacks`` (``optim.Callback`` objects or functions of a
    ``StepInfo``; True stops), Ctrl-C. A run folder another process is running is refused (``RunInUseError``)."""
    with ExitStack() as held:  # the run folder, held while this call writes it
        return _guide(
            held, vqgan, content, prompts, config, clip_size, out, name, resume, progress, callbacks, overrides
        )


def _guide(
    held: ExitStack, vqgan, content, prompts, config, clip_size, out, name, resume, progress, callbacks, overrides
) -> GuidanceResult:
    require_tensorflow("guided generation")
    import tensorflow as tf

    resumed = held.enter_context(Run.held(resume, kind="guidance")) if resume is not None else None
    recorded = resumed.record.get("guidance_config") if resumed is not None else None
    # a resume goes on with the run's own config unless one is given; overrides must agree with it
    c = (config or (GuidanceConfig.from_dict(recorded) if recorded else GuidanceConfig())).replace(**overrides)
    prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
    if not prompts:
        raise ConfigError("guide: give at least one prompt")
    late = sorted(s for s in c.snapshots if s > c.iterations)
    if late:  # e.g. the default (0, 50, 500) with fewer iterations
        warnings.warn(f"no snapshot at {late}: past iterations={c.iterations}", stacklevel=3)
    f = vqgan.config.downsample
    if c.size % f:
        raise ConfigError(f"size {c.size} must be a multiple of the VQGAN's downsampling factor {f}")
    content = centre_crop_resize(
        load_image(content) if isinstance(content, (str, Path)) else np.asarray(content), c.size
    )
    cut_size = clip_size or next((p.clip.image_size for p in prompts if isinstance(p, ClipPrompt)), 224)

    z0 = vqgan.encode(content[None])
    shape = z0.shape
    optimizer = Adam(c.learning_rate, beta1=0.9, beta2=0.999, box=None)
    if resumed is not None:
        run = resumed
        if run.record.get("guidance_config") != json.loads(json.dumps(c.to_dict(), default=json_default)):
            changed = changed_setting(run.record.get("guidance_config") or {}, c.to_dict())
            raise NSTError(f"{run.path}: a guidance run with another config ({changed or 'other fields'})")
        _check_same_run(run, vqgan, content, prompts)
        state = run.load_arrays()
        if state is None:  # stopped before its first checkpoint: from the start again, in the same folder
            z, start = z0.reshape(-1).astype(np.float32), 0
        else:
            z, start = state["z"].astype(np.float32), int(state["iteration"])
            optimizer.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("opt_")})
        run.truncate_rows("losses.csv", "step", start)
    else:
        run = Run.create(out, name, subdirs=("snapshots", "inputs"))
        held.enter_context(hold(run.path))
        run.save_image("inputs/content.png", content)
        run.begin(
            "guidance",
            vqgan_run=getattr(vqgan, "source_run", ""),
            prompts=[p.describe() for p in prompts],
            guidance_config=c.to_dict(),
            seed=c.seed,
        )
        z, start = z0.reshape(-1).astype(np.float32), 0
    z0_t = tf.constant(z0)

    @tf.function
    def loss_and_grad(z_flat, it):
        with tf.GradientTape() as tape:
            tape.watch(z_flat)
            zz = tf.reshape(z_flat, shape)
            image = (tf.clip_by_value(vqgan.decode_latent(zz), -1.0, 1.0) + 1.0) / 2.0
            cuts = make_cutouts(
                image, c.cutouts, cut_size, tf.stack([c.seed, it]), c.cut_power, c.min_fraction, c.noise
            )
            parts = [p.weight * p.loss(image, cuts) for p in prompts]
            total = tf.add_n(parts)
            if c.init_weight > 0:
                total = total + c.init_weight * tf.reduce_mean(tf.square(zz - z0_t))
        return total, parts, tape.gradient(total, z_flat)

    def objective(z_flat):
        total, parts, grad = loss_and_grad(tf.constant(z_flat), tf.constant(recorder.iteration, tf.int32))
        return float(total), {f"prompt_{k}": float(p) for k, p in enumerate(parts)}, np.asarray(grad)

    def decode(z_flat) -> np.ndarray:
        return from_unit(np.asarray(vqgan.decode_latent(z_flat.reshape(shape))))[0]

    recorder = _GuidanceRecorder(run, c, optimizer, decode, start, z)
    t0 = time.perf_counter()
    loop = run_steps(
        optimizer,
        objective,
        z,
        start,
        c.iterations,
        [recorder, *as_callbacks(callbacks)],
        to_image=decode,
        progress=progress and start < c.iterations,
        desc=run.path.name,
        unit="it",
    )
    status = "interrupted" if loop.interrupted else "stopped" if loop.stopped else "completed"
    image = decode(loop.x)
    run.save_image("output.png", image)
    seconds = time.perf_counter() - t0
    done = loop.steps_done - start
    timings = {"seconds": round(seconds, 2), "iterations_per_s": round(done / seconds, 3) if seconds else 0.0}
    run.end(status, iterations_done=loop.steps_done, timings=timings)
    _checkpoint(run, loop.x, loop.steps_done, optimizer)
    snapshots = dict(run.numbered_images("snapshots", "iter_*.png"))
    return GuidanceResult(image, snapshots, run.read_rows("losses.csv"), run.path, status, timings)


class _GuidanceRecorder(Callback):
    """The guidance run's folder, kept current: the iteration the objective draws its cutouts for, a losses row
    per iteration, snapshots at the configured iterations, a checkpoint every ``checkpoint_every``."""

    def __init__(self, run: Run, config: GuidanceConfig, optimizer, decode, start: int, z_start: np.ndarray):
        self.run, self.config, self.optimizer, self.decode = run, config, optimizer, decode
        self.start, self.z_start, self.iteration = start, z_start, start

    def on_start(self, steps: int, level: int) -> None:
        self._snapshot(self.start, self.z_start)

    def on_step_begin(self, step: int) -> None:
        self.iteration = step - 1  # step k applies the update of iteration k − 1 (cutouts seeded by it)

    def on_step(self, info: StepInfo):
        self.run.append_rows("losses.csv", [{"step": info.step, **info.losses}])
        self._snapshot(info.step, info.x)
        if info.step % self.config.checkpoint_every == 0:
            _checkpoint(self.run, info.x, info.step, self.optimizer)

    def _snapshot(self, iteration: int, z: np.ndarray) -> None:
        if iteration in self.config.snapshots:
            self.run.save_image(f"snapshots/iter_{iteration:05d}.png", self.decode(z))


def _check_same_run(run: Run, vqgan, content: np.ndarray, prompts) -> None:
    """A resume goes on only with what the run started with: its prompts, VQGAN and content image."""

    # what runs recorded before these keys were kept is compared where both sides have it
    later = ("pixels", "vgg_network")

    def what(described):  # the prompts' kind, text, layers, weights; an image prompt's name is only its label
        return [{k: v for k, v in d.items() if k not in ("image", *later)} for d in described]

    described = json.loads(json.dumps([p.describe() for p in prompts], default=json_default))
    recorded_prompts = run.record.get("prompts") or []
    if what(recorded_prompts) != what(described):
        raise NSTError(f"{run.path}: a guidance run with other prompts ({recorded_prompts})")
    for had, has in zip(recorded_prompts, described):
        if had.get("pixels") and has.get("pixels") and had["pixels"] != has["pixels"]:
            raise NSTError(f"{run.path}: a guidance run towards another image than {has.get('image')}")
        if had.get("vgg_network") and has.get("vgg_network") and had["vgg_network"] != has["vgg_network"]:
            raise NSTError(
                f"{run.path}: a guidance run whose Gram prompt used VGG19 {had['vgg_network']['weights']}; here it is "
                f"{has['vgg_network']['weights']}: resume where those weights are"
            )
    recorded, here = run.record.get("vqgan_run"), getattr(vqgan, "source_run", "")
    if recorded and here and Path(recorded).name != Path(here).name:  # by folder name: paths may be relative
        raise NSTError(f"{run.path}: a guidance run on the VQGAN of {recorded}, not {here}")
    saved = run.path / "inputs" / "content.png"
    if saved.is_file() and not np.array_equal(load_image(saved).astype(np.uint8), to_uint8(content)):
        raise NSTError(f"{run.path}: a guidance run from another content image ({saved})")


def _checkpoint(run: Run, z, iteration: int, optimizer) -> None:
    run.save_arrays({"z": z, "iteration": iteration, **{f"opt_{k}": v for k, v in optimizer.state_dict().items()}})
