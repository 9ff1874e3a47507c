"""Statistics across seeds: intervals, paired tests and multiplicity control.

* :func:`mean_ci`: the mean over seeds with a 95% **percentile bootstrap** interval
  (:func:`scipy.stats.bootstrap`). A percentile interval of a mean lies between the smallest and the largest
  value, so intervals of rates (sensitivity, AUROC) stay inside [0, 1], which a t-interval on 5-10 seeds does not.
* :func:`paired_comparison`: arm ``a`` minus arm ``b`` over the same seeds: the mean difference, its bootstrap
  interval, and the **exact paired permutation test** (:func:`scipy.stats.permutation_test`, sign flips of the
  paired differences; exact enumeration up to 16 seeds). Identical differences on every seed are no evidence at
  all beyond their sign: the test gives them the p-value their sign pattern earns (e.g. 0.5 for 2 seeds), never
  0. The paired t-test p is reported beside it for reference, ``None`` when the differences have no variance.
* :func:`holm`: Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).

With ``n`` paired seeds the smallest possible two-sided permutation p is ``2 / 2^n``: 0.0625 for 5 seeds (never
significant at 0.05), 0.002 for 10. Use 10 seeds or more.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from medgan.errors import EvaluationError

TEST_NAME = "exact paired permutation test (scipy.stats.permutation_test, sign flips), two-sided"
TEST_NOTE = ("With n paired seeds the smallest two-sided permutation p-value is 2/2^n: 0.0625 for 5 seeds (never "
             "below 0.05), 0.002 for 10 seeds. Intervals are 95% percentile-bootstrap intervals of the mean over "
             "seeds (they stay within the range of the values).")
CI = "95% percentile bootstrap of the mean over seeds (scipy.stats.bootstrap, 9999 resamples)"
MAX_EXACT_SEEDS = 16


def _require_seeds(n: int) -> None:
    if n < 2:
        raise EvaluationError(f"a confidence interval needs at least 2 seeds, got {n}; use --seeds 2 or more "
                              "(10 recommended)")


def _bootstrap(values: np.ndarray, level: float, seed: int) -> tuple[float, float]:
    from scipy import stats

    if np.ptp(values) == 0:  # no spread: the interval is the value itself
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=9999, method="percentile",
                          rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def mean_ci(values: Sequence[float], level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean, sample standard deviation and a percentile-bootstrap interval of the mean over seeds.

    NaN values (a metric undefined for a seed) are left out; ``n`` says how many remained."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    _require_seeds(len(v))
    lo, hi = _bootstrap(v, level, seed)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "lo": lo, "hi": hi, "n": int(len(v))}


def permutation_p(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value of the mean paired difference ``a - b`` under random sign flips (exact up to
    :data:`MAX_EXACT_SEEDS` pairs, else 99999 seeded random flips)."""
    from scipy import stats

    d = a - b
    if not np.any(d):
        return 1.0
    n = len(d)
    res = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                 vectorized=True, n_resamples=np.inf if n <= MAX_EXACT_SEEDS else 99999,
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def paired_comparison(a: Sequence[float], b: Sequence[float], level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Arm ``a`` minus arm ``b`` over the same seeds: mean difference, bootstrap interval, exact permutation p
    (``p``, the one verdicts use) and the paired t-test p (``p_ttest``; ``None`` without variance)."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same seeds for both arms")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    _require_seeds(len(a))
    d = a - b
    lo, hi = _bootstrap(d, level, seed)
    with warnings.catch_warnings():  # near-identical differences: scipy warns about precision, p is still usable
        warnings.simplefilter("ignore", RuntimeWarning)
        p_t = None if np.ptp(d) == 0 else float(stats.ttest_rel(a, b).pvalue)
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "sd": float(d.std(ddof=1)), "n": int(len(d)),
            "p": permutation_p(a, b, seed), "p_ttest": p_t}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given): the i-th smallest p times ``m - i``, made monotone, at most
    1. ``NaN`` entries are ignored (and stay ``NaN``)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) if math.isfinite(x) else float("nan") for x in out]
