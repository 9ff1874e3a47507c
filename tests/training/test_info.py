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


def test_info_checkpoint_summarises_scarcity_and_names_the_quality_measures(tmp_path, medgan_cli):
    """The human summary counts the kept images instead of listing ~430 indices and names each recorded measure
    with its meaning and its class; --json keeps everything."""
    from helpers import SCARCE, make_checkpoint

    from medgan.data.sources import load_dataset
    from medgan.training.checkpoint import load_checkpoint, save_checkpoint

    meta = load_dataset("phantom2d", scarce=SCARCE).meta() | {"size": 28}
    p = make_checkpoint(tmp_path / "g.pt", meta)
    ck = load_checkpoint(p)
    ck["quality"] = {"step": 7, "q_fd_norm": [1.25, 0.75, 3.5], "q_fidelity": [0.9, 1.0, 0.5],
                     "q_score": 2.125, "q_best_step": 7, "q_odd_new_key": [1, 2, 3]}
    save_checkpoint(p, ck)
    r = medgan_cli("info", "checkpoint", p)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    kept = meta["scarcity"]["kept_indices"]
    assert len(kept) >= 50 and str(kept[:5])[1:-1] not in out  # no index list
    assert f"{len(kept)} training images" in out and "'single_bright' 20 of 80" in out
    assert "q_fd_norm" not in out and "q_fidelity" not in out and "q_odd_new_key" not in out
    line = next(x for x in out.splitlines() if "Fréchet distance / floor" in x and "1.250" in x)
    assert line.split()[-3:] == ["1.250", "0.750", "3.500"]
    header = next(x for x in out.splitlines() if "single_bright" in x and "measure" in x)
    assert header.index("few_large") == line.index("1.250")  # values under their class
    assert "class fidelity: share of samples" in out and "quality score 2.125" in out and "see --json" in out
    i = json.loads(medgan_cli("info", "checkpoint", p, "--json").stdout)
    assert i["scarcity"]["kept_indices"] == kept and i["quality"]["q_odd_new_key"] == [1, 2, 3]
