"""Running the arms of an evaluation: every arm x seed trains the same classifier under the same protocol and is
tested on the real test split at operating points chosen on the real validation split.

Same budget, same seeds: every arm uses the same classifier, Adam (``evaluate.lr``), batch size and *the same
number of optimisation steps per epoch*, ``ceil(N_real_train / batch_size)``, whatever the size of its training
set, so adding synthetic data buys no extra compute. After each epoch the model is scored on the REAL validation
split; the weights with the best validation score (``evaluate.select``) are kept; training stops after
``evaluate.patience`` epochs without improvement, never before ``evaluate.min_epochs`` (a 78-image validation
split is too noisy to stop on after two or three epochs). Seed ``s`` sets the weight initialisation (identical
across arms), the batch order and the augmentation stream. Per seed, each GAN arm's synthetic images are a seeded
draw from the pool. Each finished run is stored (:mod:`medgan.evaluation.runstore`) with its validation and test
probabilities; metrics are computed from those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from medgan.evaluation.arms import Arm

if TYPE_CHECKING:
    from medgan.config import EvalConfig
    from medgan.data.preprocess import TensorData
    from medgan.evaluation.runstore import RunStore


#: Classifiers that ``evaluate.group_size: 0`` trains one by one on a CPU: MONAI's ResNet-18 is compute-bound there,
#: and 10 stacked members ran at 0.86x (float32) and 1.08x (bf16) the one-by-one speed with 2.7x the memory
#: (``pipelines/bench_evaluate.py``, docs/results.md "Evaluation speed"). On a GPU they are stacked.
CPU_UNSTACKED = ("resnet18",)


@dataclass
class Study:
    """What every run shares: real tensors, protocol, the synthetic pool (decoded once), stored runs."""

    td: TensorData
    ev: EvalConfig
    device: torch.device
    scarce: list[int]
    allocs: dict[str, list[int]]
    store: RunStore | None = None
    pool_x: torch.Tensor | None = None
    pool_y: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    on_epoch: Callable[[int, int], None] | None = None
    """Called as ``on_epoch(epoch, members)`` after every epoch of a group (the progress bar)."""

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.td.y["train"]) / self.ev.batch_size))

    def training_set(self, arm: Arm, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str]]:
        """The arm's training images and labels for ``seed``, the synthetic images added per class, and notes
        (classes whose synthetic images had to be drawn with replacement)."""
        from medgan.evaluation.pool import draw_for_arm

        x, y = self.td.x["train"], self.td.y["train"]
        if not arm.synthetic:
            return x, y, [0] * self.td.data.num_classes, []
        assert self.pool_x is not None and self.pool_y is not None
        sel, msg = draw_for_arm(self.pool_y, self.allocs[arm.name], seed=seed)
        notes = [f"{arm.name} seed {seed}: {m}" for m in msg]
        return torch.cat([x, self.pool_x[sel]]), torch.cat([y, self.pool_y[sel]]), list(self.allocs[arm.name]), notes

    def protocol(self, classifier: str | None = None):
        from medgan.classify.fit import Protocol

        ev = self.ev
        name = classifier or ev.classifier
        cl = name == "smallcnn" if ev.channels_last == "auto" else bool(ev.channels_last)
        return Protocol(name, ev.epochs, ev.patience, ev.batch_size, ev.lr, self.steps_per_epoch, ev.select,
                        ev.min_epochs, ev.amp, cl)

    def group_size(self, n: int) -> int:
        """Seeds per group: ``evaluate.group_size``, or (0) as many as the memory budget holds, except for networks
        that :data:`CPU_UNSTACKED` lists on a CPU (one by one: measured no faster stacked there)."""
        if self.ev.group_size > 0:
            return min(n, self.ev.group_size)
        if self.device.type == "cpu" and self.ev.classifier in CPU_UNSTACKED:
            return 1
        from medgan.classify.group import group_size
        from medgan.classify.nets import build_classifier

        td = self.td
        probe = build_classifier(self.ev.classifier, td.data.spatial_dims, td.data.channels, td.data.num_classes)
        return group_size(probe, tuple(td.x["train"].shape[1:]), self.ev.batch_size, n,
                          self.ev.group_memory_gb * 2**30)

    def run_group(self, arm: Arm, seeds: list[int]) -> list[tuple[dict[str, Any], torch.nn.Module]]:
        """Train the seeds of one arm together (:func:`medgan.classify.fit.fit_group`; :attr:`on_epoch` after each
        epoch); one record per seed, holding its validation and test probabilities."""
        from medgan.classify.augment import classical_augment
        from medgan.classify.fit import Member, fit_group, predict_proba

        members, extra = [], []
        for s in seeds:
            x, y, n_syn, notes = self.training_set(arm, s)
            aug = classical_augment(self.ev.classical, self.td.data.spatial_dims,
                                    torch.Generator().manual_seed(s + 7919)) if arm.classical else None
            members.append(Member(s, x, y, arm.balanced, arm.weighted, aug))
            extra.append((n_syn, notes))
        td = self.td
        results = fit_group(members, self.protocol(), td.x["val"], td.y["val"], td.data.num_classes, self.device,
                            on_epoch=self.on_epoch)
        out = []
        for s, m, res, (n_syn, notes) in zip(seeds, members, results, extra, strict=True):
            record = {"arm": arm.name, "seed": s, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                      "val_balanced_accuracy": res.val_balanced_accuracy, "val_loss": res.val_loss,
                      "val_auroc": res.val_auroc, "train_size": int(len(m.y)), "synthetic_per_class": list(n_syn),
                      "seconds": res.seconds, "group": res.group, "precision": res.precision, "notes": notes,
                      "val_prob": predict_proba(res.model, td.x["val"], self.device).tolist(),
                      "test_prob": predict_proba(res.model, td.x["test"], self.device).tolist()}
            out.append((record, res.model))
        return out

    def measure(self, record: dict[str, Any]) -> dict[str, Any]:
        """A run's metrics from its stored probabilities: argmax metrics and operating points on test, the
        validation counterparts the verdict selects arms by."""
        import numpy as np

        from medgan.evaluation.metrics import classification_metrics
        from medgan.evaluation.operating_points import operating_points

        td = self.td
        names = td.data.class_names
        vp, tp = np.asarray(record["val_prob"]), np.asarray(record["test_prob"])
        test = classification_metrics(td.y["test"].numpy(), tp, names, self.scarce)
        op = operating_points(td.y["val"].numpy(), vp, td.y["test"].numpy(), tp, self.scarce, names,
                              self.ev.target_specificity)
        val_keys = {k: op.pop(k) for k in list(op) if k.startswith("val_")}
        test["operating_points"] = {"target_specificity": op.pop("target_specificity"),
                                    "per_class": op.pop("per_class")}
        test.update(op)
        out = {k: v for k, v in record.items() if k not in ("val_prob", "test_prob")}
        return {**out, **val_keys, "test": test}


def run_arms(study: Study, arms: list[Arm], say: Callable[[str], None], progress: bool
             ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Every arm x seed. The seeds of an arm train in fixed groups (seeds ``0..G-1``, ``G..2G-1``, ...,
    :meth:`Study.run_group`); a group whose runs are all stored is read back, any other is trained again as a
    whole, so a resumed evaluation computes exactly what an uninterrupted one does. Returns the measured runs and
    the seconds per arm."""
    from tqdm.auto import tqdm

    from medgan.evaluation.progress import RunProgress

    ev = study.ev
    seeds = list(range(ev.seeds))
    stored = {(a.name, s): study.store.load(a.name, s) if study.store else None for a in arms for s in seeds}
    size = study.group_size(len(seeds))
    chunks = [seeds[i : i + size] for i in range(0, len(seeds), size)]
    todo = [(a, c) for a in arms for c in chunks if any(stored[(a.name, s)] is None for s in c)]
    done = len(stored) - sum(len(c) for _, c in todo)
    if done:
        say(f"resuming: {done} of {len(stored)} runs are already in {study.store.dir}")
    if todo:
        say(f"training {sum(len(c) for _, c in todo)} runs, the seeds of each arm in groups of {size}")
    write = say
    width = max(len(a.name) for a in arms)  # the per-run lines' columns line up whatever the arm names
    prog = RunProgress([len(c) for _, c in todo], ev.epochs)
    with tqdm(total=prog.total, disable=not progress or not todo, dynamic_ncols=True,
              bar_format="evaluate {percentage:3.0f}%|{bar:20}| {desc}") as bar:
        if progress:
            write = bar.write
        for arm, chunk in todo:
            what = f"{arm.name}, seeds {chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else f"{arm.name}, seed {chunk[0]}"
            bar.set_description_str(prog.text(what))

            def on_epoch(epoch: int, members: int, what: str = what) -> None:
                bar.update(prog.epoch(epoch, members))
                bar.set_description_str(prog.text(what))

            study.on_epoch = on_epoch
            try:
                results = study.run_group(arm, chunk)
            finally:
                study.on_epoch = None
            bar.update(prog.group_done())
            for record, _model in results:
                s = record["seed"]
                if study.store is not None:
                    study.store.save(arm.name, s, record)
                stored[(arm.name, s)] = record
                m = study.measure(record)
                write(f"  {arm.name:<{width}} seed {s}  epochs {record['epochs_run']:>3} (best {record['best_epoch']:>3})"
                      f"  test AUROC {m['test']['auroc']:.3f}  scarce sens @ val spec "
                      f"{m['test']['scarce_sens_at_spec']:.3f}  [{record['seconds']:.1f}s]")
    runs: dict[str, list[dict[str, Any]]] = {a.name: [] for a in arms}
    seconds = {a.name: 0.0 for a in arms}
    for arm in arms:
        for s in seeds:
            record = stored[(arm.name, s)]
            runs[arm.name].append(study.measure(record))
            study.notes += record.get("notes", [])
            seconds[arm.name] += float(record["seconds"])
    return runs, seconds
