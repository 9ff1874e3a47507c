"""Tests for medgan.synthesis.conventions: the class mapping, fresh metadata, and the first-sample checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.errors import MedganError
from medgan.synthesis.conventions import ClassMap, orientation_hint, range_hint, synthetic_meta

BANK = ["malignant", "normal, benign"]


@pytest.mark.parametrize("class_names, label, expect", [
    (None, 1, 1), (None, "malignant", 0), (None, "normal_benign", 1), (None, np.array([1]), 1),
    (None, torch.tensor([0, 1]), 1),  # one-hot
    (["normal_benign", "malignant"], 0, 1), (["normal_benign", "malignant"], "malignant", 0),
    ({10: "malignant", 20: 1}, 20, 1), ({"benign": "normal, benign", "malignant": 0}, "Benign", 1),
])
def test_class_map(class_names, label, expect):
    assert ClassMap(BANK, class_names)(label) == expect


def test_class_map_refuses_a_mismatch():
    with pytest.raises(MedganError, match="'benign' \\(label 0\\) is not a class"):
        ClassMap(BANK, ["benign", "malignant"])
    with pytest.raises(MedganError, match="not one of the pipeline's labels"):
        ClassMap(BANK, {10: 0})(11)
    with pytest.raises(MedganError, match="list of the pipeline's class names"):
        ClassMap(BANK, "malignant")


def test_synthetic_meta_is_fresh():
    aff = np.diag([2.0, 3.0, 1.0, 1.0])
    m = synthetic_meta({"original_channel_dim": -1, "width": 5, "filename_or_obj": "x.png"}, aff, (28, 28), "syn")
    assert m["filename_or_obj"] == "syn" and m["original_channel_dim"] == -1 and "width" not in m
    assert torch.equal(m["affine"], torch.as_tensor(aff)) and list(m["spatial_shape"]) == [28, 28]


def test_hints():
    ramp = np.linspace(0, 1, 16)[:, None] * np.ones((1, 16))
    assert orientation_hint(ramp[None], ramp[None], "monai") is None
    assert "layout='array'" in orientation_hint(ramp.T[None], ramp[None], "monai")
    assert "layout='monai'" in orientation_hint(ramp.T[None], ramp[None], "array")
    assert orientation_hint(np.ones((1, 16, 16)), ramp[None], "monai") is None  # nothing to tell
    assert range_hint(ramp * 255, 0.0, 250.0, 0.0, 255.0, "source") is None
    assert "value_range='source'" in range_hint(ramp, 0.0, 250.0, 0.0, 255.0, "source")
