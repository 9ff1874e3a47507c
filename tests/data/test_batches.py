"""Tests for medgan.data.batches: BatchStream (shuffled epochs or class-balanced draws)."""

from __future__ import annotations

import torch

from medgan.data.batches import BatchStream


def test_batch_stream_shuffles_or_balances():
    y = torch.tensor([0] * 90 + [1] * 10)
    s = BatchStream(y, 50, torch.Generator().manual_seed(0), balanced=False)
    first = torch.cat([s.next(), s.next()])
    assert sorted(first.tolist()) == list(range(100))  # one epoch = one permutation
    b = BatchStream(y, 1000, torch.Generator().manual_seed(0), balanced=True)
    frac = (y[b.next()] == 1).float().mean().item()
    assert 0.4 < frac < 0.6
