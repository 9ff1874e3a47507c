"""medgan: conditional DCGANs on MONAI to fight class scarcity in medical imaging.

Heavy modules (torch, MONAI) load lazily, so ``import medgan`` and ``medgan --help`` stay instant.
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
    "Sampler": "medgan.synthesis.sampler",
    "SyntheticBank": "medgan.synthesis.bank",
    "RandSyntheticReplace": "medgan.synthesis.transforms",
    "RandSyntheticReplaced": "medgan.synthesis.transforms",
    "RandSyntheticReplaceD": "medgan.synthesis.transforms",
    "RandSyntheticReplaceDict": "medgan.synthesis.transforms",
    "mix_real_synthetic": "medgan.synthesis.mixing",
    "evaluate": "medgan.evaluation.evaluate",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medgan' has no attribute {name!r}")
