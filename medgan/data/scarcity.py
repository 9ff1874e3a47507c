"""Seeded per-class subsampling of the training split, for scarce-class studies.

``--scarce 0=0.2`` keeps 20% of class 0's training images; ``--scarce malignant=30`` keeps 30 of them. Only
the training split changes. The record (spec, seed, kept indices, counts) travels with every checkpoint, so a
later step can prove exactly which real images a model saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medgan.config_rules import scarce_rule
from medgan.data.classes import class_index
from medgan.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from medgan.data.dataset import RealData


def parse_scarce(specs: list[str], class_names: list[str]) -> dict[int, tuple[str, float]]:
    """``["0=0.2", "benign=30"]`` -> ``{0: ("fraction", 0.2), 1: ("count", 30)}``; a malformed rule or two
    rules for one class (``0=0.2`` and ``benign=30`` when class 0 is ``benign``) are a :class:`ConfigError`."""
    out: dict[int, tuple[str, float]] = {}
    for spec in specs:
        cls_tok, kind, val = scarce_rule(spec)
        c = class_index(cls_tok, class_names, DatasetError)
        if c in out:
            raise ConfigError(f"two --scarce rules for class '{class_names[c]}' ({', '.join(specs)}); give one rule "
                              "per class")
        out[c] = (kind, val if kind == "fraction" else int(val))
    return out


def apply_scarcity(data: RealData, specs: list[str], seed: int = 0) -> RealData:
    """Subsample the chosen classes of the training split (seeded); other splits stay as they are."""
    rules = parse_scarce(specs, data.class_names)
    train = data.splits["train"]
    rs = np.random.RandomState(seed)
    keep: list[np.ndarray] = []
    for c in range(data.num_classes):
        idx = np.flatnonzero(train.labels == c)
        if c in rules:
            kind, val = rules[c]
            n = int(round(len(idx) * val)) if kind == "fraction" else int(val)
            if n > len(idx):
                raise DatasetError(
                    f"--scarce asks for {n} images of class '{data.class_names[c]}' but the training split has "
                    f"only {len(idx)}; ask for at most {len(idx)}"
                )
            if n < 1:
                raise DatasetError(
                    f"--scarce leaves no training image of class '{data.class_names[c]}' ({len(idx)} x {val}); "
                    "keep at least one"
                )
            idx = np.sort(rs.choice(idx, size=n, replace=False))
        keep.append(idx)
    kept = np.sort(np.concatenate(keep))
    record: dict[str, Any] = {
        "spec": list(specs),
        "rules": {data.class_names[c]: {"kind": k, "value": v} for c, (k, v) in rules.items()},
        "seed": seed,
        "original_counts": data.counts("train"),
        "kept_indices": kept.tolist(),
    }
    out = data.with_train(train.subset(kept), record)
    record["counts"] = out.counts("train")
    return out
