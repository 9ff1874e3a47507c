"""Tests for the generator's conditioning options (``concat``, ``cbn``, ``both``) and ``cond_scale`` on G and D,
2D and 3D."""

from __future__ import annotations

import pytest
import torch

from medgan.errors import TrainingError
from medgan.models import ConditionalDiscriminator, ConditionalGenerator


def _g(cond: str, dims: int = 2, classes: int = 3) -> ConditionalGenerator:
    torch.manual_seed(0)
    return ConditionalGenerator(dims, 1, 28, classes, latent_dim=8, base_channels=4, embed_dim=4,
                                conditioning=cond).eval()


def _randomise_cbn(g: ConditionalGenerator) -> None:
    with torch.no_grad():
        for table in g.cbn:
            table.weight.normal_(0.0, 0.5)


def _pair(dims: int):
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    return z, torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)


def test_default_layout_is_unchanged():
    g = _g("concat")
    assert g.conditioning == "concat" and g.cbn is None and g.embed is not None and g.cond_scale == 1.0
    assert not any(k.startswith("cbn") for k in g.state_dict())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("cond", ["cbn", "both"])
def test_cbn_shapes_tables_and_class_effect(dims, cond):
    g = _g(cond, dims)
    assert (g.embed is not None) == (cond == "both")
    assert [t.weight.shape for t in g.cbn] == [(3, 2 * 8), (3, 2 * 4)]  # (classes, 2 x block width) per hidden block
    assert all(torch.count_nonzero(t.weight) == 0 for t in g.cbn)  # zero at the start
    z, y0, y1 = _pair(dims)
    with torch.no_grad():
        out = g(z, y0)
        assert out.shape == (4, 1) + (28,) * dims and out.abs().max() <= 1
        if cond == "cbn":  # zero tables: the class has no effect yet
            assert torch.equal(out, g(z, y1))
        _randomise_cbn(g)
        assert not torch.allclose(g(z, y0), g(z, y1))  # changing only the label changes the output
        g.cond_scale = 0.0  # the schedule's unconditional phase: the label is ignored
        assert torch.equal(g(z, y0), g(z, y1))


@pytest.mark.parametrize("dims", [2, 3])
def test_concat_cond_scale_zero_ignores_the_class(dims):
    g = _g("concat", dims)
    z, y0, y1 = _pair(dims)
    with torch.no_grad():
        assert not torch.allclose(g(z, y0), g(z, y1))
        g.cond_scale = 0.0
        assert torch.equal(g(z, y0), g(z, y1))


def test_cbn_gradients_reach_the_tables_and_an_unconditional_model_has_none():
    g = _g("both").train()
    z, y0, _ = _pair(2)
    g(z, torch.tensor([0, 1, 2, 0])).square().mean().backward()
    assert all(t.weight.grad is not None and t.weight.grad.abs().sum() > 0 for t in g.cbn)
    assert _g("cbn", classes=1).cbn is None  # one class: nothing to condition on


def test_unknown_conditioning_is_a_one_line_error():
    with pytest.raises(TrainingError, match="model.conditioning"):
        ConditionalGenerator(2, 1, 28, 2, conditioning="film")


@pytest.mark.parametrize("dims", [2, 3])
def test_discriminator_cond_scale_scales_the_projection(dims):
    torch.manual_seed(0)
    d = ConditionalDiscriminator(dims, 1, 28, 3, base_channels=4, spectral_norm=False).eval()
    x = torch.randn(4, 1, *(28,) * dims)
    y = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        full = d(x, y)
        d.cond_scale = 0.0
        uncond = d(x, y)
        assert torch.equal(uncond, d(x, torch.zeros(4, dtype=torch.long)))  # the label no longer matters
        d.cond_scale = 0.5
        torch.testing.assert_close(d(x, y), 0.5 * (full + uncond))


def test_build_generator_reads_the_conditioning_key():
    from medgan.config import ModelConfig
    from medgan.models import build_generator

    g = build_generator(ModelConfig(conditioning="both", base_channels=4, latent_dim=8), 3, 1, 28, 2)
    assert g.conditioning == "both" and g.cbn is not None and g.embed is not None


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("cond", ["concat", "cbn", "both"])
def test_class_mix_runs_from_source_to_target(dims, cond):
    """Soft conditioning: mix 0 is the source class's image, 1 the target's, exactly; in between differs from
    both; per-stage weights (late stages only) and per-sample weights work; no target is the plain forward."""
    g = _g(cond, dims)
    if g.cbn is not None:
        _randomise_cbn(g)
    z, y0, y1 = _pair(dims)
    with torch.no_grad():
        a, b = g(z, y0), g(z, y1)
        assert torch.equal(g(z, y0, y1, 0.0), a) and torch.equal(g(z, y0, y1, 1.0), b)
        half = g(z, y0, y1, 0.5)
        assert not torch.allclose(half, a) and not torch.allclose(half, b)
        assert g.mix_levels == 2
        late = g(z, y0, y1, torch.tensor([0.0, 1.0]))  # only the finer block moves to the target class
        if cond == "concat":  # the label enters only at stage 0: a late-only mix changes nothing
            assert torch.equal(late, a)
        else:
            assert not torch.allclose(late, a) and not torch.allclose(late, b)
        per_sample = g(z, y0, y1, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
        assert torch.equal(per_sample[0], a[0]) and torch.allclose(per_sample[1], b[1], atol=1e-6)
        with pytest.raises(ValueError, match="mix must be"):
            g(z, y0, y1, torch.ones(3))
