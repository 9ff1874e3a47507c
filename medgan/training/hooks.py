"""The periodic work of a training run, as hooks (MONAI's handlers, the sections of StyleGAN2-ADA's loop).

:func:`medgan.training.run.train` runs the training steps up to the next step at which some hook is due, then
runs the due hooks in this order: the non-finite-loss guard, collecting the logged statistics, the collapse
alarm, quality tracking (:mod:`medgan.training.tracking`), writing the metrics line, the curves, the sample grid,
the checkpoints. Every hook also runs at the last step. Hooks other than the first two run on rank 0 only. A hook
sees the run through :class:`RunState`; :meth:`Hook.start` is its set-up before the first step (rank 0).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.errors import TrainingError
from medgan.training import monitor
from medgan.training.checkpoint import save_checkpoint
from medgan.training.distributed import DistInfo

if TYPE_CHECKING:
    from medgan.config import Config
    from medgan.training.trainer import Trainer

log = logging.getLogger("medgan.train")

#: Fixed-noise samples per class in grids and diversity checks.
GRID_PER_CLASS = 8
DIVERSITY_PER_CLASS = 32


@dataclass
class RunState:
    """What the hooks of one run share."""

    trainer: Trainer
    cfg: Config
    out: Path
    dist: DistInfo
    title: str
    metrics: monitor.MetricsLog
    progress: monitor.Progress
    tb: monitor.TensorBoard | None = None
    alarm: monitor.CollapseAlarm | None = None
    z_fix: torch.Tensor | None = None
    y_fix: torch.Tensor | None = None
    step: int = 0
    final: bool = False
    chunk_images: int = 0
    chunk_seconds: float = 0.0
    train_seconds: float = 0.0
    train_images: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    logging_now: bool = False
    last_ckpt: Path | None = None
    last_ckpt_step: int | None = None
    sample_path: Path | None = None
    tracking: dict[str, Any] = field(default_factory=dict)
    """The best tracked quality so far (``best_score``, ``best_step``); saved in every checkpoint's ``state``."""
    save_best: dict[str, Any] | None = None
    """Set by quality tracking at a new best: the ``quality`` record that ``checkpoints/best.pt`` gets."""
    files: Any = None
    """The run folder's :class:`~medgan.outputs.OutputFolder` (rank 0; ``None`` on other ranks)."""

    def payload(self) -> dict[str, Any]:
        """The checkpoint of the run now: the trainer's payload with the tracking state."""
        payload = self.trainer.checkpoint_payload()
        payload["state"]["tracking"] = dict(self.tracking)
        return payload


class Hook:
    """Periodic work: due every ``every`` steps (0: never) and at the last step."""

    main_only = True

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def next_due(self, step: int) -> int | None:
        return (step // self.every + 1) * self.every if self.every > 0 else None

    def due(self, state: RunState) -> bool:
        return state.final or (self.every > 0 and state.step % self.every == 0)

    def start(self, state: RunState) -> None:
        """Set-up before the first step of this process (rank 0); nothing by default."""

    def __call__(self, state: RunState) -> None:
        raise NotImplementedError


class NonFiniteGuard(Hook):
    """Stops the run at the first non-finite loss (checked when statistics are logged, a checkpoint is due or quality
    is measured: ``best.pt`` is only written after this check)."""

    main_only = False

    def __init__(self, *periods: int) -> None:
        super().__init__(0)
        self.periods = [e for e in periods if e > 0]

    def due(self, state: RunState) -> bool:
        return state.final or any(state.step % e == 0 for e in self.periods)

    def __call__(self, state: RunState) -> None:
        bad = state.trainer.first_bad_step()
        if bad is None:
            return
        s, ld, lg = bad
        kept = (f"the last good checkpoint is {state.last_ckpt} (step {state.last_ckpt_step})" if state.last_ckpt
                else "no checkpoint was written before it")
        raise TrainingError(f"losses became non-finite at step {s} (D loss {ld}, G loss {lg}); stopped, {kept}; "
                            "lower train.lr_d/train.lr_g or try another --loss (e.g. hinge)")


class CollectStats(Hook):
    """The mean losses and D outputs since the last log point, with speed and elapsed time (every rank)."""

    main_only = False

    def __call__(self, state: RunState) -> None:
        tr = state.trainer
        ips = state.chunk_images / state.chunk_seconds if state.chunk_seconds > 0 else 0.0
        state.record = {"step": state.step, **tr.pop_stats(), "d_output": tr.d_output,
                        "images_per_s": round(ips, 2), "elapsed_s": round(state.train_seconds, 2)}
        state.logging_now = True


class CollapseCheck(Hook):
    """Within-class diversity of fixed-noise samples against the real data's; warns below the threshold."""

    def due(self, state: RunState) -> bool:
        return state.alarm is not None and super().due(state)

    def __call__(self, state: RunState) -> None:
        from medgan.distances import within_class_diversity

        tr = state.trainer
        fake = tr.sample(state.z_fix, state.y_fix)
        rec = state.alarm.check(within_class_diversity(fake, state.y_fix, tr.num_classes,
                                                       max_per_class=DIVERSITY_PER_CLASS))
        if rec["collapse"]:
            monitor.warn(f"possible mode collapse at step {state.step}: within-class diversity of "
                  f"{', '.join(repr(c) for c in rec['collapsed_classes'])} is below {state.alarm.threshold} x the "
                  f"real data's (ratios {rec['diversity_ratio']})", state.progress)
        if state.logging_now:
            state.record.update(rec)
        else:
            state.metrics.append({"step": state.step, **rec})


class WriteLog(Hook):
    """The metrics line (``metrics.jsonl``), the progress bar, TensorBoard and the text log."""

    def __call__(self, state: RunState) -> None:
        r = state.record
        state.metrics.append(r)
        state.progress.show(r)
        if state.tb is not None:
            state.tb.add(r)
        log.info("step %d: D %.4f G %.4f D(x) %.3f D(G(z)) %.3f %.1f img/s", state.step, r["loss_d"], r["loss_g"],
                 r["d_real"], r["d_fake"], r["images_per_s"])


class Curves(Hook):
    """``curves.png``, refreshed at the log points (matplotlib: 0.3-0.8 s a refresh on a busy 2-core CPU,
    docs/training.md). A refresh is skipped when the previous one cost more than ``budget`` of the training time
    since it, so plotting stays a small share of a run with frequent log points; the last step always plots."""

    def __init__(self, every: int, budget: float = 0.05) -> None:
        super().__init__(every)
        self.budget = float(budget)
        self.cost = 0.0
        self.since = 0.0

    def __call__(self, state: RunState) -> None:
        self.since += state.chunk_seconds
        if not state.final and self.cost > self.budget * self.since:
            return
        t0 = time.perf_counter()
        monitor.plot_curves(state.metrics.read(), state.out / "curves.png",
                            title=f"{state.title}: {state.cfg.train.loss} loss",
                            class_names=list(state.trainer.class_names))
        self.cost, self.since = time.perf_counter() - t0, 0.0


class SampleGrid(Hook):
    """``samples/step_N.png``: a per-class grid from fixed noise (EMA generator)."""

    def __call__(self, state: RunState) -> None:
        from medgan.viz import save_grid

        tr = state.trainer
        sel = torch.cat([torch.arange(c * DIVERSITY_PER_CLASS, c * DIVERSITY_PER_CLASS + GRID_PER_CLASS)
                         for c in range(tr.num_classes)])
        imgs = tr.sample(state.z_fix[sel], state.y_fix[sel])
        state.sample_path = save_grid(state.out / "samples" / f"step_{state.step}.png", imgs, state.y_fix[sel],
                                      tr.class_names, per_class=GRID_PER_CLASS,
                                      title=f"{state.title}, step {state.step} ({'EMA ' if tr.G_ema else ''}G)")


class SaveCheckpoint(Hook):
    """``checkpoints/last.pt`` each time (and at the end), then ``checkpoints/step_N.pt`` every ``every`` steps;
    ``checkpoints/best.pt`` (with its ``quality`` record) when quality tracking found a new best at this step.

    ``last.pt`` comes first: when the disk fills up, the checkpoint that ``--resume`` needs is the one written."""

    def due(self, state: RunState) -> bool:
        return super().due(state) or state.save_best is not None

    def __call__(self, state: RunState) -> None:
        ck_dir = state.out / "checkpoints"
        payload = state.payload()
        if super().due(state):
            state.last_ckpt = save_checkpoint(ck_dir / "last.pt", payload)
            state.last_ckpt_step = state.step
            if self.every > 0 and state.step % self.every == 0:
                save_checkpoint(ck_dir / f"step_{state.step}.pt", payload)
        if state.save_best is not None:
            save_checkpoint(ck_dir / "best.pt", {**payload, "quality": state.save_best})
            state.save_best = None
