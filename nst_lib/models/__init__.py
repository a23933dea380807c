"""The generative side: the models, each a ``keras.Model`` subclass overriding ``train_step`` with
``keras.metrics.Mean`` trackers, their datasets (``data``), their training into resumable run folders
(``training``, ``registry``), guided generation (``guidance``) and Ast-GAN (``astgan``).

    from nst_lib.models.data import tiny_paintings
    from nst_lib.models import DCGAN, train
    result = train(DCGAN(), tiny_paintings(), epochs=5)
    images = result.model.generate(16, seed=0)      # uint8 N×64×64×3

    from nst_lib.models.data import ContentStyleData, tiny_photos
    from nst_lib.models import train_style_vae       # seed 002's three stages, each a run folder
    stages = train_style_vae(ContentStyleData(tiny_photos(), tiny_paintings()), epochs=(4, 4, 4))

    from nst_lib.models import CycleGAN, VQGAN, VQPrior  # seed 003's CycleGAN; seed 000's VQGAN and its prior
    cyc = train(CycleGAN(image_size=64), ContentStyleData(tiny_photos(), tiny_paintings()), epochs=10)
    vq = train(VQGAN(), tiny_paintings(), epochs=8)
    prior = train(VQPrior(vqgan=vq.model), tiny_paintings(), epochs=10)   # the prior is handed its frozen VQGAN

Names are imported on first use, so ``import nst_lib.models`` does not start TensorFlow.
"""

import importlib as _importlib

_EXPORTS = {
    "DCGAN": ".dcgan",
    "DCGANConfig": ".dcgan",
    "LabelSmoothingSchedule": ".dcgan",
    "VAEGAN": ".vaegan",
    "VAEGANConfig": ".vaegan",
    "StyleVAE": ".style_vae",
    "StyleVAEConfig": ".style_vae",
    "CycleGAN": ".cyclegan",
    "CycleGANConfig": ".cyclegan",
    "ImagePool": ".cyclegan",
    "LinearDecay": ".cyclegan",
    "StyleGAN": ".stylegan",
    "StyleGANConfig": ".stylegan",
    "VQGAN": ".vqgan",
    "VQGANConfig": ".vqgan",
    "VQPrior": ".vqgan",
    "VQPriorConfig": ".vqgan",
    "TrainResult": ".training",
    "train": ".training",
    "resume_training": ".training",
    "train_or_load": ".training",
    "train_style_vae": ".training",
    "load_result": ".training",
    "load_trained": ".registry",
    "build_model": ".registry",
    "model_classes": ".registry",
    "tile": "..images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_lib.models' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
