"""Per-class quality of synthetic images in the teacher's eyes: one function for quality tracking during training
and for ``medgan evaluate``, so the same checkpoint and data give the same numbers in both.

Against a :class:`Yardstick` (the :class:`~medgan.classify.teacher.Teacher` and what the real images give in
it), per class ``c`` of a synthetic set (:func:`class_quality`):

* ``fd``: Fréchet distance between the synthetic images of ``c`` and the real **validation** images of ``c`` in
  the teacher's features; ``fd_norm`` = ``fd`` / the real floor, the same distance between the real *training*
  and validation images of ``c`` (1: as far from the validation images as the real training images are);
* ``kid``: the kernel distance on the same sets;
* ``fidelity``: the teacher's mean probability of ``c`` on the synthetic images of ``c`` (``p_synthetic``) over
  the same on the real validation images of ``c`` (``p_real``). Two-sided: about 1 is right; well below 1, the
  images do not look like ``c``; well above 1, caricatures the teacher finds more typical than real images.
  ``None`` (with ``fidelity_reason``) where the teacher does not recognise ``c`` on real validation images
  (sensitivity below ``teacher.min_sensitivity`` at its operating point): **not measurable**, never a number;
* ``diversity_ratio``: within-class diversity (mean pairwise RMS distance in pixel space, as the collapse check)
  of at most :data:`DIVERSITY_PER_CLASS` synthetic images of ``c`` (a fixed seeded subset) over that of as many
  real training images of ``c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medgan.classify.teacher import Teacher
from medgan.distances import frechet_distance, kernel_distance, within_class_diversity

#: At most this many images per class enter a diversity (the same fixed-seed subset wherever it is computed).
DIVERSITY_PER_CLASS = 128
DIVERSITY_SEED = 15485867


@dataclass
class Yardstick:
    """The teacher and what the real images give in it."""

    teacher: Teacher
    val_features: list[np.ndarray]
    """Per class: teacher features of the real validation images."""
    fd_floor: list[float]
    kid_floor: list[float]
    real_diversity: list[float]

    @property
    def num_classes(self) -> int:
        return len(self.val_features)

    def info(self) -> dict[str, Any]:
        """The teacher's numbers with the real floors (JSON-safe after :func:`medgan.io.json_safe`)."""
        return {**self.teacher.info, "fd_floor": self.fd_floor, "kid_floor": self.kid_floor,
                "real_diversity": self.real_diversity, "feature_dim": int(self.val_features[0].shape[1])}


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else float("nan")


def _kid(a: np.ndarray, b: np.ndarray) -> float:
    return kernel_distance(a, b)["mean"] if len(a) >= 2 and len(b) >= 2 else float("nan")


def _diversity(x: torch.Tensor, y: torch.Tensor, k: int) -> list[float]:
    g = torch.Generator().manual_seed(DIVERSITY_SEED)
    return within_class_diversity(x, y.to(x.device), k, max_per_class=DIVERSITY_PER_CLASS, generator=g)


def yardstick(teacher: Teacher, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
              val_y: torch.Tensor) -> Yardstick:
    """The :class:`Yardstick` of ``teacher`` on the real training and validation images."""
    k = teacher.num_classes
    f_tr, _ = teacher.features_and_proba(train_x)
    f_va, _ = teacher.features_and_proba(val_x)
    y_tr, y_va = train_y.numpy(), val_y.numpy()
    val = [f_va[y_va == c] for c in range(k)]
    return Yardstick(teacher, val, [_fd(f_tr[y_tr == c], val[c]) for c in range(k)],
                     [_kid(f_tr[y_tr == c], val[c]) for c in range(k)], _diversity(train_x, train_y, k))


def _ratio(a: float, b: float | None) -> float:
    return a / b if b is not None and math.isfinite(a) and math.isfinite(b) and b > 0 else float("nan")


def class_quality(ys: Yardstick, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[Any]]:
    """Per-class lists (module docstring) for synthetic images ``x`` (in [-1, 1]) conditioned on classes ``y``:
    ``fd``, ``fd_norm``, ``kid``, ``fidelity`` (``None`` where not measurable), ``fidelity_reason`` (``None``
    where measurable), ``p_synthetic``, ``p_real``, ``sensitivity`` (the teacher's, on validation),
    ``diversity_ratio``, ``diversity`` (synthetic) and ``n``."""
    k = ys.num_classes
    feats, prob = ys.teacher.features_and_proba(x)
    yn = y.cpu().numpy()
    div = _diversity(x, y, k)
    out: dict[str, list[Any]] = {key: [] for key in ("fd", "fd_norm", "kid", "fidelity", "fidelity_reason",
                                                    "p_synthetic", "p_real", "sensitivity", "diversity_ratio",
                                                    "diversity", "n")}
    for c, pc in enumerate(ys.teacher.per_class()):
        sel = yn == c
        fd = _fd(feats[sel], ys.val_features[c])
        p_syn = float(prob[sel, c].mean()) if sel.any() else float("nan")
        reason = pc["reason"] if not pc["measurable"] else (None if sel.any() else "no synthetic images")
        out["fd"].append(fd)
        out["fd_norm"].append(_ratio(fd, ys.fd_floor[c]))
        out["kid"].append(_kid(feats[sel], ys.val_features[c]))
        out["fidelity"].append(None if reason else _ratio(p_syn, pc["p_real"]))
        out["fidelity_reason"].append(reason)
        out["p_synthetic"].append(p_syn)
        out["p_real"].append(pc["p_real"])
        out["sensitivity"].append(pc["sensitivity"])
        out["diversity_ratio"].append(_ratio(div[c], ys.real_diversity[c]))
        out["diversity"].append(div[c])
        out["n"].append(int(sel.sum()))
    return out
