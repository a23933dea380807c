"""NST Workbench: neural style transfer in Keras 3.

    from nst_lib import stylize, StyleConfig
    result = stylize("data/content/tubingen_neckarfront.jpg", "data/style/vangogh_starry_night.jpg")

Names are imported lazily, so ``import nst_lib`` and ``nst --help`` do not start TensorFlow.
"""

import importlib as _importlib

__version__ = "0.1.0"

_EXPORTS = {
    "StyleConfig": "config",
    "PRESETS": "config",
    "NSTError": "errors",
    "ConfigError": "errors",
    "ImageError": "errors",
    "NonFiniteLossError": "errors",
    "WeightsNotFoundError": "errors",
    "FeatureExtractor": "features",
    "LAYER_PRESETS": "features",
    "get_extractor": "features",
    "load_image": "images",
    "save_image": "images",
    "grayscale": "images",
    "Callback": "optim",
    "StepInfo": "optim",
    "StyleResult": "transfer",
    "stylize": "transfer",
    "resume": "transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
