"""DICOM conformance (issue 14, defect 10): every kind of DICOM output passes dicom3tools' `dciodvfy` without
errors (it reported a missing Type 2C Laterality everywhere and NominalScannedPixelSpacing with ConversionType SYN
in multi-frame objects). Skipped with a reason where `dciodvfy` is not installed (`apt-get install dicom3tools`;
`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pydicom
import pytest
from helpers import make_checkpoint
from reliability.util import phantom_meta

from medgan.synthesis.export import augment, read_manifest

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                reason="dciodvfy not installed (apt-get install dicom3tools)")

CASES = {  # name: (dims, overrides of the phantom's data record)
    "2d_gray8": (2, {}),
    "2d_gray16_ct": (2, {"intensity": {"min": -1024.0, "max": 3071.0, "dtype": "int16"}, "modality": "CT",
                         "spacing": [0.7, 0.7]}),
    "2d_rgb": (2, {"channels": 3}),
    "3d_gray8": (3, {"spacing": [1.0, 1.5, 2.0]}),
    "3d_gray16_ct": (3, {"intensity": {"min": -1024.0, "max": 3071.0, "dtype": "int16"}, "modality": "CT",
                         "spacing": [0.8, 0.8, 2.5]}),
    "3d_rgb": (3, {"channels": 3}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dciodvfy_reports_no_errors(tmp_path, case):
    dims, overrides = CASES[case]
    ck = make_checkpoint(tmp_path / "c.pt", phantom_meta(dims, **overrides))
    out = tmp_path / "o"
    augment(ck, out, n=1, format="dicom", classes=[0], progress=False)
    path = out / read_manifest(out)[0]["path"]
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    report = proc.stdout + proc.stderr
    errors = [ln for ln in report.splitlines() if ln.startswith("Error")]
    assert not errors, report
    ds = pydicom.dcmread(path)
    assert "Laterality" in ds and "NominalScannedPixelSpacing" not in ds
    assert ds.StudyID and str(ds.PatientName) == "SYNTHETIC^"
