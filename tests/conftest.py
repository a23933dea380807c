import os
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


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def small_pair():
    """A small content/style pair from the bundled data, as float arrays (fast with weights=None)."""
    from nst_lib.images import load_image

    return load_image(CONTENT, 48), load_image(STYLE, 48)
