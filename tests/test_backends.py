"""The engine on both Keras backends, TensorFlow and JAX: the same numbers from the same code, run folders that
resume under the other backend, and no TensorFlow under JAX. Each backend runs in its own process (Keras reads
KERAS_BACKEND once, when it is imported)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import CONTENT, ROOT, STYLE, needs_vgg19

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed: pip install 'nst-workbench[jax]'"
)


def _run(backend: str, code: str, timeout: int = 600) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )
    assert out.returncode == 0, f"{backend}: {out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


@pytest.fixture(scope="module")
def on_each_backend(tmp_path_factory):
    """Per backend, in one process (its start-up and the network's build paid once): ``evaluate`` at one image and a
    30-step run, both at 128 px with the real VGG19."""
    folder = tmp_path_factory.mktemp("backends")
    code = f"""
import numpy as np, keras
from nst_lib import evaluate, stylize
from nst_lib.images import load_image
rng = np.random.default_rng(0)
content = load_image({str(CONTENT)!r}, 128)
image = np.clip(0.5 * content + rng.normal(128, 40, content.shape), 0, 255).astype(np.float32)
e = evaluate(image, {str(CONTENT)!r}, {str(STYLE)!r}, size=128)
r = stylize({str(CONTENT)!r}, {str(STYLE)!r}, size=128, steps=30, out=None, progress=False)
np.savez({str(folder)!r} + "/" + keras.backend.backend() + ".npz", grad=e.grad,
         terms=[e.total, e.content, e.style, e.tv], run=[r.history[0]["total"], r.history[-1]["total"]])
"""
    for backend in ("tensorflow", "jax"):
        _run(backend, code)
    return {backend: np.load(folder / f"{backend}.npz") for backend in ("tensorflow", "jax")}


@needs_jax
@needs_vgg19
def test_evaluate_gives_the_same_loss_and_gradient_on_both_backends(on_each_backend):
    tf_, jx = on_each_backend["tensorflow"], on_each_backend["jax"]
    np.testing.assert_allclose(jx["terms"], tf_["terms"], rtol=1e-3)
    assert np.linalg.norm(jx["grad"] - tf_["grad"]) <= 1e-3 * np.linalg.norm(tf_["grad"])


@needs_jax
@needs_vgg19
def test_a_30_step_run_lowers_the_loss_on_both_backends(on_each_backend):
    finals = {}
    for backend, result in on_each_backend.items():
        first, last = result["run"]
        assert last < 0.3 * first, (backend, first, last)
        finals[backend] = last
    assert finals["jax"] == pytest.approx(finals["tensorflow"], rel=0.05)  # the same optimisation, float rounding apart


@needs_jax
@needs_vgg19
@pytest.mark.parametrize("first,second", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_a_run_folder_written_under_one_backend_resumes_under_the_other(first, second, tmp_path):
    start = f"""
from nst_lib import stylize
r = stylize({str(CONTENT)!r}, {str(STYLE)!r}, size=64, steps=4, snapshot_every=2, out={str(tmp_path)!r},
            name="run", timestamp=False, progress=False)
print(r.status)
"""
    assert _run(first, start) == "completed"
    cont = f"""
import json, keras
from nst_lib import resume
r = resume({str(tmp_path / "run")!r}, steps=8, progress=False)
print(json.dumps({{"status": r.status, "steps": [h["step"] for h in r.history],
                   "totals": [h["total"] for h in r.history], "backend": keras.backend.backend()}}))
"""
    report = json.loads(_run(second, cont))
    assert report["status"] == "completed" and report["steps"] == list(range(1, 9)) and report["backend"] == second
    totals = report["totals"]
    assert totals[-1] < totals[3]  # the resumed steps go on lowering the loss
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["versions"]["backend"] == first  # the record keeps who started it; the run went on under second


@needs_jax
def test_under_jax_the_engine_workbench_and_cli_never_import_tensorflow(tmp_path):
    code = f"""
import sys, numpy as np
from nst_lib import StyleConfig, stylize, evaluate
from nst_lib.workbench.sweeps import sweep
from nst_lib.workbench.cli import main
from nst_lib.errors import NSTError
kw = dict(weights=None, size=48, snapshot_every=0)
r = stylize({str(CONTENT)!r}, {str(STYLE)!r}, steps=2, out={str(tmp_path)!r}, progress=False, **kw)
evaluate(r.image, {str(CONTENT)!r}, {str(STYLE)!r}, tile_size=224, size=192, weights=None)  # 3 × 2 tiles
sweep({{"t": {str(CONTENT)!r}}}, {{"s": {str(STYLE)!r}}}, StyleConfig(**kw), {{"steps": [2]}},
      out={str(tmp_path / "sweep")!r}, progress=False)
assert main(["stylize", {str(CONTENT)!r}, {str(STYLE)!r}, "--weights", "none", "--size", "48", "--steps", "2",
             "--out", {str(tmp_path / "cli")!r}, "--quiet"]) == 0
try:
    from nst_lib.models import DCGAN
    DCGAN()
    raise SystemExit("a model was built under JAX")
except NSTError as err:
    assert "TensorFlow only" in str(err) and "\\n" not in str(err)
print("tensorflow" in sys.modules)
"""
    assert _run("jax", code) == "False"


@needs_jax
@pytest.mark.slow
def test_the_gpu_benchmark_runs_on_jax_without_tensorflow(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = ROOT / "benchmarks" / "bench_gpu.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = [*report["step"], *report["precision"], *report["memory"], report["quickstart"]]
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r]
    assert not any(r["tensorflow_imported"] for r in rows)
    assert {r["precision"] for r in report["precision"]} == {"float32", "mixed"}
    # one scale of the planned steps (the default schedule would run more, at other sizes), re-scored in float32
    assert all(r["steps"] == report["plan"]["precision_steps"] for r in report["precision"])
    assert all(r["float32_loss_of_output"] > 0 for r in report["precision"])
    assert [r["tiled"] for r in report["memory"]] == [False, True] * len(report["plan"]["memory_sizes"])
    assert all(r["ratio"] > 0 and r["peak_bytes"] > 0 for r in report["step"])
    assert report["machine"]["backend"] == "jax"


@needs_jax
def test_a_ray_worker_under_jax_reports_without_tensorflow_and_keeps_the_gpu_unreserved():
    code = """
import sys
from nst_lib.workbench.ray_executor import configure_worker, worker_environment
worker = configure_worker(1)
assert "tensorflow" not in sys.modules, "a JAX worker imported TensorFlow"
assert worker["backend"] == "jax" and worker["threads"] is None
env = worker_environment("jax")["env_vars"]
assert env == {"KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
print("ok")
"""
    assert _run("jax", code) == "ok"
