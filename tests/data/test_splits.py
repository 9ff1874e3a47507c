"""Tests for medgan.data.splits: stratified splits carved for sources that bring none (or only some)."""

from __future__ import annotations

import numpy as np

from medgan.data.dataset import SPLITS
from medgan.data.sources import load_dataset


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


def test_tuning_view_never_uses_test_and_halves_validation_stratified():
    from medgan.data.splits import tuning_view

    data = load_dataset("phantom2d")
    view = tuning_view(data, seed=1)
    val = data.splits["val"]
    # the training split is untouched: a generator trained on it passes the leakage guard
    assert view.fingerprint() == data.fingerprint()
    # both halves come from validation, are disjoint, cover it, and keep every class
    key = [a.tobytes() for a in val.images]
    pos = {k: i for i, k in enumerate(key)}
    sel = [pos[a.tobytes()] for a in view.splits["val"].images]
    score = [pos[a.tobytes()] for a in view.splits["test"].images]
    assert not set(sel) & set(score) and sorted(sel + score) == list(range(len(val)))
    assert len(set(key)) == len(key)  # (phantom images are all distinct, so the mapping is exact)
    for half in ("val", "test"):
        counts = view.counts(half)
        assert min(counts) >= 1 and all(abs(2 * c - v) <= 1 for c, v in zip(counts, data.counts("val"), strict=True))
    test_keys = {a.tobytes() for a in data.splits["test"].images}
    assert not test_keys & {a.tobytes() for s in ("val", "test") for a in view.splits[s].images}
    assert "the test split is not used" in view.extra["tuning"]
    assert tuning_view(data, seed=1).splits["test"].fingerprint() == view.splits["test"].fingerprint()
    assert tuning_view(data, seed=2).splits["test"].fingerprint() != view.splits["test"].fingerprint()
