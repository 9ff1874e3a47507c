"""The output folder of ``medgan augment``: what medgan owns there, the staging folder, and the swap.

**Ownership** (the rule of :mod:`medgan.outputs`, with a staged run swapped in whole). ``--overwrite`` only ever
removes files medgan can prove it wrote. A folder holds a previous ``medgan augment`` run when its
``augment.json`` is medgan's record (format, class names, per-class counts, checkpoint hash) and the
``manifest.csv`` beside it is the one that run wrote: ``augment.json`` records the manifest's SHA-256
(``manifest_sha256``) and the SHA-256 of every sample file (``files``). A sample file is removed only while it
still has its recorded content: a user's file copied over one of them is not medgan's, stays, and stops a new run
that would need its path. Anything else in the folder is the user's and stays. A folder with files but no such
record is refused, whatever ``manifest.csv`` it holds; so is ``--overwrite`` of a run written by an older medgan
that recorded no per-file hashes (medgan cannot prove which of its files are still its own).

**Staging.** A run writes everything (sample files, ``manifest.csv``, ``augment.json``) into the hidden
``OUT/.medgan-staging/`` (dataset loaders skip hidden entries) while a previous run stays complete beside it. Only
when the new run is complete and synced to disk is it swapped in (:func:`commit`): the previous run's manifest
goes first (from then on that run reads as incomplete), then its files, its ``augment.json`` last; then the new
``augment.json`` (from then on every visible file of the new run is covered by a record), the new class folders
(or ``synthetic.npz``), and the new ``manifest.csv`` last.

**Crashes.** An error or Ctrl-C while staging removes the staging folder: nothing in OUT changed. ``kill -9``
while staging leaves the previous run untouched and a hidden staging folder, which the next run removes.
``kill -9`` during the swap (a few renames) leaves a run without manifest, recorded by its ``augment.json``,
which the next ``--overwrite`` removes file by file. Nothing half-written ever carries a manifest.

**Spreadsheet safety.** A text cell of ``manifest.csv`` that a spreadsheet would run as a formula (one starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, e.g. a class named ``=cmd|calc``) is written with a
leading ``'`` (OWASP's advice against CSV injection), and so is one that already starts with quotes followed by
such a character, so that :func:`medgan.io.unescape_cell` gives every name back exactly. Only text cells (``path``,
``class_name``, ``checkpoint_sha256``, ``medgan_version``) are escaped; the numeric ones (``label``, ``seed``,
``generator_step``, ``near_copy_redraws``, ``index``, ``pair_id``; ``source_index``, ``source_label`` and
``strength`` of a ``--from-real`` run) are written as non-negative numbers (the per-sample seeds are 63-bit), so none
ever starts with ``-``; ``source_class`` is a text cell. Every reader of the manifest (:func:`read_manifest`) undoes it.

The caller holds the folder's lock (:class:`medgan.locks.FolderLock`) throughout.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

from medgan.errors import OutputError
from medgan.io import file_sha256, unescape_cell
from medgan.locks import LOCK_NAME
from medgan.synthesis.writers import EXTENSIONS, NPZ_NAME, class_dirs

MANIFEST = "manifest.csv"
INFO = "augment.json"
MANIFEST_COLUMNS = ("path", "label", "class_name", "seed", "checkpoint_sha256", "generator_step", "medgan_version",
                    "near_copy_redraws", "index")
PAIR_ID = "pair_id"
"""The manifest column of counterfactual pairs (``augment --pairs``), after :data:`MANIFEST_COLUMNS`: the rows of
one pair share it (and their seed: one latent for every class of the pair)."""

#: Columns a ``--from-real`` run adds after :data:`MANIFEST_COLUMNS`: the source image of each translation (its
#: row in the training split, its class index and name) and the translation strength.
FROM_REAL_COLUMNS = ("source_index", "source_label", "source_class", "strength")
STAGING = ".medgan-staging"
_RECORD_KEYS = ("format", "class_names", "counts", "checkpoint_sha256", "medgan_version")


def read_manifest(folder: str | Path) -> list[dict[str, str]]:
    """The rows of an augment folder's ``manifest.csv``, with the spreadsheet escaping undone (raises
    :class:`OutputError` when absent)."""
    p = Path(folder) / MANIFEST
    if not p.is_file():
        raise OutputError(f"{folder} has no {MANIFEST}: it is not a (complete) 'medgan augment' output folder; "
                          "re-run medgan augment")
    with open(p, newline="") as f:
        return [{k: unescape_cell(v) if isinstance(v, str) else v for k, v in r.items()} for r in csv.DictReader(f)]


def typed_columns(columns: dict[str, Any]) -> dict[str, Any]:
    """Manifest columns (text values) as integers where every value is a non-negative integer, as floats where
    every value reads as one, else as text (numpy arrays)."""
    import numpy as np

    out = {}
    for k, v in columns.items():
        v = np.asarray(v, dtype=str)
        if len(v) and all(s.isdigit() for s in v):
            out[k] = v.astype(np.int64)
            continue
        try:
            out[k] = v.astype(np.float64)
        except ValueError:
            out[k] = v
    return out


class Layout:
    """The files one run writes, from its record (``format``, ``class_names``, ``counts`` by class name): which
    top-level entries, and whether a relative path is one of its sample files (without listing them all)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.fmt = str(info["format"])
        if self.fmt not in EXTENSIONS:
            raise ValueError(f"unknown format {self.fmt!r}")
        names = [str(n) for n in info["class_names"]]
        counts = {str(k): int(v) for k, v in dict(info["counts"]).items()}
        if any(v < 0 for v in counts.values()):
            raise ValueError("negative count")
        total = sum(counts.values())
        self.width = max(6, len(str(max(total - 1, 0))))
        self.ext = EXTENSIONS[self.fmt]
        self.per_dir = {d: counts.get(n, 0) for d, n in zip(class_dirs(names), names, strict=True)
                        if counts.get(n, 0) > 0}
        files = info.get("files")
        self.hashes: dict[str, str] | None = ({str(k): str(v) for k, v in files.items()}
                                              if isinstance(files, dict) else None)

    @property
    def tops(self) -> list[str]:
        """The top-level entries holding the samples: class folders, or ``synthetic.npz``."""
        return [NPZ_NAME] if self.fmt == "npz" else sorted(self.per_dir)

    def owns(self, rel: str) -> bool:
        """Whether ``rel`` (relative to the folder, ``/``-separated) is one of the run's sample files."""
        if self.fmt == "npz":
            return rel == NPZ_NAME
        folder, _, name = rel.partition("/")
        k = self.per_dir.get(folder)
        if k is None or not name.endswith(self.ext):
            return False
        stem = name[: -len(self.ext)]
        return len(stem) == self.width and stem.isdigit() and int(stem) < k

    def proven(self, out: Path, rel: str) -> bool:
        """Whether ``out/rel`` is one of the run's files and still holds the content the run recorded (not a link)."""
        p = out / rel
        if self.hashes is None or rel not in self.hashes or p.is_symlink() or not p.is_file():
            return False
        return file_sha256(p) == self.hashes[rel]


def read_run(out: Path) -> Layout | None:
    """The previous run in ``out`` when its ``augment.json`` proves one (``None`` when there is no such record);
    raises :class:`OutputError` when the record is medgan's but ``manifest.csv`` is not the one it wrote."""
    p = out / INFO
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text())
        if not isinstance(info, dict) or any(k not in info for k in _RECORD_KEYS):
            return None
        layout = Layout(info)
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return None
    man = out / MANIFEST
    if man.is_file():
        if info.get("manifest_sha256"):
            ok = file_sha256(man) == info["manifest_sha256"]
        else:  # written before augment.json recorded the manifest's hash
            try:
                with open(man, newline="") as f:
                    reader = csv.reader(f)
                    ok = tuple(next(reader, ())) == MANIFEST_COLUMNS and all(r and layout.owns(unescape_cell(r[0]))
                                                                             for r in reader)
            except (OSError, csv.Error, UnicodeDecodeError):
                ok = False
        if not ok:
            raise OutputError(f"{man} is not the manifest that medgan augment wrote beside {INFO} (it does not match "
                              "that record), so medgan will not delete the files it lists; move it away or choose "
                              "another --out")
    return layout


def _entries(out: Path) -> list[str]:
    return sorted(e.name for e in out.iterdir() if e.name not in (LOCK_NAME, STAGING))


def prepare(out: Path, overwrite: bool, new: Layout) -> Layout | None:
    """Check that the run may write into ``out`` (the lock is held); returns the previous run to replace.

    Removes a staging folder left by a killed run. Refuses, with one line: a non-empty folder without
    ``overwrite``; with ``overwrite``, a folder whose files medgan cannot prove it wrote, or an entry the new run
    would need that is not the previous run's."""
    staging = out / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    entries = _entries(out)
    if not entries:
        return None
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    prev = read_run(out)
    if prev is None:
        if overwrite:
            raise OutputError(f"--overwrite: {out} holds files that medgan augment did not write ({shown}) and no "
                              f"{INFO} of a previous run; medgan only replaces its own output: choose an empty or new "
                              "--out")
        raise OutputError(f"output folder {out} is not empty ({shown}) and holds no medgan augment run; choose an "
                          "empty or new --out")
    if not overwrite:
        raise OutputError(f"output folder {out} is not empty; pass --overwrite to replace its previous medgan "
                          "augment run (other files stay) or choose a new --out")
    if prev.hashes is None:
        raise OutputError(f"--overwrite: the run in {out} was written by an older medgan augment that recorded no "
                          "per-file hashes, so medgan cannot prove which files are still its own; remove that run "
                          "yourself or choose a new --out")
    for top in new.tops:
        p = out / top
        if not p.exists() and not p.is_symlink():
            continue
        if new.fmt == "npz" or not p.is_dir() or p.is_symlink():
            clash = None if prev.proven(out, top) or (top in prev.per_dir and p.is_dir() and not p.is_symlink()) \
                else top
        else:
            clash = next((f"{top}/{f}" for f in sorted(os.listdir(p)) if new.owns(f"{top}/{f}")
                          and not prev.proven(out, f"{top}/{f}")), None)
        if clash is not None:
            raise OutputError(f"{out / clash} exists and was not written by medgan augment; move it away or choose "
                              "another --out")
    return prev


def remove_run(out: Path, run: Layout) -> None:
    """Remove a previous run: its manifest first, then its sample files that still hold their recorded content,
    empty class folders, and its ``augment.json`` last. Other files stay."""
    (out / MANIFEST).unlink(missing_ok=True)
    for top in run.tops:
        p = out / top
        if run.fmt == "npz":
            if run.proven(out, top):
                p.unlink()
            continue
        if not p.is_dir() or p.is_symlink():
            continue
        for name in os.listdir(p):
            if run.proven(out, f"{top}/{name}"):
                (p / name).unlink()
        try:
            p.rmdir()  # only when nothing of the user's is left in it
        except OSError:
            pass
    (out / INFO).unlink(missing_ok=True)


def new_staging(out: Path) -> Path:
    """A fresh, empty staging folder inside ``out``."""
    stage = out / STAGING
    stage.mkdir()
    return stage


def discard(stage: Path) -> None:
    """Remove a staging folder (after an error or an interrupt)."""
    shutil.rmtree(stage, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(out: Path, stage: Path, prev: Layout | None) -> None:
    """Swap the complete run in ``stage`` into ``out`` in the crash-safe order of the module docstring."""
    if prev is not None:
        remove_run(out, prev)
    os.replace(stage / INFO, out / INFO)
    for entry in sorted(stage.iterdir()):
        if entry.name == MANIFEST:
            continue
        dst = out / entry.name
        if entry.is_dir() and dst.is_dir():  # a class folder that kept a user's file: move the samples in
            for f in sorted(entry.iterdir()):
                os.replace(f, dst / f.name)
            entry.rmdir()
            _fsync_dir(dst)
        else:
            os.replace(entry, dst)
    _fsync_dir(out)  # the renames reach the disk before the manifest that completes the run
    os.replace(stage / MANIFEST, out / MANIFEST)
    stage.rmdir()
    _fsync_dir(out)
