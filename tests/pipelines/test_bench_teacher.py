"""Tests for pipelines/bench_teacher.py: replaying a schedule from one unstopped run gives what the teacher's own
fitting chooses, and the result tables."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines"))
import bench_teacher as bt  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def test_a_replayed_schedule_keeps_the_epochs_the_teacher_keeps(tmp_path):
    from medgan.classify.teacher import fit_teacher
    from medgan.config import TeacherConfig

    out = tmp_path / "traj.json"
    bt.trajectory_child(argparse.Namespace(setting="phantom2d", amp="off", members=2, epochs=5, threads=1,
                                           json=str(out)))
    run = json.loads(out.read_text())
    assert len(run["val_prob"]) == 5 and len(run["cpu_per_epoch_s"]) == 5  # (epochs, N, members, K)
    assert len(run["val_prob"][0]) == len(run["val_y"]) and len(run["val_prob"][0][0]) == 2
    td = bt._load("phantom2d")
    settings = TeacherConfig(members=2, epochs=4, min_epochs=1, patience=1, amp="off")
    t = fit_teacher(td.x["train"], td.y["train"], td.x["val"], td.y["val"], 3, settings)
    r = bt.replay(run, (4, 1, 1), 2)
    # the same members trained the same way: the replay keeps the epochs the teacher kept, and stops where it stopped
    assert r["best_epochs"] == [m["best_epoch"] for m in t.info["members"]]
    assert r["group_epochs"] == max(m["epochs_run"] for m in t.info["members"])
    assert r["own"]["sensitivity"] == pytest.approx([pc["sensitivity"] for pc in t.info["per_class"]], abs=0.02)
    assert r["own"]["auroc"] == pytest.approx(t.info["val_auroc"], abs=1e-3)
    assert 0 <= r["held_out"]["auroc"] <= 1 and len(r["held_out"]["sensitivity"]) == 3
    one = bt.replay(run, (5, 5, 1), 1)
    assert one["group_epochs"] == 5 and one["members"] == 1  # min_epochs: never stopped before


def test_the_validation_halves_are_stratified_and_disjoint():
    import numpy as np

    y = np.array([0] * 10 + [1] * 7 + [2] * 3)
    a, b = bt._halves(y)
    assert set(a).isdisjoint(b) and len(a) + len(b) == len(y)
    assert np.bincount(y[a]).tolist() == [5, 3, 1] and np.array_equal(bt._halves(y)[0], a)


def test_reports_render_each_kind():
    fit_run = {"setting": "breast20", "variant": "default", "settings": {"members": 5, "epochs": 60, "min_epochs": 20,
                                                                         "patience": 10, "amp": "bf16"},
               "members": [{"epochs_run": 31}, {"epochs_run": 40}], "fit": {"wall_s": 50.0, "cpu_s": 90.0},
               "load_before": 1.0, "val_auroc": 0.9, "per_class": [{"sensitivity": 0.8}, {"sensitivity": 0.9}]}
    assert "| breast20 | default | 5 x 60/20/10 | bf16 | 31–40 | 50.0 | 90.0 |" in bt.report({"kind": "fit",
                                                                                              "runs": [fit_run]})
    ratio_run = {"round": 0, "evaluate_total_s": 600.0, "arms_s": 500.0, "teacher_wall_s": 60.0, "teacher_share": 0.1,
                 "teacher_share_cpu": 0.09, "load_before": 1.0, "load_after": 1.2}
    assert "| 0 | 600 | 500 | 60.0 | 10.0% | 9.0% |" in bt.report({"kind": "ratio", "runs": [ratio_run]})
