"""Sample quality of a synthetic set against the real splits, in the eyes of the teacher (:mod:`medgan.classify.teacher`):
no downloaded network weights.

The feature space is the teacher's (its members' penultimate features side by side): the same ensemble that
quality tracking measured the run with (reused from the run folder when the data and settings match), so the
per-class numbers here and in the run's ``metrics.jsonl`` are computed by one function
(:func:`medgan.classify.yardstick.class_quality`) and agree for the same images.

* per class: Fréchet distance (``fd``) and kernel distance (``kid``) between the synthetic images and the real
  validation images, ``fd_norm`` over the real floor (real training vs validation images); **fidelity**, the
  teacher's mean probability of the class on its synthetic images over the same on its real validation images
  (about 1 is right; well above 1, caricatures), ``None`` with ``fidelity_not_measurable`` (the reason) where the
  teacher does not recognise the class on real validation images; the pixel diversity ratio (synthetic over real
  training images); precision / recall / density / coverage (k = 5, against the real training images, floor:
  real test vs real training images); the share the teacher assigns to the class;
* overall: Fréchet and kernel distance against the real training images, beside the floor (real test vs real
  training images);
* train-on-synthetic / test-on-real (TSTR): the teacher's own recipe fitted on the synthetic images alone
  (selected on real validation), tested on the real test split beside the teacher itself (TRTR).

In a scarcity simulation the per-class measures can also be taken by an **oracle** teacher (:func:`oracle_quality`):
the same recipe fitted on the full training split before scarcity, labelled "oracle (measuring only)" and never
used for filtering, labels or choices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.distances import frechet_distance, kernel_distance, prdc

if TYPE_CHECKING:
    from medgan.classify.yardstick import Yardstick
    from medgan.config import DataConfig, TeacherConfig
    from medgan.data.preprocess import TensorData


def teacher_summary(ys: Yardstick, source: str) -> dict[str, Any]:
    """What the report says about the teacher: its recipe, where it came from, its validation numbers."""
    i = ys.teacher.info
    return {"recipe": i["recipe"], "source": source, "val_balanced_accuracy": i["val_balanced_accuracy"],
            "val_auroc": i.get("val_auroc"),
            "target_specificity": i["target_specificity"], "min_sensitivity": i["min_sensitivity"],
            "per_class": i["per_class"], "members": i["members"]}


def sample_quality(ys: Yardstick, td: TensorData, syn_x: torch.Tensor, syn_y: torch.Tensor, *,
                   settings: TeacherConfig, device, source: str = "fitted", k: int = 5) -> dict[str, Any]:
    """All sample-quality numbers of one synthetic set against the real splits (see the module docstring)."""
    from sklearn.metrics import balanced_accuracy_score

    from medgan.classify.teacher import fit_teacher
    from medgan.classify.yardstick import class_quality

    teacher = ys.teacher
    names = list(td.data.class_names)
    f_train, _ = teacher.features_and_proba(td.x["train"])
    f_test, p_test = teacher.features_and_proba(td.x["test"])
    f_syn, p_syn = teacher.features_and_proba(syn_x)
    y_train, y_test, y_syn = td.y["train"].numpy(), td.y["test"].numpy(), syn_y.numpy()
    cq = class_quality(ys, syn_x, syn_y)

    out: dict[str, Any] = {
        "teacher": teacher_summary(ys, source),
        "feature_space": f"the teacher's features ({f_train.shape[1]}: the penultimate layers of "
                         f"{len(teacher.members)} small CNNs side by side)",
        "n_synthetic": int(len(syn_y)),
        "frechet": {"synthetic_vs_train": frechet_distance(f_train, f_syn),
                    "floor_test_vs_train": frechet_distance(f_train, f_test)},
        "kid": {"synthetic_vs_train": kernel_distance(f_train, f_syn),
                "floor_test_vs_train": kernel_distance(f_train, f_test)},
        "per_class": {},
    }
    pred_syn, pred_test = p_syn.argmax(1), p_test.argmax(1)
    out["synthetic_accuracy"] = float((pred_syn == y_syn).mean()) if len(y_syn) else float("nan")
    for c, name in enumerate(names):
        rs_, ss_ = y_train == c, y_syn == c
        out["per_class"][name] = {
            "n_real_train": int(rs_.sum()), "n_synthetic": int(ss_.sum()),
            "fd": cq["fd"][c], "fd_floor": ys.fd_floor[c], "fd_norm": cq["fd_norm"][c], "kid": cq["kid"][c],
            "fidelity": cq["fidelity"][c], "fidelity_not_measurable": cq["fidelity_reason"][c],
            "p_synthetic": cq["p_synthetic"][c], "p_real": cq["p_real"][c], "sensitivity": cq["sensitivity"][c],
            "diversity_ratio": cq["diversity_ratio"][c],
            "diversity": {"synthetic": cq["diversity"][c], "real": ys.real_diversity[c]},
            "prdc": prdc(f_train[rs_], f_syn[ss_], k),
            "prdc_floor_test_vs_train": prdc(f_train[rs_], f_test[y_test == c], k),
            "synthetic_accuracy": float((pred_syn[ss_] == c).mean()) if ss_.any() else None,
        }

    # train on synthetic, test on real: the teacher's recipe on the synthetic images alone (selected on real val)
    if len(np.unique(y_syn)) == len(names):
        tstr = fit_teacher(syn_x, syn_y, td.x["val"], td.y["val"], len(names), settings, device, names)
        p = tstr.predict_proba(td.x["test"]).argmax(1).numpy()
        out["tstr"] = {"accuracy": float((p == y_test).mean()),
                       "balanced_accuracy": float(balanced_accuracy_score(y_test, p)),
                       "trtr_accuracy": float((pred_test == y_test).mean()),
                       "trtr_balanced_accuracy": float(balanced_accuracy_score(y_test, pred_test))}
    else:
        out["tstr"] = None
    return out


def _run_folder(pool_provenance: dict[str, Any]) -> Path | None:
    """The training run behind the synthetic pool (a checkpoint in ``RUN/checkpoints/``, or the checkpoint an
    augment folder records), where its teacher may be cached."""
    import json

    prov = pool_provenance or {}
    ck = prov.get("path") if prov.get("kind") == "checkpoint" else None
    if prov.get("kind") == "folder" and prov.get("path"):
        folder = Path(str(prov["path"]))
        info = (folder if folder.is_dir() else folder.parent) / "augment.json"
        try:
            ck = json.loads(info.read_text()).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            ck = None
    if not ck:
        return None
    p = Path(str(ck)).parent
    return p.parent if p.name == "checkpoints" else p


def evaluation_teacher(settings: TeacherConfig, td: TensorData, device: torch.device,
                       pool_provenance: dict[str, Any] | None, out_dir: Path | None,
                       say: Callable[[str], None]) -> tuple[Yardstick, str]:
    """The teacher of an evaluation and where it came from: the training run's (``RUN/teacher/``) when it was
    fitted on exactly these real images with these settings, else this report folder's (a re-run), else one fitted
    now with the same function (and cached in the report folder)."""
    from medgan.classify.teacher import TEACHER_DIR, fit_teacher, load_teacher, save_teacher
    from medgan.classify.yardstick import yardstick

    names = list(td.data.class_names)
    args = (td.x["train"], td.y["train"], td.x["val"], td.y["val"], len(names), settings, device, names)
    teacher, source = None, ""
    run = _run_folder(pool_provenance or {})
    if run is not None and (run / TEACHER_DIR).is_dir():
        teacher = load_teacher(run / TEACHER_DIR, *args)
        if teacher is not None:
            source = f"reused from the training run ({run / TEACHER_DIR})"
        else:
            say(f"the teacher in {run / TEACHER_DIR} was fitted on other images or with other teacher settings; "
                "fitting one for this evaluation")
    if teacher is None and out_dir is not None:
        teacher = load_teacher(out_dir / TEACHER_DIR, *args)
        source = f"reused from {out_dir / TEACHER_DIR}" if teacher is not None else ""
    if teacher is None:
        say(f"fitting the teacher ({settings.members} small CNNs, classical augmentation + class-balanced batches) "
            "on the real training split")
        teacher = fit_teacher(*args)
        source = "fitted by this evaluation on the real training split"
        if out_dir is not None:
            save_teacher(out_dir / TEACHER_DIR, teacher)
    return yardstick(teacher, td.x["train"], td.y["train"], td.x["val"], td.y["val"]), source


#: What an evaluation caches of its own teacher in its report folder (checked before work).
TEACHER_FILES = ("teacher", "teacher/teacher.pt", "teacher/teacher.json")


# ------------------------------------------------------------------------------------------ the oracle teacher

#: Where an evaluation caches its oracle teacher (``OUT/oracle_teacher/``), and the files it writes there.
ORACLE_DIR = "oracle_teacher"
ORACLE_FILES = (ORACLE_DIR, f"{ORACLE_DIR}/teacher.pt", f"{ORACLE_DIR}/teacher.json")
ORACLE_LABEL = "oracle (measuring only)"
#: ``evaluate.oracle_teacher: auto`` fits the oracle when its training split is at most this many times the scarce
#: one (its cost grows with its training images: at most about this many times the teacher's).
ORACLE_AUTO_MAX_GROWTH = 2.0


def oracle_decision(mode: str, scarcity: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether an evaluation measures quality with the oracle teacher too (``evaluate.oracle_teacher``), and why:
    ``on`` needs a scarcity simulation (without one the teacher already sees every training image); ``auto`` is on
    in a scarcity simulation whose full training split is at most :data:`ORACLE_AUTO_MAX_GROWTH` times the scarce
    one."""
    from medgan.errors import EvaluationError

    if mode == "off":
        return False, "evaluate.oracle_teacher is off"
    if not scarcity:
        if mode == "on":
            raise EvaluationError("evaluate.oracle_teacher: on needs a scarcity simulation (--scarce CLASS=FRACTION): "
                                  "without one the teacher already sees every training image; use auto or off")
        return False, "not a scarcity simulation: the teacher already sees every training image"
    full, kept = sum(scarcity.get("original_counts", [])), sum(scarcity.get("counts", []))
    growth = full / kept if kept else float("inf")
    if mode == "on":
        return True, "evaluate.oracle_teacher is on"
    if growth <= ORACLE_AUTO_MAX_GROWTH:
        return True, (f"a scarcity simulation whose full training split ({full} images) is {growth:.2f}x the scarce "
                      f"one: the oracle costs about that many times the teacher")
    return False, (f"the full training split ({full} images) is {growth:.1f}x the scarce one (auto fits the oracle up "
                   f"to {ORACLE_AUTO_MAX_GROWTH:g}x); set evaluate.oracle_teacher: on to fit it anyway")


def oracle_quality(settings: TeacherConfig, d: DataConfig, td: TensorData, syn_x: torch.Tensor, syn_y: torch.Tensor,
                   device, out_dir: Path | None, why: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Sample quality in the eyes of an **oracle** teacher: the teacher's recipe (``settings``) fitted on the full
    training split *before* scarcity (the held-back images included), selected and calibrated on the evaluation's
    own validation split; never the test split. For measuring only: it filters nothing, labels nothing and chooses
    nothing. Cached in ``out_dir/oracle_teacher/`` (its data fingerprint differs from the teacher's). Per class the
    measures of :func:`medgan.classify.yardstick.class_quality`, with the real floors and diversity taken from the
    full training split. ``d``: the evaluation's data settings (the dataset is loaded again without ``d.scarce``;
    the validation split stays the evaluation's own)."""
    from medgan.classify.teacher import fit_teacher, load_teacher, save_teacher
    from medgan.classify.yardstick import class_quality, yardstick
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    data = td.data
    full = load_dataset(d.dataset, d.data_dir, d.split_seed, d.download)  # the same split, before scarcity
    otd = prepare(data.with_train(full.splits["train"], None), td.size)
    names = list(data.class_names)
    args = (otd.x["train"], otd.y["train"], otd.x["val"], otd.y["val"], len(names), settings, device, names)
    folder = out_dir / ORACLE_DIR if out_dir is not None else None
    teacher = load_teacher(folder, *args) if folder is not None else None
    if teacher is not None:
        source = f"reused from {folder}"
    else:
        say(f"fitting the oracle teacher (measuring only) on the full training split before scarcity "
            f"({len(otd.y['train'])} images, {len(otd.y['train']) - len(td.y['train'])} of them held back from "
            "every arm)")
        teacher = fit_teacher(*args)
        source = "fitted by this evaluation on the full training split before scarcity"
        if folder is not None:
            save_teacher(folder, teacher)
    ys = yardstick(teacher, otd.x["train"], otd.y["train"], otd.x["val"], otd.y["val"])
    f_train, _ = teacher.features_and_proba(otd.x["train"])
    f_syn, p_syn = teacher.features_and_proba(syn_x)
    y_syn = syn_y.numpy()
    cq = class_quality(ys, syn_x, syn_y)
    per_class = {}
    for c, name in enumerate(names):
        sel = y_syn == c
        per_class[name] = {
            "n_real_train": int((otd.y["train"] == c).sum()), "n_synthetic": int(sel.sum()),
            "fd": cq["fd"][c], "fd_floor": ys.fd_floor[c], "fd_norm": cq["fd_norm"][c], "kid": cq["kid"][c],
            "fidelity": cq["fidelity"][c], "fidelity_not_measurable": cq["fidelity_reason"][c],
            "p_synthetic": cq["p_synthetic"][c], "p_real": cq["p_real"][c], "sensitivity": cq["sensitivity"][c],
            "diversity_ratio": cq["diversity_ratio"][c],
            "synthetic_accuracy": float((p_syn[sel].argmax(1) == c).mean()) if sel.any() else None}
    return {"label": ORACLE_LABEL, "why": why,
            "note": "fitted on the full training split before scarcity (the held-back real images included), "
                    "selected on the real validation split, never on test; it measures only and is never used for "
                    "filtering, labels or choices",
            "n_train": int(len(otd.y["train"])), "n_held_back": int(len(otd.y["train"]) - len(td.y["train"])),
            "teacher": teacher_summary(ys, source),
            "frechet_synthetic_vs_train": frechet_distance(f_train, f_syn),
            "synthetic_accuracy": float((p_syn.argmax(1) == y_syn).mean()) if len(y_syn) else float("nan"),
            "per_class": per_class}
