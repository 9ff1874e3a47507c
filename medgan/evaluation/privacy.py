"""Memorisation check: is any synthetic sample a near-copy of a real training image?

For every synthetic sample we find its nearest real TRAINING image, in pixel space (Euclidean distance of the
[-1, 1] images) and in the classifier feature space, and compare that distance with the real training images'
own leave-one-out nearest-neighbour distances (how close two *different* real images get).

Near-copy rule: a synthetic sample is flagged when its pixel-space nearest-neighbour distance is at or below
the 1st percentile (``percentile``) of the real leave-one-out nearest-neighbour distances, i.e. it sits closer to
a training image than 99% of real images sit to their closest other real image. Exact copies are always flagged.
The rule is calibrated on the data's own duplication: the share of REAL training images it would flag
(``real_flag_rate``, ~1% by construction) is the false-alarm reference. A fixed fraction of the median would not
be: BreastMNIST, for one, holds many near-duplicate real pairs (a quarter of its images have a neighbour at less
than a quarter of the median distance), so distances alone cannot tell a lightly perturbed copy from the
dataset's own near-duplicates; only copies closer than those are caught. The feature-space share under the same
rule is reported beside it but does not flag (different images can share features).
:class:`medgan.synthesis.near_copies.NearCopyFilter` applies the same rule while generating
(``medgan augment --reject-near-copies``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from medgan.distances import DEFAULT_PERCENTILE, NEAR_COPY_RULE, copy_threshold, nearest


def _stats(d: np.ndarray) -> dict[str, float]:
    return {"min": float(d.min()), "p1": float(np.percentile(d, 1)), "p5": float(np.percentile(d, 5)),
            "median": float(np.median(d)), "mean": float(d.mean())}


def memorisation_check(train_x: torch.Tensor, train_y: torch.Tensor, syn_x: torch.Tensor, syn_y: torch.Tensor,
                       feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       percentile: float = DEFAULT_PERCENTILE, n_pairs: int = 16) -> tuple[dict[str, Any], dict]:
    """Nearest-training-image distances of every synthetic sample against the real leave-one-out distances.

    Returns the JSON-safe result and the closest pairs (synthetic images, their nearest real images, distances)
    for the gallery.
    """
    spaces: dict[str, tuple[torch.Tensor, torch.Tensor]] = {"pixel": (train_x, syn_x)}
    if feature_fn is not None:
        spaces["feature"] = (feature_fn(train_x), feature_fn(syn_x))
    result: dict[str, Any] = {"rule": NEAR_COPY_RULE.format(p=percentile), "percentile": percentile,
                              "n_synthetic": int(len(syn_x)), "n_train": int(len(train_x))}
    pixel_d = pixel_i = None
    for space, (tr, sy) in spaces.items():
        loo, _ = nearest(tr, tr, exclude_self=True)
        d, i = nearest(sy, tr)
        loo_np, d_np = loo.numpy(), d.numpy()
        thr = copy_threshold(loo_np, percentile)
        below = d_np <= thr
        per_class = {}
        for c in torch.unique(syn_y).tolist():
            m = (syn_y == c).numpy()
            per_class[str(c)] = float(below[m].mean())
        result[space] = {
            "threshold": thr,
            "real_loo_nn": _stats(loo_np),
            "synthetic_nn": _stats(d_np),
            "fraction_below_threshold": float(below.mean()),
            "real_flag_rate": float((loo_np <= thr).mean()),
            "fraction_below_threshold_per_class": per_class,
            "fraction_below_p5": float((d_np <= np.percentile(loo_np, 5)).mean()),
            "same_class_nn": float((train_y[i] == syn_y).double().mean()),
            "median_ratio_synthetic_to_real": float(np.median(d_np) / max(np.median(loo_np), 1e-12)),
        }
        if space == "pixel":
            pixel_d, pixel_i = d, i
            result["flagged"] = int(below.sum())
            result["fraction_flagged"] = float(below.mean())
            result["flagged_indices"] = np.flatnonzero(below).tolist()
    order = torch.argsort(pixel_d)[:n_pairs]
    pairs = {"synthetic": syn_x[order], "real": train_x[pixel_i[order]], "distance": pixel_d[order].tolist(),
             "synthetic_label": syn_y[order].tolist(), "real_label": train_y[pixel_i[order]].tolist(),
             "threshold": result["pixel"]["threshold"]}
    result["closest_pairs"] = [{"synthetic_index": int(s), "train_index": int(pixel_i[s]), "distance": float(pixel_d[s])}
                               for s in order.tolist()]
    return result, pairs
