"""Tests for medgan.models.discriminator: projection conditioning, spectral norm, minibatch std, dropout."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_NET, conv_layers
from torch import nn
from torch.nn.utils import parametrize

from medgan.errors import TrainingError
from medgan.models import (
    ConditionalDiscriminator,
)


def test_labels_change_discriminator_output_projection():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(2, 1, 28, 2, minibatch_std=False, **TINY_NET).eval()
    x = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    with torch.no_grad():
        logits, feats = d(x, torch.tensor([0, 1]), return_features=True)
    assert torch.allclose(feats[0], feats[1])  # the features do not see the label ...
    # ... the projection term does: logit(y0) - logit(y1) = <e0 - e1, phi>
    expected = ((d.embed.weight[0] - d.embed.weight[1]) * feats[0]).sum()
    assert torch.allclose(logits[0] - logits[1], expected, atol=1e-5)
    assert abs(float(expected.detach())) > 0


def test_unconditional_discriminator_has_no_projection():
    d = ConditionalDiscriminator(2, 1, 28, 1, **TINY_NET).eval()
    assert d.embed is None
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(d(x, torch.zeros(2, dtype=torch.long)), d(x))


def test_spectral_norm_present_when_asked():
    d = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=True, **TINY_NET)
    layers = conv_layers(d) + [d.linear]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    d2 = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=False, **TINY_NET)
    assert not any(parametrize.is_parametrized(m) for m in d2.modules())
    bns = [m for m in d2.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 1  # every down-sampling block but the input one (28: two blocks)
    first = d2.blocks[0]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in first.modules())
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in first.modules())


def test_spectral_norm_bounds_the_weight():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(2, 1, 28, 2, spectral_norm=True, **TINY_NET).train()
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
        d = ConditionalDiscriminator(2, 1, 28, 1, minibatch_std=mbstd, **TINY_NET).eval()
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
    d = ConditionalDiscriminator(2, 1, 28, 2, dropout=0.5, **TINY_NET)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in d.modules())
    assert not any(isinstance(m, nn.Dropout) for m in ConditionalDiscriminator(2, 1, 28, 2, **TINY_NET).modules())
    x, y = torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    d.train()
    assert not torch.allclose(d(x, y), d(x, y))
    d.eval()
    assert torch.equal(d(x, y), d(x, y))
    with pytest.raises(TrainingError):
        ConditionalDiscriminator(2, 1, 28, 2, dropout=1.0)
