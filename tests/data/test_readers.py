"""Tests for medgan.data.readers: NIfTI and DICOM (files and series) from real samples, and corrupt-file errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import one_line_error, two_class_pngs, write_png

from medgan.data.dataset import SPLITS
from medgan.data.preprocess import prepare
from medgan.data.readers import is_dicom_file
from medgan.data.sources import load_dataset
from medgan.errors import DatasetError


def test_nifti_class_folder(tmp_path, samples_dir):
    nii = samples_dir / "nifti"
    for cls, files in {"a": ["anatomical.nii", "standard.nii.gz"], "b": ["someones_anatomy.nii.gz"]}.items():
        (tmp_path / "mri" / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(nii / f, tmp_path / "mri" / cls / f)
    shutil.copy(nii / "anatomical.nii", tmp_path / "mri" / "b" / "copy.nii")
    data = load_dataset(str(tmp_path / "mri"))
    assert data.spatial_dims == 3 and data.channels == 1
    assert [sum(data.counts(s)[c] for s in SPLITS) for c in range(2)] == [2, 2]
    all_paths = [p for s in SPLITS for p in data.splits[s].paths]
    all_imgs = [a for s in SPLITS for a in data.splits[s].images]
    shapes = {Path(p).name: a.shape for p, a in zip(all_paths, all_imgs, strict=True)}
    assert shapes["anatomical.nii"] == (1, 33, 41, 25)
    assert shapes["someones_anatomy.nii.gz"] == (1, 57, 67, 56)
    assert shapes["standard.nii.gz"] == (1, 4, 5, 7)
    k = all_paths.index(str(tmp_path / "mri" / "a" / "anatomical.nii"))
    np.testing.assert_allclose(all_imgs[k][0], nib.load(nii / "anatomical.nii").get_fdata())
    # median spacing over the training volumes; anatomical is 2 mm isotropic
    assert data.spacing is not None and len(data.spacing) == 3
    td = prepare(data, size=28)
    assert tuple(td.x["train"].shape[1:]) == (1, 28, 28, 28)


def test_nifti_spacing_and_2d_nifti(tmp_path, samples_dir):
    for cls in ("x", "y"):
        (tmp_path / "n" / cls).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "standard.nii.gz", tmp_path / "n" / cls / "s.nii.gz")
    data = load_dataset(str(tmp_path / "n"))
    assert data.spacing == (1.0, 3.0, 2.0)
    assert data.splits["train"].images.dtype == np.uint8
    # 2D NIfTI (and a (H, W, 1) one) load as 2D images
    rs = np.random.RandomState(0)
    for cls in ("x", "y"):
        (tmp_path / "two" / cls).mkdir(parents=True)
        nib.save(nib.Nifti1Image(rs.randint(0, 100, (20, 30)).astype(np.int16), np.diag([0.5, 0.7, 1, 1])),
                 tmp_path / "two" / cls / "flat.nii.gz")
        nib.save(nib.Nifti1Image(rs.randint(0, 100, (20, 30, 1)).astype(np.int16), np.eye(4)),
                 tmp_path / "two" / cls / "single.nii")
    two = load_dataset(str(tmp_path / "two"))
    assert two.spatial_dims == 2 and two.splits["train"].shapes() == {(20, 30)}
    assert two.splits["train"].images.dtype == np.int16


def test_dicom_series_subfolders_are_volumes(tmp_path, samples_dir):
    series = samples_dir / "dicom" / "monai_CT_DICOM"
    for cls in ("normal", "lesion"):
        for k in range(2):
            shutil.copytree(series, tmp_path / "ct" / cls / f"patient{k}")
    data = load_dataset(str(tmp_path / "ct"))
    assert data.class_names == ["lesion", "normal"]
    assert [sum(data.counts(s)[c] for s in SPLITS) for c in range(2)] == [2, 2]
    assert data.spatial_dims == 3 and data.splits["train"].shapes() == {(16, 16, 4)}
    assert data.modality == "CT"
    assert data.spacing == pytest.approx((0.488281, 0.488281, 1.25))
    vol = data.splits["train"].images[0, 0]
    assert vol.dtype == np.int16
    # slices are sorted along the slice normal: the lowest ImagePositionPatient z comes first
    slices = [pydicom.dcmread(f) for f in sorted(series.iterdir())]
    lowest = min(slices, key=lambda d: float(d.ImagePositionPatient[2]))
    hu = lowest.pixel_array.astype(np.int32) * int(lowest.RescaleSlope) + int(lowest.RescaleIntercept)
    np.testing.assert_array_equal(vol[..., 0], hu)


def test_single_dicom_files_are_2d_and_rle_decodes(tmp_path, samples_dir):
    pyd = samples_dir / "dicom" / "pydicom"
    (tmp_path / "d" / "ct").mkdir(parents=True)
    (tmp_path / "d" / "mr").mkdir(parents=True)
    shutil.copy(pyd / "CT_small.dcm", tmp_path / "d" / "ct")
    shutil.copy(samples_dir / "dicom" / "monai_CT_DICOM" / "7106", tmp_path / "d" / "ct" / "noext")
    shutil.copy(pyd / "MR_small.dcm", tmp_path / "d" / "mr")
    shutil.copy(pyd / "MR_small_RLE.dcm", tmp_path / "d" / "mr")
    assert is_dicom_file(tmp_path / "d" / "ct" / "noext")
    data = load_dataset(str(tmp_path / "d"))
    assert data.spatial_dims == 2 and data.modality == "CT+MR"
    imgs = {Path(p).name: a for s in SPLITS for p, a in zip(data.splits[s].paths, data.splits[s].images, strict=True)}
    assert imgs["CT_small.dcm"].shape == (1, 128, 128) and imgs["noext"].shape == (1, 16, 16)
    assert imgs["MR_small.dcm"].shape == (1, 64, 64)
    np.testing.assert_array_equal(imgs["MR_small_RLE.dcm"], imgs["MR_small.dcm"])
    np.testing.assert_array_equal(imgs["MR_small.dcm"][0], pydicom.dcmread(pyd / "MR_small.dcm").pixel_array)


def test_corrupt_png_names_the_file(tmp_path):
    root = two_class_pngs(tmp_path / "ds")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    msg = one_line_error(load_dataset, str(root), match="broken.png")
    assert "corrupt" in msg
    # a truncated PNG (valid header, data cut short) is caught as well
    good = (root / "b" / "0.png").read_bytes()
    (root / "a" / "broken.png").write_bytes(good[: len(good) // 2])
    one_line_error(load_dataset, str(root), match="broken.png")


def test_corrupt_nifti_names_the_file(tmp_path, samples_dir):
    for c in ("a", "b"):
        (tmp_path / "n" / c).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "standard.nii.gz", tmp_path / "n" / c / "ok.nii.gz")
    (tmp_path / "n" / "b" / "bad.nii").write_bytes(b"not a nifti header" * 30)
    one_line_error(load_dataset, str(tmp_path / "n"), match="bad.nii")
    (tmp_path / "n" / "b" / "bad.nii").unlink()
    data = (samples_dir / "nifti" / "someones_anatomy.nii.gz").read_bytes()
    (tmp_path / "n" / "b" / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    one_line_error(load_dataset, str(tmp_path / "n"), match="cut.nii.gz")


def test_corrupt_dicom_names_the_file(tmp_path, samples_dir):
    pyd = samples_dir / "dicom" / "pydicom"
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        shutil.copy(pyd / "MR_small.dcm", tmp_path / "d" / c / "ok.dcm")
    (tmp_path / "d" / "a" / "junk.dcm").write_bytes(b"\x00" * 50)
    one_line_error(load_dataset, str(tmp_path / "d"), match="junk.dcm")
    (tmp_path / "d" / "a" / "junk.dcm").unlink()
    raw = (pyd / "CT_small.dcm").read_bytes()
    (tmp_path / "d" / "a" / "cut.dcm").write_bytes(raw[: len(raw) - 20000])  # pixel data cut short
    one_line_error(load_dataset, str(tmp_path / "d"), match="cut.dcm")


def test_4d_nifti_is_rejected_with_a_split_hint(tmp_path, samples_dir):
    for c in ("a", "b"):
        (tmp_path / "f" / c).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "example4d.nii.gz", tmp_path / "f" / c / "run.nii.gz")
    msg = one_line_error(load_dataset, str(tmp_path / "f"), match="4D NIfTI")
    assert "run.nii.gz" in msg and "split it into 3D volumes" in msg


def test_dicom_series_folder_problems(tmp_path, samples_dir):
    series = samples_dir / "dicom" / "monai_CT_DICOM"
    for c in ("a", "b"):
        shutil.copytree(series, tmp_path / "ds" / c / "s")
    (tmp_path / "ds" / "b" / "pngs").mkdir()
    write_png(tmp_path / "ds" / "b" / "pngs" / "x.png")
    msg = one_line_error(load_dataset, str(tmp_path / "ds"), match="holds no DICOM slices")
    assert "pngs" in msg
    shutil.rmtree(tmp_path / "ds" / "b" / "pngs")
    (tmp_path / "ds" / "b" / "s" / "7136").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    one_line_error(load_dataset, str(tmp_path / "ds"), match="7136")


def test_compressed_dicom_without_decoder_is_named(tmp_path):
    """JPEG-compressed DICOM (pydicom's bundled test file): decoded when a plugin exists, else a clear error."""
    from pydicom.data import get_testdata_file

    src = get_testdata_file("JPEG-lossy.dcm")
    if src is None:
        pytest.skip("pydicom's bundled JPEG-lossy.dcm is not available")
    for c in ("a", "b"):
        (tmp_path / "j" / c).mkdir(parents=True)
        shutil.copy(src, tmp_path / "j" / c / "jpeg.dcm")
    try:
        data = load_dataset(str(tmp_path / "j"))
    except DatasetError as e:
        assert "jpeg.dcm" in str(e) and "no installed decoder" in str(e) and "pylibjpeg" in str(e)
    else:
        assert data.spatial_dims == 2 and data.num_classes == 2
