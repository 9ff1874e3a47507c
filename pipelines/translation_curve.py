#!/usr/bin/env python3
"""The translation curve of latent translation on a trained run: anatomy kept against class change, per strength.

Real images of the other classes are translated into ``--target`` by
:class:`medgan.synthesis.inversion.LatentTranslator` (each schedule and residual share) and measured
with :func:`medgan.synthesis.translation_curve.translation_curve`: the share of translations nearest (pixel L2)
to their own source among up to ``--max-sources`` sources, the mean distance to the own source, and the run's
teacher's recognition of the target class at its validation operating point over its recognition of real
validation images of that class. Only the training and validation splits are read (never test); the sources are
the validation images of the other classes (``--sources val``, what the default strength is chosen on: images the
generator and the teacher never saw) and/or the training images (``train``, what ``augment --from-real``
translates).

The data the run was trained on must be named (``--dataset``/``--scarce``/``--split-seed``/``--data-dir``, checked
against the checkpoint's fingerprint); the teacher is the run's own (``RUN/teacher/``, fitted on exactly that
training split), fitted here (not saved) when absent.

Usage::

    .venv/bin/python pipelines/translation_curve.py --run /work/runs/breast50_default --dataset breastmnist \\
        --scarce 0=0.5 --target malignant --out docs/results/translation_curve_breast50.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

STRENGTHS = [0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def run_teacher(run: Path, td, ckpt_config: dict[str, Any], device: str = "cpu", **override: Any):
    """The run's teacher (fitted on exactly this training split), else one fitted now and not saved
    (``override``: teacher settings for that fit, e.g. fewer epochs in a smoke test)."""
    from medgan.classify.teacher import TEACHER_DIR, load_or_fit_teacher
    from medgan.config import TeacherConfig

    settings = TeacherConfig.model_validate({**(ckpt_config.get("teacher") or {}), **override})
    names = list(td.data.class_names)
    folder = run / TEACHER_DIR if (run / TEACHER_DIR).is_dir() else None
    return load_or_fit_teacher(folder, td.x["train"], td.y["train"], td.x["val"], td.y["val"], len(names), settings,
                               device, names, save=False)


def choose(curves: list[dict[str, Any]], split: str = "val") -> dict[str, Any]:
    """The default: on ``split`` sources, the smallest strength meeting both targets (ties: more anatomy kept);
    when none does, the point closest to both (largest ``min(anatomy / 0.8, relative recognition)``)."""
    from medgan.synthesis.translation_curve import meets_targets

    pts = [(c, p) for c in curves if c["sources"] == split for p in c["curve"]["points"] if p["strength"] > 0]
    ok = [(c, p) for c, p in pts if meets_targets(p)]
    if ok:
        c, p = min(ok, key=lambda cp: (cp[1]["strength"], -cp[1]["anatomy_kept"]))
        met = True
    else:
        c, p = max(pts, key=lambda cp: min(cp[1]["anatomy_kept"] / 0.8, cp[1]["relative_recognition"] or 0.0))
        met = False
    return {"sources": split, "schedule": c["schedule"], "residual": c["residual"], "strength": p["strength"],
            "targets_met": met, "point": p}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run folder (its best.pt, else last.pt) or checkpoint file")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--scarce", action="append", default=[])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--target", required=True, help="the class to translate into (name or index)")
    ap.add_argument("--strengths", default=",".join(map(str, STRENGTHS)))
    ap.add_argument("--schedules", default="uniform,late,ramp")
    ap.add_argument("--residual", default="0,1", help="residual shares to try (comma-separated, each in [0, 1])")
    ap.add_argument("--sources", default="val,train", help="val, train or both (comma-separated)")
    ap.add_argument("--max-sources", type=int, default=200)
    ap.add_argument("--steps", type=int, default=None, help="inversion steps (default: InversionSettings)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher-epochs", type=int, default=None, help="only for a run without its teacher (smoke tests)")
    ap.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "translation_curve.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dataclasses import asdict, replace

    from medgan.config import DataConfig
    from medgan.data.classes import class_index
    from medgan.synthesis.inversion import InversionSettings, Inverter, LatentTranslator
    from medgan.synthesis.near_copies import checkpoint_training_data
    from medgan.synthesis.sampler import Sampler
    from medgan.synthesis.translation_curve import translation_curve
    from medgan.training.checkpoint import resolve_checkpoint

    t_all = time.perf_counter()
    choice = resolve_checkpoint(args.run)
    run = choice.path.parent.parent if choice.path.parent.name == "checkpoints" else choice.path.parent
    sampler = Sampler.from_checkpoint(choice.path)
    data = DataConfig(dataset=args.dataset, scarce=args.scarce, split_seed=args.split_seed, data_dir=args.data_dir,
                      download=False)
    td = checkpoint_training_data({"config": sampler.config, "data": sampler.meta}, data, "translation curve")
    teacher = run_teacher(run, td, sampler.config, **({"epochs": args.teacher_epochs, "min_epochs": 0, "members": 2}
                                                       if args.teacher_epochs else {}))
    target = class_index(args.target, sampler.class_names)
    settings = InversionSettings() if args.steps is None else replace(InversionSettings(), steps=args.steps)
    t0 = time.perf_counter()
    inverter = Inverter.from_sampler(sampler, settings, log=print)
    encoder_s = time.perf_counter() - t0
    strengths = [float(s) for s in args.strengths.split(",")]
    residuals = [float(r) for r in args.residual.split(",")]
    curves, inversions = [], {}
    for split in [s.strip() for s in args.sources.split(",") if s.strip()]:
        x, y = td.x[split], td.y[split]
        tr = LatentTranslator(inverter)
        for schedule in [s.strip() for s in args.schedules.split(",") if s.strip()]:
            for residual in residuals:
                tr.schedule, tr.residual = schedule, float(residual)
                c = translation_curve(tr, x, y, target, strengths, teacher, args.max_sources)
                if split not in inversions and tr._memo is not None:
                    inversions[split] = tr._memo[1].summary()
                curves.append({"sources": split, "schedule": schedule, "residual": residual, "curve": c})
                print(f"{split} {schedule} residual={residual}: " + ", ".join(
                    f"s={p['strength']:.2f} kept {p['anatomy_kept']:.2f} rec {p['relative_recognition'] or 0:.2f}"
                    for p in c["points"]), flush=True)
    with torch.no_grad():
        p_real = teacher.predict_proba(td.x["val"])[:, target]
    real_val = {"recognition": float((p_real[td.y["val"] == target] >= teacher.thresholds[target]).double().mean()),
                "false_alarms_other_classes": float((p_real[td.y["val"] != target] >=
                                                     teacher.thresholds[target]).double().mean())}
    out = {"command": " ".join(["pipelines/translation_curve.py", *sys.argv[1:]]), "checkpoint": str(choice.path),
           "checkpoint_sha256": sampler.checkpoint_sha256, "target": sampler.class_names[target],
           "teacher": teacher.info.get("per_class"), "teacher_real_val": real_val,
           "inversion_settings": asdict(settings),
           "encoder_seconds": round(encoder_s, 2), "inversions": inversions, "curves": curves,
           "chosen_on_validation": choose(curves, "val") if any(c["sources"] == "val" for c in curves) else None,
           "seconds": round(time.perf_counter() - t_all, 1), "machine": bc.machine_info(), "load": bc.loadavg()}
    write_json(args.out, out)
    rows = [[c["sources"], c["schedule"], f"{c['residual']:g}", f"{p['strength']:.2f}",
             f"{p['anatomy_kept']:.2f}", f"{p['distance_to_source']:.3f}", f"{p['recognition']:.2f}",
             f"{p['relative_recognition']:.2f}" if p["relative_recognition"] is not None else "n/a"]
            for c in curves for p in c["curve"]["points"]]
    print(markdown_table(["sources", "schedule", "residual", "strength", "nearest own source", "RMS to source",
                          "teacher recognition", "relative to real val"], rows))
    print("chosen:", out["chosen_on_validation"])


if __name__ == "__main__":
    main()
