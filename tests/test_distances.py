"""Tests for medgan.distances: Frechet and kernel distances, PRDC, mean pairwise distance."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.distances import frechet_distance, kernel_distance, mean_pairwise_distance, prdc


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


def test_sets_too_small_to_measure_give_nan_not_an_error():
    """An empty class (a pool without synthetic images of it) is 'not measurable', never a reshape error."""
    assert np.isnan(mean_pairwise_distance(np.zeros((0, 16), np.float32)))
    assert np.isnan(mean_pairwise_distance(np.zeros((0, 1, 8, 8), np.float32)))
    assert np.isnan(mean_pairwise_distance(np.zeros((1, 16), np.float32)))
    assert np.isnan(kernel_distance(np.zeros((0, 4)), np.ones((5, 4)))["mean"])
    assert prdc(np.zeros((0, 4)), np.ones((9, 4))) is None
