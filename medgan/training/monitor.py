"""Watching a GAN train: metrics log, loss/D-output curves, mode-collapse alarm, progress bar, TensorBoard.

Everything here runs on rank 0 only and never touches the training RNG streams.

* :class:`MetricsLog` appends one JSON object per line to ``metrics.jsonl`` (and can drop the lines a resumed
  run is about to redo).
* :class:`CollapseAlarm`: :func:`medgan.distances.within_class_diversity` (the mean pairwise RMS distance
  between samples of the same class, in pixel space) compared with the same number on real images. A class whose generated diversity
  falls below ``threshold`` x the real one (0.5 by default) raises the alarm: a warning in the log and
  ``"collapse": true`` in the metrics line.
* :func:`plot_curves` draws ``curves.png`` (losses, D outputs, ADA probability, diversity and, when tracked, the
  per-class quality of :mod:`medgan.training.tracking`) from ``metrics.jsonl``.
* :class:`Progress` (tqdm) and :class:`TensorBoard` (lazy import, clear error when not installed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from medgan.errors import TrainingError
from medgan.io import append_text, atomic_write, json_safe

log = logging.getLogger("medgan.train")


# ------------------------------------------------------------------------------------------ metrics


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed at each log point."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        append_text(self.path, json.dumps(json_safe(record), allow_nan=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records (a torn last line, e.g. after a crash, is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run redoes those steps), atomically."""
        if not self.path.is_file():
            return
        keep = [r for r in self.read() if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        atomic_write(self.path, text)


# ---------------------------------------------------------------------------------------- diversity


class CollapseAlarm:
    """Compares the generator's within-class diversity with the real data's (per class)."""

    def __init__(self, real_diversity: list[float], class_names: list[str], threshold: float = 0.5):
        self.real = real_diversity
        self.class_names = class_names
        self.threshold = threshold

    def check(self, fake_diversity: list[float]) -> dict[str, Any]:
        """``{"diversity": [...], "diversity_ratio": [...], "collapse": bool, "collapsed_classes": [...]}``."""
        ratios = []
        for f, r in zip(fake_diversity, self.real, strict=True):
            ratios.append(f / r if (math.isfinite(f) and math.isfinite(r) and r > 0) else float("nan"))
        collapsed = [n for n, q in zip(self.class_names, ratios, strict=True)
                     if math.isfinite(q) and q < self.threshold]
        return {
            "diversity": [round(v, 5) for v in fake_diversity],
            "diversity_ratio": [round(v, 4) for v in ratios],
            "collapse": bool(collapsed),
            "collapsed_classes": collapsed,
        }


# ------------------------------------------------------------------------------------------- curves


def _per_class(records: list[dict[str, Any]], key: str) -> list[tuple[list[int], list[float]]]:
    """``(steps, values)`` per class of a per-class list ``key`` in ``records``."""
    rows = [(r["step"], r[key]) for r in records if isinstance(r.get(key), list)]
    n = max((len(v) for _, v in rows), default=0)
    out = []
    for c in range(n):
        pts = [(st, v[c]) for st, v in rows if c < len(v) and isinstance(v[c], int | float)]
        out.append(([a for a, _ in pts], [b for _, b in pts]))
    return out


def _class_name(names: list[str] | None, c: int) -> str:
    """Class ``c``'s name (``class c`` when the names are not known)."""
    return names[c] if names is not None and c < len(names) else f"class {c}"


def _plot_quality(axes, records: list[dict[str, Any]], names: list[str] | None = None) -> None:
    """Two panels of tracked quality: Fréchet distance over its real floor; class fidelity and diversity ratio."""
    ax = axes[0]
    for c, (s, v) in enumerate(_per_class(records, "q_fd_norm")):
        ax.plot(s, v, marker=".", label=_class_name(names, c))
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_title("Fréchet distance / real floor")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[1]
    for key, style in (("q_fidelity", "-"), ("q_diversity_ratio", "--")):
        for c, (s, v) in enumerate(_per_class(records, key)):
            ax.plot(s, v, ls=style, marker=".", label=f"{key[2:].replace('_', ' ')}, {_class_name(names, c)}")
    for y in (0.8, 0.9, 1.2):
        ax.axhline(y, color="grey", lw=0.6, ls=":")
    ax.set_title("class fidelity (solid), diversity ratio (dashed)")
    ax.set_xlabel("step")
    ax.legend(fontsize=6)


def plot_curves(records: list[dict[str, Any]], path: str | Path, title: str | None = None,
                class_names: list[str] | None = None) -> Path | None:
    """``curves.png``: D and G losses, D's mean output on real and generated images, ADA p and diversity, and the
    tracked per-class quality when the run measures it; per-class lines are labelled with ``class_names``."""
    recs = [r for r in records if "loss_d" in r]
    if not recs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.viz import save_figure

    def series(key):
        pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), int | float)]
        return [p[0] for p in pts], [p[1] for p in pts]

    has_extra = any("ada_p" in r for r in recs) or any("diversity_ratio" in r for r in records)
    has_quality = any("q_fd_norm" in r for r in records)
    panels = 2 + has_extra + 2 * has_quality
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.4), dpi=100)
    ax = axes[0]
    for key, label in (("loss_d", "D loss"), ("loss_g", "G loss")):
        ax.plot(*series(key), label=label)
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend(fontsize=8)
    ax = axes[1]
    kind = recs[-1].get("d_output", "sigmoid")
    for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        ax.plot(*series(key), label=label)
    ax.set_xlabel("step")
    ax.set_title(f"D output ({'mean sigmoid' if kind == 'sigmoid' else 'mean raw'})")
    ax.legend(fontsize=8)
    if has_extra:
        ax = axes[2]
        s, p = series("ada_p")
        if s:
            ax.plot(s, p, label="ADA p")
        div = [(r["step"], r["diversity_ratio"]) for r in records if isinstance(r.get("diversity_ratio"), list)]
        if div:
            n = len(div[0][1])
            for c in range(n):
                pts = [(st, v[c]) for st, v in div if isinstance(v[c], int | float)]
                ax.plot([a for a, _ in pts], [b for _, b in pts], marker=".", label=f"diversity ratio, {_class_name(class_names, c)}")
        ax.set_xlabel("step")
        ax.set_title("augmentation p / diversity vs real")
        ax.legend(fontsize=7)
    if has_quality:
        _plot_quality(axes[panels - 2:], records, class_names)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------- progress, TB


class Progress:
    """A tqdm bar over steps (stderr) showing the last logged losses and D outputs; a no-op when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({"D": f"{record['loss_d']:.3f}", "G": f"{record['loss_g']:.3f}",
                                  "D(x)": f"{record['d_real']:.2f}", "D(G(z))": f"{record['d_fake']:.2f}"},
                                 refresh=False)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorBoard:
    """Scalars of each metrics record under ``out/tensorboard`` (needs the optional ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path):
        self.writer = self.check_available()(log_dir=str(log_dir))

    @staticmethod
    def check_available():
        """The ``SummaryWriter`` class, or a one-line :class:`TrainingError` when tensorboard is missing."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainingError(
                "train.tensorboard is on but the 'tensorboard' package is not installed; "
                "pip install 'medgan[tensorboard]' or set train.tensorboard: false"
            ) from None
        return SummaryWriter

    def add(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for k, v in record.items():
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                self.writer.add_scalar(k, v, step)
            elif isinstance(v, list):  # per-class lists (diversity, tracked quality): one scalar per class
                for c, x in enumerate(v):
                    if isinstance(x, int | float) and not isinstance(x, bool):
                        self.writer.add_scalar(f"{k}/class_{c}", x, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def warn(msg: str, progress=None) -> None:
    log.warning(msg)
    if progress is not None and progress.bar is not None:
        progress.write(f"medgan: warning: {msg}")
    else:
        print(f"medgan: warning: {msg}", file=sys.stderr)


class _AppendHandler(logging.Handler):
    """A log handler appending each record to a file through :func:`medgan.io.append_text` (so the run folder
    records the log as medgan's, line by line)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            append_text(self.path, self.format(record) + "\n")
        except Exception:  # a log line must never stop a run (as logging.FileHandler)
            self.handleError(record)


def add_file_log(path: str | Path) -> logging.Handler:
    """Mirror the ``medgan.train`` logger into ``path`` (the run's ``train.log``); returns the handler."""
    os.makedirs(Path(path).parent, exist_ok=True)
    handler = _AppendHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler
