"""Tests for ``augment(from_real=True)`` (medgan.synthesis.from_real): real BreastMNIST / AdrenalMNIST3D training
images translated by tiny generators, written in every format with their sources in the manifest; the bank and
the evaluation pool built from translations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, one_line_error, real_meta

import medgan.synthesis.from_real as from_real
from medgan.errors import ConfigError, EvaluationError
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.export import augment, read_manifest
from medgan.synthesis.inversion import InversionSettings

FAST = InversionSettings(steps=5, lr=0.1, encoder_steps=5, encoder_batch=16)


@pytest.fixture(autouse=True)
def _fast_inversion(monkeypatch):
    monkeypatch.setattr(from_real, "INVERSION", FAST)


@pytest.fixture(scope="module")
def breast_train(breast):
    """The BreastMNIST training split as the tiny checkpoint saw it (model range)."""
    from helpers import MEDMNIST_DIR

    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    td = prepare(load_dataset("breastmnist", data_dir=MEDMNIST_DIR, download=False), 28)
    return td.x["train"], td.y["train"]


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_from_real_writes_translations_with_their_sources(breast, breast_train, medmnist_dir, tmp_path, fmt):
    out = tmp_path / fmt
    res = augment(breast, out, n=6, classes=["malignant"], format=fmt, from_real=True, strength=0.7,
                  train_data="breastmnist", progress=False, seed=2)
    assert res.counts == {"malignant": 6, "normal, benign": 0} or res.counts == {"malignant": 6}
    rows = read_manifest(out)
    assert [r["class_name"] for r in rows] == ["malignant"] * 6
    assert {"source_index", "source_label", "source_class", "strength"} <= set(rows[0])
    _, train_y = breast_train
    for r in rows:  # every source is a real training image of another class, named in the row
        i = int(r["source_index"])
        assert int(train_y[i]) == int(r["source_label"]) == 1 and r["source_class"] == "normal, benign"
        assert float(r["strength"]) == 0.7
    assert len({r["source_index"] for r in rows}) == 6
    info = (out / "augment.json").read_text()
    assert '"from_real"' in info and '"strength": 0.7' in info
    bank = SyntheticBank.from_folder(out)  # a bank keeps the manifest's source columns
    assert len(bank) == 6 and bank.columns["source_index"].tolist() == [int(r["source_index"]) for r in rows]
    assert bank.columns["strength"].tolist() == [0.7] * 6 and bank.subset([1, 3]).columns["source_label"].tolist() == [1, 1]


def test_from_real_is_reproducible_and_strength_zero_keeps_the_source(breast, breast_train, medmnist_dir, tmp_path,
                                                                       monkeypatch):
    a = augment(breast, tmp_path / "a", n=4, classes=[0], format="npz", from_real=True, train_data="breastmnist",
                progress=False)
    b = augment(breast, tmp_path / "b", n=4, classes=[0], format="npz", from_real=True, train_data="breastmnist",
                progress=False)
    assert (a.out_dir / "synthetic.npz").read_bytes() == (b.out_dir / "synthetic.npz").read_bytes()
    monkeypatch.setattr(from_real, "DEFAULT_RESIDUAL", 1.0)  # the whole residual: strength 0 is the source itself
    augment(breast, tmp_path / "zero", n=4, classes=[0], format="npz", from_real=True, strength=0.0,
            train_data="breastmnist", progress=False)
    bank = SyntheticBank.from_folder(tmp_path / "zero")
    train_x, _ = breast_train
    src = train_x[torch.as_tensor(bank.columns["source_index"])]
    assert torch.allclose(bank.array_images, src, atol=1 / 127.5 + 1e-6)


def test_from_real_rejects_near_copies_of_the_scarce_images(breast, breast_train, medmnist_dir, tmp_path, monkeypatch):
    """A translator that returns a real malignant training image for every second source: those translations are
    near-copies of the scarce images, dropped and replaced by the next source."""
    train_x, train_y = breast_train
    malignant = train_x[train_y == 0]

    class Copier:
        class_names = ["malignant", "normal, benign"]

        def translate(self, x, y_src, y_tgt, strength):
            out = x.clone()
            out[::2] = malignant[: len(out[::2])]
            return out

    res = augment(breast, tmp_path / "o", n=5, classes=["malignant"], format="npz", from_real=True,
                  train_data="breastmnist", reject_near_copies=True, progress=False, translator=Copier())
    rows = read_manifest(tmp_path / "o")
    assert res.redraws == 5 and sum(int(r["near_copy_redraws"]) for r in rows) == 5
    bank = SyntheticBank.from_folder(tmp_path / "o")
    d = torch.cdist(bank.array_images.flatten(1), malignant.flatten(1)).min(1).values
    assert (d > 0.5).all()  # no copy of a malignant training image was kept


def test_from_real_errors_are_one_line(breast, medmnist_dir, tmp_path):
    msg = one_line_error(augment, breast, tmp_path / "a", n=2, from_real=True, progress=False, match="pass --dataset")
    assert "--from-real" in msg
    one_line_error(augment, breast, tmp_path / "b", n=2, from_real=True, train_data="adrenalmnist3d", progress=False,
                   match="but the generator was trained on 2D images")
    one_line_error(augment, breast, tmp_path / "c", n=2, from_real=True, progress=False,
                   train_data="pneumoniamnist", match="is not the generator's")
    one_line_error(augment, breast, tmp_path / "d", n=2, strength=0.5, progress=False, match="add --from-real")
    one_line_error(augment, breast, tmp_path / "e", n=2, classes=["no such class"], from_real=True,
                   train_data="breastmnist", progress=False, match="unknown class")
    one_line_error(augment, breast, tmp_path / "f", n=100000, classes=["malignant"], from_real=True,
                   train_data="breastmnist", progress=False, match="lower --n")
    assert not any((tmp_path / d).exists() for d in "abcdef")  # refused before anything was written


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_from_real_in_3d(adrenal, medmnist_dir, tmp_path, fmt):
    res = augment(adrenal, tmp_path / fmt, n=2, classes=[0], format=fmt, from_real=True, train_data="adrenalmnist3d",
                  progress=False)
    rows = read_manifest(tmp_path / fmt)
    assert res.n_samples == 2 and all(int(r["source_label"]) != 0 for r in rows)
    bank = SyntheticBank.from_folder(tmp_path / fmt)
    assert bank.shape == (1, 28, 28, 28) and bank.columns["source_label"].tolist() == [1, 1]


def test_translated_pool_for_evaluate(breast, medmnist_dir):
    from medgan.data.sources import load_dataset
    from medgan.evaluation.pool import pool_from_checkpoint

    data = load_dataset("breastmnist", download=False)
    said: list[str] = []
    bank, size = pool_from_checkpoint(breast, data, None, 5, 0, said.append, pool="from_real", strength=0.4)
    assert size == 28 and bank.counts == [5, 5] and said and "translating" in said[0]
    assert bank.provenance["pool"] == "from_real" and bank.provenance["strength"] == 0.4
    src = data.splits["train"].labels[bank.columns["source_index"]]
    assert np.array_equal(src, bank.columns["source_label"]) and (src != bank.labels.numpy()).all()
    with pytest.raises(EvaluationError, match="evaluate.strength"):
        pool_from_checkpoint(breast, data, None, 5, 0, pool="sample", strength=0.4)


def test_translated_pool_takes_at_most_the_other_class_images(tmp_path, medmnist_dir):
    """A pool asks more translations of a class than there are images of the other classes: it stops there."""
    from medgan.data.sources import load_dataset
    from medgan.evaluation.pool import pool_from_checkpoint

    data = load_dataset("breastmnist", scarce=["1=12"], download=False)
    meta = {**real_meta("breastmnist"), **{k: v for k, v in data.meta().items() if k != "size"}}
    ck = make_checkpoint(tmp_path / "ck.pt", meta)
    bank, _ = pool_from_checkpoint(ck, data, None, 20, 0, pool="from_real")
    assert bank.counts == [12, 20]  # 12 benign images to translate into malignant; 147 malignant the other way
    with pytest.raises(ConfigError, match="lower --n to 12"):
        augment(ck, tmp_path / "o", n=13, classes=[0], from_real=True, progress=False,
                train_data=data)
