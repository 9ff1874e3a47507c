"""Datasets from image files: a folder with one sub-folder per class, or a CSV manifest ``path,label[,split]``.

Folder layouts::

    root/<class>/<files or DICOM series folders>            split later (seeded, stratified)
    root/{train,val,test}/<class>/...                       the folder's own splits

Class names are the sorted class-folder names (for a manifest: the sorted label names, or the integer labels in
numeric order). Files are read by :mod:`medgan.data.readers`; differently shaped images are kept as a list
(preprocessing resizes them to the model size).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from medgan.data.dataset import SPLITS, Intensity, RealData, Split, check_pixels
from medgan.data.grid import kind_of_reader
from medgan.data.readers import READABLE, Item, Readers, kind_of, one_line, visible
from medgan.errors import DatasetError
from medgan.io import unescape_cell

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


# -------------------------------------------------------------------------------------------- assembly


def _assemble(name: str, source: str, root: Path, items: list[Item], labels: list[int], splits: list[str | None],
              class_names: list[str], split_note: str | None) -> RealData:
    """Check consistency of the loaded images and build a :class:`RealData` with the splits given."""
    dims = {len(it.array.shape) - 1 for it in items}
    if len(dims) > 1:
        a = next(it for it in items if it.array.ndim - 1 == min(dims))
        b = next(it for it in items if it.array.ndim - 1 == max(dims))
        raise DatasetError(
            f"images of mixed dimensionality in {root}: {a.path} is {min(dims)}D but {b.path} is {max(dims)}D; "
            "use only 2D or only 3D images in one dataset"
        )
    chans = {it.array.shape[0] for it in items}
    if len(chans) > 1:
        a = next(it for it in items if it.array.shape[0] == min(chans))
        b = next(it for it in items if it.array.shape[0] == max(chans))
        raise DatasetError(
            f"images with mixed channel counts in {root}: {a.path} has {a.array.shape[0]} channel(s) but {b.path} "
            f"has {b.array.shape[0]}; convert them to one kind (all gray or all RGB)"
        )
    check_pixels([it.array for it in items], str(root), names=[it.path for it in items])
    dtype = np.result_type(*{it.array.dtype for it in items})
    arrays = [it.array.astype(dtype, copy=False) for it in items]
    lab = np.asarray(labels, dtype=np.int64)
    given = [s for s in splits if s is not None]
    split_of = np.asarray([s or "train" for s in splits])
    out: dict[str, Split] = {}
    for s in SPLITS:
        if s != "train" and s not in given:
            continue
        idx = np.flatnonzero(split_of == s)
        imgs = [arrays[i] for i in idx]
        if imgs and len({a.shape for a in imgs}) == 1:
            stacked: np.ndarray | list[np.ndarray] = np.stack(imgs)
        elif imgs:
            stacked = imgs
        else:
            stacked = np.empty((0, *arrays[0].shape), dtype=dtype)
        out[s] = Split(stacked, lab[idx], [items[i].path for i in idx])
    if not len(out["train"]):
        raise DatasetError(f"{root} has no training images; add a train split (or drop the split column/folders)")
    train_items = [items[i] for i in np.flatnonzero(split_of == "train")]
    spacings = [it.spacing for it in train_items if it.spacing is not None and len(it.spacing) == max(dims)]
    spacing = None
    extra: dict = {"root": str(root), "files": len(items)}
    if spacings:
        sp = np.asarray(spacings, dtype=float)
        spacing = tuple(round(float(v), 6) for v in np.median(sp, axis=0))
        if not np.allclose(sp, sp[0], rtol=1e-3):
            extra["spacing_varies"] = True
    modalities = sorted({it.modality for it in items if it.modality})
    kinds = [kind_of_reader(it.kind) for it in train_items if it.kind]
    source_kind = max(sorted(set(kinds)), key=kinds.count) if kinds else None
    if split_note:
        extra["split"] = split_note
    data = RealData(
        name=name,
        source=source,
        class_names=class_names,
        spatial_dims=int(max(dims)),
        channels=int(max(chans)),
        splits=out,
        intensity=Intensity.of(out["train"].images),
        spacing=spacing,
        modality="+".join(modalities) if modalities else None,
        source_kind=source_kind,
        extra=extra,
    )
    return data


# ----------------------------------------------------------------------------------------------- folder


def _class_entries(class_dir: Path) -> list[tuple[Path, str]]:
    entries = []
    for p in sorted(class_dir.iterdir()):
        if not visible(p):
            continue
        k = kind_of(p)
        if k is not None:
            entries.append((p, k))
    if not entries:
        found = [p.name for p in sorted(class_dir.iterdir()) if visible(p)][:3]
        listing = f" (found: {', '.join(found)})" if found else " (it is empty)"
        raise DatasetError(
            f"class folder {class_dir} has no readable images{listing}; add {READABLE}, or remove the folder"
        )
    return entries


def _split_layout(root: Path, subdirs: list[Path]) -> dict[str, Path] | None:
    named = {SPLIT_ALIASES.get(d.name.lower()): d for d in subdirs}
    if "train" in named and None not in named:
        return {s: d for s, d in named.items() if s is not None}
    return None


def load_folder(path: str | Path) -> RealData:
    """A folder with one sub-folder per class (optionally under ``train/``, ``val/``, ``test/``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}; check the path")
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and visible(d)]
    if not subdirs:
        files = [p for p in root.iterdir() if p.is_file() and visible(p)]
        if any(kind_of(p) for p in files):
            raise DatasetError(
                f"{root} holds image files but no class sub-folders; put each class's images in its own sub-folder "
                f"({root}/<class name>/...)"
            )
        raise DatasetError(f"dataset folder {root} is empty; add one sub-folder per class holding {READABLE}")
    layout = _split_layout(root, subdirs)
    if layout is not None:
        per_split = {s: [d for d in sorted(sd.iterdir()) if d.is_dir() and visible(d)] for s, sd in layout.items()}
        class_names = sorted({d.name for ds in per_split.values() for d in ds})
        jobs = [(d, s) for s, ds in per_split.items() for d in ds]
        note = "the folder's own train/val/test folders"
    else:
        class_names = [d.name for d in subdirs]
        jobs = [(d, None) for d in subdirs]
        note = None
    if not class_names:
        raise DatasetError(f"{root}/train has no class sub-folders; put each class's images in train/<class name>/")
    readers = Readers()
    items, labels, splits = [], [], []
    for class_dir, split in jobs:
        c = class_names.index(class_dir.name)
        for p, k in _class_entries(class_dir):
            items.append(readers.load(p, k))
            labels.append(c)
            splits.append(split)
    return _assemble(root.name, "folder", root, items, labels, splits, class_names, note)


# -------------------------------------------------------------------------------------------------- csv


def _class_names_from_labels(raw: list[str], names_col: list[str] | None, path: Path) -> tuple[list[str], list[int]]:
    """Sorted unique names, or integer labels in numeric order (named by a ``class_name`` column if present).

    A label named two ways (``1,benign`` and ``1,malignant``) or two labels with one name are refused: either
    would silently merge or split classes."""
    if all(re.fullmatch(r"[+-]?\d+", v) for v in raw):
        values = sorted({int(v) for v in raw})
        index = {v: i for i, v in enumerate(values)}
        names = [str(v) for v in values]
        if names_col is not None:
            by_value: dict[int, tuple[str, int]] = {}
            for row, (v, n) in enumerate(zip(raw, names_col, strict=True), start=2):
                if not n:
                    continue
                first = by_value.setdefault(int(v), (n, row))
                if first[0] != n:
                    raise DatasetError(f"manifest {path}: label {v} is named '{first[0]}' (row {first[1]}) and '{n}' "
                                       f"(row {row}); give each label one class_name")
            names = [by_value[v][0] if v in by_value else str(v) for v in values]
            seen: dict[str, int] = {}
            for v, n in zip(values, names, strict=True):
                if seen.setdefault(n.lower(), v) != v:
                    raise DatasetError(f"manifest {path}: labels {seen[n.lower()]} and {v} are both named '{n}'; "
                                       "give each class its own class_name (or one label)")
        return names, [index[int(v)] for v in raw]
    names = sorted(set(raw))
    return names, [names.index(v) for v in raw]


def _check_repeats(path: Path, files: list[Path], labels: list[int], splits: list[str | None],
                   class_names: list[str]) -> None:
    """Refuse a file (by its resolved path) listed in two rows: in two splits it is a test or validation image
    that is also trained on (leakage); under two labels one of them is wrong; and a plain repeat would count
    (and weigh) twice in training. A repeat is refused rather than dropped: the manifest was put together wrong
    (two lists concatenated, a path typed twice), which may hide other mistakes, and the user's fix is one line."""
    first: dict[Path, int] = {}
    for i, f in enumerate(files):
        j = first.setdefault(f.resolve(), i)
        if j == i:
            continue
        rows = f"rows {j + 2} and {i + 2}"
        if splits[i] != splits[j]:
            raise DatasetError(f"manifest {path} {rows} list the same file ({f.resolve()}) in the "
                               f"{splits[j] or 'train'} and the {splits[i] or 'train'} split: an image may not be "
                               "both (leakage); keep it in one split only")
        if labels[i] != labels[j]:
            raise DatasetError(f"manifest {path} {rows} list the same file ({f.resolve()}) as "
                               f"'{class_names[labels[j]]}' and '{class_names[labels[i]]}'; give each image one "
                               "label (remove the wrong row)")
        raise DatasetError(f"manifest {path} {rows} list the same file ({f.resolve()}) twice; remove the repeated "
                           "row (a repeat would count twice in training)")


def load_csv(path: str | Path) -> RealData:
    """A CSV manifest with a header row ``path,label[,split]``; paths are relative to the CSV's folder."""
    path = Path(path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read manifest {path} ({one_line(e)}); use a UTF-8 CSV file") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"manifest {path} is empty; write a header row path,label[,split] and one row per image")
    header = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise DatasetError(
            f"manifest {path} lacks the column(s) {', '.join(missing)} (header: {','.join(rows[0])}); the first row "
            "must be a header path,label[,split]"
        )
    col = {h: i for i, h in enumerate(header)}
    body = rows[1:]
    if not body:
        raise DatasetError(f"manifest {path} lists no images; add one row path,label[,split] per image")

    def cell(r: list[str], name: str) -> str:
        i = col.get(name)
        v = r[i].strip() if i is not None and i < len(r) else ""
        # names that a spreadsheet would run are quoted in the manifests medgan augment writes (medgan.io.escape_cell)
        return unescape_cell(v) if name in ("label", "class_name") else v

    files, raw_labels, splits = [], [], []
    for n, r in enumerate(body, start=2):
        p, lab = cell(r, "path"), cell(r, "label")
        if not p or not lab:
            raise DatasetError(f"manifest {path} row {n} has an empty {'path' if not p else 'label'}; fill it in")
        s: str | None = None
        if "split" in col:
            raw = cell(r, "split").lower()
            s = SPLIT_ALIASES.get(raw)
            if s is None:
                raise DatasetError(f"manifest {path} row {n}: split '{raw}' must be train, val or test")
        fp = Path(p).expanduser()
        files.append(fp if fp.is_absolute() else path.parent / fp)
        raw_labels.append(lab)
        splits.append(s)
    absent = [(n, f) for n, f in enumerate(files, start=2) if not f.exists()]
    if absent:
        n, f = absent[0]
        raise DatasetError(
            f"manifest {path} lists {len(absent)} missing file(s) (first: row {n}, {f}); fix the paths "
            "(relative paths are read from the CSV's folder)"
        )
    names_col = [cell(r, "class_name") for r in body] if "class_name" in col else None
    class_names, labels = _class_names_from_labels(raw_labels, names_col, path)
    _check_repeats(path, files, labels, splits, class_names)
    readers = Readers()
    items = []
    for n, f in enumerate(files, start=2):
        k = kind_of(f)
        if k is None:
            raise DatasetError(f"manifest {path} row {n}: {f} is not an image file; use {READABLE}")
        items.append(readers.load(f, k))
    note = "the manifest's split column" if "split" in col else None
    return _assemble(path.stem, "csv", path, items, labels, splits, class_names, note)
