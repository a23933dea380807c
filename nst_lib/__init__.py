"""NST Workbench: neural style transfer in Keras 3.

    from nst_lib import stylize, StyleConfig
    result = stylize("data/content/tubingen_neckarfront.jpg", "data/style/vangogh_starry_night.jpg")

Three parts: the Gatys engine at the top level (config, images, features, losses, objective, optim, transfer,
runs, metrics, and backend: the one module that knows TensorFlow from JAX), ``nst_lib.models`` (the generative
models with their data, training and guided generation) and ``nst_lib.workbench`` (figures, sweeps, the widget
panel, the papers' experiments, the ``nst`` command).
Imports point down only: workbench → models → engine.

Names are imported lazily, so ``import nst_lib`` and ``nst --help`` do not start TensorFlow.
"""

import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import sys as _sys

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
    "Evaluation": "objective",
    "evaluate": "objective",
    "StyleResult": "transfer",
    "stylize": "transfer",
    "resume": "transfer",
}

__all__ = sorted(_EXPORTS)

# Modules that moved into the sub-packages keep their old import paths: ``import nst_lib.sweeps`` gives the very
# module object ``nst_lib.workbench.sweeps``.
MOVED = {
    **{
        f"{__name__}.{m}": f"{__name__}.workbench.{m}"
        for m in ("viz", "sweeps", "widgets", "notebook", "experiments", "survey", "patterns", "cli")
    },
    **{f"{__name__}.{m}": f"{__name__}.models.{m}" for m in ("data", "guidance", "astgan")},
}


class _MovedModules(_abc.MetaPathFinder, _abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return _util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        module = _importlib.import_module(MOVED[spec.name])
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._own_spec  # the import system stamped the old name's spec on it


if not any(isinstance(f, _MovedModules) for f in _sys.meta_path):
    _sys.meta_path.append(_MovedModules())


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
