"""Resolve ``--dataset`` into a :class:`~medgan.data.dataset.RealData`: dispatch to the loader of each kind of
source, carve missing splits, validate, and apply an optional scarcity spec.

A dataset spec is one of:

* a MedMNIST name with an optional size suffix (``breastmnist``, ``pneumoniamnist_64``, ``adrenalmnist3d``):
  :mod:`medgan.data.medmnist` finds (or downloads) the file, :mod:`medgan.data.npz` reads it;
* ``phantom2d`` / ``phantom3d``: procedural class-conditional images built offline (:mod:`medgan.data.phantom`);
* a path: an ``.npz`` in MedMNIST layout, a folder with one sub-folder per class (PNG/JPEG, NIfTI or DICOM;
  a sub-folder of DICOM slices is one volume), or a CSV manifest ``path,label[,split]`` (:mod:`medgan.data.folder`).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from medgan.data import medmnist
from medgan.data.dataset import RealData, check_splits
from medgan.data.npz import load_npz
from medgan.data.splits import ensure_splits
from medgan.errors import DatasetError


def validate(data: RealData) -> RealData:
    """Checks every source must pass: labels within the classes, ≥2 classes, training images of every class."""
    for s, sp in data.splits.items():  # before anything counts per class (bincount)
        if len(sp) and (sp.labels.min() < 0 or sp.labels.max() >= data.num_classes):
            raise DatasetError(f"dataset '{data.name}': {s} labels outside 0..{data.num_classes - 1}")
    for name in data.class_names:  # they travel into checkpoints, manifests, DICOM headers, tables and messages
        if any(unicodedata.category(ch) == "Cc" for ch in str(name)):
            where = data.extra.get("root") or data.extra.get("path") or data.name
            raise DatasetError(f"the class name {str(name)!r} in {str(where)!r} holds a control character (a line "
                               "break or tab); rename the class folder (or the CSV's class_name) to printable text")
    counts = data.counts("train")
    if data.num_classes < 2 or sum(c > 0 for c in counts) < 2:
        raise DatasetError(
            f"dataset '{data.name}' has a single class ({data.class_names[0] if data.class_names else '?'}); "
            "a class-conditional GAN and its evaluation need at least two classes"
        )
    check_splits(data)
    empty = [n for n, c in zip(data.class_names, counts, strict=True) if c == 0]
    if empty:
        raise DatasetError(
            f"dataset '{data.name}': class(es) {', '.join(repr(n) for n in empty)} have no training images (only "
            "validation/test ones); a generator cannot learn a class it never sees: add training images of it"
        )
    return data


def load_dataset(spec: str, data_dir: str | Path | None = None, split_seed: int = 0,
                 download: bool = True, scarce: list[str] | None = None) -> RealData:
    """Resolve a dataset spec (see the module docstring) and apply an optional scarcity spec."""
    spec = str(spec).strip()
    low = spec.lower()
    if low in ("phantom2d", "phantom3d"):
        from medgan.data.phantom import make_phantom

        data = make_phantom(2 if low == "phantom2d" else 3)
    else:
        parsed = medmnist.parse_name(low) if not Path(spec).exists() else None
        if parsed is not None:
            subset, size = parsed
            info = medmnist.registry()[subset]
            if info.get("task", "").startswith("multi-label"):
                raise DatasetError(
                    f"'{subset}' is a multi-label dataset ({len(info['label'])} labels per image); medgan needs "
                    "one class per image: pick a single-label subset"
                )
            path = medmnist.locate(subset, size, data_dir, allow_download=download)
            data = load_npz(path, name=spec.lower(), info=info)
        else:
            p = Path(spec).expanduser()
            if not p.exists():
                looks_like_path = any(ch in spec for ch in "/\\.") or low.endswith((".npz", ".csv"))
                if looks_like_path:
                    raise DatasetError(f"dataset path not found: {spec}; check the path")
                raise DatasetError(f"unknown dataset '{spec}'{medmnist.suggest(spec)}")
            if p.is_file() and p.suffix.lower() == ".npz":
                data = load_npz(p)
            elif p.is_file() and p.suffix.lower() == ".csv":
                from medgan.data.folder import load_csv

                data = load_csv(p)
            elif p.is_dir():
                from medgan.data.folder import load_folder

                data = load_folder(p)
            else:
                raise DatasetError(
                    f"cannot use {spec} as a dataset: expected a MedMNIST-layout .npz, a CSV manifest, or a "
                    "folder with one sub-folder per class"
                )
    data = validate(ensure_splits(data, split_seed))
    if scarce:
        from medgan.data.scarcity import apply_scarcity

        data = apply_scarcity(data, scarce, seed=split_seed)
    return data
