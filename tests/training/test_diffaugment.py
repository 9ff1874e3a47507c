"""Tests for medgan.training.diffaugment: DiffAugment (2D and 3D) and the ADA-style probability controller."""

from __future__ import annotations

import pytest
import torch

from medgan.errors import ConfigError
from medgan.training.diffaugment import POLICIES, AdaptiveAugment, diff_augment

SHAPES = {2: (6, 2, 16, 16), 3: (4, 1, 8, 8, 8)}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("policy", [[p] for p in POLICIES] + [list(POLICIES)])
def test_shape_kept_and_gradients_flow(dims, policy):
    x = torch.randn(*SHAPES[dims], requires_grad=True)
    out = diff_augment(x, policy, generator=_gen())
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dims", [2, 3])
def test_p_zero_is_identity_and_seeded_is_deterministic(dims):
    x = torch.randn(*SHAPES[dims])
    assert diff_augment(x, list(POLICIES), p=0.0) is x
    assert diff_augment(x, [], p=1.0) is x
    a = diff_augment(x, list(POLICIES), p=0.7, generator=_gen(3))
    b = diff_augment(x, list(POLICIES), p=0.7, generator=_gen(3))
    c = diff_augment(x, list(POLICIES), p=0.7, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("dims", [2, 3])
def test_translation_shifts_an_impulse(dims):
    n, size = 32, 16
    x = torch.zeros(n, 1, *([size] * dims))
    centre = (slice(None), 0, *([size // 2] * dims))
    x[centre] = 1.0
    out = diff_augment(x, ["translation"], generator=_gen())
    r = int(size * 0.125 + 0.5)
    moved = 0
    for i in range(n):
        nz = out[i, 0].nonzero()
        assert nz.shape[0] == 1 and out[i, 0].sum() == 1.0  # shifted, not blurred or lost
        offset = nz[0] - size // 2
        assert offset.abs().max() <= r
        moved += int(offset.abs().sum() > 0)
    assert moved > n // 2


def test_translation_padding_zeros_and_edge():
    x = torch.ones(16, 1, 16, 16)
    zeros = diff_augment(x, ["translation"], generator=_gen())
    assert (zeros == 0).any() and set(zeros.unique().tolist()) <= {0.0, 1.0}
    edge = diff_augment(x, ["translation"], generator=_gen(), padding="edge")
    assert torch.equal(edge, x)  # a constant image stays constant with edge padding
    with pytest.raises(ConfigError):
        diff_augment(x, ["translation"], padding="reflect")


@pytest.mark.parametrize("dims", [2, 3])
def test_cutout_zeroes_one_box(dims):
    size = 16
    x = torch.ones(8, 1, *([size] * dims))
    out = diff_augment(x, ["cutout"], generator=_gen())
    for i in range(8):
        hole = out[i, 0] == 0
        assert hole.any()
        # the zeroed set is a box: the product of its projections on each axis
        proj = [hole.any(dim=tuple(a for a in range(dims) if a != ax)) for ax in range(dims)]
        box = proj[0]
        for p in proj[1:]:
            box = box.unsqueeze(-1) & p
        assert torch.equal(box, hole)
        assert all(int(p.sum()) <= size // 2 for p in proj)
        assert (out[i, 0][~hole] == 1).all()


def test_brightness_and_contrast():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    b = diff_augment(x, ["brightness"], generator=_gen())
    delta = (b - x).flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6)  # one offset per sample
    assert delta.abs().max() <= 0.5 and delta.abs().max() > 0
    c = diff_augment(x, ["contrast"], generator=_gen())
    assert torch.allclose(c.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)  # mean preserved
    ratio = (c - c.mean(dim=(1, 2, 3), keepdim=True)).std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert (ratio >= 0.5 - 1e-4).all() and (ratio <= 1.5 + 1e-4).all() and ratio.std() > 0.05


def test_probability_per_sample():
    x = torch.randn(256, 1, 8, 8)
    out = diff_augment(x, ["brightness"], p=0.5, generator=_gen())
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.35 < changed < 0.65


def test_channels_last_same_result_and_layout():
    x = torch.randn(4, 3, 16, 16)
    ref = diff_augment(x, list(POLICIES), generator=_gen())
    out = diff_augment(x.contiguous(memory_format=torch.channels_last), list(POLICIES), generator=_gen())
    assert torch.allclose(out, ref, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_bad_policy_and_shape():
    with pytest.raises(ConfigError) as e:
        diff_augment(torch.zeros(2, 1, 8, 8), ["rotation"])
    assert "translation" in str(e.value)
    assert diff_augment(torch.zeros(2, 1, 8, 8), "translation,cutout", generator=_gen()).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError):
        diff_augment(torch.zeros(2, 8, 8), ["cutout"])


def test_adaptive_raises_p_when_d_overfits_and_lowers_otherwise():
    ada = AdaptiveAugment(target=0.6, adjust_every=4, speed=0.05, p=0.0)
    for _ in range(3):
        assert ada.update(torch.ones(8)) == 0.0  # no change between adjustments
    assert ada.update(torch.ones(8)) == pytest.approx(0.05)
    for _ in range(4 * 30):
        ada.update(torch.full((8,), 3.0))
    assert ada.p == 1.0  # clamped
    for _ in range(4 * 3):
        ada.update(torch.tensor([1.0, -1.0, 1.0, -1.0]))  # r_t = 0 < target
    assert ada.p == pytest.approx(0.85)
    for _ in range(4 * 40):
        ada.update(-torch.ones(8))
    assert ada.p == 0.0


def test_adaptive_state_dict_roundtrip():
    ada = AdaptiveAugment(target=0.5, adjust_every=3, speed=0.1, p=0.2)
    for _ in range(4):
        ada.update(torch.ones(5))  # one adjustment plus one pending call
    state = ada.state_dict()
    assert all(type(v) in (float, int) for v in state.values())
    other = AdaptiveAugment()
    other.load_state_dict(state)
    assert other.state_dict() == state
    for _ in range(2):
        assert ada.update(torch.ones(5)) == other.update(torch.ones(5))
    assert other.p == pytest.approx(0.4)
