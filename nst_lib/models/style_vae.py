"""Style autoencoder with a variational style encoder (seed 002, Fuchsgruber & Schopohl 2019), built on
Kotovenko et al. 2019 ("Content and Style Disentanglement for Artistic Style Transfer") without its
adversarial part, with Johnson et al.'s perceptual losses in place of pixel losses.

    G(x, z) = D(E_c(x), M(z)),   z = E_s(y)  (deterministic)  or  z ~ N(μ, σ²) = E_s(y)  (variational)

Networks (64 px default; f = ``filters``):
  E_c  content encoder  conv7 f, conv4↓ 2f, conv4↓ 4f (instance norm, ReLU), ``res_blocks`` residual blocks
                        → a 16×16×4f content code
  E_s  style encoder    conv4↓ f, 2f, 4f, 8f (leaky ReLU, no normalisation, which would erase the style
                        statistics), global mean → dense 8f → μ and log σ² of a ``style_dim`` code
  M    mapping MLP      z → dense, dense → the scale and bias of every AdaIN layer in D
  D    decoder          ``res_blocks`` AdaIN residual blocks, 2 × (nearest ×2, conv5, AdaIN, ReLU), conv7 → tanh

Stages (seed 002 §IV milestones), chosen by ``stage``; each is its own resumable training run, started
from the previous stage's weights with ``init_from``:
  1 'autoencoder'  E_c, M, D learn to reconstruct content images from E_c(x) with z = 0:
                   pixel_weight · mean (x − x̂)² + content_weight · L_perc(x, x̂)
  2 'style'        E_s and M learn to stylise (E_c and D fixed, as §IV says; ``finetune_decoder`` frees D),
                   deterministic z = μ(y):
                   content_weight · L_perc(x, G) + style_weight · L_gram(y, G) + fixpoint_weight · L_FPD
                   (+ triplet_weight · L_FPT)
  3 'variational'  the same with z ~ N(μ, σ²) by reparameterisation and + kl_weight · KL(E_s(y) ‖ N(0, I))

Loss formulas: ``nst_lib.models.losses`` (perceptual_loss, paired_gram_loss, fixpoint_loss,
fixpoint_triplet_loss, kl_normal). Images are in [-1, 1] inside the model; the perceptual network (VGG16's
first three blocks) receives them at 0–255 and applies its own preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ..config import cited
from ..errors import ConfigError
from ..features import get_extractor
from ..images import from_unit, tile, to_unit
from ..metrics import gram_descriptors, path_evenness
from .base import (
    GenerativeModelMixin,
    ModelConfig,
    SeededInitializers,
    gathered,
    global_batch,
    local_part,
    replica_gradients,
)
from .layers import AdaIN, InstanceNorm
from .losses import fixpoint_loss, fixpoint_triplet_loss, kl_normal, paired_gram_loss, perceptual_loss, reparameterize

STAGES = ("autoencoder", "style", "variational")
_VGG16_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
)


@dataclass(frozen=True)
class StyleVAEConfig(ModelConfig):
    stage: str = cited(
        "autoencoder", "seed 002 §IV: autoencoder, then style encoder, then variational encoder", choices=STAGES
    )
    image_size: int = cited(64, "seed 002 §III: images downsampled to 64×64")
    style_dim: int = cited(
        16,
        "not given by seed 002 or Kotovenko et al.; small enough to interpolate in, "
        "large enough for the 8 bundled paintings (a choice)",
    )
    filters: int = cited(32, "a shallow encoder as seed 002 §III proposes; width f of the first layer (a choice)")
    res_blocks: int = cited(2, "'shallow ResNet' encoders (seed 002 §III); Johnson et al. use 5 at 256 px")
    mapping_units: int = cited(
        128, "width of the MLP from z to the AdaIN parameters (Huang et al. 2018, MUNIT, use 256 at 256 px)"
    )
    perceptual_weights: str | None = cited(
        "auto",
        "VGG16 as seed 002 §III proposes: ImageNet when available ('auto'), otherwise random weights (tests use None)",
    )
    content_layers: tuple[str, ...] = cited(("block2_conv2",), "Johnson et al. 2016: feature loss at relu2_2")
    style_layers: tuple[str, ...] = cited(
        ("block1_conv2", "block2_conv2", "block3_conv3"),
        "Johnson et al. 2016's relu1_2, relu2_2, relu3_3 ('the first few layers', "
        "seed 002 §II; relu4_3 is 8×8 at 64 px and left out)",
    )
    pixel_weight: float = cited(1.0, "stage 1 only: mean squared pixel error (Kotovenko et al.'s pixel loss)")
    content_weight: float = cited(
        1.0,
        "reference weight; the perceptual network's layers are scaled to unit "
        "mean activation, so the terms below are on comparable scales",
    )
    style_weight: float = cited(
        10.0, "calibrated here: the style term a few times the content term at the start of stage 2 on the bundled sets"
    )
    fixpoint_weight: float = cited(1.0, "Kotovenko et al. weight the disentanglement losses like the others (1)")
    kl_weight: float = cited(
        0.1,
        "calibrated here (a β-VAE-style weight on the per-image KL sum): on the bundled "
        "sets 0.1 brings the codes near N(0, I) (σ ≈ 0.6) at ~8 % more style loss; 0.01 "
        "leaves a near-deterministic encoder (σ ≈ 0.3)",
    )
    triplet_weight: float = cited(0.0, "the fixpoint triplet loss is optional (issue 5); off by default")
    triplet_margin: float = cited(1.0, "margin r of the triplet loss (a choice)")
    finetune_decoder: bool = cited(False, "seed 002 §IV keeps E_c and D fixed after stage 1")
    learning_rate: float = cited(
        2e-4, "Adam 2e-4, β1 0.5, the rate of the Kotovenko et al. / AST code base's CycleGAN lineage"
    )
    beta_1: float = cited(0.5, "as the learning rate")
    batch_size: int = cited(16, "a choice that fits a CPU; Kotovenko et al. train with batch 1 at 768 px")
    init_from: str = cited("", "run folder of the previous stage whose network weights this stage starts from")
    flip: bool = cited(True, "random horizontal flips of the content images")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights, noise and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size, smallest=16)
        for name in ("style_dim", "filters", "mapping_units", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1")
        if self.res_blocks < 0:
            raise ConfigError("res_blocks must be ≥ 0")
        for name in (
            "pixel_weight",
            "content_weight",
            "style_weight",
            "fixpoint_weight",
            "kl_weight",
            "triplet_weight",
            "triplet_margin",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0")
        if self.batch_size < 2 and self.stage != "autoencoder":
            raise ConfigError("the fixpoint loss pairs images within a batch: batch_size must be ≥ 2")
        for layer in (*self.content_layers, *self.style_layers):
            if layer not in _VGG16_LAYERS:
                raise ConfigError(
                    f"perceptual layer {layer!r}: choose from VGG16's first blocks {', '.join(_VGG16_LAYERS)}"
                )

    @property
    def latent_dim(self) -> int:
        return self.style_dim

    @property
    def variational(self) -> bool:
        return self.stage == "variational"

    def decoder_adain_channels(self) -> list[int]:
        f = self.filters
        return [4 * f] * (2 * self.res_blocks) + [2 * f, f]


# --- networks ---------------------------------------------------------------------------------------------
def _init(seed: int, offset: int) -> SeededInitializers:
    return SeededInitializers(seed, offset, keras.initializers.HeNormal)


def build_content_encoder(c: StyleVAEConfig) -> keras.Model:
    L, init, f = keras.layers, _init(c.seed, 1000), c.filters

    def conv(x, filters, k, stride=1, relu=True):
        x = L.Conv2D(filters, k, stride, padding="same", kernel_initializer=init())(x)
        x = InstanceNorm()(x)
        return L.ReLU()(x) if relu else x

    x = inp = keras.Input((c.image_size, c.image_size, 3))
    x = conv(x, f, 7)
    x = conv(x, 2 * f, 4, 2)
    x = conv(x, 4 * f, 4, 2)
    for _ in range(c.res_blocks):
        x = L.Add()([x, conv(conv(x, 4 * f, 3), 4 * f, 3, relu=False)])
    return keras.Model(inp, x, name="content_encoder")


def build_style_encoder(c: StyleVAEConfig) -> keras.Model:
    """Returns [μ, log σ²]; the log-variance head (layer ``logvar``) trains only in the variational stage."""
    L, init, f = keras.layers, _init(c.seed, 2000), c.filters
    x = inp = keras.Input((c.image_size, c.image_size, 3))
    for filters in (f, 2 * f, 4 * f, 8 * f):
        x = L.LeakyReLU(0.2)(L.Conv2D(filters, 4, 2, padding="same", kernel_initializer=init())(x))
    x = L.GlobalAveragePooling2D()(x)
    x = L.LeakyReLU(0.2)(L.Dense(8 * f, kernel_initializer=init())(x))
    mu = L.Dense(c.style_dim, kernel_initializer=init(), dtype="float32", name="mu")(x)
    logvar = L.Dense(
        c.style_dim,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(-4.0),
        dtype="float32",
        name="logvar",
    )(x)  # starts near the deterministic encoder (σ ≈ 0.14)
    return keras.Model(inp, [mu, logvar], name="style_encoder")


def build_mapping(c: StyleVAEConfig) -> keras.Model:
    L, init = keras.layers, _init(c.seed, 3000)
    x = inp = keras.Input((c.style_dim,))
    for _ in range(2):
        x = L.ReLU()(L.Dense(c.mapping_units, kernel_initializer=init())(x))
    out = L.Dense(2 * sum(c.decoder_adain_channels()), kernel_initializer="zeros")(x)  # starts at plain IN
    return keras.Model(inp, out, name="mapping")


def build_decoder(c: StyleVAEConfig) -> keras.Model:
    """[content code, AdaIN parameters] → image in [-1, 1]."""
    L, init, f = keras.layers, _init(c.seed, 4000), c.filters
    s = c.image_size // 4
    code = keras.Input((s, s, 4 * f))
    params = keras.Input((2 * sum(c.decoder_adain_channels()),))
    offsets = np.cumsum([0] + [2 * ch for ch in c.decoder_adain_channels()])
    k = iter(range(len(offsets) - 1))

    def adain(x):
        i = next(k)
        return AdaIN()([x, params[:, offsets[i] : offsets[i + 1]]])

    def conv(x, filters, kernel):
        return L.Conv2D(filters, kernel, padding="same", kernel_initializer=init())(x)

    x = code
    for _ in range(c.res_blocks):
        y = L.ReLU()(adain(conv(x, 4 * f, 3)))
        x = L.Add()([x, adain(conv(y, 4 * f, 3))])
    for filters in (2 * f, f):
        x = L.ReLU()(adain(conv(L.UpSampling2D(2)(x), filters, 5)))
    out = L.Activation("tanh", dtype="float32")(conv(x, 3, 7))
    return keras.Model([code, params], out, name="decoder")


# --- the model --------------------------------------------------------------------------------------------
class StyleVAE(GenerativeModelMixin, keras.Model):
    """``StyleVAE(StyleVAEConfig(stage=...))``; train each stage with ``nst_lib.models.train(model,
    ContentStyleData(photos, paintings), epochs)``, or all three with ``nst_lib.models.train_style_vae``."""

    kind = "style_vae"

    def __init__(self, config: StyleVAEConfig | None = None, *, start_from: StyleVAE | None = None, **overrides):
        """``start_from``: the previous stage's trained model, whose networks this one starts from (its run folder
        is recorded as ``init_from``); the trainer hands it in when the config names ``init_from``."""
        super().__init__(name="style_vae")
        self.config = (config or StyleVAEConfig()).replace(**overrides)
        c = self.config
        self.content_encoder = build_content_encoder(c)
        self.style_encoder = build_style_encoder(c)
        self.mapping = build_mapping(c)
        self.decoder = build_decoder(c)
        self.stage_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name=f"{c.stage}_adam")
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self.make_trackers(self.loss_names())

        layers = tuple(dict.fromkeys((*c.content_layers, *c.style_layers)))
        self._perceptual = get_extractor("vgg16", layers, weights=c.perceptual_weights, normalize=True)
        self.started_from = ""
        if start_from is not None:
            self.start_from(start_from)
        self.compile(jit_compile=c.jit_compile)

    @property
    def perceptual(self):
        """The frozen VGG16 feature network (shared between models through ``get_extractor``'s cache, a
        plain object so that its weights stay out of the checkpoint), built eagerly in ``__init__``."""
        return self._perceptual

    def loss_names(self) -> tuple[str, ...]:
        if self.config.stage == "autoencoder":
            return ("total", "pixel_loss", "content_loss")
        names = ("total", "content_loss", "style_loss", "fixpoint_loss")
        if self.config.triplet_weight > 0:
            names += ("triplet_loss",)
        if self.config.variational:
            names += ("kl_loss",)
        return names

    def networks(self) -> dict:
        return {
            "content_encoder": self.content_encoder,
            "style_encoder": self.style_encoder,
            "mapping": self.mapping,
            "decoder": self.decoder,
        }

    def optimizers(self) -> dict:
        return {"stage": self.stage_optimizer}

    def trainable_networks(self) -> tuple[str, ...]:
        """The networks this stage trains (the style encoder's log-variance head only when variational)."""
        c = self.config
        if c.stage == "autoencoder":
            return ("content_encoder", "mapping", "decoder")
        return ("style_encoder", "mapping") + (("decoder",) if c.finetune_decoder else ())

    def stage_variables(self) -> list:
        """Exactly the variables this stage's optimiser updates."""
        out = []
        for name in self.trainable_networks():
            for v in self.networks()[name].trainable_variables:
                if name == "style_encoder" and not self.config.variational and "logvar" in v.path:
                    continue
                out.append(v)
        return out

    def build_all(self) -> None:
        if not self.stage_optimizer.built:
            self.stage_optimizer.build(self.stage_variables())

    def start_from(self, previous: StyleVAE) -> None:
        """Copy the networks of ``previous`` (the previous stage); its run folder becomes ``init_from``."""
        for name, net in self.networks().items():
            theirs = previous.networks()[name]
            if [tuple(w.shape) for w in theirs.weights] != [tuple(w.shape) for w in net.weights]:
                raise ConfigError(
                    f"the previous stage's {name} has another shape (filters, style_dim, res_blocks must match)"
                )
            net.set_weights(theirs.get_weights())
        self.started_from = getattr(previous, "source_run", "") or "<model>"
        if getattr(previous, "source_run", ""):
            self.config = self.config.replace(init_from=previous.source_run)

    # --- forward passes ------------------------------------------------------------------------------
    def _perceive(self, images):
        return self.perceptual((images + 1.0) * 127.5)

    def _generate(self, x, z, code=None):
        code = self.content_encoder(x) if code is None else code
        return self.decoder([code, self.mapping(z)])

    def stage_losses(self, x, y=None, y_neg=None, eps=None, eps_neg=None) -> dict:
        """Every loss term of this stage for a batch (images in [-1, 1]); ``total`` is what it minimises.
        ``eps`` is the reparameterisation noise (variational stage), ``eps_neg`` the triplet negative's own (the
        same draw made the positive's and the negative's samples move together; ``eps`` where it is not given)."""
        c = self.config
        ops = keras.ops
        p = self._perceive
        if c.stage == "autoencoder":
            n = ops.shape(x)[0]
            x_rec = self._generate(x, ops.zeros((n, c.style_dim)))
            pixel = ops.mean(ops.square(x - x_rec))
            content = perceptual_loss(p(x), p(x_rec), c.content_layers)
            return {
                "total": c.pixel_weight * pixel + c.content_weight * content,
                "pixel_loss": pixel,
                "content_loss": content,
            }
        mu, logvar = self.style_encoder(y)
        z = reparameterize(mu, logvar, eps) if c.variational else mu
        code = self.content_encoder(x)
        out = self._generate(x, z, code)
        # x2: another content image of the (global) batch; E_c is frozen after stage 1, so no gradient is lost
        out2 = self._generate(x, z, local_part(ops.roll(gathered(code), 1, axis=0)))
        f_out = p(out)
        values = {
            "content_loss": perceptual_loss(p(x), f_out, c.content_layers),
            "style_loss": paired_gram_loss(f_out, p(y), c.style_layers),
        }
        s1 = self.style_encoder(out)[0]
        s2 = self.style_encoder(out2)[0]
        values["fixpoint_loss"] = fixpoint_loss(s1, s2, z)
        total = c.content_weight * values["content_loss"] + c.style_weight * values["style_loss"]
        total = total + c.fixpoint_weight * values["fixpoint_loss"]
        if c.triplet_weight > 0:
            mu_n, logvar_n = self.style_encoder(y_neg)
            z_n = reparameterize(mu_n, logvar_n, eps if eps_neg is None else eps_neg) if c.variational else mu_n
            s_n = self.style_encoder(self._generate(x, z_n, code))[0]
            values["triplet_loss"] = fixpoint_triplet_loss(z, s1, s_n, c.triplet_margin)
            total = total + c.triplet_weight * values["triplet_loss"]
        if c.variational:
            values["kl_loss"] = kl_normal(mu, logvar)
            total = total + c.kl_weight * values["kl_loss"]
        return {"total": total, **values}

    def train_step(self, batch):
        import tensorflow as tf

        x, y, y_neg = batch
        c = self.config
        shape = (global_batch(keras.ops.shape(x)[0]), c.style_dim)
        eps = local_part(keras.random.normal(shape, seed=self.seed_generator))
        # drawn only where used, so that runs without the triplet term keep their noise
        eps_neg = None
        if c.variational and c.triplet_weight > 0:
            eps_neg = local_part(keras.random.normal(shape, seed=self.seed_generator))
        variables = self.stage_variables()
        # only the stage's variables are watched: the frozen networks and VGG get no gradient work
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])  # the tf.Variables behind Keras' variables
            values = self.stage_losses(x, y, y_neg, eps, eps_neg)
        grads = replica_gradients(tape.gradient(values["total"], variables))
        self.stage_optimizer.apply_gradients(zip(grads, variables))
        return self.record_step(values)

    def call(self, inputs, training=False):
        x, z = inputs
        return self._generate(x, z)

    # --- using a trained model (uint8 in, uint8 out) ----------------------------------------------------
    def style_codes(self, style_images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(μ, log σ²) of E_s for uint8 style images."""
        out = [
            self.style_encoder(to_unit(style_images[i : i + batch_size]))
            for i in range(0, len(style_images), batch_size)
        ]
        return (np.concatenate([np.asarray(m) for m, _ in out]), np.concatenate([np.asarray(v) for _, v in out]))

    def stylize(self, content_images, z, batch_size: int = 64) -> np.ndarray:
        """G(x, z) as uint8 for uint8 contents and codes z (one per content, or one for all)."""
        x = to_unit(content_images)
        z = np.asarray(z, np.float32).reshape(-1, self.config.style_dim)
        if len(z) not in (1, len(x)):
            raise ConfigError(f"{len(x)} content images and {len(z)} style codes: pass one code, or one per image")
        z = np.broadcast_to(z, (len(x), self.config.style_dim))
        out = [
            np.asarray(self._generate(x[i : i + batch_size], z[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
        return from_unit(np.concatenate(out))

    def transfer(self, content_images, style_images) -> np.ndarray:
        """Each content image in the style of the corresponding style image, or all in one style (z = μ of E_s)."""
        if len(style_images) not in (1, len(content_images)):
            raise ConfigError(
                f"{len(content_images)} content images and {len(style_images)} style images: pass one style image, "
                "or one per content image"
            )
        return self.stylize(content_images, self.style_codes(style_images)[0])

    def reconstruct(self, content_images) -> np.ndarray:
        """D(E_c(x), M(0)): stage 1's autoencoder output."""
        return self.stylize(content_images, np.zeros(self.config.style_dim, np.float32))

    def interpolate(self, content_image, z_a, z_b, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """(t, images): one content image stylised along the straight line from z_a to z_b in style space."""
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
        z = (1 - t)[:, None] * np.asarray(z_a, np.float32)[None] + t[:, None] * np.asarray(z_b, np.float32)[None]
        return t, self.stylize(np.repeat(np.asarray(content_image)[None], steps, 0), z)

    def generate(self, n: int = 16, seed: int = 0, content=None) -> np.ndarray:
        """``n`` stylisations of ``content`` (uint8 images, cycled) with styles z ~ N(0, I) from the prior."""
        if content is None:
            raise ConfigError("a style VAE stylises content images: pass content=<uint8 images>")
        content = np.asarray(content)
        idx = np.arange(n) % len(content)
        return self.stylize(content[idx], self.latents(n, seed))

    # --- per-epoch sample grid -----------------------------------------------------------------------
    def sample_inputs(self, data, n: int, seed: int):
        """Fixed content (and style) images from the training data for the per-epoch grids."""
        k = max(2, min(6, int(np.sqrt(max(n, 4)))))
        return data.content.sample(k, seed), data.style.sample(k, seed + 1)

    def sample_grid(self, inputs) -> np.ndarray:
        """Stage 1: content / reconstruction pairs. Later stages: style images across the top, contents
        down the side, each content in each style in the grid."""
        content, style = inputs
        if self.config.stage == "autoencoder":
            return tile(np.stack([content, self.reconstruct(content)], 1).reshape(-1, *content.shape[1:]), cols=4)
        k = len(content)
        z = self.style_codes(style)[0]
        rows = [np.concatenate([np.full_like(content[:1], 255), style])]
        for x in content:
            rows.append(np.concatenate([x[None], self.stylize(np.repeat(x[None], len(style), 0), z)]))
        return tile(np.concatenate(rows), cols=k + 1)


def interpolation_evenness(model: StyleVAE, contents, z_pairs, steps: int = 8) -> dict:
    """How evenly stylisations change along straight lines in style space: for every content image and
    every (z_a, z_b) pair, the path of ``steps`` stylisations is described by its Gram matrices on the
    model's style layers (``metrics.gram_descriptors``) and scored with ``metrics.path_evenness``. Returns
    the mean cv, max_share and straightness over all paths, and every path's normalised distance from its
    start (``from_start``, a (paths, steps) array: a straight diagonal for an even path)."""
    scores = []
    for x in np.asarray(contents):
        for z_a, z_b in z_pairs:
            _, images = model.interpolate(x, z_a, z_b, steps)
            scores.append(path_evenness(gram_descriptors(images, model.perceptual, model.config.style_layers)))
    return {
        "cv": float(np.mean([s["cv"] for s in scores])),
        "max_share": float(np.mean([s["max_share"] for s in scores])),
        "straightness": float(np.mean([s["straightness"] for s in scores])),
        "from_start": np.stack([s["from_start"] for s in scores]),
        "paths": len(scores),
    }
