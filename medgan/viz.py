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


def grid_array(images: torch.Tensor | np.ndarray, labels, class_names: list[str], per_class: int = 8,
               pad: int = 2) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` grid: one row per class, up to ``per_class`` images each."""
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    tiles = [[_tile(x[i]) for i in np.flatnonzero(y == c)[:per_class]] for c in range(len(class_names))]
    th, tw = _tile(x[0]).shape[:2] if len(x) else (8, 8)
    rows, cols = len(class_names), per_class
    out = np.ones((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), dtype=np.float32) * 0.2
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            y0, x0 = pad + r * (th + pad), pad + c * (tw + pad)
            out[y0 : y0 + th, x0 : x0 + tw] = t
    return (out * 255).round().astype(np.uint8)


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Write a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)
    return path


def save_grid(path: str | Path, images, labels, class_names: list[str], per_class: int = 8,
              title: str | None = None) -> Path:
    """Write a per-class grid with class names on the left (matplotlib), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = grid_array(images, labels, class_names, per_class)
    h, w = arr.shape[:2]
    scale = max(1.0, 480 / w)
    fig, ax = plt.subplots(figsize=(w * scale / 100 + 1.6, h * scale / 100 + (0.4 if title else 0.1)), dpi=100)
    ax.imshow(arr, interpolation="nearest")
    rows = len(class_names)
    ax.set_yticks([(i + 0.5) * h / rows for i in range(rows)])
    ax.set_yticklabels([f"{i}: {n}" for i, n in enumerate(class_names)], fontsize=8)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
