"""``medgan evaluate``: does adding synthetic images make a classifier better on the scarce classes than the best
conventional option?

:func:`evaluate` runs in named stages:

1. :func:`check_request`: the arms (:mod:`medgan.evaluation.arms`) and protocol settings, before any work;
2. :func:`load_real`: the real dataset with its scarcity, which must have real validation and test images;
3. :func:`load_pool`: the synthetic pool from a checkpoint or an augment folder, behind the leakage guard, with
   optional sample filtering (:mod:`medgan.evaluation.pool`);
4. :func:`~medgan.evaluation.study.run_arms`: every arm x seed trains the same classifier and is tested on the
   real test split at operating points chosen on validation; finished runs are stored and a re-run resumes
   (:mod:`medgan.evaluation.study`, :mod:`medgan.evaluation.runstore`);
5. :func:`check_samples`: sample quality (:mod:`medgan.evaluation.quality`) and memorisation
   (:mod:`medgan.evaluation.privacy`) in the feature space of the teacher (:mod:`medgan.classify.teacher`: reused
   from the training run when it was fitted on the same images, else fitted here), which also judges sample
   filtering; in a scarcity simulation also in the eyes of an oracle teacher fitted on the full training split
   (:func:`oracle_section`: measuring only, ``evaluate.oracle_teacher``);
6. the verdict (:mod:`medgan.evaluation.comparison`) and the :class:`~medgan.evaluation.report.Report`.

Test images are always real; nothing is tuned or chosen on them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.errors import EvaluationError
from medgan.evaluation.arms import BUDGET_POLICY, Arm, expand_arms, scarce_classes
from medgan.evaluation.study import Study, run_arms
from medgan.synthesis.allocation import fill_smallest_first
from medgan.synthesis.bank import SyntheticBank

if TYPE_CHECKING:
    from medgan.classify.yardstick import Yardstick
    from medgan.config import Config, DataConfig, EvalConfig, TeacherConfig
    from medgan.data.dataset import RealData
    from medgan.evaluation.report import Report
    from medgan.training.checkpoint import CheckpointChoice

ALLOCATION_POLICY = (
    "ratio R adds round(R x N_real) synthetic images, given to the classes with the fewest real images first "
    "(water filling: lowest classes raised level until equal, the rest one each, fewest-real classes first); "
    "'balance' tops every class up to the majority count"
)


def check_request(ev: EvalConfig, checkpoint: Any, synthetic: Any) -> list[Arm]:
    """The arms to run; refuses a request that cannot work before anything is loaded or trained."""
    if checkpoint is not None and synthetic is not None:
        raise EvaluationError("pass either --checkpoint or --synthetic, not both")
    arms = expand_arms(list(ev.arms), list(ev.ratios))
    if any(a.synthetic for a in arms) and not any(not a.synthetic for a in arms):
        gan = ", ".join(a.name for a in arms)
        raise EvaluationError(f"arms {gan} have nothing to be compared with: the verdict is about beating the best "
                              "conventional option; add a conventional arm, e.g. --arms baseline,"
                              f"classical+oversample,{','.join(dict.fromkeys(a.kind for a in arms))}")
    if any(a.synthetic for a in arms) and checkpoint is None and synthetic is None:
        gan = ", ".join(a.name for a in arms if a.synthetic)
        raise EvaluationError(f"arms {gan} need synthetic images: pass --checkpoint RUN/checkpoints/last.pt or "
                              "--synthetic AUGMENT_OUTPUT, or keep only --arms baseline,oversample,classical")
    if ev.seeds < 2:
        raise EvaluationError(f"--seeds {ev.seeds}: confidence intervals and paired tests need at least 2 seeds; "
                              "use --seeds 5 (or 10 for permutation p-values below 0.0625)")
    if ev.epochs < 1 or ev.batch_size < 1 or ev.patience < 1:
        raise EvaluationError("evaluate.epochs, evaluate.batch_size and evaluate.patience must be at least 1")
    if ev.min_epochs < 0:
        raise EvaluationError(f"evaluate.min_epochs must be >= 0, got {ev.min_epochs}")
    return arms


def load_real(d: DataConfig, tuning: bool = False) -> RealData:
    """The evaluation's real data: ``--dataset`` with ``--scarce`` applied; every class in the test split. ``tuning``:
    the tuning view (:func:`medgan.data.splits.tuning_view`: no test split; validation halved to select and score)."""
    from medgan.data.sources import load_dataset
    from medgan.data.splits import tuning_view
    from medgan.evaluation.metrics import check_test_classes

    data = load_dataset(d.dataset, d.data_dir, d.split_seed, d.download, list(d.scarce))
    for split in ("val", "test"):
        if split not in data.splits or len(data.splits[split]) == 0:
            raise EvaluationError(f"dataset '{data.name}' has no {split} split; evaluation needs real val and test "
                                  "images")
    if tuning:
        data = tuning_view(data, d.split_seed)
    check_test_classes(data.splits["test"].labels, data.class_names, "test")
    return data


def load_pool(cfg: Config, data: RealData, arms: list[Arm], allocs: dict[str, list[int]],
              checkpoint: str | Path | CheckpointChoice | None, synthetic: str | Path | SyntheticBank | None,
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
        return pool_from_checkpoint(checkpoint, data, size, n_pc, cfg.augment.seed, say, ev.pool, ev.strength,
                                    pairs=ev.pairs)
    if isinstance(synthetic, SyntheticBank):
        size = int(synthetic.shape[-1])
        check_matches_dataset(list(synthetic.class_names), synthetic.shape, data, size, "the synthetic pool")
        return synthetic, size
    if synthetic is not None and need:
        pool, size = pool_from_folder(synthetic, data, size)
        if ev.pairs and pool.pair_ids is None:
            raise EvaluationError(f"evaluate.pairs: {synthetic} holds no counterfactual pairs; write it with 'medgan "
                                  "augment --pairs' or draw the pool from --checkpoint")
        return pool, size
    return None, size


def check_samples(study: Study, ys: Yardstick, settings: TeacherConfig, source: str, say: Callable[[str], None]
                  ) -> tuple[dict | None, dict | None, dict[str, Any]]:
    """Sample quality and memorisation of the pool (as asked) in the teacher's eyes; returns them and the images
    for the figures."""
    td, ev = study.td, study.ev
    quality = privacy = None
    images: dict[str, Any] = {}
    if ev.quality:
        from medgan.evaluation.quality import sample_quality

        say("sample quality (the teacher's features): Frechet/kernel distances, fidelity, diversity, "
            "precision/recall/density/coverage, TSTR")
        quality = sample_quality(ys, td, study.pool_x, study.pool_y, settings=settings, device=study.device,
                                 source=source)
    if ev.privacy:
        from medgan.evaluation.privacy import memorisation_check

        say("memorisation: nearest real training image of every synthetic sample")
        privacy, pairs = memorisation_check(td.x["train"], td.y["train"], study.pool_x, study.pool_y,
                                            feature_fn=ys.teacher.features)
        images["nearest_pairs"] = pairs
    images["real_vs_synthetic"] = (td.x["train"], td.y["train"], study.pool_x, study.pool_y)
    return quality, privacy, images


def oracle_section(cfg: Config, study: Study, out_dir: Path | None, say: Callable[[str], None]) -> dict[str, Any]:
    """The sample quality of the pool in the eyes of the oracle teacher (:func:`medgan.evaluation.quality.
    oracle_quality`), or why it was not measured (``evaluate.oracle_teacher``). Measuring only: nothing else reads
    it."""
    from medgan.evaluation.quality import ORACLE_LABEL, oracle_decision, oracle_quality

    wanted, why = oracle_decision(cfg.evaluate.oracle_teacher, study.td.data.scarcity)
    if not wanted:
        return {"label": ORACLE_LABEL, "measured": False, "why": why}
    say(f"sample quality in the eyes of the {ORACLE_LABEL}: {why}")
    return {"measured": True, **oracle_quality(cfg.teacher, cfg.data, study.td, study.pool_x, study.pool_y,
                                               study.device, out_dir, why, say)}


def request_of(cfg: Config, data: RealData, pool: SyntheticBank | None, device: torch.device,
               study_group_size: int) -> dict[str, Any]:
    """What the stored runs depend on (:mod:`medgan.evaluation.runstore`): not the arms or the number of seeds,
    nor the verdict settings (primary metric, target specificity, alpha), which are recomputed from the runs."""
    from medgan import __version__

    ev = cfg.evaluate
    pool_digest = None
    if pool is not None:
        h = hashlib.sha256(pool.raw_data.tobytes())
        h.update(pool.labels.numpy().tobytes())
        pool_digest = h.hexdigest()
    return {"medgan_version": __version__, "train_fingerprint": data.fingerprint(),
            "val_test_sizes": [len(data.splits["val"]), len(data.splits["test"])], "size": cfg.data.size,
            **({"tuning": True} if ev.tuning else {}),
            "pool": pool_digest, "device": device.type,
            "group_size": study_group_size,
            **{k: getattr(ev, k) for k in ("classifier", "epochs", "patience", "min_epochs", "select", "batch_size",
                                          "lr", "classical", "amp", "channels_last")}}


def evaluate(cfg: Config, checkpoint: str | Path | None = None, synthetic: str | Path | SyntheticBank | None = None,
             out_dir: str | Path | None = None, log: Callable[[str], None] | None = None, progress: bool = False,
             restart: bool = False) -> Report:
    """Run the downstream study (and, when asked, sample quality and memorisation checks); write the report.

    ``checkpoint``: a generator checkpoint, or a run folder (its ``best.pt`` when quality tracking wrote one, else
    ``last.pt``: :func:`~medgan.training.checkpoint.resolve_checkpoint`; the file is always logged), resolved and loaded
    once; synthetic images are drawn from it, leakage-guarded. ``synthetic``: an
    augment output folder or ``.npz``, or an in-memory :class:`~medgan.synthesis.bank.SyntheticBank` (its
    provenance is the caller's responsibility: no leakage guard); never both. Without either, only conventional
    arms can run. With ``out_dir``, finished runs are stored there and a repeated call resumes (``restart``:
    discard them). ``progress``: a progress bar with ETA over the runs. Returns the
    :class:`~medgan.evaluation.report.Report` (also written to ``out_dir``).
    """
    say = log or (lambda s: None)
    ev = cfg.evaluate
    t_start = time.perf_counter()
    arms = check_request(ev, checkpoint, synthetic)
    if ev.oracle_teacher == "on" and not cfg.data.scarce:
        from medgan.evaluation.quality import oracle_decision

        oracle_decision("on", None)  # refused before any work: an oracle needs a scarcity simulation
    if checkpoint is not None:  # resolved once, here; loaded once, by the pool (pool_from_checkpoint)
        from medgan.training.checkpoint import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint)
        say(f"checkpoint: {checkpoint.describe()}")  # always: which file, before any work
    lock = files = None
    if out_dir is not None:  # before hours of training: an unwritable --out is one line now, not a traceback later
        from medgan.evaluation.quality import ORACLE_FILES, TEACHER_FILES
        from medgan.evaluation.runstore import REPORT_FILES, check_runs, legacy_files
        from medgan.io import ensure_writable_dir
        from medgan.locks import FolderLock
        from medgan.outputs import OutputFolder

        created = not Path(out_dir).exists()
        ensure_writable_dir(out_dir)
        lock = FolderLock(out_dir, "medgan evaluate").acquire()  # one evaluation per report folder
    try:
        if lock is not None:  # medgan's own folder, nothing of the user's in the way (medgan.outputs)
            files = OutputFolder(out_dir, "evaluate", legacy=legacy_files).open()
            files.check(REPORT_FILES)
            files.check(TEACHER_FILES)
            files.check(ORACLE_FILES)
            check_runs(files)
        return _evaluate(cfg, arms, checkpoint, synthetic, files, say, progress, restart, t_start)
    finally:
        if files is not None:
            files.close()
        if lock is not None:
            lock.release()
            if created:  # a request refused before anything was written leaves no folder behind
                try:
                    Path(out_dir).rmdir()
                except OSError:
                    pass


def _evaluate(cfg: Config, arms: list[Arm], checkpoint, synthetic, files, say, progress: bool, restart: bool,
              t_start: float) -> Report:
    """The stages of :func:`evaluate` (module docstring), with the output folder (``files``) locked and open."""
    from medgan.data.preprocess import prepare
    from medgan.evaluation.pool import check_pool_classes, filter_pool
    from medgan.evaluation.runstore import RunStore
    from medgan.runtime import resolve_device

    ev = cfg.evaluate
    if ev.threads > 0:
        torch.set_num_threads(ev.threads)
    device = resolve_device(ev.device, option="evaluate.device")
    data = load_real(cfg.data, ev.tuning)
    real_counts = data.counts("train")
    allocs = {a.name: fill_smallest_first(real_counts, a.ratio) for a in arms if a.synthetic}
    pool, size = load_pool(cfg, data, arms, allocs, checkpoint, synthetic, say)
    if pool is not None:
        check_pool_classes(pool, allocs, real_counts)  # every class the GAN arms add, before the first run
    study = Study(prepare(data, size), ev, device, scarce_classes(data), allocs)
    if pool is not None and str(pool.provenance.get("leakage_guard", "")).startswith("unverified"):
        study.notes.append(f"leakage guard {pool.provenance['leakage_guard']}")
        say(f"warning: leakage guard {pool.provenance['leakage_guard']}")
    td = study.td
    say(f"dataset {data.name}: train {real_counts}, val {data.counts('val')}, test {data.counts('test')}; "
        f"size {td.size}; scarce classes {[data.class_names[c] for c in study.scarce]}")

    ys = None
    source = ""
    filter_info = None
    if pool is not None and (ev.filter_confidence > 0 or ev.quality or ev.privacy):
        from medgan.evaluation.quality import evaluation_teacher

        ys, source = evaluation_teacher(cfg.teacher, td, device, pool.provenance,
                                        files.path if files is not None else None, say)
        say(f"teacher: {source}")
    if pool is not None and ev.filter_confidence > 0:
        say(f"sample filtering: keeping synthetic images the teacher gives p(conditioned class) >= "
            f"{ev.filter_confidence}")
        pool, filter_info = filter_pool(pool, ys.teacher, ev.filter_confidence, device, allocs)
        say(f"  kept per class {filter_info['kept']} of {filter_info['drawn']}")
    if pool is not None:
        study.pool_x, study.pool_y = pool.array_images, pool.labels
    # the largest group the settings allow (groups are fixed seed ranges, part of what a run depends on)
    study.store = RunStore(files, request_of(cfg, data, pool, device, study.group_size(2**20)), restart)
    runs, arm_seconds = run_arms(study, arms, say, progress)

    quality = privacy = None
    images: dict[str, Any] = {}
    if pool is not None and (ev.quality or ev.privacy):
        quality, privacy, images = check_samples(study, ys, cfg.teacher, source, say)
    if quality is not None:
        quality["oracle"] = oracle_section(cfg, study, files.path if files is not None else None, say)
    return _report(cfg, data, study, arms, runs, pool, filter_info, quality, privacy, images,
                   {"total_s": time.perf_counter() - t_start, "per_arm_s": arm_seconds},
                   files.path if files is not None else None, t_start)


def _grouping(runs: dict[str, list[dict[str, Any]]]) -> str:
    """How the runs were trained: stacked groups (their sizes and precision) or one by one, and why."""
    sizes = sorted({int(r.get("group", 1)) for rs in runs.values() for r in rs})
    precision = sorted({str(r.get("precision", "float32")) for rs in runs.values() for r in rs})
    if sizes == [1]:
        return (f"one by one ({', '.join(precision)}): evaluate.group_size 1, a memory budget below two members, a "
                "network that cannot be stacked, or a ResNet-18 on a CPU (no faster stacked there)")
    return (f"the seeds of each arm trained together as stacked networks of {', '.join(map(str, sizes))} members "
            f"({', '.join(precision)}); each member as if alone (medgan.classify.group)")


def _report(cfg: Config, data: RealData, study: Study, arms: list[Arm], runs: dict[str, list[dict[str, Any]]],
            pool: SyntheticBank | None, filter_info: dict | None, quality: dict | None, privacy: dict | None,
            images: dict[str, Any], timing: dict[str, Any], out_dir: str | Path | None, t_start: float) -> Report:
    """The verdict over the runs and everything else the report holds; written to ``out_dir`` when given."""
    from medgan import __version__
    from medgan.evaluation.comparison import verdict
    from medgan.evaluation.report import Report
    from medgan.evaluation.statistics import CI, TEST_NAME, TEST_NOTE

    td, ev, d = study.td, study.ev, cfg.data
    v = verdict(runs, arms, data.class_names, ev.primary, ev.alpha)
    info = {
        "medgan_version": __version__,
        "headline": ([f"TUNING VIEW, validation numbers only: {data.extra['tuning']}. Use them to choose; report "
                      "test numbers from an evaluation without --tuning."] if ev.tuning else []) + v["headline"],
        "dataset": {"name": data.name, "class_names": list(data.class_names), "spatial_dims": data.spatial_dims,
                    "channels": data.channels, "size": td.size, "train_counts": data.counts("train"),
                    "val_counts": data.counts("val"), "test_counts": data.counts("test"),
                    "train_fingerprint": data.fingerprint(), "scarcity_spec": list(d.scarce),
                    "split_seed": d.split_seed, "scarce_classes": [data.class_names[c] for c in study.scarce],
                    **({"tuning": data.extra["tuning"]} if ev.tuning else {})},
        "synthetic": None if pool is None else {**pool.provenance, "pool_counts": pool.counts,
                                                "allocation": study.allocs, "filter": filter_info},
        "protocol": {"classifier": ev.classifier, "epochs": ev.epochs, "patience": ev.patience,
                     "min_epochs": ev.min_epochs, "batch_size": ev.batch_size, "lr": ev.lr, "optimizer": "Adam",
                     "steps_per_epoch": study.steps_per_epoch, "seeds": list(range(ev.seeds)),
                     "selection": f"best real-validation {ev.select}", "budget": BUDGET_POLICY,
                     "classical": ev.classical, "target_specificity": ev.target_specificity,
                     "allocation_policy": ALLOCATION_POLICY, "test": TEST_NAME, "test_note": TEST_NOTE, "ci": CI,
                     "device": str(study.device), "grouping": _grouping(runs)},
        "arms": [{"name": a.name, "kind": a.kind, "ratio": a.ratio, "conventional": not a.synthetic} for a in arms],
        "primary": v["primary"],
        "best_conventional": v["best_conventional"],
        "best_gan": v["best_gan"],
        "runs": runs,
        "summary": v["summary"],
        "comparisons": v["comparisons"],
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
