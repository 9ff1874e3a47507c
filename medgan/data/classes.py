"""Classes by name or index: the one resolver behind ``--scarce``, ``--class``, the sampler and the bank."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medgan.errors import MedganError


def class_index(c: int | str, class_names: Sequence[str], error: type[MedganError] = MedganError) -> int:
    """The index of class ``c``: an index (int or digit string) in range, or a name (exact, then
    case-insensitive). Anything else raises ``error`` listing the valid classes."""
    n = len(class_names)
    if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
        if 0 <= int(c) < n:
            return int(c)
    elif isinstance(c, str):
        s = c.strip()
        if s in class_names:
            return list(class_names).index(s)
        low = [str(name).lower() for name in class_names]
        if s.lower() in low:
            return low.index(s.lower())
        if s.isdigit() and int(s) < n:
            return int(s)
    valid = ", ".join(f"{i}={name!r}" for i, name in enumerate(class_names))
    raise error(f"unknown class {c!r}; valid classes (index=name): {valid}")


def class_indices(classes: Sequence[int | str] | int | str | None, class_names: Sequence[str],
                  error: type[MedganError] = MedganError) -> list[int]:
    """Indices of ``classes`` (names or indices; ``None``: every class), in the given order, deduplicated."""
    if classes is None:
        return list(range(len(class_names)))
    if isinstance(classes, (int, str, np.integer)):
        classes = [classes]
    out: list[int] = []
    for c in classes:
        i = class_index(c, class_names, error)
        if i not in out:
            out.append(i)
    return out
