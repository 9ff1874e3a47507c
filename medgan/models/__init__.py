"""Networks: the conditional DCGAN generator and discriminator (2D and 3D, MONAI blocks), the folded
inference form of the generator (:mod:`medgan.models.fused`, importable without MONAI), and the image-conditioned
translator with its discriminator (:mod:`medgan.models.translator`).

The modules load on first use, so that ``medgan.models.fused`` (sampling) does not import MONAI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medgan.config import ModelConfig
    from medgan.models.discriminator import ConditionalDiscriminator
    from medgan.models.generator import ConditionalGenerator

_LAZY = {
    "SUPPORTED_SIZES": "medgan.models.generator",
    "ConditionalGenerator": "medgan.models.generator",
    "check_geometry": "medgan.models.generator",
    "ConditionalDiscriminator": "medgan.models.discriminator",
    "MinibatchStd": "medgan.models.discriminator",
    "FusedGenerator": "medgan.models.fused",
    "ConditionalTranslator": "medgan.models.translator",
    "TranslatorDiscriminator": "medgan.models.translator",
}

__all__ = [*_LAZY, "build_discriminator", "build_generator"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medgan.models' has no attribute {name!r}")


def build_generator(model_cfg: ModelConfig, spatial_dims: int, channels: int, size: int,
                    num_classes: int) -> ConditionalGenerator:
    """A :class:`ConditionalGenerator` from the ``model`` config section and the data geometry.

    Raises :class:`~medgan.errors.TrainingError` when ``size`` is not supported in ``spatial_dims`` dims.
    """
    from medgan.models.generator import ConditionalGenerator, check_geometry

    check_geometry(spatial_dims, size)
    return ConditionalGenerator(spatial_dims, channels, size, num_classes, latent_dim=model_cfg.latent_dim,
                                base_channels=model_cfg.base_channels, embed_dim=model_cfg.embed_dim,
                                conditioning=model_cfg.conditioning)


def build_discriminator(model_cfg: ModelConfig, spatial_dims: int, channels: int, size: int,
                        num_classes: int) -> ConditionalDiscriminator:
    """A :class:`ConditionalDiscriminator` from the ``model`` config section and the data geometry."""
    from medgan.models.discriminator import ConditionalDiscriminator
    from medgan.models.generator import check_geometry

    check_geometry(spatial_dims, size)
    return ConditionalDiscriminator(spatial_dims, channels, size, num_classes, base_channels=model_cfg.base_channels,
                                    spectral_norm=model_cfg.spectral_norm, minibatch_std=model_cfg.minibatch_std,
                                    dropout=model_cfg.dropout)
