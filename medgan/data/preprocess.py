"""MONAI transform chains: channel-first images -> float tensors in [-1, 1] at the model size, and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from medgan.errors import DatasetError

if TYPE_CHECKING:
    from medgan.data.dataset import Intensity, RealData

SUPPORTED_SIZES = {2: (28, 32, 64, 128), 3: (28, 32, 64)}


def choose_size(data: RealData, size: int | None) -> int:
    """The model size: ``size`` if given (validated), else the native size when supported, else the largest
    supported size not above it (28 at least)."""
    sizes = SUPPORTED_SIZES[data.spatial_dims]
    if size is not None:
        if size not in sizes:
            raise DatasetError(
                f"model size {size} is not supported in {data.spatial_dims}D; use one of "
                f"{', '.join(map(str, sizes))} (--size)"
            )
        return size
    native = data.native_size
    if native in sizes:
        return native
    below = [s for s in sizes if s <= native]
    return below[-1] if below else sizes[0]


def intensity_transform(intensity: Intensity):
    """MONAI transform mapping the source range linearly onto [-1, 1] (clipped)."""
    from monai.transforms import ScaleIntensityRange

    return ScaleIntensityRange(a_min=intensity.min, a_max=intensity.max, b_min=-1.0, b_max=1.0, clip=True,
                               dtype=np.float32)


def resize_transform(spatial_dims: int, size: int):
    from monai.transforms import Resize

    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    return Resize(spatial_size=(size,) * spatial_dims, mode=mode, anti_aliasing=True)


def to_model_tensor(images: np.ndarray | list[np.ndarray], intensity: Intensity, spatial_dims: int,
                    size: int) -> torch.Tensor:
    """``(N, C, *spatial)`` source images -> ``(N, C, *[size]*dims)`` float32 in [-1, 1].

    Uniform-shape batches go through MONAI's ``Resize`` once, with the batch folded into the channel axis;
    lists of differently shaped images are resized one by one.
    """
    scale = intensity_transform(intensity)
    resize = resize_transform(spatial_dims, size)
    target = (size,) * spatial_dims
    if isinstance(images, np.ndarray):
        n, c = images.shape[:2]
        x = torch.as_tensor(np.asarray(scale(images.astype(np.float32, copy=False))))
        if tuple(images.shape[2:]) != target:
            if n == 0:
                return torch.empty((0, c, *target))
            flat = x.reshape(n * c, *images.shape[2:])
            x = torch.as_tensor(np.asarray(resize(flat))).reshape(n, c, *target)
        return x.clamp_(-1, 1).contiguous()
    out = []
    for a in images:
        t = torch.as_tensor(np.asarray(scale(a.astype(np.float32, copy=False))))
        if tuple(a.shape[1:]) != target:
            t = torch.as_tensor(np.asarray(resize(t)))
        out.append(t.clamp_(-1, 1))
    if not out:
        raise DatasetError("no images to prepare")
    return torch.stack(out).contiguous()


def from_model_tensor(x: torch.Tensor | np.ndarray, intensity: Intensity) -> np.ndarray:
    """[-1, 1] model outputs -> source range and dtype (rounded and clipped for integer dtypes)."""
    a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    a = (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (intensity.max - intensity.min) + intensity.min
    dt = np.dtype(intensity.dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        a = np.clip(np.rint(a), info.min, info.max)
    return a.astype(dt)


def model_spacing(data: RealData, size: int) -> list[float] | None:
    """The physical spacing of the model grid: source extent / model size per axis (mm), or ``None`` when the
    data has no spacing. A 128x128 CT at 0.661 mm trained at size 32 is 2.644 mm per pixel on the model grid;
    a 64x64x6 series at 2 mm resized to 32^3 is 4 x 4 x 0.375 mm. Synthetic files carry this spacing."""
    if not data.spacing:
        return None
    shape = data.native_shape()
    if len(data.spacing) != len(shape):
        return None
    return [round(float(sp) * n / size, 6) for sp, n in zip(data.spacing, shape, strict=True)]


@dataclass
class TensorData:
    """Model-ready tensors of every split plus the metadata that travels with a checkpoint."""

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    size: int
    data: RealData

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one model image."""
        return (self.data.channels,) + (self.size,) * self.data.spatial_dims

    def meta(self) -> dict:
        """What a checkpoint records about its data: :meth:`RealData.meta` with the model ``size``; ``spacing`` is
        the model grid's (:func:`model_spacing`), ``source_spacing`` the training images' own."""
        meta = self.data.meta()
        return {**meta, "size": self.size, "spacing": model_spacing(self.data, self.size),
                "source_spacing": meta["spacing"]}


def prepare(data: RealData, size: int | None = None) -> TensorData:
    """All splits as float tensors in [-1, 1] at the model size (chosen by :func:`choose_size`)."""
    size = choose_size(data, size)
    xs, ys = {}, {}
    for s, sp in data.splits.items():
        if len(sp) == 0:  # e.g. a tiny folder dataset whose stratified split left val/test empty
            xs[s] = torch.empty((0, data.channels) + (size,) * data.spatial_dims)
        else:
            xs[s] = to_model_tensor(sp.images, data.intensity, data.spatial_dims, size)
        ys[s] = torch.as_tensor(sp.labels, dtype=torch.long)
    return TensorData(xs, ys, size, data)
