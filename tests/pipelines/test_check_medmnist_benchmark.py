"""Tests for pipelines/check_medmnist_benchmark.py: a one-epoch run on the real BreastMNIST file."""

from __future__ import annotations

import json

from helpers import run_pipeline


def test_one_epoch_writes_the_comparison_with_the_published_auroc(tmp_path, medmnist_dir):
    out = tmp_path / "b.json"
    proc = run_pipeline("check_medmnist_benchmark.py", "--dataset", "breastmnist", "--classifier", "smallcnn",
                        "--epochs", "1", "--seeds", "2", "--threads", "1", "--out", str(out))
    r = json.loads(out.read_text())
    assert r["published"] == 0.901 and len(r["runs"]) == 2
    assert 0 <= r["test_auroc_mean"] <= 1 and isinstance(r["within_0.02"], bool)
    assert "published ResNet-18 (28): 0.901" in proc.stdout
