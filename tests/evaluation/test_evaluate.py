"""Tests for medgan.evaluation.evaluate: evaluate() — refusals, a tiny complete study, sample filtering."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import SCARCE

from medgan.config import load_config
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.errors import ConfigError, EvaluationError
from medgan.evaluation.evaluate import evaluate
from medgan.synthesis.bank import SyntheticBank
from medgan.training.checkpoint import save_checkpoint


def _cfg(**over):
    base = {"data.dataset": "phantom2d", "data.scarce": SCARCE, "evaluate.seeds": 2, "evaluate.epochs": 1,
            "evaluate.batch_size": 32, "evaluate.threads": 1, "evaluate.quality": False, "evaluate.privacy": False,
            "evaluate.device": "cpu", "teacher.members": 2, "teacher.epochs": 2, "teacher.min_epochs": 0}
    base.update(over)
    return load_config(None, base)


def _noisy_pool(seed=0):
    td = prepare(load_dataset("phantom2d"))
    g = torch.Generator().manual_seed(seed)
    x = (td.x["test"] + 0.1 * torch.randn(td.x["test"].shape, generator=g)).clamp(-1, 1)  # 60 per class
    return SyntheticBank.from_tensors(x, td.y["test"].clone(), td.data.class_names, storage="float16",
                                      provenance={"kind": "test", "path": "noisy test copies", "leakage_guard": "n/a"})


def test_checkpoint_with_another_fingerprint_is_refused(tmp_path):
    other = load_dataset("phantom2d", scarce=["2=10"])
    ck = save_checkpoint(tmp_path / "g.pt", {"config": {}, "data": {**other.meta(), "size": 28}, "generator": {}})
    with pytest.raises(EvaluationError, match="leakage guard"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan"}), checkpoint=ck)
    wrong = load_dataset("phantom2d", scarce=SCARCE).meta() | {"size": 28, "class_names": ["a", "b", "c"]}
    ck2 = save_checkpoint(tmp_path / "h.pt", {"config": {}, "data": wrong, "generator": {}})
    with pytest.raises(EvaluationError, match="has classes"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan"}), checkpoint=ck2)


def test_bad_requests_are_refused_before_training():
    with pytest.raises(EvaluationError, match="need synthetic images"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan"}))
    with pytest.raises(ConfigError, match="at least 2 seeds"):  # refused by the configuration itself
        evaluate(_cfg(**{"evaluate.arms": "baseline", "evaluate.seeds": 1}))
    pool = _noisy_pool()
    bad = SyntheticBank.from_tensors(torch.cat([pool.images, pool.images], 1), pool.labels, pool.class_names,
                                     provenance=pool.provenance)  # 2 channels, dataset has 1
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan"}), synthetic=bad)


def test_tiny_study_writes_a_complete_report(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,oversample,weighted,classical+oversample,gan+oversample",
                  "evaluate.ratios": "0.5"})
    rep = evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    assert [a["name"] for a in d["arms"]] == ["baseline", "oversample", "weighted", "classical+oversample",
                                              "gan+oversample@0.5"]
    assert set(d) >= {"headline", "dataset", "synthetic", "protocol", "primary", "best_conventional", "runs",
                      "summary", "comparisons", "timing"}
    assert d["dataset"]["train_counts"] == [40, 40, 20] and d["dataset"]["scarce_classes"] == ["single_bright"]
    assert d["synthetic"]["allocation"]["gan+oversample@0.5"] == [10, 10, 30]  # 20 to level class 2, then 10 each
    run = d["runs"]["gan+oversample@0.5"][0]
    assert len(d["runs"]["gan+oversample@0.5"]) == 2 and run["train_size"] == 150
    op = run["test"]["operating_points"]["per_class"]["single_bright"]
    assert op["at_specificity"]["validation"]["specificity"] >= 0.8  # the threshold is chosen on validation
    assert run["test"]["scarce_sens_at_spec"] == op["at_specificity"]["sensitivity"]
    assert {r["seed"] for r in d["runs"]["baseline"]} == {0, 1}
    for arm, s in d["summary"].items():
        for k in ("scarce_sens_at_spec", "auroc", "scarce_ppv_at_spec"):
            assert 0.0 <= s[k]["lo"] <= s[k]["mean"] <= s[k]["hi"] <= 1.0, (arm, k)
    # the best conventional arm is one of the real-only arms, picked by its validation value
    conv = d["best_conventional"]
    assert conv in ("baseline", "oversample", "weighted", "classical+oversample")
    best_val = max(d["summary"][a]["validation_primary"]["mean"] for a in ("baseline", "oversample", "weighted",
                                                                          "classical+oversample"))
    assert d["summary"][conv]["validation_primary"]["mean"] == best_val
    c = d["comparisons"]["gan+oversample@0.5"][conv]["scarce_sens_at_spec"]
    assert set(c) >= {"diff", "lo", "hi", "p", "p_holm", "beats"} and c["p_holm"] >= c["p"]
    assert d["protocol"]["steps_per_epoch"] == 4  # ceil(100 / 32) for every arm
    md = (tmp_path / "report.md").read_text()
    assert md.splitlines()[2] == "## Verdict" and "Synthetic data" in md.splitlines()[4]
    assert "| arm | sens @ val spec |" in md and "p (Holm)" in md and "0.0625" in md
    for png in ("arms.png", "per_class_sensitivity.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "baseline" in rep.summary_table() and rep.summary().startswith("**Synthetic data")
    assert "stacked networks of 2 members" in d["protocol"]["grouping"] and "Training: the seeds" in md


def test_killed_evaluation_resumes_and_gives_the_same_report(tmp_path, monkeypatch):
    from medgan.evaluation import study

    cfg = _cfg(**{"evaluate.arms": "baseline,weighted,gan+oversample", "evaluate.ratios": "0.5",
                  "evaluate.group_size": 1})
    full = evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path / "full").data
    real_run, calls = study.Study.run_group, []

    def dies_after_three(self, arm, seeds):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append((arm.name, seeds))
        return real_run(self, arm, seeds)

    monkeypatch.setattr(study.Study, "run_group", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path / "part")
    assert len(list((tmp_path / "part" / "runs").rglob("seed_*.json"))) == 3
    monkeypatch.setattr(study.Study, "run_group", lambda self, arm, seeds: (calls.append((arm.name, seeds)),
                                                                            real_run(self, arm, seeds))[1])
    resumed = evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path / "part").data
    assert len(calls) == 6  # 3 before the kill, only the 3 missing ones after
    assert resumed["summary"] == full["summary"] and resumed["comparisons"] == full["comparisons"]
    assert resumed["headline"] == full["headline"]


def test_a_changed_request_is_refused_and_restart_recomputes(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,oversample"})
    evaluate(cfg, out_dir=tmp_path)
    with pytest.raises(EvaluationError, match=r"different evaluation request \(changed: lr\).*--restart"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,oversample", "evaluate.lr": 0.01}), out_dir=tmp_path)
    more = evaluate(_cfg(**{"evaluate.arms": "baseline,oversample,weighted"}), out_dir=tmp_path)  # adds an arm
    assert list(more.data["summary"]) == ["baseline", "oversample", "weighted"]
    evaluate(_cfg(**{"evaluate.arms": "baseline,oversample", "evaluate.lr": 0.01}), out_dir=tmp_path,
             restart=True)
    assert json.loads((tmp_path / "runs" / "request.json").read_text())["request"]["lr"] == 0.01
    assert not (tmp_path / "runs" / "weighted").exists()  # the old runs went with --restart


def test_each_arm_trains_with_its_measures(monkeypatch):
    """classical+oversample: balanced batches and the classical transform; weighted: the class-weighted loss; the
    seeds of an arm go to one group."""
    from medgan.classify import fit
    from medgan.evaluation import study
    from medgan.evaluation.arms import expand_arms

    seen = []

    def fake_fit_group(members, protocol, *args, **kwargs):
        seen.append([(m.seed, len(m.x), m.balanced, m.weighted, type(m.batch_transform).__name__) for m in members])
        raise StopIteration

    monkeypatch.setattr(fit, "fit_group", fake_fit_group)
    st = study.Study(prepare(load_dataset("phantom2d", scarce=SCARCE)), _cfg().evaluate, torch.device("cpu"), [2],
                     {})
    for arm in expand_arms(["baseline", "weighted", "classical+oversample", "oversample"], []):
        with pytest.raises(StopIteration):
            st.run_group(arm, [0, 1])
    assert seen == [[(0, 100, False, False, "NoneType"), (1, 100, False, False, "NoneType")],
                    [(0, 100, False, True, "NoneType"), (1, 100, False, True, "NoneType")],
                    [(0, 100, True, False, "ClassicalAugment"), (1, 100, True, False, "ClassicalAugment")],
                    [(0, 100, True, False, "NoneType"), (1, 100, True, False, "NoneType")]]


def test_evaluate_with_sample_filtering_records_what_it_kept(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,gan", "evaluate.ratios": "0.5", "evaluate.filter_confidence": 0.8,
                 "teacher.epochs": 20})
    evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    f = d["synthetic"]["filter"]
    assert f["threshold"] == 0.8 and f["drawn"] == [60, 60, 60]
    assert d["synthetic"]["pool_counts"] == f["kept"] and sum(f["kept"]) < 180
    assert "sample filtering" in (tmp_path / "report.md").read_text()
    # the judge is the teacher (2 members in this configuration), fitted here and cached in the report folder
    assert f["classifier"].startswith("teacher (2 x smallcnn, classical augmentation")
    assert len(json.loads((tmp_path / "teacher" / "teacher.json").read_text())["members"]) == 2


def test_a_second_evaluation_into_the_same_folder_is_refused(tmp_path):
    from medgan.errors import OutputError
    from medgan.locks import FolderLock

    with FolderLock(tmp_path, "medgan evaluate"), pytest.raises(OutputError, match="is in use by pid"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,oversample"}), out_dir=tmp_path)
    assert not (tmp_path / "runs").exists()  # refused before any work


def _scarce_only_pool():
    """What ``augment --balance`` writes for phantom2d with SCARCE: images of the scarce class only."""
    pool = _noisy_pool()
    return pool.subset(torch.nonzero(pool.labels == 2).reshape(-1).numpy())


def test_a_pool_without_a_class_an_arm_adds_is_refused_before_the_first_run(monkeypatch):
    """``--synthetic`` of an ``augment --balance`` folder (scarce class only) with a ratio that adds images of
    every class: one line naming the class and the fix, before any classifier is trained."""
    from medgan.evaluation import evaluate as ev_mod

    def no_runs(*a, **k):
        raise AssertionError("run_arms was reached")

    monkeypatch.setattr(ev_mod, "run_arms", no_runs)
    with pytest.raises(EvaluationError, match=r"has no image of class 'few_large' \(index 0\).*"
                                              r"gan\+oversample@0\.5.*--class few_large --n 10.*--ratio balance"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan+oversample", "evaluate.ratios": "0.5"}),
                 synthetic=_scarce_only_pool())


def test_classes_without_synthetic_images_are_not_measured_instead_of_crashing(tmp_path):
    """``--ratio balance`` with a scarce-class-only pool runs through, quality included: the classes without
    synthetic images get no diversity number (null) rather than a reshape error."""
    cfg = _cfg(**{"evaluate.arms": "baseline,gan+oversample", "evaluate.ratios": "balance",
                  "evaluate.quality": True, "evaluate.privacy": True})
    rep = evaluate(cfg, synthetic=_scarce_only_pool(), out_dir=tmp_path)
    q = json.loads((tmp_path / "report.json").read_text())["quality"]
    assert q["per_class"]["few_large"]["n_synthetic"] == 0
    assert q["per_class"]["few_large"]["diversity_ratio"] is None and q["per_class"]["few_large"]["fd"] is None
    assert q["per_class"]["single_bright"]["diversity_ratio"] > 0
    assert rep.data["privacy"]["n_synthetic"] == 60


def test_evaluate_names_the_checkpoint_file_and_a_refusal_announces_no_work(tmp_path):
    """The checkpoint file is said before any work, also for a plain file; the leakage guard refuses before
    'drawing N synthetic images' is announced."""
    other = load_dataset("phantom2d", scarce=["2=10"])
    ck = save_checkpoint(tmp_path / "g.pt", {"config": {}, "data": {**other.meta(), "size": 28}, "generator": {}})
    said = []
    with pytest.raises(EvaluationError, match="leakage guard"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan"}), checkpoint=ck, log=said.append)
    assert f"checkpoint: {ck}" in said
    assert not any("drawing" in s for s in said), said


def test_tuning_mode_scores_on_half_of_validation_and_says_so(tmp_path, monkeypatch):
    from medgan.data import splits

    seen = []
    real_view = splits.tuning_view
    monkeypatch.setattr(splits, "tuning_view", lambda d, s: seen.append(d.counts("test")) or real_view(d, s))
    cfg = _cfg(**{"evaluate.arms": "baseline,oversample", "evaluate.tuning": True})
    evaluate(cfg, out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    full = load_dataset("phantom2d", scarce=SCARCE)
    assert seen == [full.counts("test")]  # the view was built from the full data ...
    # ... and the report's "test" numbers come from half of validation
    halves = zip(d["dataset"]["val_counts"], d["dataset"]["test_counts"], strict=True)
    assert [a + b for a, b in halves] == full.counts("val")
    assert d["headline"][0].startswith("TUNING VIEW") and "tuning" in d["dataset"]
    assert (tmp_path / "report.md").read_text().count("TUNING VIEW") >= 1


def test_evaluate_pairs_draws_the_pool_as_pairs_and_refuses_a_folder_without(tmp_path):
    from helpers import make_checkpoint, tiny_cfg

    from medgan.evaluation.arms import expand_arms
    from medgan.evaluation.evaluate import load_pool
    from medgan.synthesis.export import augment

    cfg = tiny_cfg(data__scarce=["2=40"], evaluate__pairs=True, evaluate__n_synthetic=4)
    data = load_dataset("phantom2d", scarce=["2=40"])
    ck = make_checkpoint(tmp_path / "g.pt", {**data.meta(), "size": 28})
    arms = expand_arms(["gan+oversample"], [0.5])
    pool, _ = load_pool(cfg, data, arms, {"gan+oversample@0.5": [0, 0, 4]}, ck, None, lambda s: None)
    assert pool.pair_ids.tolist() == [p for p in range(4) for _ in range(3)]
    folder = augment(ck, tmp_path / "plain", n=4, format="npz", progress=False).out_dir
    with pytest.raises(EvaluationError, match="holds no counterfactual pairs.*augment --pairs"):
        load_pool(cfg, data, arms, {}, None, folder, lambda s: None)
    paired = augment(ck, tmp_path / "paired", n=4, pairs=True, format="npz", progress=False).out_dir
    assert load_pool(cfg, data, arms, {}, None, paired, lambda s: None)[0].pair_ids is not None


def test_the_oracle_teacher_measures_only_and_sees_the_held_back_images(tmp_path, monkeypatch):
    from medgan.evaluation import pool as pool_mod

    judged = []
    real = pool_mod.filter_pool
    monkeypatch.setattr(pool_mod, "filter_pool", lambda p, t, *a, **k: judged.append(t.info["n_train"]) or real(p, t, *a, **k))
    cfg = _cfg(**{"evaluate.arms": "baseline,gan", "evaluate.ratios": "0.5", "evaluate.quality": True,
                  "evaluate.oracle_teacher": "on", "evaluate.filter_confidence": 0.01})
    evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    full, scarce = sum(load_dataset("phantom2d").counts("train")), sum(d["dataset"]["train_counts"])
    o = d["quality"]["oracle"]
    assert o["measured"] and o["label"] == "oracle (measuring only)" and "never used for filtering" in o["note"]
    assert (o["n_train"], o["n_held_back"]) == (full, full - scarce) == (880, 780)
    assert set(o["per_class"]) == set(d["dataset"]["class_names"]) and o["teacher"]["per_class"][0]["n_val"] > 0
    # cached apart from the teacher (another fingerprint); the filter was judged by the teacher, never the oracle
    assert json.loads((tmp_path / "oracle_teacher" / "teacher.json").read_text())["n_train"] == full
    assert json.loads((tmp_path / "teacher" / "teacher.json").read_text())["n_train"] == scarce == judged[0]
    assert d["quality"]["teacher"]["per_class"] != o["teacher"]["per_class"]
    md = (tmp_path / "report.md").read_text()
    assert "### Sample quality, oracle (measuring only)" in md and "For measuring only" in md


def test_the_oracle_teacher_needs_a_scarcity_simulation():
    from medgan.evaluation.quality import oracle_decision

    with pytest.raises(EvaluationError, match="needs a scarcity simulation"):
        evaluate(_cfg(**{"data.scarce": [], "evaluate.arms": "baseline,oversample", "evaluate.oracle_teacher": "on"}))
    assert oracle_decision("auto", None)[0] is False and oracle_decision("off", {"counts": [1]})[0] is False
    twice = {"original_counts": [100, 20], "counts": [100, 10]}  # 120 of 110 images: cheap
    assert oracle_decision("auto", twice)[0] is True
    many = {"original_counts": [400, 400, 80], "counts": [40, 40, 20]}
    ok, why = oracle_decision("auto", many)
    assert not ok and "8.8x" in why and "evaluate.oracle_teacher: on" in why
    assert oracle_decision("on", many)[0] is True


def test_evaluate_draws_a_translated_pool_from_the_checkpoint(tmp_path, monkeypatch):
    """``evaluate.pool: from_real``: the GAN arms add translations of the real training images of the other
    classes; the report records that pool; a strength without that pool is refused."""
    from helpers import make_checkpoint

    import medgan.synthesis.from_real as from_real
    from medgan.synthesis.inversion import InversionSettings

    monkeypatch.setattr(from_real, "INVERSION", InversionSettings(steps=2, encoder_steps=2, encoder_batch=8))
    meta = {**load_dataset("phantom2d", scarce=SCARCE).meta(), "size": 28}
    ck = make_checkpoint(tmp_path / "g.pt", meta)
    cfg = _cfg(**{"evaluate.arms": "baseline,gan+oversample", "evaluate.ratios": [0.5], "evaluate.pool": "from_real",
                  "evaluate.strength": 0.6, "evaluate.n_synthetic": 30})
    rep = evaluate(cfg, checkpoint=ck, out_dir=tmp_path / "rep")
    syn = json.loads((tmp_path / "rep" / "report.json").read_text())["synthetic"]
    assert syn["pool"] == "from_real" and syn["strength"] == 0.6 and syn["pool_counts"] == [30, 30, 30]
    assert [a["name"] for a in rep.data["arms"]] == ["baseline", "gan+oversample@0.5"]
    assert sum(syn["allocation"]["gan+oversample@0.5"]) > 0  # the GAN arm adds translations
    with pytest.raises(EvaluationError, match="evaluate.strength"):
        evaluate(_cfg(**{"evaluate.arms": "baseline,gan", "evaluate.strength": 0.6}), checkpoint=ck)
