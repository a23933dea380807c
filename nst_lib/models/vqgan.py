"""VQGAN (Esser et al. 2021, "Taming Transformers"), as seed 000 §2.2 describes it: a convolutional
encoder E, a codebook Z and a decoder G trained with

    L_VQ = ‖x − x̂‖ + w_p · L_perc(x, x̂) + ‖sg[E(x)] − z_q‖² + β ‖sg[z_q] − E(x)‖²        (seed 000 §2.2.3)
    L    = L_VQ + λ · w_d · L_GAN,     λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ)     (Esser et al. eq. 7)

where L_GAN (hinge, PatchGAN discriminator) switches on after ``disc_start`` steps, and a causal transformer
(``VQPrior``) then learns p(s) = Π_i p(s_i | s_<i) over the raster-ordered code indices s of the training
images, sampled with a sliding window for code maps larger than it saw (seed 000 §2.2.3, last paragraph).

Networks, f = ``filters``, m = ``channel_mult``:
  E  conv3 f; per level: residual block, strided conv (×½); residual block; GroupNorm, swish, 1×1 → ``embed_dim``
  Z  ``codes`` × ``embed_dim`` vectors; nearest-neighbour lookup with straight-through gradients
  G  conv3; residual block; per level: nearest ×2, conv3, residual block; GroupNorm, swish, conv3 → RGB
     (its last layer, ``decoder_out``, is G_L of the adaptive weight)
The reconstruction term is L1 (taming's code; seed 000 writes an L2) and the perceptual term is VGG16 feature
distance at LPIPS's layers (a stand-in for LPIPS, whose calibrated weights cannot be downloaded here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from ..config import cited
from ..errors import ConfigError, NSTError
from ..features import get_extractor
from ..images import from_unit, tile, to_unit
from .base import (
    GenerativeModelMixin,
    ModelConfig,
    SeededInitializers,
    gathered,
    leaf_seed,
    replica_gradients,
    replica_mean,
)
from .cyclegan import build_patch_discriminator
from .layers import VectorQuantizer
from .losses import (
    adaptive_weight,
    code_usage,
    hinge_discriminator_loss,
    hinge_generator_loss,
    next_token_loss,
    perceptual_loss,
    vq_losses,
)

_PERCEPTUAL_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")


@dataclass(frozen=True)
class VQGANConfig(ModelConfig):
    image_size: int = cited(
        64,
        "training crop size; a choice for a CPU/Colab budget (Esser et al. train at 256 px). "
        "The networks are convolutional: a trained model encodes and decodes any multiple of the factor",
    )
    downsample: int = cited(
        8,
        "downsampling factor f (a power of two); Esser et al. use 16 at 256 px, i.e. 16×16 codes; "
        "8 keeps an 8×8 code map at 64 px",
    )
    codes: int = cited(512, "codebook size K; Esser et al. use 1024 (ImageNet) — half for a small dataset")
    embed_dim: int = cited(64, "code vector size; 256 in Esser et al.'s ImageNet model")
    filters: int = cited(64, "channels of the first level (128 in Esser et al.)")
    channel_mult: tuple[int, ...] = cited(
        (1, 2, 2, 4),
        "per-level channel multipliers, Esser et al.'s (1, 1, 2, 2, 4) pattern shortened to the levels used",
    )
    beta: float = cited(0.25, "commitment weight β of van den Oord et al. 2017, kept by Esser et al.")
    perceptual_weight: float = cited(
        1.0, "Esser et al.'s perceptual weight (LPIPS there; VGG16 features here); 0 skips the feature network"
    )
    perceptual_weights: str | None = cited(
        "auto", "VGG16 weights: ImageNet when available, otherwise random (tests: None)"
    )
    restart_threshold: float = cited(
        1.0,
        "dead-code restarts (Dhariwal et al. 2020, Jukebox): a code used on fewer than this "
        "many positions per batch on average is moved onto a random encoder output; 0 = off. "
        "Without it the small codebook collapsed to ~7 codes on the bundled data",
    )
    disc_weight: float = cited(0.8, "w_d in the taming-transformers configs (disc_weight 0.8)")
    disc_start: int = cited(
        2000,
        "step at which the GAN term switches on (taming: after the autoencoder has "
        "settled, 250k steps on ImageNet; a choice for small runs)",
    )
    disc_filters: int = cited(64, "taming's NLayerDiscriminator: ndf 64")
    disc_layers: int = cited(3, "taming's NLayerDiscriminator: 3 layers (a 70×70 PatchGAN)")
    learning_rate: float = cited(2e-4, "a choice for small batches (taming: 4.5e-6 × batch size × GPUs)")
    beta_1: float = cited(0.5, "Esser et al. reference code: Adam β = (0.5, 0.9)")
    beta_2: float = cited(0.9, "as beta_1")
    batch_size: int = cited(16, "a choice that fits a CPU (taming: 12 per GPU at 256 px)")
    flip: bool = cited(True, "random horizontal flips")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size, smallest=16)
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ConfigError(f"downsample must be a power of two ≥ 2, got {self.downsample}")
        if self.downsample > self.image_size // 2:
            raise ConfigError(f"downsample {self.downsample} leaves less than a 2×2 code map at {self.image_size} px")
        if len(self.channel_mult) < self.levels:
            raise ConfigError(f"channel_mult needs {self.levels} entries for downsample {self.downsample}")
        for name in ("codes", "embed_dim", "filters", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1")
        if self.codes < 2:
            raise ConfigError("codes must be ≥ 2")

    @property
    def levels(self) -> int:
        return int(math.log2(self.downsample))

    @property
    def code_size(self) -> int:
        """Side of the code map of a training image."""
        return self.image_size // self.downsample

    @property
    def latent_dim(self) -> int:
        return self.embed_dim


def _init(seed: int, offset: int) -> SeededInitializers:
    return SeededInitializers(seed, offset, keras.initializers.GlorotUniform)


def _groups(channels: int) -> int:
    return math.gcd(channels, 32)


def _res_block(x, channels, init):
    """GroupNorm, swish, conv3, GroupNorm, swish, conv3, plus a 1×1-projected shortcut when widths differ."""
    L = keras.layers
    h = L.Conv2D(channels, 3, padding="same", kernel_initializer=init())(
        L.Activation("swish")(L.GroupNormalization(_groups(x.shape[-1]), epsilon=1e-6)(x))
    )
    h = L.Conv2D(channels, 3, padding="same", kernel_initializer=init())(
        L.Activation("swish")(L.GroupNormalization(_groups(channels), epsilon=1e-6)(h))
    )
    if x.shape[-1] != channels:
        x = L.Conv2D(channels, 1, kernel_initializer=init())(x)
    return L.Add()([x, h])


def build_encoder(c: VQGANConfig) -> keras.Model:
    L, init = keras.layers, _init(c.seed, 1000)
    x = inp = keras.Input((None, None, 3))
    x = L.Conv2D(c.filters, 3, padding="same", kernel_initializer=init())(x)
    for level in range(c.levels):
        x = _res_block(x, c.filters * c.channel_mult[level], init)
        x = L.Conv2D(c.filters * c.channel_mult[level], 4, 2, padding="same", kernel_initializer=init())(x)
    x = _res_block(x, c.filters * c.channel_mult[c.levels - 1], init)
    x = L.Activation("swish")(L.GroupNormalization(_groups(x.shape[-1]), epsilon=1e-6)(x))
    out = L.Conv2D(c.embed_dim, 1, kernel_initializer=init(), dtype="float32")(x)
    return keras.Model(inp, out, name="encoder")


def build_decoder(c: VQGANConfig) -> keras.Model:
    L, init = keras.layers, _init(c.seed, 2000)
    x = inp = keras.Input((None, None, c.embed_dim))
    x = L.Conv2D(c.filters * c.channel_mult[c.levels - 1], 3, padding="same", kernel_initializer=init())(x)
    x = _res_block(x, x.shape[-1], init)
    for level in reversed(range(c.levels)):
        x = L.UpSampling2D(2)(x)
        x = L.Conv2D(c.filters * c.channel_mult[level], 3, padding="same", kernel_initializer=init())(x)
        x = _res_block(x, x.shape[-1], init)
    x = L.Activation("swish")(L.GroupNormalization(_groups(x.shape[-1]), epsilon=1e-6)(x))
    out = L.Conv2D(3, 3, padding="same", kernel_initializer=init(), dtype="float32", name="decoder_out")(x)
    return keras.Model(inp, out, name="decoder")


class VQGAN(GenerativeModelMixin, keras.Model):
    """``VQGAN(VQGANConfig(...))``; train with ``nst_lib.models.train(model, image_folder, epochs)``, then a
    ``VQPrior`` on the same folder to sample new images."""

    kind = "vqgan"
    loss_keys = (
        "total",
        "l1_loss",
        "perceptual_loss",
        "codebook_loss",
        "commitment_loss",
        "g_loss",
        "d_loss",
        "adaptive_weight",
        "perplexity",
        "usage",
        "restarts",
    )

    def __init__(self, config: VQGANConfig | None = None, **overrides):
        super().__init__(name="vqgan")
        self.config = (config or VQGANConfig()).replace(**overrides)
        c = self.config
        self.encoder = build_encoder(c)
        self.quantizer = VectorQuantizer(c.codes, c.embed_dim, seed=leaf_seed(c.seed, 3000), name="quantizer")
        self.quantizer.build((None, c.embed_dim))
        self.decoder = build_decoder(c)
        self.discriminator = build_patch_discriminator(
            c.image_size, c.disc_filters, c.disc_layers, c.seed, "discriminator"
        )
        self.g_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2, name="g_adam")
        self.d_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2, name="d_adam")
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self._perceptual = None
        if c.perceptual_weight > 0:
            self._perceptual = get_extractor("vgg16", _PERCEPTUAL_LAYERS, weights=c.perceptual_weights, normalize=True)
        self.make_trackers(self.loss_keys)
        self.compile(jit_compile=c.jit_compile)

    def networks(self) -> dict:
        return {
            "encoder": self.encoder,
            "quantizer": self.quantizer,
            "decoder": self.decoder,
            "discriminator": self.discriminator,
        }

    def optimizers(self) -> dict:
        return {"autoencoder": self.g_optimizer, "discriminator": self.d_optimizer}

    def autoencoder_variables(self) -> list:
        return self.encoder.trainable_variables + self.quantizer.trainable_variables + self.decoder.trainable_variables

    def build_all(self) -> None:
        if not self.g_optimizer.built:
            self.g_optimizer.build(self.autoencoder_variables())
        if not self.d_optimizer.built:
            self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def last_layer(self):
        """G_L of the adaptive weight: the decoder's output convolution's kernel."""
        return self.decoder.get_layer("decoder_out").kernel

    # --- forward passes ([-1, 1] tensors) ------------------------------------------------------------
    def encode_indices(self, x):
        """Code indices (N, h, w) of images x in [-1, 1]."""
        return self.quantizer(self.encoder(x))[1]

    def decode_indices(self, indices):
        """Images in [-1, 1] (unclipped) for code indices (N, h, w)."""
        return self.decoder(self.quantizer.lookup(indices))

    def decode_latent(self, z):
        """Quantise a continuous latent (straight-through, so a gradient reaches z) and decode it: the map
        that guided generation optimises through."""
        return self.decoder(self.quantizer(z)[0])

    def call(self, x, training=False):
        return self.decoder(self.quantizer(self.encoder(x))[0])

    def autoencoder_losses(self, x) -> dict:
        """The L_VQ terms for a batch x in [-1, 1], with the reconstruction (key ``x_rec``) and indices."""
        c = self.config
        z_e = self.encoder(x)
        z_st, idx, z_q = self.quantizer(z_e)
        x_rec = self.decoder(z_st)
        l1 = ops.mean(ops.abs(x - x_rec))
        perc = ops.zeros(())
        if self._perceptual is not None:
            # x̂ unclipped, as taming-transformers feeds LPIPS: clipped, its pixels beyond ±1 (the decoder ends
            # without tanh) had no perceptual gradient back
            p = lambda im: self._perceptual((im + 1.0) * 127.5)  # noqa: E731
            perc = perceptual_loss(p(x), p(x_rec), _PERCEPTUAL_LAYERS)
        codebook, commitment = vq_losses(z_e, z_q, c.beta)
        return {
            "l1_loss": l1,
            "perceptual_loss": perc,
            "codebook_loss": codebook,
            "commitment_loss": commitment,
            "nll": l1 + c.perceptual_weight * perc,
            "x_rec": x_rec,
            "indices": idx,
            "z_e": z_e,
        }

    def train_step(self, x):
        import tensorflow as tf

        c = self.config
        variables = self.autoencoder_variables()
        last = self.last_layer
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            v = self.autoencoder_losses(x)
            vq = v["nll"] + v["codebook_loss"] + v["commitment_loss"]
            g_loss = hinge_generator_loss(self.discriminator(v["x_rec"]))
        grads_vq = tape.gradient(vq, variables)
        grads_gan = tape.gradient(g_loss, variables)
        del tape
        k = [i for i, var in enumerate(variables) if var is last][0]
        active = ops.cast(self.g_optimizer.iterations >= c.disc_start, "float32")
        # the global batch's gradients of the last layer: the mean of the replicas' (the ratio's δ sees their scale)
        lam = adaptive_weight(replica_mean(grads_vq[k]), replica_mean(grads_gan[k])) * c.disc_weight * active
        grads = [a if b is None else (b * lam if a is None else a + lam * b) for a, b in zip(grads_vq, grads_gan)]
        self.g_optimizer.apply_gradients(zip(replica_gradients(grads), variables))
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([var.value for var in d_vars])
            d_loss = active * hinge_discriminator_loss(
                self.discriminator(x), self.discriminator(ops.stop_gradient(v["x_rec"]))
            )
        self.d_optimizer.apply_gradients(zip(replica_gradients(tape.gradient(d_loss, d_vars)), d_vars))
        # usage and restarts over the global batch: every replica updates the codebook the same way
        indices, z_e = gathered(v["indices"]), gathered(v["z_e"])
        perplexity, usage = code_usage(indices, c.codes)
        restarts = ops.zeros(())
        if c.restart_threshold > 0:
            restarts = self.quantizer.restart_dead_codes(z_e, indices, self.seed_generator, c.restart_threshold)
        values = {k2: v[k2] for k2 in ("l1_loss", "perceptual_loss", "codebook_loss", "commitment_loss")}
        values.update(
            total=vq + lam * g_loss,
            g_loss=g_loss,
            d_loss=d_loss,
            adaptive_weight=lam,
            perplexity=perplexity,
            usage=usage,
            restarts=restarts,
        )
        return self.record_step({key: values[key] for key in self.loss_keys})

    # --- using a trained model (uint8 in, uint8 out) --------------------------------------------------
    def _check_size(self, images) -> np.ndarray:
        images = np.asarray(images)
        f = self.config.downsample
        if images.ndim != 4 or images.shape[1] % f or images.shape[2] % f:
            raise ConfigError(f"VQGAN: images must be N×H×W×3 with H and W multiples of {f}, got {images.shape}")
        return images

    def encode(self, images) -> np.ndarray:
        """The continuous encodings E(x) (N, H/f, W/f, embed_dim) of uint8 images."""
        return np.asarray(self.encoder(to_unit(self._check_size(images))))

    def indices(self, images) -> np.ndarray:
        """Code indices (N, H/f, W/f) of uint8 images."""
        return np.asarray(self.encode_indices(to_unit(self._check_size(images))))

    def reconstruct(self, images, batch_size: int = 32) -> np.ndarray:
        """G(q(E(x))) as uint8."""
        x = to_unit(self._check_size(images))
        return from_unit(
            np.concatenate([np.asarray(self(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
        )

    def decode_codes(self, indices) -> np.ndarray:
        """uint8 images for code indices (N, h, w)."""
        return from_unit(np.asarray(self.decode_indices(np.asarray(indices, np.int32))))

    def generate(self, n: int = 16, seed: int = 0):
        raise NSTError("a VQGAN samples through its prior: train a VQPrior on the same data and call its generate()")

    def sample_inputs(self, data, n: int, seed: int):
        return data.sample(max(4, min(16, n // 4)), seed)

    def sample_grid(self, inputs) -> np.ndarray:
        """Originals (odd columns) next to their reconstructions."""
        rec = self.reconstruct(inputs)
        return tile(np.stack([inputs, rec], 1).reshape(-1, *inputs.shape[1:]), cols=8)


# --- the transformer prior over code indices ----------------------------------------------------------------
@dataclass(frozen=True)
class VQPriorConfig(ModelConfig):
    vqgan_run: str = cited(
        "", "the VQGAN training run whose codes this prior models (filled in from the VQGAN handed in)"
    )
    window: int = cited(
        0,
        "side of the square code window the transformer sees (0: the VQGAN's training code map); "
        "seed 000 §2.2.3's sliding window: larger maps are sampled window by window",
    )
    layers: int = cited(4, "transformer blocks (Esser et al.: 24 at 1024 codes of 16×16; a small prior here)")
    heads: int = cited(4, "attention heads")
    dim: int = cited(128, "embedding width")
    dropout: float = cited(0.0, "attention/MLP dropout (taming: 0.0 embd, 0.0 resid)")
    learning_rate: float = cited(3e-4, "Adam rate for a small GPT (minGPT's default; taming scales 4.5e-6 by batch)")
    batch_size: int = cited(32, "a choice that fits a CPU")
    image_size: int = cited(0, "filled in from the VQGAN run")
    flip: bool = cited(True, "random horizontal flips of the training images")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights, window offsets and data order")

    def validate(self) -> None:
        if self.layers < 1 or self.heads < 1 or self.dim < self.heads or self.window < 0:
            raise ConfigError("layers, heads ≥ 1, dim ≥ heads, window ≥ 0")

    @property
    def latent_dim(self) -> int:
        return 0


class _Frozen:
    """Holds the VQGAN out of Keras' attribute tracking, so its weights stay out of the prior's checkpoint."""

    def __init__(self, model):
        self.model = model


def build_transformer(codes: int, length: int, c: VQPriorConfig) -> keras.Model:
    """A GPT over ``length`` tokens from a vocabulary of ``codes`` + 1 (the last id is the start token):
    token + position embeddings, pre-norm blocks of causal self-attention and a 4× MLP, logits over the codes."""
    L = keras.layers
    init = _init(c.seed, 5000)
    tokens = keras.Input((length,), dtype="int32")
    h = L.Embedding(
        codes + 1, c.dim, embeddings_initializer=keras.initializers.RandomNormal(0, 0.02, seed=leaf_seed(c.seed, 1))
    )(tokens)
    h = PositionEmbedding(seed=leaf_seed(c.seed, 2))(h)
    for _ in range(c.layers):
        a = L.LayerNormalization(epsilon=1e-5)(h)
        a = L.MultiHeadAttention(c.heads, c.dim // c.heads, dropout=c.dropout, kernel_initializer=init())(
            a, a, use_causal_mask=True
        )
        h = h + a
        m = L.LayerNormalization(epsilon=1e-5)(h)
        m = L.Dense(4 * c.dim, activation="gelu", kernel_initializer=init())(m)
        m = L.Dense(c.dim, kernel_initializer=init())(m)
        h = h + L.Dropout(c.dropout)(m)
    h = L.LayerNormalization(epsilon=1e-5)(h)
    logits = L.Dense(codes, kernel_initializer=init(), dtype="float32")(h)
    return keras.Model(tokens, logits, name="transformer")


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per sequence position (GPT-style absolute positions)."""

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]),
            name="positions",
            initializer=keras.initializers.RandomNormal(0.0, 0.02, seed=self.seed),
        )

    def call(self, x):
        return x + ops.cast(self.positions, x.dtype)[None]


class VQPrior(GenerativeModelMixin, keras.Model):
    """p(s) = Π p(s_i | s_<i) over the raster-ordered codes of a window×window code crop, trained on the code
    maps of an image folder under a frozen, trained VQGAN handed in as ``vqgan`` (the model of
    ``train(VQGAN(), …)`` or ``load_trained(run)``; its run folder is recorded as ``vqgan_run``)."""

    kind = "vq_prior"

    def __init__(self, config: VQPriorConfig | None = None, *, vqgan: VQGAN | None = None, **overrides):
        super().__init__(name="vq_prior")
        config = config.replace(**overrides) if config is not None else VQPriorConfig(**overrides)
        if vqgan is None:
            raise ConfigError(
                "a VQ prior is built on a trained VQGAN: VQPrior(vqgan=<the model of train(VQGAN(), …) or "
                "load_trained(run)>), or nst_lib.models.build_model('vq_prior', {'vqgan_run': run})"
            )
        if getattr(vqgan, "kind", None) != "vqgan":
            raise NSTError(f"vqgan: a {getattr(vqgan, 'kind', type(vqgan).__name__)!r} model, not a VQGAN")
        source = getattr(vqgan, "source_run", "") or config.vqgan_run
        if not source:
            raise ConfigError(
                "the VQGAN must come from a run folder (train() or load_trained()), so the prior can resume; an "
                "interrupted training's model holds weights no checkpoint has: load_trained(its run) or resume it"
            )
        window = config.window or vqgan.config.code_size
        if window > vqgan.config.code_size:
            raise ConfigError(
                f"window {window} is larger than the {vqgan.config.code_size}×{vqgan.config.code_size} code map of a "
                "training image"
            )
        self.config = config.replace(vqgan_run=str(source), image_size=vqgan.config.image_size, window=window)
        self._vqgan = _Frozen(vqgan)
        self.codes = vqgan.config.codes
        self.transformer = build_transformer(self.codes, window * window, self.config)
        self.optimizer_ = keras.optimizers.Adam(self.config.learning_rate, name="prior_adam")
        self.seed_generator = keras.random.SeedGenerator(self.config.seed, name="noise")
        self.make_trackers(("nll", "bits_per_code"))
        self.compile(jit_compile=self.config.jit_compile)

    @property
    def vqgan(self) -> VQGAN:
        return self._vqgan.model

    def networks(self) -> dict:
        return {"transformer": self.transformer}

    def optimizers(self) -> dict:
        return {"transformer": self.optimizer_}

    @property
    def start_token(self) -> int:
        return self.codes

    def shifted(self, sequence):
        """The transformer's input for a code sequence: the start token, then every code but the last."""
        n = ops.shape(sequence)[0]
        start = ops.full((n, 1), self.start_token, dtype="int32")
        return ops.concatenate([start, ops.cast(sequence[:, :-1], "int32")], axis=1)

    def logits(self, sequence):
        """(N, T, K) logits of p(s_i | s_<i) for code sequences (N, T)."""
        return self.transformer(self.shifted(sequence))

    def train_step(self, x):
        import tensorflow as tf

        w = self.config.window
        idx = ops.cast(self.vqgan.encode_indices(x), "int32")
        side = self.vqgan.config.code_size
        if side > w:  # a random window of the code map (one offset per batch)
            i = keras.random.randint((), 0, side - w + 1, seed=self.seed_generator)
            j = keras.random.randint((), 0, side - w + 1, seed=self.seed_generator)
            idx = tf.slice(idx, tf.stack([0, i, j]), [-1, w, w])
        seq = ops.reshape(idx, (-1, w * w))
        variables = self.transformer.trainable_variables
        with tf.GradientTape() as tape:
            nll = next_token_loss(self.transformer(self.shifted(seq), training=True), seq)
        self.optimizer_.apply_gradients(zip(replica_gradients(tape.gradient(nll, variables)), variables))
        return self.record_step({"nll": nll, "bits_per_code": nll / math.log(2.0)})

    def sample_indices(
        self,
        n: int = 16,
        grid: tuple[int, int] | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = 100,
    ) -> np.ndarray:
        """(n, h, w) code indices sampled position by position in raster order. Each position sees the
        window×window crop of the map that contains it (as centred as the borders allow): the codes above
        it and to its left in that crop; causal masking hides the not-yet-sampled rest. With ``grid`` equal
        to the window this is plain autoregressive sampling."""
        w = self.config.window
        h, wd = grid or (w, w)
        if h < w or wd < w:
            raise ConfigError(f"grid {h}×{wd} is smaller than the prior's {w}×{w} window")
        rng = np.random.default_rng(seed)
        out = np.zeros((n, h, wd), np.int32)
        for i in range(h):
            i0 = min(max(i - w // 2, 0), h - w)
            for j in range(wd):
                j0 = min(max(j - w // 2, 0), wd - w)
                crop = out[:, i0 : i0 + w, j0 : j0 + w].reshape(n, w * w)
                pos = (i - i0) * w + (j - j0)
                logits = np.asarray(self.logits(crop))[:, pos].astype(np.float64) / max(temperature, 1e-6)
                if top_k and top_k < logits.shape[-1]:
                    kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
                    logits = np.where(logits < kth, -np.inf, logits)
                p = np.exp(logits - logits.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                out[:, i, j] = [rng.choice(len(q), p=q) for q in p]
        return out

    def generate(
        self,
        n: int = 16,
        seed: int = 0,
        grid: tuple[int, int] | None = None,
        temperature: float = 1.0,
        top_k: int | None = 100,
    ) -> np.ndarray:
        """``n`` new uint8 images: codes from the prior, decoded by the VQGAN (grid × downsample pixels)."""
        return self.vqgan.decode_codes(self.sample_indices(n, grid, seed, temperature, top_k))

    def sample_inputs(self, data, n: int, seed: int):
        return seed

    def sample_grid(self, inputs) -> np.ndarray:
        return tile(self.generate(16, seed=int(inputs)), cols=8)
