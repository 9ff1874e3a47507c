"""Tests for medgan.evaluation.privacy: the memorisation (near-copy) check."""

from __future__ import annotations

import pytest
import torch
from helpers import synthetic_mix

from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.evaluation.privacy import memorisation_check


def test_near_copies_are_flagged_and_fresh_samples_are_not(phantom_train):
    train_x, train_y = phantom_train
    x, y = synthetic_mix(train_x, train_y)
    res, pairs = memorisation_check(train_x, train_y, x, y, feature_fn=lambda t: t.reshape(len(t), -1)[:, ::7])
    flagged = set(res["flagged_indices"])
    assert set(range(20)) <= flagged  # every exact and noisy copy
    assert not flagged & set(range(60, 80))  # a different distribution: never
    assert len(flagged & set(range(20, 60))) <= 2  # fresh samples of the same distribution: at most chance level
    assert res["flagged"] == len(flagged) and res["fraction_flagged"] == pytest.approx(len(flagged) / 80)
    assert res["pixel"]["synthetic_nn"]["min"] == pytest.approx(0.0, abs=1e-5)
    assert res["pixel"]["threshold"] > 0.02 * 28  # noisy copies (L2 ~ 0.02 * sqrt(784)) sit below it
    assert "feature" in res and 0 <= res["feature"]["fraction_below_threshold"] <= 1
    assert len(pairs["distance"]) == 16 and pairs["distance"] == sorted(pairs["distance"])
    assert pairs["synthetic"].shape == pairs["real"].shape == (16, 1, 28, 28)
    assert "percentile" in res["rule"]


def test_breastmnist_copies_are_flagged_at_the_data_own_duplicate_rate(medmnist_dir):
    """BreastMNIST holds near-duplicate real pairs, so the rule flags copies closer than those (here noise of sd
    0.005) and flags unseen real test images only at about the 1% calibration rate."""
    td = prepare(load_dataset("breastmnist", scarce=["0=0.2"], download=False))
    x, y = td.x["train"], td.y["train"]
    g = torch.Generator().manual_seed(0)
    noisy = (x[:20] + 0.005 * torch.randn(x[:20].shape, generator=g)).clamp(-1, 1)
    unseen = td.x["test"]  # real images the generator never saw: same distribution, not copies
    res, _ = memorisation_check(x, y, torch.cat([noisy, unseen]), torch.cat([y[:20], td.y["test"]]))
    flagged = set(res["flagged_indices"])
    assert set(range(20)) <= flagged
    assert len(flagged - set(range(20))) <= 0.03 * len(unseen)
    assert 0.005 <= res["pixel"]["real_flag_rate"] <= 0.02
