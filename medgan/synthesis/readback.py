"""Reading a ``medgan augment`` output folder back (what :meth:`medgan.synthesis.bank.SyntheticBank.from_folder`
builds on): the manifest checked against ``augment.json``, the recorded image shape, paths kept inside the folder,
one file of any format in medgan's array layout, a MedMNIST-layout ``.npz``, and the pair ids of an
``augment --pairs`` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medgan.errors import DatasetError


def read_npz(path: Path, dims: int | None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """A MedMNIST-layout npz -> ``(N, C, *spatial)`` images, labels and class names if stored."""
    from medgan.data.npz import channel_first, read_labels

    try:
        with np.load(path, allow_pickle=False) as z:
            if "train_images" not in z.files or "train_labels" not in z.files:
                raise DatasetError(f"{path} lacks train_images/train_labels; pass a MedMNIST-layout .npz")
            images, _ = channel_first(z["train_images"], dims, str(path))
            labels = read_labels(z["train_labels"], str(path))
            names = [str(s) for s in z["class_names"]] if "class_names" in z.files else None
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path} as .npz ({type(e).__name__}); is the file complete?") from None
    return images, labels, names


def pair_column(rows: list[dict[str, str]], folder: Path) -> np.ndarray | None:
    """The manifest's ``pair_id`` column (``augment --pairs``) as int64, or ``None`` when the run wrote no pairs."""
    from medgan.synthesis.outdir import MANIFEST, PAIR_ID

    if not rows or PAIR_ID not in rows[0]:
        return None
    try:
        return np.asarray([int(r[PAIR_ID]) for r in rows], dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{folder / MANIFEST}: its {PAIR_ID} column holds a value that is not a pair number; "
                           "re-run medgan augment --pairs") from None


def npz_pair_ids(folder: Path, info: dict[str, Any], n: int) -> np.ndarray | None:
    """The pair ids of an ``augment --pairs`` npz run, in ``train_images`` order (the manifest's ``index``)."""
    from medgan.synthesis.outdir import MANIFEST, read_manifest

    if not info.get("pairs") or not (folder / MANIFEST).is_file():
        return None
    rows = read_manifest(folder)
    pairs = pair_column(rows, folder)
    if pairs is None:
        return None
    try:
        order = np.asarray([int(r["index"]) for r in rows], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        order = np.arange(len(rows))
    if len(rows) != n or sorted(order.tolist()) != list(range(n)):
        raise DatasetError(f"{folder / MANIFEST} lists {len(rows)} rows for the {n} images of the npz; re-run medgan "
                           "augment --pairs")
    out = np.empty(n, dtype=np.int64)
    out[order] = pairs
    return out


def check_manifest(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a ``manifest.csv`` that is not the one ``augment.json`` records (``manifest_sha256``; folders of
    medgan versions before that record are not checked): its rows would be trusted for labels and files."""
    from medgan.io import file_sha256
    from medgan.synthesis.outdir import INFO, MANIFEST

    want = info.get("manifest_sha256")
    if not want:
        return
    found = file_sha256(folder / MANIFEST)
    if found != want:
        raise DatasetError(f"{folder / MANIFEST} is not the manifest medgan augment wrote: {folder / INFO} records "
                           f"SHA-256 {str(want)[:16]}..., the file has {found[:16]}...; it was edited or replaced "
                           "afterwards: re-run medgan augment")


def recorded_shape(folder: Path, info: dict[str, Any]) -> tuple[int, ...] | None:
    """``(C, *spatial)`` of the images ``augment.json`` records (``None`` without such a record); an intensity
    record there must be sound (:func:`~medgan.data.dataset.intensity_problem`)."""
    from medgan.data.dataset import intensity_problem
    from medgan.synthesis.outdir import INFO

    if "intensity" in info and (problem := intensity_problem(info["intensity"])):
        raise DatasetError(f"{folder / INFO}: its intensity record {problem}; re-run medgan augment")
    try:
        return (int(info["channels"]),) + (int(info["size"]),) * int(info["spatial_dims"])
    except (KeyError, TypeError, ValueError):
        return None


def as_recorded(a: np.ndarray, want: tuple[int, ...] | None, path: Path, folder: Path) -> np.ndarray:
    """A file's image, refused when its shape is not the one ``augment.json`` records (a file replaced later)."""
    if want is not None and tuple(a.shape) != want:
        raise DatasetError(f"{path} holds an image of shape {tuple(a.shape)} but {folder / 'augment.json'} records "
                           f"{want} (channels, *spatial): the file was replaced after medgan augment wrote it; "
                           "re-run medgan augment")
    return a


def inside(folder: Path, rel: str | None, row: int) -> Path:
    """``folder / rel`` for a manifest path that stays inside ``folder`` (no absolute path, no ``..`` out of it,
    no symlink pointing elsewhere); a manifest may not make medgan read files outside its folder."""
    root = folder.resolve()
    p = (folder / (rel or "")).resolve()
    if not rel or Path(rel).is_absolute() or root not in p.parents:
        raise DatasetError(f"{folder / 'manifest.csv'} row {row}: path {rel!r} points outside {folder}; synthetic "
                           "files must lie inside their augment folder (re-run medgan augment)")
    return folder / rel


def read_file(path: Path, spatial_dims: int, swap: bool = False) -> np.ndarray:
    """One file written by an augment writer -> ``(C, *spatial)`` in source values, in medgan's array layout
    (``swap``: the file holds the first two spatial axes swapped, see :func:`~medgan.synthesis.writers.file_axes_swapped`)."""
    name = path.name.lower()
    if not path.is_file():
        raise DatasetError(f"{path} is listed in the manifest but missing; re-run medgan augment")
    if name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im)
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        a = np.asarray(nib.load(str(path)).dataobj)
    elif name.endswith(".dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        a = ds.pixel_array
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        if intercept:
            a = (a.astype(np.int32) + int(intercept)).astype(np.int16 if a.dtype == np.uint16 else np.int8)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 or spatial_dims == 3:  # frames -> last spatial axis
            a = np.moveaxis(a, 0, 2)
    else:
        raise DatasetError(f"{path}: unknown synthetic file type; expected .png, .nii.gz or .dcm")
    a = a[None] if a.ndim == spatial_dims else np.moveaxis(a, -1, 0)
    return np.ascontiguousarray(a.swapaxes(1, 2)) if swap else a
