"""Tests for medgan.synthesis.writers: every format reads back (native readers and MONAI), manifests, PNG encoding."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import make_checkpoint
from PIL import Image

from medgan.errors import OutputError
from medgan.synthesis.export import augment, read_manifest
from medgan.synthesis.sampler import Sampler
from medgan.synthesis.writers import class_dirs, encode_png, sanitize_name

N = 3


def _expected(ckpt):
    """Source-range arrays (N, C, *spatial) and labels, as augment writes them (n=N per class, seed 0)."""
    x, y = Sampler.from_checkpoint(ckpt).sample(N, out="source")
    return x, y.numpy()


def _native_read(path, spatial_dims, fmt, row_first):
    """Read one written file with its own library -> (C, *spatial) in medgan's array order."""
    from medgan.synthesis.readback import read_file as _read_file
    from medgan.synthesis.writers import file_axes_swapped

    return _read_file(path, spatial_dims, file_axes_swapped(fmt, row_first))


@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom"])
def test_2d_files_read_back(tmp_path, breast, fmt):
    from monai.transforms import LoadImage

    res = augment(breast, tmp_path / fmt, n=N, format=fmt, progress=False)
    x, y = _expected(breast)
    rows = read_manifest(tmp_path / fmt)
    assert len(rows) == 2 * N == res.n_samples
    assert rows[0]["path"].startswith("malignant/") and rows[-1]["path"].startswith("normal_benign/")
    for k, r in enumerate(rows):
        p = tmp_path / fmt / r["path"]
        assert int(r["label"]) == y[k] and r["class_name"] == ["malignant", "normal, benign"][y[k]]
        np.testing.assert_array_equal(_native_read(p, 2, fmt, True), x[k])
        # MONAI LoadImage (default arguments) reads every format as (x, y): BreastMNIST's (rows, columns) arrays
        # come back transposed, as a real BreastMNIST image saved as PNG would
        m = np.asarray(LoadImage(image_only=True)(str(p)))
        np.testing.assert_array_equal(m, x[k, 0].T)
    if fmt == "png":
        with Image.open(tmp_path / fmt / rows[0]["path"]) as im:
            assert im.mode == "L" and im.size == (28, 28)
    if fmt == "nifti":
        img = nib.load(tmp_path / fmt / rows[0]["path"])
        assert b"SYNTHETIC" in img.header["descrip"].tobytes()
        assert img.get_data_dtype() == np.uint8


@pytest.mark.parametrize("fmt", ["nifti", "dicom", "npz"])
def test_3d_files_read_back(tmp_path, adrenal_ct, fmt):
    from monai.transforms import LoadImage

    augment(adrenal_ct, tmp_path / fmt, n=N, format=fmt, progress=False)
    x, y = _expected(adrenal_ct)
    assert x.shape == (2 * N, 1, 28, 28, 28)
    rows = read_manifest(tmp_path / fmt)
    if fmt == "npz":
        with np.load(tmp_path / fmt / "synthetic.npz") as z:
            np.testing.assert_array_equal(z["train_images"], x[:, 0])
            np.testing.assert_array_equal(z["train_labels"][:, 0], y)
            assert z["train_labels"].shape == (2 * N, 1)
        assert [int(r["index"]) for r in rows] == list(range(2 * N))
        return
    for k, r in enumerate(rows):
        p = tmp_path / fmt / r["path"]
        np.testing.assert_array_equal(_native_read(p, 3, fmt, False), x[k])
        m = np.asarray(LoadImage(image_only=True)(str(p)))
        if fmt == "nifti":  # 3D arrays are (x, y, z) volumes: NIfTI holds them as they are
            np.testing.assert_array_equal(m, x[k, 0])
        else:  # DICOM frames are z, rows y, columns x; MONAI's PydicomReader returns a multi-frame file as
            # (rows, frames, columns) = (y, z, x)
            np.testing.assert_array_equal(m, np.transpose(x[k, 0], (1, 2, 0)))
    first = tmp_path / fmt / rows[0]["path"]
    if fmt == "nifti":
        assert nib.load(first).header.get_zooms() == (1.0, 1.5, 2.0)  # training spacing kept
    else:
        ds = pydicom.dcmread(first)
        assert ds.SOPClassUID == pydicom.uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage
        assert int(ds.NumberOfFrames) == 28 and ds.Modality == "CT"
        # PixelSpacing is (between rows, between columns) = (y, x)
        assert [float(v) for v in ds.PixelSpacing] == [1.5, 1.0] and float(ds.SpacingBetweenSlices) == 2.0


def test_npz_2d_reads_back_with_medgan_loader(tmp_path, breast):
    from medgan.data.sources import load_dataset
    from medgan.synthesis.bank import SyntheticBank

    augment(breast, tmp_path / "o", n=N, format="npz", progress=False)
    x, y = _expected(breast)
    with np.load(tmp_path / "o" / "synthetic.npz") as z:
        assert z["train_images"].shape == (2 * N, 28, 28) and z["train_images"].dtype == np.uint8
        np.testing.assert_array_equal(z["train_images"], x[:, 0])
        assert list(z["class_names"]) == ["malignant", "normal, benign"]
    data = load_dataset(str(tmp_path / "o" / "synthetic.npz"))
    allx = np.concatenate([data.splits[s].images for s in ("train", "val", "test")])
    assert sorted(map(bytes, allx)) == sorted(map(bytes, x))  # same images (split among train/val/test)
    bank = SyntheticBank.from_folder(tmp_path / "o")
    assert bank.counts == [N, N] and bank.class_names == ["malignant", "normal, benign"]


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_repeat_runs_are_byte_identical(tmp_path, breast, fmt):
    a = augment(breast, tmp_path / "a", n=N, format=fmt, seed=4, batch_size=4, progress=False)
    b = augment(breast, tmp_path / "b", n=N, format=fmt, seed=4, batch_size=4, progress=False)
    fa = sorted(p.relative_to(a.out_dir) for p in a.out_dir.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b.out_dir) for p in b.out_dir.rglob("*") if p.is_file())
    assert fa == fb and len(fa) >= 3
    for rel in fa:
        assert (a.out_dir / rel).read_bytes() == (b.out_dir / rel).read_bytes(), rel
    c = augment(breast, tmp_path / "c", n=N, format=fmt, seed=5, progress=False)
    main = [r for r in fa if r.name not in ("augment.json", "manifest.csv")]
    assert any((a.out_dir / r).read_bytes() != (c.out_dir / r).read_bytes() for r in main)


def test_3d_to_png_is_refused_before_writing(tmp_path, adrenal_ct):
    with pytest.raises(OutputError, match="use --format nifti, npz or dicom"):
        augment(adrenal_ct, tmp_path / "o", n=2, format="png", progress=False)
    assert not (tmp_path / "o").exists()


def test_rgb_png_and_dicom(tmp_path, breast):
    """A 3-channel checkpoint writes RGB PNG and RGB DICOM."""
    from helpers import real_meta

    meta = {**real_meta("breastmnist"), "channels": 3}
    ckpt = make_checkpoint(tmp_path / "rgb.pt", meta)
    x, _ = Sampler.from_checkpoint(ckpt).sample(1, out="source")
    for fmt in ("png", "dicom"):
        augment(ckpt, tmp_path / fmt, n=1, format=fmt, progress=False)
        rows = read_manifest(tmp_path / fmt)
        p = tmp_path / fmt / rows[0]["path"]
        np.testing.assert_array_equal(_native_read(p, 2, fmt, True), x[0])
    assert Image.open(tmp_path / "png" / rows[0]["path"].replace(".dcm", ".png")).mode == "RGB"
    assert pydicom.dcmread(p).PhotometricInterpretation == "RGB"


def test_class_name_sanitising():
    assert sanitize_name("normal, benign") == "normal_benign"
    assert sanitize_name("../../etc") == "etc"
    assert sanitize_name("???") == "class"
    assert class_dirs(["a b", "a_b", "A-B"]) == ["a_b", "a_b_1", "A-B"]


def test_copy_of_folder_is_still_readable(tmp_path, breast):
    """Manifest paths are relative: a moved folder still resolves."""
    from medgan.synthesis.bank import SyntheticBank

    augment(breast, tmp_path / "o", n=2, format="png", progress=False)
    shutil.move(tmp_path / "o", tmp_path / "moved")
    assert len(SyntheticBank.from_folder(tmp_path / "moved")) == 4


def test_encode_png_round_trips_every_supported_layout():
    import io

    rng = np.random.default_rng(0)
    for a in (rng.integers(0, 256, (28, 28), dtype=np.uint8), rng.integers(0, 65536, (5, 7), dtype=np.uint16),
              rng.integers(0, 256, (9, 4, 3), dtype=np.uint8)):
        data = encode_png(a)
        assert data == encode_png(a)  # the bytes depend on the pixels only
        with Image.open(io.BytesIO(data)) as im:
            np.testing.assert_array_equal(np.asarray(im).astype(a.dtype), a)
    with pytest.raises(OutputError, match="PNG holds"):
        encode_png(np.zeros((4, 4), np.float32))


def test_png_and_nifti_carry_provenance_with_the_full_seed(tmp_path, breast):
    import json

    for fmt in ("png", "nifti"):
        augment(breast, tmp_path / fmt, n=2, format=fmt, seed=6992369267411576708 % (2**62), progress=False)
    rows = read_manifest(tmp_path / "png")
    with Image.open(tmp_path / "png" / rows[0]["path"]) as im:
        text = dict(im.text)
    assert "SYNTHETIC" in text["Description"] and text["Software"].startswith("medgan")
    rec = json.loads(text["medgan"])
    assert rec["synthetic"] is True and rec["seed"] == int(rows[0]["seed"]) and rec["class"] == "malignant"
    assert rec["checkpoint_sha256"] == rows[0]["checkpoint_sha256"] and len(rows[0]["seed"]) >= 15
    rows = read_manifest(tmp_path / "nifti")
    img = nib.load(tmp_path / "nifti" / rows[-1]["path"])
    (ext,) = [e for e in img.header.extensions if e.get_code() == 6]
    rec = json.loads(ext.get_content())
    assert rec["seed"] == int(rows[-1]["seed"]) and rec["class"] == "normal, benign"  # not cut to 24 bytes
    assert rec["checkpoint_sha256"] == rows[-1]["checkpoint_sha256"]


def test_augment_json_records_the_grid_and_file_axes(tmp_path, breast):
    import json

    augment(breast, tmp_path / "o", n=1, format="png", progress=False)
    info = json.loads((tmp_path / "o" / "augment.json").read_text())
    assert info["file_axes"] == "natural" and info["grid"]["row_first"] is True and info["grid"]["size"] == 28


@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom"])
def test_files_from_a_nifti_trained_checkpoint_load_like_the_nifti_data(tmp_path, fmt):
    """2D data read from NIfTI is (x, y) already: every format loads through LoadImage as the arrays are."""
    from helpers import real_meta
    from monai.transforms import LoadImage

    ckpt = make_checkpoint(tmp_path / "nii.pt", {**real_meta("breastmnist"), "source_kind": "nifti"})
    augment(ckpt, tmp_path / fmt, n=2, format=fmt, progress=False)
    x, _ = Sampler.from_checkpoint(ckpt).sample(2, out="source")
    for k, r in enumerate(read_manifest(tmp_path / fmt)):
        np.testing.assert_array_equal(np.asarray(LoadImage(image_only=True)(str(tmp_path / fmt / r["path"]))), x[k, 0])
