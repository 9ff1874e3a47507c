"""Tests for pipelines/generator_tuning.py: validation-only rows with their commands, resumable (slow)."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


@pytest.mark.slow
def test_generator_tuning_quick_never_uses_test_and_is_resumable(tmp_path, medmnist_dir):
    work, res = tmp_path / "w", tmp_path / "r"
    args = ["--setting", "breast50", "--variant", "default", "--quick", "--work", str(work), "--results-dir",
            str(res)]
    run_pipeline("generator_tuning.py", *args)
    d = json.loads((res / "generator_tuning.json").read_text())
    (r,) = d["rows"]
    assert (r["setting"], r["variant"]) == ("breast50", "default")
    assert "--tuning" in r["evaluate_command"] and "--scarce 0=0.5" in r["evaluate_command"]
    assert "--scarce 0=0.5" in r["train_command"]
    assert r["tuning_view"].startswith("tuning view: the test split is not used")
    report = json.loads((work / "breast50" / "default" / "report.json").read_text())
    full_val = 78  # BreastMNIST's validation split: the two halves together, and nothing of its 156 test images
    assert sum(report["dataset"]["val_counts"]) + sum(report["dataset"]["test_counts"]) == full_val
    vs = r["validation_score"]
    assert 0.0 <= vs["gan"]["mean"] <= 1.0 and 0.0 <= vs["classical+oversample"]["mean"] <= 1.0
    assert vs["paired_diff"]["diff"] == pytest.approx(vs["gan"]["mean"] - vs["classical+oversample"]["mean"])
    assert r["near_copies"]["n_synthetic"] > 0 and "fidelity" in r["quality"]
    assert "| breast50 | default |" in (res / "generator_tuning.md").read_text()
    again = run_pipeline("generator_tuning.py", *args)  # finished stages are skipped: no command runs again
    assert "$ " not in again.stdout and "| breast50 | default |" in again.stdout
