"""Dataset specs that need no image files: MedMNIST names, phantoms, .npz paths; splits, scarcity, intensity."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.data.dataset import SPLITS
from medgan.data.preprocess import from_model_tensor, prepare
from medgan.data.sources import load_dataset
from medgan.errors import DatasetError


def test_breastmnist_counts_and_layout(medmnist_dir):
    data = load_dataset("breastmnist")
    assert data.source == "medmnist"
    assert data.class_names == ["malignant", "normal, benign"]
    assert data.counts("train") == [147, 399]
    assert [len(data.splits[s]) for s in SPLITS] == [546, 78, 156]
    assert data.splits["train"].images.shape == (546, 1, 28, 28)
    assert data.splits["train"].images.dtype == np.uint8
    assert (data.spatial_dims, data.channels, data.licence) == (2, 1, "CC BY 4.0")
    assert data.extra["path"].endswith("breastmnist.npz")


def test_adrenalmnist3d_volumes(medmnist_dir):
    data = load_dataset("adrenalmnist3d", data_dir=medmnist_dir)
    assert data.spatial_dims == 3
    assert data.splits["train"].images.shape == (1188, 1, 28, 28, 28)
    assert data.counts("train") == [929, 259]
    assert [len(data.splits[s]) for s in SPLITS] == [1188, 98, 298]


def test_intensity_round_trip_is_exact_at_native_size(medmnist_dir):
    data = load_dataset("breastmnist")
    td = prepare(data)
    x = td.x["val"]
    assert td.size == 28 and tuple(x.shape) == (78, 1, 28, 28)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    back = from_model_tensor(x, data.intensity)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, data.splits["val"].images)


@pytest.mark.parametrize("spec, dims, counts", [("phantom2d", 2, [400, 400, 80]), ("phantom3d", 3, [160, 40])])
def test_phantoms(spec, dims, counts):
    data = load_dataset(spec)
    assert data.spatial_dims == dims and data.channels == 1
    assert data.counts("train") == counts
    assert data.splits["train"].images.shape[2:] == (28,) * dims
    assert all(len(data.splits[s]) > 0 for s in SPLITS)


def _write_npz(path, n=40, rgb=False, splits=("train",), seed=0):
    rs = np.random.RandomState(seed)
    arrays = {}
    for s in splits:
        shape = (n, 12, 12, 3) if rgb else (n, 12, 12)
        arrays[f"{s}_images"] = rs.randint(0, 256, size=shape).astype(np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_npz_path_without_own_splits_gets_a_stratified_split(tmp_path):
    arrays = _write_npz(tmp_path / "mine.npz", n=40, rgb=True)
    data = load_dataset(str(tmp_path / "mine.npz"), split_seed=3)
    assert data.source == "npz" and data.class_names == ["0", "1"]
    assert data.channels == 3 and data.splits["train"].images.shape[1:] == (3, 12, 12)
    assert [len(data.splits[s]) for s in SPLITS] == [28, 4, 8]
    assert data.counts("test") == [4, 4]
    assert data.extra["split"] == "stratified 70/10/20, seed 3"
    # every image is in exactly one split
    total = sum(len(data.splits[s]) for s in SPLITS)
    assert total == len(arrays["train_labels"])
    again = load_dataset(str(tmp_path / "mine.npz"), split_seed=3)
    np.testing.assert_array_equal(again.splits["val"].images, data.splits["val"].images)


def test_npz_with_own_test_split_keeps_it_and_carves_only_val(tmp_path):
    arrays = _write_npz(tmp_path / "tt.npz", n=40, splits=("train", "test"))
    data = load_dataset(str(tmp_path / "tt.npz"))
    np.testing.assert_array_equal(data.splits["test"].images[:, 0], arrays["test_images"])
    assert [len(data.splits[s]) for s in SPLITS] == [36, 4, 40]
    assert "val carved" in data.extra["split"]


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


def test_unsupported_medmnist_size():
    with pytest.raises(DatasetError, match="no size 32"):
        load_dataset("breastmnist_32")
