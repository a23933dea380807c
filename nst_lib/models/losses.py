"""Loss functions of the generative models, as pure functions of tensors (Keras ops), each with its formula.

All return a scalar averaged over the batch."""

from __future__ import annotations

from keras import ops

from ..losses import gram_matrix


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
        total = total + ops.mean(
            ops.square(ops.cast(features_a[layer], "float32") - ops.cast(features_b[layer], "float32"))
        )
    return total / len(layers)


def paired_gram_loss(features_out: dict, features_style: dict, layers):
    """Johnson et al. 2016 style reconstruction loss between each output and *its own* style image:
    (1/|layers|) Σ_l mean_i Σ (Ĝ_l(out_i) − Ĝ_l(y_i))² / (4 N_l²), with Ĝ = FᵀF / (H·W) from
    ``nst_lib.losses.gram_matrix`` — per pair, the 'size' normalisation of the Gatys engine."""
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


# --- CycleGAN (Zhu et al. 2017; seed 003 §3.3.2) -----------------------------------------------------------
def lsgan_discriminator_loss(real_out, fake_out):
    """Least-squares GAN (Mao et al. 2017) as CycleGAN uses it (Zhu et al. §4 'Training details'):
    ½ [mean (D(y) − 1)² + mean D(G(x))²] — the ½ slows D relative to G, as in the reference code."""
    real_out, fake_out = ops.cast(real_out, "float32"), ops.cast(fake_out, "float32")
    return 0.5 * (ops.mean(ops.square(real_out - 1.0)) + ops.mean(ops.square(fake_out)))


def lsgan_generator_loss(fake_out):
    """mean (D(G(x)) − 1)²: G wants its patches scored real."""
    return ops.mean(ops.square(ops.cast(fake_out, "float32") - 1.0))


def cycle_loss(x, x_cycled, y, y_cycled):
    """Zhu et al. eq. 2 (seed 003's L_c): mean |F(G(x)) − x| + mean |G(F(y)) − y| (L1, means over pixels)."""
    f = lambda a, b: ops.mean(ops.abs(ops.cast(a, "float32") - ops.cast(b, "float32")))  # noqa: E731
    return f(x_cycled, x) + f(y_cycled, y)


def identity_loss(x, f_of_x, y, g_of_y):
    """Zhu et al. §5.2 (after Taigman et al. 2017): mean |G(y) − y| + mean |F(x) − x| — each generator should
    leave an image already in its target domain unchanged, which keeps the colours of photos."""
    f = lambda a, b: ops.mean(ops.abs(ops.cast(a, "float32") - ops.cast(b, "float32")))  # noqa: E731
    return f(g_of_y, y) + f(f_of_x, x)


# --- VQGAN (Esser et al. 2021; seed 000 §2.2.3) -------------------------------------------------------------
def vq_losses(z_e, z_q, beta: float = 0.25):
    """The two non-reconstruction terms of seed 000's L_VQ, as (codebook, commitment):
    codebook = mean ‖sg[E(x)] − z_q‖² (moves the codes to the encodings), commitment = β · mean
    ‖sg[z_q] − E(x)‖² (keeps the encoder near its codes). Means over batch, positions and the D channels;
    β = 0.25 as in van den Oord et al. 2017 (seed 000 writes both terms with weight 1)."""
    z_e, z_q = ops.cast(z_e, "float32"), ops.cast(z_q, "float32")
    codebook = ops.mean(ops.square(ops.stop_gradient(z_e) - z_q))
    commitment = beta * ops.mean(ops.square(ops.stop_gradient(z_q) - z_e))
    return codebook, commitment


def code_usage(indices, codes: int):
    """(perplexity, usage) of a batch of code indices: perplexity = exp(−Σ_k p_k log p_k) with p_k the share
    of positions assigned code k (K when all K are used equally, 1 when one code takes everything); usage
    = the fraction of the K codes used at least once."""
    flat = ops.reshape(ops.cast(indices, "int32"), (-1,))
    counts = ops.sum(ops.one_hot(flat, codes), axis=0)
    p = counts / ops.cast(ops.shape(flat)[0], "float32")
    entropy = -ops.sum(p * ops.log(p + 1e-10))
    return ops.exp(entropy), ops.mean(ops.cast(counts > 0, "float32"))


def hinge_discriminator_loss(real_logits, fake_logits):
    """½ [mean max(0, 1 − D(x)) + mean max(0, 1 + D(x̂))] (the hinge loss of the taming-transformers code)."""
    real_logits, fake_logits = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    return 0.5 * (ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits)))


def hinge_generator_loss(fake_logits):
    """−mean D(x̂)."""
    return -ops.mean(ops.cast(fake_logits, "float32"))


def adaptive_weight(rec_grad, gan_grad, delta: float = 1e-4, max_weight: float = 1e4):
    """Esser et al. 2021 eq. 7: λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ), the gradients taken at the
    decoder's last layer G_L and the result clipped to [0, max_weight] and treated as a constant, so that
    the GAN term pulls on the decoder as hard as the reconstruction term does."""
    rec_norm = ops.sqrt(ops.sum(ops.square(ops.cast(rec_grad, "float32"))))
    gan_norm = ops.sqrt(ops.sum(ops.square(ops.cast(gan_grad, "float32"))))
    return ops.stop_gradient(ops.clip(rec_norm / (gan_norm + delta), 0.0, max_weight))


def next_token_loss(logits, targets):
    """seed 000's L_Transformer = E[−log p(s)] = mean_i −log p(s_i | s_<i): softmax cross-entropy of each
    position's logits (…, K) against the code that follows, averaged over positions (nats per code)."""
    logits = ops.cast(logits, "float32")
    logp = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    picked = ops.take_along_axis(logp, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1)
    return -ops.mean(picked)


def spherical_distance(a, b):
    """Squared great-circle distance between unit vectors, 2·arcsin(‖a − b‖ / 2)² (the VQGAN+CLIP
    notebooks' prompt loss): 0 for equal directions, π²/2 for opposite ones; a and b are normalised here."""
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    a = a / ops.sqrt(ops.sum(ops.square(a), axis=-1, keepdims=True) + 1e-12)
    b = b / ops.sqrt(ops.sum(ops.square(b), axis=-1, keepdims=True) + 1e-12)
    chord = ops.sqrt(ops.sum(ops.square(a - b), axis=-1) + 1e-12)
    return 2.0 * ops.square(ops.arcsin(ops.clip(chord / 2.0, 0.0, 1.0)))


# --- StyleGAN (Karras et al. 2019) ---------------------------------------------------------------------------
def logistic_discriminator_loss(real_logits, fake_logits):
    """Non-saturating logistic loss for D: mean softplus(D(G(z))) + mean softplus(−D(x))."""
    real_logits, fake_logits = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    return ops.mean(ops.softplus(fake_logits)) + ops.mean(ops.softplus(-real_logits))


def logistic_generator_loss(fake_logits):
    """Non-saturating logistic loss for G: mean softplus(−D(G(z))) (= −log σ(D(G(z))))."""
    return ops.mean(ops.softplus(-ops.cast(fake_logits, "float32")))


def r1_penalty(grad_real, gamma: float = 10.0):
    """Mescheder et al. 2018's R1: γ/2 · mean over real images of ‖∇_x D(x)‖², given ∇_x D(x) (N, H, W, C)."""
    g = ops.cast(grad_real, "float32")
    return 0.5 * gamma * ops.mean(ops.sum(ops.square(g), axis=(1, 2, 3)))
