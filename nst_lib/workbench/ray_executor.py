"""Sweep cells as Ray tasks: ``sweep(..., executor="ray")``.

Each cell is one task running ``sweeps.run_cell`` on a worker, so a cell decides on the worker, from its run
folder, whether to skip, resume or start: a task that Ray re-runs after its worker died resumes from the cell's
last checkpoint, and the next ``sweep`` call does the same for cells that failed. The driver keeps one progress
bar, fed by the workers through a small actor; Ctrl-C on the driver cancels the tasks not yet started and stops
the running ones after their current step (Ray raises KeyboardInterrupt in them, which the step loop turns into
a checkpointed stop).

Ray is an optional extra (``pip install 'nst-workbench[ray]'``) and is imported only here, only when a Ray sweep
is asked for.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import backend
from ..config import StyleConfig
from ..errors import ConfigError, NSTError
from ..features import imagenet_obtainable
from ..optim import Callback, StepInfo
from ..runs import Run, hold

EXTRA = "nst-workbench[ray]"
# how long the driver waits, after Ctrl-C, for running cells to write their checkpoint and stop
CANCEL_GRACE_S = 60.0


class RayMissingError(NSTError):
    """``executor="ray"`` without Ray installed."""


def require_ray():
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise RayMissingError(f"executor='ray' needs Ray: pip install '{EXTRA}'") from None
    return ray


# --- on the workers -------------------------------------------------------------------------------------
class StepCounter:
    """A Ray actor on the driver's side of the sweep: steps done per cell (a retried cell starts its count
    again from what its run folder already holds, so a retry is not counted twice)."""

    def __init__(self):
        self.steps: dict[int, int] = {}

    def start(self, index: int, done: int) -> None:
        self.steps[index] = done

    def add(self, index: int, n: int) -> None:
        self.steps[index] = self.steps.get(index, 0) + n

    def total(self) -> int:
        return sum(self.steps.values())


class _Reporter(Callback):
    """Counts a cell's steps and sends them to the counter at most every ``every`` seconds (one actor call per
    step would cost more than a small cell's step)."""

    def __init__(self, counter, index: int, every: float = 0.5):
        self.counter, self.index, self.every = counter, index, every
        self.pending, self.last = 0, time.monotonic()
        self.sent = None  # the last call to the counter

    def offset(self, done: int) -> None:  # the cell's count so far, including steps not yet sent
        self.pending = 0
        self.sent = self.counter.start.remote(self.index, int(done))

    def on_step(self, info: StepInfo):
        self.pending += 1
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def on_end(self, info):
        self.flush()

    def flush(self, wait: bool = False) -> None:
        """Send the steps not yet sent; with ``wait``, return once the counter has every one (an actor runs one
        caller's calls in order), so that the driver, which reads the count when the cell's task has returned,
        does not miss the last ones."""
        if self.pending:
            self.sent = self.counter.add.remote(self.index, self.pending)
            self.pending, self.last = 0, time.monotonic()
        if wait and self.sent is not None:
            import ray

            ray.get(self.sent)


def worker_environment(backend_name: str) -> dict[str, Any]:
    """The Ray ``runtime_env`` a cell's worker starts in: the driver's Keras backend (a cluster's workers do not
    share the driver's environment), and under JAX no up-front reservation of the GPU's memory — XLA takes 75 % of
    a card when it starts, so a second cell sharing the card would run out (``resources={"GPU": 0.5}``). Both have
    to be set before the worker imports Keras."""
    env = {"KERAS_BACKEND": backend_name}
    if backend_name == "jax":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if "NST_CPU_BF16" in os.environ:  # the driver's say on what "auto" precision picks on a CPU
        env["NST_CPU_BF16"] = os.environ["NST_CPU_BF16"]
    return {"env_vars": env}


def configure_worker(cpus: float) -> dict[str, Any]:
    """Before a worker's first cell, under TensorFlow: memory growth on every visible GPU (cells sharing a card
    must not each reserve all of it) and TensorFlow's thread pools sized to the CPUs Ray gave the task (by default
    TensorFlow uses every core of the machine, whatever the task asked for). A worker process that ran a cell
    before keeps its settings: TensorFlow fixes both when it starts. Under JAX (``worker_environment`` did the
    memory part; XLA's CPU threads cannot be set once JAX is imported) it only reports, without TensorFlow."""
    if backend.name() == "jax":
        import jax

        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend": "jax",
            "threads": None,
            "gpus": [str(d) for d in jax.devices() if d.platform == "gpu"],
            "memory_growth": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") == "false",
        }
    import tensorflow as tf

    threads = max(1, round(cpus))
    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this worker: set by its first cell
        pass
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "backend": "tensorflow",
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "gpus": [g.name for g in gpus],
        "memory_growth": all(tf.config.experimental.get_memory_growth(g) for g in gpus),
    }


# how long a cell waits for a cell folder held from another machine: longer than an NFSv4 lease (90 s by default),
# after which a lost node's locks go (one held on the cell's own machine is a live process's: refused at once)
RETRY_LOCK_WAIT_S = 180.0


def cell_task(run_cell, cell, config: StyleConfig, content, style, callbacks: Sequence, counter, index: int):
    """What one Ray task runs: ``run_cell`` (``sweeps.run_cell``, handed in so that this module does not import
    the one that imports it) on the cell, with the worker's settings recorded in its run folder."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    worker = configure_worker(cpus)
    reporter = _Reporter(counter, index)
    reporter.offset(0)  # a retried cell counts again from what its folder holds
    cell.run_dir.parent.mkdir(parents=True, exist_ok=True)
    # a retry on another node waits for the lost node's lock on the cell to lapse (its NFS lease)
    with hold(cell.run_dir, lapse_s=RETRY_LOCK_WAIT_S):
        run_cell(cell, config, content, style, [reporter, *callbacks], reporter.offset)
        reporter.flush(wait=True)
        if (cell.run_dir / "config.json").is_file() and cell.status != "skipped (done)":  # the worker that ran it
            Run.open(cell.run_dir).write_record(worker=worker)
    return cell


# --- on the driver --------------------------------------------------------------------------------------
def connect(ray, address: str | None, workers: int | None) -> bool:
    """Use the Ray this process is connected to, else join ``address``, else start a local Ray with ``workers``
    CPUs (a new one: not a cluster that ``RAY_ADDRESS`` or a ``ray start`` on this machine would have Ray join;
    ``address="auto"`` joins that). True when this call connected (and so disconnects at the end)."""
    if ray.is_initialized():
        return False
    if address is not None and workers is not None:
        raise ConfigError("workers sets the CPUs of a local Ray; a cluster's size is set where it is started")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers}")
    if address is None:
        address = "local"
    # worker output (TensorFlow's start-up lines) stays in Ray's logs; failures are reported per cell
    ray.init(address=address, num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True


def _local_head() -> bool:
    """Whether this process started the Ray it is connected to (this call, or ``ray.init()`` in a notebook): a
    local Ray no machine joins. A joined cluster, or a Ray version without this (private) attribute: False."""
    try:
        from ray._private import worker

        node = getattr(worker, "_global_node", None)
        return bool(node is not None and node.head)
    except Exception:
        return False


def task_options(
    resources: Mapping[str, float] | None, nodes: Sequence[Mapping[str, float]], fixed: bool = True
) -> dict[str, Any]:
    """Ray options for one cell: one GPU where a machine of the cluster has one, else one CPU; ``resources`` (Ray
    resource names; a cell takes one CPU unless it names ``CPU``) replaces that. ``nodes``: the resources of each
    machine now in the cluster. A request no machine can meet fails now where no machine can join (``fixed``: a
    local Ray this process started), and otherwise warns that the cells wait for one (an autoscaler may add it).
    A GPU cell's worker process runs that one cell (``max_calls``): a worker reused for the next cell would keep
    the GPU its TensorFlow or JAX started on, whichever GPU Ray gave that cell."""
    if resources is None:
        resources = {"CPU": 1, "GPU": 1} if any(n.get("GPU", 0) >= 1 for n in nodes) else {"CPU": 1}
    wanted = {"CPU": 1, **resources}
    for name, amount in wanted.items():
        if amount < 0:
            raise ConfigError(f"resources: {name} must be ≥ 0, got {amount}")
    fits = [n for n in nodes if all(amount <= n.get(name, 0) for name, amount in wanted.items())]
    if not fits:
        largest = {name: max((n.get(name, 0) for n in nodes), default=0) for name in wanted}
        short = next((name for name, amount in wanted.items() if amount > largest[name]), None)
        have = (
            f"the Ray cluster's largest machine has {largest[short]:g}"
            if short
            else "no machine of the Ray cluster has all of it"
        )
        what = f"resources: a cell asks for {', '.join(f'{k}={v:g}' for k, v in wanted.items())}; {have}"
        if fixed:
            raise ConfigError(what)
        warnings.warn(f"{what}: the cells wait until a machine that has it joins", stacklevel=3)
    options = {"num_cpus": wanted.pop("CPU"), "num_gpus": wanted.pop("GPU", 0)}
    if wanted:
        options["resources"] = wanted
    options["max_calls"] = 1 if options["num_gpus"] else 0  # 0: no limit
    return options


def _absolute(image):
    return str(Path(image).resolve()) if isinstance(image, (str, Path)) else image


def run_on_ray(
    run_cell,
    cells,
    configs,
    contents,
    styles,
    callbacks,
    progress: bool,
    total: int,
    desc: str,
    address: str | None,
    resources: Mapping[str, float] | None,
    workers: int | None,
    retries: int,
    other_run,
) -> None:
    """Run ``cells`` as Ray tasks (each ``run_cell(cell, config, content, style, callbacks, report)``) and fill in
    each one's status, history and final losses. ``other_run(record, config, content, style)`` says why a cell
    folder's run is not the cell's own ('' when it is; ``sweeps.other_run``): a cell cancelled before it started
    reports a finished run in its folder as done only where it is its own."""
    ray = require_ray()
    if retries < 0:
        raise ConfigError(f"retries must be ≥ 0, got {retries}")
    started = connect(ray, address, workers)
    bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)
    counter = None
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        options = task_options(resources, nodes, fixed=_local_head())  # no machine joins a local Ray
        # max_calls only takes effect given to ray.remote (``.options`` ignores it)
        task = ray.remote(max_retries=retries, runtime_env=worker_environment(backend.name()), **options)(cell_task)
        counter = ray.remote(num_cpus=0)(StepCounter).remote()
        refs = {}
        for i, (cell, config) in enumerate(zip(cells, configs)):
            # workers see absolute paths: a relative one would be read against each worker's own directory
            remote_cell = replace(cell, run_dir=cell.run_dir.resolve())
            content, style = _absolute(contents[cell.content]), styles[cell.style]
            style = [_absolute(s) for s in style] if isinstance(style, (list, tuple)) else _absolute(style)
            refs[task.remote(run_cell, remote_cell, config, content, style, list(callbacks), counter, i)] = i

        def from_folder(i):  # a cell cancelled before it started
            cell = cells[i]
            _from_folder(
                cell,
                configs[i],
                lambda record: other_run(record, configs[i], contents[cell.content], styles[cell.style]),
            )

        _drive(ray, refs, cells, counter, bar, from_folder)
        random = random_where_imagenet(cells, configs)
        if random:  # a worker's warning stays in Ray's logs: say it here
            warnings.warn(
                f"sweep cells ran on random weights where this machine can have the ImageNet ones (on disk or by "
                f"download; their workers could not: set KERAS_HOME or NST_WEIGHTS_DIR there): {', '.join(random)}",
                stacklevel=3,
            )
    finally:
        bar.close()
        if counter is not None:
            ray.kill(counter)
        if started:
            ray.shutdown()


def _drive(ray, refs: dict, cells, counter, bar, from_folder) -> None:
    collected: set = set()

    def collect(ref):
        _collect(ray, ref, cells[refs[ref]], lambda: from_folder(refs[ref]))
        collected.add(ref)

    def show():
        steps = ray.get(counter.total.remote())
        bar.update(steps - bar.n)
        failed = sum(cells[refs[r]].status.startswith("failed") for r in collected)
        postfix = f"{len(collected)}/{len(refs)} cells" + (f", {failed} failed" if failed else "")
        bar.set_postfix_str(postfix, refresh=False)

    try:
        while len(collected) < len(refs):
            pending = [r for r in refs if r not in collected]
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0.5, fetch_local=False)
            for ref in ready:
                collect(ref)
            show()
    except KeyboardInterrupt:
        # cancel what has not started; a running cell gets KeyboardInterrupt, checkpoints and returns
        pending = [r for r in refs if r not in collected]
        for ref in pending:
            ray.cancel(ref)
        if pending:
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
            for ref in ready:
                collect(ref)
        for ref in refs:
            if ref not in collected:
                from_folder(refs[ref])
        show()  # the steps the stopped cells did


def random_where_imagenet(cells, configs) -> list[str]:
    """The cells whose run asked for ``weights="auto"`` and got random weights on its worker although ImageNet's
    are obtainable here, on the driver (their worker lacks the file, or the environment that points to it)."""
    names = []
    for cell, config in zip(cells, configs):
        path = cell.run_dir / "config.json"
        # a cell skipped as done ran in an earlier call, perhaps elsewhere: not this call's workers' doing
        if config.weights != "auto" or cell.status == "skipped (done)" or not path.is_file():
            continue
        try:
            network = json.loads(path.read_text()).get("network") or {}
        except (OSError, ValueError):  # an unreadable record says nothing here; the cell's status says the rest
            continue
        if network.get("weights") == "random" and imagenet_obtainable(config.arch):
            names.append(cell.run_dir.name)
    return names


def _collect(ray, ref, cell, cancelled) -> None:
    try:
        done = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        cancelled()
        return
    except ray.exceptions.RayTaskError as err:  # the cell itself raised (bad image, non-finite loss, …)
        cause = getattr(err, "cause", None) or err
        cell.status = failed_status(cause)
        return
    except ray.exceptions.RayError as err:  # its worker or node died, out of memory, …
        cell.status = f"failed: {type(err).__name__}"
        return
    cell.status, cell.history, cell.final = done.status, done.history, done.final


def _from_folder(cell, config, other_run) -> None:
    """A cancelled cell: what its folder says (this cell's run completed by an earlier call, or interrupted with a
    checkpoint), else still pending, as where ``other_run(record)`` says the folder holds another cell's run (other
    settings or input files), which the next call sets aside."""
    if (cell.run_dir / "checkpoint.npz").is_file():
        run = Run.open(cell.run_dir)
        if other_run(run.record):
            return
        rows = run.read_rows("losses.csv")
        done = run.record.get("status") == "completed" and run.record.get("steps_done", 0) >= config.steps
        cell.status, cell.history = ("skipped (done)" if done else "interrupted"), rows
        cell.final = rows[-1] if rows else {}


def failed_status(exc: BaseException) -> str:
    """A failed cell's status, the same in-process and on Ray: ``failed: ImageError: <the message's first line>``
    (one line, for the table, ``sweep.csv`` and the warning)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"failed: {type(exc).__name__}" + (f": {text}" if text else "")
