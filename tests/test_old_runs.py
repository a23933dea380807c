"""Run folders written by an earlier version (tests/fixtures/runs_v0_1, see its README) still resume."""

import shutil

import numpy as np
from PIL import Image

from .conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "runs_v0_1"


def _copy(name, tmp_path):
    return shutil.copytree(FIXTURES / name, tmp_path / name)


def test_a_stopped_stylisation_from_version_0_1_resumes_to_its_end(tmp_path):
    from nst_lib import resume

    result = resume(_copy("stylize_stopped", tmp_path), progress=False)
    assert result.status == "completed"
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert (result.run_dir / "output.png").is_file() and (result.run_dir / "snapshots" / "step_00006.png").is_file()


def test_an_interrupted_training_run_from_version_0_1_resumes_to_the_uninterrupted_result(tmp_path):
    from nst_lib.models import resume_training

    result = resume_training(_copy("stylegan_interrupted", tmp_path), progress=False)
    assert result.status == "completed" and [r["epoch"] for r in result.epochs] == [1, 2]
    grid = np.asarray(Image.open(result.run_dir / "samples" / "epoch_002.png"), np.int16)
    expected = np.asarray(Image.open(FIXTURES / "stylegan_uninterrupted_epoch_002.png"), np.int16)
    assert np.abs(grid - expected).max() <= 2


def test_an_interrupted_guidance_run_from_version_0_1_resumes(tmp_path):
    from nst_lib.images import load_image
    from nst_lib.models import load_trained
    from nst_lib.models.guidance import GramPrompt, GuidanceConfig, guide

    vqgan = load_trained(_copy("vqgan", tmp_path))
    run = _copy("guided_interrupted", tmp_path)
    content = np.asarray(Image.open(run / "inputs" / "content.png"))
    style = load_image(ROOT / "data" / "style" / "vangogh_starry_night.jpg", 32)
    config = GuidanceConfig(size=16, iterations=4, snapshots=(0, 2, 4), cutouts=2, checkpoint_every=2)
    result = guide(
        vqgan, content, GramPrompt(style, layers=("block1_conv1",), weights=None), config, resume=run, progress=False
    )
    assert result.status == "completed"
    assert [r["step"] for r in result.losses] == [1, 2, 3, 4]
    assert sorted(result.snapshots) == [0, 2, 4]
