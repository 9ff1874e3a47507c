"""Tests for medgan.evaluation.pool: the leakage guard and sample filtering of the synthetic pool."""

from __future__ import annotations

import pytest
import torch
from helpers import SCARCE

from medgan.data.sources import load_dataset
from medgan.errors import EvaluationError
from medgan.evaluation.pool import check_leakage
from medgan.synthesis.bank import SyntheticBank


def test_leakage_guard_refuses_other_training_split():
    data = load_dataset("phantom2d", scarce=SCARCE)
    other = load_dataset("phantom2d", scarce=["2=10"])
    check_leakage(data.meta(), data)  # the same split: accepted
    with pytest.raises(EvaluationError) as e:
        check_leakage(other.meta(), data)
    msg = str(e.value)
    assert other.fingerprint()[:12] in msg and data.fingerprint()[:12] in msg
    assert "--scarce 2=10" in msg and "leakage guard" in msg


class _MeanSign(torch.nn.Module):
    """A fixed 'classifier': class 1 when an image's mean is positive, else class 0 (confident either way)."""

    def forward(self, x):
        pos = (x.flatten(1).mean(1) > 0).float()
        return torch.stack([(1 - pos) * 5.0, pos * 5.0], 1)

    def predict_proba(self, x):  # what filter_pool asks of the teacher
        return torch.softmax(self(x), 1)


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


def test_pool_drawn_as_pairs_keeps_pair_ids(tmp_path):
    from helpers import make_checkpoint

    from medgan.evaluation.pool import pool_from_checkpoint

    data = load_dataset("phantom2d", scarce=SCARCE)
    ck = make_checkpoint(tmp_path / "g.pt", {**data.meta(), "size": 28})
    said = []
    pool, size = pool_from_checkpoint(ck, data, None, 5, seed=0, say=said.append, pairs=True)
    assert size == 28 and pool.counts == [5, 5, 5] and pool.provenance["pairs"] == 5
    assert pool.pair_ids.tolist() == [p for p in range(5) for _ in range(3)] and "counterfactual pairs" in said[0]
    plain, _ = pool_from_checkpoint(ck, data, None, 5, seed=0)
    assert plain.pair_ids is None and "pairs" not in plain.provenance
