"""CycleGAN (Zhu et al. 2017), the GAN route to style transfer of seed 003 §3.3.2: two generators,
G: photos (X) → paintings (Y) and F: Y → X, and two discriminators D_Y, D_X, trained on *unpaired* folders.

    L = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ · L_cyc(G, F) + 0.5 λ · L_id(G, F)

Networks (Zhu et al. Appendix 7.2, after Johnson et al. 2016), f = ``filters`` (64):
  generator      c7s1-f, d2f, d4f, ``res_blocks`` × R4f, u2f, uf, c7s1-3 → tanh; reflection padding,
                 instance normalisation, ReLU; 6 residual blocks at 128 px, 9 at 256 px
  discriminator  70×70 PatchGAN: C f (no norm), C 2f, C 4f (stride 2), C 8f (stride 1), 4×4 conv → one
                 score per 70×70 patch; leaky ReLU 0.2, instance normalisation
Losses (``nst_lib.models.losses``): least-squares GAN (``lsgan_*``), ``cycle_loss`` (L1), ``identity_loss``.
The discriminators see fakes drawn from a history of ``pool_size`` generated images (``ImagePool``,
Shrivastava et al. 2017). Adam 2e-4, β1 0.5, constant for the first half of the epochs and linearly decayed
to zero over the second half (``LinearDecay``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from ..config import cited
from ..errors import ConfigError
from ..images import from_unit, tile, to_unit
from .base import GenerativeModelMixin, ModelConfig, SeededInitializers, gathered, local_part, replica_gradients
from .layers import InstanceNorm, ReflectionPad
from .losses import cycle_loss, identity_loss, lsgan_discriminator_loss, lsgan_generator_loss


@dataclass(frozen=True)
class CycleGANConfig(ModelConfig):
    image_size: int = cited(128, "Zhu et al. Appendix 7.2: 128×128 training images use the 6-block generator")
    res_blocks: int = cited(0, "0 = Zhu et al.'s rule: 6 residual blocks at 128 px and below, 9 at 256 px and above")
    filters: int = cited(64, "Zhu et al. Appendix 7.2: c7s1-64 (generator) and C64 (discriminator)")
    discriminator_layers: int = cited(3, "3 strided layers: the 70×70 PatchGAN of Zhu et al. / Isola et al. 2017")
    cycle_weight: float = cited(10.0, "Zhu et al. §4: λ = 10")
    identity_weight: float = cited(0.5, "Zhu et al. §5.2: identity loss weight 0.5·λ (given as a fraction of λ)")
    pool_size: int = cited(50, "Zhu et al. §4: a history of the 50 last generated images (Shrivastava et al. 2017)")
    learning_rate: float = cited(2e-4, "Zhu et al. §4: Adam, learning rate 0.0002")
    beta_1: float = cited(0.5, "Zhu et al. reference code: Adam β1 = 0.5")
    decay_start: float = cited(
        0.5,
        "Zhu et al. §4: constant for 100 epochs, linear decay to 0 over the next 100 "
        "(the fraction of the epochs after which decay starts)",
    )
    batch_size: int = cited(1, "Zhu et al. §4: batch size 1")
    init_std: float = cited(0.02, "Zhu et al. reference code: weights from N(0, 0.02)")
    flip: bool = cited(True, "Zhu et al. reference code: random horizontal flips (of the photos here)")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights, image-pool draws and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size, smallest=16)
        for name in ("filters", "batch_size", "discriminator_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1")
        if self.res_blocks < 0 or self.pool_size < 0:
            raise ConfigError("res_blocks and pool_size must be ≥ 0")
        if self.cycle_weight < 0 or self.identity_weight < 0:
            raise ConfigError("loss weights must be ≥ 0")
        if not 0.0 <= self.decay_start <= 1.0:
            raise ConfigError("decay_start is a fraction of the epochs in [0, 1]")
        if self.image_size // 2**self.discriminator_layers < 2:
            raise ConfigError(
                f"{self.discriminator_layers} discriminator layers leave no patch at {self.image_size} px"
            )

    @property
    def blocks(self) -> int:
        """Residual blocks in each generator."""
        return self.res_blocks or (6 if self.image_size <= 128 else 9)

    @property
    def latent_dim(self) -> int:  # the base class's latent sampling is unused: CycleGAN maps images to images
        return 0


def _normal_init(seed: int, offset: int, std: float) -> SeededInitializers:
    """N(0, std) initialisers (Zhu et al.'s reference code: std 0.02)."""
    return SeededInitializers(seed, offset, functools.partial(keras.initializers.RandomNormal, 0.0, std))


def build_generator(config: CycleGANConfig, name: str, offset: int) -> keras.Model:
    L, init, f = keras.layers, _normal_init(config.seed, offset, config.init_std), config.filters

    def conv(x, filters, k, stride=1, pad=True, relu=True):
        if pad and k > 1 and stride == 1:
            x = ReflectionPad(k // 2)(x)
            x = L.Conv2D(filters, k, padding="valid", kernel_initializer=init())(x)
        else:
            x = L.Conv2D(filters, k, stride, padding="same", kernel_initializer=init())(x)
        x = InstanceNorm()(x)
        return L.ReLU()(x) if relu else x

    x = inp = keras.Input((config.image_size, config.image_size, 3))
    x = conv(x, f, 7)
    x = conv(x, 2 * f, 3, 2)
    x = conv(x, 4 * f, 3, 2)
    for _ in range(config.blocks):
        x = L.Add()([x, conv(conv(x, 4 * f, 3), 4 * f, 3, relu=False)])
    for filters in (2 * f, f):
        x = L.Conv2DTranspose(filters, 3, 2, padding="same", kernel_initializer=init())(x)
        x = L.ReLU()(InstanceNorm()(x))
    x = L.Conv2D(3, 7, padding="valid", kernel_initializer=init())(ReflectionPad(3)(x))
    return keras.Model(inp, L.Activation("tanh", dtype="float32")(x), name=name)


def build_patch_discriminator(
    image_size: int, filters: int, layers: int, seed: int, name: str, init_std: float = 0.02
) -> keras.Model:
    """PatchGAN (Isola et al. 2017): ``layers`` strided 4×4 convolutions (f, 2f, 4f, …; no normalisation on
    the first), one at stride 1, then a 4×4 convolution to one score per patch. With 3 strided layers the
    receptive field of each score is 70×70 pixels. Shared by CycleGAN and VQGAN."""
    L = keras.layers
    init = _normal_init(seed, 499, init_std)
    x = inp = keras.Input((image_size, image_size, 3))
    for i in range(layers):
        x = L.Conv2D(filters * min(2**i, 8), 4, 2, padding="same", kernel_initializer=init())(x)
        if i > 0:
            x = InstanceNorm()(x)
        x = L.LeakyReLU(0.2)(x)
    x = L.Conv2D(filters * min(2**layers, 8), 4, 1, padding="same", kernel_initializer=init())(x)
    x = L.LeakyReLU(0.2)(InstanceNorm()(x))
    out = L.Conv2D(1, 4, 1, padding="same", kernel_initializer=init(), dtype="float32")(x)
    return keras.Model(inp, out, name=name)


def receptive_field(layers: int) -> int:
    """Receptive field in pixels of one PatchGAN score: 4×4 kernels, ``layers`` at stride 2, then two at
    stride 1 (70 for layers = 3)."""
    strides = [2] * layers + [1, 1]
    field = 1
    for s in reversed(strides):
        field = field * s + (4 - s)
    return field


class ImagePool(keras.layers.Layer):
    """Shrivastava et al. 2017's history buffer, as CycleGAN uses it: until ``size`` images are stored, each
    generated image is stored and returned; after that, with probability ½ a random stored image is
    returned *and replaced* by the new one, otherwise the new image is returned. The buffer, its fill count
    and the draws (from the model's seed generator) are model state, so a resumed run draws the same."""

    def __init__(self, size: int, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.size, self.image_shape = int(size), tuple(image_shape)
        if self.size:
            self.images = self.add_weight(
                shape=(self.size, *self.image_shape), initializer="zeros", trainable=False, name="images"
            )
            self.count = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="count")

    def query(self, images, seed_generator):
        """What the discriminator sees for a batch of new fakes (a static batch size)."""
        if not self.size:
            return images
        images = ops.cast(images, "float32")
        out = []
        for i in range(images.shape[0]):
            new = images[i]
            n = self.count.value
            full = n >= self.size
            coin = keras.random.uniform((), seed=seed_generator) > 0.5
            j = keras.random.randint((), 0, self.size, seed=seed_generator, dtype="int32")
            slot = ops.where(full, j, ops.minimum(n, self.size - 1))
            old = ops.take(self.images.value, slot, axis=0)
            swap = ops.logical_and(full, coin)
            out.append(ops.where(swap, old, new))
            stored = ops.where(ops.logical_or(ops.logical_not(full), swap), new, old)
            onehot = ops.reshape(ops.one_hot(slot, self.size), (self.size, 1, 1, 1))
            self.images.assign(self.images.value * (1.0 - onehot) + onehot * stored[None])
            self.count.assign(ops.minimum(n + 1, self.size))
        return ops.stack(out)


class CycleGAN(GenerativeModelMixin, keras.Model):
    """``CycleGAN(CycleGANConfig(...))``; train with ``nst_lib.models.train(model, ContentStyleData(photos,
    paintings), epochs)`` — the pairs it draws are random, so the two folders need not correspond."""

    kind = "cyclegan"
    loss_keys = ("g_loss", "d_loss", "gan_g", "gan_f", "cycle_loss", "identity_loss", "d_y", "d_x")

    def __init__(self, config: CycleGANConfig | None = None, **overrides):
        super().__init__(name="cyclegan")
        self.config = (config or CycleGANConfig()).replace(**overrides)
        c = self.config
        s = c.image_size
        self.generator_g = build_generator(c, "generator_g", 1000)  # photo → painting
        self.generator_f = build_generator(c, "generator_f", 2000)  # painting → photo
        self.discriminator_y = build_patch_discriminator(
            s, c.filters, c.discriminator_layers, c.seed, "discriminator_y", c.init_std
        )
        self.discriminator_x = build_patch_discriminator(
            s, c.filters, c.discriminator_layers, c.seed + 1, "discriminator_x", c.init_std
        )
        self.pool_y = ImagePool(c.pool_size, (s, s, 3), name="pool_y")
        self.pool_x = ImagePool(c.pool_size, (s, s, 3), name="pool_x")
        self.g_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="g_adam")
        self.d_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="d_adam")
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self.make_trackers(self.loss_keys)
        self.compile(jit_compile=c.jit_compile)

    def networks(self) -> dict:
        return {
            "generator_g": self.generator_g,
            "generator_f": self.generator_f,
            "discriminator_y": self.discriminator_y,
            "discriminator_x": self.discriminator_x,
        }

    def optimizers(self) -> dict:
        return {"generators": self.g_optimizer, "discriminators": self.d_optimizer}

    def generator_variables(self) -> list:
        return self.generator_g.trainable_variables + self.generator_f.trainable_variables

    def discriminator_variables(self) -> list:
        return self.discriminator_y.trainable_variables + self.discriminator_x.trainable_variables

    def build_all(self) -> None:
        if not self.g_optimizer.built:
            self.g_optimizer.build(self.generator_variables())
        if not self.d_optimizer.built:
            self.d_optimizer.build(self.discriminator_variables())

    def call(self, x, training=False):
        return self.generator_g(x, training=training)

    def generator_losses(self, x, y) -> dict:
        """Every generator-side term for a batch of photos x and paintings y (in [-1, 1])."""
        c = self.config
        fake_y, fake_x = self.generator_g(x), self.generator_f(y)
        values = {
            "gan_g": lsgan_generator_loss(self.discriminator_y(fake_y)),
            "gan_f": lsgan_generator_loss(self.discriminator_x(fake_x)),
            "cycle_loss": cycle_loss(x, self.generator_f(fake_y), y, self.generator_g(fake_x)),
        }
        values["identity_loss"] = (
            identity_loss(x, self.generator_f(x), y, self.generator_g(y)) if c.identity_weight > 0 else ops.zeros(())
        )
        values["g_loss"] = (
            values["gan_g"]
            + values["gan_f"]
            + c.cycle_weight * values["cycle_loss"]
            + c.identity_weight * c.cycle_weight * values["identity_loss"]
        )
        return values, fake_y, fake_x

    def train_step(self, batch):
        import tensorflow as tf

        x, y = batch[0], batch[1]  # ContentStyleData's third element (a negative style) is not used
        g_vars, d_vars = self.generator_variables(), self.discriminator_variables()
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in g_vars])
            values, fake_y, fake_x = self.generator_losses(x, y)
        grads = replica_gradients(tape.gradient(values["g_loss"], g_vars))
        self.g_optimizer.apply_gradients(zip(grads, g_vars))
        # the discriminators score real images against fakes from the history pools
        # the pools hold the global batch's fakes: under a strategy every replica queries them with the whole
        # batch (the same draws, the same stored images) and keeps its own slice of the answer
        pooled_y = local_part(self.pool_y.query(gathered(ops.stop_gradient(fake_y)), self.seed_generator))
        pooled_x = local_part(self.pool_x.query(gathered(ops.stop_gradient(fake_x)), self.seed_generator))
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in d_vars])
            d_y = lsgan_discriminator_loss(self.discriminator_y(y), self.discriminator_y(pooled_y))
            d_x = lsgan_discriminator_loss(self.discriminator_x(x), self.discriminator_x(pooled_x))
            d_loss = d_y + d_x
        grads = replica_gradients(tape.gradient(d_loss, d_vars))
        self.d_optimizer.apply_gradients(zip(grads, d_vars))
        values.update(d_loss=d_loss, d_y=d_y, d_x=d_x)
        return self.record_step({k: values[k] for k in self.loss_keys})

    def training_callbacks(self, epochs: int) -> list:
        return [LinearDecay(self.config.learning_rate, epochs, int(round(self.config.decay_start * epochs)))]

    # --- using a trained model (uint8 in, uint8 out) --------------------------------------------------
    def _map(self, net, images, batch_size: int = 32) -> np.ndarray:
        x = to_unit(np.asarray(images))
        out = [np.asarray(net(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return from_unit(np.concatenate(out))

    def to_painting(self, photos) -> np.ndarray:
        """G(x) for uint8 photos at the model's size."""
        return self._map(self.generator_g, photos)

    def to_photo(self, paintings) -> np.ndarray:
        """F(y) for uint8 paintings."""
        return self._map(self.generator_f, paintings)

    def generate(self, n: int = 16, seed: int = 0, content=None) -> np.ndarray:
        if content is None:
            raise ConfigError("CycleGAN translates images: pass content=<uint8 photos>")
        return self.to_painting(np.asarray(content)[np.arange(n) % len(content)])

    def sample_inputs(self, data, n: int, seed: int):
        k = max(2, min(8, n // 4))
        return data.content.sample(k, seed), data.style.sample(k, seed + 1)

    def sample_grid(self, inputs) -> np.ndarray:
        """Columns: x, G(x), F(G(x)) | y, F(y), G(F(y)); one row per photo/painting pair."""
        x, y = inputs
        gx, fy = self.to_painting(x), self.to_photo(y)
        cols = [x, gx, self.to_photo(gx), y, fy, self.to_painting(fy)]
        return tile(np.stack(cols, 1).reshape(-1, *x.shape[1:]), cols=6)


class LinearDecay(keras.callbacks.Callback):
    """Zhu et al.'s schedule for both optimisers: ``base`` for epochs < ``decay_epoch``, then linearly down
    so that the last epoch trains at base / (epochs − decay_epoch + 1) and a further one would be at 0.
    Set at every epoch's start, so a resumed run gets it right."""

    def __init__(self, base: float, epochs: int, decay_epoch: int):
        super().__init__()
        self.base, self.epochs, self.decay_epoch = float(base), int(epochs), int(decay_epoch)

    def rate_at(self, epoch: int) -> float:
        if epoch < self.decay_epoch:
            return self.base
        return self.base * (1.0 - (epoch - self.decay_epoch + 1) / (self.epochs - self.decay_epoch + 1))

    def on_epoch_begin(self, epoch, logs=None):
        for opt in self.model.optimizers().values():
            opt.learning_rate = self.rate_at(epoch)
