"""A compact StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for GANs"), the GAN approach to
style of seed 003 §3.3.3, in its fixed-resolution variant (no progressive growing).

    z ~ N(0, I) → mapping f (``mapping_layers`` dense) → w;   w' = w̄ + ψ (w − w̄)           (truncation)
    synthesis g: learned 4×4 constant → per resolution 4, 8, …, image_size: [×2 nearest up, conv3], two
                 layers each, every one followed by per-pixel noise × learned per-channel strength, bias,
                 leaky ReLU and AdaIN with scale and bias from an affine map of that layer's w; 1×1 to RGB
Each synthesis layer takes its own w (shape N × L × w_dim), which is what style mixing uses: coarse layers
(4–8 px) from one latent, fine layers from another (Karras et al. Fig. 3). Training: non-saturating logistic
loss, R1 penalty γ/2 · E‖∇_x D(x)‖² on real images (Mescheder et al. 2018), mixing regularisation, and w̄ as a
moving average of the mapped w.

AdaIN comes from ``models/layers.py`` (scale = 1 + the affine output's first half), as in the style VAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from ..config import cited
from ..errors import ConfigError
from ..images import from_unit
from .base import (
    GenerativeModelMixin,
    ModelConfig,
    SeededInitializers,
    gathered,
    global_batch,
    leaf_seed,
    local_part,
    replica_gradients,
    replica_mean,
)
from .layers import adain
from .losses import logistic_discriminator_loss, logistic_generator_loss, r1_penalty


@dataclass(frozen=True)
class StyleGANConfig(ModelConfig):
    image_size: int = cited(64, "a compact 4 → 64 px synthesis network (Karras et al. go to 1024 px)")
    latent_dim: int = cited(128, "z size (Karras et al.: 512; a compact model)")
    w_dim: int = cited(128, "w size (Karras et al.: 512)")
    mapping_layers: int = cited(8, "Karras et al. §2: an 8-layer MLP")
    max_filters: int = cited(256, "channels at 4–8 px (Karras et al.: 512), halved per resolution from 16 px on")
    min_filters: int = cited(32, "fewest channels at the highest resolutions (a choice)")
    noise_strength: float = cited(
        0.1,
        "initial per-channel noise scale B (Karras et al. start at 0 and learn it; a "
        "small non-zero start makes the noise inputs visible from the first samples)",
    )
    mixing_prob: float = cited(0.9, "Karras et al. §3.1: mixing regularisation on 90 % of the training images")
    r1_gamma: float = cited(10.0, "Karras et al. App. C: R1 with γ = 10 (FFHQ/CelebA-HQ)")
    w_avg_decay: float = cited(0.995, "moving average of w for the truncation trick (official code: 0.995)")
    truncation_psi: float = cited(0.7, "ψ of the truncation trick at sampling (Karras et al. Fig. 8 uses 0.7)")
    learning_rate: float = cited(
        2e-4,
        "Karras et al. use 0.001–0.003 with their equalised learning rate; these layers "
        "use plain He initialisation instead, where 2e-3 blew the logits up to ~10³ in 30 steps "
        "on the bundled paintings and 2e-4 trains stably (measured here)",
    )
    beta_1: float = cited(0.0, "Karras et al. App. C: Adam β1 = 0")
    beta_2: float = cited(0.99, "Karras et al. App. C: Adam β2 = 0.99")
    mapping_lr_ratio: float = cited(0.01, "Karras et al. App. C: the mapping network learns 100× slower")
    batch_size: int = cited(32, "a choice that fits a CPU")
    flip: bool = cited(True, "random horizontal flips (Karras et al. use mirror augmentation)")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights, noise and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size, smallest=8)
        for name in ("latent_dim", "w_dim", "mapping_layers", "max_filters", "min_filters", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1")
        if self.batch_size > 4 and self.batch_size % 4:
            raise ConfigError("batch_size must be a multiple of 4 (the minibatch-stddev groups), or at most 4")
        if not 0 <= self.mixing_prob <= 1:
            raise ConfigError("mixing_prob must be in [0, 1]")

    @property
    def resolutions(self) -> list[int]:
        return [2**k for k in range(2, int(math.log2(self.image_size)) + 1)]

    @property
    def num_layers(self) -> int:
        """Synthesis layers, each with its own w: two per resolution."""
        return 2 * len(self.resolutions)

    def filters(self, resolution: int) -> int:
        return max(self.min_filters, min(self.max_filters, self.max_filters * 8 // resolution))

    def coarse_layers(self) -> int:
        """Layers at 4–8 px (Karras et al.'s 'coarse' styles)."""
        return 4


def build_mapping(c: StyleGANConfig) -> keras.Model:
    L = keras.layers
    z = keras.Input((c.latent_dim,))
    x = z * ops.rsqrt(ops.mean(ops.square(z), axis=-1, keepdims=True) + 1e-8)  # pixel norm of z (Karras et al.)
    for i in range(c.mapping_layers):
        x = L.Dense(c.w_dim, kernel_initializer=keras.initializers.HeNormal(seed=leaf_seed(c.seed, 10 + i)))(x)
        x = L.LeakyReLU(0.2)(x)
    return keras.Model(z, x, name="mapping")


class Synthesis(keras.Model):
    """g(w, noise): ``ws`` is N × num_layers × w_dim; ``noise`` a list of N × H × W × 1 maps, one per layer (drawn
    from ``seed_generator`` when None). Returns images in [-1, 1] (unclipped)."""

    def __init__(self, c: StyleGANConfig, **kwargs):
        super().__init__(name="synthesis", **kwargs)
        self.c = c
        he = SeededInitializers(c.seed, 99, keras.initializers.HeNormal)
        # N(0, 1) as in the official StyleGAN2 code: a constant of ones would have no spatial variance, and the
        # instance normalisation of the first AdaIN would then turn the 4×4 noise into the whole layout
        self.const = self.add_weight(
            shape=(1, 4, 4, c.filters(4)),
            name="const",
            initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=leaf_seed(c.seed, 98)),
        )
        self.convs, self.affines, self.noise_scales, self.biases, self.channels = [], [], [], [], []
        for res in c.resolutions:
            for j in range(2):
                ch = c.filters(res)
                first = res == 4 and j == 0  # the constant itself is the first layer's input
                self.convs.append(
                    None
                    if first
                    else keras.layers.Conv2D(ch, 3, padding="same", use_bias=False, kernel_initializer=he())
                )
                # affine A: w → AdaIN scale (1 + first half) and bias, with unit-variance outputs for unit w as
                # Karras et al.'s equalised affine layers give (a near-zero init left w without influence: every
                # sample shared one layout after 8 epochs)
                self.affines.append(
                    keras.layers.Dense(
                        2 * ch,
                        kernel_initializer=keras.initializers.VarianceScaling(
                            1.0, "fan_in", "truncated_normal", seed=leaf_seed(c.seed, 300 + len(self.affines))
                        ),
                    )
                )
                self.noise_scales.append(
                    self.add_weight(
                        shape=(ch,),
                        initializer=keras.initializers.Constant(c.noise_strength),
                        name=f"noise_{len(self.noise_scales)}",
                    )
                )
                self.biases.append(self.add_weight(shape=(ch,), initializer="zeros", name=f"bias_{len(self.biases)}"))
                self.channels.append(ch)
        self.to_rgb = keras.layers.Conv2D(
            3, 1, kernel_initializer=keras.initializers.GlorotUniform(seed=leaf_seed(c.seed, 99)), dtype="float32"
        )

    def noise_shapes(self) -> list[tuple[int, int]]:
        return [(r, r) for r in self.c.resolutions for _ in range(2)]

    def call(self, ws, noise=None, seed_generator=None):
        n = ops.shape(ws)[0]
        x = ops.tile(self.const, (n, 1, 1, 1))
        for i, ((h, w), conv) in enumerate(zip(self.noise_shapes(), self.convs)):
            if conv is not None:
                if i % 2 == 0:  # the first layer of a resolution doubles it
                    x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
                x = conv(x)
            if noise is not None:
                eps = noise[i]
            else:
                eps = local_part(keras.random.normal((global_batch(n), h, w, 1), seed=seed_generator))
            x = x + ops.cast(eps, x.dtype) * self.noise_scales[i] + self.biases[i]
            x = ops.leaky_relu(x, 0.2)
            style = self.affines[i](ws[:, i])
            ch = self.channels[i]
            x = adain(x, 1.0 + style[:, :ch], style[:, ch:])
        return self.to_rgb(x)


class MinibatchStddev(keras.layers.Layer):
    """Karras et al. 2018 (ProGAN) §3, kept by StyleGAN: the standard deviation of each feature over groups of
    ``group`` images, averaged to one number per group and appended as an extra channel — D can then see a
    batch with too little variety, which counters mode collapse."""

    def __init__(self, group: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.group = int(group)

    def call(self, x):
        # under a strategy the groups are formed over the global batch, as on one device (each replica computes
        # the channel for all images and keeps its slice; the gradient reaches every replica's images)
        full = gathered(x, gradient=True)
        shape = ops.shape(full)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        g = ops.minimum(self.group, n)
        y = ops.reshape(full, (g, -1, h, w, c))
        y = ops.sqrt(ops.var(y, axis=0) + 1e-8)  # (n/g, h, w, c)
        y = ops.mean(y, axis=(1, 2, 3), keepdims=True)  # one number per group
        y = local_part(ops.tile(y, (g, h, w, 1)))
        return ops.concatenate([x, ops.cast(y, x.dtype)], axis=-1)

    def compute_output_shape(self, s):
        return (*s[:-1], s[-1] + 1)

    def get_config(self):
        return {**super().get_config(), "group": self.group}


def build_discriminator(c: StyleGANConfig) -> keras.Model:
    """From RGB (1×1), then per resolution from image_size down to 8: conv3, conv3, 2× average pooling (leaky
    ReLU 0.2); at 4×4 the minibatch-stddev channel, a conv3 and two dense layers to one logit (Karras et al.'s
    ProGAN discriminator)."""
    L = keras.layers
    he = SeededInitializers(c.seed, 599, keras.initializers.HeNormal)
    x = inp = keras.Input((c.image_size, c.image_size, 3))
    x = L.LeakyReLU(0.2)(L.Conv2D(c.filters(c.image_size), 1, kernel_initializer=he())(x))
    for res in reversed(c.resolutions[1:]):
        x = L.LeakyReLU(0.2)(L.Conv2D(c.filters(res), 3, padding="same", kernel_initializer=he())(x))
        x = L.LeakyReLU(0.2)(L.Conv2D(c.filters(res // 2), 3, padding="same", kernel_initializer=he())(x))
        x = L.AveragePooling2D(2)(x)
    x = MinibatchStddev(4)(x)
    x = L.LeakyReLU(0.2)(L.Conv2D(c.filters(4), 3, padding="same", kernel_initializer=he())(x))
    x = L.LeakyReLU(0.2)(L.Dense(c.filters(4), kernel_initializer=he())(L.Flatten()(x)))
    out = L.Dense(1, kernel_initializer=he(), dtype="float32")(x)
    return keras.Model(inp, out, name="discriminator")


class StyleGAN(GenerativeModelMixin, keras.Model):
    """``StyleGAN(StyleGANConfig(...))``; train with ``nst_lib.models.train(model, image_folder, epochs)``."""

    kind = "stylegan"
    loss_keys = ("d_loss", "g_loss", "r1_penalty", "d_real", "d_fake")

    def __init__(self, config: StyleGANConfig | None = None, **overrides):
        super().__init__(name="stylegan")
        self.config = (config or StyleGANConfig()).replace(**overrides)
        c = self.config
        self.mapping = build_mapping(c)
        self.synthesis = Synthesis(c)
        # one call on zeros creates every sub-layer's weights (a subclassed model builds lazily)
        self.synthesis(
            np.zeros((1, c.num_layers, c.w_dim), np.float32),
            noise=[np.zeros((1, h, w, 1), np.float32) for h, w in self.synthesis.noise_shapes()],
        )
        self.discriminator = build_discriminator(c)
        self.w_avg = self.add_weight(shape=(c.w_dim,), initializer="zeros", trainable=False, name="w_avg")
        self.g_optimizer = keras.optimizers.Adam(
            c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2, epsilon=1e-8, name="g_adam"
        )
        self.m_optimizer = keras.optimizers.Adam(
            c.learning_rate * c.mapping_lr_ratio, beta_1=c.beta_1, beta_2=c.beta_2, epsilon=1e-8, name="mapping_adam"
        )
        self.d_optimizer = keras.optimizers.Adam(
            c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2, epsilon=1e-8, name="d_adam"
        )
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self.make_trackers(self.loss_keys)
        self.compile(jit_compile=c.jit_compile)

    def networks(self) -> dict:
        return {"mapping": self.mapping, "synthesis": self.synthesis, "discriminator": self.discriminator}

    def optimizers(self) -> dict:
        return {"mapping": self.m_optimizer, "synthesis": self.g_optimizer, "discriminator": self.d_optimizer}

    # --- the generator's pieces -------------------------------------------------------------------------
    def broadcast(self, w):
        """One w for every synthesis layer: N × w_dim → N × L × w_dim."""
        return ops.repeat(w[:, None, :], self.config.num_layers, axis=1)

    def truncate(self, w, psi: float):
        """w̄ + ψ (w − w̄) (Karras et al. §4: ψ = 0 gives the 'mean' image, ψ = 1 no truncation)."""
        return self.w_avg[None] + psi * (w - self.w_avg[None])

    def mixed_ws(self, z1, z2, crossover):
        """Per-image style mixing: layers before ``crossover`` (N,) from w(z1), the rest from w(z2)."""
        w1, w2 = self.broadcast(self.mapping(z1)), self.broadcast(self.mapping(z2))
        layer = ops.arange(self.config.num_layers)[None, :, None]
        return ops.where(layer < ops.cast(crossover, "int32")[:, None, None], w1, w2), w1

    def _fakes(self, n):
        c = self.config
        m = global_batch(n)  # draws for the global batch; a replica keeps its slice
        z1 = local_part(keras.random.normal((m, c.latent_dim), seed=self.seed_generator))
        z2 = local_part(keras.random.normal((m, c.latent_dim), seed=self.seed_generator))
        mix = local_part(keras.random.uniform((m,), seed=self.seed_generator)) < c.mixing_prob
        cut = local_part(keras.random.randint((m,), 1, c.num_layers, seed=self.seed_generator))
        crossover = ops.where(mix, cut, c.num_layers)
        ws, w1 = self.mixed_ws(z1, z2, crossover)
        return self.synthesis(ws, seed_generator=self.seed_generator), w1

    def train_step(self, real):
        import tensorflow as tf

        c = self.config
        n = ops.shape(real)[0]
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in d_vars])
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(real)
                real_logits = self.discriminator(real)
                real_sum = tf.reduce_sum(real_logits)
            grad_real = r1_tape.gradient(real_sum, real)  # ∇_x D(x), itself differentiated for D's update
            fake, _ = self._fakes(n)
            fake_logits = self.discriminator(tf.stop_gradient(fake))
            r1 = r1_penalty(grad_real, c.r1_gamma)
            d_loss = logistic_discriminator_loss(real_logits, fake_logits) + r1
        self.d_optimizer.apply_gradients(zip(replica_gradients(tape.gradient(d_loss, d_vars)), d_vars))
        m_vars, s_vars = self.mapping.trainable_variables, self.synthesis.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in m_vars + s_vars])
            fake, w = self._fakes(n)
            g_loss = logistic_generator_loss(self.discriminator(fake))
        grads = replica_gradients(tape.gradient(g_loss, m_vars + s_vars))
        self.m_optimizer.apply_gradients(zip(grads[: len(m_vars)], m_vars))
        self.g_optimizer.apply_gradients(zip(grads[len(m_vars) :], s_vars))
        w_mean = replica_mean(ops.mean(w[:, 0], axis=0))
        self.w_avg.assign(c.w_avg_decay * self.w_avg + (1.0 - c.w_avg_decay) * w_mean)
        return self.record_step(
            {
                "d_loss": d_loss,
                "g_loss": g_loss,
                "r1_penalty": r1,
                "d_real": ops.mean(ops.sigmoid(real_logits)),
                "d_fake": ops.mean(ops.sigmoid(fake_logits)),
            }
        )

    # --- sampling (NumPy in, uint8 out; the training noise generator is never touched) ------------------
    def noise(self, n: int, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng([seed, 1])
        return [rng.standard_normal((n, h, w, 1)).astype(np.float32) for h, w in self.synthesis.noise_shapes()]

    def synthesize(self, ws, noise_seed: int = 0, noise=None) -> np.ndarray:
        """uint8 images for per-layer styles ``ws`` (N × L × w_dim) with noise drawn from ``noise_seed``."""
        ws = np.asarray(ws, np.float32)
        noise = noise if noise is not None else self.noise(len(ws), noise_seed)
        return from_unit(np.clip(np.asarray(self.synthesis(ws, noise=noise)), -1, 1))

    def render(self, z, psi: float | None = None, noise_seed: int = 0) -> np.ndarray:
        """uint8 images for latents ``z``, each with its own w on every layer and one noise sample shared by all
        (so images differ only through w: the baseline of a style-mixing grid)."""
        ws = np.repeat(self.w(z, psi)[:, None], self.config.num_layers, 1)
        return self.synthesize(ws, noise=[e.repeat(len(ws), 0) for e in self.noise(1, noise_seed)])

    def w(self, z, psi: float | None = None) -> np.ndarray:
        """Mapped (and truncated) w for latents z (N × latent_dim)."""
        psi = self.config.truncation_psi if psi is None else psi
        return np.asarray(self.truncate(self.mapping(np.asarray(z, np.float32)), psi))

    def generate(self, n: int = 16, seed: int = 0, psi: float | None = None) -> np.ndarray:
        """``n`` images from latents and noise drawn from ``seed``, truncated with ψ (config default 0.7)."""
        w = self.w(self.latents(n, seed), psi)
        return self.synthesize(np.asarray(self.broadcast(w)), noise_seed=seed)

    def _decode(self, z):
        w = self.broadcast(self.truncate(self.mapping(z), 1.0))
        return ops.clip(self.synthesis(w, noise=self.noise(int(z.shape[0]), 0)), -1, 1)

    def style_mix(
        self, z_sources, z_destinations, coarse: bool = True, psi: float | None = None, noise_seed: int = 0
    ) -> np.ndarray:
        """Karras et al. Fig. 3: rows = destinations, columns = sources; each image takes the source's styles on
        the coarse layers (4–8 px; ``coarse=False``: the fine layers from 16 px on) and the destination's
        elsewhere. Returns (rows, cols, H, W, 3) uint8; the same noise everywhere."""
        ws_src, ws_dst = self.w(z_sources, psi), self.w(z_destinations, psi)
        k = self.config.coarse_layers()
        out = []
        for wd in ws_dst:
            row = []
            for wsrc in ws_src:
                layers = np.repeat(wd[None], self.config.num_layers, 0)
                if coarse:
                    layers[:k] = wsrc
                else:
                    layers[k:] = wsrc
                row.append(layers)
            out.append(
                self.synthesize(
                    np.stack(row),
                    noise_seed=noise_seed,
                    noise=[e[:1].repeat(len(row), 0) for e in self.noise(1, noise_seed)],
                )
            )
        return np.stack(out)

    def interpolate(self, z_a, z_b, steps: int = 8, psi: float | None = None) -> np.ndarray:
        """Images along the straight line from w(z_a) to w(z_b) (same noise): uint8 (steps, H, W, 3)."""
        w = self.w(np.stack([z_a, z_b]), psi)
        t = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        ws = (1 - t) * w[0] + t * w[1]
        noise = [e.repeat(steps, 0) for e in self.noise(1, 0)]
        return self.synthesize(np.asarray(self.broadcast(ws)), noise=noise)
