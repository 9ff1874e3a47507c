"""Resolve ``--dataset`` into labelled images with splits and class names.

A dataset spec is one of:

* a MedMNIST name with an optional size suffix (``breastmnist``, ``pneumoniamnist_64``, ``adrenalmnist3d``);
* ``phantom2d`` / ``phantom3d``: procedural class-conditional images built offline with MONAI's synthetic
  image helpers (the embedded default for demos and tests);
* a path: an ``.npz`` in MedMNIST layout, a folder with one sub-folder per class (PNG/JPEG, NIfTI or DICOM;
  a sub-folder of DICOM slices is one volume), or a CSV manifest ``path,label[,split]``.

Images are kept in their source dtype, channel-first: ``(N, C, *spatial)``. :mod:`medgan.data.preprocess`
turns them into model tensors in [-1, 1].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data import medmnist
from medgan.errors import DatasetError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Intensity:
    """The source intensity range, so [-1, 1] model outputs can be written back as source values."""

    min: float
    max: float
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intensity:
        return cls(float(d["min"]), float(d["max"]), str(d["dtype"]))

    @classmethod
    def of(cls, images: np.ndarray | list[np.ndarray]) -> Intensity:
        arrs = images if isinstance(images, list) else [images]
        dtype = np.dtype(arrs[0].dtype)
        if dtype == np.uint8:
            return cls(0.0, 255.0, "uint8")
        lo = float(min(a.min() for a in arrs))
        hi = float(max(a.max() for a in arrs))
        if hi <= lo:
            hi = lo + 1.0
        return cls(lo, hi, dtype.name)


@dataclass
class Split:
    images: np.ndarray | list[np.ndarray]
    """``(N, C, *spatial)`` array, or a list of ``(C, *spatial)`` arrays when shapes differ."""
    labels: np.ndarray
    """``(N,)`` int64 class indices."""
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> Split:
        idx = np.asarray(idx, dtype=np.int64)
        imgs = self.images[idx] if isinstance(self.images, np.ndarray) else [self.images[i] for i in idx]
        paths = [self.paths[i] for i in idx] if self.paths is not None else None
        return Split(imgs, self.labels[idx], paths)

    def shapes(self) -> set[tuple[int, ...]]:
        if isinstance(self.images, np.ndarray):
            return {tuple(self.images.shape[2:])}
        return {tuple(a.shape[1:]) for a in self.images}

    def fingerprint(self) -> str:
        """SHA-256 of the exact images and labels, in order (proves which real images a model saw)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        arrs = self.images if isinstance(self.images, list) else [self.images]
        for a in arrs:
            a = np.ascontiguousarray(a)
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(a.tobytes())
        return h.hexdigest()


@dataclass
class RealData:
    name: str
    source: str
    class_names: list[str]
    spatial_dims: int
    channels: int
    splits: dict[str, Split]
    intensity: Intensity
    spacing: tuple[float, ...] | None = None
    modality: str | None = None
    licence: str | None = None
    scarcity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def native_size(self) -> int:
        """The largest spatial extent of the training images."""
        return max(max(s) for s in self.splits["train"].shapes())

    def counts(self, split: str = "train") -> list[int]:
        return np.bincount(self.splits[split].labels, minlength=self.num_classes).tolist()

    def fingerprint(self) -> str:
        return self.splits["train"].fingerprint()

    def with_train(self, train: Split, scarcity: dict[str, Any]) -> RealData:
        return replace(self, splits={**self.splits, "train": train}, scarcity=scarcity)

    def meta(self) -> dict[str, Any]:
        """What travels with a checkpoint (JSON-safe)."""
        return {
            "name": self.name,
            "source": self.source,
            "class_names": list(self.class_names),
            "spatial_dims": self.spatial_dims,
            "channels": self.channels,
            "intensity": self.intensity.to_dict(),
            "spacing": list(self.spacing) if self.spacing else None,
            "modality": self.modality,
            "scarcity": self.scarcity,
            "train_counts": self.counts("train"),
            "train_fingerprint": self.fingerprint(),
        }


# ---------------------------------------------------------------------------------------------- npz


def _channel_first(images: np.ndarray, dims: int | None, path: str) -> tuple[np.ndarray, int]:
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


def _labels(raw: np.ndarray, path: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] > 1:
        raise DatasetError(
            f"{path} is multi-label ({raw.shape[1]} labels per image); medgan trains class-conditional models "
            "on single-label data: pick a single-label subset or convert the labels to one class per image"
        )
    return raw.reshape(-1).astype(np.int64)


def load_npz(path: str | Path, name: str | None = None, info: dict | None = None, split_seed: int = 0) -> RealData:
    """An ``.npz`` in MedMNIST layout: ``{train,val,test}_{images,labels}`` (val/test optional; missing ones are
    carved from train with a seeded stratified split)."""
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
        imgs, d = _channel_first(arrays[f"{s}_images"], dims_hint, str(path))
        labels = _labels(arrays[f"{s}_labels"], str(path))
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
        intensity=Intensity.of(splits["train"].images),
        licence=info.get("license") if info else None,
        extra={"path": str(path)},
    )
    return ensure_splits(data, split_seed)


# ------------------------------------------------------------------------------------------ phantoms

PHANTOM_CLASSES = {
    2: ["few_large", "many_small", "single_bright"],
    3: ["few_large", "many_small"],
}
# (number of objects, min radius, max radius) per class, at 28 px
_PHANTOM_SHAPES = {"few_large": (2, 6, 9), "many_small": (9, 2, 3), "single_bright": (1, 2, 4)}
_PHANTOM_COUNTS = {
    2: {"train": [400, 400, 80], "val": [30, 30, 30], "test": [60, 60, 60]},
    3: {"train": [160, 40], "val": [20, 20], "test": [40, 40]},
}


def make_phantom(dims: int, size: int = 28, seed: int = 1234) -> RealData:
    """Procedural class-conditional phantoms from MONAI's ``create_test_image_{2,3}d`` (offline, seeded).

    2D: three classes (two common, ``single_bright`` scarce); 3D: two classes (``many_small`` scarce).
    """
    from monai.data.synthetic import create_test_image_2d, create_test_image_3d

    rs = np.random.RandomState(seed)
    names = PHANTOM_CLASSES[dims]
    scale = size / 28
    splits = {}
    for s in SPLITS:
        imgs, labels = [], []
        for c, n in enumerate(_PHANTOM_COUNTS[dims][s]):
            num, rmin, rmax = _PHANTOM_SHAPES[names[c]]
            rmin, rmax = max(1, int(rmin * scale)), max(2, int(rmax * scale))
            for _ in range(n):
                if dims == 2:
                    img, _ = create_test_image_2d(size, size, num_objs=num, rad_min=rmin, rad_max=rmax,
                                                  noise_max=0.15, random_state=rs)
                else:
                    img, _ = create_test_image_3d(size, size, size, num_objs=num, rad_min=rmin, rad_max=rmax,
                                                  noise_max=0.15, random_state=rs)
                if names[c] == "single_bright":
                    img = np.clip(img * 1.6, 0, 1.15)
                imgs.append(img)
                labels.append(c)
        arr = np.stack(imgs)
        arr = np.clip(arr / max(arr.max(), 1e-6) * 255.0, 0, 255).astype(np.uint8)[:, None]
        order = rs.permutation(len(labels))
        splits[s] = Split(arr[order], np.asarray(labels, dtype=np.int64)[order])
    return RealData(
        name=f"phantom{dims}d",
        source="phantom",
        class_names=list(names),
        spatial_dims=dims,
        channels=1,
        splits=splits,
        intensity=Intensity(0.0, 255.0, "uint8"),
        licence="generated (no licence needed)",
    )


# ---------------------------------------------------------------------------------------- splitting


def stratified_split(labels: np.ndarray, seed: int, val: float = 0.1, test: float = 0.2) -> dict[str, np.ndarray]:
    """Seeded per-class split into train/val/test index arrays (every class keeps ≥1 training image)."""
    rs = np.random.RandomState(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rs.shuffle(idx)
        n = len(idx)
        n_test = int(round(n * test)) if n >= 3 else 0
        n_val = int(round(n * val)) if n >= 3 else 0
        if n - n_test - n_val < 1:
            n_val = max(0, n - n_test - 1)
        out["test"] += idx[:n_test].tolist()
        out["val"] += idx[n_test : n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val :].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}


def ensure_splits(data: RealData, seed: int = 0) -> RealData:
    """Carve the missing val/test splits out of the training split (seeded, stratified).

    With neither present the split is 70/10/20; a dataset that brings its own test split only loses 10% of its
    training images to validation (and vice versa), so given splits are never discarded or shrunk.
    """
    if "val" in data.splits and "test" in data.splits:
        return data
    base = data.splits["train"]
    val = 0.0 if "val" in data.splits else 0.1
    test = 0.0 if "test" in data.splits else 0.2
    parts = stratified_split(base.labels, seed, val=val, test=test)
    splits = dict(data.splits)
    for s in SPLITS:
        if s not in data.splits or s == "train":
            splits[s] = base.subset(parts[s])
    extra = dict(data.extra)
    if val and test:
        extra["split"] = f"stratified 70/10/20, seed {seed}"
    else:
        carved, frac = ("val", val) if val else ("test", test)
        note = f"{carved} carved from the given train split ({frac:.0%}, stratified, seed {seed})"
        extra["split"] = f"{extra['split']}; {note}" if extra.get("split") else note
    return replace(data, splits={s: splits[s] for s in SPLITS}, extra=extra)


def validate(data: RealData) -> RealData:
    """Checks every source must pass: ≥2 classes with training images, consistent labels."""
    counts = data.counts("train")
    if data.num_classes < 2 or sum(c > 0 for c in counts) < 2:
        raise DatasetError(
            f"dataset '{data.name}' has a single class ({data.class_names[0] if data.class_names else '?'}); "
            "a class-conditional GAN and its evaluation need at least two classes"
        )
    for s, sp in data.splits.items():
        if len(sp) and (sp.labels.min() < 0 or sp.labels.max() >= data.num_classes):
            raise DatasetError(f"dataset '{data.name}': {s} labels outside 0..{data.num_classes - 1}")
    return data


# ------------------------------------------------------------------------------------------ dispatch


def load_dataset(spec: str, data_dir: str | Path | None = None, split_seed: int = 0,
                 download: bool = True, scarce: list[str] | None = None) -> RealData:
    """Resolve a dataset spec (see the module docstring) and apply an optional scarcity spec."""
    spec = str(spec).strip()
    low = spec.lower()
    if low in ("phantom2d", "phantom3d"):
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
                data = load_npz(p, split_seed=split_seed)
            elif p.is_file() and p.suffix.lower() == ".csv":
                from medgan.data.folder import load_csv

                data = load_csv(p, split_seed=split_seed)
            elif p.is_dir():
                from medgan.data.folder import load_folder

                data = load_folder(p, split_seed=split_seed)
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
