"""Extractors: layer presets, aliases, truncation, frozen weights, preprocessing, weight lookup."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_lib.errors import ConfigError, WeightsNotFoundError
from nst_lib.features import (
    KERAS_WEIGHT_FILES,
    LAYER_PRESETS,
    TORCHVISION_VGG16_FILE,
    FeatureExtractor,
    preprocess,
    resolve_weights,
    weights_available,
)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19", "resnet50"])
def test_presets_resolve_for_every_architecture(arch):
    layers = LAYER_PRESETS[arch]["content"] + LAYER_PRESETS[arch]["style"]
    fe = FeatureExtractor(arch, layers, weights=None)
    out = fe(np.zeros((1, 64, 64, 3), np.float32))
    assert set(out) == set(layers)
    for name in layers:
        assert len(out[name].shape) == 4 and out[name].shape[0] == 1


def test_vgg_truncated_after_deepest_requested_layer():
    fe = FeatureExtractor("vgg19", ["block2_conv1", "block1_conv1"], weights=None)
    names = [layer.name for layer in fe.model.layers]
    assert names[-1] == "block2_conv1"
    assert not any(n.startswith(("block3", "block4", "block5")) for n in names)
    assert fe.stride == 2


def test_resnet_truncated_model_is_smaller_than_full():
    full = keras.applications.ResNet50(include_top=False, weights=None)
    fe = FeatureExtractor("resnet50", ["conv2_block3_out"], weights=None)
    assert len(fe.model.layers) < len(full.layers) / 3
    assert not any(layer.name.startswith(("conv4", "conv5")) for layer in fe.model.layers)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="inspects the TensorFlow graph")
def test_weights_are_frozen_and_no_weight_gradient_is_built():
    from nst_lib.config import StyleConfig
    from nst_lib.objective import Objective

    fe = FeatureExtractor("vgg16", ["block2_conv2", "block1_conv1"], weights=None)
    assert fe.model.trainable_weights == []
    config = StyleConfig(arch="vgg16", weights=None, content_layers=("block2_conv2",), style_layers=("block1_conv1",))
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    problem = Objective(fe, config, image, [image])
    x = tf.constant(image[None])
    graph = problem.graph.whole.compiled.get_concrete_function(x, None, *problem._whole_args, tf.constant(1.0)).graph
    # ops the returned values depend on; TF builds a Conv2D's filter gradient as dead code that the
    # function runtime prunes, so what matters is that no output needs one
    needed, stack = set(), [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name not in needed:
            needed.add(op.name)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    types = {graph.get_operation_by_name(n).type for n in needed}
    assert "Conv2DBackpropInput" in types  # the image gradient flows back through the convolutions
    assert "Conv2DBackpropFilter" not in types  # but no kernel gradient is computed
    before = [w.numpy().copy() for w in fe.model.weights]
    problem(image.reshape(-1))
    for b, w in zip(before, fe.model.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_aliases_resolve_to_keras_names():
    fe = FeatureExtractor("vgg19", ["relu4_2", "conv1_1", "conv_4", "pool2"], weights=None)
    assert fe.layers == ["block4_conv2", "block1_conv1", "block2_conv2", "block2_pool"]


def test_a_layer_named_two_ways_is_one_layer_the_loss_uses_under_both_names():
    from nst_lib import StyleConfig, evaluate

    rng = np.random.default_rng(0)
    image, content, style = (rng.uniform(0, 255, (40, 40, 3)).astype(np.float32) for _ in range(3))
    kw = dict(weights=None, size=40, content_layers=("block2_conv2",))
    aliased = evaluate(image, content, style, StyleConfig(style_layers=("conv2_2", "block1_conv1"), **kw))
    keras_names = evaluate(image, content, style, StyleConfig(style_layers=("block2_conv2", "block1_conv1"), **kw))
    assert aliased.total == pytest.approx(keras_names.total, rel=1e-6) and aliased.style > 0
    np.testing.assert_allclose(aliased.grad, keras_names.grad, rtol=1e-5, atol=1e-6 * np.abs(aliased.grad).max())


def test_a_run_records_the_weights_file_a_download_becomes():
    """Keras downloads 'imagenet' weights into the cache where the next process finds the file: recorded as that
    file, so a resume after the download is not taken for another network."""
    from nst_lib.features import KERAS_WEIGHT_FILES

    fe = FeatureExtractor("vgg19", ["block1_conv1"], weights=None)
    assert fe.resolved() == {"weights": "random", "preprocessing": "caffe"}
    fe.weights_source = "imagenet"  # what resolve_weights says when the file is still to be downloaded
    assert fe.resolved()["weights"] == KERAS_WEIGHT_FILES["vgg19"]
    fe.weights_source = "/somewhere/" + KERAS_WEIGHT_FILES["vgg19"]  # found on disk, as after the download
    assert fe.resolved()["weights"] == KERAS_WEIGHT_FILES["vgg19"]


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown layer 'relu9_9'.*block1_conv1.*block5_conv4"):
        FeatureExtractor("vgg19", ["relu9_9"], weights=None)


def _reference_vgg(fe, images, pool):
    """block3_conv1 of a VGG computed by hand from ``fe``'s own kernels: 3×3 'same' convolutions with ReLU and
    2×2 pooling done by reshaping (``pool`` = np.max or np.mean): an independent check of the extractor."""
    x = np.asarray(preprocess(images.astype(np.float32), fe.preprocessing))
    for name in ("block1_conv1", "block1_conv2", "pool", "block2_conv1", "block2_conv2", "pool", "block3_conv1"):
        if name == "pool":
            n, h, w, c = x.shape
            x = pool(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))
            continue
        layer = fe.model.get_layer(name)
        x = np.maximum(np.asarray(tf.nn.conv2d(x, layer.kernel, 1, "SAME")) + np.asarray(layer.bias), 0.0)
    return x


def test_average_pooling_swap_matches_a_reference_computation(rng):
    images = rng.uniform(0, 255, (2, 32, 24, 3)).astype(np.float32)
    fe_max = FeatureExtractor("vgg19", ["block3_conv1"], weights=None, pooling="max", seed=3)
    fe_avg = FeatureExtractor("vgg19", ["block3_conv1"], weights=None, pooling="avg", seed=3)
    kinds_avg = [type(layer).__name__ for layer in fe_avg.model.layers]
    assert "MaxPooling2D" not in kinds_avg and kinds_avg.count("AveragePooling2D") == 2
    # the swap keeps the conv weights: the same seed gives the same kernels with either pooling
    for name in ("block1_conv1", "block2_conv2", "block3_conv1"):
        np.testing.assert_array_equal(fe_max.model.get_layer(name).kernel, fe_avg.model.get_layer(name).kernel)
    out_max = np.asarray(fe_max(images)["block3_conv1"])
    out_avg = np.asarray(fe_avg(images)["block3_conv1"])
    scale = np.abs(out_avg).max()
    np.testing.assert_allclose(out_avg, _reference_vgg(fe_avg, images, np.mean), atol=1e-4 * scale)
    np.testing.assert_allclose(out_max, _reference_vgg(fe_max, images, np.max), atol=1e-4 * scale)
    assert np.abs(out_avg - out_max).max() > 0.05 * scale  # the two poolings really differ


@pytest.mark.parametrize(
    "mode, keras_fn",
    [
        ("caffe", lambda x: keras.applications.vgg19.preprocess_input(x)),
        ("caffe", lambda x: keras.applications.vgg16.preprocess_input(x)),
        ("caffe", lambda x: keras.applications.resnet50.preprocess_input(x)),
        ("torch", lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode="torch")),
    ],
)
def test_preprocessing_equals_keras_own(rng, mode, keras_fn):
    x = (rng.uniform(0, 255, (2, 7, 5, 3))).astype(np.float32)
    np.testing.assert_allclose(np.asarray(preprocess(x, mode)), keras_fn(x.copy()), rtol=1e-5, atol=1e-4)


def test_weights_lookup_uses_keras_cache(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / KERAS_WEIGHT_FILES["resnet50"]).write_bytes(b"stand-in")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert weights_available("resnet50")
    path, pre = resolve_weights("resnet50", "imagenet")
    assert path == str(models / KERAS_WEIGHT_FILES["resnet50"]) and pre == "caffe"


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.h5: weights file not found"):
        FeatureExtractor("vgg19", ["block1_conv1"], weights=str(tmp_path / "nope.h5"))


def test_resnet50_imagenet_used_whenever_in_cache(tmp_path, monkeypatch):
    # no authentic ResNet50 file offline: without it, 'imagenet' falls through to Keras' download
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(tmp_path / "none"))
    if weights_available("resnet50"):
        pytest.skip("ResNet50 weights present outside the temporary cache")
    assert resolve_weights("resnet50", "imagenet") == ("imagenet", "caffe")


@pytest.mark.skipif(not weights_available("vgg16", "torchvision"), reason=f"{TORCHVISION_VGG16_FILE} not found")
def test_torchvision_vgg16_loads_with_torch_preprocessing():
    fe = FeatureExtractor("vgg16", ["block1_conv1"], weights="torchvision")
    assert fe.preprocessing == "torch"
    # values only torchvision's VGG16_Weights.IMAGENET1K_V1 give (random weights have zero biases and mean |w|
    # about 0.05): the centre tap of the first filter for R, G, B (so also the channel order and the
    # (out, in, kh, kw) → (kh, kw, in, out) transposition) and the first biases
    layer = fe.model.get_layer("block1_conv1")
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    assert w.shape == (3, 3, 3, 64)
    np.testing.assert_allclose(w[1, 1, :, 0], [0.35655147, -0.07032251, -0.08267727], atol=1e-6)
    np.testing.assert_allclose(b[:3], [0.403388, 0.37779424, 0.46436158], atol=1e-6)
    assert np.abs(w).mean() == pytest.approx(0.1830992, abs=1e-6)


def test_batchnorm_folding_keeps_the_function():
    from nst_lib.features import fold_batchnorm

    rng = np.random.default_rng(0)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    for layer in base.layers:  # non-trivial statistics, so folding has something to fold
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.1, layer.beta.shape))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    model = keras.Model(base.input, [base.get_layer(n).output for n in ("conv1_relu", "conv3_block4_out")])
    folded = fold_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    x = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    for a, b in zip(model(x), folded(x)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-3 * float(np.abs(a).max()))


def test_auto_weights_fall_back_to_random_with_a_warning(tmp_path, monkeypatch):
    from nst_lib import features

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("NST_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(features, "weight_search_dirs", lambda: [tmp_path / "models"])
    monkeypatch.setattr(features, "_online", lambda: False)
    with pytest.warns(UserWarning, match="random weights"):
        assert resolve_weights("resnet50", "auto") == (None, "caffe")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / KERAS_WEIGHT_FILES["resnet50"]).write_bytes(b"stand-in")
    assert resolve_weights("resnet50", "auto")[0].endswith(KERAS_WEIGHT_FILES["resnet50"])


def test_normalize_features_gives_every_layer_unit_mean_activation_on_the_bundled_images():
    from pathlib import Path

    from nst_lib import StyleConfig
    from nst_lib.images import load_image
    from nst_lib.objective import extractor_for

    config = StyleConfig(weights=None, normalize_features=True, seed=2)
    fe = extractor_for(config)
    assert fe.normalize and len(fe.layers) == 6  # VGG19's content layer and five style layers
    data = Path(__file__).resolve().parents[1] / "data"
    paths = sorted(p for p in data.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    means = {name: 0.0 for name in fe.layers}
    for path in paths:
        for name, out in fe(load_image(path, 128)[None]).items():
            means[name] += float(np.mean(out)) / len(paths)
    raw = FeatureExtractor("vgg19", fe.layers, weights=None, seed=2)  # the same network, not normalised
    raw_means = {name: float(np.mean(out)) for name, out in raw(load_image(paths[0], 128)[None]).items()}
    for name in fe.layers:
        assert means[name] == pytest.approx(1.0, rel=1e-3), name
        assert fe.scales[name] != pytest.approx(1.0, rel=0.05), name  # a real rescaling, not the identity
    assert len({round(np.log10(v)) for v in raw_means.values()}) > 1  # raw layers differ by orders of magnitude


def test_float32_on_a_gpu_is_given_the_rounding_allowance_of_tf32(monkeypatch):
    from nst_lib import backend
    from nst_lib.features import LOSS_NOISE, get_extractor

    extractor = get_extractor("vgg19", ("block1_conv1",), weights=None, precision="float32")
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    assert extractor.loss_noise == 0.0  # float32 on a CPU: exact enough for L-BFGS's line search as it is
    monkeypatch.setattr(backend, "gpu_available", lambda: True)  # TF32 products: float16's mantissa
    assert extractor.loss_noise == LOSS_NOISE["mixed"] > 0
