"""Classification metrics and their statistics across seeds.

* :func:`classification_metrics`: per-class sensitivity (recall), specificity and precision; balanced accuracy;
  macro-F1; accuracy; AUROC (binary: the positive-class probability; multi-class: macro one-vs-rest), all from
  scikit-learn.
* :func:`mean_ci`: mean and two-sided 95% t-interval over seeds.
* :func:`paired_comparison`: the paired difference of two arms over the same seeds, with a t-interval, the paired
  t-test (:func:`scipy.stats.ttest_rel`, the primary test) and the exact sign-flip permutation test.

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

#: headline metrics in the order tables show them
SUMMARY_METRICS = ("balanced_accuracy", "macro_f1", "auroc", "accuracy", "scarce_sensitivity")
TEST_NAME = "paired t-test (scipy.stats.ttest_rel), two-sided; exact sign-flip permutation test alongside"
TEST_NOTE = (
    "A two-sided Wilcoxon signed-rank (or sign-flip permutation) test on n paired seeds cannot give p below "
    "2/2^n: 0.0625 for 5 seeds, so it can never reach p < 0.05. The paired t-test is therefore the primary "
    "test; the exact permutation p-value is shown beside it (10 seeds allow permutation p down to 0.002)."
)


def check_test_classes(y_true: np.ndarray, class_names: list[str], split: str = "test") -> None:
    """Every class needs at least one image (for sensitivity and one-vs-rest AUROC) and at least one image of
    another class (for specificity); otherwise raise naming the class."""
    y = np.asarray(y_true).reshape(-1)
    counts = np.bincount(y, minlength=len(class_names))
    for c, n in enumerate(counts):
        if n < 1:
            raise EvaluationError(
                f"the {split} split has no image of class '{class_names[c]}', so its sensitivity and AUROC cannot "
                f"be computed; use a dataset whose {split} split holds every class"
            )
        if len(y) - n < 1:
            raise EvaluationError(
                f"the {split} split holds only class '{class_names[c]}', so its specificity cannot be computed; "
                f"use a dataset whose {split} split holds at least two classes"
            )


def classification_metrics(y_true, prob, class_names: list[str], scarce: list[int] | None = None) -> dict[str, Any]:
    """Metrics of one classifier on one labelled set.

    ``prob``: ``(N, K)`` class probabilities (rows sum to 1). ``scarce``: class indices whose mean sensitivity is
    reported as ``scarce_sensitivity`` (the evaluation passes the scarce classes; ``None``: every class).
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        roc_auc_score,
    )

    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(prob, dtype=np.float64)
    k = len(class_names)
    if p.shape != (len(y), k):
        raise ValueError(f"prob must be (N, {k}), got {p.shape}")
    check_test_classes(y, class_names)
    pred = p.argmax(1)
    labels = list(range(k))
    cm = confusion_matrix(y, pred, labels=labels)
    tp = np.diag(cm).astype(np.float64)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    sens = tp / (tp + fn)
    spec = tn / (tn + fp)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)  # sklearn's zero_division=0 convention
    if k == 2:
        auroc = float(roc_auc_score(y, p[:, 1]))
    else:
        pn = p / p.sum(1, keepdims=True)
        auroc = float(roc_auc_score(y, pn, multi_class="ovr", average="macro", labels=labels))
    scarce_idx = list(range(k)) if not scarce else list(scarce)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "auroc": auroc,
        "scarce_sensitivity": float(np.mean(sens[scarce_idx])),
        "per_class": {
            class_names[c]: {"sensitivity": float(sens[c]), "specificity": float(spec[c]),
                             "precision": float(prec[c]), "support": int(tp[c] + fn[c])}
            for c in range(k)
        },
        "confusion_matrix": cm.tolist(),
    }


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
