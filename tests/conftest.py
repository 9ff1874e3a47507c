"""Shared fixtures: real data from ../shared/data (skipped with a clear reason when absent), the in-process CLI,
cached phantoms, the tiny training YAML, and tiny generator checkpoints for real dataset metas."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import MEDMNIST_DIR, SAMPLES_DIR, TINY, cached_checkpoint

from medgan.data.phantom import make_phantom as _make_phantom  # the real one: fast_phantoms patches the module

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


# ------------------------------------------------------------------------------------------- training engine


@functools.lru_cache(maxsize=4)
def _phantom(dims: int, size: int = 28, seed: int = 1234):
    return _make_phantom(dims, size, seed)


@pytest.fixture
def fast_phantoms(monkeypatch):
    """Build each phantom dataset once per test session (they are deterministic) and use one thread.

    Request it explicitly: ``pytestmark = pytest.mark.usefixtures("fast_phantoms")`` in a test module.
    """
    import medgan.data.phantom as phantom

    monkeypatch.setattr(phantom, "make_phantom", _phantom)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_yaml(tmp_path) -> Path:
    """``tmp_path/tiny.yaml``: the tiny model and fast logging of ``helpers.TINY`` (no dataset: flags give it)."""
    nested: dict = {}
    for key, value in TINY.items():
        if key == "data.dataset":
            continue
        sec, *rest = key.split(".")
        node = nested.setdefault(sec, {})
        for r in rest[:-1]:
            node = node.setdefault(r, {})
        node[rest[-1]] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(nested))
    return path


# ------------------------------------------------------------------------------------------- checkpoints and data


@pytest.fixture(scope="session")
def breast(tmp_path_factory) -> Path:
    """A tiny generator checkpoint for BreastMNIST's meta (made once per session)."""
    return cached_checkpoint(tmp_path_factory, "breastmnist")


@pytest.fixture(scope="session")
def adrenal(tmp_path_factory) -> Path:
    """A tiny generator checkpoint for AdrenalMNIST3D's meta (3D)."""
    return cached_checkpoint(tmp_path_factory, "adrenalmnist3d")


@pytest.fixture(scope="session")
def adrenal_ct(tmp_path_factory) -> Path:
    """As ``adrenal``, with an anisotropic training spacing and modality CT recorded in the checkpoint."""
    return cached_checkpoint(tmp_path_factory, "adrenalmnist3d", spacing=[1.0, 1.5, 2.0], modality="CT")


@pytest.fixture(scope="module")
def phantom_train():
    """phantom2d's training split after scarcity (100 + 100 + 80 images): (x in [-1, 1], y)."""
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    td = prepare(load_dataset("phantom2d", scarce=["0=0.25", "1=0.25"]))  # 100 + 100 + 80 training images
    return td.x["train"], td.y["train"]
