"""Distances between sets of images or feature vectors: the numbers behind sample quality, memorisation and
the collapse alarm. Pure functions on arrays/tensors; no model, no file.

* :func:`frechet_distance` (FD): Gaussian fits of two feature clouds.
* :func:`kernel_distance` (KID): unbiased MMD² with the cubic polynomial kernel ``(x·y/d + 1)^3``, averaged over
  random subsets of ``min(100, n_a, n_b)`` samples (small subsets keep it usable on scarce classes).
* :func:`prdc`: precision / recall / density / coverage (Naeem et al. 2020) with k nearest neighbours.
* :func:`mean_pairwise_distance` and :func:`within_class_diversity`: how varied a set (or each class) is.
* :func:`nearest` and :func:`copy_threshold`: nearest neighbours of one set in another, and the near-copy
  threshold calibrated on the real data's own leave-one-out nearest-neighbour distances.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

#: The near-copy rule: a synthetic sample is a near-copy of a training image when its pixel-space distance to the
#: nearest one is at or below this percentile of the real images' leave-one-out nearest-neighbour distances.
DEFAULT_PERCENTILE = 1.0
NEAR_COPY_RULE = ("flagged when the pixel-space distance to the nearest real training image is at or below "
                  "percentile {p:g} of the real training images' leave-one-out nearest-neighbour distances")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, F)`` feature sets."""
    from scipy import linalg

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))

    def sqrtm(m: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular products are handled below
            r = linalg.sqrtm(m)
        return r[0] if isinstance(r, tuple) else r  # older scipy returns (sqrtm, errest)

    covmean = sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all() or np.abs(np.imag(covmean)).max() > 1e-3:
        # a singular covariance (e.g. a collapsed generator): regularise both, as common FID code does
        eps = 1e-6 * np.eye(len(s1))
        covmean = sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def kernel_distance(a: np.ndarray, b: np.ndarray, subset_size: int = 100, n_subsets: int = 50,
                    seed: int = 0) -> dict[str, float]:
    """Kernel (KID-style) distance: unbiased MMD² with a cubic polynomial kernel over random subsets."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = int(min(subset_size, len(a), len(b)))
    if m < 2:
        return {"mean": float("nan"), "sd": float("nan"), "subset_size": m}
    d = a.shape[1]
    rs = np.random.RandomState(seed)
    vals = []
    for _ in range(n_subsets):
        x = a[rs.choice(len(a), m, replace=False)]
        y = b[rs.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals)), "subset_size": m}


def _kth_nn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # index 0 is the point itself


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float] | None:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (k-NN balls); ``None`` when either
    set has fewer than ``k + 1`` samples."""
    if len(real) < k + 1 or len(fake) < k + 1:
        return None
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    rr = _kth_nn_radius(r, k)
    fr = _kth_nn_radius(f, k)
    d = torch.cdist(r, f)  # (n_real, n_fake)
    inside = d <= rr[:, None]
    return {
        "precision": float(inside.any(0).double().mean()),
        "recall": float((d <= fr[None, :]).any(1).double().mean()),
        "density": float(inside.double().sum() / (k * len(f))),
        "coverage": float((d.min(1).values <= rr).double().mean()),
        "k": k,
    }


def mean_pairwise_distance(x: np.ndarray | torch.Tensor, max_n: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct samples (a seeded subset of ``max_n`` for large sets); ``nan``
    (not measurable) for fewer than two samples, an empty class included."""
    if len(x) < 2:  # before the reshape: an empty set cannot be reshaped to (0, -1)
        return float("nan")
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1).double()
    if len(t) > max_n:
        t = t[torch.as_tensor(np.random.RandomState(seed).choice(len(t), max_n, replace=False))]
    d = torch.cdist(t, t)
    n = len(t)
    return float(d.sum() / (n * (n - 1)))


@torch.no_grad()
def within_class_diversity(x: torch.Tensor, y: torch.Tensor, num_classes: int, max_per_class: int = 64,
                           generator: torch.Generator | None = None) -> list[float]:
    """Mean pairwise RMS distance between images of the same class (``nan`` for a class with < 2 images).

    ``x``: ``(N, C, *spatial)`` in [-1, 1]; at most ``max_per_class`` images per class are used (a seeded random
    subset when ``generator`` is given, else the first ones). The RMS distance is the L2 distance divided by
    sqrt(number of pixels), so 2D and 3D numbers are on the same scale.
    """
    x = x.detach().float().reshape(len(x), -1)
    y = y.detach().reshape(-1)
    out = []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).reshape(-1)
        if len(idx) > max_per_class:
            pick = torch.randperm(len(idx), generator=generator)[:max_per_class] if generator is not None else None
            idx = idx[pick.to(idx.device)] if pick is not None else idx[:max_per_class]
        n = len(idx)
        if n < 2:
            out.append(float("nan"))
            continue
        xc = x[idx].cpu()
        d = torch.cdist(xc, xc) / math.sqrt(xc.shape[1])
        out.append(float(d.sum() / (n * (n - 1))))
    return out


def nearest(query: torch.Tensor, ref: torch.Tensor, exclude_self: bool = False,
            chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean nearest neighbour in ``ref`` of every row of ``query`` (both flattened): (distance, index).

    ``exclude_self``: ``query`` is ``ref`` and each row's own entry is skipped (leave-one-out).
    """
    q = query.reshape(len(query), -1).double()
    r = ref.reshape(len(ref), -1).double()
    dists, idx = [], []
    for i in range(0, len(q), chunk):
        d = torch.cdist(q[i : i + chunk], r)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + i] = float("inf")
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).float(), torch.cat(idx)


def copy_threshold(loo: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The near-copy threshold: percentile ``percentile`` of the real training images' leave-one-out
    nearest-neighbour distances ``loo`` (a synthetic sample at or below it sits closer to a training image than
    99% of real images sit to their closest other real image, for the default 1)."""
    return float(np.percentile(np.asarray(loo, dtype=np.float64), percentile))
