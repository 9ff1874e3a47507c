"""Metrics against hand computations; confidence intervals and paired tests on known numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medgan.errors import EvaluationError
from medgan.evaluation import metrics as M
from medgan.evaluation import statistics as S


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


def test_mean_ci_t_interval_on_known_numbers():
    s = S.mean_ci([1, 2, 3, 4, 5])
    # sd = sqrt(2.5); t_{0.975, 4} = 2.776445; half width = 2.776445 * sqrt(2.5) / sqrt(5)
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert s["mean"] == pytest.approx(3.0)
    assert s["sd"] == pytest.approx(math.sqrt(2.5))
    assert s["lo"] == pytest.approx(3 - half, abs=1e-6)
    assert s["hi"] == pytest.approx(3 + half, abs=1e-6)


def test_ci_needs_two_seeds():
    with pytest.raises(EvaluationError, match="at least 2 seeds"):
        S.mean_ci([0.7])


def test_paired_t_test_and_exact_permutation_on_known_numbers():
    b = np.array([0.60, 0.55, 0.70, 0.65, 0.50])
    a = b + np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    c = S.paired_comparison(a, b)
    # t = mean / (sd / sqrt(n)) = 0.03 / (0.0158114 / 2.236068) = 4.2426; two-sided p with 4 df = 0.013236
    assert c["diff"] == pytest.approx(0.03)
    assert c["p_ttest"] == pytest.approx(0.013236, abs=2e-6)
    # all 5 differences positive: only the all-plus and all-minus sign patterns are as extreme -> 2/32
    assert c["p_permutation"] == pytest.approx(2 / 32)
    assert c["lo"] > 0
    # |sum| of sign-flipped {1, 2, 3, 4, -0.5} >= 9.5 only when the flipped magnitudes total 0, 0.5, 10 or 10.5
    assert S.sign_flip_p([1, 2, 3, 4, -0.5]) == pytest.approx(4 / 32)


def test_paired_comparison_zero_variance_and_verdicts():
    same = S.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["diff"] == 0 and same["p_ttest"] == 1.0
    noisy = S.paired_comparison([0.5, 0.7, 0.6, 0.8, 0.7], [0.6, 0.6, 0.6, 0.7, 0.7])
    v = S.verdict("gan@1.0", "baseline", "scarce_sensitivity", noisy)
    assert v.startswith("gan@1.0: no significant gain in scarce sensitivity over baseline (+0.020, 95% CI")
    assert "t-test p=" in v and "permutation p=" in v
    good = S.paired_comparison([0.71, 0.72, 0.74, 0.73, 0.75], [0.60, 0.60, 0.61, 0.62, 0.61])
    assert "significant gain" in S.verdict("gan@1.0", "baseline", "balanced_accuracy", good)
    bad = S.paired_comparison([0.60, 0.60, 0.61, 0.62, 0.61], [0.71, 0.72, 0.74, 0.73, 0.75])
    assert "WORSE" in S.verdict("oversample", "baseline", "balanced_accuracy", bad)


def test_report_note_explains_test_choice():
    assert "0.0625" in S.TEST_NOTE and "t-test" in S.TEST_NOTE and "0.002" in S.TEST_NOTE
