"""CycleGAN (seed 003 §3.3.2, Zhu et al. 2017): loss formulas, the image pool, the architecture rules and
the schedule, and that training lowers the cycle loss."""

import numpy as np
import pytest

from nst_lib.errors import ConfigError
from nst_lib.models import CycleGAN, CycleGANConfig, ImagePool, LinearDecay, train
from nst_lib.models import losses as L
from nst_lib.models.data import ContentStyleData, tiny_paintings, tiny_photos

TINY = dict(image_size=32, filters=8, res_blocks=1, pool_size=4, batch_size=4, discriminator_layers=2)


def test_cycle_and_identity_losses_match_their_formulas(rng):
    x, fgx, y, gfy = (rng.normal(size=(2, 8, 8, 3)).astype("float32") for _ in range(4))
    assert float(L.cycle_loss(x, fgx, y, gfy)) == pytest.approx(
        np.abs(fgx - x).mean() + np.abs(gfy - y).mean(), rel=1e-5
    )
    assert float(L.identity_loss(x, fgx, y, gfy)) == pytest.approx(
        np.abs(gfy - y).mean() + np.abs(fgx - x).mean(), rel=1e-5
    )
    assert float(L.cycle_loss(x, x, y, y)) == 0.0


def test_least_squares_gan_losses_match_their_formulas(rng):
    real, fake = rng.normal(size=(2, 4, 4, 1)), rng.normal(size=(2, 4, 4, 1))
    assert float(L.lsgan_discriminator_loss(real, fake)) == pytest.approx(
        0.5 * (np.mean((real - 1) ** 2) + np.mean(fake**2)), rel=1e-5
    )
    assert float(L.lsgan_generator_loss(fake)) == pytest.approx(np.mean((fake - 1) ** 2), rel=1e-5)
    assert float(L.lsgan_discriminator_loss(np.ones(3), np.zeros(3))) == 0.0


def test_image_pool_stores_until_full_then_swaps_about_half():
    import keras

    pool = ImagePool(5, (2, 2, 3))
    seed = keras.random.SeedGenerator(3)
    seen = []
    for k in range(5):  # filling: every image comes back unchanged and is stored
        batch = np.full((1, 2, 2, 3), float(k), np.float32)
        assert np.array_equal(np.asarray(pool.query(batch, seed)), batch)
        seen.append(float(k))
    assert int(pool.count.numpy()) == 5
    assert sorted(np.asarray(pool.images)[:, 0, 0, 0].tolist()) == seen
    swapped = 0
    for k in range(5, 205):
        new = np.full((1, 2, 2, 3), float(k), np.float32)
        stored_before = set(np.asarray(pool.images)[:, 0, 0, 0].tolist())
        out = float(np.asarray(pool.query(new, seed))[0, 0, 0, 0])
        stored_after = np.asarray(pool.images)[:, 0, 0, 0].tolist()
        if out != float(k):  # a swap: an earlier image came out and the new one took its place
            swapped += 1
            assert out in stored_before and float(k) in stored_after and out not in stored_after
        else:
            assert set(stored_after) == stored_before
    assert int(pool.count.numpy()) == 5 and 70 < swapped < 130  # p = ½ over 200 draws
    assert np.array_equal(
        np.asarray(ImagePool(0, (2, 2, 3)).query(np.ones((3, 2, 2, 3), np.float32), seed)), np.ones((3, 2, 2, 3))
    )


def test_architecture_follows_zhu_et_al():
    from nst_lib.models.cyclegan import build_patch_discriminator, receptive_field

    assert CycleGANConfig(image_size=128).blocks == 6 and CycleGANConfig(image_size=256).blocks == 9
    assert CycleGANConfig(image_size=64, res_blocks=2).blocks == 2
    assert receptive_field(3) == 70  # the 70×70 PatchGAN
    d = build_patch_discriminator(64, 8, 3, 0, "d")
    assert d.output_shape == (None, 8, 8, 1)  # one score per patch
    m = CycleGAN(**TINY)
    assert m.generator_g.output_shape == (None, 32, 32, 3)
    with pytest.raises(ConfigError):
        CycleGANConfig(image_size=16, discriminator_layers=4)


def test_linear_decay_holds_then_falls_to_zero():
    sched = LinearDecay(2e-4, 10, 5)
    rates = [sched.rate_at(e) for e in range(10)]
    assert rates[:5] == [2e-4] * 5
    steps = np.diff(rates[4:])
    assert np.allclose(steps, steps[0]) and steps[0] < 0
    assert rates[-1] == pytest.approx(2e-4 / 6) and rates[-1] + steps[0] == pytest.approx(0.0, abs=1e-12)  # next: 0


@pytest.mark.slow
def test_training_lowers_the_cycle_loss_and_draws_sample_grids(tmp_path):
    data = ContentStyleData(tiny_photos(32, 32, seed=1), tiny_paintings(32, 32, seed=1))
    result = train(CycleGAN(**TINY, learning_rate=2e-3), data, 4, out=tmp_path, progress=False)
    cycle = result.losses("cycle_loss")  # ≈ 0.83 → 0.66 in this configuration
    assert len(cycle) == 32 and cycle[-8:].mean() < 0.88 * cycle[:4].mean()
    epochs, grid = result.samples()[-1]
    assert epochs == 4 and grid.shape[1] == 6 * 34 + 2  # x, G(x), F(G(x)), y, F(y), G(F(y))
    assert result.model.to_painting(data.content.images[:2]).shape == (2, 32, 32, 3)
    # the decay: the last epoch ran at 1/3 of the base rate (4 epochs, decay from epoch 2)
    assert float(result.model.g_optimizer.learning_rate) == pytest.approx(2e-3 / 3, rel=1e-5)


def test_to_photo_applies_f_and_to_painting_applies_g(rng):
    from nst_lib.images import from_unit, to_unit

    m = CycleGAN(**TINY)
    paintings = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    photos = m.to_photo(paintings)
    assert photos.shape == paintings.shape and photos.dtype == np.uint8
    # F(y) from the generator F itself, through the [-1, 1] convention; G is another network
    np.testing.assert_array_equal(photos, from_unit(np.asarray(m.generator_f(to_unit(paintings)))))
    assert np.abs(photos.astype(int) - m.to_painting(paintings)).mean() > 1.0
    np.testing.assert_allclose(m.to_photo(paintings[1:2])[0], photos[1], atol=1)  # image by image
