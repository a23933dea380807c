"""Analytic checks of the loss functions against hand-computed or NumPy values."""

import numpy as np
import pytest

from nst_lib.errors import ConfigError
from nst_lib.losses import (
    StyleLoss,
    content_loss,
    gram_matrix,
    normalize_weights,
    style_layer_loss,
    style_loss,
    tv_loss,
)


def checkerboard(h, w, amplitude):
    return (amplitude * (np.add.outer(np.arange(h), np.arange(w)) % 2)).astype(np.float32)[None, :, :, None]


@pytest.mark.parametrize("amplitude", [1.0, 7.0, 255.0])
def test_tv_of_checkerboard_is_twice_amplitude_squared(amplitude):
    # every vertical and every horizontal neighbour differs by the amplitude
    image = np.repeat(checkerboard(9, 12, amplitude), 3, axis=-1)
    assert float(tv_loss(image)) == pytest.approx(2 * amplitude**2, rel=1e-5)  # float32 sums


def test_tv_of_constant_is_zero_and_of_ramp_is_slope_squared():
    assert float(tv_loss(np.full((1, 5, 6, 3), 42.0, np.float32))) == 0.0
    ramp = np.tile(np.arange(6, dtype=np.float32) * 3.0, (5, 1))[None, :, :, None]
    assert float(tv_loss(ramp)) == pytest.approx(9.0)  # horizontal diffs 3, vertical 0


@pytest.mark.parametrize("shape", [(1, 2, 2, 3), (3, 9, 4, 1), (2, 16, 11, 64)])
def test_tv_is_the_mean_of_neighbour_differences_for_any_batch_and_channels(shape):
    image = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    dy, dx = np.diff(image.astype(np.float64), axis=1), np.diff(image.astype(np.float64), axis=2)
    assert float(tv_loss(image)) == pytest.approx(np.mean(dy**2) + np.mean(dx**2), rel=1e-5)


def test_tv_of_an_image_one_pixel_high_has_no_vertical_term_as_the_tiled_evaluation_computes_it():
    from nst_lib.losses import tv_loss_and_grad

    ramp = np.arange(8 * 3, dtype=np.float32).reshape(1, 8, 3) ** 1.5  # one row: horizontal differences only
    expected = np.mean(np.diff(ramp.astype(np.float64), axis=1) ** 2)
    assert float(tv_loss(ramp[None])) == pytest.approx(expected, rel=1e-5)  # not NaN, the mean of nothing
    assert float(tv_loss(np.swapaxes(ramp, 0, 1)[None])) == pytest.approx(expected, rel=1e-5)  # one column
    assert tv_loss_and_grad(ramp)[0] == pytest.approx(expected, rel=1e-5)


def test_gram_of_known_matrix():
    # positions (2×2) × channels (2): rows of F are [1,2], [3,4], [0,1], [2,0]
    f = np.array([[1, 2], [3, 4], [0, 1], [2, 0]], np.float32).reshape(1, 2, 2, 2)
    expected = np.array([[1 + 9 + 0 + 4, 2 + 12 + 0 + 0], [2 + 12 + 0 + 0, 4 + 16 + 1 + 0]], np.float32)
    np.testing.assert_allclose(np.asarray(gram_matrix(f, normalize=False))[0], expected)
    np.testing.assert_allclose(np.asarray(gram_matrix(f, normalize=True))[0], expected / 4)


def test_normalised_gram_is_invariant_to_image_size(rng):
    f = rng.normal(size=(1, 5, 7, 8)).astype(np.float32)
    tiled = np.tile(f, (1, 3, 2, 1))  # same texture statistics, six times the positions
    np.testing.assert_allclose(gram_matrix(tiled), gram_matrix(f), rtol=1e-5)
    np.testing.assert_allclose(gram_matrix(tiled, False), 6 * np.asarray(gram_matrix(f, False)), rtol=1e-5)


def test_content_loss_formulas(rng):
    f, p = rng.normal(size=(2, 1, 4, 5, 6)).astype(np.float32)
    assert float(content_loss(f, p, "gatys")) == pytest.approx(0.5 * np.sum((f - p) ** 2), rel=1e-5)
    assert float(content_loss(f, p, "mean")) == pytest.approx(np.mean((f - p) ** 2), rel=1e-5)
    assert float(content_loss(f, f, "mean")) == 0.0


def test_style_layer_loss_matches_gatys_formula(rng):
    f = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    s = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    n, m = 4, 30
    g_raw = f.reshape(m, n).T @ f.reshape(m, n)
    a_raw = s.reshape(m, n).T @ s.reshape(m, n)
    gatys = np.sum((g_raw - a_raw) ** 2) / (4 * n**2 * m**2)
    got = style_layer_loss(gram_matrix(f, False), gram_matrix(s, False), n, m, "gatys")
    assert float(got) == pytest.approx(gatys, rel=1e-5)
    # equal sizes: 'size' equals 'gatys', and 'mean' is four times it
    size = float(style_layer_loss(gram_matrix(f), gram_matrix(s), n, m, "size"))
    mean = float(style_layer_loss(gram_matrix(f), gram_matrix(s), n, m, "mean"))
    assert size == pytest.approx(gatys, rel=1e-5)
    assert mean == pytest.approx(4 * gatys, rel=1e-5)


@pytest.mark.parametrize("mode", ["size", "gatys", "mean"])
def test_style_loss_is_zero_for_identical_images(rng, mode):
    feats = [rng.normal(size=(1, 8, 8, c)).astype(np.float32) for c in (3, 5)]
    targets = [gram_matrix(f, normalize=mode != "gatys") for f in feats]
    assert float(style_loss(feats, targets, mode=mode)) == pytest.approx(0.0, abs=1e-9)


def test_blend_weights_are_normalised():
    np.testing.assert_allclose(normalize_weights([1, 3], 2), [0.25, 0.75])
    np.testing.assert_allclose(normalize_weights(None, 4), [0.25] * 4)
    with pytest.raises(ConfigError):
        normalize_weights([1, 2], 3)
    with pytest.raises(ConfigError):
        normalize_weights([0, 0], 2)


def test_blended_style_loss_is_weighted_sum_and_batch_average_is_mean(rng):
    x = {"a": rng.normal(size=(1, 6, 6, 4)).astype(np.float32)}
    styles = [{"a": rng.normal(size=(1, h, h, 4)).astype(np.float32)} for h in (6, 9, 12)]
    singles = [float(StyleLoss.from_style_features(["a"], [s])(x)) for s in styles]
    blended = StyleLoss.from_style_features(["a"], styles, blend=[1, 2, 1])  # normalised to sum 1
    assert float(blended(x)) == pytest.approx(0.25 * singles[0] + 0.5 * singles[1] + 0.25 * singles[2], rel=1e-5)
    with pytest.raises(ConfigError, match="style_blend_weights: expected 3 values"):
        StyleLoss.from_style_features(["a"], styles, blend=[1, 2])
    # seed 004: the batch-averaged style loss is the mean of the single-image style losses
    averaged = StyleLoss.from_style_features(["a"], styles)
    assert float(averaged(x)) == pytest.approx(np.mean(singles), rel=1e-5)


def test_style_layer_weights_are_normalised(rng):
    feats = [rng.normal(size=(1, 4, 4, 3)).astype(np.float32) for _ in range(2)]
    targets = [gram_matrix(rng.normal(size=(1, 4, 4, 3)).astype(np.float32)) for _ in range(2)]
    e0 = float(style_loss(feats[:1], targets[:1]))
    e1 = float(style_loss(feats[1:], targets[1:]))

    def by_hand(f, a):  # 'size': Σ (Ĝ − Â)² / (4 N²), Ĝ = FᵀF / M
        flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
        return float(np.sum((flat.T @ flat / len(flat) - np.asarray(a)[0]) ** 2) / (4 * f.shape[-1] ** 2))

    assert e0 == pytest.approx(by_hand(feats[0], targets[0]), rel=1e-5) and e0 > 0
    assert e1 == pytest.approx(by_hand(feats[1], targets[1]), rel=1e-5) and e1 > 0
    assert float(style_loss(feats, targets, [3, 1])) == pytest.approx(0.75 * e0 + 0.25 * e1, rel=1e-5)
    assert float(style_loss(feats, targets, [30, 10])) == pytest.approx(0.75 * e0 + 0.25 * e1, rel=1e-5)


def test_gram_gradient_matches_the_plain_autodiff_gradient(rng):
    # the hand-written backward pass (one matmul) against autodiff through a plain einsum, on this backend
    from keras import ops

    from nst_lib import backend

    f = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    a = rng.normal(size=(1, 4, 4)).astype(np.float32)

    def ours(x, params, target):
        loss = ops.sum(ops.square(gram_matrix(x) - target))
        return loss, loss

    def plain(x, params, target):
        flat = ops.reshape(x, (1, 30, 4))
        loss = ops.sum(ops.square(ops.einsum("bmc,bmd->bcd", flat, flat) / 30.0 - target))
        return loss, loss

    (v1, g1), (v2, g2) = (backend.value_and_grad(fn)(ops.convert_to_tensor(f), None, a) for fn in (ours, plain))
    assert float(backend.to_numpy(v1)) == pytest.approx(float(backend.to_numpy(v2)), rel=1e-6)
    np.testing.assert_allclose(backend.to_numpy(g1), backend.to_numpy(g2), rtol=1e-5, atol=1e-6)
