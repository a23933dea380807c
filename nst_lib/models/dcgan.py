"""DCGAN (Radford et al. 2015) as trained in seed 004 (Ast-GAN) §3.1–3.2 and tuned in §4.2.

Generator (Radford et al. Fig. 1 / seed 004 Fig. 1), at 64 px: z (100) → 4×4×512 → 8×8×256 → 16×16×128
→ 32×32×64 → 64×64×3, transposed 4×4 convolutions with stride 2, BatchNorm and ReLU, tanh at the end.
Discriminator: the mirror image with strided 4×4 convolutions, BatchNorm (not on the first layer) and
leaky ReLU, ending in a 4×4 valid convolution to one logit. Convolutions followed by BatchNorm have no
bias. Other sizes (power of two ≥ 16) add or remove 2× stages.

Training step (seed 004 §3.2): the discriminator minimises BCE(D(x), real_label) + BCE(D(G(z)), 0); then
the generator minimises BCE(D(G(z)), 1) on the same fake batch (G runs once a step). One-sided label
smoothing: real_label 0.85, switched to 0.95 half-way through training (§4.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from ..config import cited
from ..errors import ConfigError
from .base import GenerativeModelMixin, ModelConfig, global_batch, leaf_seed, local_part, replica_gradients
from .losses import discriminator_loss, generator_loss


@dataclass(frozen=True)
class DCGANConfig(ModelConfig):
    image_size: int = cited(64, "seed 004 §2: images centre-cropped to 64×64")
    latent_dim: int = cited(100, "Radford et al. 2015 (z of 100 dimensions, uniform there; normal in seed 004 §3.1)")
    generator_filters: int = cited(
        64,
        "Radford et al. Fig. 1: 1024→128 filters at 64 px for LSUN; 512→64 in the "
        "PyTorch DCGAN reference that seed 004 follows (ngf = 64)",
    )
    discriminator_filters: int = cited(64, "PyTorch DCGAN reference (ndf = 64)")
    learning_rate: float = cited(2e-4, "seed 004 §3.2 and Radford et al. §4")
    beta_1: float = cited(0.5, "seed 004 §3.2 and Radford et al. §4 (0.9 oscillated)")
    d_lr_ratio: float = cited(1.0, "seed 004 §4.2: D's rate relative to G's; 0.1 made G too strong")
    batch_size: int = cited(128, "seed 004 §3.2 and Radford et al. §4")
    leaky_slope: float = cited(0.3, "seed 004 §3.2/§4.2: 0.3 best, ≥ 0.4 made D too weak (Radford et al.: 0.2)")
    init_std: float = cited(0.02, "Radford et al. §4: weights from N(0, 0.02)")
    real_label: float = cited(0.85, "seed 004 §4.2: one-sided label smoothing to 0.85 (below it D was too weak)")
    real_label_late: float | None = cited(0.95, "seed 004 §4.2: 0.95 from half-way on; None keeps real_label")
    label_switch: float = cited(0.5, "seed 004 §4.2: 'half-way through training' (fraction of the epochs)")
    batchnorm_momentum: float = cited(0.9, "PyTorch's BatchNorm default (momentum 0.1 there) in the reference")
    flip: bool = cited(False, "random horizontal flips of the training images (not in seed 004)")
    jit_compile: bool = cited(
        False,
        "XLA for the train step; benchmarks/results/dcgan_throughput.json says which is faster on the machine measured",
    )
    seed: int = cited(0, "weights, noise and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size)
        for name in ("latent_dim", "generator_filters", "discriminator_filters", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1")
        if not 0 < self.real_label <= 1 or (self.real_label_late is not None and not 0 < self.real_label_late <= 1):
            raise ConfigError("real labels must be in (0, 1]")
        if self.learning_rate <= 0 or self.d_lr_ratio <= 0:
            raise ConfigError("learning rates must be positive")


def _stages(image_size: int) -> int:
    return int(math.log2(image_size)) - 2  # 2× stages between 4×4 and image_size


def build_generator(config: DCGANConfig) -> keras.Sequential:
    L = keras.layers
    n = _stages(config.image_size)
    init = iter(
        keras.initializers.RandomNormal(0.0, config.init_std, seed=leaf_seed(config.seed, i)) for i in range(100)
    )
    gamma = iter(
        keras.initializers.RandomNormal(1.0, config.init_std, seed=leaf_seed(config.seed, 100 + i)) for i in range(100)
    )

    def bn():
        return L.BatchNormalization(momentum=config.batchnorm_momentum, epsilon=1e-5, gamma_initializer=next(gamma))

    layers = [keras.Input((config.latent_dim,)), L.Reshape((1, 1, config.latent_dim))]
    filters = config.generator_filters * 2 ** (n - 1)
    layers += [
        L.Conv2DTranspose(filters, 4, padding="valid", use_bias=False, kernel_initializer=next(init)),
        bn(),
        L.ReLU(),
    ]
    for _ in range(n - 1):
        filters //= 2
        layers += [
            L.Conv2DTranspose(filters, 4, 2, padding="same", use_bias=False, kernel_initializer=next(init)),
            bn(),
            L.ReLU(),
        ]
    layers += [
        L.Conv2DTranspose(3, 4, 2, padding="same", use_bias=False, kernel_initializer=next(init)),
        L.Activation("tanh", dtype="float32"),
    ]
    return keras.Sequential(layers, name="generator")


def build_discriminator(config: DCGANConfig) -> keras.Sequential:
    L = keras.layers
    n = _stages(config.image_size)
    init = iter(
        keras.initializers.RandomNormal(0.0, config.init_std, seed=leaf_seed(config.seed, 200 + i)) for i in range(100)
    )
    gamma = iter(
        keras.initializers.RandomNormal(1.0, config.init_std, seed=leaf_seed(config.seed, 300 + i)) for i in range(100)
    )
    layers = [keras.Input((config.image_size, config.image_size, 3))]
    filters = config.discriminator_filters
    for i in range(n):
        layers.append(L.Conv2D(filters, 4, 2, padding="same", use_bias=False, kernel_initializer=next(init)))
        if i > 0:  # Radford et al.: no BatchNorm on the discriminator's input layer
            layers.append(
                L.BatchNormalization(momentum=config.batchnorm_momentum, epsilon=1e-5, gamma_initializer=next(gamma))
            )
        layers.append(L.LeakyReLU(negative_slope=config.leaky_slope))
        filters *= 2
    layers += [
        L.Conv2D(1, 4, padding="valid", use_bias=False, kernel_initializer=next(init)),
        L.Flatten(dtype="float32"),
    ]
    return keras.Sequential(layers, name="discriminator")


class DCGAN(GenerativeModelMixin, keras.Model):
    """``DCGAN(DCGANConfig(...))``; train with ``nst_lib.models.train(model, data, epochs)``."""

    kind = "dcgan"

    def __init__(self, config: DCGANConfig | None = None, **overrides):
        super().__init__(name="dcgan")
        self.config = (config or DCGANConfig()).replace(**overrides)
        c = self.config
        self.generator = build_generator(c)
        self.discriminator = build_discriminator(c)
        self.g_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="g_adam")
        self.d_optimizer = keras.optimizers.Adam(c.learning_rate * c.d_lr_ratio, beta_1=c.beta_1, name="d_adam")
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self.real_label = keras.Variable(c.real_label, trainable=False, name="real_label")
        names = ("d_loss", "g_loss", "d_real", "d_fake")
        self.make_trackers(names)
        self.compile(jit_compile=c.jit_compile)

    def networks(self) -> dict:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict:
        return {"generator": self.g_optimizer, "discriminator": self.d_optimizer}

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def _decode(self, z):
        return self.generator(z, training=False)

    def discriminator_loss_on(self, real, fake):
        """D's loss on given real and fake batches with the current real label (BatchNorm in training mode,
        as in a train step)."""
        return discriminator_loss(
            self.discriminator(real, training=True), self.discriminator(fake, training=True), self.real_label
        )

    def train_step(self, real):
        import tensorflow as tf

        n = keras.ops.shape(real)[0]
        # drawn for the global batch: under a strategy each replica takes its slice (the single-device noise)
        z = local_part(keras.random.normal((global_batch(n), self.config.latent_dim), seed=self.seed_generator))
        # G runs once a step, as in the PyTorch reference: a second G(z) in training mode would move its BatchNorm
        # averages twice (momentum 0.9² instead of 0.9) for the same batch statistics
        with tf.GradientTape() as g_tape:
            fake = self.generator(z, training=True)
            # part 1: the discriminator, on a real batch and a fake batch (separate BatchNorm statistics)
            with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(fake, training=True)
                d_loss = discriminator_loss(real_logits, fake_logits, self.real_label)
            with g_tape.stop_recording():
                grads = replica_gradients(d_tape.gradient(d_loss, self.discriminator.trainable_variables))
                self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
            # part 2: the generator, on the same fake batch, against the updated discriminator
            g_logits = self.discriminator(fake, training=True)
            g_loss = generator_loss(g_logits)
        grads = replica_gradients(g_tape.gradient(g_loss, self.generator.trainable_variables))
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        values = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": keras.ops.mean(keras.ops.sigmoid(real_logits)),  # D(x), as in the PyTorch reference
            "d_fake": keras.ops.mean(keras.ops.sigmoid(fake_logits)),  # D(G(z)) before D's update
        }
        return self.record_step(values)

    def training_callbacks(self, epochs: int) -> list:
        c = self.config
        if c.real_label_late is None:
            return [LabelSmoothingSchedule(c.real_label, c.real_label, epochs)]
        return [LabelSmoothingSchedule(c.real_label, c.real_label_late, int(round(c.label_switch * epochs)))]


class LabelSmoothingSchedule(keras.callbacks.Callback):
    """Sets the model's real label to ``early`` before epoch ``switch_epoch`` and ``late`` from it on
    (seed 004 §4.2: 0.85, then 0.95 half-way). Set at every epoch's start, so a resumed run gets it right."""

    def __init__(self, early: float, late: float, switch_epoch: int):
        super().__init__()
        self.early, self.late, self.switch_epoch = float(early), float(late), int(switch_epoch)

    def label_at(self, epoch: int) -> float:
        return self.late if epoch >= self.switch_epoch else self.early

    def on_epoch_begin(self, epoch, logs=None):
        self.model.real_label.assign(self.label_at(epoch))


def radford_parameter_counts(
    image_size: int = 64, latent_dim: int = 100, ngf: int = 64, ndf: int = 64
) -> dict[str, int]:
    """Trainable parameters of the Radford et al. architecture computed from its layer list (for tests):
    bias-free 4×4 (transposed) convolutions, BatchNorm γ and β where present."""
    n = _stages(image_size)
    g, f_in, f = 0, latent_dim, ngf * 2 ** (n - 1)
    for _ in range(n):
        g += f_in * f * 16 + 2 * f
        f_in, f = f, f // 2
    g += f_in * 3 * 16
    d, f_in, f = 0, 3, ndf
    for i in range(n):
        d += f_in * f * 16 + (2 * f if i > 0 else 0)
        f_in, f = f, f * 2
    d += f_in * 16
    return {"generator": g, "discriminator": d}
