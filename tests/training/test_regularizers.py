"""Tests for medgan.training.regularizers: the R1 penalty and feature matching."""

from __future__ import annotations

import pytest
import torch

from medgan.training.regularizers import feature_matching_loss, r1_penalty


def test_r1_penalty():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    w = torch.randn(1, 1, 4, 4)
    logits = (x * w).flatten(1).sum(1)  # linear D: gradient is w for every sample
    pen = r1_penalty(logits, x)
    assert pen.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    assert pen.requires_grad or not w.requires_grad

    from medgan.models import ConditionalDiscriminator

    d = ConditionalDiscriminator(2, 1, 28, 2, base_channels=4)
    xr = torch.randn(4, 1, 28, 28, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    pen = r1_penalty(d(xr, y), xr)
    assert pen.item() > 0
    pen.backward()  # create_graph: the penalty trains D
    assert all(p.grad is not None for p in d.blocks.parameters())

    const = torch.nn.Parameter(torch.tensor(0.7))
    xc = torch.randn(4, 1, 8, 8, requires_grad=True)
    assert r1_penalty(const.expand(4), xc).item() == 0.0


def test_feature_matching():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]], requires_grad=True)
    # means (2, 3) vs (1, 1): ((1)^2 + (2)^2) / 2
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert fake.grad.abs().sum() > 0
    assert feature_matching_loss(real, real.flip(0)).item() == 0.0
    r = real.clone().requires_grad_(True)
    feature_matching_loss(r, fake.detach().requires_grad_(True)).backward()
    assert r.grad is None  # real features are constants


def test_lecam_value_on_known_inputs_and_its_moving_averages():
    from medgan.training.regularizers import LeCam

    reg = LeCam(weight=2.0, decay=0.9)
    r, f = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0])
    # first call: the averages start at the batch means (real 2, fake -2)
    # R = mean((r - a_fake)^2) + mean((f - a_real)^2) = mean(3^2, 5^2) + mean(3^2, 5^2) = 17 + 17
    assert reg(r, f).item() == pytest.approx(2.0 * 34.0)
    assert reg.ema.tolist() == [2.0, -2.0] and reg.started
    # second call: a <- a + 0.1 (mean - a) = (1.8, -1.8) for means (0, 0); R = 1.8^2 + 1.8^2
    assert reg(torch.zeros(2), torch.zeros(2)).item() == pytest.approx(2.0 * 2 * 1.8**2)
    assert reg.ema.tolist() == pytest.approx([1.8, -1.8])


def test_lecam_gradient_pulls_real_and_fake_outputs_towards_each_other():
    from medgan.training.regularizers import LeCam

    reg = LeCam(weight=1.0)
    r = torch.tensor([4.0], requires_grad=True)
    f = torch.tensor([-4.0], requires_grad=True)
    reg(r, f).backward()
    assert r.grad.item() > 0 and f.grad.item() < 0  # descent lowers D(x) and raises D(G(z))


def test_lecam_state_round_trip():
    from medgan.training.regularizers import LeCam

    a = LeCam(1.0)
    assert a.state_dict() is None  # nothing to keep before the first batch
    a(torch.tensor([1.0]), torch.tensor([0.0]))
    b = LeCam(1.0)
    b.load_state_dict(a.state_dict())
    assert b.started and torch.equal(a.ema, b.ema)
    b.load_state_dict(None)  # an old checkpoint without LeCam state leaves it as it is
    assert b.started
