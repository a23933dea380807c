"""`nst sweep SPEC`: a JSON or TOML spec run end to end (in-process and on a local Ray, with Ctrl-C on the driver),
defaults from StyleConfig as for `nst stylize`, and one-line errors naming the spec file and the field."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nst_lib import StyleConfig
from nst_lib.workbench.cli import main
from nst_lib.workbench.sweeps import load_spec

from .conftest import CONTENT, DATA, ROOT, STYLE

SPEC = f"""
out = "sweep"
[contents]
tubingen = "{CONTENT}"
[styles]
starry = "{STYLE}"
blend = ["{STYLE}", "{DATA / "style" / "mandala.png"}"]
[base]
weights = "none"
size = 48
steps = 3
snapshot_every = 0
[vary]
style_weight = [1e-3, 1e-2]
"""


def _table(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_sweep_command_prints_the_table_writes_sweep_csv_and_skips_on_a_second_run(tmp_path, capsys):
    spec = tmp_path / "beta.toml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "content",
        "style",
        "style_weight",
        "status",
        *[f"final_{k}" for k in ("total", "content", "style", "tv")],
    ]
    assert [line.split()[:4] for line in out[1:5]] == [
        ["tubingen", "starry", "0.001", "completed"],
        ["tubingen", "starry", "0.01", "completed"],
        ["tubingen", "blend", "0.001", "completed"],
        ["tubingen", "blend", "0.01", "completed"],
    ]
    assert out[5] == str(tmp_path / "sweep" / "sweep.csv")  # `out` is relative to the spec file
    rows = _table(tmp_path / "sweep" / "sweep.csv")
    assert [r["status"] for r in rows] == ["completed"] * 4
    blend = json.loads((tmp_path / "sweep" / "tubingen__blend__style_weight=0.001" / "config.json").read_text())
    assert len(blend["inputs"]["styles"]) == 2 and blend["config"]["size"] == 48
    assert main(["sweep", str(spec), "--quiet"]) == 0
    assert [r["status"] for r in _table(tmp_path / "sweep" / "sweep.csv")] == ["skipped (done)"] * 4


def test_sweep_defaults_come_from_style_config_then_the_preset_the_file_and_the_flags(tmp_path):
    from nst_lib.workbench.cli import build_parser

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"contents": [str(CONTENT)], "styles": [str(STYLE)]}))
    loaded = load_spec(spec)
    assert loaded["base"] == StyleConfig() and loaded["vary"] == {}
    assert list(loaded["contents"]) == ["tubingen_neckarfront"] and loaded["out"] == tmp_path / "results/sweeps/s"
    spec.write_text(
        json.dumps({"contents": [str(CONTENT)], "styles": [str(STYLE)], "preset": "gatys2016", "base": {"steps": 9}})
    )
    assert load_spec(spec)["base"] == StyleConfig.preset("gatys2016", steps=9)
    # the command's flags are StyleConfig's, as for `nst stylize`, and beat the file
    args = build_parser().parse_args(["sweep", str(spec), "--preset", "tf_tutorial", "--size", "64"])
    assert args.size == 64 and not hasattr(args, "steps")
    assert load_spec(spec, args.preset, {"size": args.size})["base"] == StyleConfig.preset(
        "tf_tutorial", steps=9, size=64
    )
    # … and beat the file's vary: a flag for a varied field fixes it
    spec.write_text(json.dumps({"contents": [str(CONTENT)], "styles": [str(STYLE)], "vary": {"size": [32, 48]}}))
    assert load_spec(spec)["vary"] == {"size": [32, 48]}
    flagged = load_spec(spec, None, {"size": 64})
    assert flagged["vary"] == {} and flagged["base"].size == 64


GOOD = '"contents": "%(content)s", "styles": "%(style)s"'
BAD = [
    ("a.json", '{"styles": {"s": "%(style)s"}}', "contents is missing"),
    (
        "a.json",
        "{" + GOOD + ', "stlyes": 1}',
        "unknown field 'stlyes' (a spec has contents, styles, base, preset, vary, out)",
    ),
    ("a.json", "{" + GOOD + ', "base": {"alpha": 1}}', "base.alpha: unknown StyleConfig field"),
    ("a.json", "{" + GOOD + ', "base": {"size": "big"}}', "base.size: expected an integer, got 'big'"),
    ("a.json", "{" + GOOD + ', "base": {"size": -5}}', "base: size must be positive, got -5"),
    ("a.json", "{" + GOOD + ', "vary": {"style_weight": 0.1}}', "vary.style_weight: a non-empty list of values"),
    ("a.json", "{" + GOOD + ', "vary": {"size": [64, -1]}}', "vary.size: size must be positive, got -1"),
    ("a.json", "{" + GOOD + ', "preset": "gatys"}', "preset: unknown preset 'gatys'; choose from default, gatys2016"),
    (
        "a.json",
        '{"contents": {"tubingen": "nope.jpg"}, "styles": "%(style)s"}',
        "contents.tubingen: %(dir)s/nope.jpg not",
    ),
    ("a.toml", 'contents = "%(content)s"\nstyles = [', "not valid TOML"),
    ("a.json", "{" + GOOD + ",}", "not valid JSON"),
    ("a.yaml", "contents: x", "a sweep spec is a .json or .toml file"),
]


@pytest.mark.parametrize("name, text, message", BAD, ids=[m.split(":")[0].split(" (")[0] for _, _, m in BAD])
def test_bad_specs_give_one_line_naming_the_file_and_the_field(tmp_path, capsys, name, text, message):
    spec = tmp_path / name
    spec.write_text(text % {"content": CONTENT, "style": STYLE, "dir": tmp_path})
    assert main(["sweep", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nst: error: {spec}: {message % {'dir': tmp_path}}") and "\n" not in err
    assert not (tmp_path / "results").exists()


def test_a_missing_spec_and_a_missing_ray_give_one_line(tmp_path, capsys, monkeypatch):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"nst: error: {tmp_path / 'none.toml'}: file not found"
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["sweep", str(spec), "--executor", "ray"]) == 2
    assert capsys.readouterr().err.strip() == "nst: error: executor='ray' needs Ray: pip install 'nst-workbench[ray]'"


@pytest.mark.parametrize(
    "statuses, code",
    [
        (["completed", "completed"], 0),
        (["failed: ConfigError: unknown layer", "completed"], 1),
        (["completed", "interrupted"], 130),
        (["failed: ConfigError: unknown layer", "interrupted"], 130),  # stopped by Ctrl-C: 130, and both said
    ],
)
def test_the_sweep_commands_exit_status_says_failed_or_interrupted(tmp_path, capsys, monkeypatch, statuses, code):
    from nst_lib.workbench import sweeps

    def finished(**spec):  # what sweep() returned: the cells in the states given
        cells = [
            sweeps.SweepCell("c", "s", {"seed": i}, tmp_path / f"cell{i}", status) for i, status in enumerate(statuses)
        ]
        return sweeps.SweepResult(cells)

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    monkeypatch.setattr(sweeps, "sweep", finished)
    assert main(["sweep", str(spec), "--quiet"]) == code
    err = capsys.readouterr().err
    assert ("1 cell(s) failed: cell0" in err) == statuses[0].startswith("failed")
    assert ("1 cell(s) unfinished" in err) == (code == 130)


@pytest.mark.slow
def test_ctrl_c_on_a_ray_sweep_leaves_started_cells_resumable(tmp_path, capsys):
    pytest.importorskip("ray")
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'out = "sweep"\ncontents = "{CONTENT}"\nstyles = "{STYLE}"\n'
        # cells long enough that the interrupt lands mid-cell even when a loaded machine delivers it late (it comes
        # 0.2 s after the first checkpoint, at step 4; 100 steps took 7-9 s on two loaded cores)
        '[base]\nweights = "none"\nsize = 48\nsteps = 100\nsnapshot_every = 4\n[vary]\nseed = [0, 1, 2]\n'
    )
    argv = ["sweep", str(spec), "--executor", "ray", "--workers", "2", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # its own session: the signal goes to the driver and everything it started, as Ctrl-C in a terminal does
    proc = subprocess.Popen(
        [sys.executable, "-m", "nst_lib.workbench.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a shell without job control starts background jobs with SIGINT ignored, and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not list((tmp_path / "sweep").glob("*/checkpoint.npz")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert "the same command resumes the sweep" in err and "Traceback" not in err
    first = {r["seed"]: r["status"] for r in _table(tmp_path / "sweep" / "sweep.csv")}
    assert first["2"] == "pending" and {first["0"], first["1"]} <= {"interrupted", "completed"}
    assert "interrupted" in first.values()
    assert main(argv) == 0  # the same command, here: a local Ray of its own again
    second = {r["seed"]: r["status"] for r in _table(tmp_path / "sweep" / "sweep.csv")}
    expected = {"interrupted": "resumed, completed", "completed": "skipped (done)"}
    assert second == {"0": expected[first["0"]], "1": expected[first["1"]], "2": "completed"}
    for seed in "012":
        rows = _table(tmp_path / "sweep" / f"tubingen_neckarfront__vangogh_starry_night__seed={seed}" / "losses.csv")
        assert [int(r["step"]) for r in rows] == list(range(1, 101))
