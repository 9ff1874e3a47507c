"""Tests for pipelines/bench_quality.py: the variants' overrides, the summary's ratios, and a tiny real run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import run_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines"))
import bench_quality as bq  # noqa: E402


def test_variants_combine_on_top_of_the_old_default():
    o = bq.overrides("cbn+trans+lecam", 1000)
    assert o["model.conditioning"] == "cbn" and o["train.lecam"] == 0.1
    assert (o["train.cond_start"], o["train.cond_ramp"]) == (200, 400)
    assert bq.overrides("default", 1000) == bq.DEFAULT and bq.DEFAULT["model.conditioning"] == "concat"


def _run(variant, seed, fd, fid=(1.0, 1.0), div=(1.0, 1.0)):
    q = {"step": 10, "fd": list(fd), "fd_norm": list(fd), "kid": [0.1, 0.1], "fidelity": list(fid), "share": list(fid),
         "sensitivity": [0.9, 0.9], "diversity_ratio": list(div), "score": 1.0}
    return {"setting": "s", "variant": variant, "seed": seed, "steps": 10, "train_s": 100.0, "tracking_share": 0.02,
            "final": q, "best": q, "tstr": {"tstr_mean": 0.6, "trtr_mean": 0.7}}


def test_summary_ratios_are_per_seed_against_default():
    rs = [_run("default", 0, (4.0, 2.0)), _run("default", 1, (8.0, 2.0)), _run("cbn", 0, (2.0, 1.0)),
          _run("cbn", 1, (2.0, 3.0))]
    s = bq.summarise(rs)["s"]
    assert s["default@10"]["best"]["fd_ratio_to_default"] == [1.0, 1.0]
    assert s["cbn@10"]["best"]["fd_ratio_to_default"] == pytest.approx([(0.5 + 0.25) / 2, (0.5 + 1.5) / 2])
    assert s["cbn@10"]["best"]["fd"] == [2.0, 2.0] and s["cbn@10"]["tstr"] == 0.6
    assert "| cbn@10 |" in bq.report(bq.summarise(rs), {"s": ["a", "b"]})


@pytest.mark.slow
def test_a_tiny_ablation_trains_measures_and_summarises(tmp_path):
    runs = tmp_path / "runs"
    run_pipeline("bench_quality.py", "run", "--setting", "phantom2d", "--variants", "default,cbn", "--seeds", "0",
                 "--steps", "20", "--jobs", "1", "--runs", str(runs), "--tiny-teacher")
    r = json.loads((runs / "phantom2d" / "cbn@20" / "s0" / "bench.json").read_text())
    assert r["overrides"]["model.conditioning"] == "cbn" and r["steps"] == 20
    assert len(r["final"]["fd"]) == 3 and 0 <= r["tstr"]["tstr_mean"] <= 1 and 0 <= r["tstr"]["trtr_mean"] <= 1
    out = tmp_path / "bq.json"
    run_pipeline("bench_quality.py", "summary", "--runs", str(runs), "--out", str(out))
    s = json.loads(out.read_text())["summary"]["phantom2d"]
    assert s["default@20"]["final"]["fd_ratio_to_default"] == [1.0, 1.0, 1.0]
