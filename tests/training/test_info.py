"""Tests for medgan.training.info and `medgan info checkpoint`: what a checkpoint holds."""

from __future__ import annotations

import json

import pytest

from medgan.training.info import checkpoint_info


def test_info_checkpoint_of_a_file(breast, medgan_cli):
    r = medgan_cli("info", "checkpoint", breast)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "0='malignant'" in out and "1='normal, benign'" in out and "1 x 28 x 28" in out
    assert "step        7" in out and "fingerprint" in out and "sha256" in out
    assert "quality     not recorded" in out
    i = json.loads(medgan_cli("info", "checkpoint", breast, "--json").stdout)
    assert i["class_names"] == ["malignant", "normal, benign"] and i["shape"] == [1, 28, 28] and i["step"] == 7
    assert len(i["sha256"]) == 64 and i["grid"]["row_first"] is True


@pytest.mark.usefixtures("fast_phantoms")
def test_info_checkpoint_of_a_run_folder_reports_quality(tmp_path):
    from helpers import tiny_cfg

    from medgan.training.run import train

    train(tiny_cfg(), tmp_path / "run")
    i = checkpoint_info(tmp_path / "run")
    assert i["checkpoint"].endswith("checkpoints/last.pt") and i["step"] == 4
    assert i["train"]["steps"] == 4 and i["model"]["base_channels"] == 4
    assert i["quality"] and "diversity_ratio" in i["quality"]  # the collapse check's last measure


def test_info_checkpoint_errors_are_one_line(tmp_path, medgan_cli):
    r = medgan_cli("info", "checkpoint", tmp_path / "missing.pt")
    assert r.returncode != 0 and r.stderr.startswith("medgan: error: checkpoint not found")
