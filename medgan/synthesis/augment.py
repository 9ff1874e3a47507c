"""``medgan augment``: turn a checkpoint into labelled synthetic files with a provenance manifest.

Output folder layout::

    out/<class_name>/<id>.<ext>     one file per sample (png, nifti, dicom); <id> is the index within the class
    out/synthetic.npz               npz format: one MedMNIST-layout file instead
    out/augment.json                what was generated: class names, intensity mapping, geometry, counts, seed
    out/manifest.csv                one row per sample, written LAST

Manifest columns: ``path`` (relative to the folder), ``label``, ``class_name``, ``seed`` (the per-sample seed:
:func:`medgan.synthesis.sampler.latents_for_seeds` regenerates the sample), ``checkpoint_sha256``,
``generator_step``, ``medgan_version``, ``near_copy_redraws`` (how often a ``filter_fn`` had the sample
redrawn), ``index`` (the row in run order; the row of ``train_images`` for npz).

Samples are generated batch by batch and written as they come (memory stays flat as ``n`` grows). Every file
is written under a temporary name and renamed; the manifest rows go to a temporary file that is renamed to
``manifest.csv`` only after every file (and ``augment.json``) is in place, so an interrupted run never leaves a
manifest pointing at missing files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgan.errors import MedganError, OutputError
from medgan.synthesis.writers import FORMATS, NPZ_NAME, Provenance, writer_for

MANIFEST = "manifest.csv"
INFO = "augment.json"
MANIFEST_COLUMNS = ("path", "label", "class_name", "seed", "checkpoint_sha256", "generator_step", "medgan_version",
                    "near_copy_redraws", "index")


@dataclass
class AugmentResult:
    """What :func:`augment` wrote."""

    out_dir: Path
    manifest: Path
    format: str
    counts: dict[str, int]
    """Samples written per class name."""
    n_samples: int
    seconds: float
    checkpoint_sha256: str
    generator_step: int
    redraws: int = 0
    """Total number of redraws requested by ``filter_fn``."""
    files: list[str] = field(default_factory=list)
    """Extra files written besides the per-sample files (``synthetic.npz``, ``augment.json``)."""

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else float("inf")


def plan_counts(sampler, n: int | None, classes: Sequence[int | str] | None, balance: bool) -> dict[int, int]:
    """Samples per class index: ``n`` for each requested class, or (``balance``) what tops each class up to the
    majority class count of the checkpoint's training data."""
    idx = sampler.resolve_classes(list(classes) if classes else None)
    if balance:
        if n is not None:
            raise MedganError("--n and --balance exclude each other: --n N samples per class, or --balance to top "
                              "each class up to the majority count")
        train = sampler.meta.get("train_counts")
        if not train or len(train) != sampler.num_classes:
            raise MedganError("this checkpoint does not record its training class counts, so --balance cannot work; "
                              "pass --n N instead")
        top = max(int(c) for c in train)
        counts = {c: top - int(train[c]) for c in idx}
        if sum(counts.values()) == 0:
            names = ", ".join(sampler.class_names[c] for c in idx)
            raise MedganError(f"nothing to balance: class(es) {names} already have the majority count ({top}) in the "
                              "training data; pass --n N to generate a fixed number per class")
        return {c: k for c, k in counts.items() if k > 0}
    if n is None:
        raise MedganError("say how many samples to generate: --n N (per class) or --balance")
    if isinstance(n, bool) or int(n) != n or int(n) <= 0:
        raise MedganError(f"--n must be a positive number of samples per class, got {n}")
    return {c: int(n) for c in idx}


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder (unless ``overwrite``), make sure the folder is writable, clear an old run."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder; pass a folder to --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(f"output folder {out} is not empty; pass --overwrite to replace its synthetic files or "
                              "choose a new --out")
        _clear_previous(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".medgan-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write to output folder {out} ({e.strerror or type(e).__name__}); choose a "
                          "writable --out") from None


def _clear_previous(out: Path) -> None:
    """Remove a previous augment run from ``out``: the manifest first (so it never points at missing files),
    then the files it listed, ``augment.json``, ``synthetic.npz`` and temporary leftovers. Other files stay."""
    manifest = out / MANIFEST
    listed: list[str] = []
    if manifest.is_file():
        try:
            with open(manifest, newline="") as f:
                listed = [row["path"] for row in csv.DictReader(f) if row.get("path")]
        except (OSError, KeyError, csv.Error, UnicodeDecodeError):
            listed = []
        manifest.unlink()
    root = out.resolve()
    for rel in {*listed, NPZ_NAME, INFO}:
        p = (out / rel).resolve()
        if root in p.parents and p.is_file():
            p.unlink()
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink()
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _check_space(out: Path, writer_cls, prov: Provenance, shape: tuple[int, ...], total: int) -> None:
    need = writer_cls.bytes_per_sample(prov, shape) * total + 200 * total  # + manifest rows
    probe = out
    while not probe.exists() and probe != probe.parent:  # the folder may not exist yet
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free * 0.95:
        raise OutputError(f"{total} samples need about {need / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free "
                          f"under {out}; lower --n or choose another --out")


def augment(checkpoint: str | Path, out_dir: str | Path, n: int | None = None,
            classes: Sequence[int | str] | None = None, balance: bool = False, fmt: str = "png", seed: int = 0,
            batch_size: int = 256, use_ema: bool = True, overwrite: bool = False, progress: bool = True,
            filter_fn: Callable[[Any, Any], Any] | None = None, max_redraws: int | None = None,
            device: str = "cpu", amp: str = "off", workers: int = 0) -> AugmentResult:
    """Generate synthetic samples from ``checkpoint`` into ``out_dir`` (see the module docstring for the layout).

    Args:
        n: samples per requested class (``classes``: names or indices; default every class).
        balance: instead of ``n``, top each requested class up to the majority class count of the
            checkpoint's training data (``data.train_counts``).
        fmt: ``png`` (2D only), ``npz``, ``nifti`` or ``dicom``.
        seed: run seed; per-sample seeds derive from (seed, class, index), so the same checkpoint, arguments and
            seed give byte-identical files.
        filter_fn: optional ``(x_model_space, y) -> bool mask`` of samples to redraw (e.g. near-copies of
            training images); a flagged sample gets a new derived seed, at most ``max_redraws`` times, and its
            redraw count goes to the manifest column ``near_copy_redraws``.
        amp: ``off`` (fp32, the default) or ``bf16``: run the generator in bfloat16 (several times faster on
            CPUs with AMX / AVX512-BF16; images differ from fp32 by about 1% of the range at most, and are
            deterministic on a given machine). Recorded in ``augment.json``.
        workers: generator threads, each running whole batches with single-threaded torch ops while the
            calling thread writes files (0: one per CPU core, at most 4); outputs do not depend on it. See
            :meth:`medgan.synthesis.sampler.Sampler.stream`.
    """
    import torch
    from tqdm.auto import tqdm

    from medgan import __version__
    from medgan.synthesis.sampler import MAX_REDRAWS, Sampler
    from medgan.training.checkpoint import default_file_mode

    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if int(batch_size) <= 0:
        raise MedganError(f"--batch-size must be positive, got {batch_size}")
    if int(workers) < 0:
        raise MedganError(f"--workers must be >= 0 (0: one per CPU core), got {workers}")
    workers = int(workers) or min(4, os.cpu_count() or 1)
    out = Path(out_dir)
    sampler = Sampler.from_checkpoint(checkpoint, use_ema=use_ema, device=device, amp=amp)
    counts = plan_counts(sampler, n, classes, balance)
    total = sum(counts.values())
    meta = sampler.meta
    prov = Provenance(
        checkpoint_sha256=sampler.checkpoint_sha256, generator_step=sampler.step, medgan_version=__version__,
        seed=int(seed), class_names=list(sampler.class_names), spatial_dims=int(meta["spatial_dims"]),
        channels=int(meta["channels"]), dtype=str(meta["intensity"]["dtype"]), spacing=meta.get("spacing"),
        modality=meta.get("modality"),
        run_tag=json.dumps({"counts": {str(k): v for k, v in counts.items()}, "ema": sampler.used_ema,
                            **({"amp": sampler.amp} if sampler.amp != "off" else {})}),
    )
    writer_cls = writer_for(fmt)
    writer_cls.check(prov)  # before touching the folder: a format that cannot hold the data
    _check_space(out, writer_cls, prov, sampler.shape, total)
    _prepare_out_dir(out, overwrite)

    writer = writer_cls(out, prov, total)
    fd, tmp_manifest = tempfile.mkstemp(dir=out, prefix=f".{MANIFEST}.", suffix=".tmp")
    os.fchmod(fd, default_file_mode())
    t0 = time.perf_counter()
    row = 0
    redraws = 0
    try:
        with os.fdopen(fd, "w", newline="") as mf, tqdm(total=total, unit="img", disable=not progress,
                                                        desc=f"augment -> {fmt}") as bar:
            w = csv.writer(mf, lineterminator="\n")
            w.writerow(MANIFEST_COLUMNS)
            stream = sampler.stream(counts=counts, seed=seed, out="source", batch_size=int(batch_size),
                                    filter_fn=filter_fn, max_redraws=MAX_REDRAWS if max_redraws is None else max_redraws,
                                    workers=workers)
            fixed = (prov.checkpoint_sha256, prov.generator_step, prov.medgan_version)
            for b in stream:
                y = b.y.numpy() if isinstance(b.y, torch.Tensor) else np.asarray(b.y)
                paths = writer.write_batch(b.x, y, b.index, b.seeds, row)
                names = sampler.class_names
                w.writerows(
                    (p, int(lab), names[lab], int(s), *fixed, int(r), row + k)
                    for k, (p, lab, s, r) in enumerate(zip(paths, y.tolist(), b.seeds, b.redraws, strict=True))
                )
                redraws += int(b.redraws.sum())
                row += len(paths)
                bar.update(len(paths))
            extra = writer.close()
            info = {
                "format": fmt, "checkpoint": str(sampler.checkpoint_path), "checkpoint_sha256": prov.checkpoint_sha256,
                "generator_step": prov.generator_step, "used_ema": sampler.used_ema, "amp": sampler.amp, "medgan_version": __version__,
                "seed": int(seed), "class_names": prov.class_names,
                "counts": {sampler.class_names[c]: k for c, k in counts.items()},
                "spatial_dims": prov.spatial_dims, "channels": prov.channels, "size": int(meta["size"]),
                "intensity": meta["intensity"], "spacing": prov.spacing, "modality": prov.modality,
                "dataset": meta.get("name"), "train_fingerprint": meta.get("train_fingerprint"),
            }
            from medgan.synthesis.writers import write_file_atomic

            write_file_atomic(out / INFO, (json.dumps(info, indent=2) + "\n").encode())
            mf.flush()
            os.fsync(mf.fileno())
        if hasattr(os, "sync"):
            os.sync()  # every sample file reaches the disk before the manifest that lists them
        os.replace(tmp_manifest, out / MANIFEST)
    except BaseException:
        writer.abort()
        if os.path.exists(tmp_manifest):
            os.unlink(tmp_manifest)
        raise
    seconds = time.perf_counter() - t0
    return AugmentResult(
        out_dir=out, manifest=out / MANIFEST, format=fmt,
        counts={sampler.class_names[c]: k for c, k in counts.items()}, n_samples=row, seconds=seconds,
        checkpoint_sha256=prov.checkpoint_sha256, generator_step=prov.generator_step, redraws=redraws,
        files=[*extra, INFO],
    )


def read_manifest(folder: str | Path) -> list[dict[str, str]]:
    """The rows of an augment folder's ``manifest.csv`` (raises :class:`OutputError` when absent)."""
    p = Path(folder) / MANIFEST
    if not p.is_file():
        raise OutputError(f"{folder} has no {MANIFEST}: it is not a (complete) 'medgan augment' output folder; "
                          "re-run medgan augment")
    with open(p, newline="") as f:
        return list(csv.DictReader(f))
