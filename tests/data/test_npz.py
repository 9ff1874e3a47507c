"""Tests for medgan.data.npz: .npz files in the MedMNIST layout."""

from __future__ import annotations

import numpy as np
from helpers import one_line_error

from medgan.data.sources import load_dataset


def test_npz_without_expected_keys(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 8, 8)), y=np.zeros(4))
    msg = one_line_error(load_dataset, str(tmp_path / "bad.npz"), match="train_images")
    assert "bad.npz" in msg and "found: x, y" in msg
