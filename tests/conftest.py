"""Shared fixtures: real data from ../shared/data (skipped with a clear reason when absent)."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture
def medgan_cli(monkeypatch, capsys):
    """Run ``medgan ARGS`` in-process through the console entry point (``medgan.cli.main``).

    Returns a ``CompletedProcess`` with the exit code, stdout and stderr, as a subprocess run would.
    """
    from medgan.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["medgan", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run
