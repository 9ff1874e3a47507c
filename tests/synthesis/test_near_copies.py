"""Tests for medgan.synthesis.near_copies: the near-copy filter used while generating."""

from __future__ import annotations

import pytest
import torch
from helpers import synthetic_mix

from medgan.data.sources import load_dataset
from medgan.errors import EvaluationError
from medgan.synthesis.near_copies import near_copy_filter, near_copy_filter_for_checkpoint


def test_near_copy_filter_marks_copies_for_redraw(phantom_train):
    train_x, train_y = phantom_train
    x, y = synthetic_mix(train_x, train_y)
    f = near_copy_filter(train_x)
    mask = f(x, y)
    assert mask.dtype == torch.bool and mask.shape == (80,)
    assert mask[:20].all() and not mask[60:].any()
    assert near_copy_filter(train_x, threshold=0.0)(x[10:20], y[10:20]).sum() == 0  # explicit threshold wins


def test_near_copy_filter_for_checkpoint_checks_the_fingerprint():
    from medgan.config import DataConfig
    from medgan.errors import ConfigError

    data = load_dataset("phantom2d", scarce=["2=40"])
    ckpt = {"config": {"data": {"dataset": "phantom2d", "scarce": ["2=40"], "split_seed": 0}},
            "data": {**data.meta(), "size": 28}}
    f = near_copy_filter_for_checkpoint(ckpt, DataConfig(dataset="phantom2d", scarce=["2=40"]))
    assert f.train.shape[0] == len(data.splits["train"])
    assert near_copy_filter_for_checkpoint(ckpt, data).train.shape == f.train.shape  # loaded data works too
    with pytest.raises(EvaluationError, match="is not the generator's"):  # the user's data must be the training data
        near_copy_filter_for_checkpoint(ckpt, "phantom2d")
    with pytest.raises(ConfigError, match="pass --dataset.*trained on 'phantom2d' --scarce 2=40"):
        near_copy_filter_for_checkpoint(ckpt, None)  # the checkpoint's own record is never loaded
    ckpt["data"]["train_fingerprint"] = "f" * 64
    with pytest.raises(EvaluationError, match="fingerprint"):
        near_copy_filter_for_checkpoint(ckpt, data)
