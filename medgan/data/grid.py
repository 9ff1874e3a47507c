"""The model grid: size, spacing and axis order of the arrays a checkpoint's generator makes, and how they map
onto MONAI's layout.

medgan keeps every image in the axis order its reader gave (``Split.images``): PNG/JPEG and DICOM as
``(rows, columns[, slices])`` like NumPy and PIL, NIfTI in its voxel order ``(i, j, k)``, MedMNIST ``.npz``
arrays as stored. MONAI's ``LoadImage`` with default arguments returns every format as ``(x, y[, z])``: the
first spatial axis runs along an image row (``PILReader(reverse_indexing=True)``,
``PydicomReader(swap_ij=True)``), NIfTI unchanged. So the two layouts differ by swapping the first two spatial
axes exactly when the training data came in row-first order:

==================================  =========================  ==========================
training data (``source_kind``)     medgan array axes          MONAI ``LoadImage`` axes
==================================  =========================  ==========================
PNG/JPEG folders (``image``)        (y, x)                     (x, y)
DICOM files or series (``dicom``)   (y, x, z)                  (x, y, z)
NIfTI (``nifti``)                   (x, y, z)                  (x, y, z)
2D arrays: MedMNIST, phantoms       (y, x): images             (x, y), as if saved as PNG
3D arrays: MedMNIST, phantoms       (x, y, z): volumes         (x, y, z), as if saved as NIfTI
==================================  =========================  ==========================

:func:`model_grid` is the one place that turns a checkpoint's ``data`` record into this geometry: the model
size, the spacing of the model grid (the training spacing scaled by native extent / model size) and the axis
order. The bank, the MONAI transform and the augment writers all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``source_kind`` values: what the training images were read from.
KINDS = ("image", "dicom", "nifti", "array")


def kind_of_reader(reader_kind: str) -> str:
    """The ``source_kind`` of a :func:`medgan.data.readers.kind_of` answer (``pil`` -> ``image``, ``series`` ->
    ``dicom``)."""
    return {"pil": "image", "series": "dicom"}.get(reader_kind, reader_kind)


def row_first(kind: str | None, spatial_dims: int) -> bool:
    """True when arrays of this kind hold (rows, columns, ...) = (y, x, ...), i.e. differ from MONAI's (x, y)."""
    if kind in ("image", "dicom"):
        return True
    if kind == "nifti":
        return False
    return int(spatial_dims) == 2  # plain arrays: 2D ones are images, 3D ones volumes


@dataclass(frozen=True)
class Grid:
    """The geometry of a checkpoint's images (``spacing`` in medgan's array axis order, mm; ``None``: unknown)."""

    spatial_dims: int
    size: int
    spacing: tuple[float, ...] | None
    source_kind: str
    row_first: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size,) * self.spatial_dims

    def monai_spacing(self) -> tuple[float, ...]:
        """The spacing in MONAI's (x, y[, z]) order (1.0 where unknown)."""
        sp = list(self.spacing) if self.spacing else [1.0] * self.spatial_dims
        if self.row_first:
            sp[0], sp[1] = sp[1], sp[0]
        return tuple(float(v) for v in sp)

    def monai_affine(self) -> np.ndarray:
        """A diagonal affine (4 x 4, float64) with :meth:`monai_spacing` on the spatial axes."""
        aff = np.eye(4)
        for k, s in enumerate(self.monai_spacing()):
            aff[k, k] = s
        return aff

    def to_monai(self, x: Any, channel_first: bool = True) -> Any:
        """medgan's array layout -> MONAI's (swap the first two spatial axes when ``row_first``).

        ``x``: a numpy array or tensor ``(..., C, *spatial)`` (``channel_first``) or ``(..., *spatial)``."""
        if not self.row_first:
            return x
        d = self.spatial_dims
        a0 = -d
        return x.swapaxes(a0, a0 + 1) if hasattr(x, "swapaxes") else x.transpose(a0, a0 + 1)

    from_monai = to_monai  # swapping is its own inverse

    def to_dict(self) -> dict[str, Any]:
        return {"spatial_dims": self.spatial_dims, "size": self.size,
                "spacing": list(self.spacing) if self.spacing else None, "source_kind": self.source_kind,
                "row_first": self.row_first}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        sp = d.get("spacing")
        return cls(int(d["spatial_dims"]), int(d["size"]), tuple(float(v) for v in sp) if sp else None,
                   str(d.get("source_kind") or "array"), bool(d["row_first"]))


def grid_spacing(meta: dict[str, Any]) -> tuple[float, ...] | None:
    """The spacing of the model grid: the training spacing times native extent / model size on each axis.

    Checkpoints record it as ``spacing`` (computed at training time by
    :func:`medgan.data.preprocess.model_spacing`, with the source's own as ``source_spacing``); for checkpoints
    written before that, it is computed here from the training spacing and ``native_shape`` (or, without
    ``native_shape``, the training spacing is taken as is).
    """
    sp = meta.get("spacing")
    if not sp:
        return None
    dims = int(meta["spatial_dims"])
    sp = [float(v) for v in list(sp)[:dims]]
    if "source_spacing" in meta:  # already the model grid's
        return tuple(round(s, 6) for s in sp)
    native = meta.get("native_shape")
    size = meta.get("size")
    if native and size and len(native) >= dims:
        sp = [s * float(n) / float(size) for s, n in zip(sp, list(native)[:dims], strict=True)]
    return tuple(round(s, 6) for s in sp)


def model_grid(meta: dict[str, Any]) -> Grid:
    """The :class:`Grid` of a checkpoint's ``data`` record (or an ``augment.json``)."""
    if isinstance(meta.get("grid"), dict):
        return Grid.from_dict(meta["grid"])
    dims = int(meta["spatial_dims"])
    kind = meta.get("source_kind") or "array"
    return Grid(dims, int(meta["size"]), grid_spacing(meta), str(kind), row_first(kind, dims))
