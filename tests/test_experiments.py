"""The measurements the notebooks report, as library functions (checked here on known inputs)."""

from types import SimpleNamespace

import numpy as np
import pytest

from nst_lib import StyleConfig
from nst_lib.features import get_extractor
from nst_lib.images import grayscale, load_image
from nst_lib.losses import gram_matrix, style_layer_loss
from nst_lib.metrics import gram_distance, lowpass_distance, mean_saturation, ssim

LAYERS = ("block1_conv1", "block2_conv1")


def test_lowpass_distance_ignores_detail_finer_than_the_grid_and_sees_layout():
    base = np.full((32, 32, 3), 100.0)
    checker = base + 50 * np.where((np.indices((32, 32)).sum(0) % 2)[..., None] == 0, 1, -1)  # 1-px detail
    assert lowpass_distance(base, checker, grid=8) == pytest.approx(0.0, abs=1e-9)
    shifted = base.copy()
    shifted[:4, :4] += 20.0  # one 4×4 block of the 8×8 grid brighter by 20
    assert lowpass_distance(base, shifted, grid=8) == pytest.approx(20.0 / 64)
    with pytest.raises(ValueError, match="multiple"):
        lowpass_distance(np.zeros((30, 32, 3)), np.zeros((30, 32, 3)), grid=8)


def test_gram_distance_is_four_times_the_size_style_loss_summed_over_layers(rng):
    vgg = get_extractor("vgg19", LAYERS, weights=None)
    a = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.uint8)
    b = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.uint8)
    fa, fb = vgg(a.astype(np.float32)), vgg(b.astype(np.float32))
    expected = 0.0
    for layer in LAYERS:
        n = fa[layer].shape[-1]
        expected += 4 * float(style_layer_loss(gram_matrix(fa[layer]), gram_matrix(fb[layer]), n, None, "size"))
    assert gram_distance(a, b, vgg, LAYERS) == pytest.approx(expected, rel=1e-4)
    assert gram_distance(a, a, vgg, LAYERS) == pytest.approx(0.0, abs=1e-6)


def test_style_mixing_distances_measure_the_mix_against_its_source():
    from nst_lib.models import StyleGAN
    from nst_lib.workbench.experiments import style_mixing_distances

    gan = StyleGAN(image_size=16, latent_dim=8, w_dim=8, mapping_layers=1, max_filters=8, min_filters=4)
    z = gan.latents(3, seed=0)
    same = style_mixing_distances(gan, z[:1], z[:1], grid=4)  # mixing an image with itself changes nothing
    assert same == {"coarse": pytest.approx(0.0, abs=1e-9), "fine": pytest.approx(0.0, abs=1e-9)}
    other = style_mixing_distances(gan, z[:1], z[1:], grid=4)
    assert other["coarse"] > 0 and other["fine"] > 0


def test_guidance_comparison_tabulates_gatys_outputs_and_every_snapshot():
    from types import SimpleNamespace

    from nst_lib.workbench.experiments import guidance_comparison

    content = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.uint8)
    judge = SimpleNamespace(distance=lambda image: float(np.mean(image)))
    guided = {"gram": SimpleNamespace(snapshots={50: 255 - content, 0: content})}
    rows = guidance_comparison(content, {"Gatys": content}, guided, judge)
    assert [r["image"] for r in rows] == ["Gatys", "gram, 0 it.", "gram, 50 it."]
    assert rows[0]["ssim_to_content"] == pytest.approx(1.0) and rows[1]["ssim_to_content"] == pytest.approx(1.0)
    assert rows[2]["ssim_to_content"] < 0 and rows[2]["style_loss"] == pytest.approx(255 - np.mean(content))


def test_cyclegan_vs_gatys_compares_on_the_same_photos(small_pair):
    from nst_lib import StyleConfig
    from nst_lib.models import CycleGAN
    from nst_lib.workbench.experiments import cyclegan_vs_gatys

    photos = np.stack([small_pair[0][:32, :32]] * 2).astype(np.uint8)
    paintings = np.stack([small_pair[1][:32, :32], 255 - small_pair[1][:32, :32]]).astype(np.uint8)
    vgg = get_extractor("vgg19", LAYERS, weights=None)
    out = cyclegan_vs_gatys(
        CycleGAN(image_size=32, filters=4, res_blocks=1),
        photos,
        paintings,
        StyleConfig(weights=None, size=32, steps=2),
        vgg,
        LAYERS,
        first_name="A",
    )
    assert [r["method"] for r in out["rows"]] == ["photo (input)", "CycleGAN G(x)", "Gatys, 2 paintings", "Gatys, A"]
    assert out["rows"][0]["ssim_to_photo"] == pytest.approx(1.0)
    assert out["rows"][0]["gram_distance"] == pytest.approx(gram_distance(photos, paintings, vgg, LAYERS))
    for label, images in out["outputs"].items():
        assert images.shape == photos.shape, label
        row = next(r for r in out["rows"] if r["method"] == label)
        assert row["ssim_to_photo"] == pytest.approx(np.mean([ssim(a, b) for a, b in zip(images, photos)]))


def test_interpolation_study_paths_start_at_zero_and_end_at_one():
    from nst_lib.models import StyleVAE
    from nst_lib.workbench.experiments import interpolation_figure, interpolation_study

    model = StyleVAE(stage="style", image_size=16, filters=4, res_blocks=1, style_dim=4, perceptual_weights=None)
    rng = np.random.default_rng(0)
    for w in model.mapping.weights + model.style_encoder.weights:  # untrained, z barely matters: make it matter
        w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
    contents = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    styles = rng.uniform(0, 255, (3, 16, 16, 3)).astype(np.uint8)
    study = interpolation_study({"m": model}, contents, styles, [(0, 1), (1, 2)], steps=5)
    e = study["m"]["evenness"]
    assert e["paths"] == 4 and e["from_start"].shape == (4, 5) and study["m"]["path"].shape == (5, 16, 16, 3)
    assert np.allclose(e["from_start"][:, 0], 0) and np.allclose(e["from_start"][:, -1], 1)
    assert interpolation_figure(study) is not None


def test_identity_test_reports_the_run_it_made_with_overrides_and_counts_steps_over_scales():
    from nst_lib import StyleConfig
    from nst_lib.workbench.experiments import identity_test

    from .conftest import CONTENT

    config = StyleConfig(weights=None, size=48, steps=2, init="noise", pyramid_levels=1, snapshot_every=0)
    r = identity_test(CONTENT, config, checkpoints=(1, 2), size=32, init="content", progress=False)
    assert r["init"] == "content" and max(r["image"].shape[:2]) == 32  # the overrides' run, scored at its size
    assert sorted(r["ssim_at"]) == [1, 2]
    c = load_image(CONTENT, 32)
    assert r["ssim"] == pytest.approx(ssim(r["image"], c)) and r["ssim"] > 0.5  # against C, at C's size
    two_scales = identity_test(CONTENT, config.replace(pyramid_levels=2), checkpoints=(2, 5, 6), progress=False)
    # 4 steps at the coarse scale, then 2: steps 5 and 6 are the second scale's 1 and 2, not overwriting 1 and 2
    assert sorted(two_scales["ssim_at"]) == [2, 5, 6] and two_scales["steps"] == 6


def test_grayscale_test_scores_the_output_against_the_content_in_grey():
    from nst_lib import StyleConfig
    from nst_lib.workbench.experiments import grayscale_test

    from .conftest import CONTENT

    config = StyleConfig(weights=None, size=32, steps=2, init="noise", pyramid_levels=1, snapshot_every=0)
    r = grayscale_test(CONTENT, config, checkpoints=(2,), progress=False)
    c = load_image(CONTENT, 32)
    assert np.array_equal(r["gray"], grayscale(c)) and r["image"].shape == c.shape
    assert r["ssim_to_gray"] == pytest.approx(ssim(r["image"], r["gray"]))
    assert r["saturation"] == pytest.approx(mean_saturation(r["image"]))
    assert r["content_saturation"] == pytest.approx(mean_saturation(c)) and r["content_saturation"] > 0.05
    assert list(r["ssim_at"]) == [2] and r["steps"] == 2 and r["init"] == "noise"


def test_a_cancelled_ray_cell_reports_what_its_folder_holds(tmp_path):
    from nst_lib import StyleConfig
    from nst_lib.workbench.ray_executor import _from_folder
    from nst_lib.workbench.sweeps import other_run, sweep

    from .conftest import CONTENT, DATA, STYLE

    def judged(config, content=CONTENT):  # what run_on_ray hands _from_folder: sweeps.other_run for this cell
        return lambda record: other_run(record, config, content, STYLE)

    config = StyleConfig(weights=None, size=48, steps=2, snapshot_every=0)
    (cell,) = sweep(CONTENT, STYLE, config, out=tmp_path, progress=False)
    cell.status = "pending"
    _from_folder(cell, config, judged(config))  # completed by an earlier call with these settings: done
    assert cell.status == "skipped (done)" and len(cell.history) == 2
    more = config.replace(steps=4)
    _from_folder(cell, more, judged(more))  # asked for more steps: there is more to do
    assert cell.status == "interrupted"
    cell.status = "pending"
    other = config.replace(seed=3)
    _from_folder(cell, other, judged(other))  # another cell's run, which the next call sets aside
    assert cell.status == "pending"
    _from_folder(cell, config, judged(config, DATA / "content" / "skimage_chelsea.png"))  # of other input files
    assert cell.status == "pending"


def test_reconstructions_use_one_kind_of_loss_only(monkeypatch):
    from nst_lib.workbench import experiments

    from .conftest import CONTENT, STYLE

    seen = []
    monkeypatch.setattr(experiments, "stylize", lambda c, s, cfg, **kw: seen.append(cfg) or SimpleNamespace(image=0))
    config = StyleConfig(weights=None, tv_weight=5.0, style_weight=1.0, content_weight=1.0)
    experiments.content_reconstruction(CONTENT, "block2_conv2", config)
    experiments.style_reconstruction(STYLE, ["block1_conv1"], config)
    content, style = seen
    assert (content.style_weight, content.tv_weight, content.init) == (0.0, 0.0, "noise")
    assert (style.content_weight, style.tv_weight, style.init) == (0.0, 0.0, "noise")  # only the Gram losses
