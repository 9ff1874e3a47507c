"""Tests for medgan.models.fixed_class: the generator with its classes fixed, differentiable in z."""

from __future__ import annotations

import pytest
import torch

from medgan.models import ConditionalGenerator
from medgan.models.fixed_class import FixedClassGenerator


def _trained_like(cond: str, dims: int, size: int) -> ConditionalGenerator:
    torch.manual_seed(0)
    g = ConditionalGenerator(dims, 1, size, 3, latent_dim=8, base_channels=4, embed_dim=4, conditioning=cond)
    with torch.no_grad():
        for t in g.cbn or ():
            t.weight.normal_(0.0, 0.5)
        g.train()
        for _ in range(3):  # non-trivial running statistics
            g(torch.randn(16, 8), torch.randint(0, 3, (16,)))
    return g.eval()


@pytest.mark.parametrize(("dims", "size"), [(2, 28), (2, 32), (3, 28)])
@pytest.mark.parametrize("cond", ["concat", "cbn", "both"])
def test_fixed_class_generator_is_the_module(cond, dims, size):
    g = _trained_like(cond, dims, size)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(6, 8, generator=gen)
    y, t = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (6,), generator=gen)
    mix = torch.rand(6, g.mix_levels, generator=gen)
    with torch.no_grad():
        assert torch.allclose(FixedClassGenerator(g, y)(z), g(z, y), atol=1e-5)
        f = FixedClassGenerator(g, y, t, mix)
        assert torch.allclose(f(z), g(z, y, t, mix), atol=1e-5)
        sub = torch.tensor([1, 4])
        assert torch.allclose(f.select(sub)(z[sub]), g(z[sub], y[sub], t[sub], mix[sub]), atol=1e-5)
    zz = z.clone().requires_grad_(True)  # gradients reach z (and only z)
    FixedClassGenerator(g, y)(zz).square().sum().backward()
    assert zz.grad is not None and zz.grad.abs().sum() > 0


def test_fixed_class_generator_needs_eval_mode():
    g = _trained_like("cbn", 2, 28).train()
    with pytest.raises(ValueError, match="eval mode"):
        FixedClassGenerator(g, torch.zeros(2, dtype=torch.long))
