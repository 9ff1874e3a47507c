"""Tests for pipelines/translation_curve.py and pipelines/bench_inversion.py: the choice of the default strength,
and smoke runs on a tiny BreastMNIST generator (slow)."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


def _curve(split, schedule, residual, points):
    return {"sources": split, "schedule": schedule, "residual": residual,
            "curve": {"points": [{"strength": s, "anatomy_kept": k, "relative_recognition": r} for s, k, r in points]}}


def test_choose_takes_the_smallest_strength_meeting_both_targets_else_the_closest():
    import translation_curve as tc

    curves = [_curve("val", "uniform", 0.0, [(0.0, 1.0, 0.3), (0.5, 0.95, 0.9), (0.8, 0.82, 1.02), (1.0, 0.81, 1.1)]),
              _curve("val", "late", 0.0, [(0.9, 0.9, 1.0)]),
              _curve("train", "uniform", 0.0, [(0.1, 1.0, 5.0)])]  # other sources: not looked at
    c = tc.choose(curves)
    assert (c["schedule"], c["strength"], c["targets_met"]) == ("uniform", 0.8, True)
    miss = [_curve("val", "uniform", 0.25, [(0.0, 1.0, 0.3), (0.7, 0.9, 0.9), (0.9, 0.7, 1.05)])]
    c = tc.choose(miss)  # none meets both: the point closest to both (min(0.9/0.8, 0.9) > min(0.7/0.8, 1.05))
    assert (c["strength"], c["residual"], c["targets_met"]) == (0.7, 0.25, False)


@pytest.mark.slow
def test_translation_curve_and_bench_smoke(tmp_path, breast, medmnist_dir):
    out = tmp_path / "curve.json"
    run_pipeline("translation_curve.py", "--run", str(breast), "--dataset", "breastmnist", "--target", "malignant",
                 "--strengths", "0,1", "--schedules", "uniform", "--residual", "0", "--sources", "val",
                 "--max-sources", "20", "--steps", "3", "--threads", "1", "--teacher-epochs", "1", "--out", str(out))
    r = json.loads(out.read_text())
    pts = r["curves"][0]["curve"]["points"]
    assert [p["strength"] for p in pts] == [0.0, 1.0] and r["curves"][0]["curve"]["n_sources"] == 20
    assert r["chosen_on_validation"]["strength"] == 1.0 and "psnr_db" in r["inversions"]["val"]
    bench = tmp_path / "bench.json"
    run_pipeline("bench_inversion.py", "--run", str(breast), "--dataset", "breastmnist", "--n", "30",
                 "--arms", "cold,warm", "--threads", "1", "--max-load", "99", "--out", str(bench))
    b = json.loads(bench.read_text())
    cold, warm = b["results"]
    assert (cold["arm"], warm["arm"], cold["n"]) == ("cold", "warm", 30)
    assert warm["encoder_seconds"] < cold["encoder_seconds"]  # the encoder trained once, then read from the cache
    assert warm["reconstruction"]["psnr_db"] == pytest.approx(cold["reconstruction"]["psnr_db"])
