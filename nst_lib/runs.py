"""Run folders: one self-describing folder per run, never overwritten, resumable. One API for every kind of
run (stylisations, training runs, guided generation, sweep cells):

    results/<YYYYmmdd-HHMMSS>_<name>/
        config.json       the record: kind, config, inputs, versions, seed, device, status, timings, peak
                          memory (atomic writes)
        <rows>.csv        per-step or per-epoch rows (losses.csv, epochs.csv): appended, read back, truncated on resume
        checkpoint.npz    arrays a resumed run needs (written atomically)
        <folder>/         numbered images (snapshots/step_00050.png, samples/epoch_003.png, …), read back in order
    results/.<YYYYmmdd-HHMMSS>_<name>.lock   while a process writes the folder (``hold``): one writer at a time

What each kind of run stores is its own business (``transfer``: the stylisation's inputs and optimiser state;
``models.training``: network weights; ``models.guidance``: the latent); how it is stored is this module's.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import socket
import threading
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .backend import device_name, peak_memory_mb, versions
from .config import RUNS_DIR
from .errors import ConfigError, NSTError, RunInUseError
from .images import save_image

# columns read back as integers; every other column is a float where it parses as one
INTEGER_COLUMNS = ("step", "epoch", "level", "scale", "iteration")


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def slug(text: str) -> str:
    """A folder-name-safe version of ``text`` (accents transliterated: 'Tübingen' → 'Tubingen')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._=+]+", "-", ascii_text).strip("-")[:120] or "run"


def json_default(value: Any) -> Any:
    """What JSON cannot hold: numpy numbers and arrays as Python's (a sweep's ``np.arange`` of steps must read
    back as integers, not the strings '3'), anything else as its text (a path)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def changed_setting(recorded: dict, wanted: dict, ignore: Sequence[str] = ()) -> str:
    """The first field (``'init: 'content' → 'noise''``) in which a run's recorded config differs from ``wanted``
    (a config's ``to_dict()``), '' where none does; fields in ``ignore``, or that the record predates, are not
    compared."""
    wanted = json.loads(json.dumps(wanted, default=json_default))  # tuples as lists, numpy numbers as Python's
    for key, value in wanted.items():
        if key in recorded and key not in ignore and recorded[key] != value:
            return f"{key}: {recorded[key]!r} → {value!r}"
    return ""


def check_network(run: Run, key: str, network: dict[str, str], what: str) -> None:
    """Refuse to go on with ``run`` where its ``what`` resolve to another network (``FeatureExtractor.resolved()``:
    weights file and preprocessing) than its record names under ``key``: it would go on against other weights."""
    recorded = run.record.get(key)
    if recorded and recorded != network:
        raise ConfigError(
            f"{run.path}: the run used {what} {recorded['weights']} ({recorded['preprocessing']} preprocessing); "
            f"here they resolve to {network['weights']} ({network['preprocessing']}): resume where those weights are"
        )


def record_network(run: Run, key: str, network: dict[str, str], what: str) -> None:
    """Record in ``run`` under ``key`` the network its ``what`` resolved to on this machine (``check_network``
    first: a resumed run whose record names another stops)."""
    check_network(run, key, network, what)
    run.write_record(**{key: network})


# --- one process at a time in a run folder ------------------------------------------------------------------
try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; a run folder is not guarded there
    fcntl = None

_held: dict[Path, list[int]] = {}  # folder → [the thread holding it, how often] (a sweep cell's hold, then its run's)
_held_guard = threading.Lock()
# what flock says on a file system without locks (some FUSE mounts): run unguarded there, as on Windows
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def lock_file(folder: str | Path) -> Path:
    """The lock of a run folder: a hidden file beside it (a sweep cell is held before its folder exists)."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def hold(folder: str | Path, wait_s: float = 0.0, lapse_s: float = 0.0) -> Iterator[None]:
    """Hold the run folder ``folder`` (existing, or about to be made in an existing folder) while the block runs:
    another process's or thread's ``hold`` of it waits up to ``wait_s`` seconds, and up to ``lapse_s`` where the
    holder is on another machine (which may be lost: its lock lapses with its NFSv4 lease, 90 s by default; one on
    this machine is alive), then raises ``RunInUseError`` naming the holder. The operating system lets go of a dead
    holder's lock, so nothing stale is left to clear by hand. Nested holds of one folder in one thread pass through
    (a sweep cell, then its run)."""
    key = Path(folder).resolve()
    me = threading.get_ident()
    start = time.monotonic()
    deadline = start + wait_s
    while True:
        with _held_guard:
            entry = _held.get(key)
            if entry is None or entry[0] == me:
                nested = entry is not None
                _held[key] = [me, (entry[1] if entry else 0) + 1]
                break
        if time.monotonic() >= deadline:  # e.g. a panel's render in its thread, resumed from the notebook
            raise RunInUseError(f"{key}: in use by another thread of this process ({os.getpid()})")
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))
    try:
        fd = None if nested or fcntl is None else _lock(lock_file(key), key, deadline, start + max(wait_s, lapse_s))
        try:
            yield
        finally:
            if fd is not None:  # unlinked while still locked: a process waiting on the file finds it gone, tries anew
                try:
                    lock_file(key).unlink(missing_ok=True)
                finally:
                    os.close(fd)
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if not _held[key][1]:
                del _held[key]


def _lock(path: Path, folder: Path, deadline: float, remote_deadline: float) -> int | None:
    """Lock ``path`` (an exclusive ``flock``), created if need be, trying until ``deadline`` (``remote_deadline``
    while its holder is on another machine): the file descriptor that holds it, or None where the file system has
    no locks."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            state = _try_lock(fd, path)
        except BaseException:  # a full disk, Ctrl-C: no descriptor (and lock) left behind
            os.close(fd)
            raise
        if state == "held":
            return fd
        os.close(fd)
        if state == "busy":
            who = _holder(path)
            until = deadline if who.get("host") in (None, socket.gethostname()) else remote_deadline
            if time.monotonic() >= until:
                raise RunInUseError(f"{folder}: in use by {_describe(who)}")
            time.sleep(min(2.0, max(until - time.monotonic(), 0.0)))
        elif state != "moved":  # ("moved": let go and unlinked meanwhile; the file at the path now is tried)
            warnings.warn(
                f"{folder}: cannot lock its run folder on this file system ({state}); unguarded", stacklevel=4
            )
            return None


def _try_lock(fd: int, path: Path) -> str:
    """'held' (the holder's line written into the file), 'busy', 'moved' (the locked file is no longer the one at
    the path) or, where the file system has no locks, its reason."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    except OSError as err:
        if err.errno == errno.ESTALE:  # NFS: the holder unlinked it under this descriptor
            return "moved"
        if err.errno in _NO_LOCKS:
            return err.strerror or str(err)
        raise
    try:
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            return "moved"
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ESTALE):
            return "moved"
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}).encode())
    return "held"


def _holder(path: Path) -> dict:
    """Who holds a lock, as its holder wrote it (pid, host, since); {} where it cannot be read (written this
    instant, or by another version)."""
    try:
        who = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return who if isinstance(who, dict) else {}


def _describe(who: dict) -> str:
    """'process 123 on host since 2026-12-07T10:00:00', or 'another process'."""
    if {"pid", "host", "since"} <= set(who):
        return f"process {who['pid']} on {who['host']} since {who['since']}"
    return "another process"


class Run:
    """A run folder. ``Run.create`` never reuses an existing folder; ``Run.open`` reads one back."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.record: dict[str, Any] = {}

    @classmethod
    def create(cls, root: str | Path = RUNS_DIR, name: str = "run", timestamp: bool = True, subdirs=()) -> Run:
        """A new folder ``root/<time>_<name>`` (``root/<name>`` without timestamp); a taken name gets -2, -3…"""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file of that name, no permission, a read-only disk
            raise NSTError(f"{root}: cannot make the output folder ({err.strerror or err})") from None
        stem = f"{datetime.now():%Y%m%d-%H%M%S}_{slug(name)}" if timestamp else slug(name)
        for i in range(1, 10_000):
            path = root / (stem if i == 1 else f"{stem}-{i}")
            try:
                path.mkdir()  # atomic: fails if another run took the name
            except FileExistsError:
                continue
            for sub in subdirs:
                (path / sub).mkdir()
            return cls(path)
        raise NSTError(f"{root}: cannot find a free run folder name for {stem}")

    @classmethod
    def open(cls, path: str | Path, kind: str | None = None) -> Run:
        """Read a run folder back; with ``kind``, refuse a folder whose record says it is another kind of run
        (stylisations written before records had a kind count as 'stylize')."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise NSTError(f"{path}: not a run folder (no config.json)")
        run = cls(path)
        try:
            run.record = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise NSTError(f"{path / 'config.json'}: unreadable run record ({err})") from None
        if not isinstance(run.record, dict):
            raise NSTError(f"{path / 'config.json'}: not a run record (a JSON {type(run.record).__name__})")
        if kind is not None and run.kind != kind:
            raise NSTError(f"{path}: a {run.kind} run, not a {kind} run")
        return run

    @classmethod
    @contextmanager
    def held(cls, path: str | Path, kind: str | None = None) -> Iterator[Run]:
        """``Run.open`` of a folder this process holds (``hold``) while the block runs; read once held, since its
        last holder may have written it meanwhile (a second resume of a running folder: ``RunInUseError``)."""
        with hold(cls.open(path, kind=kind).path):
            yield cls.open(path, kind=kind)

    @property
    def kind(self) -> str:
        return self.record.get("kind", "stylize")

    # --- the record ------------------------------------------------------------------------------------
    def write_record(self, **fields: Any) -> None:
        self.record.update(fields)
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=2, default=json_default))
        tmp.replace(self.path / "config.json")

    def begin(self, kind: str, **fields: Any) -> None:
        """The record of a new run: its kind and what it was asked, plus versions, device, start time."""
        self.write_record(
            kind=kind, **fields, versions=versions(), device=device_name(), status="running", started=now()
        )

    def end(self, status: str, **fields: Any) -> None:
        """The run's end: its status, what it reports, and the process's peak memory so far (MB). A resumed run's
        earlier sessions keep their ``timings`` and peak in ``earlier_timings``, oldest first."""
        if "timings" in fields and self.record.get("timings"):  # the record still holds the last session's
            earlier = {**self.record["timings"], "peak_memory_mb": self.record.get("peak_memory_mb")}
            self.record["earlier_timings"] = [*self.record.get("earlier_timings", []), earlier]
        self.write_record(status=status, **fields, peak_memory_mb=peak_memory_mb(), finished=now())

    # --- rows ------------------------------------------------------------------------------------------
    def append_rows(self, name: str, rows: Sequence[dict]) -> None:
        """Append rows to ``name`` (a CSV in the folder); the first rows written fix the columns."""
        if not rows:
            return
        path = self.path / name
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def write_rows(self, name: str, rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
        """Replace ``name`` with ``rows`` (atomically)."""
        columns = list(columns or (rows[0] if rows else []))
        tmp = self.path / (name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path / name)

    def read_rows(self, name: str) -> list[dict]:
        return read_rows(self.path / name)

    def truncate_rows(self, name: str, key: str, last: int) -> list[dict]:
        """Keep the rows with ``key`` ≤ ``last`` (a resumed run drops what came after its checkpoint)."""
        rows = [r for r in self.read_rows(name) if r[key] <= last]
        if (self.path / name).exists():
            self.write_rows(name, rows, self._columns(name))
        return rows

    def _columns(self, name: str) -> list[str]:
        with (self.path / name).open(newline="") as fh:
            return next(csv.reader(fh), [])

    # --- checkpoints -----------------------------------------------------------------------------------
    def save_arrays(self, arrays: dict[str, Any], name: str = "checkpoint.npz") -> None:
        """Write ``arrays`` as one .npz, atomically (a crash leaves the previous checkpoint intact)."""
        tmp = self.path / (Path(name).stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(self.path / name)

    def load_arrays(
        self, name: str = "checkpoint.npz", keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray] | None:
        """The arrays of ``name`` (only ``keys`` when given: an .npz is read lazily, key by key)."""
        path = self.path / name
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in (data.files if keys is None else keys)}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # truncated, or not ours
            raise NSTError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from None

    # --- images ----------------------------------------------------------------------------------------
    def save_image(self, relative: str | Path, image) -> Path:
        return save_image(self.path / relative, image)

    def numbered_images(self, folder: str, pattern: str = "*_*.png") -> list[tuple[int, np.ndarray]]:
        """(number, uint8 image) for every ``<folder>/<prefix>_<number>.png``, in numeric order."""
        return read_numbered_images(self.path / folder, pattern)


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: _parse(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _parse(key: str, value: str) -> Any:
    if value == "":  # a column a row did not have (e.g. older rows of a file whose columns grew)
        return None
    if key in INTEGER_COLUMNS:
        return int(float(value))
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_numbered_images(folder: Path, pattern: str = "*_*.png") -> list[tuple[int, np.ndarray]]:
    """Ordered by the name before the number, then the number (``L0_step_00100`` before ``L1_step_00050``)."""
    found = []
    for p in Path(folder).glob(pattern):
        prefix, _, number = p.stem.rpartition("_")
        if number.isdigit():
            found.append((prefix, int(number), p))
    return [(n, np.asarray(Image.open(p).convert("RGB"))) for _, n, p in sorted(found)]


class Timer:
    """Accumulates wall time per phase: ``with timer('optimise'): ...``."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, phase: str):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[phase] = timer.times.get(phase, 0.0) + time.perf_counter() - self.t

        return _Phase()

    def summary(self, steps: int) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.times.items()}
        out["total"] = round(time.perf_counter() - self._t0, 3)
        if steps and "optimise" in self.times:
            out["per_step"] = round(self.times["optimise"] / steps, 4)
        return out
