"""The `nst` console script end to end on bundled data, and one-line errors with non-zero exit codes."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from nst_lib import StyleConfig
from nst_lib.config import RESUME_OVERRIDES
from nst_lib.workbench.cli import _config_from_args, build_parser, main

from .conftest import CONTENT, DATA, STYLE

FAST = ["--weights", "none", "--size", "48", "--steps", "3", "--quiet"]


def test_flags_default_to_style_config():
    args = build_parser().parse_args(["stylize", "c.jpg", "s.jpg"])
    assert _config_from_args(args) == StyleConfig()
    args = build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "--preset", "gatys2016", "--steps", "7"])
    assert _config_from_args(args) == StyleConfig.preset("gatys2016", steps=7)


def test_every_field_has_a_flag_with_its_default_in_the_help():
    sub = build_parser()._subparsers._group_actions[0].choices["stylize"]
    helps = {a.dest: a.help for a in sub._actions}
    for f in dataclasses.fields(StyleConfig):
        assert f.name in helps, f.name
        assert f"(default: {f.default})" in helps[f.name]


def test_the_help_shows_the_named_presets_values(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line a flag: argparse's wrapping breaks values like 1e-05
    preset = StyleConfig.preset("gatys2016")
    changed = [f for f in dataclasses.fields(StyleConfig) if getattr(preset, f.name) != f.default]
    assert changed  # the preset has values of its own to show
    for argv in (["stylize", "--preset", "gatys2016", "--help"], ["sweep", "--preset=gatys2016", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "preset gatys2016's values" in text
        for f in changed:
            assert f"(default: {getattr(preset, f.name)})" in text, f.name
    sub = build_parser("gatys2016")._subparsers._group_actions[0].choices["stylize"]
    helps = {a.dest: a.help for a in sub._actions}
    for f in dataclasses.fields(StyleConfig):
        assert f"(default: {getattr(preset, f.name)})".replace("%", "%%") in helps[f.name], f.name
    # an unknown preset is still the parser's to refuse
    with pytest.raises(SystemExit):
        main(["stylize", "--preset", "nope", "--help"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_list_and_bool_flags_parse():
    args = build_parser().parse_args(
        ["stylize", "c", "s", "--style-layers", "relu1_1", "relu2_1", "--preserve-color", "--weights", "none"]
    )
    config = _config_from_args(args)
    assert config.style_layers == ("relu1_1", "relu2_1") and config.preserve_color and config.weights is None
    # a field with choices that may be None: "none" is one of its choices (argparse checked the converted None)
    args = build_parser().parse_args(["stylize", "c", "s", "--preprocessing", "none", "--optimizer", "adam"])
    assert _config_from_args(args).preprocessing is None and args.optimizer == "adam"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stylize", "c", "s", "--optimizer", "none"])  # not optional: no none


def test_none_resets_a_list_flag_to_its_default_and_stands_alone(capsys):
    # the help of --style-layers / --style-layer-weights says "none = the preset / equal weights"
    preset = StyleConfig.preset("gatys2016")
    assert None not in (preset.content_layers, preset.style_layers, preset.style_layer_weights)
    argv = ["stylize", "c", "s", "--preset", "gatys2016", "--style-layers", "none", "--style-layer-weights", "NONE"]
    argv += ["--content-layers", "none"]
    config = _config_from_args(build_parser().parse_args(argv))
    assert config.style_layers is None and config.style_layer_weights is None and config.content_layers is None
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["stylize", "c", "s", "--style-layers", "none", "relu1_1"])
    assert exc.value.code == 2 and "'none' cannot be combined" in capsys.readouterr().err


def test_stylize_end_to_end_on_bundled_data(tmp_path, capsys):
    code = main(
        ["stylize", str(CONTENT), str(STYLE), str(DATA / "style" / "mandala.png"), "--out", str(tmp_path), *FAST]
    )
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "output.png").is_file()
    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["steps"] == 3 and len(record["inputs"]["styles"]) == 2
    assert "output.png" in capsys.readouterr().out


def test_the_summary_counts_the_steps_of_every_scale(tmp_path, capsys):
    argv = ["stylize", str(CONTENT), str(STYLE), "--out", str(tmp_path), *FAST, "--size", "64", "--pyramid-levels", "2"]
    assert main(argv) == 0
    # 2 × 3 steps at 32 px, then 3 at 64 px: the summary counts all nine, not the last scale's three
    out = capsys.readouterr().out
    assert "output.png  (9 steps over 2 scales, " in out


def test_resume_command(tmp_path):
    assert main(["stylize", str(CONTENT), str(STYLE), "--out", str(tmp_path), *FAST]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert main(["resume", str(run_dir), "--steps", "5", "--quiet"]) == 0
    assert len((run_dir / "losses.csv").read_text().splitlines()) == 1 + 5
    assert not (run_dir / "output.tif").exists()
    assert main(["resume", str(run_dir), "--steps", "6", "--tiff16", "--quiet"]) == 0  # the TIFF for print, later
    assert (run_dir / "output.tif").is_file() and json.loads((run_dir / "config.json").read_text())["config"]["tiff16"]
    # every field the API's resume may change is a flag, and only those
    argv = ["--snapshot-every", "2", "--tile-size", "0", "--memory-budget-mb", "900", "--first-scale-steps", "7"]
    assert main(["resume", str(run_dir), *argv, "--quiet"]) == 0
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert (config["snapshot_every"], config["tile_size"], config["memory_budget_mb"]) == (2, 0, 900)
    assert config["first_scale_steps"] == 7
    sub = build_parser()._subparsers._group_actions[0].choices["resume"]
    assert {a.dest for a in sub._actions} - {"help", "run_dir", "quiet"} == set(RESUME_OVERRIDES)


def test_a_damaged_run_folder_or_a_bad_output_place_gives_one_line(tmp_path, capsys):
    import shutil

    (tmp_path / "afile").write_text("a file, not a folder")
    err = _error(capsys, ["stylize", str(CONTENT), str(STYLE), "--out", str(tmp_path / "afile"), *FAST], 2)
    assert err.startswith(f"nst: error: {tmp_path / 'afile'}: cannot make the output folder") and "\n" not in err
    err = _error(capsys, ["patterns", str(tmp_path / "patterns"), "--size", "0"], 2)
    assert err == "nst: error: size must be positive, got 0"
    assert main(["stylize", str(CONTENT), str(STYLE), "--out", str(tmp_path / "runs"), *FAST]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    damaged = {name: shutil.copytree(run_dir, tmp_path / name) for name in ("ckpt", "inputs", "record")}
    (damaged["ckpt"] / "checkpoint.npz").write_bytes(b"not a checkpoint")
    (damaged["inputs"] / "inputs" / "content.npy").unlink()
    (damaged["record"] / "config.json").write_text("{")
    for name, message in [
        ("ckpt", "checkpoint.npz: damaged checkpoint"),
        ("inputs", "content.npy: the run's input is missing or damaged"),
        ("record", "config.json: unreadable run record"),
    ]:
        err = _error(capsys, ["resume", str(damaged[name]), "--quiet"], 2)
        assert message in err and err.startswith(f"nst: error: {damaged[name]}") and "\n" not in err


def _error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_an_image_too_thin_for_the_layers_names_the_file_and_the_smallest_size_that_works(tmp_path, capsys):
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (900, 40), (90, 120, 200)).save(strip)  # 40 px high, 900 wide: 3×64 px at --size 64
    out = ["--out", str(tmp_path / "runs"), "--weights", "none", "--steps", "1", "--quiet"]
    err = _error(capsys, ["stylize", str(strip), str(STYLE), *out, "--size", "64"], 2)
    assert err.startswith(f"nst: error: {strip}: 3×64 px after resizing is too small") and "\n" not in err
    smallest = int(re.search(r"--size (\d+)\)", err).group(1))
    assert smallest == 349  # 40/900 × 349 rounds to 16, VGG19's block5 stride
    err = _error(capsys, ["stylize", str(strip), str(STYLE), *out, "--size", str(smallest - 1)], 2)
    assert f"{strip}: 15×348 px after resizing is too small" in err  # one less does not work...
    assert main(["stylize", str(strip), str(STYLE), *out, "--size", str(smallest)]) == 0  # ...and that one does
    # a pixel budget that size would exceed (the style there is the larger input): the budget it needs is named
    err = _error(capsys, ["stylize", str(strip), str(STYLE), *out, "--size", "64", "--max-pixels", "4000"], 2)
    fix = re.search(r"\(--size (\d+) --max-pixels (\d+)\)", err)
    assert fix and int(fix.group(1)) == smallest and "\n" not in err
    assert main(["stylize", str(strip), str(STYLE), *out, "--size", fix.group(1), "--max-pixels", fix.group(2)]) == 0
    err = _error(
        capsys,
        ["stylize", str(strip), str(STYLE), *out, "--size", fix.group(1), "--max-pixels", str(int(fix.group(2)) - 1)],
        2,
    )
    assert "too small" in err  # one pixel less and the budget downscales it below the layers again
    # the thin one a style, the content large: the budget shrinks the content, and the style with it (its size is
    # the content's long side), so the budget named is the one that keeps the content large enough for the style
    square = tmp_path / "square.png"
    Image.new("RGB", (600, 600), (200, 90, 60)).save(square)
    err = _error(capsys, ["stylize", str(square), str(strip), *out, "--size", "64", "--max-pixels", "4000"], 2)
    fix = re.search(r"\(--size (\d+) --max-pixels (\d+)\)", err)
    assert fix and int(fix.group(1)) == smallest
    assert main(["stylize", str(square), str(strip), *out, "--size", fix.group(1), "--max-pixels", fix.group(2)]) == 0
    less = str(int(fix.group(2)) - 1)
    assert "too small" in _error(
        capsys, ["stylize", str(square), str(strip), *out, "--size", fix.group(1), "--max-pixels", less], 2
    )


def test_bad_inputs_give_one_line_and_exit_code(tmp_path, capsys):
    out = ["--out", str(tmp_path / "runs")]
    err = _error(capsys, ["stylize", str(tmp_path / "missing.jpg"), str(STYLE), *out, *FAST], 2)
    assert err == f"nst: error: {tmp_path / 'missing.jpg'}: file not found"

    (tmp_path / "text.png").write_text("not an image")
    err = _error(capsys, ["stylize", str(CONTENT), str(tmp_path / "text.png"), *out, *FAST], 2)
    assert err.startswith(f"nst: error: {tmp_path / 'text.png'}: not an image file") and "\n" not in err

    (tmp_path / "cut.jpg").write_bytes(CONTENT.read_bytes()[:5000])
    err = _error(capsys, ["stylize", str(tmp_path / "cut.jpg"), str(STYLE), *out, *FAST], 2)
    assert "cut.jpg: corrupt or truncated image" in err and "\n" not in err

    err = _error(capsys, ["stylize", str(CONTENT), str(STYLE), *out, *FAST, "--size", "10"], 2)
    assert "tubingen_neckarfront.jpg: 8×10 px after resizing is too small" in err and "\n" not in err

    err = _error(capsys, ["stylize", str(CONTENT), str(STYLE), *out, *FAST, "--weights", str(tmp_path / "w.h5")], 2)
    assert err == f"nst: error: {tmp_path / 'w.h5'}: weights file not found"

    err = _error(capsys, ["stylize", str(CONTENT), str(STYLE), *out, *FAST, "--size", "-5"], 2)
    assert err == "nst: error: size must be positive, got -5"


def test_absurd_size_is_downscaled_with_a_one_line_warning(tmp_path, capsys):
    argv = [
        "stylize",
        str(CONTENT),
        str(STYLE),
        "--out",
        str(tmp_path),
        *FAST,
        "--size",
        "100000",
        "--max-pixels",
        "4096",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "nst: warning:" in err and "pixel budget of 4,096" in err and "Traceback" not in err


def test_argparse_errors_exit_non_zero():
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(CONTENT), str(STYLE), "--arch", "alexnet"])
    assert exc.value.code == 2


def test_console_script_runs_in_a_subprocess(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "nst_lib.workbench.cli", "stylize", str(tmp_path / "nope.png"), str(STYLE), *FAST],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"nst: error: {tmp_path / 'nope.png'}: file not found"
    assert "Traceback" not in proc.stderr


def test_presets_and_layers_commands(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "gatys2016:" in out and "Gatys, Ecker, Bethge" in out
    assert main(["layers", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "conv4_block6_out" in out and "style preset:" in out


def test_patterns_command_regenerates_bundled_patterns(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    assert main(["patterns", str(tmp_path)]) == 0
    for name in ("honeycomb.png", "mandala.png"):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / name)), np.asarray(Image.open(DATA / "style" / name))
        )
    assert main(["patterns", str(tmp_path)]) == 0  # the same pixels again: regenerating
    before = (tmp_path / "honeycomb.png").read_bytes()
    # another size does not replace them unless asked
    err = _error(capsys, ["patterns", str(tmp_path), "--size", "64"], 2)
    assert (
        err
        == f"nst: error: {tmp_path / 'honeycomb.png'}: exists and holds another image; --force (force=True) replaces it"
    )
    assert (tmp_path / "honeycomb.png").read_bytes() == before
    assert main(["patterns", str(tmp_path), "--size", "64", "--force"]) == 0
    assert Image.open(tmp_path / "mandala.png").size == (64, 64)


def test_a_non_finite_loss_exits_3_and_keeps_the_last_good_image(tmp_path, capsys):
    out = ["--out", str(tmp_path), *FAST]
    err = _error(capsys, ["stylize", str(CONTENT), str(STYLE), *out, "--style-weight", "1e38"], 3)  # float32: inf
    assert err.startswith("nst: error: the loss is inf") and "\n" not in err
    (run_dir,) = tmp_path.iterdir()
    assert f"last good image is kept in {run_dir / 'snapshots' / 'last_good.png'}" in err
    assert (run_dir / "snapshots" / "last_good.png").is_file()
    assert json.loads((run_dir / "config.json").read_text())["status"] == "failed: non-finite loss"


def test_ctrl_c_exits_130_with_a_resume_command_that_works(tmp_path, capsys, monkeypatch):
    from nst_lib.objective import Objective

    evaluate, calls = Objective.evaluate, []

    def interrupted_at_the_third(self, x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(self, x)

    monkeypatch.setattr(Objective, "evaluate", interrupted_at_the_third)
    argv = ["stylize", str(CONTENT), str(STYLE), "--out", str(tmp_path), *FAST, "--optimizer", "adam"]
    err = _error(capsys, argv, 130)
    (run_dir,) = tmp_path.iterdir()
    assert err == f"nst: interrupted after 2 steps; resume with: nst resume {run_dir}"
    assert json.loads((run_dir / "config.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(Objective, "evaluate", evaluate)
    assert main(err.split("resume with: nst ")[1].split() + ["--quiet"]) == 0  # the printed command finishes it
    assert len((run_dir / "losses.csv").read_text().splitlines()) == 1 + 3
    # Ctrl-C before the optimisation (loading, building the network): 130 and one line
    import nst_lib.transfer

    monkeypatch.setattr(nst_lib.transfer, "read_image", lambda src: (_ for _ in ()).throw(KeyboardInterrupt))
    assert _error(capsys, argv, 130) == "nst: interrupted"
