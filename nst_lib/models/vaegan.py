"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"), trained
with Adam instead of RMSprop as in seed 004 §4.1.

Networks (Larsen et al., appendix, 64 px), with 5×5 kernels:
  encoder        conv 64↓, 128↓, 256↓ (BatchNorm, ReLU) → dense 2048 (BN, ReLU) → mean and log-variance of z
  decoder        dense 8·8·256 (BN, ReLU) → conv↑ 256, 128, 32 (BN, ReLU) → conv 3, tanh
  discriminator  conv 32 (ReLU) → conv↓ 128, 256, 256 (BN, ReLU) = Dis_l → dense 512 (BN, ReLU) → 1 logit

Losses (one forward pass; Larsen et al. Algorithm 1):
  L_prior = KL(q(z|x) ‖ N(0, I))                           ``losses.kl_normal``
  L_llike = ½‖Dis_l(x) − Dis_l(x̃)‖², x̃ = Dec(Enc(x))       ``losses.gaussian_feature_loss``
  L_GAN   = BCE(D(x), real) + BCE(D(x̃), 0) + BCE(D(Dec(z_p)), 0), z_p ~ N(0, I)
  encoder minimises kl_weight·L_prior + L_llike; decoder γ·L_llike + BCE(D(x̃), 1) + BCE(D(Dec(z_p)), 1);
  discriminator L_GAN.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ..config import cited
from ..errors import ConfigError
from ..images import from_unit, to_unit
from .base import GenerativeModelMixin, ModelConfig, global_batch, leaf_seed, local_part, replica_gradients
from .losses import bce_logits, gaussian_feature_loss, kl_normal, reparameterize


@dataclass(frozen=True)
class VAEGANConfig(ModelConfig):
    image_size: int = cited(64, "seed 004 §2 (64×64); Larsen et al. trained on 64×64 CelebA crops")
    latent_dim: int = cited(128, "a common choice for this architecture; Larsen et al.'s appendix does not fix it")
    learning_rate: float = cited(
        2e-4,
        "seed 004 §4.1 swaps Larsen's RMSprop (3e-4) for Adam; DCGAN's rate, so that the two compare at equal settings",
    )
    beta_1: float = cited(0.5, "as DCGAN (seed 004 §3.2)")
    batch_size: int = cited(128, "as DCGAN (seed 004 §3.2), for equal epochs")
    gamma: float = cited(
        1e-3,
        "Larsen et al. eq. 9 weight γ of L_llike in the decoder's loss; no value is "
        "published for this per-image sum, 1e-3 puts both terms at the same order at the start",
    )
    kl_weight: float = cited(1.0, "Larsen et al.: L_prior enters the encoder's loss unweighted")
    real_label: float = cited(1.0, "no label smoothing in Larsen et al.")
    batchnorm_momentum: float = cited(0.9, "as DCGAN")
    init_std: float = cited(0.02, "as DCGAN (Radford et al.)")
    flip: bool = cited(False, "random horizontal flips of the training images")
    jit_compile: bool = cited(False, "XLA for the train step")
    seed: int = cited(0, "weights, noise and data order")

    def validate(self) -> None:
        self.check_image_size(self.image_size)
        if self.latent_dim < 1 or self.batch_size < 1:
            raise ConfigError("latent_dim and batch_size must be ≥ 1")
        if self.learning_rate <= 0 or self.gamma < 0 or self.kl_weight < 0:
            raise ConfigError("learning_rate must be positive, gamma and kl_weight non-negative")


class _Init:
    def __init__(self, config, offset):
        self.config, self.i = config, offset

    def normal(self, mean=0.0):
        self.i += 1
        return keras.initializers.RandomNormal(mean, self.config.init_std, seed=leaf_seed(self.config.seed, self.i))

    def bn(self):
        return keras.layers.BatchNormalization(
            momentum=self.config.batchnorm_momentum, epsilon=1e-5, gamma_initializer=self.normal(1.0)
        )


def build_encoder(config: VAEGANConfig) -> keras.Model:
    L, init = keras.layers, _Init(config, 1000)
    x = inp = keras.Input((config.image_size, config.image_size, 3))
    for f in (64, 128, 256):
        x = L.Conv2D(f, 5, 2, padding="same", use_bias=False, kernel_initializer=init.normal())(x)
        x = L.ReLU()(init.bn()(x))
    x = L.Flatten()(x)
    x = L.ReLU()(init.bn()(L.Dense(2048, use_bias=False, kernel_initializer=init.normal())(x)))
    mu = L.Dense(config.latent_dim, kernel_initializer=init.normal(), dtype="float32", name="mu")(x)
    logvar = L.Dense(config.latent_dim, kernel_initializer=init.normal(), dtype="float32", name="logvar")(x)
    return keras.Model(inp, [mu, logvar], name="encoder")


def build_decoder(config: VAEGANConfig) -> keras.Model:
    L, init = keras.layers, _Init(config, 2000)
    s = config.image_size // 8
    x = inp = keras.Input((config.latent_dim,))
    x = L.ReLU()(init.bn()(L.Dense(s * s * 256, use_bias=False, kernel_initializer=init.normal())(x)))
    x = L.Reshape((s, s, 256))(x)
    for f in (256, 128, 32):
        x = L.Conv2DTranspose(f, 5, 2, padding="same", use_bias=False, kernel_initializer=init.normal())(x)
        x = L.ReLU()(init.bn()(x))
    x = L.Conv2D(3, 5, padding="same", kernel_initializer=init.normal())(x)
    return keras.Model(inp, L.Activation("tanh", dtype="float32")(x), name="decoder")


def build_discriminator(config: VAEGANConfig) -> keras.Model:
    """Returns (logit, Dis_l features) — Dis_l is the fourth convolution's output, as in Larsen et al."""
    L, init = keras.layers, _Init(config, 3000)
    x = inp = keras.Input((config.image_size, config.image_size, 3))
    x = L.ReLU()(L.Conv2D(32, 5, padding="same", kernel_initializer=init.normal())(x))
    for f in (128, 256, 256):
        x = L.Conv2D(f, 5, 2, padding="same", use_bias=False, kernel_initializer=init.normal())(x)
        x = L.ReLU()(init.bn()(x))
    features = x
    x = L.Flatten()(x)
    x = L.ReLU()(init.bn()(L.Dense(512, use_bias=False, kernel_initializer=init.normal())(x)))
    logit = L.Dense(1, kernel_initializer=init.normal(), dtype="float32")(x)
    return keras.Model(inp, [logit, features], name="discriminator")


class VAEGAN(GenerativeModelMixin, keras.Model):
    """``VAEGAN(VAEGANConfig(...))``; train with ``nst_lib.models.train(model, data, epochs)``."""

    kind = "vaegan"

    def __init__(self, config: VAEGANConfig | None = None, **overrides):
        super().__init__(name="vaegan")
        self.config = (config or VAEGANConfig()).replace(**overrides)
        c = self.config
        self.encoder = build_encoder(c)
        self.decoder = build_decoder(c)
        self.discriminator = build_discriminator(c)
        self.e_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="e_adam")
        self.g_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="g_adam")
        self.d_optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, name="d_adam")
        self.seed_generator = keras.random.SeedGenerator(c.seed, name="noise")
        self.real_label = keras.Variable(c.real_label, trainable=False, name="real_label")
        names = ("prior_loss", "llike_loss", "d_loss", "g_loss", "d_real", "d_fake")
        self.make_trackers(names)
        self.compile(jit_compile=c.jit_compile)

    def networks(self) -> dict:
        return {"encoder": self.encoder, "decoder": self.decoder, "discriminator": self.discriminator}

    def optimizers(self) -> dict:
        return {"encoder": self.e_optimizer, "decoder": self.g_optimizer, "discriminator": self.d_optimizer}

    def call(self, z, training=False):
        return self.decoder(z, training=training)

    def _decode(self, z):
        return self.decoder(z, training=False)

    def reconstruct(self, images) -> np.ndarray:
        """uint8 images → their reconstructions Dec(mean of Enc(x)) as uint8."""
        mu, _ = self.encoder(to_unit(images), training=False)
        return from_unit(np.asarray(self.decoder(mu, training=False)))

    def train_step(self, real):
        import tensorflow as tf

        c = self.config
        n = keras.ops.shape(real)[0]
        eps = local_part(keras.random.normal((global_batch(n), c.latent_dim), seed=self.seed_generator))
        z_p = local_part(keras.random.normal((global_batch(n), c.latent_dim), seed=self.seed_generator))
        with tf.GradientTape(persistent=True) as tape:
            mu, logvar = self.encoder(real, training=True)
            x_rec = self.decoder(reparameterize(mu, logvar, eps), training=True)
            x_p = self.decoder(z_p, training=True)
            real_logits, real_features = self.discriminator(real, training=True)
            rec_logits, rec_features = self.discriminator(x_rec, training=True)
            p_logits, _ = self.discriminator(x_p, training=True)
            prior = kl_normal(mu, logvar)
            llike = gaussian_feature_loss(tf.stop_gradient(real_features), rec_features)
            d_loss = bce_logits(self.real_label, real_logits) + bce_logits(0.0, rec_logits) + bce_logits(0.0, p_logits)
            g_loss = bce_logits(1.0, rec_logits) + bce_logits(1.0, p_logits)
            e_total = c.kl_weight * prior + llike
            g_total = c.gamma * llike + g_loss
        updates = [
            (replica_gradients(tape.gradient(loss, net.trainable_variables)), net, opt)
            for loss, net, opt in (
                (e_total, self.encoder, self.e_optimizer),
                (g_total, self.decoder, self.g_optimizer),
                (d_loss, self.discriminator, self.d_optimizer),
            )
        ]
        del tape
        for grads, net, opt in updates:  # all gradients first, then the updates (Larsen et al. Alg. 1)
            opt.apply_gradients(zip(grads, net.trainable_variables))
        values = {
            "prior_loss": prior,
            "llike_loss": llike,
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": keras.ops.mean(keras.ops.sigmoid(real_logits)),
            "d_fake": keras.ops.mean(keras.ops.sigmoid(p_logits)),
        }
        return self.record_step(values)
