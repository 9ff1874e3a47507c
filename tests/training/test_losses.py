"""Tests for medgan.training.losses: the GAN loss registry, known values, label smoothing, energy margin."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from medgan.config import TrainConfig
from medgan.errors import ConfigError
from medgan.training.losses import LOSSES, get_loss

R = [2.0, -1.0]  # real logits


F = [0.5, -3.0]  # fake logits


def sp(v: float) -> float:
    return math.log1p(math.exp(v))


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def _t(v):
    return torch.tensor(v)


EXPECTED = {
    # name: (d_loss, g_loss) on R, F with real_target 1, hand-computed
    "bce": (mean(sp(-r) for r in R) + mean(sp(f) for f in F), mean(sp(-f) for f in F)),
    "minimax": (mean(sp(-r) for r in R) + mean(sp(f) for f in F), mean(math.log(1 - 1 / (1 + math.exp(-f))) for f in F)),
    "hinge": ((0 + 2) / 2 + (1.5 + 0) / 2, -(0.5 - 3.0) / 2),
    "lsgan": (0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2, 0.5 * (0.25 + 16) / 2),
    "energy": (mean(sp(-r) for r in R) + mean(max(0.0, 1 - sp(-f)) for f in F), mean(sp(-f) for f in F)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_known_values(name):
    loss = get_loss(name)
    d_exp, g_exp = EXPECTED[name]
    assert loss.d_loss(_t(R), _t(F)).item() == pytest.approx(d_exp, rel=1e-5)
    assert loss.g_loss(_t(F)).item() == pytest.approx(g_exp, rel=1e-5)


def test_registry_matches_config_literal():
    assert set(typing.get_args(TrainConfig.model_fields["loss"].annotation)) == set(LOSSES)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        get_loss("wasserstein")
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in LOSSES)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_gradients_flow(name):
    loss = get_loss(name)
    r = torch.tensor(R, requires_grad=True)
    f = torch.tensor(F, requires_grad=True)
    loss.d_loss(r, f).backward()
    assert r.grad.abs().sum() > 0 and f.grad.abs().sum() > 0
    f2 = torch.tensor([0.5, 0.2], requires_grad=True)
    loss.g_loss(f2).backward()
    assert f2.grad.abs().sum() > 0


def test_bf16_logits_give_float32_losses():
    for name in LOSSES:
        out = get_loss(name).d_loss(_t(R).bfloat16(), _t(F).bfloat16())
        assert out.dtype == torch.float32


def test_minimax_saturates_where_bce_does_not():
    # a confident D (fake logit -8): the original objective gives G almost no gradient
    grads = {}
    for name in ("minimax", "bce"):
        f = torch.tensor([-8.0], requires_grad=True)
        get_loss(name).g_loss(f).backward()
        grads[name] = f.grad.abs().item()
    assert grads["minimax"] < 1e-3 < 0.9 < grads["bce"]


def test_one_sided_label_smoothing_bce():
    loss = get_loss("bce")
    r, f = _t(R), _t(F)
    t = 0.9
    expected = mean(t * sp(-x) + (1 - t) * sp(x) for x in R) + mean(sp(x) for x in F)
    assert loss.d_loss(r, f, real_target=t).item() == pytest.approx(expected, rel=1e-5)
    # a very confident D on real data now pays for its confidence; fake term is unchanged (one-sided)
    confident = torch.tensor([10.0])
    assert loss.d_loss(confident, f, 0.9) > loss.d_loss(confident, f, 1.0) + 0.5
    assert loss.d_loss(_t([-20.0]), _t([-20.0]), 0.9) == pytest.approx(loss.d_loss(_t([-20.0]), _t([-20.0])).item() - 2.0, abs=0.01)


def test_label_smoothing_hinge_lsgan_energy():
    r, f = torch.tensor([0.95]), torch.tensor([-5.0])
    assert get_loss("hinge").d_loss(r, f).item() == pytest.approx(0.05, abs=1e-6)
    assert get_loss("hinge").d_loss(r, f, 0.9).item() == 0.0  # real margin is now 0.9
    assert get_loss("lsgan").d_loss(torch.tensor([0.9]), torch.tensor([0.0]), 0.9).item() == pytest.approx(0.0, abs=1e-7)
    e = get_loss("energy", margin=2.0)
    real = torch.tensor([0.0])  # cost log 2 ~ 0.69 < (1 - 0.5) * 2 = 1
    assert e.d_loss(real, torch.tensor([-10.0]), 0.5).item() == 0.0
    assert e.d_loss(real, torch.tensor([-10.0])).item() == pytest.approx(math.log(2), rel=1e-5)


def test_energy_margin():
    e = get_loss("energy", margin=1.0)
    real = torch.tensor([5.0, 4.0])
    far = torch.tensor([-4.0, -6.0])  # fake costs ~4 and ~6: above the margin, no D loss term
    assert e.d_loss(real, far).item() == pytest.approx(mean(sp(-x) for x in [5.0, 4.0]), rel=1e-5)
    f = far.clone().requires_grad_(True)
    e.d_loss(real, f).backward()
    assert f.grad.abs().sum() == 0
    near = torch.tensor([3.0])  # cost ~0.049 < margin: pushed up
    assert e.d_loss(real, near) > e.d_loss(real, far) + 0.9
    assert get_loss("energy", margin=5.0).d_loss(real, far) > e.d_loss(real, far) + 0.4  # cost ~4 < 5 now counts
    with pytest.raises(ConfigError):
        get_loss("energy", margin=0.0)
