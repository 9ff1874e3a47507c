"""Class folders and CSV manifests built from real files: PNG (from BreastMNIST), NIfTI and DICOM samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medgan.data.dataset import SPLITS
from medgan.data.preprocess import prepare
from medgan.data.readers import is_dicom_file
from medgan.data.sources import load_dataset


def _breast(medmnist_dir: Path, n: int = 6):
    with np.load(medmnist_dir / "breastmnist.npz") as z:
        imgs, labels = z["train_images"], z["train_labels"].ravel()
    return {name: imgs[labels == c][:n] for c, name in ((0, "malignant"), (1, "benign"))}


def _png_folder(root: Path, per_class: dict[str, np.ndarray], mode: str = "L") -> Path:
    for name, imgs in per_class.items():
        (root / name).mkdir(parents=True)
        for i, a in enumerate(imgs):
            Image.fromarray(a).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def test_png_class_folder_gray(tmp_path, medmnist_dir):
    src = _breast(medmnist_dir)
    root = _png_folder(tmp_path / "us", src)
    (root / "benign" / "notes.txt").write_text("not an image")  # ignored
    data = load_dataset(str(root))
    assert data.source == "folder" and data.name == "us"
    assert data.class_names == ["benign", "malignant"]  # sorted folder names
    assert sum(data.counts(s)[0] for s in SPLITS) == 6 and sum(data.counts(s)[1] for s in SPLITS) == 6
    tr = data.splits["train"]
    assert tr.images.dtype == np.uint8 and tr.images.shape[1:] == (1, 28, 28)
    assert (data.spatial_dims, data.channels) == (2, 1)
    # pixels and orientation are those of the source image (rows, columns)
    i = next(k for k, p in enumerate(tr.paths) if p.endswith("malignant/000.png"))
    np.testing.assert_array_equal(tr.images[i, 0], src["malignant"][0])
    assert data.intensity.to_dict() == {"min": 0.0, "max": 255.0, "dtype": "uint8"}


def test_png_class_folder_rgb_and_rgba(tmp_path, medmnist_dir):
    src = _breast(medmnist_dir, n=4)
    root = _png_folder(tmp_path / "rgb", src, mode="RGB")
    Image.fromarray(src["benign"][0]).convert("RGBA").save(root / "benign" / "alpha.png")
    data = load_dataset(str(root))
    assert data.channels == 3
    imgs = {Path(p).parent.name + "/" + Path(p).name: a
            for s in SPLITS for p, a in zip(data.splits[s].paths, data.splits[s].images, strict=True)}
    assert len(imgs) == 9 and all(a.shape == (3, 28, 28) for a in imgs.values())
    # RGBA -> RGB (alpha dropped); a gray image saved as RGB has three equal channels
    np.testing.assert_array_equal(imgs["benign/alpha.png"], np.stack([src["benign"][0]] * 3))
    np.testing.assert_array_equal(imgs["malignant/001.png"][2], src["malignant"][1])


def test_folder_with_own_split_folders(tmp_path, medmnist_dir):
    src = _breast(medmnist_dir, n=6)
    for split, sl in (("train", slice(0, 4)), ("val", slice(4, 5)), ("test", slice(5, 6))):
        _png_folder(tmp_path / "ds" / split, {k: v[sl] for k, v in src.items()})
    data = load_dataset(str(tmp_path / "ds"))
    assert [len(data.splits[s]) for s in SPLITS] == [8, 2, 2]
    assert data.counts("val") == [1, 1]
    assert "own train/val/test" in data.extra["split"]
    assert all("/test/" in p for p in data.splits["test"].paths)


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


def test_csv_manifest_names_splits_and_series(tmp_path, medmnist_dir, samples_dir):
    src = _breast(medmnist_dir, n=3)
    _png_folder(tmp_path / "img", src)
    rows = ["path,label,split"]
    for name, imgs in src.items():
        for i in range(len(imgs)):
            rows.append(f"img/{name}/{i:03d}.png,{name},{'test' if i == 2 else 'train'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(str(tmp_path / "m.csv"))
    assert data.source == "csv" and data.class_names == ["benign", "malignant"]
    assert data.counts("test") == [1, 1]
    assert len(data.splits["train"]) + len(data.splits["val"]) == 4
    assert "split column" in data.extra["split"]

    # integer labels keep numeric order; class_name names them; a folder row is one DICOM series
    series = samples_dir / "dicom" / "monai_CT_DICOM"
    for k in range(4):
        shutil.copytree(series, tmp_path / "s" / f"v{k}")
    (tmp_path / "ints.csv").write_text(
        "path,label,class_name\ns/v0,10,late\ns/v1,2,early\ns/v2,10,late\ns/v3,2,early\n"
    )
    ints = load_dataset(str(tmp_path / "ints.csv"))
    assert ints.class_names == ["early", "late"]
    assert ints.spatial_dims == 3 and ints.splits["train"].shapes() == {(16, 16, 4)}
    assert sum(sum(ints.counts(s)) for s in SPLITS) == 4
