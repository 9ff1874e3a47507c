"""Tests for medgan.classify.teacher and medgan.classify.yardstick: the one yardstick and judge of synthetic images
(its recipe, its cache, fidelity's "not measurable" rule) and that quality tracking and evaluate, given the same
checkpoint and data, report the same per-class numbers with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_cfg

from medgan.classify import teacher as teacher_mod
from medgan.classify.teacher import Teacher, _calibrate, fit_teacher, load_or_fit_teacher
from medgan.classify.yardstick import class_quality, yardstick
from medgan.config import TeacherConfig
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.runtime import global_rng_state

pytestmark = pytest.mark.usefixtures("fast_phantoms")

TINY_TEACHER = TeacherConfig(members=3, epochs=2, min_epochs=0)


@pytest.fixture
def td():
    return prepare(load_dataset("phantom2d"), 28)


def test_the_teacher_is_an_ensemble_fitted_with_the_classical_oversample_recipe(td, monkeypatch):
    from medgan.classify import fit
    from medgan.classify.augment import ClassicalAugment

    seen = []
    real = fit.fit_group

    def spy(members, protocol, *a, **k):
        seen.extend((m.seed, m.balanced, m.weighted, type(m.batch_transform)) for m in members)
        seen.append(protocol.steps_per_epoch)
        return real(members, protocol, *a, **k)

    monkeypatch.setattr(fit, "fit_group", spy)
    before = global_rng_state()["torch"]
    t = fit_teacher(td.x["train"], td.y["train"], td.x["val"], td.y["val"], 3, TINY_TEACHER)
    assert torch.equal(global_rng_state()["torch"], before)  # never moves the run's random streams
    n = len(td.y["train"])
    assert seen == [(0, True, False, ClassicalAugment), (1, True, False, ClassicalAugment),
                    (2, True, False, ClassicalAugment), -(-n // 32)]  # balanced + augmented, ceil(N / batch) steps
    assert len(t.members) == 3
    w = [m.head.weight for m in t.members]
    assert not torch.equal(w[0], w[1])  # different seeds, different members
    x = td.x["val"][:10]
    feats, prob = t.features_and_proba(x)
    assert feats.shape == (10, 3 * t.members[0].feature_dim)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in t.members]).mean(0).double().numpy()
    np.testing.assert_allclose(prob, mean, atol=1e-6)  # the members' mean softmax
    assert [pc["class"] for pc in t.info["per_class"]] == ["0", "1", "2"]


class _Fixed(Teacher):
    """A teacher whose probabilities are given per image (row ``i`` of ``table`` for an image whose pixels are
    all ``i``): to test the rules, not the fitting."""

    def __init__(self, table: np.ndarray):
        super().__init__([torch.nn.Identity()], torch.device("cpu"), [])
        self.table = table

    @property
    def num_classes(self) -> int:
        return self.table.shape[1]

    def features_and_proba(self, x, batch=256):
        idx = x.flatten(1)[:, 0].round().long().numpy()
        p = self.table[idx]
        return np.stack([idx, idx % 3, idx ** 2 % 7], 1).astype(float), p


def test_fidelity_is_two_sided_and_not_measurable_where_the_teacher_does_not_recognise_the_class():
    # validation images 0-3 (class 0): p0 0.9, 0.9, 0.9, 0.6; images 4-7 (class 1): p1 0.3, 0.3, 0.3, 0.5. At 90%
    # specificity the teacher finds 3 of 4 of class 0 (p0 > 0.7) but 1 of 4 of class 1 (p1 > 0.4): not recognised
    table = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.7, 0.3], [0.7, 0.3],
                      [0.5, 0.5], [0.99, 0.01], [0.4, 0.6]])
    t = _Fixed(table)
    val_x = torch.arange(8).float().view(8, 1, 1, 1).expand(8, 1, 4, 4).contiguous()
    val_y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    _calibrate(t, val_x, val_y, TeacherConfig(target_specificity=0.9, min_sensitivity=0.6), {}, ["a", "b"])
    a, b = t.info["per_class"]
    assert a["measurable"] and a["sensitivity"] == 0.75 and a["p_real"] == pytest.approx(0.825)
    assert not b["measurable"] and b["sensitivity"] == 0.25 and "recognises only 25%" in b["reason"]
    ys = yardstick(t, val_x, val_y, val_x, val_y)
    syn_x = torch.tensor([8, 8, 9, 9]).float().view(4, 1, 1, 1).expand(4, 1, 4, 4).contiguous()
    q = class_quality(ys, syn_x, torch.tensor([0, 0, 1, 1]))
    assert q["fidelity"][0] == pytest.approx(0.99 / 0.825)  # above 1: caricatures, reported as such
    assert q["fidelity"][1] is None and q["fidelity_reason"][1] == b["reason"]  # never a number
    assert q["p_synthetic"][1] == pytest.approx(0.6)


def test_the_teacher_is_cached_per_data_and_settings(td, tmp_path, monkeypatch):
    args = (td.x["train"], td.y["train"], td.x["val"], td.y["val"], 3)
    t1 = load_or_fit_teacher(tmp_path, *args, TINY_TEACHER)
    assert (tmp_path / "teacher.pt").is_file() and not t1.info["cached"]
    info = json.loads((tmp_path / "teacher.json").read_text())
    assert len(info["per_class"]) == 3 and {"sensitivity", "p_real", "measurable", "reason"} <= set(info["per_class"][0])
    monkeypatch.setattr(teacher_mod, "fit_teacher", lambda *a, **k: pytest.fail("fitted again"))
    t2 = load_or_fit_teacher(tmp_path, *args, TINY_TEACHER)
    assert t2.info["cached"] and t2.info["per_class"] == t1.info["per_class"]
    assert all(torch.equal(a.head.weight, b.head.weight) for a, b in zip(t1.members, t2.members, strict=True))
    calls = []
    monkeypatch.setattr(teacher_mod, "fit_teacher", lambda *a, **k: calls.append(1) or t1)
    load_or_fit_teacher(tmp_path, *args, TINY_TEACHER.model_copy(update={"members": 2}))  # other settings
    other = td.x["train"].clone()
    other[0] += 0.01
    load_or_fit_teacher(tmp_path, other, *args[1:], TINY_TEACHER)  # other images
    assert len(calls) == 2
    (tmp_path / "teacher.pt").write_bytes(b"not a checkpoint")
    assert teacher_mod.load_teacher(tmp_path, *args, TINY_TEACHER) is None  # damaged: fitted again, no traceback


def test_tracking_and_evaluate_give_the_same_per_class_numbers_for_one_checkpoint(tmp_path, monkeypatch):
    """Same checkpoint, same data: the per-class FD, fidelity and diversity that quality tracking computes equal
    those in evaluate's report, because evaluate reuses the run's teacher and both call class_quality."""
    from medgan.evaluation.evaluate import evaluate
    from medgan.synthesis.bank import SyntheticBank
    from medgan.training import tracking
    from medgan.training.run import train

    run = tmp_path / "run"
    cfg = tiny_cfg(train__eval_every=2, train__eval_samples=8, train__steps=2, train__sample_every=0,
                   train__collapse_every=0, evaluate__arms="baseline,oversample", evaluate__seeds=2,
                   evaluate__epochs=1, evaluate__n_synthetic=12, evaluate__privacy=False, evaluate__device="cpu",
                   evaluate__threads=1)
    train(cfg, run)
    assert (run / "teacher" / "teacher.pt").is_file()
    fits = []
    real_fit = teacher_mod.fit_teacher
    monkeypatch.setattr(teacher_mod, "fit_teacher", lambda *a, **k: fits.append(len(a[1])) or real_fit(*a, **k))
    evaluate(cfg, checkpoint=run, out_dir=tmp_path / "rep")
    q = json.loads((tmp_path / "rep" / "report.json").read_text())["quality"]
    assert q["teacher"]["source"].startswith("reused from the training run")
    assert fits == [36]  # only the train-on-synthetic classifier (12 x 3 images) was fitted; the teacher was reused

    # the tracking path on the very images evaluate judged (its pool: the run's best checkpoint, augment.seed)
    bank = SyntheticBank.from_checkpoint(run, n_per_class=12, seed=cfg.augment.seed)
    order = torch.argsort(bank.labels, stable=True)
    x = bank.array_images[order]
    ys = tracking.run_yardstick(run / "teacher", prepare(load_dataset("phantom2d"), cfg.data.size), cfg.teacher,
                                torch.device("cpu"))
    tracker = tracking.QualityTracker(ys, 3, cfg.model.latent_dim, 12, cfg.train.seed, torch.device("cpu"))
    rec = tracker.measure(lambda z, y: x)
    for c, name in enumerate(["few_large", "many_small", "single_bright"]):
        pc = q["per_class"][name]
        assert pc["fd"] == pytest.approx(rec["q_fd"][c], rel=1e-6)
        assert pc["fd_norm"] == pytest.approx(rec["q_fd_norm"][c], rel=1e-6)
        assert pc["diversity_ratio"] == pytest.approx(rec["q_diversity_ratio"][c], rel=1e-6)
        assert pc["sensitivity"] == pytest.approx(rec["q_sensitivity"][c], rel=1e-6)
        if rec["q_fidelity"][c] is None:
            assert pc["fidelity"] is None and pc["fidelity_not_measurable"]
        else:
            assert pc["fidelity"] == pytest.approx(rec["q_fidelity"][c], rel=1e-6)
    md = (tmp_path / "rep" / "report.md").read_text()
    for name in q["per_class"]:
        if q["per_class"][name]["fidelity"] is None:
            assert f"Fidelity of {name} is not measurable:" in md


def test_evaluate_finds_the_training_run_behind_a_checkpoint_or_an_augment_folder(tmp_path):
    from medgan.evaluation.quality import _run_folder

    run = tmp_path / "run"
    assert _run_folder({"kind": "checkpoint", "path": str(run / "checkpoints" / "best.pt")}) == run
    aug = tmp_path / "aug"
    aug.mkdir()
    (aug / "augment.json").write_text(json.dumps({"checkpoint": str(run / "checkpoints" / "last.pt")}))
    assert _run_folder({"kind": "folder", "path": str(aug)}) == run
    assert _run_folder({"kind": "folder", "path": str(tmp_path / "elsewhere")}) is None
    assert _run_folder({"kind": "test"}) is None
