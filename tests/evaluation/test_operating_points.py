"""Tests for medgan.evaluation.operating_points: thresholds chosen on validation, applied to test."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.evaluation.operating_points import (
    operating_points,
    rates,
    threshold_at_specificity,
    threshold_youden,
)


def test_threshold_for_a_known_specificity():
    # 10 negatives scored 0.0..0.9, 5 positives scored 0.55..0.95
    neg, pos = np.arange(10) / 10, np.array([0.55, 0.65, 0.75, 0.85, 0.95])
    y = np.r_[np.zeros(10, bool), np.ones(5, bool)]
    s = np.r_[neg, pos]
    t = threshold_at_specificity(y, s, 0.8)
    # specificity >= 0.8 allows 2 false positives (0.8, 0.9): the lowest such threshold is 0.75, which also calls
    # the positives 0.75, 0.85, 0.95
    assert t == pytest.approx(0.75)
    r = rates(y, s >= t)
    assert r["specificity"] == pytest.approx(0.8) and r["sensitivity"] == pytest.approx(0.6)
    assert r["ppv"] == pytest.approx(3 / 5)
    assert threshold_at_specificity(y, s, 1.0) == pytest.approx(0.95)  # no false positive: only the top positive


def test_youden_picks_the_best_separation():
    y = np.array([0, 0, 0, 1, 1, 1], bool)
    s = np.array([0.1, 0.2, 0.6, 0.5, 0.7, 0.9])
    assert threshold_youden(y, s) == pytest.approx(0.7)  # J = 2/3 at 0.7 and at 0.5: the higher threshold wins
    assert rates(y, s >= 0.7)["sensitivity"] == pytest.approx(2 / 3)


def test_thresholds_transfer_from_validation_to_test():
    rs = np.random.RandomState(0)
    val_y = np.r_[np.zeros(40, int), np.ones(20, int)]
    test_y = np.r_[np.zeros(40, int), np.ones(20, int)]

    def probs(y, shift):
        p1 = np.clip(rs.rand(len(y)) * 0.6 + y * 0.35 + shift, 0, 1)
        return np.c_[1 - p1, p1]

    vp, tp = probs(val_y, 0.0), probs(test_y, 0.2)  # test scores are shifted: the validation threshold holds
    op = operating_points(val_y, vp, test_y, tp, [1], ["neg", "pos"], 0.8)
    pc = op["per_class"]["pos"]
    t = pc["at_specificity"]["threshold"]
    assert pc["at_specificity"]["validation"]["specificity"] >= 0.8
    assert pc["at_specificity"]["sensitivity"] == pytest.approx(np.mean(tp[test_y == 1, 1] >= t))
    assert pc["at_specificity"]["specificity"] == pytest.approx(np.mean(tp[test_y == 0, 1] < t))
    assert op["scarce_sens_at_spec"] == pc["at_specificity"]["sensitivity"]
    assert 0.5 <= op["scarce_pauroc"] <= 1.0 and op["val_scarce_sens_at_spec"] > 0


def test_ppv_is_zero_when_nothing_is_called():
    assert rates(np.array([True, False]), np.array([False, False]))["ppv"] == 0.0
