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
:class:`NearCopyFilter` applies the same rule while generating
(``medgan augment --reject-near-copies``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.errors import EvaluationError

DEFAULT_PERCENTILE = 1.0
RULE = ("flagged when the pixel-space distance to the nearest real training image is at or below percentile "
        "{p:g} of the real training images' leave-one-out nearest-neighbour distances")


def copy_threshold(loo: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The near-copy threshold from real leave-one-out nearest-neighbour distances (module docstring)."""
    return float(np.percentile(np.asarray(loo, dtype=np.float64), percentile))


def nearest(query: torch.Tensor, ref: torch.Tensor, exclude_self: bool = False,
            chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean nearest neighbour in ``ref`` of every row of ``query`` (both flattened): (distance, index).

    ``exclude_self``: ``query`` is ``ref`` and each row's own entry is skipped (leave-one-out).
    """
    q = query.reshape(len(query), -1).double()
    r = ref.reshape(len(ref), -1).double()
    dists, idx = [], []
    for i in range(0, len(q), chunk):
        d = torch.cdist(q[i : i + chunk], r)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + i] = float("inf")
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).float(), torch.cat(idx)


def _stats(d: np.ndarray) -> dict[str, float]:
    return {"min": float(d.min()), "p1": float(np.percentile(d, 1)), "p5": float(np.percentile(d, 5)),
            "median": float(np.median(d)), "mean": float(d.mean())}


class NearCopyFilter:
    """``filter(x_batch, y_batch) -> bool mask``: True for samples to redraw (near-copies of training images).

    The threshold is :func:`copy_threshold` of the training images' leave-one-out nearest-neighbour pixel
    distances (or an explicit ``threshold``); see the module docstring.
    """

    def __init__(self, train_x: torch.Tensor, percentile: float = DEFAULT_PERCENTILE, threshold: float | None = None):
        self.train = train_x.reshape(len(train_x), -1).float()
        if threshold is None:
            if len(self.train) < 2:
                raise EvaluationError("the near-copy filter needs at least 2 training images to set its threshold")
            loo, _ = nearest(self.train, self.train, exclude_self=True)
            threshold = copy_threshold(loo.numpy(), percentile)
        self.threshold = float(threshold)
        self.percentile = percentile
        self.rule = RULE.format(p=percentile)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        d, _ = nearest(x.detach().cpu().float(), self.train)
        return d

    def __call__(self, x_batch: torch.Tensor, y_batch: torch.Tensor | None = None) -> torch.Tensor:
        return self.distances(x_batch) <= self.threshold


def near_copy_filter(train_x: torch.Tensor, percentile: float = DEFAULT_PERCENTILE,
                     threshold: float | None = None) -> NearCopyFilter:
    """A :class:`NearCopyFilter` against the training images ``train_x`` (model range [-1, 1])."""
    return NearCopyFilter(train_x, percentile, threshold)


def near_copy_filter_for_checkpoint(checkpoint: str | Path | dict[str, Any], data_dir: str | Path | None = None,
                                    percentile: float = DEFAULT_PERCENTILE) -> NearCopyFilter:
    """Rebuild a checkpoint's exact training split from its saved config and return a near-copy filter.

    ``checkpoint``: a path or an already loaded checkpoint dict. The dataset is reloaded from
    ``ckpt['config']['data']`` (dataset, scarcity, split seed; ``data_dir`` overrides the saved folder) and must
    reproduce ``ckpt['data']['train_fingerprint']``, so the filter compares against exactly the images the
    generator saw.
    """
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.checkpoint import load_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    dcfg = dict(ckpt["config"].get("data", {}))
    meta = ckpt["data"]
    data = load_dataset(dcfg.get("dataset"), data_dir or dcfg.get("data_dir"), int(dcfg.get("split_seed", 0)),
                        bool(dcfg.get("download", True)), list(dcfg.get("scarce") or []))
    if meta.get("train_fingerprint") and data.fingerprint() != meta["train_fingerprint"]:
        raise EvaluationError(
            f"cannot rebuild the generator's training images for --reject-near-copies: dataset "
            f"'{dcfg.get('dataset')}' now gives fingerprint {data.fingerprint()[:12]}, the checkpoint recorded "
            f"{meta['train_fingerprint'][:12]}; point --data-dir at the data the generator was trained on"
        )
    td = prepare(data, meta.get("size"))
    return NearCopyFilter(td.x["train"], percentile)


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
    result: dict[str, Any] = {"rule": RULE.format(p=percentile), "percentile": percentile,
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
