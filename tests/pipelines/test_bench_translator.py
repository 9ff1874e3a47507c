"""Tests for pipelines/bench_translator.py: the anatomy measure, the choice of strength, and a smoke run (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_pipeline


def test_anatomy_counts_translations_nearest_to_their_own_source():
    import bench_translator as bt

    g = torch.Generator().manual_seed(0)
    sources = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    same = bt.anatomy(sources.clone(), sources)
    assert same["nearest_own"] == 1.0 and same["l2_to_own"] == 0.0 and same["l2_source_to_nearest_other"] > 0
    shifted = sources.roll(1, dims=0)  # every translation is another image's source
    assert bt.anatomy(shifted, sources)["nearest_own"] == 0.0
    half = torch.cat([sources[:5], sources[5:].roll(1, dims=0)])
    r = bt.anatomy(half, sources)
    assert r["nearest_own"] == 0.5 and r["l2_to_own"] > 0
    assert r["rms_to_own"] == pytest.approx(r["l2_to_own"] / 8, rel=0.5)


def test_the_chosen_strength_is_the_smallest_meeting_both_targets():
    import bench_translator as bt

    curve = [{"strength": 0.5, "nearest_own": 0.9, "relative": 0.8},
             {"strength": 0.75, "nearest_own": 0.85, "relative": 1.0},
             {"strength": 1.0, "nearest_own": 0.7, "relative": 1.2}]
    assert bt.chosen(curve)["strength"] == 0.75
    assert bt.chosen(curve[:1]) is None and bt.chosen(curve[2:]) is None


@pytest.mark.slow
def test_bench_translator_smoke(tmp_path, medmnist_dir):
    out = tmp_path / "bt.json"
    run_pipeline("bench_translator.py", "--variant", "smoke", "--set", "train.steps=2", "--set",
                 "translator.base_channels=4", "--set", "train.log_every=1", "--teacher-epochs", "1",
                 "--strengths", "0,1", "--runs", str(tmp_path / "runs"), "--out", str(out), "--grid",
                 str(tmp_path / "grid.png"))
    r = json.loads(out.read_text())["variants"]["smoke"]
    assert r["setting"]["train_counts"][0] == 74 and r["setting"]["sources"] == {"val": 57, "train": 200}
    for split in ("val", "train"):
        assert [c["strength"] for c in r["curves"][split]] == [0.0, 1.0]
        assert all(0 <= c["nearest_own"] <= 1 and 0 <= c["recognised"] <= 1 for c in r["curves"][split])
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "runs" / "teacher" / "teacher.json").is_file()
