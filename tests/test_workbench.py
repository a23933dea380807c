"""Figure grids, sweeps and the widget panel (driven without a browser), with random weights at tiny sizes."""

import csv
import json
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_lib import StyleConfig, backend
from nst_lib.errors import ConfigError, NSTError
from nst_lib.images import DecodedImage, load_image, source_name
from nst_lib.optim import Callback
from nst_lib.workbench.sweeps import sweep
from nst_lib.workbench.viz import image_grid, loss_curves, save_figure, snapshot_strip

from .conftest import CONTENT, DATA, STYLE

TINY = StyleConfig(weights=None, size=48, steps=3, snapshot_every=0)


def test_image_grid_labels_and_export(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    fig = image_grid([[img, img, None], [img, None, img]], ["r0", "r1"], ["a", "b", "c"], title="T", footnote="note")
    axes = fig.axes
    assert [ax.get_title() for ax in axes[:3]] == ["a", "b", "c"]
    assert [axes[0].get_ylabel(), axes[3].get_ylabel()] == ["r0", "r1"]
    assert fig._suptitle.get_text() == "T"
    paths = save_figure(fig, tmp_path / "grid", dpi=50)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    dotted = save_figure(fig, tmp_path / "beta_0.5", dpi=20, formats=("png",))
    assert [p.name for p in dotted] == ["beta_0.5.png"]  # not beta_0.png, which beta_0.7 would overwrite
    assert [p.name for p in save_figure(fig, tmp_path / "named.png", dpi=20, formats=("png",))] == ["named.png"]
    with pytest.raises(ValueError):
        image_grid([[img]], ["r0", "r1"])


def test_loss_curves_and_snapshot_strip():
    history = [{"content": 1.0 / (i + 1), "style": 2.0 / (i + 1)} for i in range(5)]
    fig = loss_curves({"a": history, "b": history})
    assert len(fig.axes[0].lines) == 4
    strip = snapshot_strip([(10, np.zeros((4, 4, 3), np.uint8)), (20, np.ones((4, 4, 3), np.uint8))])
    assert [ax.get_title() for ax in strip.axes] == ["step 10", "step 20"]


def test_sweep_runs_cells_labels_match_and_resume_skips(tmp_path):
    styles = {"starry": STYLE, "mandala": DATA / "style" / "mandala.png"}
    vary = {"style_weight": [1e-3, 1e-2]}
    result = sweep({"tubingen": CONTENT}, styles, TINY, vary, out=tmp_path, progress=False)
    assert len(result) == 4 and all(c.status == "completed" for c in result)
    assert (tmp_path / "sweep.csv").is_file()
    for cell in result:
        record = json.loads((cell.run_dir / "config.json").read_text())
        assert record["config"]["style_weight"] == cell.overrides["style_weight"]
        assert record["inputs"]["styles"] == [str(styles[cell.style])]
    images, rows, cols = result.grid("style", "style_weight")
    assert rows == ["starry", "mandala"] and cols == ["style_weight=0.001", "style_weight=0.01"]
    by_dir = {str(c.run_dir): c.image for c in result}
    # the grid puts each cell's own output where its labels say
    mandala_hi = next(c for c in result if c.style == "mandala" and c.overrides["style_weight"] == 1e-2)
    np.testing.assert_array_equal(images[1][1], by_dir[str(mandala_hi.run_dir)])
    again = sweep({"tubingen": CONTENT}, styles, TINY, vary, out=tmp_path, progress=False)
    assert all(c.status == "skipped (done)" for c in again)
    assert [c.final["total"] for c in again] == pytest.approx([c.final["total"] for c in result])
    # asked again for the 16-bit TIFF it did not write: each cell writes it, no step runs, the PNG unchanged
    tiff = sweep({"tubingen": CONTENT}, styles, TINY.replace(tiff16=True), vary, out=tmp_path, progress=False)
    assert all(c.status == "resumed, completed" and len(c.history) == 3 for c in tiff)
    assert all((c.run_dir / "output.tif").is_file() for c in tiff)
    np.testing.assert_array_equal(tiff.grid("style", "style_weight")[0][1][1], images[1][1])
    # a finished cell without its checkpoint (deleted) is kept as it is, not run again
    (tiff[0].run_dir / "output.tif").unlink()
    (tiff[0].run_dir / "checkpoint.npz").unlink()
    with pytest.warns(UserWarning, match="no checkpoint to write output.tif from"):
        kept = sweep({"tubingen": CONTENT}, styles, TINY.replace(tiff16=True), vary, out=tmp_path, progress=False)
    assert kept[0].status == "skipped (done)" and kept[0].run_dir == tiff[0].run_dir


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    calls = {"n": 0}

    def ctrl_c_in_second_cell(info):
        calls["n"] += 1
        if calls["n"] == 5:  # cell 1 has 3 steps; this is step 2 of cell 2
            raise KeyboardInterrupt

    vary = {"seed": [0, 1, 2]}
    first = sweep(
        CONTENT,
        STYLE,
        TINY.replace(init="noise"),
        vary,
        out=tmp_path,
        progress=False,
        callbacks=[ctrl_c_in_second_cell],
    )
    assert [c.status for c in first] == ["completed", "interrupted", "pending"]
    second = sweep(CONTENT, STYLE, TINY.replace(init="noise"), vary, out=tmp_path, progress=False)
    assert [c.status for c in second] == ["skipped (done)", "resumed, completed", "completed"]
    assert all(len(c.history) == 3 for c in second)


def test_a_cell_folder_from_other_settings_is_kept_aside_not_reused(tmp_path):
    first = sweep(CONTENT, STYLE, TINY.replace(steps=1), {"style_weight": [1e-3]}, out=tmp_path, progress=False)
    with pytest.warns(UserWarning, match=r"init: 'content' → 'noise'.*other-settings"):
        second = sweep(
            CONTENT, STYLE, TINY.replace(steps=1, init="noise"), {"style_weight": [1e-3]}, out=tmp_path, progress=False
        )
    assert [c.status for c in second] == ["completed"] and second[0].run_dir == first[0].run_dir
    assert json.loads((second[0].run_dir / "config.json").read_text())["config"]["init"] == "noise"
    (aside,) = tmp_path.glob("*.other-settings")
    assert json.loads((aside / "config.json").read_text())["config"]["init"] == "content"  # nothing lost


def test_a_cell_whose_input_file_changed_is_run_again(tmp_path):
    tiny = TINY.replace(steps=1)
    sweep({"photo": CONTENT}, {"s": STYLE}, tiny, out=tmp_path, progress=False)
    other = DATA / "content" / "skimage_chelsea.png"
    with pytest.warns(UserWarning, match=r"content: .*tubingen_neckarfront.jpg → .*skimage_chelsea.png"):
        again = sweep({"photo": other}, {"s": STYLE}, tiny, out=tmp_path, progress=False)
    assert [c.status for c in again] == ["completed"]
    assert json.loads((again[0].run_dir / "config.json").read_text())["inputs"]["content"] == str(other)


def test_a_cell_whose_input_file_was_overwritten_is_run_again_and_a_moved_one_is_not(tmp_path):
    tiny = TINY.replace(steps=1)
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    shutil.copy(DATA / "content" / "skimage_chelsea.png", photo)
    sweep({"photo": photo}, {"s": STYLE}, tiny, out=tmp_path / "sweep", progress=False)
    moved = tmp_path / "elsewhere" / "photo.png"  # the same pixels in another folder: the same cell
    moved.parent.mkdir()
    shutil.copy(photo, moved)
    same = sweep({"photo": moved}, {"s": STYLE}, tiny, out=tmp_path / "sweep", progress=False)
    assert [c.status for c in same] == ["skipped (done)"]
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)  # same name, other pixels
    with pytest.warns(UserWarning, match=r"content: .*photo.png \(other pixels\).*other-settings"):
        again = sweep({"photo": photo}, {"s": STYLE}, tiny, out=tmp_path / "sweep", progress=False)
    assert [c.status for c in again] == ["completed"]
    assert len(list((tmp_path / "sweep").glob("*.other-settings"))) == 1  # the first run kept, not overwritten


def test_a_sweep_asked_again_decodes_each_input_once_not_once_a_cell(tmp_path, monkeypatch):
    from nst_lib.workbench import sweeps

    photo = tmp_path / "photo.png"
    shutil.copy(DATA / "content" / "skimage_chelsea.png", photo)
    vary = {"seed": [0, 1, 2]}
    sweep({"photo": photo}, {"s": STYLE}, TINY.replace(steps=1), vary, out=tmp_path / "sweep", progress=False)
    decoded = []
    real = sweeps.read_image
    monkeypatch.setattr(sweeps, "read_image", lambda src: decoded.append(src) or real(src))
    again = sweep({"photo": photo}, {"s": STYLE}, TINY.replace(steps=1), vary, out=tmp_path / "sweep", progress=False)
    assert [c.status for c in again] == ["skipped (done)"] * 3
    assert len(decoded) == len(set(map(str, decoded))) <= 2  # (one already decoded by an earlier test is not again)


def test_the_sweep_bar_counts_every_planned_step_when_a_coarse_scale_is_left_out(tmp_path, capsys):
    from nst_lib.transfer import total_steps

    # scales 21, 32, 48 px: at 21 px the 30×48 style is too thin for block5's stride 16, so that scale does not run
    config = TINY.replace(pyramid_levels=None, pyramid_min_size=16, pyramid_ratio=1.5, first_scale_steps=4)
    planned = total_steps(config)
    assert planned == 10
    stop = {"at": (1, 1)}

    def ctrl_c(info):
        if (info.level, info.step) == stop["at"]:
            raise KeyboardInterrupt

    first = sweep(CONTENT, STYLE, config, out=tmp_path, callbacks=[ctrl_c])
    assert [c.status for c in first] == ["interrupted"]
    stop["at"] = None
    again = sweep(CONTENT, STYLE, config, out=tmp_path)
    assert [c.status for c in again] == ["resumed, completed"] and len(again[0].history) == 7  # 4 + 3: no 21 px
    counts = [int(n) for n in re.findall(rf"(\d+)/{planned} ", capsys.readouterr().err)]
    assert counts[-1] == planned and max(counts) == planned  # it ends full, never beyond


def test_a_sweep_cut_short_by_an_exception_that_escapes_still_writes_its_table(tmp_path):
    class SecondCtrlC(BaseException):  # what escapes the cells' own handling (a second Ctrl-C on a Ray driver)
        pass

    class CutAtTheSecondCell(Callback):
        def on_step(self, info):
            if info.step == 1 and (tmp_path / "sweep").exists() and len(list((tmp_path / "sweep").glob("[!.]*"))) == 2:
                raise SecondCtrlC

    vary = {"seed": [0, 1]}
    with pytest.raises(SecondCtrlC):
        sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path / "sweep", callbacks=[CutAtTheSecondCell()],
              progress=False)  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["completed", "pending"]


def test_a_failing_cell_is_reported_and_the_others_still_run(tmp_path):
    vary = {"content_layers": [("block4_conv2",), ("no_such_layer",), ("block5_conv2",)]}
    with pytest.warns(UserWarning, match="no_such_layer.*failed: ConfigError"):
        result = sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path, progress=False)
    assert [c.status.split(":")[0] for c in result] == ["completed", "failed", "completed"]
    assert "unknown layer 'no_such_layer'" in result[1].status and (tmp_path / "sweep.csv").is_file()
    images, _, _ = result.grid("style", "content_layers")
    assert images[0][0] is not None and images[0][1] is None and images[0][2] is not None
    fig = result.figure("style", "content_layers")
    assert "1 cell(s) not finished" in fig.texts[-1].get_text()


@pytest.mark.skipif(backend.name() == "jax", reason="backend-independent (the run folder's lock): run under TensorFlow")
def test_a_cell_another_sweep_is_running_is_left_to_it_and_the_others_still_run(tmp_path):
    from .conftest import held_elsewhere

    base = StyleConfig(weights=None, size=48, steps=2, snapshot_every=0)
    out = tmp_path / "sweep"
    first = sweep({"c": CONTENT}, {"s": STYLE}, base, {"seed": [0, 1]}, out=out, progress=False)
    busy = first[0].run_dir
    child = held_elsewhere(busy)
    try:
        with pytest.warns(UserWarning, match=f"{busy.name} failed: RunInUseError: .*in use by process {child.pid}"):
            again = sweep(
                {"c": CONTENT}, {"s": STYLE}, base.replace(steps=3), {"seed": [0, 1]}, out=out, progress=False
            )
    finally:
        child.kill()
        child.wait()
    assert again[0].status.startswith("failed: RunInUseError") and again[1].status == "resumed, completed"
    assert json.loads((busy / "config.json").read_text())["steps_done"] == 2  # the other process's, untouched


def test_sweep_names_cells_apart_or_says_why_it_cannot(tmp_path):
    import shutil

    from nst_lib.workbench.sweeps import _named

    with pytest.raises(ConfigError, match="share the folder"):  # names keep 6 digits of a float
        sweep(CONTENT, STYLE, TINY, {"style_weight": [0.0012345678, 0.0012345679]}, out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(CONTENT, tmp_path / folder / "photo.jpg")
    named = _named([tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg"])
    assert list(named) == ["a_photo", "b_photo"]  # one file of the name is never dropped for the other


def test_sweep_values_from_numpy_and_lists_read_back(tmp_path):
    vary = {"steps": np.array([1]), "style_layers": [["block1_conv1"], ["block2_conv1"]]}
    result = sweep(CONTENT, STYLE, TINY, vary, out=tmp_path, progress=False)
    recorded = json.loads((result[0].run_dir / "config.json").read_text())["config"]
    assert recorded["steps"] == 1 and isinstance(recorded["steps"], int)  # not the string '1'
    StyleConfig.from_dict(recorded)  # so the cell can be resumed
    images, rows, cols = result.grid("style_layers", "style")  # list values are looked up by value
    assert len(images) == 2 and all(row[0] is not None for row in images)


def test_sweep_rejects_unknown_fields_before_running(tmp_path):

    with pytest.raises(ConfigError, match="alpha"):
        sweep(CONTENT, STYLE, TINY, {"alpha": [1, 2]}, out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.fixture
def panel(tmp_path):
    from nst_lib.workbench.widgets import StylePanel

    config = StyleConfig(weights=None, size=64, steps=6, snapshot_every=0)
    panel = StylePanel(config, preview_every=2, out=tmp_path, live=False, preview_size=48, preview_steps=8)
    yield panel
    panel.stop()  # never leave a background optimisation behind
    panel.wait(timeout=60)


def test_ipywidgets_is_the_version_ci_asked_for():
    # .ci/run runs the panel's and the survey's tests again with ipywidgets 7.7 (Colab's) on PYTHONPATH
    import os

    import ipywidgets

    expected = os.environ.get("NST_EXPECT_IPYWIDGETS")
    if expected is None:
        pytest.skip("NST_EXPECT_IPYWIDGETS not set")
    assert ipywidgets.__version__.startswith(expected + "."), ipywidgets.__version__


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_layer_checkboxes_are_the_networks_own_conv_layers(arch):
    from nst_lib.features import build_base, valid_layer_names
    from nst_lib.workbench.widgets import candidate_layers

    convs = [n for n in valid_layer_names(build_base(arch, None)) if "_conv" in n]
    assert candidate_layers(arch) == convs
    assert ("block5_conv3" in convs) and (("block3_conv4" in convs) == (arch == "vgg19"))


def test_panel_defaults_come_from_style_config(panel):
    d = StyleConfig(weights=None, size=64, steps=6, snapshot_every=0)
    assert panel.config() == d  # left as shown, the controls describe the config given
    assert panel.content_layer.value == "block4_conv2"
    assert [b.description for b in panel.layer_boxes.children if b.value] == [f"block{i}_conv1" for i in range(1, 6)]
    assert panel.arch.options == ("vgg16", "vgg19", "resnet50")
    assert panel.alpha.value == d.content_weight and panel.beta.value == pytest.approx(d.style_weight)
    # the weight sliders report a value when released, not while dragged: each release is one preview
    assert not any(s.continuous_update for s in (panel.alpha, panel.beta, panel.tv))


def test_panel_sliders_set_the_config_and_arch_changes_the_layers(panel):
    panel.beta.value = 1e-1
    panel.alpha.value = 10.0
    panel.arch.value = "resnet50"
    config = panel.config()
    assert config.style_weight == pytest.approx(1e-1) and config.content_weight == pytest.approx(10.0)
    assert config.arch == "resnet50" and config.content_layers == ("conv4_block6_out",)
    assert "conv5_block3_out" in config.style_layers
    panel.arch.value = "vgg16"
    assert [b.description for b in panel.layer_boxes.children][-1] == "block5_conv3"
    assert panel._job is None  # live mode off: moving sliders started nothing


def test_every_preset_is_shown_and_rendered_as_it_is(tmp_path, monkeypatch):
    from nst_lib.config import PRESETS
    from nst_lib.workbench.widgets import StylePanel

    monkeypatch.setenv("NST_RESULTS_DIR", str(tmp_path / "drive"))
    assert StylePanel(live=False).out == tmp_path / "drive"  # where the notebooks' runs go (Drive on Colab)
    monkeypatch.delenv("NST_RESULTS_DIR")
    assert StylePanel(live=False).out == Path("results")  # else where stylize writes: the working folder's

    for name in PRESETS:  # Caffe and PyTorch layer names, a TV weight of 0, style layer weights
        config = StyleConfig.preset(name, weights=None)
        panel = StylePanel(config, out=tmp_path, live=False)
        assert panel.config() == config, name
    gatys = StylePanel(StyleConfig.preset("gatys2016", weights=None), out=tmp_path, live=False)
    assert gatys.config().tv_weight == 0 and gatys.tv.value == pytest.approx(10**gatys.tv.min)  # leftmost: off
    seed004 = StylePanel(StyleConfig.preset("seed004", weights=None), out=tmp_path, live=False)
    assert seed004.content_layer.value == "block2_conv2"  # conv_4: VGG19's fourth convolution
    # a layer changed: the panel's names, and no weights for layers they were not given for
    seed004.layer_boxes.children[-1].value = True
    changed = seed004.config()
    assert changed.style_layers[-1] == "block5_conv4" and changed.style_layer_weights is None
    for box in seed004.layer_boxes.children:
        box.value = False
    with pytest.raises(ConfigError, match="tick at least one style layer"):
        seed004.render()
    assert "tick at least one style layer" in seed004.message.value and seed004._job is None


def test_the_progress_bar_spans_every_scale_of_a_render(tmp_path):
    from nst_lib.workbench.widgets import StylePanel

    config = StyleConfig(weights=None, size=64, steps=2, pyramid_levels=2, snapshot_every=0)
    panel = StylePanel(config, out=tmp_path, live=False)
    seen = []
    panel.progress.observe(lambda change: seen.append((change["new"], panel.status.value)), names="value")
    panel.render(wait=True)
    # 4 steps at 32 px (first_scale_steps: 2 × steps), then 2 at 64 px; it filled at the first scale's 2nd step
    assert panel.progress.max == 6 and [v for v, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert "scale 1/2, step 1/4" in seen[1][1] and "scale 2/2, step 1/2" in seen[-1][1]  # written after the bar


def test_render_updates_the_preview_and_writes_a_run_folder(panel, tmp_path):
    assert panel.export_button.disabled
    panel.render(wait=True)
    first = panel.preview.value
    assert first[:4] == b"\x89PNG" and panel.progress.value == 6 and "render completed" in panel.status.value
    run_dir = panel.run_dir
    assert run_dir.parent == tmp_path and str(run_dir) in panel.message.value
    record = json.loads((run_dir / "config.json").read_text())
    assert record["status"] == "completed" and record["config"]["size"] == 64 and record["precision"] == "float32"
    for name in ("output.png", "losses.csv", "inputs/content.png", "checkpoint.npz"):
        assert (run_dir / name).is_file(), name
    panel.beta.value = 1.0  # a new render with another beta gives another image
    panel.render(wait=True)
    assert panel.preview.value != first and panel.run_dir != run_dir
    exported = panel.export()
    for name in ("output.png", "config.json", "losses.csv", "loss_curve.png"):
        assert (exported / name).is_file(), name
    assert json.loads((exported / "config.json").read_text())["config"]["style_weight"] == pytest.approx(1.0)


def test_releasing_a_weight_slider_starts_a_warm_started_preview(panel, monkeypatch):
    from nst_lib.workbench import widgets

    calls = []

    def recording_stylize(*args, **kwargs):
        calls.append({**kwargs, "inputs": args[:2]})
        return widgets_stylize(*args, **kwargs)

    widgets_stylize = widgets.stylize
    monkeypatch.setattr(widgets, "stylize", recording_stylize)
    panel.live.value = True
    panel.beta.value = 1e-2  # released: a preview starts without any button
    panel.wait(timeout=120)
    assert len(calls) == 1 and calls[0]["out"] is None and calls[0]["initial"] is None  # nothing on show yet: cold
    first = panel.result
    assert max(first.image.shape[:2]) == 48 and first.config.pyramid_levels == 1
    # the preview computes at the panel's preview precision; the render keeps the config's
    assert first.config.precision == panel.preview_precision == "auto" and panel.config().precision == "float32"
    shown = panel.preview.value
    assert shown[:4] == b"\x89PNG" and panel.run_dir is None  # a preview writes no run folder
    panel.tv.value = 10.0
    panel.wait(timeout=120)
    assert len(calls) == 2 and np.array_equal(calls[1]["initial"], first.image)  # warm: from the image on show
    assert panel.result.config.tv_weight == pytest.approx(10.0) and panel.preview.value != shown
    # the inputs are decoded once and reused; stylize loads them as it loads the files (same pixels, same names)
    content, style = calls[0]["inputs"]
    assert isinstance(content, DecodedImage) and source_name(content) == str(panel.content.value)
    assert source_name(style) == str(panel.style.value) and calls[1]["inputs"] == (content, style)
    np.testing.assert_array_equal(load_image(content, 48), load_image(panel.content.value, 48))
    np.testing.assert_array_equal(load_image(style, 40), load_image(panel.style.value, 40))
    panel.content.index = (panel.content.index + 1) % len(panel.content.options)
    panel.alpha.value = 2.0
    panel.wait(timeout=120)
    assert calls[2]["initial"] is None  # other inputs: no warm start from a picture of something else
    assert calls[2]["inputs"][0] is not content and source_name(calls[2]["inputs"][0]) == str(panel.content.value)
    panel.style.index = (panel.style.index + 1) % len(panel.style.options)
    panel.wait(timeout=120)
    panel.alpha.value = 3.0
    panel.wait(timeout=120)
    assert source_name(calls[-1]["inputs"][1]) == str(panel.style.value) and calls[-1]["inputs"][1] is not style


def test_a_new_preview_cancels_the_one_under_way(panel):
    panel.preview_steps, panel.settle_tol = 2000, 0.0  # long, and never settles by itself
    first = panel.start_preview()
    deadline = time.monotonic() + 120
    while panel.progress.value < 2 and time.monotonic() < deadline:
        first.thread.join(0.05)
    second = panel.start_preview()
    first.thread.join(timeout=120)  # stops after its current step
    assert not first.running() and len(first.result.history) < 100 and first.result.status == "stopped"
    while panel.progress.value < 1 and time.monotonic() < deadline:
        second.thread.join(0.05)  # the second one has taken over the widgets
    panel.stop()
    panel.wait(timeout=120)
    assert second.result.status == "stopped" and panel.result is second.result and panel.stop_button.disabled


def test_a_preview_stops_once_its_loss_has_settled(panel):
    from nst_lib.workbench.widgets import settled

    assert not settled([10, 9, 8], window=2, tol=0.01) and settled([10, 5, 5.0, 4.99], window=2, tol=0.01)
    panel.preview_steps, panel.settle_window, panel.settle_tol = 500, 3, 1e9  # any fall counts as settled
    job = panel.start_preview(wait=True)
    assert job.converged and len(job.result.history) == 4 and "preview converged" in panel.status.value


def test_the_preview_size_adapts_so_that_a_preview_settles_in_time():
    from nst_lib.workbench.widgets import PREVIEW_TIME_MARGIN, adapted_preview_size

    # 20 s at 256 px against 10 s: the pixels scale by 0.7 × 10 / 20, the side by its square root (151 → 144 px)
    assert PREVIEW_TIME_MARGIN == 0.7 and adapted_preview_size(256, 20.0, 27.0, 10.0, 128, 256) == 144
    assert 144**2 / 256**2 * 20.0 <= PREVIEW_TIME_MARGIN * 10.0  # in time, with the margin
    assert adapted_preview_size(256, 100.0, 150.0, 10.0, 128, 256) == 128  # never below the smallest
    assert adapted_preview_size(256, 9.0, 12.0, 10.0, 128, 256) == 256  # in time: unchanged
    # a quick preview (a small slider move) does not grow it while a preview to the step cap would be late there
    assert adapted_preview_size(144, 1.0, 12.0, 10.0, 128, 256) == 144
    assert adapted_preview_size(144, 1.0, 4.0, 10.0, 128, 256) == 192  # the cap fits at 144 × √(7 / 4) = 190 px
    assert adapted_preview_size(144, 1.0, 1.0, 10.0, 128, 256) == 256  # at most preview_size
    assert adapted_preview_size(48, 1.0, 1.0, 10.0, 128, 48) == 48  # a preview_size below the smallest is kept
    # a preview the config's own size capped at 96 px while previews run at 192 px: late (12 s), the next ones run at
    # 96 × √(7 / 12) = 73 → 80 px (or the smallest); in time, it keeps 192 px; quick even to the cap, it grows
    assert adapted_preview_size(96, 12.0, 16.0, 10.0, 32, 256, current=192) == 80
    assert adapted_preview_size(96, 12.0, 16.0, 10.0, 128, 256, current=192) == 128
    assert adapted_preview_size(96, 8.0, 12.0, 10.0, 32, 256, current=192) == 192
    assert adapted_preview_size(96, 1.0, 1.0, 10.0, 32, 256, current=192) == 256


def test_a_slow_preview_makes_the_next_one_smaller(panel):
    panel.preview_size = panel.preview_side = 64
    panel.preview_seconds, panel.preview_min_size = 1e-6, 32  # any preview is too slow
    panel.preview_steps, panel.settle_tol = 6, 0.0  # runs its 6 steps to the end
    panel.size.value = 64
    panel.start_preview(wait=True)
    assert panel.result.status == "completed" and max(panel.result.image.shape[:2]) == 64
    assert (
        panel.preview_side == 32
        and "(32 px)" in panel.live.description
        and "next previews at 32 px" in (panel.status.value)
    )
    panel.start_preview(wait=True)
    assert max(panel.result.image.shape[:2]) == 32  # the next preview ran smaller
    panel.preview_seconds = 1e9  # now any preview is fast: back to preview_size
    panel.start_preview(wait=True)
    assert panel.preview_side == 64
    panel.preview_seconds, panel.preview_steps = 1e-6, 2000  # too slow again, but stopped on its way
    stopped = panel.start_preview()
    deadline = time.monotonic() + 120
    while panel.progress.value < 4 and time.monotonic() < deadline:
        stopped.thread.join(0.05)
    panel.stop()
    panel.wait(timeout=120)
    assert stopped.result.status == "stopped" and len(stopped.result.history) >= 4
    assert panel.preview_side == 64  # a stopped preview says nothing about the time to settle


def test_panel_stop_button_stops_the_render(panel):
    panel.steps.value = 1000
    panel.render()
    panel.stop()
    panel.wait(timeout=120)
    assert panel.result.status == "stopped" and len(panel.result.history) < 1000
    assert not panel.render_button.disabled


def test_stop_before_a_job_began_leaves_the_buttons_usable_and_keeps_what_is_on_show(panel):
    panel.preview_steps, panel.settle_tol = 2000, 0.0
    preview = panel.start_preview()
    deadline = time.monotonic() + 120
    while panel.progress.value < 2 and time.monotonic() < deadline:
        preview.thread.join(0.05)
    render = panel.render()  # waits for the preview to stop after its step…
    panel.stop()  # …and is stopped before it began
    render.thread.join(timeout=120)
    assert not panel.render_button.disabled and panel.stop_button.disabled and not panel.export_button.disabled
    assert panel.result is preview.result and "stopped" in panel.status.value and panel.run_dir is None


def test_the_panel_says_what_went_wrong_whatever_it_was(panel, monkeypatch):
    from nst_lib.workbench import widgets

    def broken(*args, **kwargs):
        raise ValueError("something unexpected")

    monkeypatch.setattr(widgets, "stylize", broken)
    panel.render(wait=True)
    assert "ValueError: something unexpected" in panel.message.value and not panel.render_button.disabled
    monkeypatch.undo()
    # an upload that is no image is named at once, in the panel
    monkeypatch.setattr(widgets, "_upload_item", lambda upload: {"name": "holiday.png", "content": b"not a png"})
    panel._uploaded["content"] = True
    with pytest.raises(NSTError, match="holiday.png: not an image"):
        panel.render()
    assert "holiday.png: not an image" in panel.message.value
    panel.content.index = (panel.content.index + 1) % len(panel.content.options)  # a bundled image chosen after it
    assert not panel._uploaded["content"] and panel._input("content") == panel.content.value
    # an upload that is one is recorded by its name
    photo = {"name": "holiday.png", "content": (DATA / "style" / "mandala.png").read_bytes()}
    monkeypatch.setattr(widgets, "_upload_item", lambda upload: photo)
    panel._uploaded["content"] = True
    panel.render(wait=True)
    record = json.loads((panel.run_dir / "config.json").read_text())
    assert record["inputs"]["content"] == "holiday.png (uploaded)"


def test_a_preview_warm_starts_only_from_an_image_of_its_own_inputs(panel, monkeypatch):
    from nst_lib.workbench import widgets

    calls = []
    real = widgets.stylize
    monkeypatch.setattr(widgets, "stylize", lambda *a, **k: calls.append(k) or real(*a, **k))
    panel.start_preview(wait=True)  # content A, to the end
    a = panel.content.index
    panel.content.index = (a + 1) % len(panel.content.options)  # content B, under way…
    panel.preview_steps, panel.settle_tol = 2000, 0.0
    b = panel.start_preview()
    deadline = time.monotonic() + 120
    while panel.progress.value < 2 and time.monotonic() < deadline:
        b.thread.join(0.05)
    panel.content.index = a  # …back to A: what is on show is B's
    panel.preview_steps = 3
    panel.start_preview(wait=True)
    assert calls[-1]["initial"] is None


def test_export_records_what_the_image_was_made_from_and_a_render_resumes_the_preview(panel, monkeypatch):
    made_from = str(panel.content.value)
    panel.render(wait=True)
    panel.content.index = (panel.content.index + 1) % len(panel.content.options)  # picked after the render
    exported = panel.export()
    record = json.loads((exported / "config.json").read_text())
    assert record["inputs"]["content"] == made_from != str(panel.content.value)
    from nst_lib import resume

    with pytest.raises(NSTError, match="a saved result .an export., not a resumable run"):
        resume(exported, progress=False)
    # a slider released during a render: its preview follows the render
    panel.live.value = True
    panel.steps.value = 40
    render = panel.render()
    panel.beta.value = 1.0
    assert "resumes after the render" in panel.message.value
    render.thread.join(timeout=300)
    assert panel._job is not render and panel._job.kind == "preview"
    panel.wait(timeout=300)
    assert panel.result.config.style_weight == pytest.approx(1.0) and panel.result.run_dir is None


def test_an_exported_preview_keeps_the_image_it_started_from_which_reproduces_it(panel, tmp_path):
    from nst_lib import stylize

    panel.start_preview(wait=True)
    panel.beta.value = panel.beta.value * 10
    job = panel.start_preview(wait=True)  # warm-started from the first preview's image
    assert job.result.initial is not None
    exported = panel.export()
    record = json.loads((exported / "config.json").read_text())
    assert record["inputs"]["initial"] == "inputs/initial.png"  # a preview's 8-bit image, exact as a PNG
    assert record["network"]["weights"] == "random" and record["precision"] == job.result.precision
    # its config, inputs, seed and starting image give the image again (as many steps as the preview ran)
    config = StyleConfig.from_dict(record["config"]).replace(steps=len(job.result.history))
    initial = exported / record["inputs"]["initial"]
    again = stylize(record["inputs"]["content"], record["inputs"]["styles"][0], config, initial=initial, progress=False)
    np.testing.assert_array_equal(again.image, np.asarray(Image.open(exported / "output.png")))
    # a starting image a PNG would round is kept as floats
    import dataclasses

    from nst_lib.transfer import save_result

    fractional = dataclasses.replace(job.result, initial=np.full((8, 8, 3), 100.5, np.float32))
    path = save_result(fractional, tmp_path / "more", "x", {"content": "c", "styles": ["s"]})
    assert json.loads((path / "config.json").read_text())["inputs"]["initial"] == "inputs/initial.npy"
    assert np.all(np.load(path / "inputs" / "initial.npy") == 100.5)


def test_panel_reports_bad_input_in_the_panel(panel, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("no image")
    panel.content.options = {"bad": bad}
    panel.render(wait=True)
    assert "bad.png: not an image file" in panel.message.value


def test_more_steps_resume_a_finished_cell_instead_of_skipping_it_or_setting_it_aside(tmp_path):
    sweep(CONTENT, STYLE, TINY.replace(steps=2), out=tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        more = sweep(CONTENT, STYLE, TINY.replace(steps=3), out=tmp_path, progress=False)
    assert [c.status for c in more] == ["resumed, completed"] and len(more[0].history) == 3
    assert not list(tmp_path.glob("*.other-settings"))


def test_a_sweep_read_back_from_its_folders_draws_every_cell(tmp_path):
    vary = {"style_weight": [1e-3, 1e-2]}
    sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path, progress=False)
    again = sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path, progress=False)
    images, _, _ = again.grid("style", "style_weight")
    assert all(img is not None for row in images for img in row)
    assert "not finished" not in " ".join(t.get_text() for t in again.figure("style", "style_weight").texts)


def test_an_interrupted_cell_is_drawn_blank_not_half_optimised(tmp_path):  # S14b
    def ctrl_c(info):
        if info.step == 2:
            raise KeyboardInterrupt

    first = sweep(CONTENT, STYLE, TINY, {"seed": [0]}, out=tmp_path, progress=False, callbacks=[ctrl_c])
    assert [c.status for c in first] == ["interrupted"] and (first[0].run_dir / "output.png").is_file()
    images, _, _ = first.grid("style", "seed")
    assert images[0][0] is None


def test_the_sweep_bar_counts_cells_of_different_lengths_and_skipped_cells(tmp_path, capsys):
    vary = {"steps": [1, 3]}
    sweep(CONTENT, STYLE, TINY, vary, out=tmp_path)
    assert re.findall(r"(\d+)/(\d+) ", capsys.readouterr().err)[-1] == ("4", "4")
    sweep(CONTENT, STYLE, TINY, vary, out=tmp_path)  # every cell skipped: the bar still ends full
    assert re.findall(r"(\d+)/(\d+) ", capsys.readouterr().err)[-1] == ("4", "4")


def test_a_resumed_cell_reports_the_steps_it_keeps_before_its_first_step(tmp_path):
    from nst_lib.workbench.sweeps import run_cell

    config = TINY.replace(steps=5, pyramid_levels=1)

    def ctrl_c(info):
        if info.step == 3:
            raise KeyboardInterrupt

    (cell,) = sweep(CONTENT, STYLE, config, out=tmp_path, progress=False, callbacks=[ctrl_c])
    kept = len(cell.history)
    assert cell.status == "interrupted" and 0 < kept < 5
    reports = []
    run_cell(cell, config, CONTENT, STYLE, [], reports.append)
    assert reports == [kept, 5]  # the bar's offset, then the cell's planned steps


def test_a_cell_set_aside_twice_keeps_both_earlier_runs(tmp_path):
    for init in ("content", "noise", "style"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sweep(CONTENT, STYLE, TINY.replace(steps=1, init=init), out=tmp_path, progress=False)
        assert [c.status for c in result] == ["completed"]
    assert len(list(tmp_path.glob("*.other-settings*"))) == 2


def test_image_grid_draws_float_images_on_the_0_255_scale():
    from nst_lib.workbench.viz import image_grid

    grey = np.full((4, 4, 3), 200.0, np.float32)  # load_image's float32 [0, 255], as resolution_grid passes
    fig = image_grid([[grey]])
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown.dtype == np.uint8 and (shown == 200).all()


def test_loss_curves_count_steps_from_one():
    from nst_lib.workbench.viz import loss_curves

    fig = loss_curves({"a": [{"content": 1.0, "style": 2.0}] * 3})
    assert fig.axes[0].lines[0].get_xdata().tolist() == [1, 2, 3]
