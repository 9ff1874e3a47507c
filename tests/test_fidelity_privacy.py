"""Sample-quality measures and the memorisation (near-copy) detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.data.phantom import make_phantom
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.distances import frechet_distance, kernel_distance, mean_pairwise_distance, prdc
from medgan.errors import EvaluationError
from medgan.evaluation.privacy import memorisation_check
from medgan.synthesis.near_copies import near_copy_filter, near_copy_filter_for_checkpoint


@pytest.fixture(scope="module")
def phantom():
    td = prepare(load_dataset("phantom2d", scarce=["0=0.25", "1=0.25"]))  # 100 + 100 + 80 training images
    return td.x["train"], td.y["train"]


def _synthetic_mix(train_x, train_y):
    """10 exact copies, 10 slightly noisy copies, 40 fresh phantoms (new seed), 20 smooth-noise images."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(train_x), generator=g)[:20]
    copies = train_x[idx[:10]]
    noisy = (train_x[idx[10:]] + 0.02 * torch.randn(train_x[idx[10:]].shape, generator=g)).clamp(-1, 1)
    fresh_td = prepare(make_phantom(2, seed=777))
    fresh = fresh_td.x["train"][:40]
    blobs = torch.nn.functional.interpolate(torch.rand(20, 1, 7, 7, generator=g) * 2 - 1, size=(28, 28),
                                            mode="bilinear", align_corners=False)
    x = torch.cat([copies, noisy, fresh, blobs])
    y = torch.cat([train_y[idx], fresh_td.y["train"][:40], torch.zeros(20, dtype=torch.long)])
    return x, y


def test_near_copies_are_flagged_and_fresh_samples_are_not(phantom):
    train_x, train_y = phantom
    x, y = _synthetic_mix(train_x, train_y)
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


def test_near_copy_filter_marks_copies_for_redraw(phantom):
    train_x, train_y = phantom
    x, y = _synthetic_mix(train_x, train_y)
    f = near_copy_filter(train_x)
    mask = f(x, y)
    assert mask.dtype == torch.bool and mask.shape == (80,)
    assert mask[:20].all() and not mask[60:].any()
    assert near_copy_filter(train_x, threshold=0.0)(x[10:20], y[10:20]).sum() == 0  # explicit threshold wins


def test_near_copy_filter_for_checkpoint_checks_the_fingerprint():
    data = load_dataset("phantom2d", scarce=["2=40"])
    ckpt = {"config": {"data": {"dataset": "phantom2d", "scarce": ["2=40"], "split_seed": 0}},
            "data": {**data.meta(), "size": 28}}
    f = near_copy_filter_for_checkpoint(ckpt)
    assert f.train.shape[0] == len(data.splits["train"])
    ckpt["data"]["train_fingerprint"] = "f" * 64
    with pytest.raises(EvaluationError, match="fingerprint"):
        near_copy_filter_for_checkpoint(ckpt)


def test_frechet_and_kernel_distances_order_sets():
    rs = np.random.RandomState(0)
    a, b = rs.randn(400, 8), rs.randn(400, 8)
    far = rs.randn(400, 8) + 2.0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < 0.5 < frechet_distance(a, far)
    # mean shift of 2 in 8 dims contributes 32 to FD
    assert frechet_distance(a, far) == pytest.approx(32, rel=0.15)
    kb, kf = kernel_distance(a, b), kernel_distance(a, far)
    assert abs(kb["mean"]) < 0.1 < kf["mean"]
    assert kb["subset_size"] == 100
    assert kernel_distance(a[:30], far[:40])["subset_size"] == 30


def test_prdc_and_diversity():
    rs = np.random.RandomState(0)
    real = rs.randn(200, 4)
    same = prdc(real, real, k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc(real, rs.randn(200, 4) + 20, k=5)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0
    collapsed = prdc(real, np.repeat(real[:1], 50, 0) + 1e-3 * rs.randn(50, 4), k=5)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.1 and collapsed["coverage"] < 0.1
    assert prdc(real[:5], real, k=5) is None
    assert mean_pairwise_distance(np.zeros((10, 3))) == 0.0
    assert mean_pairwise_distance(real) > mean_pairwise_distance(real * 0.1)


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
