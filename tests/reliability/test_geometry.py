"""Physical geometry (issue 14, defect 5): synthetic files carry the spacing of the model grid (source extent /
model size per axis), not the spacing of the source images they were resized from."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import make_checkpoint, tiny_cfg

from medgan.data.describe import describe
from medgan.data.folder import load_folder
from medgan.data.preprocess import model_spacing, prepare
from medgan.data.readers import Readers
from medgan.synthesis.export import augment, read_manifest
from medgan.training.checkpoint import load_checkpoint
from medgan.training.run import train


def _dicom_slice(path, arr: np.ndarray, spacing: float) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.set_pixel_data(arr, "MONOCHROME2", 16)
    ds.PixelSpacing = [spacing, spacing]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_model_grid_spacing_is_source_extent_over_model_size(tmp_path):
    """The issue's two examples: a 128x128 CT at 0.661 mm at size 32, and a 64x64x6 series at 2 mm at size 32."""
    from medgan.data.dataset import Intensity, RealData, Split

    def data(shape, spacing):
        split = Split(np.zeros((2, 1, *shape), np.int16), np.array([0, 1]))
        return RealData("x", "folder", ["a", "b"], len(shape), 1, {"train": split}, Intensity(0, 1, "int16"),
                        spacing=spacing)

    assert model_spacing(data((128, 128), (0.661, 0.661)), 32) == [2.644, 2.644]
    assert model_spacing(data((64, 64, 6), (2.0, 2.0, 2.0)), 32) == [4.0, 4.0, 0.375]
    assert model_spacing(data((64, 64), None), 32) is None


def test_2d_dicom_training_data_at_half_size_gives_double_spacing(tmp_path):
    """End to end: 64x64 DICOM at 0.5 mm, trained at size 32 -> files at 1 mm (they claimed 0.5 mm before)."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(4):
            _dicom_slice(tmp_path / "ct" / c / f"{i}.dcm", rng.integers(0, 4000, (64, 64), dtype=np.uint16), 0.5)
    run = tmp_path / "run"
    train(tiny_cfg(data__dataset=str(tmp_path / "ct"), data__size=32, train__steps=2, train__collapse_every=0), run)
    meta = load_checkpoint(run / "checkpoints" / "last.pt")["data"]
    assert meta["spacing"] == [1.0, 1.0] and meta["source_spacing"] == [0.5, 0.5]
    augment(run, tmp_path / "dcm", n=1, format="dicom", progress=False)
    augment(run, tmp_path / "nii", n=1, format="nifti", progress=False)
    ds = pydicom.dcmread(tmp_path / "dcm" / read_manifest(tmp_path / "dcm")[0]["path"])
    assert [float(v) for v in ds.PixelSpacing] == [1.0, 1.0] and "NominalScannedPixelSpacing" not in ds
    img = nib.load(tmp_path / "nii" / read_manifest(tmp_path / "nii")[0]["path"])
    assert img.header.get_zooms()[:2] == (1.0, 1.0)


def test_3d_series_resized_to_the_model_cube_gives_its_true_slice_spacing(tmp_path):
    """A 32x32x6 volume at 2 mm resized to 32^3: 12 mm of anatomy in 32 slices, 0.375 mm apart (not 2 mm)."""
    for c in ("a", "b"):
        for i in range(2):
            (tmp_path / "vol" / c).mkdir(parents=True, exist_ok=True)
            vol = np.random.default_rng(i).integers(0, 255, (32, 32, 6)).astype(np.uint8)
            nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "vol" / c / f"{i}.nii.gz")
    data = load_folder(tmp_path / "vol")
    td = prepare(data, 32)
    meta = td.meta()
    assert meta["spacing"] == [2.0, 2.0, 0.375] and meta["source_spacing"] == [2.0, 2.0, 2.0]
    assert "grid spacing 2 x 2 x 0.375 mm" in describe(data, 32)
    ck = make_checkpoint(tmp_path / "c.pt", meta)
    augment(ck, tmp_path / "nii", n=1, format="nifti", progress=False)
    augment(ck, tmp_path / "dcm", n=1, format="dicom", progress=False)
    nii = nib.load(tmp_path / "nii" / read_manifest(tmp_path / "nii")[0]["path"])
    assert nii.header.get_zooms() == pytest.approx((2.0, 2.0, 0.375))
    dcm_path = tmp_path / "dcm" / read_manifest(tmp_path / "dcm")[0]["path"]
    ds = pydicom.dcmread(dcm_path)
    assert float(ds.SpacingBetweenSlices) == 0.375 and [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]
    assert Readers().load(dcm_path, "dicom").spacing == pytest.approx((2.0, 2.0, 0.375))  # read back the same
