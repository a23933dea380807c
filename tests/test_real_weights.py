"""End-to-end checks with the real VGG19 ImageNet weights at about 128 px (skipped when absent)."""

import numpy as np
import pytest

from nst_lib import stylize
from nst_lib.images import load_image

from .conftest import CONTENT, STYLE, needs_vgg19

pytestmark = [needs_vgg19, pytest.mark.weights]
SIZE = 128
STEPS_FROM_NOISE = 300


@pytest.fixture(scope="module")
def content():
    return load_image(CONTENT, SIZE)


def test_lbfgs_lowers_style_loss_tenfold_in_50_steps(content):
    r = stylize(content, STYLE, out=None, size=SIZE, steps=50, init="content", progress=False, snapshot_every=0)
    style = r.losses("style")
    assert style[-1] < style[0] / 10, (style[0], style[-1])
    assert r.losses("total")[-1] < r.losses("total")[0]


# seed 003's identity and grayscale tests, run as seed 003 ran them: from white noise. (From the content image
# the content and style losses are 0 at the first step and only the TV term moves the image: that would test
# TV blur, not f(C, C) = C.) The shallower content layer block2_conv2 pins the layout down within the steps a
# test can afford; benchmarks/bench_identity.py measures both layer choices at 100-500 steps.
IDENTITY = dict(init="noise", content_layers=("block2_conv2",), pyramid_levels=1, steps=STEPS_FROM_NOISE)


def test_identity_from_white_noise_reaches_the_content(content):
    from nst_lib import StyleConfig
    from nst_lib.workbench.experiments import identity_test

    noise_start = StyleConfig(size=SIZE, snapshot_every=0, **IDENTITY)
    r = identity_test(content, noise_start, checkpoints=(1, 100, STEPS_FROM_NOISE), progress=False)
    assert r["init"] == "noise" and r["steps"] == STEPS_FROM_NOISE
    at = r["ssim_at"]
    assert at[1] < 0.1  # it really starts from noise, nothing like C
    # measured at 96×128 px (benchmarks/results/identity_from_noise.json): SSIM 0.10 after 100 steps, 0.38 after
    # 300, 0.67 after 500; C is approached steadily, but 300 steps do not reach it
    assert at[100] > 0.07 and at[STEPS_FROM_NOISE] > at[100] + 0.2 and at[STEPS_FROM_NOISE] >= 0.33, at


def test_grayscale_style_from_white_noise_gives_the_gray_image(content):
    # seed 003: f(C, g(C)) ≈ g(C): the gray style's statistics drain the colour while the content keeps the layout
    from nst_lib import StyleConfig
    from nst_lib.workbench.experiments import grayscale_test

    r = grayscale_test(content, StyleConfig(size=SIZE, snapshot_every=0, **IDENTITY), checkpoints=(1,), progress=False)
    assert r["init"] == "noise" and r["content_saturation"] > 0.3
    # measured at 96×128 px: SSIM to g(C) 0.56 after 300 steps, 0.84 after 500 (benchmarks/results/
    # identity_from_noise.json); the saturation falls from white noise's (0.65 in notebook 04's QUICK run) to 0.39
    # after 300 steps (this test) and 0.23 after 500 (the JSON), the photo's being 0.34: the layout of g(C) comes
    # first, the colour drains slowly
    assert r["ssim_at"][1] < 0.1 and r["ssim_to_gray"] >= 0.45, r["ssim_to_gray"]
    assert r["saturation"] < 0.5, r["saturation"]


def test_stylised_image_moves_towards_the_style(content):
    style = load_image(STYLE, SIZE)
    r = stylize(content, STYLE, out=None, size=SIZE, steps=30, progress=False, snapshot_every=0)
    # Starry Night is bluer than Tübingen: the output's mean colour moves towards it, in direction (cosine > 0.7;
    # measured 0.85 — a random direction passes 15 % of the time) and by a share of the way (measured 0.32)
    shift = r.image.reshape(-1, 3).mean(0) - content.reshape(-1, 3).mean(0)
    towards = style.reshape(-1, 3).mean(0) - content.reshape(-1, 3).mean(0)
    cosine = float(np.dot(shift, towards) / (np.linalg.norm(shift) * np.linalg.norm(towards)))
    share = float(np.dot(shift, towards) / np.dot(towards, towards))
    assert cosine > 0.7 and 0.15 < share < 1.0, (cosine, share)
