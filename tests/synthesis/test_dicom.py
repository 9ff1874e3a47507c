"""Tests for medgan.synthesis.dicom: valid Secondary Capture objects, and no patient data from input DICOMs."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from helpers import make_checkpoint

from medgan.errors import OutputError
from medgan.synthesis.export import augment, read_manifest
from medgan.synthesis.sampler import Sampler


def _check_dicom(ds: pydicom.Dataset, multiframe: bool) -> None:
    """pydicom's file-meta validation, its pixel-module validation, and the SC IOD's required elements."""
    from pydicom.dataset import validate_file_meta
    from pydicom.pixels.decoders.base import DecodeRunner

    validate_file_meta(ds.file_meta, enforce_standard=True)
    assert ds.preamble == b"\x00" * 128
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    runner = DecodeRunner(ds.file_meta.TransferSyntaxUID)
    runner.set_source(ds)
    runner.validate()  # rows/columns/bits/samples/photometric consistent with the pixel data length
    type1 = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
             "ConversionType", "ImageType", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
             "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "PixelData"]
    type2 = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
             "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "InstanceNumber",
             "PatientOrientation"]
    if multiframe:
        type1 += ["NumberOfFrames", "FrameIncrementPointer", "BurnedInAnnotation"]
    for kw in type1:
        assert kw in ds and ds[kw].value not in (None, "", b""), kw
    for kw in type2:
        assert kw in ds, kw
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert uid.is_valid
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    assert str(ds.PatientName) == "SYNTHETIC^" and ds.PatientID == "SYNTHETIC"
    assert "SYNTHETIC" in ds.SeriesDescription and "synthetic" in ds.DerivationDescription.lower()
    assert "SYNTHETIC" in ds.ImageComments


def test_dicom_validity_2d_and_3d(tmp_path, breast, adrenal_ct):
    augment(breast, tmp_path / "d2", n=2, format="dicom", progress=False)
    augment(adrenal_ct, tmp_path / "d3", n=2, format="dicom", progress=False)
    sops = set()
    for folder, multi in (("d2", False), ("d3", True)):
        rows = read_manifest(tmp_path / folder)
        series = set()
        for r in rows:
            ds = pydicom.dcmread(tmp_path / folder / r["path"])
            _check_dicom(ds, multi)
            sops.add(ds.SOPInstanceUID)
            series.add(ds.SeriesInstanceUID)
            if not multi:
                assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
                assert ds.Modality == "OT"  # BreastMNIST records no modality
                assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
        assert len(series) == 1
    assert len(sops) == 8  # fresh UID per object


def test_no_patient_identifiers_from_input_dicoms(tmp_path, samples_dir):
    """Train-data meta comes from real DICOM files carrying patient identifiers; no output byte may hold them."""
    from medgan.data.preprocess import choose_size
    from medgan.data.sources import load_dataset

    src = samples_dir / "dicom" / "pydicom" / "CT_small.dcm"
    secrets = {"PatientName": "Doe^Johnathan^Secretname", "PatientID": "PID-7731-SECRET",
               "StudyID": "STUDY-SECRET-99", "AccessionNumber": "ACC-SECRET-12", "InstitutionName": "Secret Hospital",
               "ReferringPhysicianName": "Referrer^Secret", "PatientBirthDate": "19420314"}
    root = tmp_path / "in"
    uids = set()
    for cls in ("abnormal", "normal"):
        (root / cls).mkdir(parents=True)
        ds = pydicom.dcmread(src)
        for k, v in secrets.items():
            setattr(ds, k, v)
        uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
        ds.save_as(root / cls / "img.dcm")
    data = load_dataset(str(root))
    meta = data.meta()
    assert meta["modality"] == "CT" and meta["intensity"]["dtype"] == "int16"
    meta["size"] = choose_size(data, 28)
    ckpt = make_checkpoint(tmp_path / "ct.pt", meta)
    with pytest.raises(OutputError, match="PNG holds 8-bit"):
        augment(ckpt, tmp_path / "png", n=2, format="png", progress=False)
    needles = [v.encode() for v in secrets.values()] + [u.encode() for u in uids]
    needles += [b"Johnathan", b"Secretname", str(src).encode()]
    for fmt in ("dicom", "nifti", "npz"):
        out = tmp_path / f"o_{fmt}"
        augment(ckpt, out, n=2, format=fmt, progress=False)
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) >= 3
        for p in files:
            blob = p.read_bytes()
            if p.name.endswith(".gz"):
                import gzip

                blob += gzip.decompress(blob)
            for s in needles:
                assert s not in blob, f"{s!r} leaked into {p}"
        if fmt == "dicom":
            ds = pydicom.dcmread(out / read_manifest(out)[0]["path"])
            _check_dicom(ds, multiframe=False)
            assert ds.Modality == "CT" and ds.PixelRepresentation == 1  # int16 kept as signed 16-bit
            x, _ = Sampler.from_checkpoint(ckpt).sample(2, out="source")
            np.testing.assert_array_equal(ds.pixel_array, x[0, 0])
