"""Train/validation/test splits for sources that bring none (or only some): seeded and stratified by class."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medgan.data.dataset import SPLITS, RealData


def stratified_split(labels: np.ndarray, seed: int, val: float = 0.1, test: float = 0.2) -> dict[str, np.ndarray]:
    """Seeded per-class split into train/val/test index arrays (every class keeps ≥1 training image)."""
    rs = np.random.RandomState(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rs.shuffle(idx)
        n = len(idx)
        n_test = int(round(n * test)) if n >= 3 else 0
        n_val = int(round(n * val)) if n >= 3 else 0
        if n - n_test - n_val < 1:
            n_val = max(0, n - n_test - 1)
        out["test"] += idx[:n_test].tolist()
        out["val"] += idx[n_test : n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val :].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}


def ensure_splits(data: RealData, seed: int = 0) -> RealData:
    """Carve the missing val/test splits out of the training split (seeded, stratified).

    With neither present the split is 70/10/20; a dataset that brings its own test split only loses 10% of its
    training images to validation (and vice versa), so given splits are never discarded or shrunk.
    """
    if "val" in data.splits and "test" in data.splits:
        return data
    base = data.splits["train"]
    val = 0.0 if "val" in data.splits else 0.1
    test = 0.0 if "test" in data.splits else 0.2
    parts = stratified_split(base.labels, seed, val=val, test=test)
    splits = dict(data.splits)
    for s in SPLITS:
        if s not in data.splits or s == "train":
            splits[s] = base.subset(parts[s])
    extra = dict(data.extra)
    if val and test:
        extra["split"] = f"stratified 70/10/20, seed {seed}"
    else:
        carved, frac = ("val", val) if val else ("test", test)
        note = f"{carved} carved from the given train split ({frac:.0%}, stratified, seed {seed})"
        extra["split"] = f"{extra['split']}; {note}" if extra.get("split") else note
    return replace(data, splits={s: splits[s] for s in SPLITS}, extra=extra)


def tuning_view(data: RealData, seed: int = 0) -> RealData:
    """The data an honest tuning choice may see: the test split is dropped, and the validation split is halved
    (stratified, seeded) into a new validation half (epochs, operating points, the teacher's weights) and a scoring
    half that takes the test split's place. The training split is untouched (same fingerprint: a generator trained
    on it passes the leakage guard). ``extra["tuning"]`` records the halves' sizes."""
    val = data.splits["val"]
    parts = stratified_split(val.labels, seed, val=0.0, test=0.5)
    if any(np.bincount(val.labels[parts[s]], minlength=data.num_classes).min() == 0 for s in ("train", "test")):
        from medgan.errors import DatasetError

        raise DatasetError(f"dataset '{data.name}': the validation split has a class with fewer than 2 images "
                           f"({data.counts('val')}), too few to halve for tuning; evaluate without --tuning")
    splits = {"train": data.splits["train"], "val": val.subset(parts["train"]), "test": val.subset(parts["test"])}
    extra = dict(data.extra)
    extra["tuning"] = (f"tuning view: the test split is not used; the validation split ({len(val)} images) is "
                       f"halved (stratified, seed {seed}): {len(parts['train'])} select, {len(parts['test'])} score")
    return replace(data, splits=splits, extra=extra)
