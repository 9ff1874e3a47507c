"""Tests for medgan.training.tracking: quality measured during training with the teacher, the score, best.pt, the
teacher's cache in OUT/teacher/, alarms, and the run-folder resolver that prefers best.pt."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import state_equal, tiny_cfg

from medgan.training import tracking
from medgan.training.checkpoint import load_checkpoint, resolve_checkpoint
from medgan.training.run import train
from medgan.training.tracking import quality_score

pytestmark = pytest.mark.usefixtures("fast_phantoms")

PER_CLASS = ("q_fd", "q_fd_norm", "q_kid", "q_fidelity", "q_p_synthetic", "q_sensitivity", "q_diversity_ratio")


def _cfg(**over):
    return tiny_cfg(**{"train__eval_every": 2, "train__eval_samples": 8, "train__steps": 5, "train__log_every": 2,
                       "train__sample_every": 0, "train__collapse_every": 0, "train__checkpoint_every": 0, **over})


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_quality_score_on_known_inputs():
    # class 0: fd 1, fidelity 0.8 (0.1 short -> 0.4), diversity 0.7 (0.1 short -> 0.4): 1.8
    # class 1: fd 3, fidelity not measurable (None: no penalty), diversity 1.3 (0.1 over -> 0.4): 3.4
    s = quality_score([1.0, 3.0], [0.8, None], [0.7, 1.3])
    assert s == pytest.approx((1.8 + 3.4) / 2)
    assert quality_score([2.0, float("nan")], [1.0, 1.0], [1.0, 1.0]) == 2.0  # no distance: left out
    assert math.isnan(quality_score([float("nan")], [1.0], [1.0]))
    assert quality_score([1.0], [1.2], [1.0]) == 1.0  # within the targets: the distance alone
    assert quality_score([1.0], [1.5], [1.0]) == pytest.approx(1.0 + 4 * 0.3)  # caricatures cost too (two-sided)


def test_tracking_is_written_at_the_right_steps(tmp_path):
    run = tmp_path / "r"
    train(_cfg(), run)
    recs = _records(run)
    tracked = [r for r in recs if "q_score" in r]
    assert [r["step"] for r in tracked] == [2, 4, 5]  # every eval_every steps and at the end
    for r in tracked:
        for key in PER_CLASS:
            assert len(r[key]) == 3, key
        assert r["q_sensitivity"] == tracked[0]["q_sensitivity"]  # the denominator is fixed for the run
        assert r["q_seconds"] > 0 and isinstance(r["q_drifted_classes"], list)
    assert (run / "teacher" / "teacher.pt").is_file() and not (run / "tracking").exists()
    ref = json.loads((run / "teacher" / "teacher.json").read_text())
    assert [pc["class"] for pc in ref["per_class"]] == ["few_large", "many_small", "single_bright"]
    assert len(ref["members"]) == 2  # teacher.members in the tiny configuration
    for pc, fid, sens in zip(ref["per_class"], tracked[-1]["q_fidelity"], tracked[-1]["q_sensitivity"], strict=True):
        assert sens == pytest.approx(pc["sensitivity"], abs=1e-5)
        assert (fid is None) == (not pc["measurable"])  # not measurable: no number, ever
    assert "quality:" in (run / "train.log").read_text()


def test_tracking_off_writes_nothing_and_does_not_change_training(tmp_path):
    on = train(_cfg(), tmp_path / "on")
    off = train(_cfg(train__eval_every=0), tmp_path / "off")
    assert not (tmp_path / "off" / "teacher").exists() and not (tmp_path / "off" / "checkpoints" / "best.pt").exists()
    assert not any("q_score" in r for r in _records(tmp_path / "off"))
    a, b = load_checkpoint(on.checkpoint), load_checkpoint(off.checkpoint)
    for key in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d", "rng"):
        assert state_equal(a[key], b[key]), key  # the teacher never touches the run's random streams


def test_best_pt_is_chosen_by_the_score(tmp_path, monkeypatch):
    scores = iter([3.0, 1.0, 2.0])  # steps 2, 4, 5: the best is step 4
    monkeypatch.setattr(tracking, "quality_score", lambda *a: next(scores))
    run = tmp_path / "r"
    train(_cfg(), run)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == 4 and best["quality"]["q_score"] == 1.0 and best["quality"]["step"] == 4
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 5 and last["state"]["tracking"] == {"best_score": 1.0, "best_step": 4}
    assert [r["q_best_step"] for r in _records(run) if "q_score" in r] == [2, 4, 4]


def test_no_best_before_the_class_is_phased_in(tmp_path):
    run = tmp_path / "r"
    train(_cfg(train__cond_start=3, train__cond_ramp=1), run)  # weight 1 from step 4 on
    tracked = [r for r in _records(run) if "q_score" in r]
    assert tracked[0]["step"] == 2 and tracked[0]["q_best_step"] is None and tracked[0]["q_drifted_classes"] == []
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] in (4, 5)


def test_alarms_fire_from_the_tracked_numbers(tmp_path):
    run = tmp_path / "r"
    train(_cfg(train__collapse_threshold=5.0, train__drift_threshold=5.0, train__steps=2), run)
    rec = [r for r in _records(run) if "q_score" in r][-1]
    assert "q_collapsed_classes" not in rec  # one collapse alarm: the collapse check's (test_run.py)
    reliable = [n for n, f in zip(["few_large", "many_small", "single_bright"], rec["q_fidelity"], strict=True)
                if f is not None]
    assert rec["q_drifted_classes"] == reliable
    log = (run / "train.log").read_text()
    if reliable:
        assert "class drift at step 2" in log


def test_resume_reuses_the_teacher_and_is_exact(tmp_path, monkeypatch):
    over = dict(train__checkpoint_every=2, model__conditioning="both", train__lecam=0.1, train__cond_start=1,
                train__cond_ramp=2, train__instance_noise=0.05)
    straight = tmp_path / "straight"
    train(_cfg(**over), straight)
    split = tmp_path / "split"
    train(_cfg(**{**over, "train__steps": 3}), split)  # last.pt at step 3; tracked at 2 (and 3, the end)
    from medgan.classify import teacher as teacher_mod

    calls = []
    real = teacher_mod.fit_teacher
    monkeypatch.setattr(teacher_mod, "fit_teacher", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(_cfg(**over), split, resume=True)
    assert not calls  # loaded from split/teacher/teacher.pt
    a, b = (load_checkpoint(p / "checkpoints" / name) for p in (straight, split) for name in ("last.pt",))
    for key in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d"):
        assert state_equal(a[key], b[key]), key
    assert torch.equal(a["state"]["lecam"]["ema"], b["state"]["lecam"]["ema"])
    sa, sb = ([r for r in _records(p) if "q_score" in r and r["step"] == 4][0] for p in (straight, split))
    assert {k: sa[k] for k in PER_CLASS} == {k: sb[k] for k in PER_CLASS}


def test_run_folder_resolves_to_best_pt_and_says_so(tmp_path):
    run = tmp_path / "r"
    train(_cfg(), run)
    choice = resolve_checkpoint(run)
    assert choice.path == run / "checkpoints" / "best.pt" and "best" in choice.why
    assert resolve_checkpoint(run / "checkpoints").path == choice.path
    assert "best" in choice.describe(4) and "step 4" in choice.describe(4)
    (run / "checkpoints" / "best.pt").unlink()
    last = resolve_checkpoint(run)
    assert last.path == run / "checkpoints" / "last.pt" and "no best.pt" in last.why
    f = resolve_checkpoint(run / "checkpoints" / "last.pt")
    assert f.path == run / "checkpoints" / "last.pt" and f.why == "" and f.describe() == str(f.path)


def test_sampler_bank_and_augment_take_best_pt_from_a_run_folder(tmp_path):
    from medgan.config import AugmentConfig
    from medgan.synthesis.bank import SyntheticBank
    from medgan.synthesis.export import augment
    from medgan.synthesis.sampler import Sampler

    run = tmp_path / "r"
    train(_cfg(), run)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    s = Sampler.from_checkpoint(run)
    assert s.checkpoint_path == str(run / "checkpoints" / "best.pt") and s.step == best["step"]
    assert "best checkpoint by tracked quality" in s.checkpoint_note and s._fused is not None
    bank = SyntheticBank.from_checkpoint(run, n_per_class=2)
    assert bank.provenance["checkpoint"].endswith("best.pt") and "best" in bank.provenance["checkpoint_choice"]
    res = augment(run, tmp_path / "aug", AugmentConfig(n=2, format="npz"), progress=False)
    assert "best.pt (the run's best checkpoint by tracked quality" in res.summary()
    info = json.loads((tmp_path / "aug" / "augment.json").read_text())
    assert info["checkpoint"].endswith("best.pt") and "best" in info["checkpoint_choice"]
