"""Quality tracked while the GAN trains (as StyleGAN2-ADA's metric snapshots, with StudioGAN's per-class view).

At the start of a run, a **domain feature network** is trained once on the real training split
(:func:`medgan.classify.features.reference_classifier`'s network: the class-balanced small CNN, seed 0, a fixed
budget of :data:`FEATURE_STEPS` steps, kept by validation balanced accuracy; deterministic, nothing downloaded). It
is cached in ``OUT/tracking/feature_net.pt`` (with the fingerprint of the training images), so ``--resume`` does
not retrain it; its own numbers go to ``OUT/tracking/reference.json``. Training it never touches the GAN's
random streams (the global RNG state is restored), so a run with tracking trains the same weights as one without.

Then every ``train.eval_every`` steps and at the end, the EMA generator draws ``train.eval_samples`` images per
class from fixed noise, and per class ``c``:

* ``q_fd``: Fréchet distance between the synthetic images of ``c`` and the real **validation** images of ``c``
  in the network's penultimate features (validation images: neither the GAN nor the network trained on them);
  ``q_fd_norm`` = ``q_fd`` / the real floor, the same distance between the real *training* and validation images
  of ``c`` (1: as far from the validation images as the real training images are);
* ``q_kid``: the kernel distance (KID) on the same sets;
* ``q_fidelity``: the share of synthetic images of ``c`` that the network assigns to ``c`` (``q_share``),
  divided by the network's sensitivity for ``c`` on the real validation images (``q_sensitivity``, the
  denominator; constant over the run). Unstable where that sensitivity is low: below :data:`MIN_SENSITIVITY`
  fidelity is reported but enters neither the score nor the drift alarm;
* ``q_diversity_ratio``: within-class diversity (mean pairwise RMS distance in pixel space, as the collapse alarm)
  of the synthetic images over that of (up to as many) real training images of ``c``.

These go to ``metrics.jsonl`` (lists, one value per class), TensorBoard (``q_fd/class_0``, ...) and
``curves.png``. Alarm: ``q_drifted_classes`` (fidelity below ``train.drift_threshold`` where the denominator is
reliable and the class is fully phased in), with a warning in ``train.log``. Mode collapse has one alarm, the
collapse check (:class:`medgan.training.hooks.CollapseCheck`, every ``train.collapse_every`` steps, with or without
tracking and validation images); ``q_diversity_ratio`` here is a term of the score, not a second alarm.

**The score and ``best.pt``** (lower is better; :func:`quality_score`)::

    score = mean over classes c of [ q_fd_norm(c)
                                     + 4 * max(0, 0.9 - q_fidelity(c))            (only if q_sensitivity(c) >= 0.5)
                                     + 4 * max(0, 0.8 - q_div(c), q_div(c) - 1.2) ]

The normalised Fréchet distance is the backbone (1 = the real floor); a class that drifts (fidelity under 0.9) or
collapses or over-disperses (diversity ratio outside [0.8, 1.2]) pays 4 per unit of shortfall, so a fidelity of
0.65 costs as much as one floor of Fréchet distance. Classes without a finite distance (fewer than 2 validation
images) are left out. ``checkpoints/best.pt`` is written whenever the score improves on the best so far, once the
transitional conditioning schedule (if any) has reached 1; it is a full checkpoint plus a ``quality`` record (the
measurements, score, step). The best score so far travels in every checkpoint (``state.tracking``), so a resumed
run keeps choosing against it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.distances import frechet_distance, kernel_distance, within_class_diversity
from medgan.runtime import derive_seed, global_rng_state, set_global_rng_state
from medgan.training import monitor
from medgan.training.hooks import Hook, RunState

if TYPE_CHECKING:
    from medgan.training.trainer import Trainer

log = logging.getLogger("medgan.train")

TRACK_DIR = "tracking"
FEATURE_NET = "feature_net.pt"
REFERENCE = "reference.json"
#: The feature network's budget, by spatial dims: optimisation steps in all (batch 32, Adam 3e-3, class-balanced
#: batches), scored on the validation split every :data:`FEATURE_EVAL_EVERY` steps; the weights with the best
#: balanced accuracy are kept (class fidelity reads its arg-max). Sized so that tracking stays within 5% of a
#: default run's time (docs/training.md, quality tracking); 3D steps cost about 10x 2D ones.
FEATURE_STEPS = {2: 300, 3: 120}
FEATURE_EVAL_EVERY = 20
FEATURE_BATCH = 32
FEATURE_LR = 3e-3
#: Below this validation sensitivity the network cannot vouch for a class: its fidelity is reported only.
MIN_SENSITIVITY = 0.5
FIDELITY_TARGET = 0.9
DIVERSITY_BAND = (0.8, 1.2)
PENALTY = 4.0


def quality_score(fd_norm: list[float], fidelity: list[float], sensitivity: list[float],
                  diversity_ratio: list[float]) -> float:
    """The tracked quality score (lower is better; see the module docstring); ``nan`` when no class has a finite
    normalised Fréchet distance."""
    terms = []
    for fd, fid, sens, div in zip(fd_norm, fidelity, sensitivity, diversity_ratio, strict=True):
        if not math.isfinite(fd):
            continue
        t = fd
        if math.isfinite(fid) and sens >= MIN_SENSITIVITY:
            t += PENALTY * max(0.0, FIDELITY_TARGET - fid)
        if math.isfinite(div):
            t += PENALTY * max(0.0, DIVERSITY_BAND[0] - div, div - DIVERSITY_BAND[1])
        terms.append(t)
    return float(np.mean(terms)) if terms else float("nan")


@dataclass
class Reference:
    """The fixed yardstick of a run: the feature network and what the real images give in it."""

    net: torch.nn.Module
    val_features: list[np.ndarray]
    """Per class: features of the real validation images."""
    sensitivity: list[float]
    fd_floor: list[float]
    kid_floor: list[float]
    real_diversity: list[float]
    info: dict[str, Any]


def _features_and_logits(net: torch.nn.Module, x: torch.Tensor, device: torch.device,
                         batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and class logits of ``x`` in one pass (``Classifier.forward`` is ``head(features)``
    in eval mode)."""
    fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
    feats, logits = [], []
    net.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            f = net.features(x[i:i + batch].to(device).contiguous(memory_format=fmt)).float()
            feats.append(f.cpu())
            logits.append(net.head(f).float().cpu())
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def _train_feature_net(trainer: Trainer) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The domain feature network (module docstring), trained without disturbing the run's random streams."""
    from medgan.classify.features import feature_network

    td = trainer.tdata
    saved = global_rng_state()
    t0 = time.perf_counter()
    try:
        res = feature_network(td.x["train"], td.y["train"], td.x["val"], td.y["val"], num_classes=trainer.num_classes,
                              steps=FEATURE_STEPS[trainer.spatial_dims], eval_every=FEATURE_EVAL_EVERY,
                              batch_size=FEATURE_BATCH,
                              lr=FEATURE_LR, device=trainer.device)
    finally:
        set_global_rng_state(saved)
    info = {"classifier": "smallcnn", "steps": res.epochs_run * FEATURE_EVAL_EVERY,
            "best_step": res.best_epoch * FEATURE_EVAL_EVERY, "val_balanced_accuracy": res.val_balanced_accuracy,
            "seconds": round(time.perf_counter() - t0, 2)}
    return res.model, info


def load_or_train_reference(trainer: Trainer, folder: Path, n_per_class: int) -> Reference:
    """The run's :class:`Reference`: the feature network from ``folder`` when it was trained on these very images
    (same training-set fingerprint and size), else trained now and saved there."""
    from medgan.classify.nets import build_classifier

    td = trainer.tdata
    key = {"train_fingerprint": td.meta().get("train_fingerprint"), "size": td.size,
           "feature_steps": FEATURE_STEPS[trainer.spatial_dims], "feature_lr": FEATURE_LR}
    path = folder / FEATURE_NET
    cached = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    if cached is not None and cached.get("key") == key:
        net = build_classifier("smallcnn", trainer.spatial_dims, td.x["train"].shape[1], trainer.num_classes)
        net.load_state_dict(cached["state_dict"])
        net = net.to(trainer.device, memory_format=torch.channels_last if trainer.spatial_dims == 2
                     else torch.channels_last_3d)
        info = dict(cached["info"], cached=True)
    else:
        from medgan.io import atomic_write

        net, info = _train_feature_net(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        atomic_write(path, lambda f: torch.save({"key": key, "state_dict": state, "info": info}, f))
    return _reference(trainer, net, info, n_per_class, folder)


def _reference(trainer: Trainer, net: torch.nn.Module, info: dict[str, Any], n_per_class: int,
               folder: Path) -> Reference:
    td, k = trainer.tdata, trainer.num_classes
    f_tr, _ = _features_and_logits(net, td.x["train"], trainer.device)
    f_va, l_va = _features_and_logits(net, td.x["val"], trainer.device)
    y_tr, y_va = td.y["train"].numpy(), td.y["val"].numpy()
    pred = l_va.argmax(1)
    sens = [float((pred[y_va == c] == c).mean()) if (y_va == c).any() else float("nan") for c in range(k)]
    val = [f_va[y_va == c] for c in range(k)]
    fd_floor = [_fd(f_tr[y_tr == c], val[c]) for c in range(k)]
    kid_floor = [_kid(f_tr[y_tr == c], val[c]) for c in range(k)]
    g = torch.Generator().manual_seed(derive_seed(trainer.cfg.train.seed, 15485867))
    real_div = within_class_diversity(td.x["train"], td.y["train"], k, max_per_class=n_per_class, generator=g)
    info = {**info, "class_names": trainer.class_names, "val_sensitivity": sens, "fd_floor": fd_floor,
            "kid_floor": kid_floor, "real_diversity": real_div, "n_val": [len(v) for v in val],
            "feature_dim": int(f_tr.shape[1])}
    from medgan.io import write_json

    write_json(folder / REFERENCE, info)
    return Reference(net, val, sens, fd_floor, kid_floor, real_div, info)


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else float("nan")


def _kid(a: np.ndarray, b: np.ndarray) -> float:
    return kernel_distance(a, b)["mean"] if len(a) >= 2 and len(b) >= 2 else float("nan")


class QualityTracker:
    """Measures the generator against a :class:`Reference` from fixed noise (``n_per_class`` per class)."""

    def __init__(self, ref: Reference, num_classes: int, latent_dim: int, n_per_class: int, seed: int,
                 device: torch.device) -> None:
        self.ref = ref
        self.num_classes = num_classes
        self.device = device
        g = torch.Generator().manual_seed(derive_seed(seed, 7919))
        self.y = torch.arange(num_classes).repeat_interleave(n_per_class)
        self.z = torch.randn(len(self.y), latent_dim, generator=g)
        self.n_per_class = n_per_class

    def measure(self, sample) -> dict[str, Any]:
        """The per-class measurements (``q_*`` lists, module docstring) of ``sample(z, y)`` (images in [-1, 1])."""
        ref, k = self.ref, self.num_classes
        x = sample(self.z, self.y)
        feats, logits = _features_and_logits(ref.net, x, self.device)
        pred, y = logits.argmax(1), self.y.numpy()
        div = within_class_diversity(x, self.y, k, max_per_class=self.n_per_class)
        fd = [_fd(feats[y == c], ref.val_features[c]) for c in range(k)]
        share = [float((pred[y == c] == c).mean()) for c in range(k)]
        return {
            "q_fd": fd,
            "q_fd_norm": [f / fl if math.isfinite(fl) and fl > 0 else float("nan") for f, fl in zip(fd, ref.fd_floor,
                                                                                                   strict=True)],
            "q_kid": [_kid(feats[y == c], ref.val_features[c]) for c in range(k)],
            "q_fidelity": [s / se if se > 0 else float("nan") for s, se in zip(share, ref.sensitivity, strict=True)],
            "q_share": share,
            "q_sensitivity": ref.sensitivity,
            "q_diversity_ratio": [d / r if r > 0 else float("nan") for d, r in zip(div, ref.real_diversity,
                                                                                   strict=True)],
        }


def _rounded(rec: dict[str, Any]) -> dict[str, Any]:
    """Numbers (alone or in lists) to 5 decimals; everything else as it is."""
    def r(v):
        return round(v, 5) if isinstance(v, float) and math.isfinite(v) else v

    return {k: [r(v) for v in vals] if isinstance(vals, list) else r(vals) for k, vals in rec.items()}


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
        t0 = time.perf_counter()
        ref = load_or_train_reference(tr, state.out / TRACK_DIR, self.n_per_class)
        self.tracker = QualityTracker(ref, tr.num_classes, tr.latent_dim, self.n_per_class, state.cfg.train.seed,
                                      tr.device)
        self.seconds = time.perf_counter() - t0
        i = ref.info
        log.info("quality tracking: feature network %s (%d steps, validation balanced accuracy %.3f, sensitivity "
                 "per class %s), set up in %.1f s", "loaded" if i.get("cached") else "trained", i["steps"],
                 i["val_balanced_accuracy"], [round(s, 3) for s in ref.sensitivity], self.seconds)

    def due(self, state: RunState) -> bool:
        return self.tracker is not None and super().due(state)

    def __call__(self, state: RunState) -> None:
        t0 = time.perf_counter()
        tr, names = state.trainer, state.trainer.class_names
        rec = self.tracker.measure(tr.sample)
        rec["q_score"] = quality_score(rec["q_fd_norm"], rec["q_fidelity"], rec["q_sensitivity"],
                                       rec["q_diversity_ratio"])
        phased_in = tr.cond_scale(state.step) >= 1.0  # the weight the samples were drawn with
        best = state.tracking.get("best_score")
        if phased_in and math.isfinite(rec["q_score"]) and (best is None or rec["q_score"] < best):
            state.tracking = {"best_score": rec["q_score"], "best_step": state.step}
            state.save_best = {"step": state.step, **_rounded(rec)}
        rec["q_best_step"] = state.tracking.get("best_step")
        rec["q_drifted_classes"] = [n for n, f, s in zip(names, rec["q_fidelity"], rec["q_sensitivity"], strict=True)
                                    if phased_in and math.isfinite(f) and s >= MIN_SENSITIVITY
                                    and f < self.drift_threshold]
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
            monitor.warn(f"class drift at step {state.step}: the real-data classifier assigns too few samples of "
                         f"{', '.join(repr(c) for c in rec['q_drifted_classes'])} to their class (fidelity "
                         f"{[round(v, 3) for v in rec['q_fidelity']]} below {self.drift_threshold}; sensitivity "
                         f"{[round(v, 3) for v in rec['q_sensitivity']]})", state.progress)


def reference_info(run: str | Path) -> dict[str, Any] | None:
    """``OUT/tracking/reference.json`` of a run (the feature network's numbers), if any."""
    p = Path(run) / TRACK_DIR / REFERENCE
    return json.loads(p.read_text()) if p.is_file() else None
