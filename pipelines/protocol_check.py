"""Protocol check for ``medgan evaluate``: how long must a classifier train, and how should the kept weights be
chosen on a tiny validation split?

Trains the conventional arms (real data only: ``baseline``, ``oversample``, ``weighted``, ``classical+oversample``
at each classical strength) for a long, fixed budget without early stopping, and records after every epoch the
validation scores (cross-entropy, AUROC, balanced accuracy) and the test scores (AUROC, and scarce-class
sensitivity at the threshold chosen on validation for specificity >= 0.8). From those curves it reports, per arm:

* **convergence**: the first epoch at which the validation AUROC (3-epoch running mean) comes within 0.01 of its
  best, and when the old rule (patience 8 on balanced accuracy) would have stopped;
* **selection**: for each rule (best validation AUROC / loss / balanced accuracy; the last epoch), the test AUROC
  and sensitivity of the weights it keeps, mean and standard deviation over seeds (lower sd = a more stable rule);
* **classical strength**: the validation AUROC each strength reaches (chosen on validation, never on test).

Everything it decides is on validation scores; the test columns only show what each rule would cost.

    .venv/bin/python pipelines/protocol_check.py --dataset breastmnist --scarce 0=0.2 --seeds 5 --epochs 80 \\
        --out docs/results/protocol_breast20.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

ARMS = {  # name -> (balanced batches, weighted loss, classical strength)
    "baseline": (False, False, None),
    "oversample": (True, False, None),
    "weighted": (False, True, None),
    "classical+oversample (mild)": (True, False, "mild"),
    "classical+oversample (moderate)": (True, False, "moderate"),
}
RULES = ("auroc", "loss", "balanced_accuracy", "last")


def run_arm(td, scarce: list[int], arm: str, seed: int, args) -> list[dict[str, Any]]:
    """One arm and seed, trained ``args.epochs`` epochs with per-epoch validation and test scores."""
    import torch

    from medgan.classify.fit import predict_proba, train_classifier
    from medgan.evaluation.classical import classical_augment
    from medgan.evaluation.operating_points import operating_points

    balanced, weighted, strength = ARMS[arm]
    names = td.data.class_names
    aug = classical_augment(strength, td.data.spatial_dims, torch.Generator().manual_seed(seed + 7919)) \
        if strength else None
    steps = max(1, math.ceil(len(td.y["train"]) / args.batch_size))

    def test_scores(epoch: int, model) -> dict[str, Any]:
        pv = predict_proba(model, td.x["val"], "cpu").numpy()
        pt = predict_proba(model, td.x["test"], "cpu").numpy()
        op = operating_points(td.y["val"].numpy(), pv, td.y["test"].numpy(), pt, scarce, names)
        return {"test_auroc": op["scarce_auroc"], "test_sens_at_spec": op["scarce_sens_at_spec"],
                "val_sens_at_spec": op["val_scarce_sens_at_spec"]}

    res = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"], classifier=args.classifier,
                           num_classes=td.data.num_classes, seed=seed, epochs=args.epochs, patience=args.epochs + 1,
                           batch_size=args.batch_size, lr=args.lr, steps_per_epoch=steps, balanced=balanced,
                           weighted=weighted, batch_transform=aug, history=True, epoch_hook=test_scores)
    return res.history


def analyse(hist: list[dict[str, Any]]) -> dict[str, Any]:
    """Convergence epoch, old-rule stop epoch and the epoch each selection rule keeps, for one run."""
    auc = np.array([h["auroc"] for h in hist])
    smooth = np.convolve(auc, np.ones(3) / 3, mode="valid")
    conv = int(np.argmax(smooth >= np.nanmax(smooth) - 0.01)) + 3 if len(smooth) else len(hist)
    best, since, stop = -1.0, 0, len(hist)  # the old rule: balanced accuracy, patience 8
    for h in hist:
        if h["balanced_accuracy"] > best + 1e-12:
            best, since = h["balanced_accuracy"], 0
        else:
            since += 1
            if since >= 8:
                stop = h["epoch"]
                break
    picks = {"auroc": int(np.nanargmax(auc)), "loss": int(np.argmin([h["loss"] for h in hist])),
             "balanced_accuracy": int(np.argmax([h["balanced_accuracy"] for h in hist])), "last": len(hist) - 1}
    return {"converged_epoch": conv, "old_rule_stop_epoch": stop,
            "selected": {r: {"epoch": i + 1, "test_auroc": hist[i]["test_auroc"],
                             "test_sens_at_spec": hist[i]["test_sens_at_spec"], "val_auroc": hist[i]["auroc"]}
                         for r, i in picks.items()}}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for arm, rs in runs.items():
        an = [r["analysis"] for r in rs]
        out[arm] = {
            "converged_epoch": bc.summarise([a["converged_epoch"] for a in an]),
            "old_rule_stop_epoch": bc.summarise([a["old_rule_stop_epoch"] for a in an]),
            "best_val_auroc": float(np.mean([a["selected"]["auroc"]["val_auroc"] for a in an])),
            "rules": {rule: {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                             for k, v in (("test_auroc", [a["selected"][rule]["test_auroc"] for a in an]),
                                          ("test_sens_at_spec", [a["selected"][rule]["test_sens_at_spec"]
                                                                 for a in an]),
                                          ("epoch", [a["selected"][rule]["epoch"] for a in an]))}
                      for rule in RULES},
        }
    return out


def report(result: dict[str, Any]) -> str:
    rows = []
    for arm, s in result["summary"].items():
        for rule in RULES:
            r = s["rules"][rule]
            rows.append([arm, rule, f"{r['epoch']['mean']:.1f}", f"{r['test_auroc']['mean']:.3f} ± {r['test_auroc']['sd']:.3f}",
                         f"{r['test_sens_at_spec']['mean']:.3f} ± {r['test_sens_at_spec']['sd']:.3f}"])
    conv = [[arm, bc.fmt_range(s["converged_epoch"], 0), bc.fmt_range(s["old_rule_stop_epoch"], 0),
             f"{s['best_val_auroc']:.3f}"] for arm, s in result["summary"].items()]
    return (markdown_table(["arm", "val AUROC within 0.01 of best (epoch)", "old rule stopped at (epoch)",
                            "best val AUROC"], conv) + "\n\n"
            + markdown_table(["arm", "selection rule", "epoch kept", "test AUROC (mean ± sd)",
                              "test sens @ val spec 0.8"], rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--scarce", action="append", default=None)
    ap.add_argument("--classifier", default="smallcnn")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "protocol_check.json")
    ap.add_argument("--report", type=Path, default=None, help="Only print the tables of an existing result file.")
    args = ap.parse_args(argv)
    if args.report:
        import json

        print(report(json.loads(args.report.read_text())))
        return 0
    import torch

    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.evaluation.arms import scarce_classes

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, scarce=args.scarce or [], download=False)
    td = prepare(data)
    scarce = scarce_classes(data)
    runs: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    for arm in [a.strip() for a in args.arms.split(",")]:
        for seed in range(args.seeds):
            t1 = time.perf_counter()
            hist = run_arm(td, scarce, arm, seed, args)
            runs.setdefault(arm, []).append({"seed": seed, "history": hist, "analysis": analyse(hist)})
            print(f"[protocol] {arm} seed {seed}: {time.perf_counter() - t1:.0f} s", flush=True)
    result = {"command": " ".join(sys.argv), "dataset": data.name, "train_counts": data.counts("train"),
              "val_counts": data.counts("val"), "scarce": [data.class_names[c] for c in scarce],
              "args": {k: str(v) for k, v in vars(args).items()}, "machine": bc.machine_info(),
              "seconds": time.perf_counter() - t0, "runs": runs}
    result["summary"] = summarise(runs)
    write_json(args.out, result)
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
