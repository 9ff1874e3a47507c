"""Tests for medgan.models.encoder: the latent encoder (inversion warm start), 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from medgan.models.encoder import LatentEncoder


@pytest.mark.parametrize(("dims", "size", "channels"), [(2, 28, 1), (2, 64, 3), (3, 28, 1), (3, 32, 1)])
def test_encoder_maps_images_and_classes_to_latents(dims, size, channels):
    torch.manual_seed(0)
    enc = LatentEncoder(dims, channels, size, 3, latent_dim=10, width=4).eval()
    x = torch.rand(2, channels, *([size] * dims)) * 2 - 1
    with torch.no_grad():
        z0 = enc(x, torch.tensor([0, 0]))
        z1 = enc(x, torch.tensor([1, 2]))
    assert z0.shape == (2, 10) and torch.isfinite(z0).all()
    assert not torch.allclose(z0, z1)  # the class is an input
    with pytest.raises(ValueError, match="class labels"):
        enc(x)
    assert LatentEncoder(dims, channels, size, 1, 10, width=4)(x).shape == (2, 10)  # unconditional: no labels
