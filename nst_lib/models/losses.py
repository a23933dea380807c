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


# --- style autoencoder (seed 002, after Kotovenko et al. 2019 and Johnson et al. 2016) ---------------------
def perceptual_loss(features_a: dict, features_b: dict, layers):
    """Johnson et al. 2016 feature reconstruction loss: (1/|layers|) Σ_l mean (φ_l(a) − φ_l(b))², the mean
    over batch, positions and channels of each layer (seed 002 §II: 'L2 distances of the feature activations
    of x and G(x, z)')."""
    total = 0.0
    for layer in layers:
        total = total + ops.mean(ops.square(ops.cast(features_a[layer], "float32") - ops.cast(features_b[layer], "float32")))
    return total / len(layers)


def paired_gram_loss(features_out: dict, features_style: dict, layers):
    """Johnson et al. 2016 style reconstruction loss between each output and *its own* style image:
    (1/|layers|) Σ_l mean_i Σ (Ĝ_l(out_i) − Ĝ_l(y_i))² / (4 N_l²), with Ĝ = FᵀF / (H·W) from
    ``nst_lib.losses.gram_matrix`` — per pair, the 'size' normalisation of the Gatys engine."""
    from ..losses import gram_matrix

    total = 0.0
    for layer in layers:
        f_out = ops.cast(features_out[layer], "float32")
        n = ops.cast(ops.shape(f_out)[-1], "float32")
        diff = gram_matrix(f_out) - gram_matrix(ops.cast(features_style[layer], "float32"))
        total = total + ops.mean(ops.sum(ops.square(diff), axis=(1, 2))) / (4.0 * n * n)
    return total / len(layers)


def fixpoint_loss(s1, s2, z):
    """Seed 002 eq. 1 (Kotovenko et al. 2019's fixpoint disentanglement loss), with s1 = E_s(G(x1, z)) and
    s2 = E_s(G(x2, z)) the style codes of two stylisations with the same code z:
    mean_batch max(0, ‖s1 − s2‖² − ‖s1 − z‖²). Zero once two contents stylised alike are no further apart
    in style space than a stylisation is from its own code: content must not leak into style."""
    s1, s2, z = (ops.cast(t, "float32") for t in (s1, s2, z))
    d12 = ops.sum(ops.square(s1 - s2), axis=-1)
    d1z = ops.sum(ops.square(s1 - z), axis=-1)
    return ops.mean(ops.relu(d12 - d1z))


def fixpoint_triplet_loss(z_pos, s_pos, s_neg, margin: float = 1.0):
    """Kotovenko et al. 2019's fixpoint triplet loss: with s_pos = E_s(G(x, z_pos)) and
    s_neg = E_s(G(x, z_neg)) for the code z_neg of a style from another group,
    mean_batch max(0, r + ‖z_pos − s_pos‖² − ‖z_pos − s_neg‖²): a stylisation's code must be closer to its
    own style's code than the other style's stylisation is, by the margin r."""
    z_pos, s_pos, s_neg = (ops.cast(t, "float32") for t in (z_pos, s_pos, s_neg))
    d_pos = ops.sum(ops.square(z_pos - s_pos), axis=-1)
    d_neg = ops.sum(ops.square(z_pos - s_neg), axis=-1)
    return ops.mean(ops.relu(margin + d_pos - d_neg))
