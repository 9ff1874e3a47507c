"""Tests for medgan.evaluation.metrics: classification metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.errors import EvaluationError
from medgan.evaluation import metrics as M


def _onehot_probs(pred, k, conf=0.8):
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_binary_metrics_match_hand_computation():
    # 3 malignant (class 0), 5 benign (class 1)
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95])  # P(class 1); predictions: 0 1 0 1 1 0 1 1
    prob = np.stack([1 - p1, p1], 1)
    m = M.classification_metrics(y, prob, ["malignant", "benign"], scarce=[0])
    # class 0: TP=2 (idx 0,2), FN=1 (idx 1), FP=1 (idx 5), TN=4
    pc = m["per_class"]
    assert pc["malignant"]["sensitivity"] == pytest.approx(2 / 3)
    assert pc["malignant"]["specificity"] == pytest.approx(4 / 5)
    assert pc["malignant"]["precision"] == pytest.approx(2 / 3)
    assert pc["benign"]["sensitivity"] == pytest.approx(4 / 5)
    assert pc["benign"]["specificity"] == pytest.approx(2 / 3)
    assert pc["benign"]["precision"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    f0, f1 = 2 / 3, 4 / 5  # F1 = precision = recall here
    assert m["macro_f1"] == pytest.approx((f0 + f1) / 2)
    # AUROC by counting (positive, negative) pairs ranked correctly: positives {.9,.8,.4,.7,.95}, negatives {.1,.6,.3}
    pos, neg = p1[y == 1], p1[y == 0]
    pairs = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    assert pairs == 14  # of 15: only 0.4 < 0.6
    assert m["auroc"] == pytest.approx(14 / 15)
    assert m["scarce_sensitivity"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]


def test_multiclass_metrics_match_hand_computation():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2])
    prob = _onehot_probs(pred, 3)
    m = M.classification_metrics(y, prob, ["a", "b", "c"], scarce=[0])
    pc = m["per_class"]
    # class a: TP1 FN1 FP1 TN6; b: TP2 FN1 FP1 TN5; c: TP3 FN1 FP1 TN4
    assert pc["a"]["sensitivity"] == pytest.approx(1 / 2) and pc["a"]["specificity"] == pytest.approx(6 / 7)
    assert pc["b"]["sensitivity"] == pytest.approx(2 / 3) and pc["b"]["specificity"] == pytest.approx(5 / 6)
    assert pc["c"]["sensitivity"] == pytest.approx(3 / 4) and pc["c"]["specificity"] == pytest.approx(4 / 5)
    assert pc["a"]["precision"] == pytest.approx(1 / 2)
    assert pc["b"]["precision"] == pytest.approx(2 / 3)
    assert pc["c"]["precision"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert m["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)  # precision == recall per class
    assert m["accuracy"] == pytest.approx(6 / 9)

    # macro one-vs-rest AUROC: with two probability levels, AUROC_c = (1 + TPR - FPR) / 2 for each class
    expect = np.mean([(1 + 1 / 2 - 1 / 7) / 2, (1 + 2 / 3 - 1 / 6) / 2, (1 + 3 / 4 - 1 / 5) / 2])
    assert m["auroc"] == pytest.approx(expect)


def test_missing_test_class_is_named():
    y = np.array([0, 0, 2, 2])
    with pytest.raises(EvaluationError, match="no image of class 'b'"):
        M.classification_metrics(y, _onehot_probs(y, 3), ["a", "b", "c"])
    with pytest.raises(EvaluationError, match="holds only class 'a'"):
        M.check_test_classes(np.array([0, 0, 0]), ["a"], "test")
