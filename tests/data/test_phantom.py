"""Tests for medgan.data.phantom: the procedural phantom datasets."""

from __future__ import annotations

import pytest

from medgan.data.dataset import SPLITS
from medgan.data.sources import load_dataset


@pytest.mark.parametrize("spec, dims, counts", [("phantom2d", 2, [400, 400, 80]), ("phantom3d", 3, [160, 40])])
def test_phantoms(spec, dims, counts):
    data = load_dataset(spec)
    assert data.spatial_dims == dims and data.channels == 1
    assert data.counts("train") == counts
    assert data.splits["train"].images.shape[2:] == (28,) * dims
    assert all(len(data.splits[s]) > 0 for s in SPLITS)
