"""Tests for medgan.evaluation.classical: ClassicalAugment."""

from __future__ import annotations

import torch

from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.evaluation.classical import ClassicalAugment


def test_classical_augment_is_seeded_and_keeps_shape():
    x = prepare(load_dataset("phantom2d")).x["train"][:16]
    a1 = ClassicalAugment(2, torch.Generator().manual_seed(3))(x)
    a2 = ClassicalAugment(2, torch.Generator().manual_seed(3))(x)
    assert a1.shape == x.shape and torch.equal(a1, a2)
    assert a1.min() >= -1 and a1.max() <= 1
    assert (a1 - x).abs().mean() > 0.01
    v = torch.rand(4, 1, 12, 12, 12) * 2 - 1
    assert ClassicalAugment(3, torch.Generator().manual_seed(0))(v).shape == v.shape


def test_a_group_is_augmented_in_one_pass_exactly_as_one_by_one():
    from medgan.evaluation.classical import ClassicalAugment, augment_group, classical_augment

    xs = [torch.rand(6, 1, 28, 28) * 2 - 1 for _ in range(3)]
    alone = [classical_augment("mild", 2, torch.Generator().manual_seed(s))(x) for s, x in enumerate(xs)]
    together = augment_group([classical_augment("mild", 2, torch.Generator().manual_seed(s)) for s in range(3)], xs)
    assert all(torch.equal(a, b) for a, b in zip(alone, together, strict=True))
    assert ClassicalAugment.apply_group is not None  # what fit_group looks for
