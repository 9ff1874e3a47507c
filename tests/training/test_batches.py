"""Tests for medgan.training.batches: use_balanced and IndexDraw (class-balanced GAN batches)."""

from __future__ import annotations

import torch

from medgan.training.batches import IndexDraw, use_balanced


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
