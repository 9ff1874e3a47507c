"""Downstream study: arms, synthetic allocation, shared budget, leakage guard, tiny end-to-end runs."""

from __future__ import annotations

import json

import pytest
import torch

from medgan.classify.fit import train_classifier
from medgan.config import load_config
from medgan.data.batches import BatchStream
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.errors import EvaluationError
from medgan.evaluation.arms import check_choices, expand_arms
from medgan.evaluation.classical import ClassicalAugment
from medgan.evaluation.evaluate import evaluate
from medgan.evaluation.pool import check_leakage
from medgan.synthesis.allocation import fill_smallest_first
from medgan.synthesis.bank import SyntheticBank
from medgan.training.checkpoint import save_checkpoint

SCARCE = ["0=40", "1=40", "2=20"]  # phantom2d: 100 training images, 'single_bright' scarce


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


def test_synthetic_allocation_policy():
    assert fill_smallest_first([29, 399], 1.0) == [399, 29]  # both classes end at 428
    assert fill_smallest_first([29, 399], 0.5) == [214, 0]
    assert fill_smallest_first([29, 399], "balance") == [370, 0]
    # 25 images: all classes raised to level 16 (23 images), the 2 left go to the fewest-real classes first
    assert fill_smallest_first([10, 10, 5], 1.0) == [7, 6, 12]
    assert sum(fill_smallest_first([10, 10, 5], 0.5)) == 12
    assert fill_smallest_first([10, 10, 5], 0.2) == [0, 0, 5]


def test_arms_and_choices():
    arms = expand_arms(["baseline", "oversample", "classical", "gan", "gan+classical"], [0.5, "balance"])
    assert [a.name for a in arms] == ["baseline", "oversample", "classical", "gan@0.5", "gan@balance",
                                      "gan+classical@0.5", "gan+classical@balance"]
    assert arms[1].balanced and arms[2].classical and arms[3].synthetic and arms[5].classical and arms[5].synthetic
    gos = expand_arms(["gan+oversample"], [1.0])[0]
    assert gos.name == "gan+oversample@1.0" and gos.synthetic and gos.balanced and not gos.classical
    with pytest.raises(EvaluationError, match="unknown arm 'smote'"):
        expand_arms(["smote"], [1.0])
    with pytest.raises(EvaluationError, match="unknown arm 'gans'.*baseline, oversample"):
        check_choices(arms="baseline,gans")
    with pytest.raises(EvaluationError, match="unknown classifier 'vgg'.*smallcnn, resnet18"):
        check_choices(classifier="vgg")
    with pytest.raises(EvaluationError, match="bad synthetic ratio 'x'"):
        check_choices(ratios="0.5,x")


def test_leakage_guard_refuses_other_training_split():
    data = load_dataset("phantom2d", scarce=SCARCE)
    other = load_dataset("phantom2d", scarce=["2=10"])
    check_leakage(data.meta(), data)  # the same split: accepted
    with pytest.raises(EvaluationError) as e:
        check_leakage(other.meta(), data)
    msg = str(e.value)
    assert other.fingerprint()[:12] in msg and data.fingerprint()[:12] in msg
    assert "--scarce 2=10" in msg and "leakage guard" in msg


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


def test_classical_augment_is_seeded_and_keeps_shape():
    x = prepare(load_dataset("phantom2d")).x["train"][:16]
    a1 = ClassicalAugment(2, torch.Generator().manual_seed(3))(x)
    a2 = ClassicalAugment(2, torch.Generator().manual_seed(3))(x)
    assert a1.shape == x.shape and torch.equal(a1, a2)
    assert a1.min() >= -1 and a1.max() <= 1
    assert (a1 - x).abs().mean() > 0.01
    v = torch.rand(4, 1, 12, 12, 12) * 2 - 1
    assert ClassicalAugment(3, torch.Generator().manual_seed(0))(v).shape == v.shape


def test_batch_stream_shuffles_or_balances():
    y = torch.tensor([0] * 90 + [1] * 10)
    s = BatchStream(y, 50, torch.Generator().manual_seed(0), balanced=False)
    first = torch.cat([s.next(), s.next()])
    assert sorted(first.tolist()) == list(range(100))  # one epoch = one permutation
    b = BatchStream(y, 1000, torch.Generator().manual_seed(0), balanced=True)
    frac = (y[b.next()] == 1).float().mean().item()
    assert 0.4 < frac < 0.6


def test_same_seed_same_classifier():
    td = prepare(load_dataset("phantom2d", scarce=SCARCE))
    kw = dict(classifier="smallcnn", num_classes=3, seed=4, epochs=1, patience=1, batch_size=32, lr=1e-3,
              steps_per_epoch=2)
    r1 = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], **kw)
    r2 = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], **kw)
    for (k, v1), v2 in zip(r1.model.state_dict().items(), r2.model.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k


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


class _MeanSign(torch.nn.Module):
    """A fixed 'classifier': class 1 when an image's mean is positive, else class 0 (confident either way)."""

    def forward(self, x):
        pos = (x.flatten(1).mean(1) > 0).float()
        return torch.stack([(1 - pos) * 5.0, pos * 5.0], 1)


def test_filter_pool_keeps_images_the_real_data_classifier_agrees_with():
    from medgan.evaluation.pool import filter_pool

    x = torch.cat([torch.full((4, 1, 8, 8), -0.5), torch.full((6, 1, 8, 8), 0.5)])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])  # 3 + 5 agree with the sign rule, 1 + 2 do not
    pool = SyntheticBank.from_tensors(x, y, ["neg", "pos"], provenance={"kind": "test", "path": "p"})
    out, info = filter_pool(pool, _MeanSign(), 0.9, torch.device("cpu"))
    assert info["drawn"] == [5, 5] and info["kept"] == [3, 4]
    assert torch.equal(out.labels, torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    assert bool((out.images[out.labels == 1] > 0).all()) and bool((out.images[out.labels == 0] < 0).all())
    assert out.provenance["filter"]["threshold"] == 0.9
    # a class an arm needs must keep at least one image
    only_wrong = SyntheticBank.from_tensors(x[:4], torch.tensor([0, 0, 0, 1]), ["neg", "pos"])
    with pytest.raises(EvaluationError, match="kept no synthetic image of class 'pos'.*--filter-confidence"):
        filter_pool(only_wrong, _MeanSign(), 0.9, torch.device("cpu"), {"gan@1": [0, 3]})


def test_evaluate_with_sample_filtering_records_what_it_kept(tmp_path):
    cfg = _cfg(**{"evaluate.arms": "baseline,gan", "evaluate.ratios": "0.5", "evaluate.filter_confidence": 0.8,
                 "evaluate.epochs": 20})
    evaluate(cfg, synthetic=_noisy_pool(), out_dir=tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    f = d["synthetic"]["filter"]
    assert f["threshold"] == 0.8 and f["drawn"] == [60, 60, 60]
    assert d["synthetic"]["pool_counts"] == f["kept"] and sum(f["kept"]) < 180
    assert "sample filtering" in (tmp_path / "report.md").read_text()
