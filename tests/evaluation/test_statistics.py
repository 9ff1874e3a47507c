"""Tests for medgan.evaluation.statistics: bootstrap intervals, exact permutation tests and Holm on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.errors import EvaluationError
from medgan.evaluation import statistics as S


def test_mean_ci_stays_inside_the_range_of_the_values():
    # the example from the issue: a t-interval on these rates leaves [0, 1] (0.014 [-0.025, 0.054])
    v = [0.0, 0.0, 0.0, 0.07, 0.0]
    s = S.mean_ci(v)
    assert s["mean"] == pytest.approx(0.014) and s["sd"] == pytest.approx(np.std(v, ddof=1))
    assert 0.0 <= s["lo"] <= s["mean"] <= s["hi"] <= 0.07
    full = S.mean_ci([1.0, 1.0, 0.98, 1.0])
    assert full["hi"] <= 1.0 and full["lo"] >= 0.98
    assert S.mean_ci([0.5, 0.5])["lo"] == S.mean_ci([0.5, 0.5])["hi"] == 0.5  # no spread, no interval
    assert S.mean_ci([0.2, float("nan"), 0.4])["n"] == 2  # undefined values are left out, and counted


def test_ci_needs_two_seeds():
    with pytest.raises(EvaluationError, match="at least 2 seeds"):
        S.mean_ci([0.7])


def test_exact_permutation_on_known_numbers():
    b = np.array([0.60, 0.55, 0.70, 0.65, 0.50])
    c = S.paired_comparison(b + [0.01, 0.02, 0.03, 0.04, 0.05], b)
    assert c["diff"] == pytest.approx(0.03)
    assert c["p"] == pytest.approx(2 / 32)  # all differences positive: only all-plus and all-minus are as extreme
    assert c["p_ttest"] == pytest.approx(0.013236, abs=2e-6)  # reported beside it, not used by verdicts
    assert 0.01 <= c["lo"] <= c["hi"] <= 0.05
    # |sum| of sign-flipped {1, 2, 3, 4, -0.5} >= 9.5 only for 4 of the 32 patterns
    assert S.permutation_p(np.array([1, 2, 3, 4, -0.5]), np.zeros(5)) == pytest.approx(4 / 32)


def test_zero_variance_is_not_significant():
    same = S.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["diff"] == 0 and same["p"] == 1.0 and same["p_ttest"] is None
    # identical non-zero differences on 2 seeds: the t statistic is infinite, the evidence is one sign pattern
    two = S.paired_comparison([0.6, 0.7], [0.5, 0.6])
    assert two["p"] == pytest.approx(0.5) and two["p_ttest"] is None
    ten = S.paired_comparison([1.0] * 10, [0.0] * 10)
    assert ten["p"] == pytest.approx(2 / 1024)


def test_holm_on_known_p_values():
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = S.holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_note_explains_the_smallest_p():
    assert "0.0625" in S.TEST_NOTE and "0.002" in S.TEST_NOTE and "bootstrap" in S.CI
