"""Tests for medgan.classify.fit: train_classifier is reproducible."""

from __future__ import annotations

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
