"""Tests for medgan.data.folder: class folders and CSV manifests (built from real BreastMNIST images) and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from helpers import one_line_error, two_class_pngs, write_png
from PIL import Image

from medgan.data.dataset import SPLITS
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


def test_class_folder_without_readable_images(tmp_path):
    root = two_class_pngs(tmp_path / "ds")
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("hello")
    msg = one_line_error(load_dataset, str(root), match="no readable images")
    assert "readme.txt" in msg and str(root / "c") in msg


def test_empty_folder_and_folder_without_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(load_dataset, str(tmp_path / "empty"), match="is empty")
    write_png(tmp_path / "flat" / "x.png")
    one_line_error(load_dataset, str(tmp_path / "flat"), match="no class sub-folders")


def test_mixed_dimensionality(tmp_path, samples_dir):
    root = two_class_pngs(tmp_path / "mix")
    shutil.copy(samples_dir / "nifti" / "standard.nii.gz", root / "b" / "vol.nii.gz")
    msg = one_line_error(load_dataset, str(root), match="mixed dimensionality")
    assert "vol.nii.gz" in msg and "2D" in msg and "3D" in msg


def test_mixed_channel_counts(tmp_path):
    root = two_class_pngs(tmp_path / "mix")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "b" / "rgb.png")
    one_line_error(load_dataset, str(root), match="mixed channel counts")


def test_csv_with_missing_columns_or_files(tmp_path):
    root = two_class_pngs(tmp_path / "img")
    (tmp_path / "cols.csv").write_text("file,class\nimg/a/0.png,a\n")
    one_line_error(load_dataset, str(tmp_path / "cols.csv"), match="lacks the column(s) path, label")
    (tmp_path / "miss.csv").write_text("path,label\nimg/a/0.png,a\nimg/a/gone.png,a\nimg/b/0.png,b\n")
    msg = one_line_error(load_dataset, str(tmp_path / "miss.csv"), match="missing file")
    assert "gone.png" in msg and "row 3" in msg
    (tmp_path / "split.csv").write_text("path,label,split\nimg/a/0.png,a,train\nimg/b/0.png,b,holdout\n")
    one_line_error(load_dataset, str(tmp_path / "split.csv"), match="must be train, val or test")
    assert root.exists()


def test_source_kind_and_native_shape_are_recorded(tmp_path):
    """The checkpoint learns what the images were read from (it decides MONAI's layout) and their native extent."""
    import nibabel as nib

    from medgan.data.folder import load_folder

    for c in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / "png" / c / f"{i}.png", value=10 * i, shape=(20, 30))
    meta = load_folder(tmp_path / "png").meta()
    assert meta["source_kind"] == "image" and meta["native_shape"] == [20, 30]

    for c in ("a", "b"):
        (tmp_path / "nii" / c).mkdir(parents=True)
        for i in range(2):
            nib.save(nib.Nifti1Image(np.zeros((8, 9, 10), np.int16), np.eye(4)), tmp_path / "nii" / c / f"{i}.nii.gz")
    meta = load_folder(tmp_path / "nii").meta()
    assert meta["source_kind"] == "nifti" and meta["native_shape"] == [8, 9, 10]
