"""Tests for medgan.data.scarcity: seeded per-class subsampling and its errors."""

from __future__ import annotations

import numpy as np
from helpers import one_line_error

from medgan.data.sources import load_dataset


def test_scarcity_by_name_and_fraction(medmnist_dir):
    full = load_dataset("breastmnist")
    data = load_dataset("breastmnist", scarce=["malignant=30"], split_seed=1)
    assert data.counts("train") == [30, 399]
    assert data.counts("test") == full.counts("test")
    rec = data.scarcity
    assert rec["original_counts"] == [147, 399] and rec["counts"] == [30, 399] and rec["seed"] == 1
    assert len(rec["kept_indices"]) == 429
    kept = np.asarray(rec["kept_indices"])
    np.testing.assert_array_equal(full.splits["train"].images[kept], data.splits["train"].images)
    same = load_dataset("breastmnist", scarce=["malignant=30"], split_seed=1)
    assert same.fingerprint() == data.fingerprint()
    other = load_dataset("breastmnist", scarce=["malignant=30"], split_seed=2)
    assert other.fingerprint() != data.fingerprint()
    frac = load_dataset("breastmnist", scarce=["0=0.5"])
    assert frac.counts("train") == [74, 399]


def test_scarce_unknown_class_and_too_many(medmnist_dir):
    msg = one_line_error(load_dataset, "breastmnist", scarce=["benignn=10"], match="unknown class 'benignn'")
    assert "0='malignant'" in msg
    msg = one_line_error(load_dataset, "breastmnist", scarce=["malignant=500"], match="only 147")
    one_line_error(load_dataset, "breastmnist", scarce=["0=1.5"], match="must be in (0, 1]")
