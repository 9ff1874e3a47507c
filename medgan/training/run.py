"""The run: ``train(cfg, out_dir)`` sets up a run directory, then trains on a schedule of periodic hooks.

Run directory::

    out/config.yaml                   the resolved configuration
    out/checkpoints/last.pt           self-describing checkpoint (see medgan.training.checkpoint)
    out/checkpoints/best.pt           the best checkpoint by tracked quality (see medgan.training.tracking)
    out/checkpoints/step_N.pt         every train.checkpoint_every steps
    out/samples/real.png              real training images per class (for comparison)
    out/samples/step_N.png            per-class grid from FIXED noise with the EMA generator
    out/metrics.jsonl                 one JSON line every train.log_every steps
    out/curves.png                    losses and D outputs at the end
    out/train.log                     the text log (warnings such as the mode-collapse alarm)
    out/tensorboard/                  when train.tensorboard is on
    out/teacher/                      the teacher (medgan.classify.teacher: quality tracking's yardstick, cached for
                                      --resume and reused by evaluate) and its own numbers (teacher.json)
    out/.medgan-run                   marks the folder as a medgan run (written first)
    out/.medgan.lock                  the folder's lock, while a command runs in it

The folder is locked for the run (:class:`medgan.locks.FolderLock`: a second ``medgan train`` or ``augment``
into it is refused while the first runs) and marked as a run folder (``.medgan-run``) before anything else is
written. A run that stopped before its first checkpoint (a full disk, non-finite losses, ``kill -9``) is no dead
end: a new ``train`` (or ``--resume``) into the folder starts it over, replacing only what the failed run wrote.
Temporary files of an interrupted checkpoint write (``checkpoints/.last.pt.*.tmp``) are removed on every start.

``train(cfg, out, resume=True)`` continues from ``out/checkpoints/last.pt`` exactly: on CPU, 10 steps + resume
to 20 gives bit-identical weights to 20 steps in one go (the checkpoint holds every RNG stream).

The loop itself only runs :meth:`~medgan.training.trainer.Trainer.train_step` up to the next step at which some
hook is due; everything periodic is a :class:`Hook` (as MONAI's handlers, or the sections of StyleGAN2-ADA's
training loop), run in this order at each due step (:func:`default_hooks`): the non-finite-loss guard, collecting
the logged statistics, the collapse alarm, quality tracking, writing the metrics line, the curves, the sample grid,
the checkpoints (:mod:`medgan.training.hooks`, :mod:`medgan.training.tracking`).

With ``model.kind: translator`` the same run trains the image-conditioned translator instead
(:class:`medgan.training.translator.TranslatorTrainer`, its hooks: no collapse alarm, no quality tracking; the
sample grids show real sources and their translations).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.errors import CheckpointError, OutputError
from medgan.io import atomic_write, is_disk_error
from medgan.locks import FolderLock
from medgan.outputs import OutputFolder
from medgan.runtime import derive_seed
from medgan.training import hooks, monitor
from medgan.training.checkpoint import check_finite_weights, load_checkpoint, save_checkpoint
from medgan.training.distributed import close_distributed, init_distributed
from medgan.training.hooks import DIVERSITY_PER_CLASS, GRID_PER_CLASS, Hook, RunState
from medgan.training.tracking import TrackQuality
from medgan.training.trainer import Trainer

if TYPE_CHECKING:
    from medgan.config import Config
    from medgan.data.preprocess import TensorData

log = logging.getLogger("medgan.train")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    checkpoint: Path
    step: int
    images_per_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: Path | None = None
    seconds: float = 0.0
    start_step: int = 0
    """The step the run started from (> 0 after ``--resume``)."""
    kind: str = "dcgan"
    """What was trained (``model.kind``)."""

    def summary(self) -> str:
        """What the CLI prints: the steps run by this call and their speed, the last losses, where the checkpoint,
        samples and metrics are."""
        m = self.metrics
        ran = self.step - self.start_step
        span = f" ({self.start_step} -> {self.step})" if self.start_step else ""
        lines = [f"trained {ran} steps{span} in {self.seconds:.0f} s ({self.images_per_s:.1f} images/s)"]
        if m:
            nan = float("nan")
            lines.append(f"last losses: D {m.get('loss_d', nan):.4f}, G {m.get('loss_g', nan):.4f}; "
                         f"D(x) {m.get('d_real', nan):.3f}, D(G(z)) {m.get('d_fake', nan):.3f}")
        lines += self._checkpoint_lines()
        if self.samples is not None:
            lines.append(f"samples:    {self.samples}")
        lines.append(f"metrics:    {self.out_dir / 'metrics.jsonl'}")
        return "\n".join(lines)

    def _checkpoint_lines(self) -> list[str]:
        """Both checkpoints, and the one ``augment``, ``evaluate`` and ``export`` use when given the run folder
        (:func:`~medgan.training.checkpoint.resolve_checkpoint`: ``best.pt`` when present, else ``last.pt``)."""
        from medgan.errors import CheckpointError
        from medgan.training.checkpoint import resolve_checkpoint

        lines = []
        if self.checkpoint.is_file():
            lines.append(f"checkpoint: {self.checkpoint} (the last; --resume continues it)")
        if self.kind == "translator":
            return lines + ["an image translator: it translates real images (medgan.ImageTranslator.from_checkpoint "
                            "of this run folder), it does not sample"]
        best = self.checkpoint.parent / "best.pt"
        if best.is_file():
            lines.append(f"best:       {best} (the best by tracked quality)")
        try:
            used = resolve_checkpoint(self.out_dir).path
        except CheckpointError:
            return lines
        lines.append(f"augment, evaluate and export of {self.out_dir} use {used.name}"
                     + ("" if best.is_file() else " (no best.pt: quality tracking was off)"))
        return lines


#: Written first into every run folder: marks a medgan run (older medgan versions kept no other record).
RUN_MARK = ".medgan-run"
#: What a run writes (``fnmatch`` patterns relative to the run folder).
RUN_FILES = (RUN_MARK, "config.yaml", "train.log", "metrics.jsonl", "curves.png", "checkpoints/*.pt", "samples/*.png",
             "teacher/*", "tracking/*", "tensorboard/events.out.tfevents.*")  # tracking/: older medgan versions
#: What a run that stopped before its first checkpoint wrote and a start-over replaces.
RESTART_FILES = ("metrics.jsonl", "curves.png", "samples/*.png", "checkpoints/best.pt", "checkpoints/step_*.pt",
                 "tensorboard/events.out.tfevents.*")


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(rel, p) and rel.count("/") == p.count("/") for p in patterns)


def _legacy_run(out: Path) -> list[str] | None:
    """The files of a run folder written by a medgan that kept no ownership record (it has the run mark)."""
    if not (out / RUN_MARK).is_file():
        return None
    found = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    return [r for r in found if _matches(r, RUN_FILES)]


def run_folder(out: Path) -> OutputFolder:
    """The run folder as :class:`~medgan.outputs.OutputFolder` (not yet opened)."""
    return OutputFolder(out, "train", legacy=_legacy_run)


def check_run_dir(files: OutputFolder, resume: bool) -> tuple[Path | None, bool]:
    """Refuse to overwrite a run; returns the checkpoint to continue from (with ``resume``) and whether the folder
    holds a medgan run that stopped before its first checkpoint (started over from step 0).

    ``files`` is the opened run folder (a folder medgan did not write was refused when it was opened). Every file
    the run will replace must still be the one medgan wrote: one that was changed or put there since stops the
    run now, naming it."""
    out = files.path
    last = out / "checkpoints" / "last.pt"
    existing = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink()]
    files.check(sorted({*(r for r in existing if _matches(r, RUN_FILES)), RUN_MARK, "config.yaml", "train.log",
                        "metrics.jsonl", "curves.png", "samples/real.png", "checkpoints/last.pt",
                        "checkpoints/best.pt", "checkpoints", "samples", "teacher", "tracking",
                        "tensorboard"}))
    if last.is_file():
        if resume:
            return last, False
        raise OutputError(f"{out} already holds a run (checkpoints/last.pt); use --resume to continue it or pass "
                          "another --out")
    if (out / RUN_MARK).is_file():  # medgan's own run that never reached a checkpoint: start it over
        return None, True
    if resume:
        raise CheckpointError(f"--resume: no checkpoint at {last}; drop --resume to start a new run there")
    return None, False


def _clean_stale(files: OutputFolder, restart: bool) -> None:
    """Remove temporaries of medgan's interrupted atomic writes; when ``restart``, also what the failed run wrote
    (it never reached a checkpoint, so none of it describes the new run), file by file, only what medgan wrote."""
    out = files.path
    for d in ("", "checkpoints", "samples"):
        folder = out / d
        if not folder.is_dir() or folder.is_symlink():
            continue
        for tmp in folder.glob(".*.tmp"):  # atomic_write's temporaries: .<name>.<random>.tmp
            base = tmp.name[1:-4].rsplit(".", 1)[0]
            if _matches(f"{d}/{base}" if d else base, RUN_FILES):
                tmp.unlink(missing_ok=True)
    if restart:
        files.remove_matching(keep=lambda r: not _matches(r, RESTART_FILES))


def _disk_error(e: OSError, out: Path, state: RunState | None) -> OutputError:
    """A full or read-only disk as one line: what failed, what is kept, how to go on."""
    if state is not None and state.last_ckpt is not None:
        kept = f"the last good checkpoint is {state.last_ckpt} (step {state.last_ckpt_step})"
        fix = "free space, then continue with --resume"
    else:
        kept = "no checkpoint was written yet"
        fix = "free space (or choose another --out), then run again: the run starts over"
    what = f" writing {e.filename}" if e.filename else ""
    return OutputError(f"{e.strerror or 'write failed'}{what} in {out}; {kept}; {fix}")


def check_resumable(ckpt: dict[str, Any], cfg: Config, tdata: TensorData, path: Path) -> None:
    """A checkpoint can only be resumed with the same data (classes, shape, training images) and model."""
    cd = ckpt.get("data") or {}
    here = {**tdata.data.meta(), "size": tdata.size}
    run_spec = ((ckpt.get("config") or {}).get("data") or {}).get("dataset")
    for key, what in (("class_names", "classes"), ("spatial_dims", "dims"), ("channels", "channels"),
                      ("size", "model size"), ("train_fingerprint", "training images")):
        if key == "train_fingerprint" and not cd.get(key):
            continue
        if cd.get(key) == here.get(key):
            continue
        if key != "size" and run_spec is not None and str(run_spec) != str(cfg.data.dataset):
            raise CheckpointError(
                f"cannot resume {path}: the run used the dataset {run_spec!r}, this call asks for "
                f"{str(cfg.data.dataset)!r} (their {what} differ); drop --dataset to resume with the run's own "
                f"(its config.yaml names it) or pass --dataset {run_spec}"
            )
        if key != "train_fingerprint":
            raise CheckpointError(
                f"cannot resume {path}: it was trained on '{cd.get('name')}' with {what} {cd.get(key)}, this run "
                f"uses '{here['name']}' with {what} {here.get(key)}; resume with the same dataset/--size or use "
                "another --out"
            )
        raise CheckpointError(
            f"cannot resume {path}: its training images differ from this run's ('{cd.get('name')}' vs "
            f"'{here['name']}', --scarce/--data-dir/split seed changed?); resume with the same data or use another --out"
        )
    old_model = (ckpt.get("config") or {}).get("model") or {}
    new_model = cfg.model.model_dump(mode="json")
    diff = [k for k in new_model if old_model.get(k) != new_model[k]]
    if diff:
        k = diff[0]
        raise CheckpointError(f"cannot resume {path}: model.{k} is {old_model.get(k)!r} there but {new_model[k]!r} "
                              "now; resume with the run's config.yaml or use another --out")


# --------------------------------------------------------------------------------------------------- run


def default_hooks(cfg: Config) -> list[Hook]:
    """The hooks of a run, in the order they run at a step where several are due."""
    if cfg.model.kind == "translator":
        from medgan.training.translator import translator_hooks

        return translator_hooks(cfg)
    t = cfg.train
    return [hooks.NonFiniteGuard(t.log_every, t.checkpoint_every, t.eval_every), hooks.CollectStats(t.log_every),
            hooks.CollapseCheck(t.collapse_every),
            TrackQuality(t.eval_every, t.eval_samples, t.drift_threshold),
            hooks.WriteLog(t.log_every), hooks.Curves(t.log_every), hooks.SampleGrid(t.sample_every),
            hooks.SaveCheckpoint(t.checkpoint_every)]


def _setup_run_dir(state: RunState, resume: bool, start: int, restart: bool) -> logging.Handler:
    """Rank 0: the run mark, folders, ``config.yaml``, the text log, the real-image grid and the collapse alarm's
    reference."""
    trainer, cfg, out = state.trainer, state.cfg, state.out
    t, tdata = cfg.train, trainer.tdata
    atomic_write(out / RUN_MARK, "medgan train run folder\n")
    _clean_stale(state.files, restart)
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    atomic_write(out / "config.yaml", cfg.to_yaml())
    handler = monitor.add_file_log(out / "train.log")
    state.metrics.truncate_after(start)
    if restart:
        log.info("the run in %s stopped before its first checkpoint: starting it over", out)
    log.info("%s run: dataset %s (%s, train counts %s), model size %d, device %s, balanced batches %s, "
             "world size %d, from step %d to %d", "resumed" if resume and start else "new", tdata.data.name,
             "x".join(map(str, tdata.shape)), trainer.counts, tdata.size, trainer.device,
             trainer.balanced, state.dist.world_size, start, t.steps)
    if not (out / "samples" / "real.png").exists():
        from medgan.viz import save_grid

        save_grid(out / "samples" / "real.png", tdata.x["train"], tdata.y["train"], trainer.class_names,
                  per_class=GRID_PER_CLASS, title=f"{tdata.data.name}: real training images")
    if t.collapse_every > 0 and cfg.model.kind == "dcgan":
        from medgan.distances import within_class_diversity

        g = torch.Generator().manual_seed(derive_seed(t.seed, 15485863))
        real_div = within_class_diversity(tdata.x["train"], tdata.y["train"], trainer.num_classes,
                                          max_per_class=DIVERSITY_PER_CLASS, generator=g)
        state.alarm = monitor.CollapseAlarm(real_div, trainer.class_names, t.collapse_threshold)
    return handler


def _loop(state: RunState, hooks: list[Hook], steps: int) -> None:
    """Train up to the next due hook, run the due hooks, repeat until ``steps``."""
    trainer, t = state.trainer, state.cfg.train
    main = state.dist.is_main
    while state.step < steps:
        nxt = min([steps] + [n for h in hooks if (n := h.next_due(state.step)) is not None])
        t0 = time.perf_counter()
        for _ in range(nxt - state.step):
            trainer.train_step()
        trainer.sync()
        dt = time.perf_counter() - t0
        state.progress.update(nxt - state.step)
        state.chunk_seconds = dt
        state.chunk_images = (nxt - state.step) * t.batch_size * t.d_steps * state.dist.world_size
        state.train_seconds += dt
        state.train_images += state.chunk_images
        state.step = nxt
        state.final = state.step >= steps
        state.logging_now = False
        for h in hooks:
            if (main or not h.main_only) and h.due(state):
                h(state)


def train(cfg: Config, out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train a conditional GAN as configured and keep a run directory in ``out_dir`` (see the module docstring).

    Raises :class:`~medgan.errors.OutputError` when ``out_dir`` already holds a run (without ``resume``), is in use
    by another process, or the disk is full or read-only, :class:`~medgan.errors.CheckpointError` for a
    missing/incompatible checkpoint on resume, :class:`~medgan.errors.TrainingError` when the losses become
    non-finite (the last good checkpoint is kept).
    """
    out = Path(out_dir)
    dist, owns_group = init_distributed(cfg.train.device)
    lock = FolderLock(out, "medgan train") if dist.is_main else None
    files = run_folder(out) if dist.is_main else None
    state: RunState | None = None
    handler = None
    try:
        if lock is not None:
            lock.acquire()
            files.open()
        state, handler = _start(cfg, out, resume, dist, files)
        return _run(state)
    except OSError as e:
        if is_disk_error(e):
            raise _disk_error(e, out, state) from None
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if files is not None:
            if state is not None and state.tb is not None:
                for p in sorted((out / "tensorboard").glob("events.out.tfevents.*")):
                    files.adopt(p.relative_to(files.path).as_posix())
            files.close()
        if lock is not None:
            lock.release()
        close_distributed(owns_group)


def _start(cfg: Config, out: Path, resume: bool, dist, files: OutputFolder | None
           ) -> tuple[RunState, logging.Handler | None]:
    """Setup: the run folder, the data, the trainer (from the checkpoint when resuming)."""
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    t = cfg.train
    if files is not None:
        ckpt_path, restart = check_run_dir(files, resume)
    else:  # another rank: rank 0 checked the folder
        last = out / "checkpoints" / "last.pt"
        ckpt_path, restart = (last if resume and last.is_file() else None), False
    ckpt = load_checkpoint(ckpt_path, kind=cfg.model.kind) if ckpt_path is not None else None
    if ckpt is not None:
        for key in ("generator", "ema_generator", "discriminator", "translator", "ema_translator"):
            check_finite_weights(ckpt.get(key), key.replace("_", " "), ckpt_path)
    if t.tensorboard and dist.is_main:
        monitor.TensorBoard.check_available()
    data = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, split_seed=cfg.data.split_seed,
                        download=cfg.data.download, scarce=cfg.data.scarce)
    tdata = prepare(data, cfg.data.size)
    if ckpt is not None:
        check_resumable(ckpt, cfg, tdata, ckpt_path)
    if cfg.model.kind == "translator":
        from medgan.training.translator import TranslatorTrainer

        trainer = TranslatorTrainer(cfg, tdata, dist=dist)
    else:
        trainer = Trainer(cfg, tdata, dist=dist)
    tracking: dict[str, Any] = {}
    if ckpt is not None:
        trainer.load_payload(ckpt)
        tracking = dict((ckpt.get("state") or {}).get("tracking") or {})
        del ckpt
    start = trainer.step
    z_fix, y_fix = trainer.fixed_noise(max(GRID_PER_CLASS, DIVERSITY_PER_CLASS))
    state = RunState(trainer, cfg, out, dist, data.name, monitor.MetricsLog(out / "metrics.jsonl"),
                     monitor.Progress(t.steps, start, False), z_fix=z_fix, y_fix=y_fix, step=start,
                     last_ckpt=out / "checkpoints" / "last.pt" if start > 0 else None,
                     last_ckpt_step=start if start > 0 else None, tracking=tracking, files=files)
    handler = _setup_run_dir(state, resume, start, restart) if dist.is_main else None
    state.tb = monitor.TensorBoard(out / "tensorboard") if (t.tensorboard and dist.is_main) else None
    state.progress = monitor.Progress(t.steps, start, t.progress and dist.is_main)
    return state, handler


def _run(state: RunState) -> TrainResult:
    """Training with the periodic hooks, then the result."""
    trainer, cfg, out, dist = state.trainer, state.cfg, state.out, state.dist
    t = cfg.train
    start = state.step
    run_hooks = default_hooks(cfg)
    if dist.is_main and start < t.steps:
        for h in run_hooks:
            h.start(state)
    trainer.reset_accumulators()
    try:
        _loop(state, run_hooks, t.steps)
    except KeyboardInterrupt:
        if dist.is_main and state.step > (state.last_ckpt_step or 0) and trainer.losses_finite:
            save_checkpoint(out / "checkpoints" / "last.pt", state.payload())
            monitor.warn(f"interrupted: saved {out / 'checkpoints' / 'last.pt'} at step {trainer.step}; continue "
                         "with --resume", state.progress)
        raise
    finally:
        state.progress.close()
        if state.tb is not None:
            state.tb.close()
    # curves.png is refreshed at the log points (the last one included) by a hook
    if dist.is_main and start >= t.steps:
        log.info("nothing to do: the checkpoint is at step %d, train.steps is %d", start, t.steps)
    overall = state.train_images / state.train_seconds if state.train_seconds > 0 else 0.0
    return TrainResult(out_dir=out, checkpoint=out / "checkpoints" / "last.pt", step=state.step,
                       images_per_s=overall, metrics=state.record, samples=state.sample_path,
                       seconds=state.train_seconds, start_step=start, kind=cfg.model.kind)
