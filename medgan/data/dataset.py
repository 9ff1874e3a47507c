"""The data model every loader produces: :class:`RealData` (classes, geometry, intensity mapping, splits) made
of :class:`Split` s (images and labels), and :class:`Intensity` (how source values map to the model's [-1, 1]).

Images are kept in their source dtype, channel-first: ``(N, C, *spatial)``, or a list of ``(C, *spatial)``
arrays when shapes differ. :mod:`medgan.data.preprocess` turns them into model tensors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medgan.errors import DatasetError

SPLITS = ("train", "val", "test")


def check_pixels(images: np.ndarray | list[np.ndarray], where: str, names: list[str] | None = None,
                 prefix: str = "image") -> None:
    """Refuse images medgan cannot learn from: complex or non-numeric values, NaN or infinity.

    ``names`` name each image in the message (file paths), else ``prefix[i]`` (e.g. ``train_images[3]``).
    Float arrays are scanned in chunks, so the check needs little memory beyond the images themselves.
    """
    arrs = images if isinstance(images, list) else [images]
    if not len(arrs):
        return
    dt = np.dtype(arrs[0].dtype) if isinstance(images, list) else images.dtype
    kinds = {np.dtype(a.dtype).kind for a in arrs} if isinstance(images, list) else {dt.kind}
    if kinds & {"c"}:
        raise DatasetError(f"{where}: complex-valued images ({dt.name}) are not supported; medgan learns real "
                           "intensities: store the magnitude (np.abs) or the real part instead")
    if kinds - set("biuf"):
        raise DatasetError(f"{where}: images of dtype {dt} are not numeric; store integer or float intensities")
    if "f" not in kinds:
        return
    bad: list[int] = []
    if isinstance(images, list):
        bad = [i for i, a in enumerate(images) if a.dtype.kind == "f" and not np.isfinite(a).all()]
    else:
        n = len(images)
        chunk = max(1, (1 << 24) // max(1, int(np.prod(images.shape[1:]))))
        for i in range(0, n, chunk):
            ok = np.isfinite(images[i : i + chunk].reshape(min(chunk, n - i), -1)).all(axis=1)
            bad += (np.flatnonzero(~ok) + i).tolist()
    if bad:
        which = [names[i] if names else f"{prefix}[{i}]" for i in bad[:3]]
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DatasetError(f"{where}: {len(bad)} image(s) hold NaN or infinite values ({', '.join(which)}{more}); "
                           "fix or remove them before training")


def intensity_problem(record: Any) -> str | None:
    """What makes an intensity record (``min``, ``max``, ``dtype``, as :meth:`Intensity.to_dict` writes it)
    unusable, naming the field; ``None`` when it is sound: finite numbers, ``min`` below ``max``, a numeric numpy
    dtype name, and both values inside that dtype's range. A record with ``min`` above ``max`` writes every image
    inverted; one outside the dtype's range writes clipped images."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not a mapping of min, max and dtype"
    missing = [k for k in ("min", "max", "dtype") if k not in record]
    if missing:
        return f"lacks '{missing[0]}'"
    name = record["dtype"]
    try:
        dt = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dt = None
    if dt is None or dt.name != name or dt.kind not in "biuf":
        return f"'dtype' is {name!r}, not a numeric dtype name (uint8, uint16, int16, float32, ...)"
    for k in ("min", "max"):
        v = record[k]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(float(v)):
            return f"'{k}' is {v!r}, not a finite number"
    lo, hi = float(record["min"]), float(record["max"])
    if not lo < hi:
        return f"'min' ({lo:g}) is not below 'max' ({hi:g})"
    if dt.kind in "iuf":
        info = np.iinfo(dt) if dt.kind in "iu" else np.finfo(dt)
        for k, v in (("min", lo), ("max", hi)):
            if not float(info.min) <= v <= float(info.max):
                return f"'{k}' ({v:g}) is outside the range of {name} ({info.min:g}..{info.max:g})"
    return None


def _name(split: str, sp: Split, i: int) -> str:
    return sp.paths[i] if sp.paths else f"{split}_images[{i}]"


def check_splits(data: RealData) -> None:
    """Refuse splits the model cannot take together: a channel count other than the training images' (an RGB
    validation image beside gray training images), and float values that float32 cannot hold or whose range
    (max - min, over all splits) overflows it (the [-1, 1] scaling would turn them into NaN)."""
    for s, sp in data.splits.items():
        chans = [a.shape[0] for a in sp.images] if isinstance(sp.images, list) else [sp.images.shape[1]] * len(sp)
        bad = next((i for i, c in enumerate(chans) if c != data.channels), None)
        if bad is not None:
            raise DatasetError(f"dataset '{data.name}': {_name(s, sp, bad)} has {chans[bad]} channel(s) but the "
                               f"training images have {data.channels}; convert all images to one kind (all gray or "
                               "all RGB)")
    big = float(np.finfo(np.float32).max)
    lo: tuple[float, str] | None = None
    hi: tuple[float, str] | None = None
    for s, sp in data.splits.items():
        if isinstance(sp.images, list):
            ranges = [(float(a.min()), float(a.max())) if a.dtype.kind == "f" and a.size else None for a in sp.images]
        elif sp.images.dtype.kind == "f" and sp.images.size:
            flat = sp.images.reshape(len(sp.images), -1)
            ranges = list(zip(flat.min(axis=1).tolist(), flat.max(axis=1).tolist(), strict=True))
        else:
            continue
        for i, r in enumerate(ranges):
            if r is None:
                continue
            amin, amax = r
            if max(-amin, amax) > big:
                raise DatasetError(f"dataset '{data.name}': {_name(s, sp, i)} holds the value "
                                   f"{amin if -amin > amax else amax:.4g}, beyond float32 (about 3.4e38), which "
                                   "medgan trains in; rescale the images (e.g. to 0..1) before training")
            if lo is None or amin < lo[0]:
                lo = (amin, _name(s, sp, i))
            if hi is None or amax > hi[0]:
                hi = (amax, _name(s, sp, i))
    if lo is not None and hi is not None and not (hi[0] - lo[0] <= big):
        raise DatasetError(f"dataset '{data.name}': the intensities span {lo[0]:.4g} ({lo[1]}) to {hi[0]:.4g} "
                           f"({hi[1]}), a range float32 cannot hold; rescale the images (e.g. to 0..1) before "
                           "training")


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
    source_kind: str | None = None
    """What the images were read from: ``image`` (PNG/JPEG), ``dicom``, ``nifti`` or ``array`` (.npz, phantoms);
    decides how medgan's arrays map onto MONAI's layout (:mod:`medgan.data.grid`)."""
    scarcity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def native_size(self) -> int:
        """The largest spatial extent of the training images."""
        return max(max(s) for s in self.splits["train"].shapes())

    def native_shape(self) -> list[int]:
        """The median spatial shape of the training images (the extent the model grid resamples)."""
        tr = self.splits["train"].images
        shapes = np.asarray([tr.shape[2:]] if isinstance(tr, np.ndarray) else [a.shape[1:] for a in tr])
        return [int(round(v)) for v in np.median(shapes, axis=0)] if len(shapes) else []

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
            "source_kind": self.source_kind or "array",
            "native_shape": self.native_shape(),
            "scarcity": self.scarcity,
            "train_counts": self.counts("train"),
            "train_fingerprint": self.fingerprint(),
        }
