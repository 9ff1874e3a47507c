"""Tests for medgan.training.batches: use_balanced, IndexDraw (class-balanced GAN batches), RealAugment."""

from __future__ import annotations

import pytest
import torch

from medgan.errors import TrainingError
from medgan.training.batches import IndexDraw, RealAugment, use_balanced


def test_balanced_batches_balance_a_10_to_1_dataset():
    labels = torch.tensor([0] * 1000 + [1] * 100)
    assert use_balanced("auto", [1000, 100]) and not use_balanced("auto", [100, 120])
    assert use_balanced("on", [100, 100]) and not use_balanced("off", [1000, 10])
    g = torch.Generator().manual_seed(0)
    bal = IndexDraw(labels, 2, balanced=True, generator=g).draw(20000)
    frac = (labels[bal] == 1).float().mean().item()
    assert 0.45 < frac < 0.55
    uni = IndexDraw(labels, 2, balanced=False, generator=g).draw(20000)
    frac = (labels[uni] == 1).float().mean().item()
    assert 0.07 < frac < 0.11


def test_real_augment_off_is_the_identity_and_on_is_a_resumable_stream():
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    off = RealAugment("none", "mild", 2, seed=0)
    assert off(x) is x and off.rng_state() == {} and not off.enabled
    on = RealAugment("classical", "mild", 2, seed=0)
    state = on.rng_state()["real_aug"]
    a = on(x)
    assert a.shape == x.shape and not torch.equal(a, x) and a.abs().max() <= 1
    b = on(x)
    assert not torch.equal(a, b)  # a new draw every batch ...
    again = RealAugment("classical", "mild", 2, seed=5)
    again.set_rng_state({"real_aug": state})
    assert torch.equal(again(x), a) and torch.equal(again(x), b)  # ... that the saved state replays
    again.set_rng_state({})  # a checkpoint of a run with the option off: the stream stays where it is
    cl = RealAugment("classical", "moderate", 3, seed=0, memory_format=torch.channels_last_3d)
    assert cl(torch.zeros(2, 1, 8, 8, 8)).is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(TrainingError, match="augment_real"):
        RealAugment("strong", "mild", 2, seed=0)
