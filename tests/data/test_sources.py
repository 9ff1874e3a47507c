"""Tests for medgan.data.sources: load_dataset's dispatch and validation errors (missing paths, names, single class)."""

from __future__ import annotations

import pytest
from helpers import one_line_error, write_png

from medgan.data import medmnist
from medgan.data.sources import load_dataset
from medgan.errors import DatasetError


def test_missing_path(tmp_path):
    msg = one_line_error(load_dataset, str(tmp_path / "nope.npz"), match="not found")
    assert "nope.npz" in msg
    one_line_error(load_dataset, str(tmp_path / "no" / "folder"), match="not found")


def test_unknown_name_suggests_closest():
    one_line_error(load_dataset, "breastmnst", match="did you mean 'breastmnist'")
    one_line_error(load_dataset, "phantom_2d", match="did you mean 'phantom2d'")


def test_single_class_dataset(tmp_path):
    for i in range(4):
        write_png(tmp_path / "one" / "only" / f"{i}.png", value=i)
    one_line_error(load_dataset, str(tmp_path / "one"), match="single class")


def test_multilabel_chestmnist_errors_before_any_download(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)

    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(medmnist, "download", no_download)
    monkeypatch.setattr(medmnist, "locate", no_download)
    one_line_error(load_dataset, "chestmnist", data_dir=tmp_path, match="multi-label")
    assert not list(tmp_path.iterdir())


def test_error_type_is_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "missing.csv"))
