"""The teacher: medgan's one yardstick and judge of synthetic images.

An ensemble of small CNNs (``teacher.members``, seeds ``0..members-1``, trained together as one stacked network:
:func:`medgan.classify.fit.fit_group`) fitted on the user's real training split with the strongest conventional
recipe, the one of evaluate's ``classical+oversample`` arm: classical augmentation of every batch
(:mod:`medgan.classify.augment`, ``teacher.classical``) and class-balanced batches, Adam, ``ceil(N / batch)`` steps
per epoch; each member keeps the weights with the best real-validation score (``teacher.select``). It sees exactly
the data the user has: in a scarcity simulation the scarce training split, never the held-back images, never test.

Its probabilities are the members' mean softmax; its features are the members' penultimate features side by side.
Per class ``c`` it has an **operating point** chosen on the real validation images: the threshold on ``p(c)``
(one versus the rest) at ``teacher.target_specificity`` (:func:`medgan.classify.thresholds.threshold_at_specificity`),
and the sensitivity it reaches there. A class whose sensitivity is below ``teacher.min_sensitivity`` is one the
teacher does not recognise, and whatever it says about synthetic images of that class is not evidence: their
fidelity is *not measurable* (:mod:`medgan.classify.yardstick`).

Quality tracking during training (:mod:`medgan.training.tracking`), ``best.pt``, evaluate's quality section and
sample filtering all use it. It is fitted once per data (the SHA-256 of the training and validation tensors and
labels) and settings, and cached in a folder (``OUT/teacher/`` of a training run: ``teacher.pt``, its weights;
``teacher.json``, its own validation numbers per class), so ``--resume`` and a later ``evaluate`` of the run reuse
it. Fitting it never moves the global random generators (their state is restored).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from medgan.config import TeacherConfig

TEACHER_DIR = "teacher"
WEIGHTS = "teacher.pt"
INFO = "teacher.json"
CLASSIFIER = "smallcnn"
#: Memory budget of one stacked group of members (as evaluate's default ``group_memory_gb``).
GROUP_MEMORY = 3 * 2**30


def data_key(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor) -> str:
    """SHA-256 of the exact training and validation tensors and labels the teacher is fitted and selected on."""
    h = hashlib.sha256()
    for t in (train_x, train_y, val_x, val_y):
        a = t.detach().cpu().contiguous().numpy()
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Teacher:
    """The fitted ensemble with its operating points (module docstring)."""

    members: list[torch.nn.Module]
    device: torch.device
    thresholds: list[float]
    """Per class: the threshold on ``p(c)`` at the target specificity on validation (``inf``: none)."""
    info: dict[str, Any] = field(default_factory=dict)
    """What ``teacher.json`` holds: key, settings, per-class validation numbers, timing."""

    @property
    def num_classes(self) -> int:
        return int(self.members[0].num_classes)

    @torch.no_grad()
    def features_and_proba(self, x: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(N, members x F)`` and class probabilities ``(N, K)`` (the members' mean softmax) of ``x``
        in one pass, as float64 arrays."""
        feats, probs = [], []
        for m in self.members:
            m.eval()
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].to(self.device)
            fs, ps = [], []
            for m in self.members:
                f = m.features(xb).float()
                fs.append(f.cpu())
                ps.append(F.softmax(m.head(f).float(), 1).cpu())
            feats.append(torch.cat(fs, 1))
            probs.append(torch.stack(ps).mean(0))
        if not feats:
            k = self.num_classes
            return np.zeros((0, sum(m.feature_dim for m in self.members))), np.zeros((0, k))
        return torch.cat(feats).double().numpy(), torch.cat(probs).double().numpy()

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, K)`` (CPU, float32)."""
        return torch.from_numpy(self.features_and_proba(x)[1]).float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, members x F)`` (CPU, float32)."""
        return torch.from_numpy(self.features_and_proba(x)[0]).float()

    def per_class(self) -> list[dict[str, Any]]:
        """Its validation numbers per class (``teacher.json``)."""
        return self.info["per_class"]


def _key(settings: TeacherConfig, data: str, shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    return {"data": data, "shape": list(shape), "num_classes": int(num_classes), "classifier": CLASSIFIER,
            "settings": settings.model_dump(mode="json")}


def fit_teacher(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                num_classes: int, settings: TeacherConfig, device: torch.device | str = "cpu",
                class_names: list[str] | None = None) -> Teacher:
    """Fit the teacher (module docstring) on ``train_*``, selecting each member's weights on ``val_*``."""
    from medgan.classify.augment import classical_augment
    from medgan.classify.fit import Member, Protocol, fit_group
    from medgan.classify.group import group_size
    from medgan.classify.nets import build_classifier
    from medgan.runtime import global_rng_state, set_global_rng_state

    device = torch.device(device)
    t0, c0 = time.perf_counter(), time.process_time()
    dims = train_x.ndim - 2
    steps = max(1, math.ceil(len(train_y) / settings.batch_size))
    protocol = Protocol(CLASSIFIER, settings.epochs, settings.patience, settings.batch_size, settings.lr, steps,
                        settings.select, settings.min_epochs, settings.amp, True)
    members = [Member(s, train_x, train_y, balanced=True,
                      batch_transform=classical_augment(settings.classical, dims, torch.Generator().manual_seed(s + 7919)))
               for s in range(settings.members)]
    saved = global_rng_state()
    try:
        probe = build_classifier(CLASSIFIER, dims, train_x.shape[1], num_classes)
        g = group_size(probe, tuple(train_x.shape[1:]), settings.batch_size, len(members), GROUP_MEMORY)
        results = [r for i in range(0, len(members), g)
                   for r in fit_group(members[i:i + g], protocol, val_x, val_y, num_classes, device)]
    finally:
        set_global_rng_state(saved)
    teacher = Teacher([r.model for r in results], device, [])
    info = {"key": _key(settings, data_key(train_x, train_y, val_x, val_y), tuple(train_x.shape[1:]), num_classes),
            "recipe": f"{settings.members} x {CLASSIFIER}, classical augmentation ({settings.classical}) + "
                      f"class-balanced batches, weights chosen on real validation {settings.select}",
            "members": [{"seed": m.seed, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                         "val_balanced_accuracy": r.val_balanced_accuracy, "val_auroc": r.val_auroc}
                        for m, r in zip(members, results, strict=True)],
            "n_train": int(len(train_y)), "seconds": round(time.perf_counter() - t0, 2),
            "fit": {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                    "threads": torch.get_num_threads(), "device": str(device),
                    "precision": sorted({r.precision for r in results}),
                    "steps": steps * max(r.epochs_run for r in results), "steps_per_epoch": steps}}
    return _calibrate(teacher, val_x, val_y, settings, info, class_names)


def _calibrate(teacher: Teacher, val_x: torch.Tensor, val_y: torch.Tensor, settings: TeacherConfig,
               info: dict[str, Any], class_names: list[str] | None) -> Teacher:
    """The operating points and per-class validation numbers of a fitted (or loaded) teacher."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from medgan.classify.fit import validation_scores
    from medgan.classify.thresholds import threshold_at_specificity

    k = teacher.num_classes
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    _, prob = teacher.features_and_proba(val_x)
    y = val_y.numpy()
    per_class, thresholds = [], []
    for c in range(k):
        pos = y == c
        rec: dict[str, Any] = {"class": names[c], "n_val": int(pos.sum()), "threshold": None, "sensitivity": None,
                               "specificity": None, "p_real": None, "auroc": None, "measurable": False,
                               "reason": None}
        if not pos.any():
            rec["reason"] = "no real validation images of this class"
        elif pos.all():
            rec["reason"] = "no real validation images of other classes to set an operating point against"
        else:
            t = threshold_at_specificity(pos, prob[:, c], settings.target_specificity)
            called = prob[:, c] >= t
            sens = float(called[pos].mean())
            rec.update(threshold=t if math.isfinite(t) else None, sensitivity=sens,
                       specificity=float((~called[~pos]).mean()), p_real=float(prob[pos, c].mean()),
                       auroc=float(roc_auc_score(pos, prob[:, c])))
            if sens >= settings.min_sensitivity:
                rec["measurable"] = True
            else:
                rec["reason"] = (f"the teacher recognises only {sens:.0%} of this class's real validation images at "
                                 f"{settings.target_specificity:.0%} specificity (below "
                                 f"{settings.min_sensitivity:.0%}), so it cannot judge synthetic ones")
        thresholds.append(rec["threshold"] if rec["threshold"] is not None else float("inf"))
        per_class.append(rec)
    teacher.thresholds = thresholds
    bal = float(balanced_accuracy_score(y, prob.argmax(1))) if len(y) else float("nan")
    auroc = validation_scores(torch.from_numpy(prob), val_y)["auroc"] if len(y) else float("nan")
    teacher.info = {**info, "target_specificity": settings.target_specificity,
                    "min_sensitivity": settings.min_sensitivity, "val_balanced_accuracy": bal, "val_auroc": auroc,
                    "per_class": per_class}
    return teacher


def save_teacher(folder: Path, teacher: Teacher) -> None:
    """``folder/teacher.pt`` (the members' weights and the key) and ``folder/teacher.json`` (its numbers), each
    written atomically (inside a medgan output folder, recorded as medgan's own)."""
    from medgan.io import atomic_write, write_json

    states = [{k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()} for m in teacher.members]
    payload = {"key": json.dumps(teacher.info["key"], sort_keys=True), "members": states,
               "in_channels": int(_in_channels(teacher.members[0])), "spatial_dims": _spatial_dims(teacher.members[0])}
    atomic_write(folder / WEIGHTS, lambda f: torch.save(payload, f))
    write_json(folder / INFO, teacher.info)


def _in_channels(model: torch.nn.Module) -> int:
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    return conv.in_channels


def _spatial_dims(model: torch.nn.Module) -> int:
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    return len(conv.kernel_size)


def load_teacher(folder: Path, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                 val_y: torch.Tensor, num_classes: int, settings: TeacherConfig, device: torch.device | str = "cpu",
                 class_names: list[str] | None = None) -> Teacher | None:
    """The teacher cached in ``folder`` when it was fitted on exactly these images with these settings, else
    ``None`` (also for an unreadable cache: it is fitted again)."""
    from medgan.classify.nets import build_classifier

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        info = json.loads((Path(folder) / INFO).read_text())
    except Exception:  # noqa: BLE001 - unreadable or damaged (torch raises several kinds): fitted again
        return None
    key = _key(settings, data_key(train_x, train_y, val_x, val_y), tuple(train_x.shape[1:]), num_classes)
    if not isinstance(cached, dict) or cached.get("key") != json.dumps(key, sort_keys=True):
        return None
    device = torch.device(device)
    members = []
    for state in cached["members"]:
        m = build_classifier(CLASSIFIER, train_x.ndim - 2, train_x.shape[1], num_classes)
        m.load_state_dict(state)
        members.append(m.to(device).eval())
    teacher = Teacher(members, device, [])
    keep = {k: info[k] for k in ("recipe", "members", "n_train", "seconds", "fit") if k in info}
    teacher = _calibrate(teacher, val_x, val_y, settings, {"key": key, **keep}, class_names)
    teacher.info["cached"] = True
    return teacher


def load_or_fit_teacher(folder: Path | None, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                        val_y: torch.Tensor, num_classes: int, settings: TeacherConfig,
                        device: torch.device | str = "cpu", class_names: list[str] | None = None,
                        save: bool = True) -> Teacher:
    """The teacher cached in ``folder`` (:func:`load_teacher`), else one fitted now (and, with ``save``, cached
    there)."""
    if folder is not None:
        t = load_teacher(folder, train_x, train_y, val_x, val_y, num_classes, settings, device, class_names)
        if t is not None:
            return t
    t = fit_teacher(train_x, train_y, val_x, val_y, num_classes, settings, device, class_names)
    t.info["cached"] = False
    if folder is not None and save:
        save_teacher(Path(folder), t)
    return t
