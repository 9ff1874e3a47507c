"""Tests for pipelines/bench_train.py: the Markdown table, and a quick smoke run (slow)."""

from __future__ import annotations

import json

import _bench_common as bc
import pytest
from helpers import run_pipeline


def test_bench_train_markdown_from_a_result():
    import bench_train as bt

    peak = {"matmul": {"gflops_per_s": 300.0}, "conv_fwd_bwd": {"gflops_per_s": 200.0}, "peak_gflops": 300.0}
    s1 = bc.summarise([1.0, 2.0])
    arm = {"images_per_s": s1, "gflops_per_s": s1, "flops_per_image": 1e8, "peak_rss_mb": s1,
           "fraction_of_peak": bc.summarise([0.5]), "peak_used": "fp32"}
    res = {"peak": {"fp32": peak}, "cases": {"2d28": {"summary": {
        "reference": arm, "matched/fp32": {**arm, "base_channels": 60, "ratio_images_per_s": s1,
                                           "ratio_gflops_per_s": s1}}}},
           "scaling": [{"dims": 2, "size": 28, "batch": 8, "seconds_per_step": 0.1, "images_per_s": 80.0,
                        "gflops_per_s": 1.0, "peak_rss_mb": 300.0}]}
    md = bt.markdown(res)
    assert "| 2d28 | matched/fp32 | 60 | 100 |" in md and "| 2 | 28 | 8 | 0.100 |" in md


@pytest.mark.slow
def test_bench_train_quick_writes_wellformed_json(tmp_path, medmnist_dir):
    out = tmp_path / "bt.json"
    run_pipeline("bench_train.py", "--quick", "--cases", "2d28", "--repeats", "1", "--no-scaling", "--out", str(out))
    r = json.loads(out.read_text())
    assert r["quick"] is True and set(r["peak"]) == {"fp32", "bf16"}
    assert r["peak"]["fp32"]["peak_gflops"] > 0
    summ = r["cases"]["2d28"]["summary"]
    assert set(summ) == {"reference", "matched/fp32", "matched/bf16", "default/fp32"}
    for arm, s in summ.items():
        assert s["images_per_s"]["median"] > 0 and s["flops_per_image"] > 0 and s["peak_rss_mb"]["median"] > 50, arm
    # the matched width really matches the reference's FLOPs per image
    assert abs(summ["matched/fp32"]["flops_ratio"] - 1) < 0.1
    assert summ["matched/fp32"]["ratio_images_per_s"]["n"] == 1
