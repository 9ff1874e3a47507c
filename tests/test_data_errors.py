"""Every bad dataset input of issue 2 gets a one-line DatasetError/ConfigError naming the problem and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgan.config import load_config
from medgan.data import medmnist
from medgan.data.sources import load_dataset
from medgan.errors import ConfigError, DatasetError, MedganError


def _raises(fn, *args, match: str, **kw) -> str:
    with pytest.raises(MedganError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert match.lower() in msg.lower(), msg
    return msg


def _png(path: Path, value: int = 0, shape=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)
    return path


def _two_class_pngs(root: Path, n: int = 3) -> Path:
    for c in ("a", "b"):
        for i in range(n):
            _png(root / c / f"{i}.png", value=40 * i + (100 if c == "b" else 0))
    return root


def test_missing_path(tmp_path):
    msg = _raises(load_dataset, str(tmp_path / "nope.npz"), match="not found")
    assert "nope.npz" in msg
    _raises(load_dataset, str(tmp_path / "no" / "folder"), match="not found")


def test_unknown_name_suggests_closest():
    _raises(load_dataset, "breastmnst", match="did you mean 'breastmnist'")
    _raises(load_dataset, "phantom_2d", match="did you mean 'phantom2d'")


def test_npz_without_expected_keys(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 8, 8)), y=np.zeros(4))
    msg = _raises(load_dataset, str(tmp_path / "bad.npz"), match="train_images")
    assert "bad.npz" in msg and "found: x, y" in msg


def test_corrupt_png_names_the_file(tmp_path):
    root = _two_class_pngs(tmp_path / "ds")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    msg = _raises(load_dataset, str(root), match="broken.png")
    assert "corrupt" in msg
    # a truncated PNG (valid header, data cut short) is caught as well
    good = (root / "b" / "0.png").read_bytes()
    (root / "a" / "broken.png").write_bytes(good[: len(good) // 2])
    _raises(load_dataset, str(root), match="broken.png")


def test_corrupt_nifti_names_the_file(tmp_path, samples_dir):
    for c in ("a", "b"):
        (tmp_path / "n" / c).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "standard.nii.gz", tmp_path / "n" / c / "ok.nii.gz")
    (tmp_path / "n" / "b" / "bad.nii").write_bytes(b"not a nifti header" * 30)
    _raises(load_dataset, str(tmp_path / "n"), match="bad.nii")
    (tmp_path / "n" / "b" / "bad.nii").unlink()
    data = (samples_dir / "nifti" / "someones_anatomy.nii.gz").read_bytes()
    (tmp_path / "n" / "b" / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    _raises(load_dataset, str(tmp_path / "n"), match="cut.nii.gz")


def test_corrupt_dicom_names_the_file(tmp_path, samples_dir):
    pyd = samples_dir / "dicom" / "pydicom"
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        shutil.copy(pyd / "MR_small.dcm", tmp_path / "d" / c / "ok.dcm")
    (tmp_path / "d" / "a" / "junk.dcm").write_bytes(b"\x00" * 50)
    _raises(load_dataset, str(tmp_path / "d"), match="junk.dcm")
    (tmp_path / "d" / "a" / "junk.dcm").unlink()
    raw = (pyd / "CT_small.dcm").read_bytes()
    (tmp_path / "d" / "a" / "cut.dcm").write_bytes(raw[: len(raw) - 20000])  # pixel data cut short
    _raises(load_dataset, str(tmp_path / "d"), match="cut.dcm")


def test_class_folder_without_readable_images(tmp_path):
    root = _two_class_pngs(tmp_path / "ds")
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("hello")
    msg = _raises(load_dataset, str(root), match="no readable images")
    assert "readme.txt" in msg and str(root / "c") in msg


def test_empty_folder_and_folder_without_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises(load_dataset, str(tmp_path / "empty"), match="is empty")
    _png(tmp_path / "flat" / "x.png")
    _raises(load_dataset, str(tmp_path / "flat"), match="no class sub-folders")


def test_single_class_dataset(tmp_path):
    for i in range(4):
        _png(tmp_path / "one" / "only" / f"{i}.png", value=i)
    _raises(load_dataset, str(tmp_path / "one"), match="single class")


def test_mixed_dimensionality(tmp_path, samples_dir):
    root = _two_class_pngs(tmp_path / "mix")
    shutil.copy(samples_dir / "nifti" / "standard.nii.gz", root / "b" / "vol.nii.gz")
    msg = _raises(load_dataset, str(root), match="mixed dimensionality")
    assert "vol.nii.gz" in msg and "2D" in msg and "3D" in msg


def test_mixed_channel_counts(tmp_path):
    root = _two_class_pngs(tmp_path / "mix")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "b" / "rgb.png")
    _raises(load_dataset, str(root), match="mixed channel counts")


def test_4d_nifti_is_rejected_with_a_split_hint(tmp_path, samples_dir):
    for c in ("a", "b"):
        (tmp_path / "f" / c).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "example4d.nii.gz", tmp_path / "f" / c / "run.nii.gz")
    msg = _raises(load_dataset, str(tmp_path / "f"), match="4D NIfTI")
    assert "run.nii.gz" in msg and "split it into 3D volumes" in msg


def test_csv_with_missing_columns_or_files(tmp_path):
    root = _two_class_pngs(tmp_path / "img")
    (tmp_path / "cols.csv").write_text("file,class\nimg/a/0.png,a\n")
    _raises(load_dataset, str(tmp_path / "cols.csv"), match="lacks the column(s) path, label")
    (tmp_path / "miss.csv").write_text("path,label\nimg/a/0.png,a\nimg/a/gone.png,a\nimg/b/0.png,b\n")
    msg = _raises(load_dataset, str(tmp_path / "miss.csv"), match="missing file")
    assert "gone.png" in msg and "row 3" in msg
    (tmp_path / "split.csv").write_text("path,label,split\nimg/a/0.png,a,train\nimg/b/0.png,b,holdout\n")
    _raises(load_dataset, str(tmp_path / "split.csv"), match="must be train, val or test")
    assert root.exists()


def test_scarce_unknown_class_and_too_many(medmnist_dir):
    msg = _raises(load_dataset, "breastmnist", scarce=["benignn=10"], match="unknown class 'benignn'")
    assert "0='malignant'" in msg
    msg = _raises(load_dataset, "breastmnist", scarce=["malignant=500"], match="only 147")
    _raises(load_dataset, "breastmnist", scarce=["0=1.5"], match="must be in (0, 1]")


def test_unknown_config_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  stpes: 5\n")
    with pytest.raises(ConfigError, match=r"did you mean 'train.steps'"):
        load_config(p)


def test_multilabel_chestmnist_errors_before_any_download(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)

    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(medmnist, "download", no_download)
    monkeypatch.setattr(medmnist, "locate", no_download)
    _raises(load_dataset, "chestmnist", data_dir=tmp_path, match="multi-label")
    assert not list(tmp_path.iterdir())


def test_dicom_series_folder_problems(tmp_path, samples_dir):
    series = samples_dir / "dicom" / "monai_CT_DICOM"
    for c in ("a", "b"):
        shutil.copytree(series, tmp_path / "ds" / c / "s")
    (tmp_path / "ds" / "b" / "pngs").mkdir()
    _png(tmp_path / "ds" / "b" / "pngs" / "x.png")
    msg = _raises(load_dataset, str(tmp_path / "ds"), match="holds no DICOM slices")
    assert "pngs" in msg
    shutil.rmtree(tmp_path / "ds" / "b" / "pngs")
    (tmp_path / "ds" / "b" / "s" / "7136").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    _raises(load_dataset, str(tmp_path / "ds"), match="7136")


def test_error_type_is_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "missing.csv"))


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
