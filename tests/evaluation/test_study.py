"""Tests for medgan/evaluation/study.py: how many seeds train together."""

from __future__ import annotations

import torch

from medgan.config import EvalConfig
from medgan.data.phantom import make_phantom
from medgan.data.preprocess import prepare
from medgan.evaluation.study import Study


def _study(classifier: str, group_size: int = 0, device: str = "cpu") -> Study:
    td = prepare(make_phantom(2), 28)
    ev = EvalConfig(classifier=classifier, group_size=group_size)
    return Study(td, ev, torch.device(device), [2], {})


def test_auto_group_stacks_the_small_cnn_but_not_resnet18_on_cpu():
    assert _study("smallcnn").group_size(10) == 10  # fits the 3 GB budget
    assert _study("resnet18").group_size(10) == 1  # measured no faster stacked on a CPU
    assert _study("resnet18", group_size=4).group_size(10) == 4  # an explicit size is taken as given
    assert _study("smallcnn", group_size=16).group_size(10) == 10
