"""Tests for medgan.training.monitor: the mode-collapse alarm and the TensorBoard dependency."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_cfg

from medgan.distances import within_class_diversity
from medgan.errors import TrainingError
from medgan.training import monitor
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def test_within_class_diversity_and_alarm():
    x = torch.randn(40, 1, 8, 8)
    y = torch.tensor([0] * 20 + [1] * 20)
    x[20:] = x[20]  # class 1 is a single image repeated
    div = within_class_diversity(x, y, 3)
    assert div[0] > 1.0 and div[1] == 0.0 and math.isnan(div[2])
    rec = monitor.CollapseAlarm([div[0], div[0], 1.0], ["a", "b", "c"], 0.5).check(div)
    assert rec["collapse"] is True and rec["collapsed_classes"] == ["b"]
    assert monitor.CollapseAlarm(div, ["a", "b", "c"]).check(div)["collapse"] is False


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TrainingError, match="tensorboard.*not installed"):
        train(tiny_cfg(train__tensorboard=True), tmp_path / "tb")
