"""Quality tracked while the GAN trains (as StyleGAN2-ADA's metric snapshots, with StudioGAN's per-class view).

The yardstick is **the teacher** (:mod:`medgan.classify.teacher`): an ensemble of small CNNs fitted once on the
real training split with the strongest conventional recipe (classical augmentation + class-balanced batches),
selected on the real validation split, deterministic, nothing downloaded. It is the same teacher ``medgan
evaluate`` judges with, and cached in ``OUT/teacher/`` (``teacher.pt``, and its own validation numbers per class in
``teacher.json``), so ``--resume`` does not fit it again and ``evaluate`` of the run reuses it. Fitting it never
touches the GAN's random streams (the global RNG state is restored), so a run with tracking trains the same
weights as one without.

Then every ``train.eval_every`` steps and at the end, the EMA generator draws ``train.eval_samples`` images per
class from fixed noise, and per class (:func:`medgan.classify.yardstick.class_quality`, the very function
``evaluate`` uses, so the same checkpoint and data give the same numbers):

* ``q_fd`` / ``q_fd_norm`` / ``q_kid``: Fréchet distance (and over its real floor) and kernel distance between the
  synthetic images and the real **validation** images of the class in the teacher's features;
* ``q_fidelity``: the teacher's mean probability of the class on its synthetic images (``q_p_synthetic``) over
  the same on its real validation images. Two-sided: about 1 is right, well above 1 means caricatures. ``null``
  where the teacher does not recognise the class on real validation images (``q_sensitivity``, its validation
  sensitivity at its operating point, below ``teacher.min_sensitivity``): not measurable, never a number;
* ``q_diversity_ratio``: within-class pixel diversity of the synthetic images over that of real training images.

These go to ``metrics.jsonl`` (lists, one value per class), TensorBoard (``q_fd/class_0``, ...) and
``curves.png``. Alarm: ``q_drifted_classes`` (a measurable fidelity below ``train.drift_threshold``, once the class
is fully phased in), with a warning in ``train.log``. Mode collapse has one alarm, the collapse check
(:class:`medgan.training.hooks.CollapseCheck`); ``q_diversity_ratio`` here is a term of the score, not a second
alarm.

**The score and ``best.pt``** (lower is better; :func:`quality_score`)::

    score = mean over classes c of [ q_fd_norm(c)
                                     + 4 * max(0, 0.9 - q_fidelity(c), q_fidelity(c) - 1.2)   (only if measurable)
                                     + 4 * max(0, 0.8 - q_div(c), q_div(c) - 1.2) ]

The normalised Fréchet distance is the backbone (1 = the real floor); a class whose fidelity leaves [0.9, 1.2]
(drift below, caricature above) or whose diversity ratio leaves [0.8, 1.2] (collapse, over-dispersion) pays 4 per
unit outside. Classes without a finite distance (fewer than 2 validation images) are left out.
``checkpoints/best.pt`` is written whenever the score improves on the best so far, once the transitional
conditioning schedule (if any) has reached 1; it is a full checkpoint plus a ``quality`` record (the
measurements, score, step). The best score so far travels in every checkpoint (``state.tracking``), so a resumed
run keeps choosing against it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.classify.yardstick import Yardstick, class_quality, yardstick
from medgan.runtime import derive_seed
from medgan.training import monitor
from medgan.training.hooks import Hook, RunState

if TYPE_CHECKING:
    from medgan.config import TeacherConfig
    from medgan.data.preprocess import TensorData

log = logging.getLogger("medgan.train")

#: A fidelity outside this band costs the score (two-sided: drift below, caricatures above).
FIDELITY_BAND = (0.9, 1.2)
DIVERSITY_BAND = (0.8, 1.2)
PENALTY = 4.0


def _bad(v: Any) -> bool:
    return v is None or not math.isfinite(v)


def quality_score(fd_norm: list[float], fidelity: list[float | None], diversity_ratio: list[float]) -> float:
    """The tracked quality score (lower is better; see the module docstring); ``nan`` when no class has a finite
    normalised Fréchet distance. A fidelity of ``None`` (not measurable) costs nothing."""
    terms = []
    for fd, fid, div in zip(fd_norm, fidelity, diversity_ratio, strict=True):
        if _bad(fd):
            continue
        t = fd
        if not _bad(fid):
            t += PENALTY * max(0.0, FIDELITY_BAND[0] - fid, fid - FIDELITY_BAND[1])
        if not _bad(div):
            t += PENALTY * max(0.0, DIVERSITY_BAND[0] - div, div - DIVERSITY_BAND[1])
        terms.append(t)
    return float(np.mean(terms)) if terms else float("nan")


def run_yardstick(folder: Path, tdata: TensorData, settings: TeacherConfig, device: torch.device) -> Yardstick:
    """The run's :class:`~medgan.classify.yardstick.Yardstick`: the teacher cached in ``folder`` when it was fitted
    on these very images with these settings, else fitted now and cached there."""
    from medgan.classify.teacher import load_or_fit_teacher

    teacher = load_or_fit_teacher(folder, tdata.x["train"], tdata.y["train"], tdata.x["val"], tdata.y["val"],
                                  tdata.data.num_classes, settings, device, list(tdata.data.class_names))
    return yardstick(teacher, tdata.x["train"], tdata.y["train"], tdata.x["val"], tdata.y["val"])


#: ``class_quality`` keys -> the ``q_*`` keys of ``metrics.jsonl``.
KEYS = {"fd": "q_fd", "fd_norm": "q_fd_norm", "kid": "q_kid", "fidelity": "q_fidelity",
        "p_synthetic": "q_p_synthetic", "sensitivity": "q_sensitivity", "diversity_ratio": "q_diversity_ratio"}


class QualityTracker:
    """Measures the generator against a :class:`~medgan.classify.yardstick.Yardstick` from fixed noise
    (``n_per_class`` per class)."""

    def __init__(self, ys: Yardstick, num_classes: int, latent_dim: int, n_per_class: int, seed: int,
                 device: torch.device) -> None:
        self.ys = ys
        self.num_classes = num_classes
        self.device = device
        g = torch.Generator().manual_seed(derive_seed(seed, 7919))
        self.y = torch.arange(num_classes).repeat_interleave(n_per_class)
        self.z = torch.randn(len(self.y), latent_dim, generator=g)
        self.n_per_class = n_per_class

    def measure(self, sample) -> dict[str, Any]:
        """The per-class measurements (``q_*`` lists, module docstring) of ``sample(z, y)`` (images in [-1, 1])."""
        q = class_quality(self.ys, sample(self.z, self.y), self.y)
        return {key: q[k] for k, key in KEYS.items()}


def _rounded(rec: dict[str, Any]) -> dict[str, Any]:
    """Numbers (alone or in lists) to 5 decimals; everything else as it is."""
    def r(v):
        return round(v, 5) if isinstance(v, float) and math.isfinite(v) else v

    return {k: [r(v) for v in vals] if isinstance(vals, list) else r(vals) for k, vals in rec.items()}


OUT_TEACHER_JSON = "OUT/teacher/teacher.json"


class TrackQuality(Hook):
    """Quality tracking (module docstring): measures, logs, raises the drift alarm, marks a new best."""

    def __init__(self, every: int, n_per_class: int, drift_threshold: float) -> None:
        super().__init__(every)
        self.n_per_class = int(n_per_class)
        self.drift_threshold = float(drift_threshold)
        self.tracker: QualityTracker | None = None
        self.seconds = 0.0

    def start(self, state: RunState) -> None:
        if self.every <= 0:
            return
        tr = state.trainer
        y_val = tr.tdata.y["val"]
        if not len(y_val):
            monitor.warn("quality tracking is skipped: the dataset has no validation images to measure against "
                         "(add a val split or more images per class; train.eval_every: 0 silences this)")
            return
        missing = [n for c, n in enumerate(tr.class_names) if not bool((y_val == c).any())]
        if missing:
            monitor.warn(f"quality tracking cannot measure class(es) {', '.join(repr(n) for n in missing)}: no "
                         "validation images of them (their distances stay empty and they do not enter the score)")
        from medgan.classify.teacher import TEACHER_DIR

        t0 = time.perf_counter()
        ys = run_yardstick(state.out / TEACHER_DIR, tr.tdata, state.cfg.teacher, tr.device)
        self.tracker = QualityTracker(ys, tr.num_classes, tr.latent_dim, self.n_per_class, state.cfg.train.seed,
                                      tr.device)
        self.seconds = time.perf_counter() - t0
        i = ys.teacher.info
        unmeasurable = [pc["class"] for pc in i["per_class"] if not pc["measurable"]]
        log.info("quality tracking: teacher %s (%s; validation balanced accuracy %.3f, sensitivity per class at "
                 "%.0f%% specificity %s), set up in %.1f s", "loaded" if i.get("cached") else "fitted", i["recipe"],
                 i["val_balanced_accuracy"], 100 * i["target_specificity"],
                 [None if pc["sensitivity"] is None else round(pc["sensitivity"], 3) for pc in i["per_class"]],
                 self.seconds)
        if unmeasurable:
            monitor.warn(f"quality tracking: the fidelity of {', '.join(repr(n) for n in unmeasurable)} is not "
                         "measurable (the teacher does not recognise the class on real validation images; "
                         f"{OUT_TEACHER_JSON})")

    def due(self, state: RunState) -> bool:
        return self.tracker is not None and super().due(state)

    def __call__(self, state: RunState) -> None:
        t0 = time.perf_counter()
        tr, names = state.trainer, state.trainer.class_names
        rec = self.tracker.measure(tr.sample)
        rec["q_score"] = quality_score(rec["q_fd_norm"], rec["q_fidelity"], rec["q_diversity_ratio"])
        phased_in = tr.cond_scale(state.step) >= 1.0  # the weight the samples were drawn with
        best = state.tracking.get("best_score")
        if phased_in and math.isfinite(rec["q_score"]) and (best is None or rec["q_score"] < best):
            state.tracking = {"best_score": rec["q_score"], "best_step": state.step}
            state.save_best = {"step": state.step, **_rounded(rec)}
        rec["q_best_step"] = state.tracking.get("best_step")
        rec["q_drifted_classes"] = [n for n, f in zip(names, rec["q_fidelity"], strict=True)
                                    if phased_in and not _bad(f) and f < self.drift_threshold]
        self._warn(state, rec)
        self.seconds += time.perf_counter() - t0
        rec["q_seconds"] = round(self.seconds, 2)
        rec = _rounded(rec)
        log.info("step %d quality: score %.3f (best at step %s), FD/floor %s, fidelity %s, diversity ratio %s",
                 state.step, rec["q_score"], rec["q_best_step"], rec["q_fd_norm"], rec["q_fidelity"],
                 rec["q_diversity_ratio"])
        if state.logging_now:
            state.record.update(rec)
        else:
            state.metrics.append({"step": state.step, **rec})
            if state.tb is not None:
                state.tb.add({"step": state.step, **rec})

    def _warn(self, state: RunState, rec: dict[str, Any]) -> None:
        if rec["q_drifted_classes"]:
            fid = [None if _bad(v) else round(v, 3) for v in rec["q_fidelity"]]
            monitor.warn(f"class drift at step {state.step}: the teacher finds the samples of "
                         f"{', '.join(repr(c) for c in rec['q_drifted_classes'])} much less typical of their class "
                         f"than real images (fidelity {fid} below {self.drift_threshold})", state.progress)


def teacher_info(run: str | Path) -> dict[str, Any] | None:
    """``OUT/teacher/teacher.json`` of a run (the teacher's own validation numbers), if any."""
    from medgan.classify.teacher import INFO, TEACHER_DIR

    p = Path(run) / TEACHER_DIR / INFO
    return json.loads(p.read_text()) if p.is_file() else None
