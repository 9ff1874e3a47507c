"""Tests for medgan.classify.fit: train_classifier is reproducible."""

from __future__ import annotations

import pytest
import torch
from helpers import SCARCE

from medgan.classify.fit import train_classifier
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset


def test_same_seed_same_classifier():
    td = prepare(load_dataset("phantom2d", scarce=SCARCE))
    kw = dict(classifier="smallcnn", num_classes=3, seed=4, epochs=1, patience=1, batch_size=32, lr=1e-3,
              steps_per_epoch=2)
    r1 = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], **kw)
    r2 = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], **kw)
    for (k, v1), v2 in zip(r1.model.state_dict().items(), r2.model.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k


def test_class_weights_equalise_the_classes():
    from medgan.classify.fit import class_weights

    y = torch.tensor([0] * 30 + [1] * 10)
    w = class_weights(y, 2)
    assert torch.allclose(w, torch.tensor([40 / 60, 40 / 20]))
    assert torch.isclose((w[y]).sum() / len(y), torch.tensor(1.0))  # the mean weight is 1
    assert (w[0] * 30).item() == pytest.approx((w[1] * 10).item())  # each class weighs the same in the loss


def test_weighted_loss_and_selection_rules_change_training():
    td = prepare(load_dataset("phantom2d", scarce=SCARCE))
    kw = dict(classifier="smallcnn", num_classes=3, seed=1, epochs=3, patience=5, batch_size=32, lr=1e-3,
              steps_per_epoch=2, history=True)
    plain = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], **kw)
    weighted = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], weighted=True, **kw)
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                     weighted.model.state_dict().values(), strict=True))
    h = plain.history
    assert [e["epoch"] for e in h] == [1, 2, 3] and {"loss", "auroc", "balanced_accuracy"} <= set(h[0])
    by_loss = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], select="loss", **kw)
    assert by_loss.best_epoch == 1 + min(range(3), key=lambda i: h[i]["loss"])  # same run, kept by lowest loss
    with pytest.raises(Exception, match="unknown selection score"):
        train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], select="f1", **kw)


def test_fit_group_reports_every_epoch_of_the_group():
    """on_epoch(epoch, members) after each epoch: what evaluate's progress bar moves by."""
    from medgan.classify.fit import Member, Protocol, fit_group

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 28, 28, generator=g) * 2 - 1, torch.tensor([0, 1, 2] * 8)
    seen = []
    protocol = Protocol("smallcnn", epochs=3, patience=5, batch_size=8, lr=1e-3, steps_per_epoch=1)
    res = fit_group([Member(0, x, y), Member(1, x, y)], protocol, x[:9], y[:9], 3, on_epoch=lambda e, m: seen.append((e, m)))
    assert seen == [(1, 2), (2, 2), (3, 2)] and all(r.epochs_run == 3 for r in res)
