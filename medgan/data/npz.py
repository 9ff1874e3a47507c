"""MedMNIST-layout ``.npz`` files: ``{train,val,test}_{images,labels}``, gray ``(N, H, W)``, RGB ``(N, H, W, 3)``
or volumes ``(N, D, H, W)``; labels ``(N, 1)`` (multi-label files are refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgan.data.dataset import SPLITS, Intensity, RealData, Split, check_pixels
from medgan.errors import DatasetError


def channel_first(images: np.ndarray, dims: int | None, path: str) -> tuple[np.ndarray, int]:
    """MedMNIST layout -> ``(N, C, *spatial)``; returns the array and the number of spatial dims."""
    if images.ndim == 3:  # (N, H, W) gray
        return images[:, None], 2
    if images.ndim == 4 and dims == 3:
        return images[:, None], 3
    if images.ndim == 4 and images.shape[-1] in (3, 4) and dims in (None, 2):
        return np.ascontiguousarray(np.moveaxis(images[..., :3], -1, 1)), 2
    if images.ndim == 4:  # (N, D, H, W) volumes
        return images[:, None], 3
    if images.ndim == 5 and images.shape[-1] in (1, 3):  # (N, D, H, W, C)
        return np.ascontiguousarray(np.moveaxis(images, -1, 1)), 3
    raise DatasetError(f"{path}: images of shape {images.shape} are not 2D or 3D; expected (N,H,W), "
                       "(N,H,W,3) or (N,D,H,W)")


def read_labels(raw: np.ndarray, path: str, key: str = "labels") -> np.ndarray:
    """Class indices ``(N,)`` int64 from a labels array ``(N,)`` or ``(N, 1)``: whole, non-negative numbers.

    Refused with one line: multi-label arrays, non-numeric (string, object) labels, fractional or non-finite
    values, negative values, and values too large to be class indices (checked before anything is allocated per
    class, so a corrupt label cannot exhaust memory)."""
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] > 1:
        raise DatasetError(
            f"{path} is multi-label ({raw.shape[1]} labels per image); medgan trains class-conditional models "
            "on single-label data: pick a single-label subset or convert the labels to one class per image"
        )
    flat = raw.reshape(-1)
    kind = flat.dtype.kind
    if kind == "b":
        return flat.astype(np.int64)
    if kind not in "iuf":
        example = f" (e.g. {flat[0].item()!r})" if len(flat) else ""
        raise DatasetError(f"{path}: {key} are {flat.dtype}{example}, not class indices; store integer labels "
                           "0..K-1 (or use a CSV manifest path,label to name classes)")
    if kind == "f":
        whole = np.isfinite(flat) & (flat == np.round(flat))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise DatasetError(f"{path}: {key}[{i}] is {flat[i].item()!r}; class labels must be whole numbers 0..K-1 "
                               "(fractional labels are not truncated)")
    if len(flat) and flat.min() < 0:
        i = int(np.argmin(flat))
        raise DatasetError(f"{path}: {key}[{i}] is {flat[i].item()!r}; class labels must be 0..K-1 (no negative values)")
    if len(flat) and flat.max() > MAX_CLASSES:
        i = int(np.argmax(flat))
        raise DatasetError(f"{path}: {key}[{i}] is {flat[i].item()!r}, far beyond any number of classes; class labels "
                           "must be 0..K-1: check or renumber the labels")
    return flat.astype(np.int64)


#: The largest class label accepted (a guard against corrupt labels, long before memory would run out).
MAX_CLASSES = 100_000


def class_names_for(splits: dict[str, Split], path: str) -> list[str]:
    """``'0'..'K-1'`` for labels that take exactly the values 0..K-1 over all splits; anything else is refused."""
    values = np.unique(np.concatenate([sp.labels for sp in splits.values()]))
    if not len(values):
        raise DatasetError(f"{path} holds no labelled images; add images and labels")
    if values[-1] != len(values) - 1:
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise DatasetError(
            f"{path}: the labels take the values {shown}, but class labels must be 0..K-1 without gaps (here "
            f"0..{len(values) - 1}); renumber them (np.unique(labels, return_inverse=True)[1]) or use a CSV "
            "manifest path,label,class_name to keep the original values as class names"
        )
    return [str(i) for i in range(len(values))]


def load_npz(path: str | Path, name: str | None = None, info: dict | None = None) -> RealData:
    """An ``.npz`` in MedMNIST layout: ``{train,val,test}_{images,labels}`` (val/test optional; missing ones are
    carved from train later, by :func:`medgan.data.splits.ensure_splits`)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise DatasetError(f"cannot read {path} as .npz ({type(e).__name__}: {e}); is the file complete?") from None
    missing = [k for k in ("train_images", "train_labels") if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path} lacks the key(s) {', '.join(missing)}; a MedMNIST-layout .npz holds train_images and "
            f"train_labels (and optionally val_/test_), found: {', '.join(sorted(arrays)) or 'nothing'}"
        )
    dims_hint = info.get("dims") if info else None
    splits: dict[str, Split] = {}
    dims = None
    for s in SPLITS:
        if f"{s}_images" not in arrays:
            continue
        if f"{s}_labels" not in arrays:
            raise DatasetError(f"{path} has {s}_images but no {s}_labels; add the labels")
        imgs, d = channel_first(arrays[f"{s}_images"], dims_hint, str(path))
        check_pixels(imgs, str(path), prefix=f"{s}_images")
        labels = read_labels(arrays[f"{s}_labels"], str(path), f"{s}_labels")
        if len(labels) != len(imgs):
            raise DatasetError(f"{path}: {s} has {len(imgs)} images but {len(labels)} labels; they must match")
        if dims is not None and d != dims:
            raise DatasetError(f"{path}: splits mix 2D and 3D images; use one dimensionality")
        dims = d
        splits[s] = Split(imgs, labels)
    if info is not None:
        class_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    else:
        class_names = class_names_for(splits, str(path))
    data = RealData(
        name=name or path.stem,
        source="medmnist" if info is not None else "npz",
        class_names=class_names,
        spatial_dims=int(dims),
        channels=int(splits["train"].images.shape[1]),
        splits=splits,
        source_kind="array",
        intensity=Intensity.of(splits["train"].images),
        licence=info.get("license") if info else None,
        extra={"path": str(path)},
    )
    return data
