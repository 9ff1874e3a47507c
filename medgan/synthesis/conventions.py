"""What a synthetic sample must look like at a given point of a MONAI chain, and the checks that say when it
does not: the class mapping between a pipeline's labels and a bank's classes, fresh MONAI metadata for a
synthetic image, and a one-time comparison of the first real image with the synthetic ones (orientation and
value range). Used by :mod:`medgan.synthesis.transforms`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medgan.data.classes import class_index, folder_name
from medgan.errors import MedganError


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n!r}" for i, n in enumerate(names))


def _as_index(label: Any, n: int | None) -> int:
    """An integer class index from an int, a one-element array/tensor or a one-hot vector of length ``n``."""
    if isinstance(label, (bool, np.bool_)):
        raise MedganError(f"class label {label!r} is a boolean; pass a class index or name")
    if isinstance(label, (int, np.integer)):
        return int(label)
    a = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
    if a.dtype.kind in "US":
        raise MedganError(f"class label array {a.tolist()!r}: pass one class per sample")
    a = a.reshape(-1)
    if a.size == 1 and a.dtype.kind in "iuf" and float(a[0]).is_integer():
        return int(a[0])
    if n is not None and a.size == n and np.isclose(a.sum(), 1) and ((a == 0) | (a == 1)).all():
        return int(a.argmax())
    raise MedganError(f"cannot read a class from a label of shape {tuple(np.shape(a))} ({a.tolist()[:4]}); pass one "
                      "integer class or class name per sample (or a one-hot vector)")


def label_index(label: Any, num_classes: int | None = None) -> int:
    """A class index from an int, a one-element array/tensor, or a one-hot vector (no range check)."""
    if label is None:
        raise MedganError("the sample has no class label (None); every sample needs its class")
    return _as_index(label, num_classes)


class ClassMap:
    """Maps a pipeline's labels to a bank's class indices.

    ``class_names``: ``None`` (labels are the bank's class indices or names), the pipeline's class names in label
    order (``["benign", "malignant"]``: label 0 is ``benign``), or a mapping ``{pipeline label: bank class}``
    (keys: label values or names; values: bank class names or indices). Names may also be the folder names
    ``medgan augment`` writes (``normal_benign``). A pipeline class the bank lacks is refused.
    """

    def __init__(self, bank_names: Sequence[str], class_names: Sequence[str] | Mapping[Any, Any] | None = None):
        self.bank_names = [str(c) for c in bank_names]
        self.names: list[str] | None = None
        self.by_key: dict[Any, int] = {}
        if class_names is None:
            return
        if isinstance(class_names, str):
            raise MedganError("class_names must be a list of the pipeline's class names in label order (or a "
                              f"mapping), not the string {class_names!r}")
        pairs = class_names.items() if isinstance(class_names, Mapping) else enumerate(class_names)
        if not isinstance(class_names, Mapping):
            self.names = [str(c) for c in class_names]
        for key, target in pairs:
            try:
                b = class_index(target, self.bank_names)
            except MedganError:
                raise MedganError(f"the pipeline's class {target!r} (label {key!r}) is not a class of the synthetic "
                                  f"bank ({_listing(self.bank_names)}); pass class_names as a mapping "
                                  "{pipeline label: bank class}") from None
            if b in self.by_key.values():
                other = next(k for k, v in self.by_key.items() if v == b)
                raise MedganError(f"pipeline labels {other!r} and {key!r} both map to the bank's class "
                                  f"{self.bank_names[b]!r}; each pipeline class needs its own bank class")
            self.by_key[key] = b
        if self.names is not None:  # names resolve too: a label may be a name
            for i, n in enumerate(self.names):
                self.by_key.setdefault(n, self.by_key[i])
                self.by_key.setdefault(folder_name(n), self.by_key[i])

    @property
    def num_labels(self) -> int:
        return len(self.names) if self.names is not None else len(self.bank_names)

    def __call__(self, label: Any) -> int:
        """The bank class index of a pipeline ``label`` (index, name, one-element array, one-hot); one-line
        :class:`MedganError` for anything unknown or out of range."""
        if label is None:
            raise MedganError("the sample has no class label (None); every sample needs its class")
        if isinstance(label, bytes):
            label = label.decode()
        if isinstance(label, str):
            return self._name(label)
        i = _as_index(label, self.num_labels)
        if self.by_key:
            if i in self.by_key:
                return self.by_key[i]
            known = ", ".join(repr(k) for k in self.by_key if not isinstance(k, str))
            raise MedganError(f"class label {i} is not one of the pipeline's labels ({known})")
        if not 0 <= i < len(self.bank_names):
            raise MedganError(f"class label {i} is out of range: the synthetic bank has {len(self.bank_names)} "
                              f"classes ({_listing(self.bank_names)}); pass class_names to map your labels")
        return i

    def _name(self, name: str) -> int:
        if self.by_key:
            for key in (name, name.strip()):
                if key in self.by_key:
                    return self.by_key[key]
            low = {str(k).lower(): v for k, v in self.by_key.items() if isinstance(k, str)}
            if name.strip().lower() in low:
                return low[name.strip().lower()]
            if self.names is not None:
                raise MedganError(f"unknown class {name!r}; the pipeline's classes: {_listing(self.names)}")
        return class_index(name, self.bank_names)


# ------------------------------------------------------------------------------------------- metadata


def synthetic_meta(like: Mapping[str, Any] | None, affine: np.ndarray, spatial_shape: Sequence[int],
                   name: str) -> dict[str, Any]:
    """Fresh MONAI metadata for a synthetic image: its own name, the model grid's affine, its spatial shape.

    Only ``original_channel_dim`` is taken from the real sample's metadata ``like`` (it says how
    ``EnsureChannelFirst`` should read the array, which the synthetic image mimics); nothing else of the real file
    is carried over. MONAI's collation keeps the keys real and synthetic samples share.
    """
    from monai.utils import SpaceKeys

    # the same types LoadImage gives (MONAI's collation stacks each key across real and synthetic samples)
    meta: dict[str, Any] = {"filename_or_obj": name, "affine": torch.as_tensor(affine, dtype=torch.float64),
                            "original_affine": np.asarray(affine, dtype=np.float64),
                            "spatial_shape": np.asarray(spatial_shape), "space": SpaceKeys.RAS, "is_synthetic": True}
    if like is not None and "original_channel_dim" in like:
        meta["original_channel_dim"] = like["original_channel_dim"]
    return meta


# ------------------------------------------------------------------------------------------- first-sample check


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else 0.0


def orientation_hint(real: np.ndarray, mean: np.ndarray, layout: str) -> str | None:
    """A warning when the real image ``(C, *spatial)`` matches the synthetic class mean transposed (first two
    spatial axes) clearly better than as it is; ``None`` otherwise or when the check cannot tell."""
    r, m = np.asarray(real, dtype=np.float64)[0], np.asarray(mean, dtype=np.float64)[0]
    if r.shape != m.shape or r.ndim < 2 or r.shape[0] != r.shape[1]:
        return None
    direct, swapped = _corr(r, m), _corr(r, m.swapaxes(0, 1))
    if swapped > direct + 0.15 and swapped > 0.25:
        other = "array" if layout == "monai" else "monai"
        how = ("layout='array' (your images are in NumPy/PIL row order, e.g. loaded with reverse_indexing=False or "
               "from .npz arrays)") if other == "array" else ("layout='monai' (your images come from LoadImage with "
                                                               "default arguments)")
        return (f"the first real image matches the synthetic images transposed (correlation {swapped:.2f}) better "
                f"than as they are ({direct:.2f}): its axes look swapped relative to the bank's layout '{layout}'; "
                f"use {how}")
    return None


def range_hint(real: np.ndarray, syn_lo: float, syn_hi: float, out_lo: float, out_hi: float,
               value_range: Any) -> str | None:
    """A warning when the real image's value range is far from the synthetic images' typical range (both mapped
    onto [-1, 1] through the transform's output range ``[out_lo, out_hi]``)."""
    r = np.asarray(real, dtype=np.float64)
    if r.size == 0 or not np.isfinite(r).all():
        return None
    span = (out_hi - out_lo) or 1.0

    def unit(v: float) -> float:
        return (v - out_lo) / span * 2.0 - 1.0

    rlo, rhi = float(r.min()), float(r.max())
    if abs(unit(rlo) - unit(syn_lo)) <= 0.5 and abs(unit(rhi) - unit(syn_hi)) <= 0.5:
        return None
    return (f"the first real image has values in [{rlo:.4g}, {rhi:.4g}] but synthetic images come out in "
            f"[{syn_lo:.4g}, {syn_hi:.4g}] (value_range={value_range!r}); place the transform right after "
            "LoadImaged/EnsureChannelFirstd with value_range='source', or pass value_range=(low, high) of your "
            "images at that point of the chain")


def warn_once(owner: Any, message: str | None) -> None:
    """Emit ``message`` (if any) as a ``UserWarning``, once per ``owner`` and message."""
    if not message:
        return
    seen = owner.__dict__.setdefault("_warned", set())
    if message not in seen:
        seen.add(message)
        warnings.warn(f"medgan RandSyntheticReplace: {message}", UserWarning, stacklevel=4)
