"""medgan: conditional DCGANs on MONAI to fight class scarcity in medical imaging.

Public API (``from medgan import X``; heavy modules such as torch and MONAI load on first use):

Configuration and data
    Config, load_config          typed configuration: defaults < YAML (a file or a packaged name) < overrides
    load_dataset, RealData       a dataset spec (MedMNIST name, phantom, .npz, class folder, CSV) -> RealData
    prepare                      RealData -> model tensors in [-1, 1] at the model size
Models and training
    ConditionalGenerator, ConditionalDiscriminator, train
    ConditionalTranslator        the image-conditioned translator (``medgan train --model translator``)
Synthesis
    Sampler                      a checkpoint's generator: sample(n, classes, seed)
    ImageTranslator              a translator checkpoint: translate(x, y_src, y_tgt, strength)
    SyntheticBank                in-memory synthetic images, laid out like MONAI's LoadImage output
    RandSyntheticReplace, RandSyntheticReplaced (D, Dict)   the MONAI transforms
    add_synthetic_slots          bring scarce classes to a target share inside a MONAI pipeline
    mix_real_synthetic           dataset-level mixing
    augment                      synthetic files with provenance (``medgan augment``)
    export_generator             TorchScript / ONNX / MONAI Bundle export (``medgan export``)
Evaluation
    evaluate                     the downstream benefit, quality and memorisation (``medgan evaluate``)
Errors
    MedganError                  every user error: one line naming the fix
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "MedganError": "medgan.errors",
    "Config": "medgan.config",
    "load_config": "medgan.config",
    "load_dataset": "medgan.data.sources",
    "RealData": "medgan.data.dataset",
    "prepare": "medgan.data.preprocess",
    "ConditionalGenerator": "medgan.models.generator",
    "ConditionalDiscriminator": "medgan.models.discriminator",
    "train": "medgan.training.run",
    "ConditionalTranslator": "medgan.models.translator",
    "ImageTranslator": "medgan.synthesis.translation",
    "Sampler": "medgan.synthesis.sampler",
    "SyntheticBank": "medgan.synthesis.bank",
    "RandSyntheticReplace": "medgan.synthesis.transforms",
    "RandSyntheticReplaced": "medgan.synthesis.transforms",
    "RandSyntheticReplaceD": "medgan.synthesis.transforms",
    "RandSyntheticReplaceDict": "medgan.synthesis.transforms",
    "mix_real_synthetic": "medgan.synthesis.mixing",
    "add_synthetic_slots": "medgan.synthesis.mixing",
    "augment": "medgan.synthesis.export",
    "export_generator": "medgan.synthesis.bundle",
    "evaluate": "medgan.evaluation.evaluate",
}

__all__ = ["__version__", *_LAZY]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medgan' has no attribute {name!r}")
