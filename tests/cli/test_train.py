"""Tests for medgan.cli's `medgan train`: flags -> config -> engine, --dry-run, --resume, one-line errors."""

from __future__ import annotations

import pytest
import yaml
from helpers import TINY

from medgan.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("fast_phantoms")


@pytest.fixture
def run_cli(medgan_cli):
    """``medgan ARGS`` in-process (see conftest), as (exit code, stdout, stderr)."""

    def run(args):
        r = medgan_cli(*args)
        return r.returncode, r.stdout, r.stderr

    return run


def _one_line_error(code, err, expect_code=1):
    assert code == expect_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medgan: error:"), err
    assert "Traceback" not in err


def test_dry_run_prints_resolved_config(tmp_path, run_cli, tiny_yaml):
    code, out, err = run_cli(["train", "--dataset", "phantom3d", "--out", tmp_path / "r", "--config", tiny_yaml,
                              "--steps", "7", "--scarce", "0=0.5", "--scarce", "1=10", "--seed", "3", "--loss",
                              "hinge", "--amp", "bf16", "--dry-run"])
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["data"]["dataset"] == "phantom3d" and cfg["data"]["scarce"] == ["0=0.5", "1=10"]
    assert cfg["train"]["steps"] == 7 and cfg["train"]["seed"] == 3 and cfg["train"]["loss"] == "hinge"
    assert cfg["train"]["amp"] == "bf16"
    assert cfg["model"]["base_channels"] == TINY["model.base_channels"]  # from the YAML file
    assert not (tmp_path / "r").exists()


def test_train_then_resume_via_cli(tmp_path, run_cli, tiny_yaml):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["train", "--dataset", "phantom2d", "--out", out_dir, "--config", tiny_yaml,
                              "--steps", "2"])
    assert code == 0, err
    assert "checkpoint:" in out and str(out_dir / "checkpoints" / "last.pt") in out and "images/s" in out
    assert "samples:" in out and (out_dir / "samples" / "step_2.png").is_file()
    # --resume without --config reuses the run's config.yaml (tiny model), extending the steps
    code, out, err = run_cli(["train", "--out", out_dir, "--resume", "--steps", "4"])
    assert code == 0, err
    assert load_checkpoint(out_dir / "checkpoints" / "last.pt")["step"] == 4
    assert out.startswith("trained 2 steps (2 -> 4) in "), out  # the steps this call ran, not the total


def test_quiet_train_prints_only_the_summary(tmp_path, run_cli, tiny_yaml):
    code, out, err = run_cli(["train", "--dataset", "phantom2d", "--out", tmp_path / "r", "--config", tiny_yaml,
                              "--steps", "2", "--quiet"])
    assert code == 0 and out.startswith("trained 2 steps in") and "step/s" not in err and "it/s" not in err
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train"]["progress"] is False


def test_packaged_config_by_name_from_any_folder(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    code, out, err = run_cli(["train", "--dataset", "breastmnist", "--out", "r", "--config", "breastmnist",
                              "--dry-run"])
    assert code == 0, err
    assert yaml.safe_load(out)["model"]["base_channels"] == 32  # configs/breastmnist.yaml's value
    code, out, err = run_cli(["train", "--out", "r", "--config", "nosuchconfig", "--dry-run"])
    _one_line_error(code, err, expect_code=2)
    assert "breastmnist" in err and "pneumoniamnist" in err


def test_existing_run_without_resume(tmp_path, run_cli, tiny_yaml):
    out_dir = tmp_path / "run"
    (out_dir / "checkpoints").mkdir(parents=True)
    (out_dir / "config.yaml").write_text("{}\n")
    code, _, err = run_cli(["train", "--dataset", "phantom2d", "--out", out_dir, "--config", tiny_yaml])
    _one_line_error(code, err)
    assert "medgan train did not write" in err and "another --out" in err  # not medgan's: never written into


def test_resume_without_checkpoint(tmp_path, run_cli, tiny_yaml):
    code, _, err = run_cli(["train", "--dataset", "phantom2d", "--out", tmp_path / "empty", "--config", tiny_yaml,
                            "--resume"])
    _one_line_error(code, err)
    assert "no checkpoint" in err


def test_resume_with_other_dataset(tmp_path, run_cli, tiny_yaml):
    out_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "--dataset", "phantom2d", "--out", out_dir, "--config", tiny_yaml, "--steps",
                            "2"])
    assert code == 0, err
    code, _, err = run_cli(["train", "--dataset", "phantom3d", "--out", out_dir, "--config", tiny_yaml, "--steps",
                            "4", "--resume"])
    _one_line_error(code, err)
    assert "cannot resume" in err and "phantom3d" in err


@pytest.mark.parametrize("dataset,size", [("phantom2d", 48), ("phantom3d", 128)])
def test_unsupported_model_size(tmp_path, run_cli, tiny_yaml, dataset, size):
    code, _, err = run_cli(["train", "--dataset", dataset, "--out", tmp_path / "r", "--config", tiny_yaml,
                            "--size", size])
    _one_line_error(code, err)
    assert f"size {size}" in err


def test_unknown_config_key(tmp_path, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 10\n")
    code, _, err = run_cli(["train", "--dataset", "phantom2d", "--out", tmp_path / "r", "--config", bad])
    _one_line_error(code, err, expect_code=2)
    assert "train.stepz" in err and "train.steps" in err


def test_bad_flag_values(tmp_path, run_cli):
    code, _, err = run_cli(["train", "--dataset", "phantom2d", "--out", tmp_path / "r", "--loss", "wasserstein",
                            "--dry-run"])
    _one_line_error(code, err, expect_code=2)
    assert "train.loss" in err


def test_breastmnist_scarce_via_cli(tmp_path, run_cli, tiny_yaml, medmnist_dir):
    out_dir = tmp_path / "breast"
    code, _, err = run_cli(["train", "--dataset", "breastmnist", "--out", out_dir, "--config", tiny_yaml,
                            "--steps", "2", "--scarce", "0=0.2", "--data-dir", medmnist_dir])
    assert code == 0, err
    ck = load_checkpoint(out_dir / "checkpoints" / "last.pt")
    assert ck["data"]["class_names"][0] == "malignant"
    assert ck["data"]["train_counts"] == [29, 399]  # 20% of 147 malignant images
    assert ck["data"]["scarcity"]["spec"] == ["0=0.2"]
