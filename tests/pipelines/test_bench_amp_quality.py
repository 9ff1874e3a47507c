"""Tests for pipelines/bench_amp_quality.py: the per-seed summary and a smoke run (slow)."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


def test_amp_quality_summary_pairs_runs_by_seed():
    import bench_amp_quality as aq

    runs = [{"amp": "off", "seed": 0, "frechet": 2.0, "train_seconds": 100.0},
            {"amp": "bf16", "seed": 0, "frechet": 2.4, "train_seconds": 50.0},
            {"amp": "off", "seed": 1, "frechet": 4.0, "train_seconds": 100.0},
            {"amp": "bf16", "seed": 1, "frechet": 3.6, "train_seconds": 60.0}]
    s = aq.summarise(runs)
    assert s["frechet_ratio_bf16_over_fp32"]["per_seed"] == pytest.approx([1.2, 0.9])
    assert s["frechet_ratio_bf16_over_fp32"]["mean"] == pytest.approx(1.05)
    assert s["fp32_seed_spread"] == pytest.approx(1.0) and "within the 10% target" in s["verdict"]
    assert "outside" in aq.summarise(runs[:2])["verdict"]


@pytest.mark.slow
def test_bench_amp_quality_smoke(tmp_path, medmnist_dir):
    out = tmp_path / "aq.json"
    run_pipeline("bench_amp_quality.py", "--steps", "2", "--seeds", "0", "--work", str(tmp_path / "w"), "--out", str(out),
         "--max-load", "99", "--eval-epochs", "1", "--tiny-teacher")
    r = json.loads(out.read_text())
    assert [(x["amp"], x["seed"]) for x in r["runs"]] == [("off", 0), ("bf16", 0)]
    assert all(x["frechet"] > 0 and x["frechet_floor"] > 0 for x in r["runs"])
    assert len(r["summary"]["frechet_ratio_bf16_over_fp32"]["per_seed"]) == 1
