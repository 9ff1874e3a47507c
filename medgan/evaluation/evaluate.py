"""``medgan evaluate``: does adding synthetic images make a classifier better on the scarce classes?

:func:`evaluate` runs in named stages:

1. :func:`check_request`: the arms (:mod:`medgan.evaluation.arms`) and protocol settings, before any work;
2. :func:`load_real`: the real dataset with its scarcity, which must have real validation and test images;
3. :func:`load_pool`: the synthetic pool from a checkpoint or an augment folder, behind the leakage guard
   (:mod:`medgan.evaluation.pool`);
4. :func:`run_arms`: every arm x seed trains the same classifier (:mod:`medgan.classify.fit`) and is tested on
   the real test split;
5. :func:`check_samples`: sample quality (:mod:`medgan.evaluation.quality`) and memorisation
   (:mod:`medgan.evaluation.privacy`) in the feature space of the domain feature network;
6. the :class:`~medgan.evaluation.report.Report`: statistics (:mod:`medgan.evaluation.statistics`), JSON,
   Markdown and figures.

Same budget, same seeds
-----------------------
Every arm uses the same classifier, Adam (``evaluate.lr``), batch size, number of epochs and *the same number of
optimisation steps per epoch*, ``ceil(N_real_train / batch_size)``, whatever the size of its training set, so
that adding synthetic data buys no extra compute. After each epoch the model is scored on the REAL validation
split; the weights with the best balanced accuracy (ties: lower validation loss) are kept, and training stops
after ``evaluate.patience`` epochs without improvement. Seed ``s`` sets the weight initialisation (identical
across arms), the batch-order stream and the augmentation stream. Test images are always real. Per seed, each
class's synthetic images are a seeded draw without replacement from the pool (with replacement only if the pool
is too small; the report then says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.errors import EvaluationError
from medgan.evaluation.arms import BUDGET_POLICY, Arm, expand_arms, scarce_classes
from medgan.synthesis.allocation import fill_smallest_first
from medgan.synthesis.bank import SyntheticBank

if TYPE_CHECKING:
    from medgan.config import Config, DataConfig, EvalConfig
    from medgan.data.dataset import RealData
    from medgan.data.preprocess import TensorData
    from medgan.evaluation.report import Report

ALLOCATION_POLICY = (
    "ratio R adds round(R x N_real) synthetic images, given to the classes with the fewest real images first "
    "(water filling: lowest classes raised level until equal, the rest one each, fewest-real classes first); "
    "'balance' tops every class up to the majority count"
)
SELECTION = "best real-validation balanced accuracy (ties: lower loss)"


def check_request(ev: EvalConfig, checkpoint: Any, synthetic: Any) -> list[Arm]:
    """The arms to run; refuses a request that cannot work before anything is loaded or trained."""
    if checkpoint is not None and synthetic is not None:
        raise EvaluationError("pass either --checkpoint or --synthetic, not both")
    arms = expand_arms(list(ev.arms), list(ev.ratios))
    if any(a.synthetic for a in arms) and checkpoint is None and synthetic is None:
        gan = ", ".join(a.name for a in arms if a.synthetic)
        raise EvaluationError(f"arms {gan} need synthetic images: pass --checkpoint RUN/checkpoints/last.pt or "
                              "--synthetic AUGMENT_OUTPUT, or keep only --arms baseline,oversample,classical")
    if ev.seeds < 2:
        raise EvaluationError(f"--seeds {ev.seeds}: confidence intervals and paired tests need at least 2 seeds; "
                              "use --seeds 5 (or 10 for permutation p-values below 0.0625)")
    if ev.epochs < 1 or ev.batch_size < 1 or ev.patience < 1:
        raise EvaluationError("evaluate.epochs, evaluate.batch_size and evaluate.patience must be at least 1")
    return arms


def load_real(d: DataConfig) -> RealData:
    """The evaluation's real data: ``--dataset`` with ``--scarce`` applied; every class in the test split."""
    from medgan.data.sources import load_dataset
    from medgan.evaluation.metrics import check_test_classes

    data = load_dataset(d.dataset, d.data_dir, d.split_seed, d.download, list(d.scarce))
    for split in ("val", "test"):
        if split not in data.splits or len(data.splits[split]) == 0:
            raise EvaluationError(f"dataset '{data.name}' has no {split} split; evaluation needs real val and test "
                                  "images")
    check_test_classes(data.splits["test"].labels, data.class_names, "test")
    return data


def load_pool(cfg: Config, data: RealData, arms: list[Arm], allocs: dict[str, list[int]],
              checkpoint: str | Path | None, synthetic: str | Path | SyntheticBank | None,
              say: Callable[[str], None]) -> tuple[SyntheticBank | None, int | None]:
    """The synthetic pool (``None`` when nothing needs it) and the image size the evaluation runs at."""
    from medgan.evaluation.pool import check_matches_dataset, pool_from_checkpoint, pool_from_folder

    ev = cfg.evaluate
    size = cfg.data.size
    need = any(a.synthetic for a in arms) or ((ev.quality or ev.privacy) and (checkpoint or synthetic))
    if checkpoint is not None and need:
        n_pc = ev.n_synthetic or max([100] + [max(v) for v in allocs.values()])
        if ev.filter_confidence > 0:
            n_pc *= ev.filter_pool_factor  # enough images survive the filter
        say(f"drawing {n_pc} synthetic images per class from {checkpoint}")
        return pool_from_checkpoint(checkpoint, data, size, n_pc, cfg.augment.seed)
    if isinstance(synthetic, SyntheticBank):
        size = int(synthetic.shape[-1])
        check_matches_dataset(list(synthetic.class_names), synthetic.shape, data, size, "the synthetic pool")
        return synthetic, size
    if synthetic is not None and need:
        return pool_from_folder(synthetic, data, size)
    return None, size


@dataclass
class Study:
    """What every run of :func:`run_arms` shares: real tensors, protocol and the synthetic pool (decoded once)."""

    td: TensorData
    ev: EvalConfig
    device: torch.device
    scarce: list[int]
    allocs: dict[str, list[int]]
    pool_x: torch.Tensor | None = None
    pool_y: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.td.y["train"]) / self.ev.batch_size))

    def fit(self, x: torch.Tensor, y: torch.Tensor, seed: int, *, classifier: str, balanced: bool = False,
            batch_transform: Callable | None = None):
        """One classifier under the shared protocol, selected on the real validation split."""
        from medgan.classify.fit import train_classifier

        ev = self.ev
        return train_classifier(x, y, self.td.x["val"], self.td.y["val"], classifier=classifier,
                                num_classes=self.td.data.num_classes, seed=seed, epochs=ev.epochs,
                                patience=ev.patience, batch_size=ev.batch_size, lr=ev.lr,
                                steps_per_epoch=self.steps_per_epoch, balanced=balanced,
                                batch_transform=batch_transform, device=self.device)

    def reference_model(self) -> torch.nn.Module:
        """The domain feature network (:mod:`medgan.classify.features`) on this study's real data."""
        from medgan.classify.features import reference_classifier

        td, ev = self.td, self.ev
        return reference_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"],
                                    num_classes=td.data.num_classes, epochs=ev.epochs, patience=ev.patience,
                                    batch_size=ev.batch_size, lr=ev.lr, steps_per_epoch=self.steps_per_epoch,
                                    device=self.device)

    def training_set(self, arm: Arm, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The arm's training images and labels for ``seed``, and the synthetic images added per class."""
        from medgan.evaluation.pool import draw_for_arm

        x, y = self.td.x["train"], self.td.y["train"]
        if not arm.synthetic:
            return x, y, [0] * self.td.data.num_classes
        assert self.pool_x is not None and self.pool_y is not None
        sel, msg = draw_for_arm(self.pool_y, self.allocs[arm.name], seed=seed)
        self.notes += [f"{arm.name} seed {seed}: {m}" for m in msg]
        return torch.cat([x, self.pool_x[sel]]), torch.cat([y, self.pool_y[sel]]), list(self.allocs[arm.name])


def run_arms(study: Study, arms: list[Arm], say: Callable[[str], None],
             feature_model: torch.nn.Module | None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float],
                                                              torch.nn.Module | None]:
    """Every arm x seed (seed-major): train, test on the real test split. Returns the runs, seconds per arm and
    the domain feature network when an ``oversample`` smallcnn run provided it."""
    from medgan.classify.fit import predict_proba
    from medgan.evaluation.classical import ClassicalAugment
    from medgan.evaluation.metrics import classification_metrics

    td, ev = study.td, study.ev
    names = td.data.class_names
    runs: dict[str, list[dict[str, Any]]] = {a.name: [] for a in arms}
    seconds: dict[str, float] = {a.name: 0.0 for a in arms}
    seeds = list(range(ev.seeds))
    for s in seeds:
        for arm in arms:
            x, y, n_syn = study.training_set(arm, s)
            aug = ClassicalAugment(td.data.spatial_dims, torch.Generator().manual_seed(s + 7919)) \
                if arm.classical else None
            res = study.fit(x, y, s, classifier=ev.classifier, balanced=arm.balanced, batch_transform=aug)
            prob = predict_proba(res.model, td.x["test"], study.device).numpy()
            m = classification_metrics(td.y["test"].numpy(), prob, names, study.scarce)
            runs[arm.name].append({"seed": s, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                                   "val_balanced_accuracy": res.val_balanced_accuracy, "val_loss": res.val_loss,
                                   "train_size": int(len(y)), "synthetic_per_class": list(n_syn),
                                   "seconds": res.seconds, "test": m})
            seconds[arm.name] += res.seconds
            say(f"  seed {s} {arm.name:<22} epochs {res.epochs_run:>3} (best {res.best_epoch:>3})  "
                f"val bal-acc {res.val_balanced_accuracy:.3f}  test bal-acc {m['balanced_accuracy']:.3f}  "
                f"scarce sens {m['scarce_sensitivity']:.3f}  [{res.seconds:.1f}s]")
            if arm.kind == "oversample" and s == seeds[0] and ev.classifier == "smallcnn" and feature_model is None:
                feature_model = res.model  # class-balanced, so its features also separate the scarce classes
            del res
    return runs, seconds, feature_model


def check_samples(study: Study, feature_model: torch.nn.Module, say: Callable[[str], None]
                  ) -> tuple[dict | None, dict | None, dict[str, Any]]:
    """Sample quality and memorisation of the pool (as asked); returns them and the images for the figures."""
    from medgan.classify.fit import extract_features

    td, ev = study.td, study.ev
    quality = privacy = None
    images: dict[str, Any] = {}
    if ev.quality:
        from medgan.evaluation.quality import sample_quality

        say("sample quality: Frechet/kernel distances, precision/recall/density/coverage, TSTR, diversity")
        quality = sample_quality(feature_model, td, study.pool_x, study.pool_y, device=study.device,
                                 epochs=ev.epochs, patience=ev.patience, batch_size=ev.batch_size, lr=ev.lr,
                                 steps_per_epoch=study.steps_per_epoch)
    if ev.privacy:
        from medgan.evaluation.privacy import memorisation_check

        say("memorisation: nearest real training image of every synthetic sample")
        privacy, pairs = memorisation_check(td.x["train"], td.y["train"], study.pool_x, study.pool_y,
                                            feature_fn=lambda t: extract_features(feature_model, t, study.device))
        images["nearest_pairs"] = pairs
    images["real_vs_synthetic"] = (td.x["train"], td.y["train"], study.pool_x, study.pool_y)
    return quality, privacy, images


def evaluate(cfg: Config, checkpoint: str | Path | None = None, synthetic: str | Path | SyntheticBank | None = None,
             out_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> Report:
    """Run the downstream study (and, when asked, sample quality and memorisation checks); write the report.

    ``checkpoint``: a generator checkpoint (synthetic images are drawn from it, leakage-guarded); ``synthetic``: an
    augment output folder or ``.npz``, or an in-memory :class:`~medgan.synthesis.bank.SyntheticBank` (its
    provenance is the caller's responsibility: no leakage guard); never both. Without either, only ``baseline``,
    ``oversample`` and ``classical`` can run. Returns the :class:`~medgan.evaluation.report.Report` (also written
    to ``out_dir``).
    """
    from medgan.data.preprocess import prepare
    from medgan.evaluation.pool import filter_pool
    from medgan.runtime import resolve_device

    say = log or (lambda s: None)
    ev = cfg.evaluate
    t_start = time.perf_counter()
    arms = check_request(ev, checkpoint, synthetic)
    if out_dir is not None:  # before hours of training: an unwritable --out is one line now, not a traceback later
        from medgan.io import ensure_writable_dir

        ensure_writable_dir(out_dir)
    if ev.threads > 0:
        torch.set_num_threads(ev.threads)
    device = resolve_device(ev.device, option="evaluate.device")
    data = load_real(cfg.data)
    real_counts = data.counts("train")
    allocs = {a.name: fill_smallest_first(real_counts, a.ratio) for a in arms if a.synthetic}
    pool, size = load_pool(cfg, data, arms, allocs, checkpoint, synthetic, say)
    study = Study(prepare(data, size), ev, device, scarce_classes(data), allocs)
    if pool is not None and str(pool.provenance.get("leakage_guard", "")).startswith("unverified"):
        study.notes.append(f"leakage guard {pool.provenance['leakage_guard']}")
        say(f"warning: leakage guard {pool.provenance['leakage_guard']}")
    td = study.td
    say(f"dataset {data.name}: train {real_counts}, val {data.counts('val')}, test {data.counts('test')}; "
        f"size {td.size}; scarce classes {[data.class_names[c] for c in study.scarce]}")

    feature_model = None
    filter_info = None
    if pool is not None and ev.filter_confidence > 0:
        say(f"sample filtering: reference classifier on the real training split, keeping synthetic images with "
            f"p(conditioned class) >= {ev.filter_confidence}")
        feature_model = study.reference_model()
        pool, filter_info = filter_pool(pool, feature_model, ev.filter_confidence, device, allocs)
        say(f"  kept per class {filter_info['kept']} of {filter_info['drawn']}")
    if pool is not None:
        study.pool_x, study.pool_y = pool.images, pool.labels
    runs, arm_seconds, feature_model = run_arms(study, arms, say, feature_model)

    quality = privacy = None
    images: dict[str, Any] = {}
    if pool is not None and (ev.quality or ev.privacy):
        if feature_model is None:
            say("training the reference small CNN on the real training split (feature space for quality checks)")
            feature_model = study.reference_model()
        quality, privacy, images = check_samples(study, feature_model, say)
    return _report(cfg, data, study, arms, runs, pool, filter_info, quality, privacy, images,
                   {"total_s": time.perf_counter() - t_start, "per_arm_s": arm_seconds}, out_dir, t_start)


def _report(cfg: Config, data: RealData, study: Study, arms: list[Arm], runs: dict[str, list[dict[str, Any]]],
            pool: SyntheticBank | None, filter_info: dict | None, quality: dict | None, privacy: dict | None,
            images: dict[str, Any], timing: dict[str, Any], out_dir: str | Path | None, t_start: float) -> Report:
    """Statistics over the runs and everything else the report holds; written to ``out_dir`` when given."""
    from medgan import __version__
    from medgan.evaluation.report import Report
    from medgan.evaluation.statistics import TEST_NAME, TEST_NOTE, summarise

    td, ev, d = study.td, study.ev, cfg.data
    summary, comparisons, verdicts = summarise(runs, data.class_names, [a.name for a in arms])
    info = {
        "medgan_version": __version__,
        "dataset": {"name": data.name, "class_names": list(data.class_names), "spatial_dims": data.spatial_dims,
                    "channels": data.channels, "size": td.size, "train_counts": data.counts("train"),
                    "val_counts": data.counts("val"), "test_counts": data.counts("test"),
                    "train_fingerprint": data.fingerprint(), "scarcity_spec": list(d.scarce),
                    "split_seed": d.split_seed, "scarce_classes": [data.class_names[c] for c in study.scarce]},
        "synthetic": None if pool is None else {**pool.provenance, "pool_counts": pool.counts,
                                                "allocation": study.allocs, "filter": filter_info},
        "protocol": {"classifier": ev.classifier, "epochs": ev.epochs, "patience": ev.patience,
                     "batch_size": ev.batch_size, "lr": ev.lr, "optimizer": "Adam",
                     "steps_per_epoch": study.steps_per_epoch, "seeds": list(range(ev.seeds)),
                     "selection": SELECTION, "budget": BUDGET_POLICY, "allocation_policy": ALLOCATION_POLICY,
                     "test": TEST_NAME, "test_note": TEST_NOTE, "ci": "95% t-interval over seeds",
                     "device": str(study.device)},
        "arms": [{"name": a.name, "kind": a.kind, "ratio": a.ratio} for a in arms],
        "runs": runs,
        "summary": summary,
        "comparisons": comparisons,
        "verdicts": verdicts,
        "quality": quality,
        "privacy": privacy,
        "notes": study.notes,
        "timing": timing,
        "config": cfg.model_dump(mode="json"),
    }
    report = Report(info, images=images)
    if out_dir is not None:
        report.write(out_dir)
        report.data["timing"]["total_s"] = time.perf_counter() - t_start
        report.write_json(out_dir)
    return report
