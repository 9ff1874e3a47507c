"""Classification metrics of one classifier on one labelled set: per-class sensitivity (recall), specificity and
precision; balanced accuracy; macro-F1; accuracy; AUROC (binary: the positive-class probability; multi-class:
macro one-vs-rest), all from scikit-learn. Their statistics across seeds are in
:mod:`medgan.evaluation.statistics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medgan.errors import EvaluationError

#: headline metrics in the order tables show them
SUMMARY_METRICS = ("balanced_accuracy", "macro_f1", "auroc", "accuracy", "scarce_sensitivity")


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


