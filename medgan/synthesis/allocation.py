"""How many synthetic images each class gets: the three allocation policies, named by what they do.

=============================  =====================================  =========================================
policy                         used by                                what it does
=============================  =====================================  =========================================
:func:`fill_smallest_first`    ``medgan evaluate`` (GAN arms, R)      ``round(R * N_real)`` images in all, given
                                                                      to the classes with the fewest real images
                                                                      first ("water filling")
:func:`proportional`           :func:`medgan.synthesis.mixing`        ``round(R * n_c)`` per class: the real
                               (dataset mixing, ratio R)              class balance is kept
:func:`per_class_request`      ``medgan augment`` (``--n``/``--class``)  ``n`` for every requested class
=============================  =====================================  =========================================

``"balance"`` in place of a ratio, or ``--balance``, means the same everywhere: :func:`top_up_to_majority`, as
many images as lift each class to the largest class's count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medgan.errors import ConfigError, MedganError


def _check_balance(ratio: str) -> None:
    if ratio != "balance":
        raise MedganError(f"unknown ratio '{ratio}'; use a number > 0 or 'balance' (--ratio)")


def top_up_to_majority(real_counts: Sequence[int]) -> list[int]:
    """Per class: the images that lift it to the largest class's count (``"balance"``)."""
    c = np.asarray(real_counts, dtype=np.int64)
    return (c.max() - c).tolist() if len(c) else []


def fill_smallest_first(real_counts: Sequence[int], ratio: float | str) -> list[int]:
    """``round(ratio * N_real)`` synthetic images in all (``N_real`` = all real training images), given to the
    classes with the fewest real images first: the lowest classes are raised level until all are equal, and what
    remains goes one image each to the classes with the fewest real images first. ``"balance"``:
    :func:`top_up_to_majority`. Used by the GAN arms of ``medgan evaluate``."""
    c = np.asarray(real_counts, dtype=np.int64)
    if isinstance(ratio, str):
        _check_balance(ratio)
        return top_up_to_majority(real_counts)
    total = int(round(float(ratio) * int(c.sum())))
    if total <= 0:
        return [0] * len(c)

    def filled(level: int) -> int:
        return int(np.maximum(0, level - c).sum())

    lo, hi = int(c.min()), int(c.max()) + total
    while lo < hi:  # the highest level reachable with `total` images
        mid = (lo + hi + 1) // 2
        if filled(mid) <= total:
            lo = mid
        else:
            hi = mid - 1
    alloc = np.maximum(0, lo - c)
    left = total - int(alloc.sum())
    at_level = [i for i in np.lexsort((np.arange(len(c)), c)) if c[i] <= lo]
    for i in at_level[:left]:
        alloc[i] += 1
    return alloc.tolist()


def proportional(real_counts: Sequence[int], ratio: float | str) -> list[int]:
    """``round(ratio * n_c)`` synthetic images for each class ``c`` (synthetic:real = ``ratio`` in every class,
    so the class balance of the real data is kept); ``"balance"``: :func:`top_up_to_majority`. Used by
    :func:`medgan.synthesis.mixing.mix_real_synthetic`."""
    if isinstance(ratio, str):
        if ratio != "balance":
            raise MedganError(f"ratio must be a number >= 0 or 'balance', got {ratio!r}")
        return top_up_to_majority(real_counts)
    r = float(ratio)
    if not np.isfinite(r) or r < 0:
        raise MedganError(f"ratio must be a number >= 0 or 'balance', got {ratio!r}")
    return [int(round(r * int(c))) for c in real_counts]


def per_class_request(requested: Sequence[int], n: int | None, balance: bool,
                      train_counts: Sequence[int] | None, class_names: Sequence[str],
                      pairs: bool = False) -> dict[int, int]:
    """``medgan augment``: ``n`` samples for each requested class index, or (``balance``) what tops each requested
    class up to the majority class count of the generator's training data (classes already there get none).

    A class without training images is refused: the generator never saw it, its samples would be noise under a
    real class's label. ``pairs``: ``n`` counterfactual pairs over every class, so an untrained class is refused
    with that reason."""
    if train_counts and len(train_counts) == len(class_names):
        unseen = [class_names[c] for c in requested if int(train_counts[c]) == 0]
        if unseen and pairs:
            raise MedganError(f"--pairs needs every class, but {', '.join(repr(n) for n in unseen)} had no training "
                              "images, so the generator never learned it; drop --pairs and request trained classes "
                              "with --class")
        if unseen:
            raise MedganError(f"class(es) {', '.join(repr(n) for n in unseen)} had no training images, so the "
                              "generator never learned them; request only trained classes with --class")
    if balance:
        if n is not None:
            raise MedganError("--n and --balance exclude each other: --n N samples per class, or --balance to top "
                              "each class up to the majority count")
        if not train_counts or len(train_counts) != len(class_names):
            raise MedganError("this checkpoint does not record its training class counts, so --balance cannot work; "
                              "pass --n N instead")
        top = top_up_to_majority(train_counts)
        counts = {c: int(top[c]) for c in requested}
        if sum(counts.values()) == 0:
            names = ", ".join(class_names[c] for c in requested)
            raise MedganError(f"nothing to balance: class(es) {names} already have the majority count "
                              f"({max(int(c) for c in train_counts)}) in the training data; pass --n N to generate "
                              "a fixed number per class")
        return {c: k for c, k in counts.items() if k > 0}
    if n is None:
        raise MedganError("say how many samples to generate: --n N (per class) or --balance")
    if isinstance(n, bool) or int(n) != n or int(n) <= 0:
        raise ConfigError(f"--n must be a positive number of samples per class, got {n}")
    return {c: int(n) for c in requested}
