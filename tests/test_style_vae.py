"""Style VAE (seed 002): AdaIN, the loss formulas, the paired content/style data, stages and their trainable
sets, training behaviour, interpolation evenness and the deception survey."""

import csv
import io
import json
import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from PIL import Image

from nst_lib.errors import ConfigError, NSTError
from nst_lib.losses import gram_matrix, style_layer_loss
from nst_lib.metrics import path_evenness
from nst_lib.models import (
    StyleVAE,
    StyleVAEConfig,
    build_model,
    load_trained,
    resume_training,
    train,
    train_style_vae,
)
from nst_lib.models.data import ContentStyleData, DataError, tiny_paintings, tiny_photos
from nst_lib.models.layers import AdaIN, adain, instance_norm
from nst_lib.models.losses import fixpoint_loss, fixpoint_triplet_loss, kl_normal, paired_gram_loss, perceptual_loss
from nst_lib.workbench.survey import DeceptionSurvey, deception_rate, wilson_interval

SMALL = dict(image_size=16, filters=8, batch_size=8, perceptual_weights=None)


@pytest.fixture(scope="module")
def data16():
    return ContentStyleData(tiny_photos(64, 16, seed=1), tiny_paintings(64, 16, seed=2))


def _batch(data, batch_size=8):
    return next(iter(data.dataset(batch_size, seed=0)))


# --- layers and loss formulas ---------------------------------------------------------------------------
def test_adain_output_has_the_target_mean_and_std(rng):
    x = rng.normal(3.0, 5.0, (2, 8, 8, 4)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, (2, 4)).astype(np.float32)
    bias = rng.normal(0, 3, (2, 4)).astype(np.float32)
    out = np.asarray(adain(x, scale, bias))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), bias, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), scale, rtol=1e-3)
    # the layer: zero parameters give plain instance norm, (s − 1, b) give scale s and bias b
    layer = AdaIN()
    np.testing.assert_allclose(
        np.asarray(layer([x, np.zeros((2, 8), np.float32)])), np.asarray(instance_norm(x)), atol=1e-6
    )
    out = np.asarray(layer([x, np.concatenate([scale - 1, bias], 1)]))
    np.testing.assert_allclose(out.std(axis=(1, 2)), scale, rtol=1e-3)


def test_kl_matches_its_closed_form_on_known_inputs():
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − ln σ²) per dimension
    mu = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    logvar = np.array([[0.0, math.log(4.0)], [0.0, 0.0]], np.float32)
    first = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - math.log(4.0))
    assert float(kl_normal(mu, logvar)) == pytest.approx((first + 0.0) / 2, rel=1e-6)
    assert float(kl_normal(np.zeros((3, 5)), np.zeros((3, 5)))) == 0.0  # the prior itself


def test_fixpoint_and_triplet_losses_against_numpy(rng):
    s1, s2, z, s_neg = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(4))
    d12 = ((s1 - s2) ** 2).sum(1)
    d1z = ((s1 - z) ** 2).sum(1)
    assert float(fixpoint_loss(s1, s2, z)) == pytest.approx(np.maximum(0, d12 - d1z).mean(), rel=1e-5)
    assert float(fixpoint_loss(s1, s1, z)) == 0.0  # two stylisations with one style code agree: no loss
    d_neg = ((z - s_neg) ** 2).sum(1)
    want = np.maximum(0, 0.5 + d1z - d_neg).mean()
    assert float(fixpoint_triplet_loss(z, s1, s_neg, 0.5)) == pytest.approx(want, rel=1e-5)


def test_paired_gram_loss_is_the_engines_size_loss_per_pair(rng):
    out = {"a": rng.normal(size=(3, 5, 5, 4)).astype(np.float32), "b": rng.normal(size=(3, 3, 3, 6)).astype(np.float32)}
    sty = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in out.items()}
    want = np.mean(
        [
            np.mean(
                [
                    float(
                        style_layer_loss(
                            gram_matrix(out[k][i : i + 1]), gram_matrix(sty[k][i : i + 1]), v.shape[-1], None, "size"
                        )
                    )
                    for i in range(3)
                ]
            )
            for k, v in out.items()
        ]
    )
    assert float(paired_gram_loss(out, sty, ["a", "b"])) == pytest.approx(want, rel=1e-5)
    assert float(paired_gram_loss(out, out, ["a", "b"])) == 0.0
    assert float(perceptual_loss(out, sty, ["a"])) == pytest.approx(np.mean((out["a"] - sty["a"]) ** 2), rel=1e-6)


def test_the_triplets_negative_is_sampled_with_its_own_noise(data16, monkeypatch):
    seen = {}
    for weight in (1.0, 0.0):
        model = StyleVAE(stage="variational", triplet_weight=weight, **SMALL)
        real = model.stage_losses

        def spy(x, y, y_neg, eps, eps_neg=None, real=real, weight=weight):
            seen[weight] = (eps, eps_neg)
            return real(x, y, y_neg, eps, eps_neg)

        monkeypatch.setattr(model, "stage_losses", spy)
        model.train_step(_batch(data16))
    eps, eps_neg = seen[1.0]
    assert eps_neg is not None and eps_neg.shape == eps.shape and not np.allclose(eps, eps_neg)
    assert seen[0.0][1] is None  # no triplet term: no second draw, so such runs keep their noise


def test_the_variational_code_passes_gradients_to_mean_and_log_variance(data16):
    model = StyleVAE(stage="variational", **SMALL)
    x, y, y_neg = _batch(data16)
    eps = tf.random.stateless_normal((8, model.config.style_dim), seed=(1, 2))
    variables = model.stage_variables()
    with tf.GradientTape() as tape:
        total = model.stage_losses(x, y, y_neg, eps)["total"]
    grads = dict(zip([v.path for v in variables], tape.gradient(total, variables)))
    for head in ("mu", "logvar"):
        g = [g for p, g in grads.items() if f"{head}/kernel" in p][0]
        assert g is not None and float(ops.max(ops.abs(g))) > 0, head


# --- data -----------------------------------------------------------------------------------------------
def test_content_style_pairs_are_seeded_and_negatives_come_from_another_painting(data16):
    c1, s1, n1 = data16.epoch_indices(3, 8, seed=5)
    c2, s2, n2 = data16.epoch_indices(3, 8, seed=5)
    assert all(np.array_equal(a, b) for a, b in ((c1, c2), (s1, s2), (n1, n2)))
    assert not np.array_equal(c1, data16.epoch_indices(4, 8, seed=5)[0])
    assert sorted(c1.ravel()) == sorted(set(c1.ravel()))  # an epoch visits each content image once
    groups = data16.style.groups
    assert len(set(groups)) == 8 and np.all(groups[s1] != groups[n1])
    x, y, y_neg = _batch(data16)
    assert x.shape == y.shape == y_neg.shape == (8, 16, 16, 3)
    with pytest.raises(DataError, match="32 px"):
        ContentStyleData(tiny_photos(8, 16), tiny_paintings(8, 32))


# --- stages ---------------------------------------------------------------------------------------------
def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="stage"):
        StyleVAEConfig(stage="adversarial")
    with pytest.raises(ConfigError, match="perceptual layer"):
        StyleVAEConfig(style_layers=("block5_conv1",))
    with pytest.raises(ConfigError, match="batch_size"):
        StyleVAEConfig(stage="style", batch_size=1)


@pytest.mark.parametrize(
    "stage, extra, trained",
    [
        ("autoencoder", {}, {"content_encoder", "mapping", "decoder"}),
        ("style", {}, {"style_encoder", "mapping"}),
        ("variational", {}, {"style_encoder", "mapping"}),
        ("style", {"finetune_decoder": True}, {"style_encoder", "mapping", "decoder"}),
    ],
)
def test_each_stage_trains_exactly_its_networks(stage, extra, trained, data16):
    model = StyleVAE(stage=stage, **SMALL, **extra)
    assert set(model.trainable_networks()) == trained
    before = {v.path: v.numpy().copy() for v in model.weights}
    model.fit(data16.dataset(8), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    changed = {v.path for v in model.weights if not np.array_equal(before[v.path], v.numpy())}
    for name, net in model.networks().items():
        moved = {v.path for v in net.weights} & changed
        if name in trained:
            assert moved, f"{stage}: {name} should train"
        else:
            assert not moved, f"{stage}: {name} must stay frozen, but {sorted(moved)[:3]} changed"
    logvar_moved = any("logvar" in p for p in changed)
    assert logvar_moved == (stage == "variational")  # the deterministic encoder ignores its σ head


def test_stage_one_lowers_the_reconstruction_loss_and_later_stages_start_from_it(data16, tmp_path):
    fixed = _batch(ContentStyleData(tiny_photos(8, 16, seed=9), data16.style))
    model = StyleVAE(stage="autoencoder", **SMALL, learning_rate=1e-3)
    before = float(model.stage_losses(*fixed)["total"])
    result = train(model, data16, 4, out=tmp_path, name="s1", progress=False)
    after = float(model.stage_losses(*fixed)["total"])
    assert after < 0.7 * before, (before, after)  # held-out images: the autoencoder generalises
    pixel = result.losses("pixel_loss")
    assert pixel[-4:].mean() < pixel[:4].mean()
    # handed the previous stage's model, or rebuilt by the registry from a config that names its run folder
    handed = StyleVAE(stage="style", start_from=result.model, **SMALL)
    assert handed.config.init_from == str(result.run_dir)
    rebuilt = build_model("style_vae", {"stage": "style", "init_from": str(result.run_dir), **SMALL})
    for stage2 in (handed, rebuilt):
        for name, net in stage2.networks().items():
            weights = zip(net.get_weights(), model.networks()[name].get_weights())
            assert all(np.array_equal(a, b) for a, b in weights), name
    # the record says which perceptual network 'perceptual_weights' resolved to; a resume where it would resolve
    # to another (e.g. 'auto' with ImageNet weights on this machine and not on that one) stops
    record_path = result.run_dir / "config.json"
    record = json.loads(record_path.read_text())
    assert record["perceptual_network"] == {"weights": "random", "preprocessing": "caffe"}
    record["perceptual_network"] = {"weights": "vgg16_torchvision.h5", "preprocessing": "torch"}
    record_path.write_text(json.dumps(record))
    with pytest.raises(
        ConfigError,
        match=r"perceptual weights vgg16_torchvision.h5 \(torch preprocessing\); here they resolve to random",
    ):
        resume_training(result.run_dir, data16, epochs=5, progress=False)
    # the constructor itself never reads a run folder; the trainer does, and names a bad one
    unread = StyleVAE(stage="style", init_from=str(tmp_path / "nowhere"), **SMALL)
    with pytest.raises(NSTError, match="not a run folder"):
        train(unread, data16, 1, out=tmp_path, progress=False)


def test_three_stages_make_a_style_code_that_matters_and_stylise_toward_the_style(tmp_path):
    content = tiny_photos(64, 16, seed=3)
    style = tiny_paintings(64, 16, seed=4)
    data = ContentStyleData(content, style)
    runs = train_style_vae(
        data, epochs=(3, 3, 2), out=tmp_path, name="t", progress=False, **{**SMALL, "learning_rate": 1e-3}
    )
    assert [r.status for r in runs.values()] == ["completed"] * 3
    assert [r.run_dir.name for r in runs.values()] == ["t_1_autoencoder", "t_2_style", "t_3_variational"]
    style_runs = runs["style"]
    assert style_runs.losses("style_loss")[-3:].mean() < style_runs.losses("style_loss")[:3].mean()
    vae = runs["variational"].model
    assert np.all(runs["variational"].losses("kl_loss") > 0)
    x = content.images[:4]
    mu, logvar = vae.style_codes(style.images[:4])
    assert mu.shape == logvar.shape == (4, vae.config.style_dim)
    a, b = vae.stylize(x, mu[0]), vae.stylize(x, mu[1])
    assert a.dtype == np.uint8 and a.shape == x.shape and not np.array_equal(a, b)  # z changes the output
    t, path = vae.interpolate(x[0], mu[0], mu[1], steps=5)
    assert path.shape == (5, 16, 16, 3) and np.array_equal(path[0], vae.stylize(x[:1], mu[0])[0])
    assert np.array_equal(vae.generate(3, seed=1, content=x), vae.generate(3, seed=1, content=x))
    # transfer pairs each content with its own style image's code (or one style for all), and moves each output's
    # colour statistics toward its style image more than the same content's reconstruction is
    styles = style.images[:4]
    moved = vae.transfer(x, styles)
    assert np.array_equal(moved, np.concatenate([vae.stylize(x[i : i + 1], mu[i]) for i in range(4)]))
    assert np.array_equal(vae.transfer(x, styles[:1]), vae.stylize(x, mu[0]))
    with pytest.raises(ConfigError, match="4 content images and 3 style images"):
        vae.transfer(x, styles[:3])

    def colour_distance(images):  # per-channel mean and std against each image's own style image
        stats = lambda a: np.concatenate([a.mean((1, 2)), a.std((1, 2))], -1)  # noqa: E731
        return np.abs(stats(images.astype(np.float32)) - stats(styles.astype(np.float32))).mean()

    assert colour_distance(moved) < colour_distance(vae.reconstruct(x))
    # re-running the pipeline reuses all three finished stages
    again = train_style_vae(
        data, epochs=(3, 3, 2), out=tmp_path, name="t", progress=False, **{**SMALL, "learning_rate": 1e-3}
    )
    assert [r.run_dir for r in again.values()] == [r.run_dir for r in runs.values()]
    assert np.array_equal(load_trained(runs["variational"].run_dir).stylize(x, mu[0]), a)


# --- interpolation evenness -----------------------------------------------------------------------------
def test_path_evenness_of_known_paths():
    even = np.linspace(0, 1, 6)[:, None] * np.array([[3.0, 4.0]])
    r = path_evenness(even)
    assert r["cv"] == pytest.approx(0, abs=1e-12) and r["max_share"] == pytest.approx(1 / 5)
    assert r["straightness"] == pytest.approx(1.0)
    np.testing.assert_allclose(r["from_start"], np.linspace(0, 1, 6))
    np.testing.assert_allclose(r["to_end"], np.linspace(1, 0, 6))
    jump = np.array([[0.0], [0.0], [0.0], [1.0], [1.0]])  # all the change in one step
    r = path_evenness(jump)
    assert r["max_share"] == pytest.approx(1.0) and r["cv"] > 1.5
    detour = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    assert path_evenness(detour)["straightness"] == pytest.approx(2 / (2 * math.sqrt(2)))


def test_interpolation_evenness_scores_every_content_and_pair_and_averages(monkeypatch):
    from types import SimpleNamespace

    from nst_lib.models import style_vae

    # a stand-in model whose stylisation along z_a → z_b is a grey level t^p (p from the pair): with the image's
    # mean as its descriptor, p = 1 is an even path and p = 3 a lopsided one, whose scores are known
    class Model:
        perceptual, config = "net", SimpleNamespace(style_layers=("a", "b"))

        def interpolate(self, content, z_a, z_b, steps):
            t = np.linspace(0, 1, steps)
            return t, np.stack([np.full((2, 2, 3), content + 100 * ti ** z_a[0]) for ti in t])

    def mean_level(images, net, layers):
        assert net == "net" and layers == ("a", "b")  # the model's own network and style layers
        return np.asarray(images, np.float64).mean(axis=(1, 2, 3))[:, None]

    monkeypatch.setattr(style_vae, "gram_descriptors", mean_level)
    pairs = [(np.array([1.0]), None), (np.array([3.0]), None)]
    result = style_vae.interpolation_evenness(Model(), [0.0, 10.0], pairs, steps=5)
    even, lopsided = path_evenness(np.linspace(0, 1, 5)[:, None]), path_evenness(np.linspace(0, 1, 5)[:, None] ** 3)
    assert result["paths"] == 4 and result["from_start"].shape == (4, 5)
    for key in ("cv", "max_share", "straightness"):
        assert result[key] == pytest.approx((even[key] + lopsided[key]) / 2), key
    np.testing.assert_allclose(result["from_start"][0], np.linspace(0, 1, 5))  # content 0, even pair
    np.testing.assert_allclose(result["from_start"][3], np.linspace(0, 1, 5) ** 3)  # content 10, lopsided pair


# --- deception survey -----------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    # k = 0: the interval is [0, z²/(n + z²)]
    z = 1.959963984540054
    assert wilson_interval(0, 10) == pytest.approx((0.0, z * z / (10 + z * z)))
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi) and (lo + hi) / 2 == pytest.approx(0.5)  # symmetric at p = ½
    # its defining property: the end points p are where the score test is at its limit, |p̂ − p| = z·√(p(1−p)/n)
    for k, n in ((81, 263), (2, 7), (12, 12)):
        for p in wilson_interval(k, n):
            if 0 < p < 1:
                assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-9)
    assert wilson_interval(3, 10, 0.99)[1] > wilson_interval(3, 10, 0.95)[1]


def test_the_survey_records_answers_blind_and_reports_the_rate(tmp_path):
    real = np.full((4, 8, 8, 3), 10, np.uint8)
    fake = np.full((6, 8, 8, 3), 200, np.uint8)
    survey = DeceptionSurvey.create(tmp_path / "survey", real, fake, seed=3)
    assert len(survey) == 10 and sorted(survey.truth) == ["generated"] * 6 + ["painting"] * 4
    assert survey.truth != ["painting"] * 4 + ["generated"] * 6  # shuffled
    # the items show no hint: same naming for both kinds; the key matches each image
    for i, truth in enumerate(survey.truth):
        assert (survey.image(i)[0, 0, 0] == 10) == (truth == "painting")
    # respondent A: says "painting" to every image; B: to the first two generated ones only
    for i in range(10):
        survey.answer("A", i, "painting")
    seen = 0
    for i, truth in enumerate(survey.truth):
        guess = "painting" if truth == "painting" or (truth == "generated" and seen < 2) else "generated"
        seen += truth == "generated"
        survey.answer("B", i, guess)
    with open(survey.answers_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and set(rows[0]) == {"time", "respondent", "item", "truth", "answer", "seconds"}
    report = deception_rate(survey.answers_file)
    assert report["n_generated"] == 12 and report["n_fooled"] == 8
    assert report["deception_rate"] == pytest.approx(8 / 12)
    assert (report["low"], report["high"]) == pytest.approx(wilson_interval(8, 12))
    assert report["real_recognised"] == 1.0 and report["respondents"] == 2
    # re-opening keeps items and answers; a respondent continues where they stopped
    again = DeceptionSurvey.create(tmp_path / "survey", fake, real, seed=99)
    assert again.truth == survey.truth and again.report() == report
    survey.answer("C", 0, "generated")
    assert again.remaining("C") == list(range(1, 10)) and again.remaining("A") == []
    with pytest.raises(NSTError, match="answer must be"):
        survey.answer("C", 1, "maybe")
    # floats in 0..1 (a generator's output) are images too, not black squares
    floats = DeceptionSurvey.create(tmp_path / "floats", np.full((1, 8, 8, 3), 0.5), np.full((1, 8, 8, 3), 1.0))
    assert sorted(int(floats.image(i)[0, 0, 0]) for i in range(2)) == [128, 255]
    # an item answered twice by one respondent (two panels of theirs) is one judgement, the last
    survey.answer("A", survey.truth.index("generated"), "generated")
    twice = deception_rate(survey.answers_file)
    c_judged = survey.truth[0] == "generated"  # C's one answer, "generated", fooled by nothing
    assert twice["n_generated"] == 12 + c_judged and twice["n_fooled"] == 7 and twice["respondents"] == 3
    # images of another size than the rest would give the real ones away
    with pytest.raises(NSTError, match="must share one size, got 8×8, 8×12"):
        DeceptionSurvey.create(tmp_path / "sizes", real, np.full((2, 8, 12, 3), 200, np.uint8))
    assert not (tmp_path / "sizes" / "key.json").exists()


def test_the_survey_widget_records_clicks(tmp_path):
    pytest.importorskip("ipywidgets")
    survey = DeceptionSurvey.create(tmp_path / "s", np.zeros((1, 8, 8, 3), np.uint8), np.ones((2, 8, 8, 3), np.uint8))
    panel = survey.widget("W", size=32)
    painting, generated = panel.children[1].children
    shown = []
    for button in (painting, generated, generated):
        shown.append(int(np.asarray(Image.open(io.BytesIO(panel.children[0].value)))[0, 0, 0]))
        button.click()
    with open(survey.answers_file, newline="") as f:
        rows = list(csv.DictReader(f))
    # each answer is recorded against the item that was shown (painting: black, generated: 1)
    assert [r["truth"] for r in rows] == ["painting" if v == 0 else "generated" for v in shown]
    assert [r["answer"] for r in rows] == ["painting", "generated", "generated"]
    report = survey.report()
    assert report["n_generated"] + report["n_real"] == 3 and painting.disabled
    assert "Deception rate" in panel.children[2].value
    # two people who give no name are two respondents: the second is not shown "Done"
    for _ in range(2):
        first, _ = survey.widget(size=32).children[1].children
        first.click()
    assert survey.report()["respondents"] == 3
