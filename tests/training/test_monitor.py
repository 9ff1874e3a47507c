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


def test_curves_name_the_classes(tmp_path, monkeypatch):
    """Every per-class line of curves.png is labelled with its class name, not 'class 0'."""
    import matplotlib.figure

    seen = []
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        for ax in fig.axes:
            legend = ax.get_legend()
            seen.extend(t.get_text() for t in (legend.get_texts() if legend else []))
        return orig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    recs = [{"step": s, "loss_d": 1.0, "loss_g": 1.0, "d_real": 0.6, "d_fake": 0.4, "diversity_ratio": [0.9, 1.0],
             "q_fd_norm": [2.0, 1.5], "q_fidelity": [0.9, 1.0], "q_diversity_ratio": [1.0, 1.1]} for s in (2, 4)]
    assert monitor.plot_curves(recs, tmp_path / "curves.png", class_names=["malignant", "normal, benign"])
    assert "malignant" in seen and "fidelity, normal, benign" in seen and "diversity ratio, malignant" in seen
    assert not [t for t in seen if "class 0" in t or "class 1" in t]
