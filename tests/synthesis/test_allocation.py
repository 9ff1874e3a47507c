"""Tests for medgan.synthesis.allocation: fill_smallest_first, proportional and top-up-to-majority counts."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.errors import MedganError
from medgan.synthesis.allocation import fill_smallest_first, proportional
from medgan.synthesis.export import augment


def test_synthetic_allocation_policy():
    assert fill_smallest_first([29, 399], 1.0) == [399, 29]  # both classes end at 428
    assert fill_smallest_first([29, 399], 0.5) == [214, 0]
    assert fill_smallest_first([29, 399], "balance") == [370, 0]
    # 25 images: all classes raised to level 16 (23 images), the 2 left go to the fewest-real classes first
    assert fill_smallest_first([10, 10, 5], 1.0) == [7, 6, 12]
    assert sum(fill_smallest_first([10, 10, 5], 0.5)) == 12
    assert fill_smallest_first([10, 10, 5], 0.2) == [0, 0, 5]


def test_counts():
    assert proportional([4, 10], 0.5) == [2, 5]
    assert proportional([4, 10], 1.0) == [4, 10]
    assert proportional([4, 10], "balance") == [6, 0]
    assert proportional([4, 10, 0], "balance") == [6, 0, 10]
    with pytest.raises(MedganError, match="ratio"):
        proportional([4, 10], -1)
    with pytest.raises(MedganError, match="ratio"):
        proportional([4, 10], "lots")


def test_balance_tops_up_to_majority(tmp_path, breast):
    res = augment(breast, tmp_path / "o", balance=True, format="npz", progress=False)
    assert res.counts == {"malignant": 399 - 147}  # BreastMNIST train counts 147 / 399
    with np.load(tmp_path / "o" / "synthetic.npz") as z:
        assert (z["train_labels"] == 0).all() and len(z["train_labels"]) == 252
    with pytest.raises(MedganError, match="exclude each other"):
        augment(breast, tmp_path / "p", n=3, balance=True, progress=False)
    with pytest.raises(MedganError, match="nothing to balance"):
        augment(breast, tmp_path / "q", balance=True, classes=["normal, benign"], progress=False)
