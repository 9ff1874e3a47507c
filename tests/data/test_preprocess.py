"""Tests for medgan.data.preprocess: the intensity mapping to [-1, 1] and back."""

from __future__ import annotations

import numpy as np

from medgan.data.preprocess import from_model_tensor, prepare
from medgan.data.sources import load_dataset


def test_intensity_round_trip_is_exact_at_native_size(medmnist_dir):
    data = load_dataset("breastmnist")
    td = prepare(data)
    x = td.x["val"]
    assert td.size == 28 and tuple(x.shape) == (78, 1, 28, 28)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    back = from_model_tensor(x, data.intensity)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, data.splits["val"].images)
