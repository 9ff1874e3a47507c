"""Translation of real images into another class: the interface every translator implements, and the translation
curve that measures a translator.

**Interface.** A translator (:class:`Translator`) has ``class_names`` and ``translate(x, y_src, y_tgt, strength)
-> x``: images ``(N, C, *spatial)`` in the model range [-1, 1], channel-first, of classes ``y_src``, turned into
classes ``y_tgt`` with a ``strength`` in [0, 1] (0: the source as the translator renders it; 1: its full change).
:class:`~medgan.synthesis.inversion.LatentTranslator` (invert the image, then generate it with the class
conditioning moved towards the target) is one; an image-conditioned network can be another.

**The curve** (:func:`translation_curve`), per strength, on the translations of up to ``max_sources`` real
images of other classes into one target class:

* *anatomy kept*: the share of translated images whose nearest source image (pixel-space L2 in the model range,
  among all the sources) is their own source, and the mean distance to the own source (RMS per pixel);
* *class change*: the share the teacher (:mod:`medgan.classify.teacher`) calls the target class at its operating
  point chosen on real validation images (``p(target) >= threshold``), over its sensitivity for real validation
  images of the target class (``relative_recognition``: 1 means recognised as often as real images of the class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from medgan.errors import MedganError


@runtime_checkable
class Translator(Protocol):
    """Anything that turns images of one class into another (module docstring)."""

    class_names: list[str]

    def translate(self, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, strength: float) -> torch.Tensor:
        """``x`` ``(N, C, *spatial)`` in [-1, 1] of classes ``y_src`` ``(N,)`` -> images of classes ``y_tgt``."""
        ...


def check_strength(strength: float, what: str = "--strength") -> float:
    """``strength`` as a float in [0, 1] (else a one-line :class:`MedganError`)."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise MedganError(f"{what} must be a number in [0, 1], got {strength!r}") from None
    if not 0.0 <= s <= 1.0 or isinstance(strength, bool):
        raise MedganError(f"{what} must lie in [0, 1] (0: the source image, 1: the full target class), got {strength}")
    return s


def _pick(n: int, max_sources: int, seed: int) -> np.ndarray:
    if n <= max_sources:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).permutation(n)[:max_sources])


def translation_curve(translator: Translator, x: torch.Tensor, y_src: torch.Tensor, target: int | str,
                      strengths: Sequence[float], teacher: Any, max_sources: int = 200,
                      seed: int = 0) -> dict[str, Any]:
    """The translation curve (module docstring) of ``translator`` on sources ``x`` ``(N, C, *spatial)`` (model
    range) of classes ``y_src`` into class ``target``; a seeded subset of at most ``max_sources`` sources is used,
    leaving out any of the target class. ``teacher``: a :class:`~medgan.classify.teacher.Teacher` (its
    ``predict_proba``, ``thresholds`` and validation numbers ``info["per_class"]``).

    Returns ``{"target", "n_sources", "teacher_val_sensitivity", "teacher_threshold", "source_nn_distance",
    "points": [per strength: strength, anatomy_kept, distance_to_source, recognition, relative_recognition,
    p_target, seconds]}``.
    """
    import time

    from medgan.data.classes import class_index

    t = class_index(target, translator.class_names)
    keep = np.flatnonzero(np.asarray(y_src) != t)
    keep = keep[_pick(len(keep), int(max_sources), seed)]
    if len(keep) < 2:
        raise MedganError("the translation curve needs at least 2 source images of classes other than the target")
    xs, ys = x[keep].float(), torch.as_tensor(np.asarray(y_src)[keep], dtype=torch.long)
    flat_src = xs.flatten(1)
    d_src = torch.cdist(flat_src, flat_src)
    d_src.fill_diagonal_(float("inf"))
    rms = 1.0 / float(flat_src.shape[1]) ** 0.5
    rec = teacher.info["per_class"][t]
    sens = rec.get("sensitivity")
    thr = float(teacher.thresholds[t])
    points = []
    for s in strengths:
        t0 = time.perf_counter()
        out = translator.translate(xs, ys, torch.full_like(ys, t), float(s)).float()
        sec = time.perf_counter() - t0
        d = torch.cdist(out.flatten(1), flat_src)
        own = d.diagonal()
        kept = (d.argmin(1) == torch.arange(len(xs))).double().mean().item()
        p = teacher.predict_proba(out)[:, t].numpy()
        recog = float((p >= thr).mean())
        points.append({"strength": float(s), "anatomy_kept": kept, "distance_to_source": float(own.mean()) * rms,
                       "recognition": recog, "relative_recognition": recog / sens if sens else None,
                       "p_target": float(p.mean()), "seconds": round(sec, 2)})
    return {"target": translator.class_names[t], "n_sources": int(len(xs)),
            "teacher_val_sensitivity": sens, "teacher_threshold": thr,
            "source_nn_distance": float(d_src.min(1).values.mean()) * rms, "points": points}


def meets_targets(point: dict[str, Any], anatomy: float = 0.8) -> bool:
    """The issue's targets at one strength: at least ``anatomy`` of the translations nearest to their own source,
    and recognised as the target class at least as often as real validation images of it."""
    rel = point.get("relative_recognition")
    return point["anatomy_kept"] >= anatomy and rel is not None and rel >= 1.0
