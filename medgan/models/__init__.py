"""Networks: the conditional DCGAN generator and discriminator (2D and 3D, MONAI blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medgan.models.discriminator import ConditionalDiscriminator, MinibatchStd
from medgan.models.generator import SUPPORTED_SIZES, ConditionalGenerator, check_geometry

if TYPE_CHECKING:
    from medgan.config import ModelConfig

__all__ = [
    "SUPPORTED_SIZES",
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "MinibatchStd",
    "build_discriminator",
    "build_generator",
    "check_geometry",
]


def build_generator(
    model_cfg: ModelConfig, spatial_dims: int, channels: int, size: int, num_classes: int
) -> ConditionalGenerator:
    """A :class:`ConditionalGenerator` from the ``model`` config section and the data geometry.

    Raises :class:`~medgan.errors.TrainingError` when ``size`` is not supported in ``spatial_dims`` dims.
    """
    check_geometry(spatial_dims, size)
    return ConditionalGenerator(
        spatial_dims,
        channels,
        size,
        num_classes,
        latent_dim=model_cfg.latent_dim,
        base_channels=model_cfg.base_channels,
        embed_dim=model_cfg.embed_dim,
    )


def build_discriminator(
    model_cfg: ModelConfig, spatial_dims: int, channels: int, size: int, num_classes: int
) -> ConditionalDiscriminator:
    """A :class:`ConditionalDiscriminator` from the ``model`` config section and the data geometry."""
    check_geometry(spatial_dims, size)
    return ConditionalDiscriminator(
        spatial_dims,
        channels,
        size,
        num_classes,
        base_channels=model_cfg.base_channels,
        spectral_norm=model_cfg.spectral_norm,
        minibatch_std=model_cfg.minibatch_std,
        dropout=model_cfg.dropout,
    )
