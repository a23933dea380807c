"""The resolution study (notebook 10): each case in its own process with its own peak memory, completed cases read
back instead of re-run, the fixed style size, the 16:9 crop and the figures."""

import json
from pathlib import Path

import numpy as np
import pytest

from nst_lib import StyleConfig, stylize
from nst_lib.errors import NSTError
from nst_lib.runs import Run
from nst_lib.workbench import resolution
from nst_lib.workbench.resolution import (
    case_config,
    centre_crop,
    cost_plot,
    crop_to_aspect,
    detail_crops,
    resolution_grid,
    resolution_study,
    save_crop,
)

from .conftest import ROOT

CONTENT = ROOT / "data" / "content" / "tubingen_neckarfront.jpg"
STYLE = ROOT / "data" / "style" / "vangogh_starry_night.jpg"


def test_the_fixed_mode_keeps_the_style_image_at_its_pixel_size():
    base = StyleConfig(style_scale=1.0)
    assert case_config(base, 2048, "proportional").style_scale == 1.0
    for size in (256, 1024, 3840):
        cfg = case_config(base, size, "fixed", fixed_style_size=512)
        assert cfg.size == size and round(cfg.size * cfg.style_scale) == 512
    with pytest.raises(NSTError, match="style mode 'huge'"):
        case_config(base, 256, "huge")


def test_the_16_9_crop_and_centre_crops():
    img = crop_to_aspect(CONTENT, 16 / 9)  # Tübingen is 1024 × 768
    assert img.shape == (576, 1024, 3)
    tall = crop_to_aspect(np.zeros((100, 40, 3), np.float32), 16 / 9)
    assert tall.shape == (22, 40, 3)
    ramp = np.arange(100 * 200, dtype=np.float32).reshape(100, 200, 1).repeat(3, axis=2)
    crop = centre_crop(ramp, 20, (0.5, 0.5))
    assert crop.shape == (20, 20, 3) and crop[0, 0, 0] == ramp[40, 90, 0]
    assert centre_crop(ramp, 20, (0.0, 1.0))[0, -1, 0] == ramp[0, 199, 0]  # clamped inside the image
    assert centre_crop(ramp, 500).shape == (100, 200, 3)  # never larger than the image


def test_a_study_runs_each_case_in_its_own_process_and_reads_completed_cases_back(tmp_path, monkeypatch):
    content = save_crop(CONTENT, tmp_path / "inputs" / "content.png")
    config = StyleConfig(weights=None, steps=2, snapshot_every=0)
    runs = resolution_study(content, STYLE, [48, 64], config, tmp_path / "study", modes=("fixed",), progress=False)
    assert [(r.size, r.mode, r.shape) for r in runs] == [(48, "fixed", (27, 48)), (64, "fixed", (36, 64))]
    for r in runs:
        assert r.run_dir.parent == tmp_path / "study" / f"{r.size}px_fixed"
        assert r.peak_memory_mb > 100  # a Keras process: its own peak resident set, recorded by the run
        assert r.seconds > 0 and r.schedule[-1]["long_side"] == r.size
        assert r.row()["megapixels"] == round(r.shape[0] * r.shape[1] / 1e6, 3)
        assert r.started == r.row()["started"] == json.loads((r.run_dir / "config.json").read_text())["started"]

    def no_new_process(*args, **kwargs):
        raise AssertionError("a completed case was run again")

    monkeypatch.setattr(resolution.subprocess, "Popen", no_new_process)
    again = resolution_study(content, STYLE, [48, 64], config, tmp_path / "study", modes=("fixed",), progress=False)
    assert [(r.run_dir, r.seconds) for r in again] == [(r.run_dir, r.seconds) for r in runs]
    for fig in (resolution_grid(runs), detail_crops(runs, crop=16), cost_plot(runs)):
        assert fig.axes
    monkeypatch.undo()
    # a 16-bit TIFF asked for later is written from the completed case's checkpoint: no step runs, and the
    # session that only wrote it is not the case's time
    (tiff,) = resolution_study(
        content, STYLE, [48], config.replace(tiff16=True), tmp_path / "study", modes=("fixed",), progress=False
    )
    record = json.loads((tiff.run_dir / "config.json").read_text())
    assert tiff.run_dir == runs[0].run_dir and (tiff.run_dir / "output.tif").is_file()
    assert record["steps_done"] == 2 and len(record["earlier_timings"]) == 1
    assert tiff.seconds == runs[0].seconds
    # one whose resume for it fails part-way (its record then says failed) is kept as it was, with a warning

    def failed_part_way(code, argument):
        spec = json.loads(argument)
        Run.open(spec["resume"]).write_record(status="failed: OSError: disk full")
        Path(spec["reason"]).write_text("OSError: disk full")
        return 1

    monkeypatch.setattr(resolution, "_run_child", failed_part_way)
    with pytest.warns(UserWarning, match=r"output.tif was not written \(OSError: disk full\); the case is kept"):
        (kept,) = resolution_study(
            content, STYLE, [64], config.replace(tiff16=True), tmp_path / "study", modes=("fixed",), progress=False
        )
    assert kept.run_dir == runs[1].run_dir and kept.seconds == runs[1].seconds
    monkeypatch.undo()
    monkeypatch.setattr(resolution.subprocess, "Popen", no_new_process)
    # another config (here: the seed) is another study: its cases are not read back from these folders
    with pytest.raises(AssertionError, match="run again"):
        resolution_study(content, STYLE, [48], config.replace(seed=1), tmp_path / "study", modes=("fixed",))
    # so is another photo saved under the same file name
    save_crop(STYLE, content)
    with pytest.raises(AssertionError, match="run again"):
        resolution_study(content, STYLE, [48], config, tmp_path / "study", modes=("fixed",))


def test_a_case_stopped_part_way_goes_on_from_its_checkpoint(tmp_path):
    content = save_crop(CONTENT, tmp_path / "inputs" / "content.png")
    config = StyleConfig(weights=None, steps=3, snapshot_every=0, pyramid_levels=1)
    case = resolution.case_config(config, 48, "proportional")
    stopped = stylize(
        content,
        STYLE,
        case,
        out=tmp_path / "study" / "48px_proportional",
        name="48px_proportional",
        callbacks=[lambda info: info.step >= 1],
        progress=False,
    )
    assert stopped.status == "stopped" and len(stopped.history) == 1
    # what this call asks the case to write (snapshots, the TIFF) applies to the resumed case too
    asked = config.replace(snapshot_every=1, tiff16=True)
    (run,) = resolution_study(content, STYLE, [48], asked, tmp_path / "study", modes=("proportional",), progress=False)
    assert run.run_dir == stopped.run_dir  # resumed in its folder, not started again beside it
    record = json.loads((run.run_dir / "config.json").read_text())
    assert record["status"] == "completed" and record["steps_done"] == 3
    assert (run.run_dir / "output.tif").is_file()
    assert sorted(p.name for p in (run.run_dir / "snapshots").glob("*step_*.png"))[-2:] == [
        "step_00002.png",
        "step_00003.png",
    ]
    # its time is both sessions', its peak the higher of theirs
    (earlier,) = record["earlier_timings"]
    assert run.seconds == pytest.approx(record["timings"]["total"] + earlier["total"])
    peaks = [record["peak_memory_mb"]["host"], earlier["peak_memory_mb"]["host"]]
    assert run.peak_memory_mb == max(peaks)


def test_a_failed_case_is_left_out_with_a_warning(tmp_path, monkeypatch):
    class Fails:  # a child that exits without writing a completed run
        def __init__(self, *args, **kwargs): ...

        def wait(self):
            return 1

    monkeypatch.setattr(resolution.subprocess, "Popen", Fails)
    with pytest.warns(UserWarning, match="failed.*exit code 1") as caught:
        runs = resolution_study(CONTENT, STYLE, [48, 64], StyleConfig(weights=None), tmp_path, modes=("proportional",))
    assert runs == []
    failed = [str(w.message) for w in caught if "failed" in str(w.message)]
    assert len(failed) == 2 and "48px_proportional" in failed[0] and "64px_proportional" in failed[1]  # 64 still tried
    with pytest.raises(NSTError, match="not a file"):
        resolution_study(tmp_path / "missing.png", STYLE, [48], StyleConfig(weights=None), tmp_path)


def test_a_case_whose_run_raises_says_why_in_one_line(tmp_path, capfd):
    config = StyleConfig(weights=None, content_layers=("block9_conv9",), steps=1)
    with pytest.warns(UserWarning, match=r"48 px case \(style proportional\) failed \(ConfigError: unknown layer"):
        assert resolution_study(CONTENT, STYLE, [48], config, tmp_path, modes=("proportional",), progress=False) == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_process_started_from_a_larger_one_reports_its_own_peak_memory():
    import resource
    import subprocess
    import sys

    big = np.ones(96 * 2**20, np.float64)  # 768 MiB touched in this process, then freed
    del big
    ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    code = "from nst_lib.backend import peak_memory_mb; print(peak_memory_mb()['host'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    child = float(out.stdout.strip().splitlines()[-1])
    # a case of the study is such a child: ru_maxrss would have been at least this process's peak (fork and exec
    # keep it), which is how a notebook kernel's peak became every case's
    assert 100 < child < ours - 500, (child, ours)
