"""Tests for pipelines/bench_augment.py: a quick smoke run (slow)."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


@pytest.mark.slow
def test_bench_augment_quick_writes_wellformed_json(tmp_path, medmnist_dir):
    out = tmp_path / "ba.json"
    run_pipeline("bench_augment.py", "--quick", "--settings", "2d28-npz", "--repeats", "1", "--work", str(tmp_path / "w"),
         "--out", str(out))
    r = json.loads(out.read_text())
    s = r["settings"]["2d28-npz"]
    assert set(s["by_n"]) == {"20", "40"}
    assert s["by_n"]["40"]["n"] == 40 and s["by_n"]["40"]["samples_per_s_end_to_end"]["median"] > 0
    assert s["rss_growth_small_to_large"] > 0 and "2d28-npz memory" in r["verdicts"]
