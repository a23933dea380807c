"""Generative models, each a ``keras.Model`` subclass overriding ``train_step`` with ``keras.metrics.Mean``
trackers, trained by ``train`` into a resumable run folder.

    from nst_lib.data import tiny_paintings
    from nst_lib.models import DCGAN, train
    result = train(DCGAN(), tiny_paintings(), epochs=5)
    images = result.model.generate(16, seed=0)      # uint8 N×64×64×3

    from nst_lib.data import ContentStyleData, tiny_photos
    from nst_lib.models import train_style_vae       # seed 002's three stages, each a run folder
    stages = train_style_vae(ContentStyleData(tiny_photos(), tiny_paintings()), epochs=(4, 4, 4))

    from nst_lib.models import CycleGAN, VQGAN, VQPrior  # seed 003's CycleGAN; seed 000's VQGAN and its prior
    cyc = train(CycleGAN(image_size=64), ContentStyleData(tiny_photos(), tiny_paintings()), epochs=10)
    vq = train(VQGAN(), tiny_paintings(), epochs=8)
    prior = train(VQPrior(vqgan_run=str(vq.run_dir)), tiny_paintings(), epochs=10)
"""

import importlib as _importlib

_EXPORTS = {
    "DCGAN": "dcgan",
    "DCGANConfig": "dcgan",
    "LabelSmoothingSchedule": "dcgan",
    "VAEGAN": "vaegan",
    "VAEGANConfig": "vaegan",
    "StyleVAE": "style_vae",
    "StyleVAEConfig": "style_vae",
    "train_style_vae": "style_vae",
    "CycleGAN": "cyclegan",
    "CycleGANConfig": "cyclegan",
    "ImagePool": "cyclegan",
    "LinearDecay": "cyclegan",
    "StyleGAN": "stylegan",
    "StyleGANConfig": "stylegan",
    "VQGAN": "vqgan",
    "VQGANConfig": "vqgan",
    "VQPrior": "vqgan",
    "VQPriorConfig": "vqgan",
    "TrainResult": "training",
    "train": "training",
    "resume_training": "training",
    "load_trained": "training",
    "load_result": "training",
    "train_or_load": "training",
    "build_model": "training",
    "tile": "callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_lib.models' has no attribute {name!r}")
