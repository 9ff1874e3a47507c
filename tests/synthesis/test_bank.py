"""Tests for medgan.synthesis.bank: SyntheticBank from checkpoints, tensors and folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers import marked_bank

from medgan.errors import DatasetError, MedganError
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.export import augment
from medgan.synthesis.sampler import Sampler


def test_bank_from_checkpoint_matches_sampler(bank, breast):
    assert len(bank) == 40 and bank.counts == [20, 20] and bank.class_names == ["malignant", "normal, benign"]
    x, y = Sampler.from_checkpoint(breast).sample(20, seed=1)
    assert torch.equal(bank.labels, y)
    assert (bank.images - x).abs().max() <= 1 / 127.5  # uint8 storage: within one quantisation step
    assert bank.provenance["checkpoint_sha256"] and bank.intensity["dtype"] == "uint8"
    img = bank.draw("malignant", np.random.RandomState(0))
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32 and -1 <= img.min() <= img.max() <= 1


def test_bank_pickles_small(bank):
    blob = pickle.dumps(bank)
    assert len(blob) < 40 * 28 * 28 + 4096  # uint8 payload + a little
    back = pickle.loads(blob)
    assert torch.equal(back.images, bank.images) and back.class_names == bank.class_names
    f16 = SyntheticBank.from_tensors(bank.images, bank.labels, bank.class_names, storage="float16")
    assert len(pickle.dumps(f16)) < 2 * 40 * 28 * 28 + 4096
    assert (f16.images - bank.images).abs().max() < 1e-3


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_bank_from_augment_folder(tmp_path, breast, fmt):
    augment(breast, tmp_path / fmt, n=4, format=fmt, seed=1, progress=False)
    b = SyntheticBank.from_folder(tmp_path / fmt)
    ref = SyntheticBank.from_checkpoint(breast, 4, seed=1)
    assert b.counts == [4, 4] and b.class_names == ref.class_names
    assert torch.equal(b.images, ref.images) and torch.equal(b.labels, ref.labels)
    if fmt == "npz":
        assert torch.equal(SyntheticBank.from_folder(tmp_path / fmt / "synthetic.npz").images, ref.images)


def test_bank_errors(tmp_path):
    b = marked_bank()
    with pytest.raises(MedganError, match="unknown class 'z'"):
        b.draw("z")
    with pytest.raises(DatasetError, match="not found"):
        SyntheticBank.from_folder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedganError, match="no manifest.csv"):
        SyntheticBank.from_folder(tmp_path / "empty")
