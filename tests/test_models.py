"""Conditional DCGAN networks: shapes for every geometry, conditioning, options, initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

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
TINY = dict(base_channels=4)


def _convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]


@pytest.mark.parametrize("dims,size", GEOMETRIES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [1, 2, 5])
def test_shapes_every_geometry(dims, size, channels, classes):
    torch.manual_seed(0)
    g = ConditionalGenerator(dims, channels, size, classes, latent_dim=8, embed_dim=4, **TINY)
    d = ConditionalDiscriminator(dims, channels, size, classes, **TINY)
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


def test_generator_attributes_and_unconditional():
    g = ConditionalGenerator(2, 1, 28, 1, latent_dim=16, **TINY)
    assert (g.spatial_dims, g.latent_dim, g.num_classes, g.size, g.out_channels) == (2, 16, 1, 28, 1)
    assert g.embed is None  # unconditional: y is ignored
    g.eval()
    z = torch.randn(3, 16)
    assert torch.equal(g(z, torch.zeros(3, dtype=torch.long)), g(z))


def test_labels_change_generator_output():
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 1, 32, 3, latent_dim=8, **TINY).eval()
    z = torch.randn(1, 8).repeat(3, 1)
    x = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(x[0], x[1])
    assert not torch.allclose(x[1], x[2])


def test_labels_change_discriminator_output_projection():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(2, 1, 28, 2, minibatch_std=False, **TINY).eval()
    x = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    with torch.no_grad():
        logits, feats = d(x, torch.tensor([0, 1]), return_features=True)
    assert torch.allclose(feats[0], feats[1])  # the features do not see the label ...
    # ... the projection term does: logit(y0) - logit(y1) = <e0 - e1, phi>
    expected = ((d.embed.weight[0] - d.embed.weight[1]) * feats[0]).sum()
    assert torch.allclose(logits[0] - logits[1], expected, atol=1e-5)
    assert abs(float(expected.detach())) > 0


def test_unconditional_discriminator_has_no_projection():
    d = ConditionalDiscriminator(2, 1, 28, 1, **TINY).eval()
    assert d.embed is None
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(d(x, torch.zeros(2, dtype=torch.long)), d(x))


def test_spectral_norm_present_when_asked():
    d = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=True, **TINY)
    layers = _convs(d) + [d.linear]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    d2 = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=False, **TINY)
    assert not any(parametrize.is_parametrized(m) for m in d2.modules())
    bns = [m for m in d2.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 1  # every down-sampling block but the input one (28: two blocks)
    first = d2.blocks[0]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in first.modules())
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in first.modules())


def test_spectral_norm_bounds_the_weight():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=True, **TINY).train()
    x = torch.randn(4, 1, 28, 28)
    for _ in range(30):  # power iteration converges over forward passes
        d(x, torch.zeros(4, dtype=torch.long))
    w = d.blocks[1].conv.weight
    sigma = torch.linalg.matrix_norm(w.detach().reshape(w.shape[0], -1), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_minibatch_std_depends_on_batch_composition():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    y = torch.zeros(8, dtype=torch.long)
    idx_a, idx_b = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 5, 6, 7])
    for mbstd, should_change in ((True, True), (False, False)):
        torch.manual_seed(1)
        d = ConditionalDiscriminator(2, 1, 28, 1, minibatch_std=mbstd, **TINY).eval()
        with torch.no_grad():
            d.mbstd_proj.weight.fill_(0.5) if mbstd else None
            a = d(x[idx_a], y[:4])[0]
            b = d(x[idx_b], y[:4])[0]
        assert (not torch.allclose(a, b)) == should_change


def test_minibatch_std_statistic_small_for_identical_batch():
    from medgan.models import MinibatchStd

    m = MinibatchStd(group_size=4)
    same = torch.randn(1, 3, 5, 5).repeat(8, 1, 1, 1)
    varied = torch.randn(8, 3, 5, 5)
    assert m(same).shape == (8,)
    assert m(same).max() < 1e-3 < m(varied).min()
    assert m(torch.randn(1, 3, 5, 5)).shape == (1,)  # a batch of one works


def test_dropout_option():
    d = ConditionalDiscriminator(2, 1, 28, 2, dropout=0.5, **TINY)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in d.modules())
    assert not any(isinstance(m, nn.Dropout) for m in ConditionalDiscriminator(2, 1, 28, 2, **TINY).modules())
    x, y = torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    d.train()
    assert not torch.allclose(d(x, y), d(x, y))
    d.eval()
    assert torch.equal(d(x, y), d(x, y))
    with pytest.raises(TrainingError):
        ConditionalDiscriminator(2, 1, 28, 2, dropout=1.0)


def test_weight_init_statistics():
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 1, 32, 2, base_channels=32)
    w = torch.cat([c.weight.detach().flatten() for c in _convs(g)])
    assert w.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(w.mean().item()) < 1e-3
    bn = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.std().item() == pytest.approx(0.02, rel=0.3)
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    d = ConditionalDiscriminator(2, 1, 32, 2, base_channels=32, spectral_norm=False)
    w = torch.cat([c.weight.detach().flatten() for c in _convs(d)])
    assert w.std().item() == pytest.approx(0.02, rel=0.05)


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    g = ConditionalGenerator(3, 1, 28, 3, latent_dim=8, **TINY)
    d = ConditionalDiscriminator(3, 1, 28, 3, **TINY)
    y = torch.tensor([0, 1, 2, 1])
    logits, feats = d(g(torch.randn(4, 8), y), y, return_features=True)
    (logits.sum() + feats.sum()).backward()
    for name, p in list(g.named_parameters()) + list(d.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    for dims, fmt in ((2, torch.channels_last), (3, torch.channels_last_3d)):
        g = ConditionalGenerator(dims, 3, 28, 2, latent_dim=8, **TINY).eval()
        d = ConditionalDiscriminator(dims, 3, 28, 2, **TINY).eval()
        z, y = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
        x = g(z, y)
        ref = d(x, y)
        g.to(memory_format=fmt)
        d.to(memory_format=fmt)
        x_cl = g(z, y)
        assert torch.allclose(x_cl, x, atol=1e-5)
        assert torch.allclose(d(x.contiguous(memory_format=fmt), y), ref, atol=1e-4)


def test_bf16_autocast_forward():
    g = ConditionalGenerator(2, 1, 28, 2, latent_dim=8, **TINY)
    d = ConditionalDiscriminator(2, 1, 28, 2, **TINY)
    y = torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(g(torch.randn(2, 8), y), y)
    assert logits.shape == (2,) and torch.isfinite(logits.float()).all()


def test_builders_use_model_config():
    cfg = ModelConfig(latent_dim=12, base_channels=4, embed_dim=3, spectral_norm=False, minibatch_std=False,
                      dropout=0.25)
    g = build_generator(cfg, 2, 3, 64, 4)
    d = build_discriminator(cfg, 2, 3, 64, 4)
    assert g.latent_dim == 12 and g.embed.embedding_dim == 3 and g.out_channels == 3 and g.size == 64
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
