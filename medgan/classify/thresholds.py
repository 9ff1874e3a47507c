"""Decision thresholds chosen on validation scores (the evaluation's operating points and the teacher's)."""

from __future__ import annotations

import numpy as np


def threshold_at_specificity(y_pos: np.ndarray, score: np.ndarray, target: float) -> float:
    """The lowest threshold (a validation score) at which the specificity is at least ``target``; ``inf`` (call
    nothing positive) when no threshold reaches it. A sample is positive when its score is at or above it."""
    from sklearn.metrics import roc_curve

    y_pos = np.asarray(y_pos, dtype=bool)
    fpr, tpr, thr = roc_curve(y_pos, np.asarray(score, dtype=np.float64))
    ok = np.flatnonzero(fpr <= 1.0 - target + 1e-12)
    if len(ok) == 0:
        return float("inf")
    best = ok[np.argmax(tpr[ok])]  # among those, the highest sensitivity (the lowest such threshold)
    return float(thr[best])
