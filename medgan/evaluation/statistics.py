"""Statistics across seeds: means with confidence intervals, paired comparisons of arms, verdicts.

* :func:`mean_ci`: mean and two-sided 95% t-interval over seeds.
* :func:`paired_comparison`: the paired difference of two arms over the same seeds, with a t-interval, the paired
  t-test (:func:`scipy.stats.ttest_rel`, the primary test) and the exact sign-flip permutation test.
* :func:`summarise`: every arm's means and intervals, comparisons against baseline and oversample, verdicts.

Why the t-test is primary: with 5 seeds, a two-sided Wilcoxon signed-rank test (and the exact sign-flip
permutation test) cannot produce p < 2/2^5 = 0.0625, so it can never reject at the 5% level however large the
effect; the paired t-test can. The permutation p-value is reported beside it as the assumption-free check; with
10 seeds its smallest possible value is 2/2^10 ≈ 0.002.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from medgan.errors import EvaluationError
from medgan.evaluation.metrics import SUMMARY_METRICS

TEST_NAME = "paired t-test (scipy.stats.ttest_rel), two-sided; exact sign-flip permutation test alongside"
TEST_NOTE = (
    "A two-sided Wilcoxon signed-rank (or sign-flip permutation) test on n paired seeds cannot give p below "
    "2/2^n: 0.0625 for 5 seeds, so it can never reach p < 0.05. The paired t-test is therefore the primary "
    "test; the exact permutation p-value is shown beside it (10 seeds allow permutation p down to 0.002)."
)


def _require_seeds(n: int) -> None:
    if n < 2:
        raise EvaluationError(
            f"a confidence interval needs at least 2 seeds, got {n}; use --seeds 2 or more (5 recommended)"
        )


def mean_ci(values, level: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and two-sided t confidence interval over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    _require_seeds(len(v))
    m = float(v.mean())
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v)))
    return {"mean": m, "sd": sd, "lo": m - half, "hi": m + half, "n": int(len(v))}


def sign_flip_p(diffs, max_exact: int = 20, n_random: int = 100_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of the mean paired difference.

    Exact (all 2^n sign patterns) for n <= ``max_exact``; otherwise a seeded Monte-Carlo estimate.
    """
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    n = len(d)
    obs = abs(d.mean())
    tol = 1e-12 * max(1.0, obs)
    if n <= max_exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rs = np.random.RandomState(seed)
        signs = rs.choice((1.0, -1.0), size=(n_random, n))
    stats_ = np.abs((signs * d).mean(1))
    return float(np.mean(stats_ >= obs - tol))


def paired_comparison(a, b, level: float = 0.95) -> dict[str, float]:
    """Arm ``a`` minus arm ``b`` over the same seeds: mean difference, t-interval, paired t-test and exact
    sign-flip permutation p-values."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same seeds for both arms")
    d = a - b
    ci = mean_ci(d, level)
    if ci["sd"] == 0.0:  # the t statistic is 0/0 or ±inf: decide by the sign of the (constant) difference
        p_t = 1.0 if ci["mean"] == 0.0 else 0.0
    else:
        p_t = float(stats.ttest_rel(a, b).pvalue)
    return {"diff": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "sd": ci["sd"], "n": ci["n"],
            "p_ttest": p_t, "p_permutation": sign_flip_p(d)}


def verdict(arm: str, ref: str, metric: str, comp: dict[str, float], alpha: float = 0.05) -> str:
    """One plain sentence: did ``arm`` beat ``ref`` on ``metric``? (primary test: paired t-test)."""
    nums = (f"({comp['diff']:+.3f}, 95% CI {comp['lo']:+.3f}..{comp['hi']:+.3f}, "
            f"t-test p={comp['p_ttest']:.3g}, permutation p={comp['p_permutation']:.3g}, n={comp['n']} seeds)")
    label = metric.replace("_", " ")
    if comp["p_ttest"] < alpha and comp["diff"] > 0:
        return f"{arm}: significant gain in {label} over {ref} {nums}"
    if comp["p_ttest"] < alpha and comp["diff"] < 0:
        return f"{arm}: significantly WORSE {label} than {ref} {nums}"
    return f"{arm}: no significant gain in {label} over {ref} {nums}"


def summarise(runs: dict[str, list[dict[str, Any]]], class_names: list[str],
              arm_names: list[str]) -> tuple[dict, dict, list[str]]:
    """Mean and CI per arm and metric, paired comparisons against baseline and oversample, and verdicts."""
    summary: dict[str, Any] = {}
    for a in arm_names:
        tests = [r["test"] for r in runs[a]]
        summary[a] = {k: mean_ci([t[k] for t in tests]) for k in SUMMARY_METRICS}
        summary[a]["per_class"] = {
            c: {q: mean_ci([t["per_class"][c][q] for t in tests]) for q in ("sensitivity", "specificity",
                                                                                 "precision")}
            for c in class_names
        }
    comparisons: dict[str, Any] = {}
    verdicts: list[str] = []
    refs = [r for r in ("baseline", "oversample") if r in runs]
    for a in arm_names:
        comparisons[a] = {}
        for ref in refs:
            if a in refs and refs.index(a) <= refs.index(ref):  # no baseline-vs-oversample mirror image
                continue
            comp = {k: paired_comparison([t["test"][k] for t in runs[a]], [t["test"][k] for t in runs[ref]])
                    for k in SUMMARY_METRICS}
            comp["per_class_sensitivity"] = {
                c: paired_comparison([t["test"]["per_class"][c]["sensitivity"] for t in runs[a]],
                                       [t["test"]["per_class"][c]["sensitivity"] for t in runs[ref]])
                for c in class_names
            }
            comparisons[a][f"vs_{ref}"] = comp
            if ref == "baseline" or a.startswith("gan"):
                for k in ("scarce_sensitivity", "balanced_accuracy"):
                    verdicts.append(verdict(a, ref, k, comp[k]))
    return summary, comparisons, verdicts
