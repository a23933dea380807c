import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
CONTENT = DATA / "content" / "tubingen_neckarfront.jpg"
STYLE = DATA / "style" / "vangogh_starry_night.jpg"


def vgg19_available() -> bool:
    from nst_lib.features import weights_available

    return weights_available("vgg19", "imagenet")


needs_vgg19 = pytest.mark.skipif(
    not vgg19_available(),
    reason="VGG19 ImageNet weights not found in $KERAS_HOME/models, $NST_WEIGHTS_DIR or ../shared/weights",
)


def read_tiff16(path) -> np.ndarray:
    """The 16-bit samples (H×W×3) of a one-strip uncompressed RGB TIFF at 300 dpi, located by Pillow's reading of
    its tags (not by the writer's own layout)."""
    from PIL import Image

    with Image.open(path) as im:
        tags, (w, h) = im.tag_v2, im.size
        assert tags[258] == (16, 16, 16) and tags[259] == 1 and tags[262] == 2 and tags[277] == 3
        assert im.info["dpi"] == (300, 300)  # baseline RGB's required resolution, in pixels per inch
        (offset,), (count,) = tuple(np.atleast_1d(tags[273])), tuple(np.atleast_1d(tags[279]))
    data = Path(path).read_bytes()[offset : offset + count]
    return np.frombuffer(data, "<u2").reshape(h, w, 3)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def small_pair():
    """A small content/style pair from the bundled data, as float arrays (fast with weights=None)."""
    from nst_lib.images import load_image

    return load_image(CONTENT, 48), load_image(STYLE, 48)


# `python -m pytest -n 2` (the README's test command) spreads the suite over two processes in these groups: one per
# test file, so that a file's module-scoped fixtures are built once; one per test for the notebooks' and the
# generative models' long independent runs; and one for both files that start a local Ray, so that two Rays never
# share the cores. The groups are handed out in collection order, longest first (below), so that the suite does not
# end with one process running a long group while the other waits.
OWN_GROUP = {
    "test_notebook_runs_in_quick_mode_and_writes_its_figures",
    "test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result",
}
RAY_FILES = {"test_ray_sweep.py", "test_sweep_command.py"}
# files holding a test of a minute or more (`--durations` on two processes): handed out right after the one-test groups
LONG_FILES = RAY_FILES | {"test_backends.py", "test_real_weights.py", "test_browser.py", "test_distributed.py"}


def _runs_alone(nodeid: str) -> bool:
    return nodeid.partition("::")[2].split("[")[0] in OWN_GROUP


def xdist_group_of(nodeid: str) -> str:
    if _runs_alone(nodeid):
        return nodeid
    path = nodeid.partition("::")[0]
    return "ray" if Path(path).name in RAY_FILES else path


def _longest_first(item) -> int:
    if _runs_alone(item.nodeid):
        return 0
    return 1 if item.path.name in LONG_FILES else 2


def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker collects, all in the same order
        items.sort(key=_longest_first)  # stable: a file's tests keep their order


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without -n (or without pytest-xdist) it is never called
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # an explicit --dist mode is the user's choice
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return xdist_group_of(nodeid)

    config.option.loadscopereorder = False  # keep the order above (the default sorts groups by their number of tests)
    return GroupScheduling(config, log)


_HOLDER = """
import json, sys, time
from nst_lib.runs import hold, lock_file
with hold(sys.argv[1]):
    if sys.argv[3]:  # as a process on another machine (one sharing the folder over NFS) would say
        lock_file(sys.argv[1]).write_text(json.dumps({"pid": 7, "host": sys.argv[3], "since": "then"}))
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def held_elsewhere(folder, seconds: float = 120.0, host: str = "") -> subprocess.Popen:
    """Another process holding ``folder`` for ``seconds`` (as a second resume or sweep of it would), saying it is on
    ``host`` where one is given."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder), str(seconds), host], stdout=subprocess.PIPE, text=True
    )
    if child.stdout.readline().strip() != "held":
        child.kill()
        child.wait()
        raise AssertionError(f"the holding process did not hold {folder}")
    return child
