"""Tests for medgan.synthesis.translation_curve: the translator interface and the translation curve, with
translators whose answers are known (the identity, a constant image) and a teacher that reads the image mean."""

from __future__ import annotations

import pytest
import torch
from helpers import one_line_error

from medgan.synthesis.translation_curve import Translator, check_strength, meets_targets, translation_curve


class MeanTeacher:
    """A teacher whose p(class 0) is the image mean mapped to [0, 1]; threshold 0.5; it recognises 80% of its real
    validation images of class 0 (as a Teacher's ``info["per_class"]`` would say)."""

    thresholds = [0.5, 0.5]
    info = {"per_class": [{"sensitivity": 0.8}, {"sensitivity": 0.9}]}

    def predict_proba(self, x):
        p0 = (x.flatten(1).mean(1) + 1) / 2
        return torch.stack([p0, 1 - p0], 1)


class Shift:
    """Adds ``2 * strength`` to every pixel (clipped): anatomy kept at low strength, class 0 by the mean at high."""

    class_names = ["scarce", "common"]

    def translate(self, x, y_src, y_tgt, strength):
        return (x + 2 * strength).clamp(-1, 1)


class Constant(Shift):
    def translate(self, x, y_src, y_tgt, strength):
        return torch.full_like(x, 0.9)


def _sources(n=30):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g) * 1.2 - 1.0  # dark images: mean below 0, the teacher says class 1
    y = torch.tensor([1] * (n - 5) + [0] * 5)  # the last 5 are of the target class: left out
    return x, y


def test_curve_measures_anatomy_and_class_change():
    x, y = _sources()
    assert isinstance(Shift(), Translator)
    c = translation_curve(Shift(), x, y, "scarce", [0.0, 0.05, 1.0], MeanTeacher())
    assert c["n_sources"] == 25 and c["target"] == "scarce" and c["teacher_val_sensitivity"] == 0.8
    p0, p1, p2 = c["points"]
    assert p0["anatomy_kept"] == 1.0 and p0["distance_to_source"] == 0.0 and p0["recognition"] == 0.0
    assert p1["anatomy_kept"] == 1.0 and 0 < p1["distance_to_source"] < c["source_nn_distance"]
    assert p2["recognition"] == 1.0 and p2["relative_recognition"] == pytest.approx(1 / 0.8)
    assert p2["anatomy_kept"] < 0.2  # every translation is the same white image: no longer its own source's
    assert meets_targets(p1, 0.8) is False and meets_targets({**p2, "anatomy_kept": 0.9}) is True
    k = translation_curve(Constant(), x, y, 0, [1.0], MeanTeacher(), max_sources=10)
    assert k["n_sources"] == 10 and k["points"][0]["anatomy_kept"] <= 0.1


def test_curve_and_strength_errors():
    x, y = _sources()
    one_line_error(translation_curve, Shift(), x[-5:], y[-5:], 0, [0.5], MeanTeacher(), match="at least 2 source")
    one_line_error(translation_curve, Shift(), x, y, "absent", [0.5], MeanTeacher(), match="unknown class")
    assert check_strength(0.25) == 0.25
    one_line_error(check_strength, 1.2, match="[0, 1]")
    one_line_error(check_strength, "strong", match="a number")
