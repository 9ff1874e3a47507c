"""Sanity check of the evaluation's classifier protocol against the MedMNIST v2 benchmark.

The baseline arm on the FULL training split of a MedMNIST subset, with MONAI's ResNet-18 (the 28-px stem medgan
uses), should come close to the published ResNet-18 (28) test AUROC (Yang et al. 2023: BreastMNIST 0.901,
PneumoniaMNIST 0.944). If it does not, the protocol (budget, selection, optimiser) is too weak to judge arms.

The published protocol: 100 epochs, batch 128, Adam lr 0.001 divided by 10 at epochs 50 and 75, the epoch with
the best validation AUROC kept. This script runs medgan's fitting protocol (:func:`medgan.classify.fit.fit_group`:
Adam without the learning-rate steps, weights kept by the best validation score; the seeds as one stacked group
under bf16 autocast, as ``medgan evaluate`` trains them) with a chosen budget and batch size::

    .venv/bin/python pipelines/check_medmnist_benchmark.py --dataset breastmnist --epochs 100 --batch-size 128 \\
        --seeds 3 --out docs/results/benchmark_breastmnist.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import write_json  # noqa: E402

PUBLISHED = {"breastmnist": 0.901, "pneumoniamnist": 0.944}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--classifier", default="resnet18")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--select", default="auroc")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--amp", default="bf16", help="bf16: the seeds train as one stacked group under bf16 autocast, "
                    "as medgan evaluate does (off: float32)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from medgan.classify.fit import Member, Protocol, fit_group, predict_proba
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.evaluation.metrics import classification_metrics

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, data_dir=bc.DATA_DIR, download=False)
    td = prepare(data, 28)
    steps = math.ceil(len(td.y["train"]) / args.batch_size)
    protocol = Protocol(args.classifier, args.epochs, args.epochs + 1, args.batch_size, args.lr, steps, args.select,
                        0, args.amp, False)
    t0 = time.perf_counter()
    results = fit_group([Member(s, td.x["train"], td.y["train"]) for s in range(args.seeds)], protocol, td.x["val"],
                        td.y["val"], data.num_classes)
    seconds = time.perf_counter() - t0
    runs = []
    for seed, res in enumerate(results):
        prob = predict_proba(res.model, td.x["test"], "cpu").numpy()
        m = classification_metrics(td.y["test"].numpy(), prob, data.class_names)
        runs.append({"seed": seed, "best_epoch": res.best_epoch, "val_auroc": res.val_auroc, "test_auroc": m["auroc"],
                     "test_accuracy": m["accuracy"]})
        print(f"[benchmark] {args.dataset} seed {seed}: best epoch {res.best_epoch}, val AUROC {res.val_auroc:.3f}, "
              f"test AUROC {m['auroc']:.3f}, accuracy {m['accuracy']:.3f}", flush=True)
    auc = np.array([r["test_auroc"] for r in runs])
    result = {"command": " ".join(sys.argv), "dataset": args.dataset, "classifier": args.classifier,
              "seconds": seconds,
              "args": vars(args) | {"out": str(args.out)}, "machine": bc.machine_info(), "runs": runs,
              "test_auroc_mean": float(auc.mean()), "test_auroc_sd": float(auc.std(ddof=1)) if len(auc) > 1 else 0.0,
              "published": PUBLISHED.get(args.dataset),
              "within_0.02": bool(abs(auc.mean() - PUBLISHED.get(args.dataset, np.nan)) <= 0.02)}
    write_json(args.out, result)
    print(f"[benchmark] {args.dataset}: test AUROC {result['test_auroc_mean']:.3f} ± {result['test_auroc_sd']:.3f} "
          f"(published ResNet-18 (28): {result['published']}); within 0.02: {result['within_0.02']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
