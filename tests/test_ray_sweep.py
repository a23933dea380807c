"""Sweeps as Ray tasks on a local Ray with 2 CPUs (random weights, 48 px): completion, skipping, the same images
as the in-process sweep, a worker killed mid-cell, and the one-line error without Ray."""

import csv
import json
import os
import re
import signal
import sys

import numpy as np
import pytest

from nst_lib import StyleConfig
from nst_lib.workbench.ray_executor import RayMissingError, task_options
from nst_lib.workbench.sweeps import sweep

from .conftest import CONTENT, DATA, STYLE

TINY = StyleConfig(weights=None, size=48, steps=3, snapshot_every=0)
STYLES = {"starry": STYLE, "mandala": DATA / "style" / "mandala.png"}
VARY = {"style_weight": [1e-3, 1e-2]}


def test_without_ray_the_ray_executor_fails_at_once_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(RayMissingError) as err:
        sweep(CONTENT, STYLE, TINY, out=tmp_path / "s", progress=False, executor="ray")
    assert str(err.value) == "executor='ray' needs Ray: pip install 'nst-workbench[ray]'"
    assert not (tmp_path / "s").exists()


def test_cells_take_a_gpu_where_there_are_gpus_and_impossible_requests_fail_now():
    from nst_lib.errors import ConfigError

    cpus, gpus = [{"CPU": 8.0}], [{"CPU": 8.0}, {"CPU": 4.0, "GPU": 2.0}]
    assert task_options(None, cpus) == {"num_cpus": 1, "num_gpus": 0, "max_calls": 0}
    # a GPU cell's worker runs that cell only: a reused worker would stay on the GPU it started on
    assert task_options(None, gpus) == {"num_cpus": 1, "num_gpus": 1, "max_calls": 1}
    assert task_options({"GPU": 0.5, "CPU": 2, "fast_disk": 1}, [{"CPU": 8.0, "GPU": 1.0, "fast_disk": 2.0}]) == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "resources": {"fast_disk": 1},
        "max_calls": 1,
    }
    assert task_options({"GPU": 0.5}, gpus)["num_cpus"] == 1  # a cell without CPU= still takes one
    with pytest.raises(ConfigError, match="asks for CPU=1, GPU=1; the Ray cluster's largest machine has 0"):
        task_options({"GPU": 1}, cpus)
    # two machines of one GPU each: a cell asking for two fits on neither
    with pytest.raises(ConfigError, match="GPU=2; the Ray cluster's largest machine has 1"):
        task_options({"GPU": 2}, [{"CPU": 4.0, "GPU": 1.0}] * 2)
    with pytest.raises(ConfigError, match="no machine of the Ray cluster has all of it"):
        task_options({"GPU": 1, "CPU": 8}, gpus)
    # a cluster an autoscaler may grow: a warning, and the cells wait for a machine that has it
    with pytest.warns(UserWarning, match="GPU=1; the Ray cluster's largest machine has 0: the cells wait"):
        assert task_options({"GPU": 1}, cpus, fixed=False)["num_gpus"] == 1
    pytest.importorskip("ray")
    import ray

    # ray.remote, which run_on_ray gives them to, takes these options as they are
    from nst_lib.workbench.ray_executor import cell_task

    assert ray.remote(**task_options(None, gpus))(cell_task)._default_options["max_calls"] == 1


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module: sweep() uses the Ray this process is connected to."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_sweep_completes_skips_and_matches_the_in_process_sweep(local_ray, tmp_path, capsys):
    here = sweep({"tubingen": CONTENT}, STYLES, TINY, VARY, out=tmp_path / "local", progress=False)
    there = sweep({"tubingen": CONTENT}, STYLES, TINY, VARY, out=tmp_path / "ray", executor="ray")
    assert [c.status for c in there] == ["completed"] * 4
    # one driver-side bar, fed only by the workers' step reports, reached every step of every cell
    assert "12/12" in capsys.readouterr().err
    assert "completed" in (tmp_path / "ray" / "sweep.csv").read_text()
    for a, b in zip(here, there):
        assert b.run_dir.parent == tmp_path / "ray" and a.run_dir.name == b.run_dir.name
        # same seeds and a seeded random network: the same optimisation, up to the rounding of other thread counts
        np.testing.assert_allclose([r["total"] for r in b.history], [r["total"] for r in a.history], rtol=1e-5)
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1
        worker = json.loads((b.run_dir / "config.json").read_text())["worker"]
        assert worker["threads"] == 1 and worker["pid"] != os.getpid()  # the one CPU its task was given
    again = sweep({"tubingen": CONTENT}, STYLES, TINY, VARY, out=tmp_path / "ray", progress=False, executor="ray")
    assert [c.status for c in again] == ["skipped (done)"] * 4
    assert [c.final["total"] for c in again] == pytest.approx([c.final["total"] for c in there])


def test_workers_get_the_drivers_backend_and_its_bfloat16_say(monkeypatch):
    from nst_lib.workbench.ray_executor import worker_environment

    monkeypatch.delenv("NST_CPU_BF16", raising=False)
    assert worker_environment("tensorflow") == {"env_vars": {"KERAS_BACKEND": "tensorflow"}}
    monkeypatch.setenv("NST_CPU_BF16", "0")
    assert worker_environment("tensorflow")["env_vars"] == {"KERAS_BACKEND": "tensorflow", "NST_CPU_BF16": "0"}


def test_cells_that_got_random_weights_where_the_driver_has_imagenets_are_named(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from nst_lib.workbench import ray_executor

    def cell(name, weights):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"network": {"weights": weights}}))
        return SimpleNamespace(run_dir=tmp_path / name, status="completed")

    cells = [cell("a", "random"), cell("b", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"), cell("c", "random")]
    cells.append(SimpleNamespace(run_dir=tmp_path / "never_started", status="pending"))
    cells.append(cell("d", "random"))
    cells[-1].status = "skipped (done)"  # run by an earlier call: not this call's workers' doing
    cells.append(cell("e", "random"))
    (tmp_path / "e" / "config.json").write_text("{")  # unreadable: says nothing, raises nothing
    auto, none = StyleConfig(weights="auto"), StyleConfig(weights=None)
    configs = [auto, auto, none, auto, auto, auto]
    monkeypatch.setattr(ray_executor, "imagenet_obtainable", lambda arch: True)
    assert ray_executor.random_where_imagenet(cells, configs) == ["a"]  # c asked for random ones
    monkeypatch.setattr(ray_executor, "imagenet_obtainable", lambda arch: False)  # nor can the driver have them
    assert ray_executor.random_where_imagenet(cells, configs) == []


def test_a_request_the_local_ray_of_this_process_cannot_meet_is_refused_at_once(local_ray, tmp_path):
    from nst_lib.errors import ConfigError

    # the fixture's ray.init() in this process, as in a notebook: no machine will join it, so no waiting forever
    with pytest.raises(ConfigError, match="GPU=1; the Ray cluster's largest machine has 0"):
        sweep(CONTENT, STYLE, TINY, out=tmp_path / "s", executor="ray", resources={"GPU": 1}, progress=False)


def test_a_failing_cell_has_the_same_one_line_status_on_ray_as_in_process(local_ray, tmp_path, monkeypatch):
    from nst_lib.workbench import ray_executor
    from nst_lib.workbench.ray_executor import failed_status

    assert failed_status(ValueError("first line\n  second")) == "failed: ValueError: first line"
    vary = {"content_layers": [("block4_conv2",), ("no_such_layer",)]}
    with pytest.warns(UserWarning, match="no_such_layer.*failed: ConfigError"):
        here = sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path / "local", progress=False)
    # the driver's word on cells a worker ran on random weights (see the test above) is said on the driver
    monkeypatch.setattr(ray_executor, "random_where_imagenet", lambda cells, configs: [cells[0].run_dir.name])
    with pytest.warns(UserWarning) as caught:
        there = sweep(CONTENT, STYLE, TINY.replace(steps=1), vary, out=tmp_path / "ray", executor="ray")
    said = [str(w.message) for w in caught]
    assert any(re.search("no_such_layer.*failed: ConfigError", m) for m in said), said
    assert any(m.startswith("sweep cells ran on random weights") and there[0].run_dir.name in m for m in said), said
    assert [c.status for c in there] == [c.status for c in here]
    assert here[0].status == "completed" and here[1].status.startswith("failed: ConfigError: unknown layer")
    statuses = [
        [row["status"] for row in csv.DictReader((tmp_path / d / "sweep.csv").open())] for d in ("local", "ray")
    ]
    assert statuses[0] == statuses[1] == [c.status for c in here]


def _kill_once(marker):
    """A step callback that SIGKILLs its worker at step 3 of the first cell to get there (and of no other)."""

    def kill(info):
        if info.step == 3:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def test_a_killed_worker_is_reported_by_name_and_the_next_call_resumes_its_cell(local_ray, tmp_path):
    from nst_lib import stylize

    config = TINY.replace(steps=4, snapshot_every=2)  # a checkpoint at step 2, the kill at step 3
    vary = {"seed": [0, 1]}
    args = ({"tubingen": CONTENT}, {"starry": STYLE}, config, vary)
    with pytest.warns(UserWarning, match=r"sweep cell tubingen__starry__seed=\d failed: WorkerCrashedError"):
        first = sweep(
            *args, out=tmp_path, progress=False, executor="ray", retries=0, callbacks=[_kill_once(tmp_path / "k")]
        )
    (dead,) = first.failed
    assert sorted(c.status for c in first) == ["completed", "failed: WorkerCrashedError"]
    with (tmp_path / "sweep.csv").open() as fh:
        table = {row["run_dir"]: row["status"] for row in csv.DictReader(fh)}
    assert table[str(dead.run_dir)] == "failed: WorkerCrashedError"
    second = sweep(*args, out=tmp_path, progress=False, executor="ray")
    statuses = {c.run_dir.name: c.status for c in second}
    assert statuses[dead.run_dir.name] == "resumed, completed"
    assert sorted(statuses.values()) == ["resumed, completed", "skipped (done)"]
    # it lost only the step after its checkpoint: resumed at step 2, it ends where an uninterrupted run ends
    cell = next(c for c in second if c.run_dir == dead.run_dir)
    whole = stylize(CONTENT, STYLE, config.replace(**cell.overrides), out=None, progress=False)
    np.testing.assert_allclose([r["total"] for r in cell.history], whole.losses("total"), rtol=1e-5)
    assert np.abs(cell.image.astype(int) - whole.image.astype(int)).max() <= 1


def test_ray_retries_a_killed_cell_from_its_checkpoint_within_the_same_call(local_ray, tmp_path):
    config = TINY.replace(steps=4, snapshot_every=2)
    result = sweep(
        CONTENT, STYLE, config, out=tmp_path, progress=False, executor="ray", callbacks=[_kill_once(tmp_path / "k")]
    )
    assert (tmp_path / "k").exists()  # the worker was killed once
    (cell,) = result
    assert cell.status == "resumed, completed" and [r["step"] for r in cell.history] == [1, 2, 3, 4]
