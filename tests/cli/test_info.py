"""Tests for medgan.cli's `medgan info datasets` and `medgan info dataset SPEC`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from medgan.cli import app

runner = CliRunner()


def _medgan(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point (main(): user errors -> one line on stderr)."""
    return subprocess.run([sys.executable, "-m", "medgan", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_info_datasets_lists_registry_availability_and_phantoms(medmnist_dir):
    res = runner.invoke(app, ["info", "datasets"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines() if ln.strip()}
    assert "28*" in lines["breastmnist"] and "CC BY 4.0" in lines["breastmnist"]
    assert "546/78/156" in lines["breastmnist"]
    assert "28* 64*" in lines["adrenalmnist3d"] and "3D" in lines["adrenalmnist3d"]
    assert "28 64 128 224" in lines["pathmnist"] and "*" not in lines["pathmnist"].split("CC BY 4.0")[1]
    assert "CC BY-NC 4.0" in lines["dermamnist"]
    assert "multi-label" in lines["chestmnist"]
    assert "phantom2d" in lines and "phantom3d" in lines
    assert sum(1 for name in lines if name.endswith(("mnist", "mnist3d"))) == 18


def test_info_dataset_breastmnist_counts(medmnist_dir):
    res = runner.invoke(app, ["info", "dataset", "breastmnist", "--data-dir", str(medmnist_dir)])
    assert res.exit_code == 0, res.output
    out = res.output
    rows = {ln.split()[1]: ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()}
    assert rows["malignant"][-3:] == ["147", "21", "42"]
    assert "399" in rows["normal,"]
    assert "28x28" in out and "uint8" in out and "CC BY 4.0" in out and "model size   28" in out


def test_info_dataset_adrenal3d_with_scarcity(medmnist_dir):
    res = runner.invoke(app, ["info", "dataset", "adrenalmnist3d", "--scarce", "1=0.5", "--size", "32"])
    assert res.exit_code == 0, res.output
    assert "28x28x28" in res.output and "model size   32" in res.output
    assert "hyperplasia 259->130" in res.output


def test_info_dataset_phantom2d_grid(tmp_path):
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["info", "dataset", "phantom2d", "--grid", str(out), "--per-class", "3"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "single_bright" in res.output and str(out) in res.output
    assert not [p for p in tmp_path.iterdir() if p.name != "grid.png"]  # no temp files left behind


def test_info_dataset_grid_for_3d_folder_of_mixed_shapes(tmp_path, samples_dir):
    import shutil

    for cls, f in (("a", "anatomical.nii"), ("a", "standard.nii.gz"), ("b", "someones_anatomy.nii.gz"),
                   ("b", "standard.nii.gz")):
        (tmp_path / "mri" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(samples_dir / "nifti" / f, tmp_path / "mri" / cls / f)
    res = runner.invoke(app, ["info", "dataset", str(tmp_path / "mri"), "--grid", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    assert "4x5x7 .. 57x67x56" in res.output and "spacing" in res.output
    assert (tmp_path / "g.png").stat().st_size > 1000


@pytest.mark.parametrize("args, needle", [
    (["info", "dataset", "breastmnst"], "did you mean 'breastmnist'"),
    (["info", "dataset", "chestmnist"], "multi-label"),
    (["info", "dataset", "/no/such/dir/data.csv"], "not found"),
])
def test_info_dataset_errors_are_one_line(args, needle, tmp_path):
    res = _medgan(*args, env={"MEDGAN_DATA_DIR": str(tmp_path)})
    assert res.returncode == 1
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr and len(err.splitlines()) == 1, res.stderr
    assert err.startswith("medgan: error:") and needle in err


def test_info_dataset_4d_nifti_error(tmp_path, samples_dir):
    import shutil

    for c in ("a", "b"):
        (tmp_path / "f" / c).mkdir(parents=True)
        shutil.copy(samples_dir / "nifti" / "example4d.nii.gz", tmp_path / "f" / c / "x.nii.gz")
    res = _medgan("info", "dataset", str(tmp_path / "f"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "4D NIfTI" in res.stderr
