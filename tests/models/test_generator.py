"""Tests for medgan.models.generator: the conditional generator (attributes, conditioning, DCGAN initialisation)."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_NET, conv_layers
from torch import nn

from medgan.models import (
    ConditionalDiscriminator,
    ConditionalGenerator,
)


def test_generator_attributes_and_unconditional():
    g = ConditionalGenerator(2, 1, 28, 1, latent_dim=16, **TINY_NET)
    assert (g.spatial_dims, g.latent_dim, g.num_classes, g.size, g.out_channels) == (2, 16, 1, 28, 1)
    assert g.embed is None  # unconditional: y is ignored
    g.eval()
    z = torch.randn(3, 16)
    assert torch.equal(g(z, torch.zeros(3, dtype=torch.long)), g(z))


def test_labels_change_generator_output():
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 1, 32, 3, latent_dim=8, **TINY_NET).eval()
    z = torch.randn(1, 8).repeat(3, 1)
    x = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(x[0], x[1])
    assert not torch.allclose(x[1], x[2])


def test_weight_init_statistics():
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 1, 32, 2, base_channels=32)
    w = torch.cat([c.weight.detach().flatten() for c in conv_layers(g)])
    assert w.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(w.mean().item()) < 1e-3
    bn = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.std().item() == pytest.approx(0.02, rel=0.3)
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    d = ConditionalDiscriminator(2, 1, 32, 2, base_channels=32, spectral_norm=False)
    w = torch.cat([c.weight.detach().flatten() for c in conv_layers(d)])
    assert w.std().item() == pytest.approx(0.02, rel=0.05)
