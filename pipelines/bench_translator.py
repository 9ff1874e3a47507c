#!/usr/bin/env python3
"""Image translator benchmark: does a translated image keep its source's anatomy, and does the teacher see the
target class in it?

Setting: BreastMNIST with malignant kept at 50% of the training split (``--scarce 0=0.5``), the translator of
``configs/breastmnist_translator.yaml`` (plus a variant's ``--set`` overrides) trained with ``medgan train`` on that
scarce training split. Measured on the **training and validation splits only** (never test):

* sources: the validation images of the abundant class (``val``: all of them, up to 200) and up to 200 training
  images of the abundant class (``train``: what ``augment --from-real`` translates), each translated into
  malignant at every strength in ``--strengths``;
* **anatomy kept**: the share of translated images whose nearest source (pixel-space L2, among the same set of
  sources) is their own, and the mean L2 distance to the own source (with, for scale, the mean distance of a source
  to its nearest other source);
* **class change**: the share of translated images the teacher (:func:`medgan.classify.teacher.load_or_fit_teacher`,
  fitted on the same scarce training split, selected on validation) calls malignant at its validation operating
  point, over its sensitivity on real malignant validation images (``relative``; the target is >= 1), and its mean
  p(malignant).

Targets (issue 22): >= 80% nearest to their own source and ``relative >= 1`` at one strength. Every variant's
numbers are kept in the result file (``variants``); ``--grid`` writes a PNG of validation sources and their
translations.

    .venv/bin/python pipelines/bench_translator.py --variant default \\
        --out docs/results/bench_translator.json --grid docs/results/translator_grid.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as medgan's CLI: spinning OpenMP threads crawl on a busy CPU
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import write_json  # noqa: E402

RUNS = bc.ROOT / "runs" / "bench_translator"
CONFIG = bc.ROOT / "configs" / "breastmnist_translator.yaml"
SCARCE = ["0=0.5"]
TARGET = 0  # malignant
MAX_SOURCES = 200
STRENGTHS = "0,0.25,0.5,0.75,1"
#: The latent translation this replaces (issue 22's calibration, BreastMNIST 20%, best.pt): share of translated
#: images nearest to their own source among 200.
LATENT_BASELINE_NEAREST_OWN = 0.305


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` overrides (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"bad --set {item!r}; use KEY=VALUE, e.g. translator.keep_weight=1")
        out[key.strip()] = yaml.safe_load(value)
    return out


def train_variant(run: Path, overrides: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Train the translator into ``run`` (kept when it already holds the finished run); its training time."""
    from medgan.config import load_config
    from medgan.training.checkpoint import load_checkpoint
    from medgan.training.run import train

    cfg = load_config(CONFIG, {"data.scarce": SCARCE, "data.data_dir": data_dir, "train.progress": False,
                               **overrides})
    last = run / "checkpoints" / "last.pt"
    if last.is_file() and load_checkpoint(last, kind="translator")["step"] >= cfg.train.steps:
        lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s.strip()]
        return {"config": cfg.model_dump(mode="json"), "train_seconds": lines[-1]["elapsed_s"], "reused": True}
    t0 = time.perf_counter()
    res = train(cfg, run)
    return {"config": cfg.model_dump(mode="json"), "train_seconds": round(res.seconds, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1), "steps": res.step, "reused": False}


def anatomy(translated: torch.Tensor, sources: torch.Tensor) -> dict[str, float]:
    """Nearest-source share and distances in pixel space (L2 over the whole image, model range [-1, 1])."""
    t, s = translated.flatten(1).double(), sources.flatten(1).double()
    d = torch.cdist(t, s)
    own = d.diagonal()
    ss = torch.cdist(s, s)
    ss.fill_diagonal_(float("inf"))
    return {"nearest_own": float((d.argmin(1) == torch.arange(len(t))).double().mean()),
            "l2_to_own": float(own.mean()), "rms_to_own": float((own.square() / t.shape[1]).sqrt().mean()),
            "l2_source_to_nearest_other": float(ss.min(1).values.mean())}


def recognition(teacher, x: torch.Tensor, target: int) -> dict[str, float]:
    p = teacher.predict_proba(x)[:, target]
    thr = teacher.thresholds[target]
    sens = teacher.info["per_class"][target]["sensitivity"]
    rate = float((p >= thr).double().mean())
    return {"recognised": rate, "relative": rate / sens if sens else float("nan"), "p_target": float(p.mean())}


def measure(translator, teacher, x: torch.Tensor, y: torch.Tensor, strengths: list[float]) -> list[dict[str, Any]]:
    rows = []
    for s in strengths:
        t0 = time.perf_counter()
        out = translator.translate(x, y, TARGET, strength=s)
        secs = time.perf_counter() - t0
        rows.append({"strength": s, "n": len(x), **anatomy(out, x), **recognition(teacher, out, TARGET),
                     "translate_seconds": round(secs, 3)})
    return rows


def chosen(curve: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The smallest strength that meets both targets, or ``None``."""
    ok = [r for r in curve if r["nearest_own"] >= 0.8 and r["relative"] >= 1.0]
    return ok[0] if ok else None


def save_grid(path: Path, translator, x: torch.Tensor, y: torch.Tensor, names: list[str], n: int = 10) -> None:
    from medgan.viz import save_grid as grid

    x, y = x[:n], y[:n]
    imgs = [x, translator.translate(x, y, TARGET, 0.5), translator.translate(x, y, TARGET, 1.0)]
    titles = [f"real {names[int(y[0])]} (val)" if len(set(y.tolist())) == 1 else "real (val)",
              f"-> {names[TARGET]}, s=0.5", f"-> {names[TARGET]}, s=1"]
    labels = torch.arange(3).repeat_interleave(len(x))
    grid(path, torch.cat(imgs), labels, titles, per_class=len(x), indexed=False,
         title="BreastMNIST 50%: validation sources and their translations (column = one source)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="default", help="name of this variant in the result file")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    ap.add_argument("--strengths", default=STRENGTHS)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "bench_translator.json")
    ap.add_argument("--grid", type=Path, default=None, help="write the source|translation PNG here")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="(smoke tests) fewer teacher epochs")
    args = ap.parse_args(argv)

    from medgan.classify.teacher import load_or_fit_teacher
    from medgan.config import load_config
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.synthesis.translation import ImageTranslator

    overrides = parse_set(args.set)
    run = args.runs / args.variant
    trained = train_variant(run, overrides, args.data_dir)
    cfg = load_config(CONFIG, {"data.scarce": SCARCE, "data.data_dir": args.data_dir, **overrides})
    data = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, split_seed=cfg.data.split_seed,
                        download=cfg.data.download, scarce=cfg.data.scarce)
    td = prepare(data, cfg.data.size)
    names = list(data.class_names)
    settings = cfg.teacher if args.teacher_epochs is None else cfg.teacher.model_copy(
        update={"epochs": args.teacher_epochs, "min_epochs": 0})
    t0 = time.perf_counter()
    teacher = load_or_fit_teacher(args.runs / "teacher", td.x["train"], td.y["train"], td.x["val"], td.y["val"],
                                  data.num_classes, settings, class_names=names)
    teacher_s = time.perf_counter() - t0
    translator = ImageTranslator.from_checkpoint(run)
    strengths = [float(s) for s in args.strengths.split(",")]
    sets = {}
    g = torch.Generator().manual_seed(0)
    for split in ("val", "train"):
        idx = torch.nonzero(td.y[split] != TARGET).reshape(-1)
        if len(idx) > MAX_SOURCES:
            idx = idx[torch.randperm(len(idx), generator=g)[:MAX_SOURCES]].sort().values
        sets[split] = (td.x[split][idx], td.y[split][idx])
    curves = {split: measure(translator, teacher, x, y, strengths) for split, (x, y) in sets.items()}
    real_val = recognition(teacher, td.x["val"][td.y["val"] == TARGET], TARGET)
    result = {
        "setting": {"dataset": cfg.data.dataset, "scarce": SCARCE, "target": names[TARGET],
                    "train_counts": data.counts("train"), "val_counts": data.counts("val"),
                    "sources": {k: len(v[0]) for k, v in sets.items()}},
        "training": trained, "checkpoint": translator.checkpoint_note,
        "teacher": {"sensitivity": teacher.info["per_class"][TARGET]["sensitivity"],
                    "threshold": teacher.thresholds[TARGET], "p_real": teacher.info["per_class"][TARGET]["p_real"],
                    "real_malignant_val": real_val, "seconds": round(teacher_s, 1),
                    "cached": teacher.info.get("cached")},
        "curves": curves,
        "chosen": {split: chosen(c) for split, c in curves.items()},
        "latent_translation_baseline": {"nearest_own": LATENT_BASELINE_NEAREST_OWN,
                                        "source": "issue 22 calibration (BreastMNIST 20%, latent translation)"},
    }
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    variants = {**previous.get("variants", {}), args.variant: {"overrides": overrides, **result}}
    write_json(args.out, {"command": " ".join(["pipelines/bench_translator.py", *(argv or sys.argv[1:])]),
                          "machine": bc.machine_info(), "variants": variants})
    if args.grid is not None:
        x, y = sets["val"]
        save_grid(args.grid, translator, x, y, names)
    for split, c in curves.items():
        print(f"[{args.variant}] {split} sources ({len(sets[split][0])}), teacher sensitivity on real "
              f"{names[TARGET]} val {result['teacher']['sensitivity']:.3f}:")
        for r in c:
            print(f"  s={r['strength']:.2f}: nearest own {r['nearest_own']:.1%}, L2 to own {r['l2_to_own']:.2f} "
                  f"(nearest other source {r['l2_source_to_nearest_other']:.2f}), recognised {r['recognised']:.1%} "
                  f"(relative {r['relative']:.2f}), p({names[TARGET]}) {r['p_target']:.3f}")
    print(f"training {trained['train_seconds']} s; result in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
