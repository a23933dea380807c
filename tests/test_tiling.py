"""Exact tiled evaluation: features of a tile's interior equal the whole image's, and the tiled loss and gradient
equal the untiled ones."""

import json

import numpy as np
import pytest
from keras import ops

from nst_lib import StyleConfig, backend, stylize
from nst_lib.errors import ConfigError
from nst_lib.features import LAYER_PRESETS, get_extractor
from nst_lib.images import load_image
from nst_lib.losses import tv_loss, tv_loss_and_grad
from nst_lib.objective import (
    OPTIMIZER_BUDGET_SHARE,
    Objective,
    Tile,
    evaluate,
    extractor_for,
    memory_budget,
    plan_tiles,
    tile_size_for,
)

from .conftest import CONTENT, STYLE, needs_vgg19


def _interior_features_match(extractor, image, tiles):
    """Largest relative difference between the whole image's features and each tile's interior features."""
    h, w = image.shape[:2]
    whole = {k: backend.to_numpy(v)[0] for k, v in extractor(image[None]).items()}
    objective = Objective.__new__(Objective)  # only its interior arithmetic is used
    objective.extractor = extractor
    worst = 0.0
    for tile in tiles:
        feats = extractor(image[tile.top : tile.bottom, tile.left : tile.right][None])
        for layer in extractor.layers:
            (gy0, gy1, ly0), (gx0, gx1, lx0) = objective._interior(tile, layer, h, w)
            local = backend.to_numpy(feats[layer])[0, ly0 : ly0 + gy1 - gy0, lx0 : lx0 + gx1 - gx0]
            ref = whole[layer][gy0:gy1, gx0:gx1]
            assert local.shape == ref.shape, (layer, tile)
            if ref.size == 0:  # a thin last interior can hold no position of a deep layer
                continue
            worst = max(worst, float(np.abs(local - ref).max() / (np.abs(ref).max() + 1e-12)))
    return worst


# The halos and strides come from the Keras layers, the same under either backend; what the backend adds is its
# convolutions' padding, which one network shows. Under JAX each tile shape is a compilation (ResNet50's 9 took a
# minute of CI), so JAX runs the VGG19 case only.
def _under_tf_only(arch: str):
    reason = "backend-independent geometry; run under TensorFlow (VGG19 runs under both)"
    return pytest.param(arch, marks=pytest.mark.skipif(backend.name() == "jax", reason=reason))


@pytest.mark.parametrize("arch", [_under_tf_only("vgg16"), "vgg19", _under_tf_only("resnet50")])
def test_each_tile_interior_has_the_whole_images_features_and_a_smaller_halo_would_not(arch, rng):
    presets = LAYER_PRESETS[arch]
    extractor = get_extractor(arch, presets["content"] + presets["style"], weights=None)
    halo, stride = extractor.halo, extractor.stride
    core = 2 * halo + 2 * stride  # 2 × 2 tiles, the last ones cut off the stride grid on purpose
    h, w = 2 * core - stride + 5, 2 * core - stride + 9
    image = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    tiles = plan_tiles(h, w, 2 * halo + core, halo, stride)
    assert len(tiles) == 4
    # interiors partition the image
    cover = np.zeros((h, w), int)
    for t in tiles:
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.y0 % stride == 0 and t.x0 % stride == 0 and t.top % stride == 0 and t.left % stride == 0
    assert (cover == 1).all()
    assert _interior_features_match(extractor, image, tiles) < 1e-5
    # the halo is needed: with half of it, the interiors' edges see the tiles' zero padding
    cut = halo // 2 // stride * stride
    short = [
        Tile(max(0, t.y0 - cut), min(h, t.y1 + cut), max(0, t.x0 - cut), min(w, t.x1 + cut), t.y0, t.y1, t.x0, t.x1)
        for t in tiles
    ]
    assert _interior_features_match(extractor, image, short) > 1e-4


def test_tv_in_numpy_matches_the_backends_value_and_gradient(rng):
    image = rng.uniform(0, 255, (7, 9, 3)).astype(np.float32)
    value, grad = tv_loss_and_grad(image)

    def tv(x, params):
        loss = tv_loss(x)
        return loss, loss

    aux, expected = backend.value_and_grad(tv)(ops.convert_to_tensor(image[None]), None)
    assert value == pytest.approx(float(backend.to_numpy(aux)), rel=1e-5)
    np.testing.assert_allclose(grad, backend.to_numpy(expected)[0], rtol=1e-4, atol=1e-3)


def _compare(whole, tiled, grad_tol, loss_tol):
    assert tiled.tiles > 1 and whole.tiles == 1
    for term in ("total", "content", "style", "tv"):
        a, b = getattr(whole, term), getattr(tiled, term)
        assert abs(a - b) <= loss_tol * max(abs(a), 1e-12), (term, a, b)
    err = np.linalg.norm(whole.grad - tiled.grad) / np.linalg.norm(whole.grad)
    assert err <= grad_tol, err


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"gram_norm": "gatys", "content_loss": "gatys"},
        {"gram_norm": "mean", "pooling": "avg", "style_layer_weights": (1, 2, 3, 4, 5)},
    ],
    ids=["size-mean", "gatys", "mean-avgpool"],
)
def test_tiled_equals_untiled_for_every_normalisation(overrides, small_pair, rng):
    config = StyleConfig(arch="vgg16", weights=None, size=200, style_blend_weights=(3, 1), **overrides)
    content = load_image(CONTENT, 200)  # 200 × 150: 5 × 4 tiles
    styles = [load_image(STYLE, 160), load_image(STYLE, 96)[:, ::-1]]
    image = rng.uniform(0, 255, content.shape).astype(np.float32)
    extractor = extractor_for(config)
    whole = Objective(extractor, config, content, styles, 0).evaluate(image)
    tiled = Objective(extractor, config, content, styles, 2 * extractor.halo + 48).evaluate(image)
    _compare(whole, tiled, 1e-4, 1e-5)


def test_an_image_one_pixel_high_evaluates_whole_as_in_tiles(rng):
    # block1 layers have stride 1, so a 1 × 64 strip fits them; its TV has no vertical term (it was NaN whole)
    layers = ("block1_conv1",)
    config = StyleConfig(weights=None, size=64, content_layers=layers, style_layers=layers, tv_weight=1.0)
    content, style = rng.uniform(0, 255, (1, 64, 3)), rng.uniform(0, 255, (8, 8, 3))
    image = rng.uniform(0, 255, (1, 64, 3)).astype(np.float32)
    extractor = extractor_for(config)
    whole = Objective(extractor, config, content, [style], 0).evaluate(image)
    tiled = Objective(extractor, config, content, [style], 2 * extractor.halo + 8).evaluate(image)
    assert np.isfinite(whole.total) and np.isfinite(whole.grad).all() and tiled.tiles > 1
    _compare(whole, tiled, 1e-4, 1e-5)


def test_a_style_layer_listed_twice_tiles_as_it_evaluates_whole(rng):
    # one layer under two names (Keras and Caffe): its Gram is one entry of the loss each time it is listed, tiled too
    config = StyleConfig(
        weights=None,
        size=96,
        content_layers=("block2_conv2",),
        style_layers=("block1_conv1", "relu1_1", "block2_conv1"),
    )
    content, style = load_image(CONTENT, 96), load_image(STYLE, 96)
    image = rng.uniform(0, 255, content.shape).astype(np.float32)
    extractor = extractor_for(config)
    whole = Objective(extractor, config, content, [style], 0).evaluate(image)
    tiled = Objective(extractor, config, content, [style], 2 * extractor.halo + 32).evaluate(image)  # 3 × 3 tiles
    _compare(whole, tiled, 1e-4, 1e-5)


def test_forward_passes_over_many_tiles_accumulate_the_same_grams_and_targets(monkeypatch, rng):
    from nst_lib import objective

    monkeypatch.setattr(objective, "FORWARD_TILE_FACTOR", 1)  # pass 1 and the targets over the small tiles too
    config = StyleConfig(arch="vgg16", weights=None, size=200)
    content, style = load_image(CONTENT, 200), load_image(STYLE, 256)  # a style image larger than a tile
    image = rng.uniform(0, 255, content.shape).astype(np.float32)
    extractor = extractor_for(config)
    tiled_objective = Objective(extractor, config, content, [style], 2 * extractor.halo + 48)
    assert len(tiled_objective.forward_tiles) > 1
    whole = Objective(extractor, config, content, [style], 0)
    for a, b in zip(whole.style_targets, tiled_objective.style_targets):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    _compare(whole.evaluate(image), tiled_objective.evaluate(image), 1e-4, 1e-5)


def test_a_style_image_larger_than_a_tile_is_tiled_where_the_content_is_not(monkeypatch, rng):
    from nst_lib import objective

    planned = []
    monkeypatch.setattr(objective, "plan_tiles", lambda *a: planned.append(a[:3]) or plan_tiles(*a))
    shallow = dict(content_layers=("block2_conv2",), style_layers=("block1_conv1", "block2_conv1"))
    extractor = extractor_for(StyleConfig(arch="vgg16", weights=None, **shallow))
    tile = 2 * extractor.halo + 4 * extractor.stride
    config = StyleConfig(arch="vgg16", weights=None, size=tile, tile_size=tile, **shallow)
    content, style = load_image(CONTENT, tile), load_image(STYLE, 3 * tile)  # the content fits one tile, the style not
    assert tile_size_for(config, extractor, *content.shape[:2]) == 0
    tiled = Objective(extractor, config, content, [style], 0)
    assert planned and planned[0][:2] == style.shape[:2]  # the style's Grams came from tiles
    whole = Objective(extractor, config.replace(tile_size=0), content, [style], 0)
    for a, b in zip(whole.style_targets, tiled.style_targets):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * np.abs(a).max())


@needs_vgg19
@pytest.mark.skipif(
    backend.name() == "jax",  # a minute of JAX compilation for 12 tile shapes
    reason="under JAX the random-weight cases above check the same tiled algebra; the real-weights case runs under TF",
)
def test_tiled_equals_untiled_with_real_vgg19_on_an_image_that_is_neither_content_nor_style(rng):
    config = StyleConfig(size=512, tile_size=288)  # the default layers; 12 tiles of at most 288 px
    content = load_image(CONTENT, 512)
    assert content.shape[:2] == (384, 512)
    image = np.clip(0.5 * content + rng.normal(128, 40, content.shape), 0, 255).astype(np.float32)
    tiled = evaluate(image, CONTENT, STYLE, config)
    whole = evaluate(image, CONTENT, STYLE, config, tile_size=0)
    assert tiled.tiles == 12 and tiled.grad.shape == (384, 512, 3) and tiled.grad.dtype == np.float32
    _compare(whole, tiled, 1e-3, 1e-4)


def test_the_memory_budget_decides_when_and_how_to_tile():
    config = StyleConfig(weights=None)
    extractor = extractor_for(config)
    per_pixel = extractor.bytes_per_pixel()
    roomy = config.replace(memory_budget_mb=4096)
    assert tile_size_for(roomy, extractor, 512, 512) == 0  # fits: no tiles
    tight_mb = int(per_pixel * 512 * 512 / 2**20 / 2)  # half of what the whole image needs
    tight = tile_size_for(config.replace(memory_budget_mb=tight_mb), extractor, 512, 512)
    assert 0 < tight < 512 and tight % extractor.stride == 0
    assert per_pixel * tight * tight <= (1 - OPTIMIZER_BUDGET_SHARE) * tight_mb * 2**20  # the optimiser's share kept
    assert memory_budget(config) <= 4 * 2**30  # the CPU default: a quarter of the RAM, at most 4 GB
    assert tile_size_for(config.replace(tile_size=0, memory_budget_mb=1), extractor, 4096, 4096) == 0  # never
    assert tile_size_for(config.replace(tile_size=256), extractor, 1024, 768) == 256  # as asked
    assert tile_size_for(config.replace(tile_size=2048), extractor, 1024, 768) == 0  # one tile is the image
    assert tile_size_for(config.replace(tile_size=1024), extractor, 1024, 768) == 0  # exactly one tile, too
    with pytest.raises(ConfigError, match="at least 176 px"):  # 2 × 80 px halo + one 16-px stride
        tile_size_for(config.replace(tile_size=100), extractor, 1024, 768)
    with pytest.warns(UserWarning, match=r"fits tiles of \d+ px, less than vgg19's layers need \(176 px"):
        assert tile_size_for(config.replace(memory_budget_mb=16), extractor, 2048, 2048) == 176  # over budget, said


def test_the_optimisers_state_fits_its_share_of_the_budget():
    from nst_lib.transfer import LBFGS_WORKING_ARRAYS, lbfgs_pairs

    config = StyleConfig(weights=None, memory_budget_mb=4096)  # the CPU default's cap
    share = OPTIMIZER_BUDGET_SHARE * memory_budget(config)
    assert lbfgs_pairs(config, 384 * 512 * 3) == config.lbfgs_history  # small images keep the whole history
    for h, w in [(1080, 1920), (1536, 2048)]:
        values = h * w * 3
        pairs = lbfgs_pairs(config, values)
        assert 3 <= pairs < config.lbfgs_history
        state = (2 * pairs + LBFGS_WORKING_ARRAYS) * 4 * values  # pairs and working arrays, float32
        assert state <= share < state + 2 * 4 * values  # as many pairs as fit, not one more
    assert lbfgs_pairs(config, 1080 * 1920 * 3) == 19 and lbfgs_pairs(config, 1536 * 2048 * 3) == 11  # as the README
    assert lbfgs_pairs(config, 2160 * 3840 * 3) == 3  # 4K: the floor, 3 pairs (0.6 GB) beside 0.5 GB of working arrays
    assert lbfgs_pairs(config.replace(memory_budget_mb=64), 2160 * 3840 * 3) == 3  # never fewer than 3
    assert lbfgs_pairs(config.replace(lbfgs_history=2), 2160 * 3840 * 3) == 2  # … unless fewer were asked for
    assert lbfgs_pairs(config.replace(lbfgs_history=1), 384 * 512 * 3) == 1


def test_a_tiled_stylisation_follows_the_untiled_one(small_pair):
    content, style = small_pair
    content, style = load_image(CONTENT, 192), load_image(STYLE, 192)
    kw = dict(weights=None, size=192, steps=4, snapshot_every=0, out=None, progress=False, arch="vgg16")
    whole = stylize(content, style, tile_size=0, **kw)
    tiled = stylize(content, style, tile_size=176, **kw)  # 4 tiles side by side (the 144 px height fits in one)
    for a, b in zip(whole.history, tiled.history):
        assert b["total"] == pytest.approx(a["total"], rel=1e-4)
    assert np.abs(whole.image.astype(int) - tiled.image.astype(int)).max() <= 2


def test_a_tiled_multi_scale_run_stopped_at_its_last_scale_resumes_exactly(tmp_path):
    from nst_lib import resume

    content, style = load_image(CONTENT, 192), load_image(STYLE, 192)
    kw = dict(weights=None, size=192, arch="vgg16", steps=2, first_scale_steps=3, pyramid_levels=None,
              pyramid_min_size=96, tile_size=176, snapshot_every=0, progress=False)  # fmt: skip
    full = stylize(content, style, out=tmp_path / "a", **kw)
    record = json.loads((full.run_dir / "config.json").read_text())
    assert [(s["long_side"], s["tiles"]) for s in record["schedule"]] == [(96, 1), (192, 4)]  # 4 × 1 at 192 px
    cut = stylize(content, style, out=tmp_path / "b", callbacks=[lambda i: i.level == 1 and i.step == 1], **kw)
    assert cut.status == "stopped" and len(cut.history) == 4
    resumed = resume(cut.run_dir, progress=False)
    np.testing.assert_array_equal(resumed.image, full.image)
    assert [r["total"] for r in resumed.history] == [r["total"] for r in full.history]


@pytest.mark.skipif(backend.name() == "jax", reason="backend-independent geometry; run under TensorFlow")
def test_tile_interiors_partition_every_layers_feature_map():
    from nst_lib.features import LAYER_PRESETS, get_extractor
    from nst_lib.objective import Objective, plan_tiles

    presets = LAYER_PRESETS["resnet50"]
    extractor = get_extractor("resnet50", presets["content"] + presets["style"], weights=None)
    halo, stride = extractor.halo, extractor.stride
    core = 2 * halo + 2 * stride
    h, w = 2 * core - stride + 5, 2 * core - stride + 9  # not multiples of the stride: ceil'd feature maps
    objective = Objective.__new__(Objective)
    objective.extractor = extractor
    tiles = plan_tiles(h, w, 2 * halo + core, halo, stride)
    shapes = extractor.feature_shapes(h, w)
    for layer in extractor.layers:
        cover = np.zeros(shapes[layer][:2], int)
        for t in tiles:
            (gy0, gy1, _), (gx0, gx1, _) = objective._interior(t, layer, h, w)
            cover[gy0:gy1, gx0:gx1] += 1
        assert (cover == 1).all(), layer


def test_the_budget_leaves_room_for_the_image_sized_arrays():
    from nst_lib.objective import OPTIMIZER_BUDGET_SHARE, extractor_for, memory_budget, tile_size_for

    config = StyleConfig(weights=None, memory_budget_mb=400)
    extractor = extractor_for(config)
    h = w = 1024
    side = tile_size_for(config, extractor, h, w)
    evaluation_share = (1 - OPTIMIZER_BUDGET_SHARE) * memory_budget(config)
    assert extractor.bytes_per_pixel() * side * side + 16 * h * w * 3 <= evaluation_share


def test_the_gpu_budget_is_three_quarters_of_the_cards_memory(monkeypatch):
    from nst_lib import backend
    from nst_lib.objective import memory_budget

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    monkeypatch.setattr(backend, "device_memory_bytes", lambda: 8 * 2**30)
    assert memory_budget(StyleConfig(weights=None)) == 6 * 2**30
    monkeypatch.setattr(backend, "device_memory_bytes", lambda: None)
    assert memory_budget(StyleConfig(weights=None)) == 12 * 2**30  # 16 GB assumed
