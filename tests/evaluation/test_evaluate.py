"""Tests for medgan.evaluation.evaluate: evaluate() — refusals, a tiny complete study, sample filtering."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import SCARCE

from medgan.config import load_config
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.errors import EvaluationError
from medgan.evaluation.evaluate import evaluate
from medgan.synthesis.bank import SyntheticBank
from medgan.training.checkpoint import save_checkpoint


def _cfg(**over):
    base = {"data.dataset": "phantom2d", "data.scarce": SCARCE, "evaluate.seeds": 2, "evaluate.epochs": 1,
            "evaluate.batch_size": 32, "evaluate.threads": 1, "evaluate.quality": False, "evaluate.privacy": False,
            "evaluate.device": "cpu"}
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
    with pytest.raises(EvaluationError, match="at least 2 seeds"):
        evaluate(_cfg(**{"evaluate.arms": "baseline", "evaluate.seeds": 1}))
    pool = _noisy_pool()
    bad = SyntheticBank.from_tensors(torch.cat([pool.images, pool.images], 1), pool.labels, pool.class_names,
                                     provenance=pool.provenance)  # 2 channels, dataset has 1
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(_cfg(**{"evaluate.arms": "gan"}), synthetic=bad)


def test_tiny_study_writes_a_complete_report(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,oversample,classical,gan", "evaluate.ratios": "0.5"})
    rep = evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    assert [a["name"] for a in d["arms"]] == ["baseline", "oversample", "classical", "gan@0.5"]
    assert set(d) >= {"dataset", "synthetic", "protocol", "runs", "summary", "comparisons", "verdicts", "timing"}
    assert d["dataset"]["train_counts"] == [40, 40, 20] and d["dataset"]["scarce_classes"] == ["single_bright"]
    assert d["synthetic"]["allocation"]["gan@0.5"] == [10, 10, 30]  # 20 to level class 2, then 10 each
    assert len(d["runs"]["gan@0.5"]) == 2 and d["runs"]["gan@0.5"][0]["train_size"] == 150
    assert {r["seed"] for r in d["runs"]["baseline"]} == {0, 1}
    s = d["summary"]["classical"]["balanced_accuracy"]
    assert s["lo"] <= s["mean"] <= s["hi"]
    c = d["comparisons"]["gan@0.5"]["vs_baseline"]["scarce_sensitivity"]
    assert set(c) >= {"diff", "lo", "hi", "p_ttest", "p_permutation"}
    assert "vs_oversample" in d["comparisons"]["gan@0.5"] and d["comparisons"]["baseline"] == {}
    assert any(v.startswith("gan@0.5:") and "scarce sensitivity" in v for v in d["verdicts"])
    assert d["protocol"]["steps_per_epoch"] == 4  # ceil(100 / 32) for every arm
    md = (tmp_path / "report.md").read_text()
    assert "| arm | balanced acc |" in md and "## Verdicts" in md and "0.0625" in md
    for png in ("arms.png", "per_class_sensitivity.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "baseline" in rep.summary_table()


def test_evaluate_with_sample_filtering_records_what_it_kept(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,gan", "evaluate.ratios": "0.5", "evaluate.filter_confidence": 0.8,
                 "evaluate.epochs": 20})
    evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    f = d["synthetic"]["filter"]
    assert f["threshold"] == 0.8 and f["drawn"] == [60, 60, 60]
    assert d["synthetic"]["pool_counts"] == f["kept"] and sum(f["kept"]) < 180
    assert "sample filtering" in (tmp_path / "report.md").read_text()
