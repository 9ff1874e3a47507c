"""Tests for medgan.models (the package): the builders, and generator and discriminator together in every geometry."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_NET
from torch import nn

from medgan.config import ModelConfig
from medgan.errors import TrainingError
from medgan.models import (
    SUPPORTED_SIZES,
    ConditionalDiscriminator,
    ConditionalGenerator,
    build_discriminator,
    build_generator,
)

GEOMETRIES = [(dims, size) for dims in (2, 3) for size in SUPPORTED_SIZES[dims]]


@pytest.mark.parametrize("dims,size", GEOMETRIES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [1, 2, 5])
def test_shapes_every_geometry(dims, size, channels, classes):
    torch.manual_seed(0)
    g = ConditionalGenerator(dims, channels, size, classes, latent_dim=8, embed_dim=4, **TINY_NET)
    d = ConditionalDiscriminator(dims, channels, size, classes, **TINY_NET)
    b = 2
    z = torch.randn(b, 8)
    y = torch.randint(0, classes, (b,))
    with torch.no_grad():
        x = g(z, y)
        logits, feats = d(x, y, return_features=True)
    assert x.shape == (b, channels, *([size] * dims))
    assert x.min() >= -1 and x.max() <= 1
    assert logits.shape == (b,)
    assert feats.shape == (b, d.feature_dim)
    assert torch.isfinite(logits).all()


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    g = ConditionalGenerator(3, 1, 28, 3, latent_dim=8, **TINY_NET)
    d = ConditionalDiscriminator(3, 1, 28, 3, **TINY_NET)
    y = torch.tensor([0, 1, 2, 1])
    logits, feats = d(g(torch.randn(4, 8), y), y, return_features=True)
    (logits.sum() + feats.sum()).backward()
    for name, p in list(g.named_parameters()) + list(d.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    for dims, fmt in ((2, torch.channels_last), (3, torch.channels_last_3d)):
        g = ConditionalGenerator(dims, 3, 28, 2, latent_dim=8, **TINY_NET).eval()
        d = ConditionalDiscriminator(dims, 3, 28, 2, **TINY_NET).eval()
        z, y = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
        x = g(z, y)
        ref = d(x, y)
        g.to(memory_format=fmt)
        d.to(memory_format=fmt)
        x_cl = g(z, y)
        assert torch.allclose(x_cl, x, atol=1e-5)
        assert torch.allclose(d(x.contiguous(memory_format=fmt), y), ref, atol=1e-4)


def test_bf16_autocast_forward():
    g = ConditionalGenerator(2, 1, 28, 2, latent_dim=8, **TINY_NET)
    d = ConditionalDiscriminator(2, 1, 28, 2, **TINY_NET)
    y = torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(g(torch.randn(2, 8), y), y)
    assert logits.shape == (2,) and torch.isfinite(logits.float()).all()


def test_builders_use_model_config():
    cfg = ModelConfig(latent_dim=12, base_channels=4, embed_dim=3, spectral_norm=False, minibatch_std=False,
                      dropout=0.25, conditioning="both")
    g = build_generator(cfg, 2, 3, 64, 4)
    d = build_discriminator(cfg, 2, 3, 64, 4)
    assert g.latent_dim == 12 and g.embed.embedding_dim == 3 and g.out_channels == 3 and g.size == 64
    assert g.conditioning == "both" and len(g.cbn) == 4 and g.cbn[0].num_embeddings == 4
    assert build_generator(ModelConfig(), 2, 1, 28, 2).conditioning == "cbn"  # medgan's default
    assert d.mbstd is None and not d.use_spectral_norm
    assert any(isinstance(m, nn.Dropout) for m in d.modules())
    assert g(torch.randn(2, 12), torch.tensor([0, 3])).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("dims,size", [(3, 128), (2, 48), (2, 100), (4, 28)])
def test_unsupported_geometry_is_one_line_error(dims, size):
    with pytest.raises(TrainingError) as e:
        build_generator(ModelConfig(), dims, 1, size, 2)
    assert "\n" not in str(e.value) and ("size" in str(e.value) or "spatial_dims" in str(e.value))
    with pytest.raises(TrainingError):
        build_discriminator(ModelConfig(), dims, 1, size, 2)
