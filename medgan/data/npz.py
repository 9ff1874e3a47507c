"""MedMNIST-layout ``.npz`` files: ``{train,val,test}_{images,labels}``, gray ``(N, H, W)``, RGB ``(N, H, W, 3)``
or volumes ``(N, D, H, W)``; labels ``(N, 1)`` (multi-label files are refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgan.data.dataset import SPLITS, Intensity, RealData, Split
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


def read_labels(raw: np.ndarray, path: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] > 1:
        raise DatasetError(
            f"{path} is multi-label ({raw.shape[1]} labels per image); medgan trains class-conditional models "
            "on single-label data: pick a single-label subset or convert the labels to one class per image"
        )
    return raw.reshape(-1).astype(np.int64)


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
        labels = read_labels(arrays[f"{s}_labels"], str(path))
        if len(labels) != len(imgs):
            raise DatasetError(f"{path}: {s} has {len(imgs)} images but {len(labels)} labels; they must match")
        if dims is not None and d != dims:
            raise DatasetError(f"{path}: splits mix 2D and 3D images; use one dimensionality")
        dims = d
        splits[s] = Split(imgs, labels)
    if info is not None:
        class_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    else:
        n = int(max(int(sp.labels.max()) for sp in splits.values()) + 1)
        class_names = [str(i) for i in range(n)]
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
