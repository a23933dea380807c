"""DCGAN and VAE-GAN: architecture, loss formulas, training behaviour, run folders, exact resume, Ast-GAN."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from nst_lib.errors import ConfigError
from nst_lib.images import from_unit, to_unit
from nst_lib.models import DCGAN, VAEGAN, LabelSmoothingSchedule, load_trained, train
from nst_lib.models.data import tiny_paintings
from nst_lib.models.dcgan import radford_parameter_counts
from nst_lib.models.losses import bce_logits, gaussian_feature_loss, kl_normal, reparameterize

from .conftest import CONTENT, ROOT


@pytest.fixture(scope="module")
def tiny32():
    return tiny_paintings(128, 32, seed=0)


# --- architecture ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 32])
def test_dcgan_matches_the_radford_architecture(size):
    model = DCGAN(image_size=size)
    assert model.count_params() == radford_parameter_counts(size)
    if size == 64:  # the PyTorch DCGAN reference's well-known totals
        assert model.count_params() == {"generator": 3_576_704, "discriminator": 2_765_568}
    assert model.generator.output_shape == (None, size, size, 3)
    assert model.discriminator.output_shape == (None, 1)
    layers = model.discriminator.layers
    first_conv = next(i for i, la in enumerate(layers) if isinstance(la, keras.layers.Conv2D))
    assert isinstance(layers[first_conv + 1], keras.layers.LeakyReLU)  # no BatchNorm on D's input layer
    slopes = {la.negative_slope for la in layers if isinstance(la, keras.layers.LeakyReLU)}
    assert slopes == {0.3}
    assert DCGAN(leaky_slope=0.2).config.leaky_slope == 0.2
    assert float(model.d_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(DCGAN(d_lr_ratio=0.1).d_optimizer.learning_rate) == pytest.approx(2e-5)
    kernels = np.concatenate([w.numpy().ravel() for w in model.generator.trainable_weights if "kernel" in w.path])
    assert kernels.std() == pytest.approx(0.02, rel=0.05) and abs(kernels.mean()) < 1e-3


def test_vaegan_shapes_follow_larsen_et_al():
    model = VAEGAN(image_size=64, latent_dim=128)
    mu, logvar = model.encoder.output
    assert mu.shape == (None, 128) and logvar.shape == (None, 128)
    assert model.decoder.output_shape == (None, 64, 64, 3)
    assert [tuple(t.shape) for t in model.discriminator.outputs] == [(None, 1), (None, 8, 8, 256)]


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="power of two"):
        DCGAN(image_size=48)
    with pytest.raises(ConfigError, match="unknown DCGANConfig field"):
        DCGAN(leaky=0.2)
    with pytest.raises(ConfigError, match="data is 32 px, the model 64 px"):
        train(DCGAN(), tiny_paintings(16, 32), 1)


# --- loss formulas -----------------------------------------------------------------------------------------
def test_bce_kl_feature_loss_against_numpy(rng):
    logits, target = rng.normal(size=(6, 1)) * 3, 0.85
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert float(bce_logits(target, logits)) == pytest.approx(expected, rel=1e-5)
    mu, logvar = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1 - logvar, axis=1).mean()
    assert float(kl_normal(mu, logvar)) == pytest.approx(kl, rel=1e-5)
    assert float(kl_normal(np.zeros((3, 4)), np.zeros((3, 4)))) == 0.0  # the prior itself
    a, b = rng.normal(size=(3, 2, 2, 4)), rng.normal(size=(3, 2, 2, 4))
    assert float(gaussian_feature_loss(a, b)) == pytest.approx(0.5 * np.sum((a - b) ** 2) / 3, rel=1e-5)


def test_reparameterisation_passes_gradients():
    import tensorflow as tf

    mu, logvar = tf.constant([[0.5, -1.0]]), tf.constant([[0.0, 1.0]])
    eps = tf.constant([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch([mu, logvar])
        total = tf.reduce_sum(reparameterize(mu, logvar, eps))
    g_mu, g_lv = tape.gradient(total, [mu, logvar])
    assert np.allclose(g_mu.numpy(), 1.0)
    assert np.allclose(g_lv.numpy(), 0.5 * np.exp(0.5 * np.array([0.0, 1.0])) * np.array([1.0, 2.0]))


# --- training behaviour -------------------------------------------------------------------------------------
def test_a_dcgan_step_moves_the_generators_batchnorm_averages_once():
    model = DCGAN(image_size=16, batch_size=8, seed=1)
    real = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype("float32")
    state = model.seed_generator.state.numpy().copy()
    z = keras.random.normal((8, model.config.latent_dim), seed=model.seed_generator)  # the noise the step draws
    model.seed_generator.state.assign(state)
    deconv, bn = model.generator.layers[1], model.generator.layers[2]
    batch_mean = keras.ops.convert_to_numpy(keras.ops.mean(deconv(model.generator.layers[0](z)), axis=(0, 1, 2)))
    model.train_step(real)
    # one update from 0: (1 - momentum) × the batch's mean (two runs of G in training mode gave 1 - momentum²)
    momentum = model.config.batchnorm_momentum
    assert np.allclose(bn.moving_mean.numpy(), (1 - momentum) * batch_mean, rtol=1e-4, atol=1e-7)


def test_one_train_step_lowers_the_discriminator_loss_on_a_fixed_batch(tiny32):
    model = DCGAN(image_size=32, batch_size=32, seed=3)
    real = to_unit(tiny32.images[:32])
    fake = model.generator(model.latents(32, seed=9), training=True)
    before = float(model.discriminator_loss_on(real, fake))
    model.train_step(real)
    after = float(model.discriminator_loss_on(real, fake))
    assert after < before


def test_label_smoothing_switches_half_way(tmp_path):
    schedule = DCGAN().training_callbacks(10)[0]
    assert [schedule.label_at(e) for e in (0, 4, 5, 9)] == [0.85, 0.85, 0.95, 0.95]
    assert DCGAN(real_label_late=None).training_callbacks(10)[0].label_at(9) == 0.85
    assert DCGAN(label_switch=0.8).training_callbacks(10)[0].switch_epoch == 8

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                seen.append(round(float(self.model.real_label.numpy()), 4))

    data = tiny_paintings(32, 16)
    train(DCGAN(image_size=16, batch_size=16), data, 4, out=tmp_path, callbacks=[Record()], progress=False)
    assert seen == [0.85, 0.85, 0.95, 0.95]
    assert isinstance(LabelSmoothingSchedule(0.85, 0.95, 1), keras.callbacks.Callback)


def _colour_histogram_distance(a: np.ndarray, b: np.ndarray, bins: int = 16) -> float:
    """Mean over R, G, B of the L1 distance between two uint8 image sets' colour histograms (0 … 2)."""

    def hist(x, c):
        h = np.bincount(x[..., c].ravel() // (256 // bins), minlength=bins)
        return h / h.sum()

    return float(np.mean([np.abs(hist(a, c) - hist(b, c)).sum() for c in range(3)]))


@pytest.mark.parametrize("kind, epochs", [("dcgan", 4), ("vaegan", 2)])
def test_a_few_epochs_bring_the_samples_colours_closer_to_the_data(kind, epochs, tmp_path):
    data = tiny_paintings(256, 32, seed=0)
    model = (DCGAN if kind == "dcgan" else VAEGAN)(image_size=32, batch_size=16, seed=1)
    before = _colour_histogram_distance(model.generate(64, seed=5), data.images)
    result = train(model, data, epochs, out=tmp_path, progress=False)
    after = _colour_histogram_distance(result.model.generate(64, seed=5), data.images)
    assert after < 0.7 * before, (before, after)


def test_generate_is_seeded_uint8_and_leaves_the_training_state_alone():
    model = DCGAN(image_size=16)
    state = model.get_state()
    a, b, c = model.generate(4, seed=1), model.generate(4, seed=1), model.generate(4, seed=2)
    assert a.dtype == np.uint8 and a.shape == (4, 16, 16, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(np.array_equal(v, model.get_state()[k]) for k, v in state.items())
    assert np.array_equal(from_unit(to_unit(a)), a)


# --- run folders and resume ---------------------------------------------------------------------------------
def test_training_writes_a_self_describing_run_folder(tmp_path):
    data = tiny_paintings(32, 16)
    result = train(DCGAN(image_size=16, batch_size=16), data, 2, out=tmp_path, name="t", samples=9, progress=False)
    run = result.run_dir
    record = json.loads((run / "config.json").read_text())
    assert record["model"] == "dcgan" and record["model_config"]["leaky_slope"] == 0.3
    assert record["data"]["kind"] == "tiny_paintings" and record["data"]["images"] == 32
    assert record["status"] == "completed" and record["epochs_done"] == 2 and record["timings"]["images_per_s"] > 0
    assert "tensorflow" in record["versions"] and record["seed"] == 0
    assert [r["step"] for r in result.steps] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(result.steps[0])
    assert [r["epoch"] for r in result.epochs] == [1, 2] and result.epochs[0]["images_per_s"] > 0
    assert [e for e, _ in result.samples()] == [1, 2] and (run / "output.png").is_file()
    assert result.samples()[0][1].shape == (3 * 18 + 2, 3 * 18 + 2, 3)  # 3×3 grid of 16 px with 2 px gaps
    again = train(DCGAN(image_size=16, batch_size=16), data, 1, out=tmp_path, name="t", progress=False)
    assert again.run_dir != run  # never overwritten
    reloaded = load_trained(run)
    assert np.array_equal(reloaded.generate(4, seed=0), result.model.generate(4, seed=0))


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, json, numpy as np, keras, tensorflow as tf
    # Eigen's multi-threaded matrix products round differently run to run; a single thread makes training
    # bit-reproducible, so any difference left would be the checkpoint's fault
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from nst_lib.models.data import ContentStyleData, tiny_paintings, tiny_photos
    from nst_lib.models import DCGAN, VAEGAN, VQGAN, CycleGAN, StyleVAE, train, resume_training
    out, kind = sys.argv[1], sys.argv[2]
    data = tiny_paintings(48, 16, seed=2)
    M = {"dcgan": DCGAN, "vaegan": VAEGAN}.get(kind)
    if kind == "style_vae":  # the variational stage: reparameterisation noise and the triplet's negatives too
        data = ContentStyleData(tiny_photos(48, 16, seed=2), data)
        M = lambda **kw: StyleVAE(stage="variational", filters=8, perceptual_weights=None, triplet_weight=1.0, **kw)
    if kind == "cyclegan":  # image pools and their draws, both optimisers, the learning-rate decay
        data = ContentStyleData(tiny_photos(48, 16, seed=2), data)
        M = lambda **kw: CycleGAN(filters=4, res_blocks=1, pool_size=6, **kw)
    if kind in ("vqgan", "vq_prior"):  # the discriminator switches on at step 4, inside the interrupted epoch
        M = lambda **kw: VQGAN(downsample=4, codes=16, embed_dim=8, filters=8, channel_mult=(1, 2),
                               perceptual_weight=0, disc_start=4, **kw)
    if kind == "stylegan":  # mixing draws, per-pixel noise, R1, the moving average w̄, three optimisers
        from nst_lib.models import StyleGAN
        M = lambda **kw: StyleGAN(latent_dim=16, w_dim=16, mapping_layers=2, max_filters=16, min_filters=8, **kw)
    if kind == "vq_prior":  # random 2×2 windows of the 4×4 code maps, drawn from the noise generator
        from nst_lib.models import VQPrior
        vq = train(M(image_size=16, batch_size=16), data, 1, out=out, progress=False).model
        M = lambda **kw: VQPrior(vqgan=vq, window=2, layers=1, heads=2, dim=16, **kw)
    class Stop(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if list(self.model.optimizers().values())[-1].iterations.numpy() == 5:
                raise KeyboardInterrupt  # Ctrl-C in epoch 2 of 3
    full = train(M(image_size=16, batch_size=16), data, 3, out=out, progress=False)
    cut = train(M(image_size=16, batch_size=16), data, 3, out=out, progress=False, callbacks=[Stop()])
    cut_record = json.loads((cut.run_dir / "config.json").read_text())
    resumed = resume_training(cut.run_dir, progress=False)
    a, b = full.model.get_state(), resumed.model.get_state()
    record = json.loads((resumed.run_dir / "config.json").read_text())
    print(json.dumps({
        "cut_status": cut.status, "cut_steps": len(cut.steps), "status": resumed.status,
        # 5 steps of 16 images ran before the Ctrl-C, 2 of them in the epoch it cut short
        "cut_images": round(cut.timings["images_per_s"] * cut.timings["train_s"] / 16, 1),
        "earlier_kept": record["earlier_timings"] == [{**cut_record["timings"],
                                                       "peak_memory_mb": cut_record["peak_memory_mb"]}],
        "same_state": all(np.array_equal(a[k], b[k]) for k in a),
        "same_losses": full.steps == resumed.steps, "steps": len(resumed.steps),
        "same_samples": bool(np.array_equal(full.samples()[-1][1], resumed.samples()[-1][1])),
    }))
    """
)


@pytest.mark.parametrize("kind", ["dcgan", "vaegan", "style_vae", "cyclegan", "vqgan", "vq_prior", "stylegan"])
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(kind, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(tmp_path), kind],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.pop("cut_images") == pytest.approx(5, abs=0.1)
    assert report == {
        "cut_status": "interrupted",
        "cut_steps": 3,
        "status": "completed",
        "earlier_kept": True,
        "same_state": True,
        "same_losses": True,
        "steps": 9,
        "same_samples": True,
    }


# --- Ast-GAN ---------------------------------------------------------------------------------------------------
def test_ast_gan_paints_the_content_with_the_generated_batch(tmp_path):
    from nst_lib.models.astgan import ast_gan, generated_styles

    model = DCGAN(image_size=16)
    styles = generated_styles(model, 3, seed=4)
    assert len(styles) == 3 and styles[0].shape == (16, 16, 3)
    result = ast_gan(model, CONTENT, n_styles=3, seed=4, out=tmp_path, weights=None, size=48, steps=15, progress=False)
    losses = result.losses("total")
    assert result.status == "completed" and losses[-1] < losses[0]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert len(record["inputs"]["styles"]) == 3 and record["config"]["gram_norm"] == "mean"
    with pytest.raises(ConfigError, match="n_styles must be ≥ 1, got 0"):
        ast_gan(model, CONTENT, n_styles=0, out=tmp_path / "none", weights=None)
    assert not (tmp_path / "none").exists()


def test_train_or_load_reuses_finished_runs_and_never_overwrites_a_different_one(tmp_path, monkeypatch):
    from nst_lib.models import train_or_load
    from nst_lib.models import training as training_mod

    data = tiny_paintings(32, 16)
    first = train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False)
    monkeypatch.setattr(training_mod, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False)
    assert again.run_dir == first.run_dir and again.steps == first.steps
    assert np.array_equal(again.model.generate(2, seed=0), first.model.generate(2, seed=0))
    monkeypatch.undo()
    other = train_or_load(DCGAN(image_size=16, batch_size=16, leaky_slope=0.2), data, 1, tmp_path, "g", progress=False)
    assert other.run_dir == tmp_path / "g-2" and (tmp_path / "g" / "checkpoint.npz").is_file()
    # the run trained beside is found again too: asked once more, neither is retrained
    monkeypatch.setattr(training_mod, "train", lambda *a, **k: pytest.fail("retrained the run beside"))
    beside = train_or_load(DCGAN(image_size=16, batch_size=16, leaky_slope=0.2), data, 1, tmp_path, "g", progress=False)
    assert beside.run_dir == tmp_path / "g-2" and beside.steps == other.steps
    assert train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False).run_dir == (
        tmp_path / "g"
    )
    monkeypatch.undo()
    # a finished run whose checkpoint no longer fits the networks (the code changed since): a warning and a new
    # run beside it, the old folder untouched
    ckpt = tmp_path / "g" / "checkpoint.npz"
    with np.load(ckpt) as z:
        state = {k: z[k] for k in z.files}
    state["model/0000"] = np.zeros((1, 1, 1, 1), np.float32)
    np.savez(ckpt, **state)
    before = ckpt.read_bytes()
    with pytest.warns(UserWarning, match="does not fit"):
        fresh = train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False)
    assert fresh.run_dir == tmp_path / "g-3" and fresh.status == "completed" and ckpt.read_bytes() == before


def test_train_or_load_resumes_an_unfinished_run_with_the_callbacks_and_devices_it_was_given(tmp_path, monkeypatch):
    import json

    from nst_lib.models import train_or_load
    from nst_lib.models import training as training_mod

    data = tiny_paintings(32, 16)
    first = train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False)
    record = json.loads((first.run_dir / "config.json").read_text())
    (first.run_dir / "config.json").write_text(json.dumps({**record, "status": "interrupted"}))
    seen = {}
    monkeypatch.setattr(training_mod, "resume_training", lambda path, data, **kw: seen.update(kw, path=path))
    callbacks, strategy = [object()], object()
    train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", False, callbacks=callbacks,
                  distribute=strategy, samples=4)  # fmt: skip
    assert seen == {"path": first.run_dir, "progress": False, "callbacks": callbacks, "distribute": strategy}


def test_a_training_run_another_process_holds_is_not_resumed(tmp_path):
    from nst_lib.errors import RunInUseError
    from nst_lib.models import resume_training, train_or_load

    from .conftest import held_elsewhere

    data = tiny_paintings(32, 16)
    first = train(DCGAN(image_size=16, batch_size=16), data, 1, out=tmp_path, name="g", timestamp=False, progress=False)
    record = json.loads((first.run_dir / "config.json").read_text())
    (first.run_dir / "config.json").write_text(json.dumps({**record, "status": "interrupted"}))  # as if still going
    before = (first.run_dir / "config.json").read_bytes()
    child = held_elsewhere(first.run_dir)
    try:
        with pytest.raises(RunInUseError, match=f"g: in use by process {child.pid}"):
            resume_training(first.run_dir, data, epochs=2, progress=False)
        with pytest.raises(RunInUseError):  # a notebook's cache too: no second run of it, and none beside it
            train_or_load(DCGAN(image_size=16, batch_size=16), data, 1, tmp_path, "g", progress=False)
        assert (first.run_dir / "config.json").read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["g"]
    finally:
        child.kill()
        child.wait()
    assert resume_training(first.run_dir, data, epochs=2, progress=False).status == "completed"


def test_a_run_on_a_folder_whose_images_changed_is_neither_resumed_nor_reused(tmp_path):
    from PIL import Image

    from nst_lib.models import resume_training, train_or_load
    from nst_lib.models.data import DataError, load_image_folder

    folder = tmp_path / "art"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    data = load_image_folder(folder, size=16, progress=False)
    first = train_or_load(DCGAN(image_size=16, batch_size=8), data, 1, tmp_path / "runs", "g", progress=False)
    assert json.loads((first.run_dir / "config.json").read_text())["data"]["pixels"] == data.fingerprint
    # one image edited in place: the same spec and count, other pixels
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / "03.png")
    changed = load_image_folder(folder, size=16, progress=False)
    assert changed.spec == data.spec and len(changed) == len(data) and changed.fingerprint != data.fingerprint
    with pytest.raises(DataError, match="trained on other images than these"):
        resume_training(first.run_dir, epochs=2, progress=False)  # the folder, read again from the record
    anew = train_or_load(DCGAN(image_size=16, batch_size=8), changed, 1, tmp_path / "runs", "g", progress=False)
    assert anew.run_dir == tmp_path / "runs" / "g-2"
    assert train_or_load(
        DCGAN(image_size=16, batch_size=8), data, 1, tmp_path / "runs", "g", progress=False
    ).run_dir == (first.run_dir)  # the run on the first images is still found for them


def test_a_run_on_a_cached_folder_resumes_from_its_cache_and_is_the_same_run_without_it(tmp_path, monkeypatch):
    import shutil

    from PIL import Image

    from nst_lib.models import data as data_mod
    from nst_lib.models import resume_training, train_or_load

    folder = tmp_path / "art"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    data = data_mod.load_image_folder(folder, size=16, cache_dir="cache", progress=False)
    first = train(DCGAN(image_size=16, batch_size=8), data, 1, out=tmp_path / "runs", name="g", timestamp=False,
                  progress=False)  # fmt: skip
    assert json.loads((first.run_dir / "config.json").read_text())["data"]["cache_dir"] == str(tmp_path / "cache")
    uncached = data_mod.load_image_folder(folder, size=16, progress=False)
    assert train_or_load(DCGAN(image_size=16, batch_size=8), uncached, 1, tmp_path / "runs", "g",
                         progress=False).run_dir == first.run_dir  # fmt: skip
    monkeypatch.setattr(data_mod, "_decode", lambda *a: pytest.fail("decoded again despite the recorded cache"))
    assert resume_training(first.run_dir, epochs=2, progress=False).status == "completed"
    # a cache folder that is not there (another machine's) is not made: the folder is decoded again
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "cache")
    record = json.loads((first.run_dir / "config.json").read_text())["data"]
    again = data_mod.from_spec({k: v for k, v in record.items() if k not in ("images", "skipped", "pixels")}, False)
    assert again.fingerprint == data.fingerprint and not (tmp_path / "cache").exists()


def test_a_run_on_a_folder_given_relatively_resumes_from_another_working_folder(tmp_path, monkeypatch):
    import shutil

    from PIL import Image

    from nst_lib.models import resume_training, train_or_load
    from nst_lib.models.data import load_image_folder

    (tmp_path / "art").mkdir()
    (tmp_path / "elsewhere").mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "art" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    data = load_image_folder("art", size=16, progress=False)
    first = train_or_load(DCGAN(image_size=16, batch_size=8), data, 1, tmp_path / "runs", "g", progress=False)
    path = first.run_dir / "config.json"
    assert json.loads(path.read_text())["data"]["path"] == str(tmp_path / "art")
    monkeypatch.chdir(tmp_path / "elsewhere")  # the record's folder is found from here too
    assert resume_training(first.run_dir, epochs=2, progress=False).status == "completed"
    # a record written before folders were recorded absolute ("art", as given) is still this data's run
    monkeypatch.chdir(tmp_path)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "data": {**record["data"], "path": "art"}}))
    found = train_or_load(DCGAN(image_size=16, batch_size=8), data, 2, tmp_path / "runs", "g", progress=False)
    assert found.run_dir == first.run_dir
    # the folder moved (another clone, another machine): the same pixels are the same data
    shutil.move(tmp_path / "art", tmp_path / "moved")
    moved = load_image_folder(tmp_path / "moved", size=16, progress=False)
    again = train_or_load(DCGAN(image_size=16, batch_size=8), moved, 2, tmp_path / "runs", "g", progress=False)
    assert again.run_dir == first.run_dir and again.status == "completed"


def test_instance_norm_layer_applies_gamma_and_beta_after_normalising(rng):
    from nst_lib.models.layers import InstanceNorm

    x = rng.normal(3.0, 5.0, (2, 8, 8, 4)).astype(np.float32)
    layer = InstanceNorm()
    layer.build(x.shape)
    layer.gamma.assign(np.full(4, 2.0, np.float32))
    layer.beta.assign(np.full(4, 1.0, np.float32))
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 2.0, rtol=1e-3)


def test_reflection_pad_mirrors_without_repeating_the_edge():
    from nst_lib.models.layers import ReflectionPad

    x = np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3, 1).repeat(3, axis=1)
    out = np.asarray(ReflectionPad(1)(x))
    assert out[0, 1, :, 0].tolist() == [2, 1, 2, 3, 2]


def test_perceptual_loss_averages_over_layers(rng):
    from nst_lib.models.losses import perceptual_loss

    a = {k: rng.normal(size=(2, 3, 3, 4)).astype("float32") for k in "xy"}
    b = {k: rng.normal(size=(2, 3, 3, 4)).astype("float32") for k in "xy"}
    want = np.mean([np.mean((a[k] - b[k]) ** 2) for k in "xy"])
    assert float(perceptual_loss(a, b, ["x", "y"])) == pytest.approx(want, rel=1e-5)


def test_dcgan_discriminator_loss_smooths_only_the_real_labels(rng):
    from nst_lib.models.losses import discriminator_loss

    real, fake = rng.normal(size=(8,)), rng.normal(size=(8,))
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    bce = lambda t, z: np.mean(t * sp(-z) + (1 - t) * sp(z))  # noqa: E731
    want = bce(0.85, real) + bce(0.0, fake)
    assert float(discriminator_loss(real, fake, real_label=0.85)) == pytest.approx(want, rel=1e-5)
