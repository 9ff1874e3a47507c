"""Shared fixtures: real data from ../shared/data (skipped with a clear reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
MEDMNIST_DIR = SHARED_DATA / "medmnist"
SAMPLES_DIR = SHARED_DATA / "samples"

torch.set_num_threads(min(2, torch.get_num_threads()))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set MEDGAN_SHARED_DATA or put ../shared/data beside the repo)")
    return path


@pytest.fixture
def medmnist_dir(monkeypatch) -> Path:
    """The folder with the official MedMNIST files; MEDGAN_DATA_DIR points at it, downloads are off."""
    d = _need(MEDMNIST_DIR)
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(d))
    return d


@pytest.fixture
def samples_dir() -> Path:
    """Small real NIfTI and DICOM files."""
    return _need(SAMPLES_DIR)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache from tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
