"""Notebooks: committed without outputs, one papermill parameters cell, and each executes in QUICK mode and
writes its figures (slow: a kernel per notebook)."""

import json
import shutil

import pytest

from .conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {
    "00_quickstart": ["panel_run"],
    "01_content_and_style_representations": ["reconstructions"],
    "02_architecture_comparison": ["architectures", "architectures_low_res"],
    "03_content_style_weights": ["alpha_beta_grid", "seed004_style_weight", "alpha_beta_style_curves"],
    "04_optimisation_dynamics": ["loss_curves", "identity_grayscale", "snapshots_adam_pair1", "snapshots_lbfgs_pair2"],
    "05_gan_generated_styles": [
        "fig3_dcgan_losses",
        "fig4_vaegan_losses",
        "fig5_samples",
        "fig6_default_vs_weakened_losses",
        "disc_tuning_losses",
        "fig7_default_vs_weakened_samples",
        "fig2_astgan",
        "fig8_style_weight",
    ],
    "06_style_vae": ["stage_losses", "reconstructions", "stylisation_grid", "interpolation", "prior_samples"],
    "07_cyclegan": ["losses", "samples_by_epoch", "cyclegan_vs_gatys"],
    "08_cnn_vs_vqgan": ["gatys_conv_blocks", "vqgan_training", "prior_samples", "cnn_vs_vqgan", "guidance_losses"],
    "09_stylegan": ["losses", "samples_by_epoch", "truncation_sweep", "style_mixing", "interpolation"],
    "10_resolution": ["resolution_grid", "resolution_crops", "resolution_cost"],
}


def test_the_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_a_quick_parameter(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), "clear outputs before committing"
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and "QUICK =" in "".join(params[0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and "**Question" in "".join(nb["cells"][0]["source"])


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode_and_writes_its_figures(path, tmp_path):
    papermill = pytest.importorskip("papermill", reason="papermill not installed (pip install -e '.[dev]')")
    fig_dir = ROOT / "results" / "quick_figures" / path.stem
    shutil.rmtree(fig_dir, ignore_errors=True)
    papermill.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters={"QUICK": True},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(ROOT / "notebooks"),
        execution_timeout=600,
    )
    for stem in EXPECTED[path.stem]:
        for suffix in (".png", ".pdf"):
            assert (fig_dir / (stem + suffix)).is_file(), f"{path.stem} did not write {stem}{suffix}"
