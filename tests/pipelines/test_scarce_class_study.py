"""Tests for pipelines/scarce_class_study.py: the exact subset in its commands, and a resumable quick run (slow)."""

from __future__ import annotations

import json

import pytest
from helpers import run_pipeline


def test_target_needs_a_gain_over_the_best_conventional_arm_at_equal_auroc():
    import scarce_class_study as st

    def report(diff, p_holm, beats, auroc_diff):
        return {"best_conventional": "classical+oversample", "primary": {"key": "scarce_sens_at_spec"},
                "comparisons": {"gan+oversample@1.0": {"classical+oversample": {
                    "scarce_sens_at_spec": {"diff": diff, "p_holm": p_holm, "beats": beats},
                    "auroc": {"diff": auroc_diff}}}}}

    arm = "gan+oversample@1.0"
    assert st.target(report(0.08, 0.01, True, 0.0), arm) == "yes"
    assert st.target(report(0.03, 0.01, True, 0.01), arm) == "no (gain +0.030 < 0.05)"
    assert st.target(report(0.08, 0.2, False, 0.01), arm) == "no (Holm p=0.2)"
    assert st.target(report(0.08, 0.01, True, -0.02), arm) == "no (AUROC -0.020)"
    assert st.target(report(0.08, 0.01, True, 0.0), "oversample") == ""


def test_study_commands_name_the_exact_subset(tmp_path):
    import scarce_class_study as st

    s = st.SETTINGS["breast20"]
    train = st.train_command(s, tmp_path / "gan", 100, resume=True, gan_config=None, seed=0)
    ev = st.evaluate_command(s, tmp_path / "ck.pt", tmp_path / "r", 10, None, st.ARMS, st.RATIOS, "smallcnn")
    for cmd in (train, ev):
        assert cmd[cmd.index("--scarce") + 1] == "0=0.2" and cmd[cmd.index("--dataset") + 1] == "breastmnist"
    assert "--resume" in train and ev[ev.index("--ratio") + 1] == "0.5,1.0"
    assert "classical+oversample" in ev[ev.index("--arms") + 1] and "weighted" in ev[ev.index("--arms") + 1]
    assert "--scarce" not in st.evaluate_command(st.SETTINGS["breast100"], tmp_path / "c", tmp_path, 5, 1, "baseline",
                                                 "0.5", "smallcnn")


@pytest.mark.slow
def test_scarce_class_study_quick_is_resumable(tmp_path, medmnist_dir):
    work, res = tmp_path / "w", tmp_path / "r"
    args = ["--setting", "breast20", "--quick", "--arms", "baseline,oversample,gan+oversample", "--ratios", "1.0",
            "--work", str(work), "--results-dir", str(res)]
    run_pipeline("scarce_class_study.py", *args)
    r = json.loads((res / "study_breast20.json").read_text())
    assert r["study"]["setting"] == "breast20" and r["study"]["scarce"] == "0=0.2"
    assert "--scarce 0=0.2" in r["study"]["train_command"] and "--scarce 0=0.2" in r["study"]["evaluate_command"]
    assert {"baseline", "gan+oversample@1.0"} <= set(r["summary"]) and r["best_conventional"] in ("baseline",
                                                                                                  "oversample")
    assert (res / "study_breast20.md").is_file()
    again = run_pipeline("scarce_class_study.py", *args)  # finished stages are skipped
    assert "already trained" in again.stdout and "evaluation already done" in again.stdout
    # a tuning variant that only changes the evaluation reuses that GAN and lands in its own result files (a
    # threshold the 2-step GAN's noise passes: the teacher gives it almost no probability of being malignant)
    run_pipeline("scarce_class_study.py", *args, "--tag", "filt", "--gan-from", str(work / "breast20"),
                 "--filter-confidence", "1e-12")
    v = json.loads((res / "study_breast20_filt.json").read_text())
    assert v["study"]["tag"] == "filt" and v["study"]["train_command"] == r["study"]["train_command"]
    assert "--filter-confidence 1e-12" in v["study"]["evaluate_command"]
    assert v["synthetic"]["filter"]["threshold"] == 1e-12 and not (work / "breast20_filt" / "gan").exists()
    summary = run_pipeline("scarce_class_study.py", "--summary", "--results-dir", str(res)).stdout
    assert "### breast20:" in summary and "### breast20_filt:" in summary
