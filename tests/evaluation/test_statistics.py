"""Tests for medgan.evaluation.statistics: confidence intervals, paired tests and verdicts on known numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medgan.errors import EvaluationError
from medgan.evaluation import statistics as S


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
