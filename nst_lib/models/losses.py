"""Loss functions of the generative models, as pure functions of tensors (Keras ops), each with its formula.

All return a scalar averaged over the batch."""

from __future__ import annotations

from keras import ops


def bce_logits(target, logits):
    """Binary cross-entropy of sigmoid(logits) against ``target`` (a scalar label or a tensor), mean over all
    elements: −mean[t·log σ(l) + (1−t)·log(1−σ(l))]. Computed from logits for numerical stability; equals
    the log D(x) / log(1 − D(G(z))) terms of Goodfellow et al. 2014 with D = σ(logits)."""
    logits = ops.cast(logits, "float32")
    target = ops.broadcast_to(ops.cast(target, "float32"), ops.shape(logits))
    # max(l, 0) − l·t + log(1 + exp(−|l|))
    return ops.mean(ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits))))


def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """Seed 004 §3.2 part 1: loss on the real batch (target ``real_label``, < 1 for one-sided label
    smoothing) plus loss on the fake batch (target 0)."""
    return bce_logits(real_label, real_logits) + bce_logits(0.0, fake_logits)


def generator_loss(fake_logits):
    """Seed 004 §3.2 part 2: maximise log D(G(z)), i.e. BCE of the fakes against the real label 1
    (the non-saturating form of Goodfellow et al.)."""
    return bce_logits(1.0, fake_logits)


def kl_normal(mu, logvar):
    """KL(N(mu, diag exp(logvar)) ‖ N(0, I)) = ½ Σ_j (mu_j² + exp(logvar_j) − 1 − logvar_j),
    summed over latent dimensions, averaged over the batch (the VAE prior loss, Kingma & Welling 2014)."""
    mu = ops.cast(mu, "float32")
    logvar = ops.cast(logvar, "float32")
    per_image = 0.5 * ops.sum(ops.square(mu) + ops.exp(logvar) - 1.0 - logvar, axis=-1)
    return ops.mean(per_image)


def gaussian_feature_loss(features_real, features_fake):
    """Larsen et al. 2016 eq. 4, the negative log-likelihood of Dis_l(x) under a unit-variance Gaussian
    centred on Dis_l(x̃), up to a constant: ½ Σ (Dis_l(x) − Dis_l(x̃))², summed over the feature map,
    averaged over the batch."""
    diff = ops.cast(features_real, "float32") - ops.cast(features_fake, "float32")
    n = ops.shape(diff)[0]
    return 0.5 * ops.sum(ops.square(diff)) / ops.cast(n, "float32")


def reparameterize(mu, logvar, eps):
    """z = mu + exp(½·logvar)·eps with eps ~ N(0, I): a sample whose gradient reaches mu and logvar."""
    return mu + ops.exp(0.5 * logvar) * eps
