"""Compact StyleGAN (seed 003 §3.3.3, Karras et al. 2019): modulation by w, noise as fine detail, R1 against its
formula, truncation, style mixing, and that training moves samples toward the data."""

import numpy as np
import pytest
import tensorflow as tf

from nst_lib.models import StyleGAN, train
from nst_lib.models import losses as L
from nst_lib.models.data import tiny_paintings

TINY = dict(image_size=16, latent_dim=16, w_dim=16, mapping_layers=2, max_filters=32, min_filters=8, batch_size=8)


def _low_pass(images, factor=4):
    x = images.astype(np.float64)
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def test_modulation_uses_w():
    m = StyleGAN(**TINY)
    ws = np.repeat(m.w(m.latents(2, seed=1), psi=1.0)[:, None], m.config.num_layers, 1)
    noise = m.noise(2, 0)
    same_noise = [e[:1].repeat(2, 0) for e in noise]
    out = np.asarray(m.synthesis(ws, noise=same_noise))
    assert not np.allclose(out[0], out[1], atol=1e-4)  # two w, same noise → different images
    stats = lambda x: (x.mean(axis=(0, 1)), x.std(axis=(0, 1)))  # noqa: E731
    assert not np.allclose(np.concatenate(stats(out[0])), np.concatenate(stats(out[1])), atol=1e-3)
    ws2 = ws.copy()
    ws2[:, -1] = 0.0  # only the last layer's style changes
    out2 = np.asarray(m.synthesis(ws2, noise=same_noise))
    assert not np.allclose(out2, out, atol=1e-5)


def test_adain_statistics_equal_the_affine_map_of_w(monkeypatch):
    # Karras et al. 2019 eq. 1: every layer's output has, per image and channel, mean y_b and standard deviation
    # y_s · σ(x)/√(σ(x)² + ε) ≈ y_s, where (y_s − 1, y_b) = A(w) is that layer's affine map of its own w
    from nst_lib.models import stylegan

    m = StyleGAN(**TINY)
    ws = np.asarray(m.w(m.latents(2 * m.config.num_layers, seed=5), psi=1.0), np.float32)
    ws = ws.reshape(2, m.config.num_layers, -1)  # a different w on every layer of both images
    seen = []
    real_adain = stylegan.adain
    monkeypatch.setattr(stylegan, "adain", lambda x, s, b: seen.append((x, real_adain(x, s, b))) or seen[-1][1])
    m.synthesis(ws, noise=m.noise(2, 0))
    assert len(seen) == m.config.num_layers
    for i, (x, y) in enumerate(seen):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        style = np.asarray(m.synthesis.affines[i](ws[:, i]), np.float64)
        ch = m.synthesis.channels[i]
        y_s, y_b = 1.0 + style[:, :ch], style[:, ch:]
        var_x = x.var(axis=(1, 2))
        np.testing.assert_allclose(y.mean(axis=(1, 2)), y_b, atol=1e-4, err_msg=f"layer {i}")
        expected_std = np.abs(y_s) * np.sqrt(var_x / (var_x + 1e-5))
        np.testing.assert_allclose(y.std(axis=(1, 2)), expected_std, rtol=1e-3, atol=1e-4, err_msg=f"layer {i}")
    last = np.asarray(seen[-1][1])
    assert np.abs(last[0].mean(axis=(0, 1)) - last[1].mean(axis=(0, 1))).max() > 0.1  # two w, two sets of stats


def test_interpolate_walks_the_straight_line_in_w():
    m = StyleGAN(**TINY)
    z = m.latents(2, seed=7)
    path = m.interpolate(z[0], z[1], steps=5, psi=1.0)
    assert path.shape == (5, 16, 16, 3) and path.dtype == np.uint8
    ends = m.render(z, psi=1.0)  # each end's own w, the same noise: the path starts and ends there
    np.testing.assert_array_equal(path[0], ends[0])
    np.testing.assert_array_equal(path[-1], ends[1])
    w = m.w(z, psi=1.0)
    middle = np.repeat(((w[0] + w[1]) / 2)[None, None], m.config.num_layers, 1)
    np.testing.assert_array_equal(path[2], m.synthesize(middle, noise=m.noise(1, 0))[0])  # t = 0.5: the midpoint
    steps = [np.abs(path[i + 1].astype(float) - path[i]).mean() for i in range(4)]
    assert min(steps) > 0  # every step moves


def test_noise_inputs_change_local_detail_only():
    m = StyleGAN(**{**TINY, "image_size": 32})
    ws = np.repeat(m.w(m.latents(1, seed=3), psi=1.0)[:, None], m.config.num_layers, 1)
    noise = m.noise(1, 0)
    base = np.asarray(m.synthesis(ws, noise=noise))[0]
    # one pixel of the first 32-px layer's noise: it passes one 3×3 convolution and the 1×1 to RGB, so the
    # image changes in the 3×3 neighbourhood only (plus a trace through the instance statistics)
    poked = [e.copy() for e in noise]
    poked[-2][0, 16, 16, 0] += 3.0
    diff = np.abs(np.asarray(m.synthesis(ws, noise=poked))[0] - base).max(axis=-1)
    inside = diff[15:18, 15:18].max()
    outside = diff.copy()
    outside[15:18, 15:18] = 0
    assert inside > 1e-3 and outside.max() < 0.05 * inside  # measured: 2.5 %
    # a different w changes the whole image (AdaIN's statistics are global)
    other_w = np.repeat(m.w(m.latents(1, seed=4), psi=1.0)[:, None], m.config.num_layers, 1)
    w_diff = np.abs(np.asarray(m.synthesis(other_w, noise=noise))[0] - base).max(axis=-1)
    assert np.median(w_diff) > 0.1 * w_diff.max()


def test_r1_penalty_matches_its_formula_for_a_linear_discriminator():
    a = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 3)).astype("float32"))
    x = tf.constant(np.random.default_rng(1).normal(size=(5, 4, 4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.reduce_sum(a * x, axis=(1, 2, 3))  # D(x) = ⟨a, x⟩ → ∇_x D = a
        total = tf.reduce_sum(logits)
    grad = tape.gradient(total, x)
    assert float(L.r1_penalty(grad, gamma=10.0)) == pytest.approx(5.0 * float(tf.reduce_sum(a**2)), rel=1e-5)
    real, fake = np.array([0.3, -2.0]), np.array([1.5, -0.5])
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    assert float(L.logistic_discriminator_loss(real, fake)) == pytest.approx(
        softplus(fake).mean() + softplus(-real).mean(), rel=1e-5
    )
    assert float(L.logistic_generator_loss(fake)) == pytest.approx(softplus(-fake).mean(), rel=1e-5)


def test_truncation_at_zero_gives_the_mean_w_image():
    m = StyleGAN(**TINY)
    m.w_avg.assign(np.linspace(-1, 1, 16).astype("float32"))
    w = m.w(m.latents(3, seed=5), psi=0.0)
    assert np.allclose(w, np.asarray(m.w_avg)[None], atol=1e-6)
    mean_w = np.repeat(np.asarray(m.w_avg)[None, None], 3, 0).repeat(m.config.num_layers, 1)
    assert np.array_equal(m.generate(3, seed=0, psi=0.0), m.synthesize(mean_w, noise_seed=0))  # same noise draws
    one_noise = [e.repeat(3, 0) for e in m.noise(1, 0)]
    images = m.synthesize(
        np.repeat(m.w(m.latents(3, seed=5), psi=0.0)[:, None], m.config.num_layers, 1), noise=one_noise
    )
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])  # every z → the mean image
    assert not np.array_equal(*m.generate(2, seed=0, psi=1.0))


def test_style_mixing_grid_takes_coarse_styles_from_the_source():
    m = StyleGAN(**TINY)
    src, dst = m.latents(3, seed=1), m.latents(2, seed=2)
    grid = m.style_mix(src, dst, coarse=True)
    assert grid.shape == (2, 3, 16, 16, 3)
    # with the coarse layers from the source, the mixed image's low-pass is closer to the source's than the
    # destination's own image is
    own_src = m.synthesize(
        np.repeat(m.w(src)[:, None], m.config.num_layers, 1), noise=[e.repeat(3, 0) for e in m.noise(1, 0)]
    )
    own_dst = m.synthesize(
        np.repeat(m.w(dst)[:, None], m.config.num_layers, 1), noise=[e.repeat(2, 0) for e in m.noise(1, 0)]
    )
    lp = _low_pass
    assert np.abs(lp(grid[0]) - lp(own_src)).mean() < np.abs(lp(own_dst[:1].repeat(3, 0)) - lp(own_src)).mean()


@pytest.mark.slow
def test_a_few_steps_move_sample_statistics_toward_the_data(tmp_path):
    data = tiny_paintings(64, 16, seed=4)
    model = StyleGAN(**TINY, learning_rate=2e-3)  # the tiny model trains stably at the paper's rate
    target = data.images.reshape(-1, 3).mean(0), data.images.reshape(-1, 3).std(0)

    def distance(images):
        flat = images.reshape(-1, 3).astype(np.float64)
        return np.abs(flat.mean(0) - target[0]).sum() + np.abs(flat.std(0) - target[1]).sum()

    before = distance(model.generate(64, seed=9, psi=1.0))
    result = train(model, data, 10, out=tmp_path, progress=False)
    after = distance(result.model.generate(64, seed=9, psi=1.0))
    assert after < 0.7 * before  # summed |Δ mean| + |Δ std| of the RGB channels, in grey levels
    assert np.all(np.isfinite(result.losses("r1_penalty"))) and result.losses("r1_penalty").max() > 0
    assert len(result.samples()) == 10


def test_minibatch_stddev_channel_measures_the_batch_variety():
    from nst_lib.models.stylegan import MinibatchStddev

    same = np.repeat(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), 8, 0).astype("float32")
    varied = np.random.default_rng(1).normal(size=(8, 4, 4, 3)).astype("float32")
    layer = MinibatchStddev(4)
    out_same, out_varied = np.asarray(layer(same)), np.asarray(layer(varied))
    assert out_same.shape == (8, 4, 4, 4) and np.array_equal(out_same[..., :3], same)
    assert np.allclose(out_same[..., 3], 1e-4, atol=1e-5)  # √(0 + 1e-8)
    expected = varied.reshape(4, 2, 4, 4, 3).std(axis=0).mean(axis=(1, 2, 3))  # one value per group
    assert np.allclose(out_varied[:2, 0, 0, 3], expected, rtol=1e-4)
