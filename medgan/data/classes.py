"""Classes by name or index: the one resolver behind ``--scarce``, ``--class``, the sampler, the bank and the
MONAI transform; and the folder name each class gets on disk (``'normal, benign'`` -> ``normal_benign``), which
the resolver accepts too."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from medgan.errors import MedganError


def folder_name(name: str) -> str:
    """A class name usable as a folder name on every file system: ``'normal, benign'`` -> ``'normal_benign'``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return s[:80] or "class"


def folder_names(class_names: Sequence[str]) -> list[str]:
    """One distinct folder name per class (:func:`folder_name`; collisions get the class index appended)."""
    out: list[str] = []
    for i, n in enumerate(class_names):
        s = folder_name(n)
        if s.lower() in (o.lower() for o in out):
            s = f"{s}_{i}"
        out.append(s)
    return out


def class_index(c: int | str, class_names: Sequence[str], error: type[MedganError] = MedganError) -> int:
    """The index of class ``c``: an index (int or digit string) in range, or a name (exact, then
    case-insensitive, then the class's folder name as ``medgan augment`` writes it, e.g. ``normal_benign``).
    Anything else raises ``error`` (one line) listing the valid classes."""
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
        dirs = [d.lower() for d in folder_names(class_names)]
        if s.lower() in dirs:
            return dirs.index(s.lower())
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
