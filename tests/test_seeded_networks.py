"""Random-weight networks are drawn from the config's seed, so separate processes (sweep workers, a run and its
``nst resume``) optimise against the same network; a run killed with SIGKILL and resumed in a new process ends
bit-identical to an uninterrupted one, with random and with ImageNet weights."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nst_lib.features import FeatureExtractor

from .conftest import ROOT, vgg19_available


def _kernel(extractor, name):
    return extractor.model.get_layer(name).kernel.numpy()


def test_random_weights_are_a_function_of_the_seed_alone():
    a = FeatureExtractor("vgg19", ["block2_conv1"], weights=None, seed=3)
    b = FeatureExtractor("vgg19", ["block1_conv1", "block3_conv1"], weights=None, seed=3)
    c = FeatureExtractor("vgg19", ["block2_conv1"], weights=None, seed=4)
    # the same numbers however the network is truncated; another seed, another network
    np.testing.assert_array_equal(_kernel(a, "block1_conv1"), _kernel(b, "block1_conv1"))
    np.testing.assert_array_equal(_kernel(a, "block2_conv1"), _kernel(b, "block2_conv1"))
    assert not np.array_equal(_kernel(a, "block1_conv1"), _kernel(c, "block1_conv1"))
    # Keras' default Glorot-uniform distribution: |w| ≤ sqrt(6 / (fan_in + fan_out)), about uniform within it
    k = _kernel(a, "block2_conv1")
    limit = np.sqrt(6.0 / (9 * 64 + 9 * 128))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.99 * limit
    assert abs(float(k.std()) - limit / np.sqrt(3)) < 0.01 * limit


SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    from nst_lib import StyleConfig, resume, stylize
    out, mode, weights = sys.argv[1], sys.argv[2], None if sys.argv[3] == "none" else sys.argv[3]
    config = StyleConfig(weights=weights, size=48, steps=6, snapshot_every=2, init="noise", seed=7)
    content, style = "data/content/tubingen_neckarfront.jpg", "data/style/vangogh_starry_night.jpg"

    def sigkill_at_step_5(info):
        if info.step == 5:  # after the checkpoint at step 4: steps 5 and 6 are lost and done again
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "kill":
        stylize(content, style, config, out=out, name="cut", timestamp=False, progress=False,
                callbacks=[sigkill_at_step_5])
    else:  # a new process: resume the killed run, then the same run uninterrupted
        resumed = resume(os.path.join(out, "cut"), progress=False)
        whole = stylize(content, style, config, out=out, name="whole", timestamp=False, progress=False)
        print(json.dumps({
            "status": resumed.status,
            "same_image": bool(np.array_equal(resumed.image, whole.image)),
            "same_losses": resumed.losses("total").tolist() == whole.losses("total").tolist(),
            "steps": len(resumed.history),
        }))
    """
)


@pytest.mark.parametrize(
    "weights",
    [
        None,
        pytest.param(
            "imagenet",
            marks=[pytest.mark.weights, pytest.mark.skipif(not vgg19_available(), reason="no VGG19 ImageNet weights")],
        ),
    ],
)
def test_a_sigkilled_run_resumed_in_a_new_process_ends_bit_identical(tmp_path, weights):
    def run(mode):
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path), mode, weights or "none"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )

    killed = run("kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["status"] == "running"
    proc = run("resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"status": "completed", "same_image": True, "same_losses": True, "steps": 6}
