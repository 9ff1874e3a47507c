"""Image grids per class (2D images, or the three middle slices of 3D volumes), written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgan.io import atomic_write


def _tile(img: np.ndarray) -> np.ndarray:
    """One ``(C, *spatial)`` image in [-1, 1] -> an ``(H, W, 3)`` float tile in [0, 1].

    3D volumes show their three middle slices (axial, coronal, sagittal) side by side.
    """
    img = (np.clip(img, -1, 1) + 1) / 2
    if img.ndim == 4:  # (C, D, H, W)
        c, d, h, w = img.shape
        s = max(d, h, w)
        parts = []
        for sl in (img[:, d // 2], img[:, :, h // 2], img[:, :, :, w // 2]):
            pad = np.zeros((c, s, s), dtype=sl.dtype)
            pad[:, : sl.shape[1], : sl.shape[2]] = sl
            parts.append(pad)
        img = np.concatenate(parts, axis=2)
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    return np.moveaxis(img[:3], 0, -1)


def image_tile(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """One ``(C, *spatial)`` image in [-1, 1] as an ``(H, W, 3)`` float RGB array in [0, 1] (3D: the three middle
    slices side by side), as the grids show it."""
    return _tile(img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32))


#: Tiles are upscaled (nearest neighbour) by at least this factor, and to at least MIN_TILE pixels.
MIN_UPSCALE = 4
MIN_TILE = 112


def upscale_factor(tile_size: int) -> int:
    """The integer factor a tile of ``tile_size`` pixels is enlarged by in a grid (at least :data:`MIN_UPSCALE`)."""
    return max(MIN_UPSCALE, -(-MIN_TILE // max(1, int(tile_size))))


def grid_array(images: torch.Tensor | np.ndarray, labels, class_names: list[str], per_class: int = 8,
               pad: int = 2, scale: int = 1) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` grid: one row per class, up to ``per_class`` images each, each tile enlarged
    ``scale`` times (nearest neighbour)."""
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)

    def tile(a: np.ndarray) -> np.ndarray:
        t = _tile(a)
        return t.repeat(scale, 0).repeat(scale, 1) if scale > 1 else t

    tiles = [[tile(x[i]) for i in np.flatnonzero(y == c)[:per_class]] for c in range(len(class_names))]
    th, tw = tile(x[0]).shape[:2] if len(x) else (8, 8)
    rows, cols = len(class_names), per_class
    out = np.ones((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), dtype=np.float32) * 0.2
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            y0, x0 = pad + r * (th + pad), pad + c * (tw + pad)
            out[y0 : y0 + th, x0 : x0 + tw] = t
    return (out * 255).round().astype(np.uint8)


#: The PNG ``Software`` text of every figure medgan saves: how a single file (``info --grid``) proves it is
#: medgan's before it is replaced.
PNG_SOFTWARE = "medgan"


def is_medgan_png(path: str | Path) -> bool:
    """Whether ``path`` is a PNG figure medgan saved (its ``Software`` text is :data:`PNG_SOFTWARE`)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == PNG_SOFTWARE
    except Exception:  # unreadable or not an image: not medgan's
        return False


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename) and close it. The saved area is the
    figure's tight bounding box (``bbox_inches="tight"``), so no title, label or legend is cut off."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08,
                                                 metadata={"Software": PNG_SOFTWARE}))
    finally:
        plt.close(fig)
    return path


def save_grid(path: str | Path, images, labels, class_names: list[str], per_class: int = 8,
              title: str | None = None, indexed: bool = True) -> Path:
    """Write a per-class grid, atomically: tiles enlarged at least 4x (:func:`upscale_factor`), one row per
    class labelled with its index and name (``indexed=False``: with its name alone, for rows that are not the
    dataset's classes), the title above; nothing is clipped (tight bounding box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = images.detach().cpu() if isinstance(images, torch.Tensor) else np.asarray(images)
    scale = upscale_factor(int(x.shape[-1])) if len(x) else MIN_UPSCALE
    arr = grid_array(images, labels, class_names, per_class, pad=2 * scale, scale=scale)
    h, w = arr.shape[:2]
    dpi = 100
    fig = plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))  # the grid at one image pixel per screen pixel; labels outside the axes
    ax.imshow(arr, interpolation="nearest")
    rows = len(class_names)
    ax.set_yticks([(i + 0.5) * h / rows for i in range(rows)])
    ax.set_yticklabels([f"{i}: {n}" if indexed else n for i, n in enumerate(class_names)], fontsize=11)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi)
