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
    assert (bank.array_images - x).abs().max() <= 1 / 127.5  # uint8 storage: within one quantisation step
    # handed out as MONAI's LoadImage lays out BreastMNIST images saved as PNG: (x, y), the arrays transposed
    assert bank.layout == "monai" and torch.equal(bank.images, bank.array_images.transpose(-1, -2))
    assert torch.equal(bank.with_layout("array").images, bank.array_images)
    assert torch.equal(bank.get(3), bank.images[3]) and torch.equal(bank.with_layout("array").get(3),
                                                                    bank.array_images[3])
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


def test_bank_layout_follows_the_training_files(tmp_path, breast, adrenal_ct):
    """2D MedMNIST arrays are images (rows first): MONAI layout swaps; 3D arrays are (x, y, z) volumes: it does not.
    The affine carries the model grid's spacing in the bank's layout."""
    b2 = SyntheticBank.from_checkpoint(breast, 2, seed=0)
    assert b2.grid.row_first and b2.grid.source_kind == "array"
    b3 = SyntheticBank.from_checkpoint(adrenal_ct, 2, seed=0)
    assert not b3.grid.row_first and torch.equal(b3.images, b3.array_images)
    np.testing.assert_allclose(np.diag(b3.affine())[:3], [1.0, 1.5, 2.0])
    assert b3.mean_image("1").shape == (1, 28, 28, 28)
    with pytest.raises(MedganError, match="layout must be"):
        b2.with_layout("xy")


def test_grid_spacing_scales_with_the_model_size():
    from medgan.data.grid import model_grid

    meta = {"spatial_dims": 2, "size": 64, "spacing": [0.5, 0.8], "native_shape": [512, 256], "source_kind": "image"}
    g = model_grid(meta)
    assert g.spacing == (4.0, 3.2) and g.row_first  # (rows, columns) spacing at 64 x 64
    assert g.monai_spacing() == (3.2, 4.0)  # MONAI's (x, y) order
    assert not model_grid({**meta, "source_kind": "nifti"}).row_first
    assert model_grid({"spatial_dims": 3, "size": 28}).spacing is None


def test_bank_errors(tmp_path):
    b = marked_bank()
    with pytest.raises(MedganError, match="unknown class 'z'"):
        b.draw("z")
    with pytest.raises(DatasetError, match="not found"):
        SyntheticBank.from_folder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedganError, match="no manifest.csv"):
        SyntheticBank.from_folder(tmp_path / "empty")


# ------------------------------------------------------------------------------ counterfactual pairs


@pytest.mark.parametrize("fmt", ["png", "npz", "dicom"])
def test_bank_from_a_pairs_folder_keeps_the_pair_ids(tmp_path, breast, fmt):
    res = augment(breast, tmp_path / fmt, n=4, pairs=True, format=fmt, seed=2, progress=False)
    bank = SyntheticBank.from_folder(res.out_dir)
    assert bank.pair_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and bank.provenance["pairs"] == 4
    drawn = SyntheticBank.from_checkpoint(breast, n_per_class=4, seed=2, pairs=True)  # the same pairs, in memory
    assert drawn.pair_ids.tolist() == bank.pair_ids.tolist() and drawn.provenance["pairs"] == 4
    assert torch.equal(drawn.array_images, bank.array_images) and torch.equal(drawn.labels, bank.labels)
    pos = bank.pair_positions(2)
    assert pos.tolist() == [4, 5] and bank.labels[pos].tolist() == [0, 1]
    sub = bank.subset([1, 2, 5])  # a subset (a filtered pool) keeps each image's pair id
    assert sub.pair_ids.tolist() == [0, 1, 2] and sub.with_layout("array").pair_ids.tolist() == [0, 1, 2]


def test_bank_without_pairs_says_so(bank):
    assert bank.pair_ids is None
    with pytest.raises(MedganError, match="holds no counterfactual pairs"):
        bank.pair_positions(0)
    with pytest.raises(MedganError, match="pair ids"):
        SyntheticBank(bank.raw_data[:2], np.zeros(2), ["a", "b"], pair_ids=np.zeros(3))
