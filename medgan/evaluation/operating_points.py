"""Operating points: thresholds chosen on the real validation split, applied unchanged to the test split.

A deployed classifier flags a scarce finding when its score passes a threshold that was fixed beforehand for a
required specificity. Comparing arms at the argmax of the softmax compares them at whatever operating point each
happened to land on ("more sensitive" then mostly means "a lower threshold"). So, per scarce class ``c`` (one
versus the rest, score = the predicted probability of ``c``), every run gets two thresholds from VALIDATION:

* ``at_specificity``: the lowest threshold whose validation specificity is at least ``target_specificity``
  (the highest sensitivity that keeps that specificity on validation);
* ``youden``: the threshold that maximises Youden's J = sensitivity + specificity - 1 on validation;

and reports, on TEST, the sensitivity, specificity and PPV at each, next to the argmax decision, the AUROC and the
partial AUROC over the high-specificity range (false-positive rate up to ``1 - target_specificity``,
McClish-standardised by scikit-learn: 0.5 is chance, 1 perfect).

A sample is called positive when its score is **at or above** the threshold (scikit-learn's ``roc_curve``
convention; thresholds are validation scores). PPV is 0 when nothing is called positive (scikit-learn's
``zero_division=0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medgan.classify.thresholds import threshold_at_specificity

__all__ = ["threshold_at_specificity", "threshold_youden", "rates", "partial_auroc", "operating_points"]

DEFAULT_TARGET_SPECIFICITY = 0.8


def threshold_youden(y_pos: np.ndarray, score: np.ndarray) -> float:
    """The threshold (a validation score) that maximises sensitivity + specificity - 1 (the highest one on ties)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y_pos, dtype=bool), np.asarray(score, dtype=np.float64))
    j = np.round(tpr - fpr, 12)  # ties (up to rounding) go to the highest threshold
    return float(thr[int(np.argmax(j))])


def rates(y_pos: np.ndarray, called: np.ndarray) -> dict[str, float]:
    """Sensitivity, specificity and PPV of binary calls ``called`` against the truth ``y_pos``."""
    y_pos = np.asarray(y_pos, dtype=bool)
    called = np.asarray(called, dtype=bool)
    tp = int((called & y_pos).sum())
    fp = int((called & ~y_pos).sum())
    n_pos, n_neg = int(y_pos.sum()), int((~y_pos).sum())
    return {"sensitivity": tp / n_pos if n_pos else float("nan"),
            "specificity": (n_neg - fp) / n_neg if n_neg else float("nan"),
            "ppv": tp / (tp + fp) if tp + fp else 0.0}


def partial_auroc(y_pos: np.ndarray, score: np.ndarray, max_fpr: float) -> float:
    """AUROC over false-positive rates ``<= max_fpr``, McClish-standardised (0.5 chance, 1 perfect)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y_pos, dtype=bool), np.asarray(score, dtype=np.float64), max_fpr=max_fpr))


def operating_points(val_y: np.ndarray, val_prob: np.ndarray, test_y: np.ndarray, test_prob: np.ndarray,
                     classes: list[int], class_names: list[str],
                     target_specificity: float = DEFAULT_TARGET_SPECIFICITY) -> dict[str, Any]:
    """Per class in ``classes``: thresholds from the validation split, and test sensitivity, specificity and PPV
    at each (plus argmax, AUROC and partial AUROC); ``scarce_*`` means over those classes.

    ``*_prob``: ``(N, K)`` class probabilities; ``*_y``: ``(N,)`` class indices.
    """
    from sklearn.metrics import roc_auc_score

    val_y, test_y = np.asarray(val_y).reshape(-1), np.asarray(test_y).reshape(-1)
    val_prob, test_prob = np.asarray(val_prob, np.float64), np.asarray(test_prob, np.float64)
    per_class: dict[str, Any] = {}
    for c in classes:
        vp, tp = val_y == c, test_y == c
        vs, ts = val_prob[:, c], test_prob[:, c]
        t_spec = threshold_at_specificity(vp, vs, target_specificity)
        t_j = threshold_youden(vp, vs)
        per_class[class_names[c]] = {
            "at_specificity": {"threshold": t_spec, "validation": rates(vp, vs >= t_spec), **rates(tp, ts >= t_spec)},
            "youden": {"threshold": t_j, "validation": rates(vp, vs >= t_j), **rates(tp, ts >= t_j)},
            "argmax": rates(tp, test_prob.argmax(1) == c),
            "auroc": float(roc_auc_score(tp, ts)),
            "pauroc": partial_auroc(tp, ts, 1.0 - target_specificity),
            "validation_auroc": float(roc_auc_score(vp, vs)),
            "validation_pauroc": partial_auroc(vp, vs, 1.0 - target_specificity),
        }
    pcs = list(per_class.values())

    def mean(get) -> float:
        return float(np.mean([get(p) for p in pcs]))

    return {
        "target_specificity": target_specificity,
        "per_class": per_class,
        "scarce_sens_at_spec": mean(lambda p: p["at_specificity"]["sensitivity"]),
        "scarce_spec_at_spec": mean(lambda p: p["at_specificity"]["specificity"]),
        "scarce_ppv_at_spec": mean(lambda p: p["at_specificity"]["ppv"]),
        "scarce_sens_youden": mean(lambda p: p["youden"]["sensitivity"]),
        "scarce_spec_youden": mean(lambda p: p["youden"]["specificity"]),
        "scarce_auroc": mean(lambda p: p["auroc"]),
        "scarce_pauroc": mean(lambda p: p["pauroc"]),
        "val_scarce_sens_at_spec": mean(lambda p: p["at_specificity"]["validation"]["sensitivity"]),
        "val_scarce_sens_youden": mean(lambda p: p["youden"]["validation"]["sensitivity"]),
        "val_scarce_auroc": mean(lambda p: p["validation_auroc"]),
        "val_scarce_pauroc": mean(lambda p: p["validation_pauroc"]),
    }
