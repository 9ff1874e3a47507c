"""Per-sample seeds and latent vectors, independent of batch size and request.

Every sample has its own 63-bit seed, derived from ``(seed, class, index within the class, attempt)`` by a
counter-based hash (SplitMix64), and its latent vector ``z`` is a pure function of that seed. So a sample's
identity does not depend on the batch size, on which other classes are drawn, or on how many samples are
requested: ``sample(10, seed=0)`` is a prefix of ``sample(100, seed=0)`` class by class, and the seed stored in
an augment manifest regenerates its image with :func:`latents_for_seeds`.

Counterfactual pairs (``medgan augment --pairs``) share one latent vector across classes: the seed of pair ``p``
comes from ``(seed, p, attempt)`` alone (:func:`derive_pair_seeds`, a hash with its own tag, so it never depends on
the class), and every member of the pair is generated from it with its own class label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# distinct odd constants that tag the fields hashed into a per-sample seed
_TAG_CLASS = np.uint64(0xD6E8FEB86659FD93)
_TAG_INDEX = np.uint64(0xA0761D6478BD642F)
_TAG_ATTEMPT = np.uint64(0xE7037ED1A0B428DB)
_TAG_PAIR = np.uint64(0x8EBC6AF09C88C6E3)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return x


def derive_seeds(seed: int, classes: np.ndarray | int, indices: np.ndarray | int,
                 attempt: np.ndarray | int = 0) -> np.ndarray:
    """Per-sample seeds (int64, non-negative, 63 bits) from the run seed, class, index and redraw attempt."""
    c = np.asarray(classes, dtype=np.int64).astype(np.uint64)
    i = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    a = np.asarray(attempt, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN, dtype=np.uint64))
        h = _mix(h ^ (c * _TAG_CLASS + _GOLDEN))
        h = _mix(h ^ (i * _TAG_INDEX + _GOLDEN))
        h = _mix(h ^ (a * _TAG_ATTEMPT + _GOLDEN))
    c, i, a, h = np.broadcast_arrays(c, i, a, h)
    return (h >> np.uint64(1)).astype(np.int64)


def derive_pair_seeds(seed: int, pairs: np.ndarray | int, attempt: np.ndarray | int = 0) -> np.ndarray:
    """Per-pair seeds (int64, non-negative, 63 bits) from the run seed, the pair index and the redraw attempt: one
    latent vector for every class of the pair."""
    p = np.asarray(pairs, dtype=np.int64).astype(np.uint64)
    a = np.asarray(attempt, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN, dtype=np.uint64))
        h = _mix(h ^ (p * _TAG_PAIR + _GOLDEN))
        h = _mix(h ^ (a * _TAG_ATTEMPT + _GOLDEN))
    p, a, h = np.broadcast_arrays(p, a, h)
    return (h >> np.uint64(1)).astype(np.int64)


def latents_for_seeds(seeds: np.ndarray | Sequence[int], dim: int) -> torch.Tensor:
    """Standard-normal latent vectors ``(len(seeds), dim)`` (float32), each a pure function of its seed.

    Counter-based: uniform pairs come from SplitMix64 of ``seed + k * golden``, turned into normals with the
    Box-Muller transform (in float64, so the result is the same on every platform).
    """
    s = np.asarray(seeds, dtype=np.int64).astype(np.uint64).reshape(-1, 1)
    half = (dim + 1) // 2
    k = np.arange(1, 2 * half + 1, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        bits = _mix(s + k * _GOLDEN)
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)
    u1, u2 = u[:, :half], u[:, half:]
    r = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 in (0, 1]
    z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1)[:, :dim]
    return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
