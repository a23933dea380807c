"""VQGAN (seed 000 §2.2): quantisation and its gradients, L_VQ terms, code statistics, the adaptive weight,
the causal prior and sliding-window sampling, training; guided generation with text/image/Gram prompts."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from nst_lib.errors import ConfigError, NSTError, RunInUseError
from nst_lib.models import VQGAN, VQPrior, train
from nst_lib.models import losses as L
from nst_lib.models.data import tiny_paintings
from nst_lib.models.layers import VectorQuantizer, quantize, straight_through

TINY = dict(
    image_size=16,
    downsample=4,
    codes=16,
    embed_dim=8,
    filters=8,
    channel_mult=(1, 2),
    perceptual_weight=0,
    batch_size=8,
)


def test_quantize_picks_the_nearest_code(rng):
    z = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    codebook = rng.normal(size=(10, 4)).astype("float32")
    z_q, idx = quantize(z, codebook)
    brute = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    assert np.array_equal(np.asarray(idx), brute)
    assert np.allclose(np.asarray(z_q), codebook[brute])


def test_straight_through_gradient_reaches_the_encoder():
    z = tf.constant(np.linspace(-1, 1, 8, dtype="float32").reshape(1, 2, 2, 2))
    w = tf.constant(np.arange(8, dtype="float32").reshape(1, 2, 2, 2))
    codebook = np.array([[0.0, 0.0], [1.0, 1.0]], "float32")
    with tf.GradientTape() as tape:
        tape.watch(z)
        z_q, _ = quantize(z, codebook)
        out = straight_through(z, z_q)
        loss = tf.reduce_sum(w * out)
    assert np.allclose(out.numpy(), z_q.numpy())  # forward: the codes
    assert np.allclose(tape.gradient(loss, z).numpy(), w.numpy())  # backward: the identity
    # through the whole model: a decoder-side loss moves the encoder's weights
    model = VQGAN(**TINY)
    x = tf.random.uniform((2, 16, 16, 3), -1, 1, seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(model(x) - x))
    grads = tape.gradient(loss, model.encoder.trainable_variables)
    assert all(g is not None for g in grads) and sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_the_perceptual_term_reaches_reconstructed_pixels_beyond_the_image_range(monkeypatch):
    model = VQGAN(**{**TINY, "perceptual_weight": 1.0}, perceptual_weights=None)
    x = tf.random.uniform((1, 16, 16, 3), -1, 1, seed=2)
    x_rec = tf.Variable(tf.fill((1, 16, 16, 3), 1.5))  # the decoder has no tanh: it can overshoot
    monkeypatch.setattr(model, "decoder", lambda z: x_rec * 1.0)
    with tf.GradientTape() as tape:
        perceptual = model.autoencoder_losses(x)["perceptual_loss"]
    grad = tape.gradient(perceptual, x_rec)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0  # clipped to 1, it had none


def test_codebook_and_commitment_losses_match_their_formulas_and_stop_gradients(rng):
    z_e = tf.constant(rng.normal(size=(2, 2, 2, 3)).astype("float32"))
    z_q = tf.constant(rng.normal(size=(2, 2, 2, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z_e, z_q])
        codebook, commitment = L.vq_losses(z_e, z_q, beta=0.25)
    sq = np.mean((z_e.numpy() - z_q.numpy()) ** 2)
    assert float(codebook) == pytest.approx(sq, rel=1e-5) and float(commitment) == pytest.approx(0.25 * sq, rel=1e-5)
    assert tape.gradient(codebook, z_e) is None and tape.gradient(commitment, z_q) is None  # sg[·]
    assert tape.gradient(codebook, z_q) is not None and tape.gradient(commitment, z_e) is not None
    layer = VectorQuantizer(4, 3)
    layer.build((None, 3))
    assert np.abs(np.asarray(layer.codebook)).max() <= 0.25  # U(−1/K, 1/K)


def test_perplexity_and_usage_of_known_assignments():
    uniform4 = np.array([0, 1, 2, 3] * 4).reshape(1, 4, 4)
    p, u = L.code_usage(uniform4, 8)
    assert float(p) == pytest.approx(4.0, rel=1e-4) and float(u) == 0.5
    p, u = L.code_usage(np.zeros((2, 4, 4), int), 8)
    assert float(p) == pytest.approx(1.0, rel=1e-4) and float(u) == 0.125
    skew = np.array([0] * 12 + [1] * 4)  # p = (¾, ¼)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert float(L.code_usage(skew, 2)[0]) == pytest.approx(expected, rel=1e-4)


def test_adaptive_weight_is_the_gradient_norm_ratio_clipped():
    rec, gan = np.array([3.0, 4.0]), np.array([0.0, 0.5])  # norms 5 and 0.5
    assert float(L.adaptive_weight(rec, gan, delta=0.0)) == pytest.approx(10.0)
    assert float(L.adaptive_weight(rec, gan, delta=0.5)) == pytest.approx(5.0)
    assert float(L.adaptive_weight(rec, np.zeros(2), delta=1e-4, max_weight=1e4)) == pytest.approx(1e4)


def test_hinge_and_next_token_losses_match_their_formulas(rng):
    real, fake = rng.normal(size=(8,)), rng.normal(size=(8,))
    assert float(L.hinge_discriminator_loss(real, fake)) == pytest.approx(
        0.5 * (np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean()), rel=1e-5
    )
    assert float(L.hinge_generator_loss(fake)) == pytest.approx(-fake.mean(), rel=1e-5)
    logits, targets = rng.normal(size=(2, 5, 7)), rng.integers(0, 7, (2, 5))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, targets[..., None], -1).mean()
    assert float(L.next_token_loss(logits, targets)) == pytest.approx(expected, rel=1e-5)


def test_causal_masking_a_later_token_never_changes_an_earlier_logit(rng):
    from nst_lib.models.vqgan import VQPriorConfig, build_transformer

    net = build_transformer(10, 12, VQPriorConfig(vqgan_run="unused", layers=2, heads=2, dim=16))
    tokens = rng.integers(0, 11, (1, 12)).astype("int32")
    base = np.asarray(net(tokens))
    for t in (0, 5, 11):
        changed = tokens.copy()
        changed[0, t] = (changed[0, t] + 1) % 11
        out = np.asarray(net(changed))
        assert np.allclose(out[0, :t], base[0, :t], atol=1e-6)  # earlier positions: unchanged
        assert not np.allclose(out[0, t], base[0, t])  # its own position sees it


def test_a_model_interrupted_mid_epoch_is_not_passed_off_as_its_folders(tmp_path):
    """Its weights are no checkpoint's: a prior built on it would record the folder and, resumed, load others."""
    import keras

    class Stop(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    cut = train(VQGAN(**TINY), tiny_paintings(48, 16, seed=2), 1, out=tmp_path, progress=False, callbacks=[Stop()])
    assert cut.status == "interrupted" and not cut.model.source_run
    with pytest.raises(ConfigError, match="interrupted training's model"):
        VQPrior(vqgan=cut.model, window=2, layers=1, heads=2, dim=16)


@pytest.fixture(scope="module")
def trained_vqgan(tmp_path_factory):
    out = tmp_path_factory.mktemp("vq")
    data = tiny_paintings(64, 16, seed=3)
    return train(VQGAN(**TINY, disc_start=20, learning_rate=1e-3), data, 4, out=out, progress=False), data, out


def test_the_cutouts_noise_draws_are_their_own_not_another_seeds_cutouts(monkeypatch):
    from nst_lib.models.guidance import make_cutouts

    used = {}  # stateless seed → (run seed, iteration, what) of the draws that used it
    for name in ("stateless_uniform", "stateless_normal"):
        real = getattr(tf.random, name)

        def spy(shape, seed, *args, real=real, name=name, **kw):
            used.setdefault(tuple(np.asarray(seed).tolist()), set()).add((current, name))
            return real(shape, seed, *args, **kw)

        monkeypatch.setattr(tf.random, name, spy)
    image = tf.random.uniform((1, 16, 16, 3), seed=0)
    for s in range(4):
        for k in range(4):
            current = (s, k)
            make_cutouts(image, 2, 8, np.array([s, k]))
    assert len(used) == 3 * 16  # three streams a call, none shared with another call's (seed + 1 was)
    assert all(len(calls) == 1 for calls in used.values())


@pytest.mark.slow
def test_training_lowers_reconstruction_loss_and_switches_the_discriminator_on(trained_vqgan):
    result, data, _ = trained_vqgan
    l1 = result.losses("l1_loss")
    assert len(l1) == 32 and l1[-4:].mean() < 0.75 * l1[:4].mean()  # ≈ 0.69 → 0.41 here
    lam = result.losses("adaptive_weight")
    assert np.all(lam[:20] == 0) and np.all(lam[20:] > 0)  # the GAN term starts at disc_start
    assert np.all(result.losses("d_loss")[:20] == 0) and np.all(result.losses("d_loss")[20:] > 0)
    perplexity = result.losses("perplexity")
    assert np.all((perplexity >= 1) & (perplexity <= 16))
    rec = result.model.reconstruct(data.images[:3])
    assert rec.shape == (3, 16, 16, 3) and rec.dtype == np.uint8
    assert result.model.indices(data.images[:3]).shape == (3, 4, 4)


@pytest.mark.slow
def test_prior_learns_and_samples_with_a_sliding_window(trained_vqgan):
    result, data, out = trained_vqgan
    prior_result = train(
        VQPrior(vqgan=result.model, window=2, layers=1, heads=2, dim=16, batch_size=8), data, 6, out=out, progress=False
    )
    nll = prior_result.losses("nll")
    assert nll[-6:].mean() < nll[:3].mean()  # starts near log 16 = 2.77 nats
    prior = prior_result.model
    idx = prior.sample_indices(3, grid=(5, 7), seed=2)
    assert idx.shape == (3, 5, 7) and idx.min() >= 0 and idx.max() < 16
    assert np.array_equal(idx, prior.sample_indices(3, grid=(5, 7), seed=2))  # seeded
    assert prior.generate(2, grid=(3, 3), seed=0).shape == (2, 12, 12, 3)  # 3×3 codes × factor 4
    with pytest.raises(ConfigError):
        prior.sample_indices(1, grid=(1, 4))


# --- guided generation ---------------------------------------------------------------------------------------
def test_spherical_distance_is_half_the_squared_angle():
    for theta in (0.0, 0.3, 1.2, math.pi):
        a, b = np.array([1.0, 0.0]), np.array([math.cos(theta), math.sin(theta)])
        assert float(L.spherical_distance(a, b)) == pytest.approx(theta**2 / 2, abs=1e-3)
    assert float(L.spherical_distance(np.array([2.0, 0.0]), np.array([5.0, 0.0]))) == pytest.approx(0.0, abs=1e-5)


def test_cutouts_are_seeded_sized_and_differentiable():
    from nst_lib.models.guidance import make_cutouts

    image = tf.Variable(tf.random.uniform((1, 40, 48, 3), seed=0))
    with tf.GradientTape() as tape:
        cuts = make_cutouts(image, 6, 16, np.array([0, 1]))
        loss = tf.reduce_sum(cuts)
    assert cuts.shape == (6, 16, 16, 3) and float(tf.reduce_min(cuts)) >= 0 and float(tf.reduce_max(cuts)) <= 1
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, image)))) > 0
    assert np.array_equal(make_cutouts(image, 6, 16, np.array([0, 1])), make_cutouts(image, 6, 16, np.array([0, 1])))
    assert not np.array_equal(
        make_cutouts(image, 6, 16, np.array([0, 1])), make_cutouts(image, 6, 16, np.array([0, 2]))
    )


@pytest.mark.slow
def test_gram_prompt_guidance_lowers_its_loss_and_snapshots(trained_vqgan, tmp_path):
    from nst_lib.models import load_trained
    from nst_lib.models.guidance import GramPrompt, guide

    vq = load_trained(trained_vqgan[0].run_dir)
    style = tiny_paintings(4, 32, seed=5).images[0]
    content = tiny_paintings(4, 32, seed=6).images[1]
    r = guide(
        vq,
        content,
        GramPrompt(style, weights=None),
        iterations=12,
        snapshots=(0, 6, 12),
        size=32,
        learning_rate=0.2,
        out=tmp_path,
        progress=False,
    )
    total = r.loss("total")
    assert len(total) == 12 and total[-3:].mean() < total[:3].mean()
    assert sorted(r.snapshots) == [0, 6, 12] and r.image.shape == (32, 32, 3)
    assert (r.run_dir / "output.png").is_file() and (r.run_dir / "checkpoint.npz").is_file()


@pytest.mark.slow
def test_an_interrupted_guidance_run_resumes_to_the_same_image(trained_vqgan, tmp_path, monkeypatch):
    from nst_lib import guidance as G
    from nst_lib.models import load_trained

    vq = load_trained(trained_vqgan[0].run_dir)
    style, content = tiny_paintings(4, 32, seed=5).images[0], tiny_paintings(4, 32, seed=6).images[1]
    prompt = G.GramPrompt(style, weights=None)
    kw = dict(iterations=6, snapshots=(0, 6), size=32, checkpoint_every=2, progress=False)
    full = G.guide(vq, content, prompt, out=tmp_path / "a", **kw)
    real_checkpoint, calls = G._checkpoint, []

    def interrupt_after_first(path, z, iteration, optimizer):
        real_checkpoint(path, z, iteration, optimizer)
        calls.append(iteration)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C right after the checkpoint at iteration 2

    monkeypatch.setattr(G, "_checkpoint", interrupt_after_first)
    cut = G.guide(vq, content, prompt, out=tmp_path / "b", **kw)
    monkeypatch.setattr(G, "_checkpoint", real_checkpoint)
    assert cut.status == "interrupted" and len(cut.losses) == 2
    # it goes on only with what it started with
    with pytest.raises(NSTError, match="other prompts"):
        G.guide(vq, content, G.GramPrompt(style, weights=None, weight=2.0), resume=cut.run_dir, **kw)
    with pytest.raises(NSTError, match="another content image"):
        G.guide(vq, style, prompt, resume=cut.run_dir, **kw)
    other = tiny_paintings(4, 32, seed=5).images[2]  # the same prompt settings towards another painting
    with pytest.raises(NSTError, match="towards another image"):
        G.guide(vq, content, G.GramPrompt(other, weights=None), resume=cut.run_dir, **kw)
    with pytest.raises(NSTError, match=r"another config \(checkpoint_every: 2 → 3\)"):
        G.guide(vq, content, prompt, resume=cut.run_dir, **{**kw, "checkpoint_every": 3})
    # a run another process holds is left to it, its record untouched
    from .conftest import held_elsewhere

    before = (cut.run_dir / "config.json").read_bytes()
    child = held_elsewhere(cut.run_dir)
    try:
        with pytest.raises(RunInUseError, match=f"in use by process {child.pid}"):
            G.guide(vq, content, prompt, resume=cut.run_dir, progress=False)
    finally:
        child.kill()
        child.wait()
    assert (cut.run_dir / "config.json").read_bytes() == before
    # the run's own config: a resume needs no overrides repeated
    cut_peak = json.loads((cut.run_dir / "config.json").read_text())["peak_memory_mb"]
    resumed = G.guide(vq, content, prompt, resume=cut.run_dir, progress=False)
    assert resumed.status == "completed" and [r["total"] for r in resumed.losses] == [r["total"] for r in full.losses]
    assert np.array_equal(resumed.image, full.image)
    record = json.loads((cut.run_dir / "config.json").read_text())  # the first session keeps its timings
    assert record["earlier_timings"] == [{**cut.timings, "peak_memory_mb": cut_peak}]
    # a run stopped before its first checkpoint starts again in its folder and ends as the uninterrupted one
    (cut.run_dir / "checkpoint.npz").unlink()
    again = G.guide(vq, content, prompt, resume=cut.run_dir, **kw)
    assert [r["total"] for r in again.losses] == [r["total"] for r in full.losses]
    with pytest.warns(UserWarning, match=r"no snapshot at \[7, 9\]: past iterations=6"):
        late = G.guide(vq, content, prompt, out=tmp_path / "d", **{**kw, "snapshots": (0, 7, 6, 9)})
    assert sorted(late.snapshots) == [0, 6]
    with pytest.raises(ConfigError, match="checkpoint_every and size must be ≥ 1"):
        G.guide(vq, content, prompt, out=tmp_path / "c", **{**kw, "checkpoint_every": 0})
    assert not (tmp_path / "c").exists()


def test_a_guidance_config_refuses_what_would_fail_or_mislead_later():
    from nst_lib.guidance import GuidanceConfig

    bad = [
        ("learning_rate", float("nan"), "must be a finite number"),
        ("iterations", 2.5, "must be a whole number"),
        ("cut_power", -3.0, "cut_power must be > 0"),
        ("init_weight", -1.0, "init_weight ≥ 0"),
        ("seed", -5, "seed must be in"),
        ("snapshots", (0, 1.5), "must be a whole number"),
    ]
    for name, value, message in bad:
        with pytest.raises(ConfigError, match=message):
            GuidanceConfig(**{name: value})
    assert GuidanceConfig(seed=7, cut_power=0.5).seed == 7


def test_text_and_image_prompts_run_through_a_tiny_random_clip(trained_vqgan, tmp_path):
    pytest.importorskip("keras_hub", reason="keras-hub (the 'clip' extra) is not installed")
    from nst_lib.models import load_trained
    from nst_lib.models.guidance import ImagePrompt, TextPrompt, guide, tiny_clip

    clip = tiny_clip()
    ids = clip.token_ids(["Apply Van Gogh style of The Starry Night"])
    assert ids[0, 0] == clip.tokenizer.start_token_id and clip.tokenizer.end_token_id in ids[0]
    assert not clip.pretrained
    e = clip.encode_text(["a", "b"])
    assert np.allclose(np.linalg.norm(np.asarray(e), axis=1), 1.0, atol=1e-5)
    vq = load_trained(trained_vqgan[0].run_dir)
    painting = tiny_paintings(2, 32, seed=5).images[0]
    r = guide(
        vq,
        painting,
        [TextPrompt("Apply Van Gogh style of The Starry Night", clip), ImagePrompt(painting, clip)],
        iterations=4,
        snapshots=(0, 4),
        size=32,
        cutouts=4,
        out=tmp_path,
        progress=False,
    )
    assert r.status == "completed" and set(r.losses[0]) == {"step", "total", "prompt_0", "prompt_1"}
    import json

    record = json.loads((r.run_dir / "config.json").read_text())
    assert record["prompts"][0]["pretrained"] is False and record["vqgan_run"] == str(trained_vqgan[0].run_dir)


def test_dead_codes_are_restarted_onto_encoder_outputs(rng):
    import keras

    layer = VectorQuantizer(4, 2)
    layer.build((None, 2))
    layer.codebook.assign(np.array([[0, 0], [100, 100], [200, 200], [300, 300]], "float32"))
    z_e = rng.normal(size=(1, 4, 4, 2)).astype("float32")  # all near code 0: codes 1–3 are never used
    _, idx, _ = layer(z_e)
    assert np.all(np.asarray(idx) == 0)
    n = layer.restart_dead_codes(z_e, idx, keras.random.SeedGenerator(0), threshold=1.0, decay=0.5)
    book = np.asarray(layer.codebook)
    assert float(n) == 3 and np.array_equal(book[0], [0, 0])  # the used code stays
    flat = z_e.reshape(-1, 2)
    assert all(any(np.allclose(book[k], v) for v in flat) for k in (1, 2, 3))  # the others sit on encodings now
    assert np.allclose(np.asarray(layer.usage)[1:], 2.0)  # twice the threshold: time to be chosen
    # a batch in which the moved codes are not chosen does not move them again (reset to 1, it did)
    _, idx, _ = layer(z_e)
    n = layer.restart_dead_codes(z_e, np.zeros_like(idx), keras.random.SeedGenerator(1), threshold=1.0, decay=0.5)
    assert float(n) == 0 and np.array_equal(np.asarray(layer.codebook), book)


def test_load_clip_without_keras_hub_warns_and_falls_back(monkeypatch):
    import sys

    import tensorflow as tf

    from nst_lib.errors import NSTError
    from nst_lib.models.guidance import load_clip

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` raises ImportError
    with pytest.raises(NSTError, match=r"pip install 'nst-workbench\[clip\]'"):
        load_clip(allow_random=False)
    with pytest.warns(UserWarning, match=r"keras-hub is not installed.*untrained stand-in CLIP"):
        clip = load_clip()
    assert not clip.pretrained
    text = np.asarray(clip.encode_text(["a starry night", "a starry night", "tübingen"]))
    assert text.shape == (3, 32) and np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert np.allclose(text[0], text[1]) and not np.allclose(text[0], text[2])
    images = tf.Variable(np.random.default_rng(0).uniform(0, 1, (2, 48, 40, 3)).astype("float32"))
    with tf.GradientTape() as tape:  # guidance needs gradients to reach the image
        e = clip.encode_image(images)
        loss = tf.reduce_sum(e * text[:1])
    grad = tape.gradient(loss, images)
    assert e.shape == (2, 32) and grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


def test_code_usage_is_an_exponential_moving_average_with_decay_on_the_old_value(rng):
    import keras

    from nst_lib.models.layers import VectorQuantizer

    layer = VectorQuantizer(2, 2)
    layer.build((None, 2))
    layer.codebook.assign(np.array([[0, 0], [100, 100]], "float32"))
    z_e = rng.normal(size=(1, 2, 5, 2)).astype("float32")  # 10 positions, all code 0
    _, idx, _ = layer(z_e)
    layer.restart_dead_codes(z_e, idx, keras.random.SeedGenerator(0), threshold=0.5, decay=0.9)
    # code 0: 0.9·1 + 0.1·10 = 1.9; code 1: 0.9·1 + 0 = 0.9, above the threshold: not restarted
    np.testing.assert_allclose(np.asarray(layer.usage), [1.9, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(layer.codebook)[1], [100, 100])
