"""Tests for medgan.classify.group and grouped fitting: stacked members compute what each member computes alone,
and a group trains each member on its own batches to the same stopping epoch."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import SCARCE
from torch import nn

from medgan.classify.fit import Member, Protocol, fit_group
from medgan.classify.group import group_size, member_bytes, stack, unstack
from medgan.classify.nets import build_classifier
from medgan.data.batches import BatchStream
from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset


@pytest.mark.parametrize("name, dims", [("smallcnn", 2), ("resnet18", 2), ("smallcnn", 3)])
def test_stacked_members_compute_what_each_computes_alone(name, dims):
    models = []
    for s in range(3):
        torch.manual_seed(s)
        models.append(build_classifier(name, dims, 1, 2).eval())
    st = stack(models).eval()
    shape = (4, 1, 28, 28) if dims == 2 else (2, 1, 12, 12, 12)
    xs = [torch.randn(shape) for _ in range(3)]
    out = st(torch.cat(xs, 1)).view(shape[0], 3, 2)
    for g, (m, x) in enumerate(zip(models, xs, strict=True)):
        assert torch.allclose(out[:, g], m(x), atol=1e-5)
        back = copy.deepcopy(models[0])
        back.load_state_dict(unstack(st, models[0], g, 3))
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values(), strict=True))


def test_a_network_with_an_unknown_layer_is_not_stacked():
    nets = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 26, 26])) for _ in range(2)]
    assert stack(nets) is None
    nets = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(0.5)) for _ in range(2)]
    assert stack(nets) is None  # global-RNG dropout: its masks would not be the members' own


def test_group_trains_each_member_as_alone(monkeypatch):
    td = prepare(load_dataset("phantom2d", scarce=SCARCE))
    drawn: dict[int, list[list[int]]] = {}
    real_next = BatchStream.next

    def recording_next(self):
        idx = real_next(self)
        drawn.setdefault(id(self.g), []).append(idx.tolist())
        return idx

    monkeypatch.setattr(BatchStream, "next", recording_next)
    protocol = Protocol("smallcnn", 3, 1, 16, 1e-3, 3, "auroc", 0)

    def members():
        return [Member(s, td.x["train"], td.y["train"], balanced=s % 2 == 0, weighted=s == 1) for s in range(3)]

    grouped = fit_group(members(), protocol, td.x["val"], td.y["val"], 3)
    group_batches = list(drawn.values())
    drawn.clear()
    alone = [fit_group([m], protocol, td.x["val"], td.y["val"], 3)[0] for m in members()]
    alone_batches = list(drawn.values())
    assert group_batches == alone_batches  # every member: the same batches, in the same order
    for a, b in zip(grouped, alone, strict=True):
        assert (a.best_epoch, a.epochs_run) == (b.best_epoch, b.epochs_run)
        assert a.val_auroc == pytest.approx(b.val_auroc, abs=0.02)
        first = next(iter(a.model.state_dict().values()))
        assert first.shape == next(iter(b.model.state_dict().values())).shape  # a plain member module


def test_group_size_follows_the_memory_budget():
    m = build_classifier("smallcnn", 2, 1, 2)
    per = member_bytes(m, (1, 28, 28), 32)
    assert per > sum(p.numel() * 4 for p in m.parameters())
    assert group_size(m, (1, 28, 28), 32, 10, per * 3.5) == 3
    assert group_size(m, (1, 28, 28), 32, 10, per / 10) == 1 and group_size(m, (1, 28, 28), 32, 10, 1e15) == 10


def test_group_loss_is_the_sum_of_the_members_losses():
    import torch.nn.functional as F

    from medgan.classify.fit import _group_loss

    torch.manual_seed(0)
    logits = torch.randn(8, 3, 2)
    ys = [torch.randint(0, 2, (8,)) for _ in range(3)]
    weights = [None, torch.tensor([0.5, 2.0]), torch.tensor([1.0, 3.0])]
    ref = sum(F.cross_entropy(logits[:, k], ys[k], weight=weights[k]) for k in range(3))
    assert torch.isclose(_group_loss(logits, ys, weights), ref, atol=1e-6)
    plain = sum(F.cross_entropy(logits[:, k], ys[k]) for k in range(3))
    assert torch.isclose(_group_loss(logits, ys, [None] * 3), plain, atol=1e-6)
