"""``medgan augment``: turn a checkpoint into labelled synthetic files with a provenance manifest.

Output folder layout::

    out/<class_name>/<id>.<ext>     one file per sample (png, nifti, dicom); <id> is the index within the class
    out/synthetic.npz               npz format: one MedMNIST-layout file instead
    out/augment.json                what was generated: class names, intensity mapping, geometry, counts, seed
    out/manifest.csv                one row per sample, written LAST

Manifest columns (text cells escaped against spreadsheet formulas, see :mod:`medgan.synthesis.outdir`):
``path`` (relative to the folder), ``label``, ``class_name``, ``seed`` (the per-sample seed:
:func:`medgan.synthesis.sampler.latents_for_seeds` regenerates the sample), ``checkpoint_sha256``,
``generator_step``, ``medgan_version``, ``near_copy_redraws`` (how often a ``filter_fn`` had the sample
redrawn), ``index`` (the row in run order; the row of ``train_images`` for npz); with ``pairs`` also ``pair_id``.

Counterfactual pairs (``pairs=True``, ``medgan augment --pairs --n N``): N pairs, each one image of every class
generated from one shared latent vector (:func:`medgan.synthesis.seeds.derive_pair_seeds`), so the images of a pair
differ only in their class. They are written pair by pair (pair ``p`` is ``<class>/<p>.<ext>`` in every class
folder; consecutive rows of the npz), the manifest's ``pair_id`` and ``seed`` are the same for all members, and
``augment.json`` records ``"pairs": N``. Near-copy rejection redraws a whole pair (a new shared latent) when any of
its members is flagged, so pairs stay pairs (``near_copy_redraws`` is the pair's count). ``--class`` and
``--balance`` are refused with pairs: a pair spans every class, and ``--balance`` asks for different counts per
class.

Samples are generated batch by batch and written as they come (memory stays flat as ``n`` grows), into the
hidden staging folder ``out/.medgan-staging/``; the complete run (files, manifest, ``augment.json``) is synced to
disk and only then swapped into ``out`` (:mod:`medgan.synthesis.outdir`), so an interrupted or killed run never
leaves files that look like a complete run, and never touches the previous one. ``--overwrite`` replaces only a
previous run that ``augment.json`` proves medgan wrote; the folder is locked for the run
(:class:`medgan.locks.FolderLock`), so two runs into one folder never mix. A full disk is one line, and leaves
``out`` as it was.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medgan.errors import ConfigError, MedganError, OutputError
from medgan.io import default_file_mode, escape_cell, file_sha256, is_disk_error, write_bytes_fast
from medgan.locks import FolderLock
from medgan.synthesis import outdir
from medgan.synthesis.outdir import (  # noqa: F401  (part of this API)
    FROM_REAL_COLUMNS,
    INFO,
    MANIFEST,
    MANIFEST_COLUMNS,
    PAIR_ID,
    read_manifest,
)
from medgan.synthesis.writers import FORMATS, NiftiWriter, NpzWriter, PngWriter, Provenance, Writer

if TYPE_CHECKING:
    from medgan.config import AugmentConfig, DataConfig
    from medgan.data.dataset import RealData
    from medgan.synthesis.from_real import FromReal
    from medgan.synthesis.sampler import Sampler



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
    checkpoint: str = ""
    """The checkpoint used and why (a run folder gives its ``best.pt`` when present, else ``last.pt``)."""
    files: list[str] = field(default_factory=list)
    """Extra files written besides the per-sample files (``synthetic.npz``, ``augment.json``)."""
    pairs: int = 0
    """Counterfactual pairs written (``pairs=True``), else 0."""

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """What the CLI prints: how many samples of which class went where, how fast, and the manifest."""
        per = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        if self.pairs:
            per = f"{self.pairs} counterfactual pairs; {per}"
        ck = f"\ncheckpoint: {self.checkpoint}" if self.checkpoint else ""
        return (f"wrote {self.n_samples} {self.format} samples ({per}) in {self.seconds:.3f} s "
                f"({self.samples_per_second:.0f} samples/s) to {self.out_dir}\nmanifest: {self.manifest}{ck}")




def _check_space(out: Path, writer_cls, prov: Provenance, shape: tuple[int, ...], total: int) -> None:
    need = writer_cls.bytes_per_sample(prov, shape) * total + 200 * total  # + manifest rows
    probe = out
    while not probe.exists() and probe != probe.parent:  # the folder may not exist yet
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free * 0.95:
        raise OutputError(f"{total} samples need about {need / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free "
                          f"under {out}; lower --n or choose another --out")


WRITERS: dict[str, type[Writer]] = {"png": PngWriter, "npz": NpzWriter, "nifti": NiftiWriter}


def writer_for(fmt: str) -> type[Writer]:
    """The writer class of a format name (raises :class:`OutputError` for an unknown one)."""
    fmt = str(fmt).lower()
    if fmt == "dicom":
        from medgan.synthesis.dicom import DicomWriter  # pydicom is imported only when asked for

        return DicomWriter
    try:
        return WRITERS[fmt]
    except KeyError:
        raise OutputError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}") from None


def _options(options: AugmentConfig | None, settings: dict[str, Any]) -> AugmentConfig:
    """``options`` (default: the config defaults) with ``settings`` (``AugmentConfig`` field names) on top; the
    values are checked where they are used, with messages naming the command-line flag."""
    from medgan.config import AugmentConfig

    base = (options or AugmentConfig()).model_dump()
    unknown = sorted(set(settings) - set(base))
    if unknown:
        raise MedganError(f"unknown augment setting(s) {', '.join(unknown)}; valid: {', '.join(base)}")
    return AugmentConfig.model_construct(**{**base, **settings})


def augment(checkpoint: str | Path, out_dir: str | Path, options: AugmentConfig | None = None, *,
            train_data: str | DataConfig | RealData | None = None, progress: bool = True,
            filter_fn: Callable[[Any, Any], Any] | None = None, max_redraws: int | None = None,
            log: Callable[[str], None] | None = None, translator: Any = None, **settings: Any) -> AugmentResult:
    """Generate synthetic samples from ``checkpoint`` into ``out_dir`` (see the module docstring for the layout).

    ``options`` is the ``augment`` config section (:class:`~medgan.config.AugmentConfig`, what the CLI passes);
    keyword ``settings`` override its fields, e.g. ``augment(ckpt, out, n=100, format="nifti", seed=3)``:

    * ``n``: samples per requested class (``classes``: names or indices; default every class);
      ``balance``: instead of ``n``, top each requested class up to the majority class count of the
      checkpoint's training data (:func:`medgan.synthesis.allocation.per_class_request`);
    * ``format``: ``png`` (2D only), ``npz``, ``nifti`` or ``dicom``;
    * ``seed``: run seed; per-sample seeds derive from (seed, class, index), so the same checkpoint, arguments and
      seed give byte-identical files;
    * ``pairs``: counterfactual pairs: ``n`` is the number of pairs, each one sample of every class from one shared
      latent (module docstring); not with ``classes`` or ``balance``;
    * ``reject_near_copies``: redraw samples that are near-copies of the generator's training images
      (:mod:`medgan.synthesis.near_copies`), read from ``train_data``: a dataset spec, a
      :class:`~medgan.config.DataConfig` (``medgan augment --dataset/--data-dir/--scarce/--split-seed``) or a
      loaded :class:`~medgan.data.dataset.RealData`, which must reproduce the checkpoint's training-set
      fingerprint. Required with ``reject_near_copies``: the dataset a checkpoint records is never opened;
    * ``amp``: ``off`` (fp32, the default) or ``bf16``: run the generator in bfloat16 (several times faster on
      CPUs with AMX / AVX512-BF16; images differ from fp32 by about 1% of the range at most, and are
      deterministic on a given machine). Recorded in ``augment.json``;
    * ``workers``: generator threads, each running whole batches with single-threaded torch ops while the
      calling thread writes files (0: one per CPU core, at most 4); outputs do not depend on it (see
      :meth:`medgan.synthesis.sampler.Sampler.stream`); ``batch_size``, ``use_ema``, ``device``, ``overwrite``.

    ``filter_fn``: optional ``(x_model_space, y) -> bool mask`` of samples to redraw (instead of the near-copy
    filter); a flagged sample gets a new derived seed, at most ``max_redraws`` times, and its redraw count goes to
    the manifest column ``near_copy_redraws``.

    ``from_real``: translate the real training images of the other classes (read from ``train_data``, as for
    ``reject_near_copies``) into each requested class at ``strength`` instead of sampling
    (:mod:`medgan.synthesis.from_real`); ``translator``: any object with ``class_names`` and ``translate(x, y_src,
    y_tgt, strength)`` (:class:`~medgan.synthesis.translation_curve.Translator`) instead of the checkpoint's latent
    translator.

    ``log``: called with ``checkpoint: PATH (why, step N)``, the file used (a run folder gives its ``best.pt`` when
    present, else ``last.pt``), once the request passed its checks and before anything is written (the CLI prints
    it on stderr).
    """
    o = _options(options, settings)
    job = _Job.prepare(checkpoint, o, filter_fn, train_data, translator)
    out = Path(out_dir)
    job.writer_cls.check(job.prov)  # before touching the folder: a format that cannot hold the data
    _check_space(out, job.writer_cls, job.prov, job.sampler.shape, job.total)
    with FolderLock(out, "medgan augment"):
        prev = outdir.prepare(out, bool(o.overwrite), outdir.Layout(job.info()))
        if log is not None:  # every check passed: which file, then the work
            log(f"checkpoint: {job.sampler.checkpoint_note}")
        t0 = time.perf_counter()
        stage = outdir.new_staging(out)
        try:
            row, redraws, extra = _write_samples(job, stage, progress, max_redraws, log)
            outdir.commit(out, stage, prev)
        except BaseException as e:
            outdir.discard(stage)
            if is_disk_error(e):
                raise OutputError(f"{e.strerror} while writing to {out} ({job.written} of {job.total} samples "
                                  f"written); {out} is as it was (the partial output was removed): free space, "
                                  "lower --n or choose another --out") from None
            raise
    return AugmentResult(
        out_dir=out, manifest=out / MANIFEST, format=job.fmt, counts=job.counts_by_name(), n_samples=row,
        seconds=time.perf_counter() - t0, checkpoint_sha256=job.prov.checkpoint_sha256,
        generator_step=job.prov.generator_step, redraws=redraws, files=[*extra, INFO],
        checkpoint=job.sampler.checkpoint_note, pairs=job.n_pairs,
    )


@dataclass
class _Job:
    """One augment request, resolved: the sampler, per-class counts, provenance, writer and redraw filter."""

    sampler: Sampler
    fmt: str
    counts: dict[int, int]
    prov: Provenance
    writer_cls: type[Writer]
    seed: int
    batch_size: int
    workers: int
    filter_fn: Callable[[Any, Any], Any] | None
    n_pairs: int = 0
    """Counterfactual pairs asked for (0: an ordinary run)."""
    from_real: FromReal | None = None
    """``--from-real``: the real sources and the translation (else samples come from noise)."""
    written: int = 0
    """Samples written so far (for messages about a failed run)."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def counts_by_name(self) -> dict[str, int]:
        return {self.sampler.class_names[c]: k for c, k in self.counts.items()}

    @classmethod
    def prepare(cls, checkpoint: str | Path, o: AugmentConfig, filter_fn: Callable | None,
                train_data: str | DataConfig | RealData | None = None, translator: Any = None) -> _Job:
        """Check the settings, load the checkpoint once, plan the counts, build the near-copy filter if asked."""
        from medgan import __version__
        from medgan.data.grid import model_grid
        from medgan.synthesis.allocation import per_class_request
        from medgan.synthesis.sampler import Sampler

        fmt = str(o.format).lower()
        if fmt not in FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        if int(o.batch_size) <= 0:
            raise ConfigError(f"--batch-size must be positive, got {o.batch_size}")
        if int(o.workers) < 0:
            raise ConfigError(f"--workers must be >= 0 (0: one per CPU core), got {o.workers}")
        pairs = bool(o.pairs)
        if pairs:
            _check_pairs(o)
            if o.from_real:
                raise ConfigError("--pairs and --from-real exclude each other: pairs share a latent drawn from noise, "
                                  "translations keep their real source; drop one of them")
        sampler = Sampler.from_checkpoint(checkpoint, use_ema=o.use_ema, device=o.device, amp=o.amp)
        counts = per_class_request(sampler.resolve_classes(list(o.classes) if o.classes else None), o.n,
                                   o.balance, sampler.meta.get("train_counts"), sampler.class_names, pairs=pairs)
        from_real = None
        if o.from_real:
            from medgan.synthesis.from_real import prepare_from_real

            from_real = prepare_from_real(sampler, train_data, o.strength, o.reject_near_copies and filter_fn is None,
                                          translator=translator)
            from_real.check_counts(counts)
        elif o.strength is not None:
            raise ConfigError("--strength is the translation strength of --from-real; add --from-real or drop it")
        elif o.reject_near_copies and filter_fn is None:
            from medgan.synthesis.near_copies import near_copy_filter_for_checkpoint

            filter_fn = near_copy_filter_for_checkpoint({"config": sampler.config, "data": sampler.meta}, train_data)
        meta = sampler.meta
        grid = model_grid(meta)
        prov = Provenance(
            checkpoint_sha256=sampler.checkpoint_sha256, generator_step=sampler.step, medgan_version=__version__,
            seed=int(o.seed), class_names=list(sampler.class_names), spatial_dims=int(meta["spatial_dims"]),
            channels=int(meta["channels"]), dtype=str(meta["intensity"]["dtype"]),
            spacing=list(grid.spacing) if grid.spacing else None, modality=meta.get("modality"),
            row_first=grid.row_first,
            run_tag=json.dumps({"counts": {str(k): v for k, v in counts.items()}, "ema": sampler.used_ema,
                                **({"amp": sampler.amp} if sampler.amp != "off" else {}),
                                **({"pairs": True} if pairs else {}),
                                **({"from_real": from_real.strength} if from_real is not None else {})}),
        )
        return cls(sampler, fmt, counts, prov, writer_for(fmt), int(o.seed), int(o.batch_size),
                   int(o.workers) or min(4, os.cpu_count() or 1), filter_fn, int(o.n) if pairs else 0, from_real)

    def info(self) -> dict[str, Any]:
        """``augment.json``: what was generated, from what, and how to map it back to model space."""
        s, prov, meta = self.sampler, self.prov, self.sampler.meta
        return {
            "format": self.fmt, "checkpoint": str(s.checkpoint_path), "checkpoint_choice": s.checkpoint_why or None,
            "checkpoint_sha256": prov.checkpoint_sha256,
            "generator_step": prov.generator_step, "used_ema": s.used_ema, "amp": s.amp,
            "medgan_version": prov.medgan_version, "seed": self.seed, "class_names": prov.class_names,
            "counts": self.counts_by_name(), "spatial_dims": prov.spatial_dims, "channels": prov.channels,
            "size": int(meta["size"]), "intensity": meta["intensity"], "spacing": prov.spacing,
            "modality": prov.modality, "dataset": meta.get("name"), "train_fingerprint": meta.get("train_fingerprint"),
            "grid": _grid(meta).to_dict(), "file_axes": "natural",
            **({"pairs": self.n_pairs} if self.n_pairs else {}),
            **({"from_real": self.from_real.info()} if self.from_real is not None else {}),
        }

    def stream(self, max_redraws: int):
        """The sampler's batches for this request: per-class counts, or ``n_pairs`` counterfactual pairs."""
        from medgan.synthesis.sampler import MAX_REDRAWS

        common = dict(seed=self.seed, out="source", batch_size=self.batch_size, filter_fn=self.filter_fn,
                      workers=self.workers, max_redraws=MAX_REDRAWS if max_redraws is None else max_redraws)
        if self.from_real is not None:
            return self.from_real.stream(self.counts, self.seed, self.batch_size, self.sampler.to_source)
        if self.n_pairs:
            return self.sampler.stream(self.n_pairs, list(self.counts), pairs=True, **common)
        return self.sampler.stream(counts=self.counts, **common)


def _check_pairs(o: AugmentConfig) -> None:
    """The settings counterfactual pairs exclude, refused with one line each."""
    if o.classes:
        raise ConfigError("--pairs and --class exclude each other: a counterfactual pair holds one image of every "
                          "class from the same latent z; drop --class (or drop --pairs to generate chosen classes)")
    if o.balance:
        raise ConfigError("--pairs and --balance exclude each other: --balance gives each class a different count, a "
                          "pair one image of every class; pass --pairs --n N for N pairs")
    if o.n is None:
        raise ConfigError("say how many counterfactual pairs to generate: --pairs --n N")


def _grid(meta: dict[str, Any]):
    from medgan.data.grid import model_grid

    return model_grid(meta)


def _write_samples(job: _Job, out: Path, progress: bool, max_redraws: int | None,
                   log: Callable[[str], None] | None = None) -> tuple[int, int, list[str]]:
    """Stream the samples into their files (below ``out``, the staging folder) and the manifest rows into a
    temporary file renamed to ``manifest.csv``; then ``augment.json`` with the manifest's SHA-256 (the proof of
    ownership ``--overwrite`` checks), and sync. Returns the rows written, the redraws and the extra files."""
    import torch
    from tqdm.auto import tqdm

    prov, names = job.prov, job.sampler.class_names
    writer = job.writer_cls(out, prov, job.total)
    fd, tmp_manifest = tempfile.mkstemp(dir=out, prefix=f".{MANIFEST}.", suffix=".tmp")
    os.fchmod(fd, default_file_mode())
    row = redraws = 0
    try:
        with os.fdopen(fd, "w", newline="") as mf, tqdm(total=job.total, unit="img", disable=not progress,
                                                        desc=f"augment -> {job.fmt}") as bar:
            w = csv.writer(mf, lineterminator="\n")
            fr = job.from_real
            w.writerow(MANIFEST_COLUMNS + ((PAIR_ID,) if job.n_pairs else ()) + (FROM_REAL_COLUMNS if fr else ()))
            if fr is not None:
                fr.log = log
            fixed = (escape_cell(prov.checkpoint_sha256), prov.generator_step, escape_cell(prov.medgan_version))
            for b in job.stream(max_redraws):
                y = b.y.numpy() if isinstance(b.y, torch.Tensor) else np.asarray(b.y)
                paths = writer.write_batch(b.x, y, b.index, b.seeds, row)
                tail = [(int(p),) for p in b.pair] if getattr(b, "pair", None) is not None else [()] * len(paths)
                rows = [(escape_cell(p), int(lab), escape_cell(names[lab]), int(s), *fixed, int(r), row + k, *t)
                        for k, (p, lab, s, r, t) in enumerate(zip(paths, y.tolist(), b.seeds, b.redraws, tail,
                                                                  strict=True))]
                if fr is not None:  # the source of each translation
                    rows = [(*r, int(i), int(c), escape_cell(names[c]), fr.strength)
                            for r, i, c in zip(rows, b.source_index, b.source_label, strict=True)]
                w.writerows(rows)
                redraws += int(b.redraws.sum())
                row += len(paths)
                job.written = row
                bar.update(len(paths))
            extra = writer.close()
            mf.flush()
            os.fsync(mf.fileno())
        os.replace(tmp_manifest, out / MANIFEST)
        info = {**job.info(), "manifest_sha256": file_sha256(out / MANIFEST), "files": _file_hashes(out)}
        write_bytes_fast(out / INFO, (json.dumps(info, indent=2) + "\n").encode())
        if hasattr(os, "sync"):
            os.sync()  # every file of the run reaches the disk before the run is swapped in
    except BaseException:
        writer.abort()
        if os.path.exists(tmp_manifest):
            os.unlink(tmp_manifest)
        raise
    return row, redraws, extra


def _file_hashes(stage: Path) -> dict[str, str]:
    """SHA-256 of every sample file of the staged run (relative paths): ``--overwrite`` later removes a file only
    while it still has this content (a user's image copied over one of them stays)."""
    out = {}
    for root, _dirs, names in os.walk(stage):
        for n in names:
            rel = Path(os.path.relpath(os.path.join(root, n), stage)).as_posix()
            if rel not in (MANIFEST, INFO):
                out[rel] = file_sha256(os.path.join(root, n))
    return dict(sorted(out.items()))
