"""Dataset-level mixing of real and synthetic samples, as MONAI-ready lists of dicts.

``mix_real_synthetic(real, bank, ratio)`` returns the real items followed by synthetic items, each a dict
``{"image", "label", "is_synthetic"}``:

* ``ratio`` a number: per class, ``round(ratio * n_real_c)`` synthetic items (synthetic:real = ratio in every
  class, so the class balance of the real data is kept);
* ``ratio="balance"``: per class, enough synthetic items to top the class up to the majority class count.

``add_synthetic_slots(items, target)`` is the MONAI-pipeline way to fight scarcity: it appends, per scarce class,
copies of real items flagged ``synthesize=True`` until each class reaches its target count or share;
:class:`~medgan.synthesis.transforms.RandSyntheticReplaced` placed after ``LoadImaged`` fills every slot with a
synthetic image of its class (fresh each epoch), so the slots go through the same chain as real samples.

Synthetic items are drawn from the bank's images of that class without replacement while the pool lasts (then
the pool is reshuffled and reused), with a seeded generator. The synthetic source is a
:class:`~medgan.synthesis.bank.SyntheticBank` (images as float tensors in [-1, 1], or in the source range with
``value_range="source"``) or a list of item dicts (e.g. :func:`manifest_items` of an augment folder: file
paths for ``LoadImaged``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.errors import MedganError
from medgan.synthesis.allocation import proportional
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.conventions import label_index


def _real_items(real: Any) -> list[dict]:
    if isinstance(real, tuple) and len(real) == 2:
        x, y = real
        y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1)
        if len(x) != len(y):
            raise MedganError(f"real data has {len(x)} images but {len(y)} labels")
        return [{"image": x[i], "label": int(y[i]), "is_synthetic": False} for i in range(len(y))]
    if isinstance(real, Sequence) and all(isinstance(r, dict) for r in real):
        out = []
        for r in real:
            if "image" not in r or "label" not in r:
                raise MedganError("every real item needs 'image' and 'label' keys")
            out.append({**r, "is_synthetic": bool(r.get("is_synthetic", False))})
        return out
    raise MedganError("real data must be a list of dicts {'image', 'label'} or a tuple (x, y)")




def mix_real_synthetic(real: list[dict] | tuple[Any, Any], bank: SyntheticBank | list[dict],
                       ratio: float | str = 0.5, seed: int = 0, value_range: str = "model",
                       class_names: Sequence[str] | None = None) -> list[dict]:
    """Real items plus synthetic items at synthetic:real = ``ratio`` per class (or ``"balance"``).

    Args:
        real: a list of dicts with ``image`` and ``label`` (any MONAI-loadable image: path, array, tensor), or
            a tuple ``(x, y)`` of images and labels.
        bank: a :class:`SyntheticBank`, or a list of synthetic item dicts (e.g. :func:`manifest_items`).
        ratio: synthetic items per real item in each class, or ``"balance"`` to top every class up to the
            majority count.
        seed: seeds which synthetic items are taken.
        value_range: for a bank: ``"model"`` ([-1, 1]) or ``"source"`` (the training data's range).
        class_names: needed only to check that list-of-dicts sources use the same classes (optional).

    Returns the real items (flagged ``is_synthetic=False``) followed by the synthetic ones (``True``).
    """
    items = _real_items(real)
    is_bank = isinstance(bank, SyntheticBank)
    num_classes = bank.num_classes if is_bank else (len(class_names) if class_names else None)
    labels = np.asarray([label_index(r["label"], num_classes) for r in items], dtype=np.int64)
    if num_classes is None:
        syn_labels = [label_index(s["label"]) for s in bank]
        num_classes = int(max([*labels.tolist(), *syn_labels, -1]) + 1)
    if len(labels) and labels.max() >= num_classes:
        raise MedganError(f"real labels go up to {labels.max()} but the synthetic data has {num_classes} classes")
    real_counts = np.bincount(labels, minlength=num_classes)[:num_classes] if len(labels) else \
        np.zeros(num_classes, dtype=np.int64)
    need = proportional(real_counts.tolist(), ratio)
    rng = np.random.default_rng(seed)
    if is_bank:
        pools = [bank.indices(c) if bank.has(c) else np.zeros(0, np.int64) for c in range(num_classes)]
    else:
        syn_lab = np.asarray([label_index(s["label"], num_classes) for s in bank], dtype=np.int64)
        pools = [np.flatnonzero(syn_lab == c) for c in range(num_classes)]
    out = list(items)
    for c, k in enumerate(need):
        if k == 0:
            continue
        pool = pools[c]
        if len(pool) == 0:
            raise MedganError(f"no synthetic images of class {c} to mix in ({k} needed); generate that class too")
        reps = -(-k // len(pool))
        take = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k]
        for i in take:
            if is_bank:
                img = bank.get(int(i))
                if value_range == "source":
                    img = bank.to_source_range(img)
                elif value_range != "model":
                    raise MedganError(f"value_range must be 'model' or 'source', got {value_range!r}")
                out.append({"image": img, "label": c, "is_synthetic": True})
            else:
                out.append({**bank[int(i)], "label": c, "is_synthetic": True})
    return out


def _canon(label: Any) -> int | str:
    return label.strip() if isinstance(label, str) else label_index(label)


def _slot_counts(counts: dict[Any, int], target: Any, class_names: Sequence[str] | None) -> dict[Any, int]:
    """Slots per class key for ``target``: ``"balance"``, a share for every class, or ``{class: share}``."""
    from medgan.data.classes import class_index

    if isinstance(target, str):
        if target != "balance":
            raise MedganError(f"target must be 'balance', a share in (0, 1) or {{class: share}}, got {target!r}")
        top = max(counts.values(), default=0)
        return {k: top - n for k, n in counts.items()}
    if isinstance(target, (int, float)):
        shares = {k: float(target) for k in counts}
    elif isinstance(target, dict):
        shares = {}
        for c, v in target.items():
            key = c if c in counts else None
            if key is None and class_names is not None:
                i = class_index(c, class_names)
                key = i if i in counts else class_names[i] if class_names[i] in counts else None
            if key is None:
                raise MedganError(f"target names class {c!r}, which no item has (labels: {sorted(map(str, counts))})")
            shares[key] = float(v)
    else:
        raise MedganError(f"target must be 'balance', a share in (0, 1) or {{class: share}}, got {target!r}")
    if any(not 0 < v < 1 for v in shares.values()) or (len(shares) > 1 and sum(shares.values()) >= 1):
        raise MedganError(f"target shares must lie in (0, 1) and add up to less than 1, got {shares}")
    n, extra = sum(counts.values()), 0
    for _ in range(10_000):  # the fixed point n_k + a_k >= share_k * (n + sum a): converges as sum(shares) < 1
        add = {k: max(0, int(np.ceil(v * (n + extra) - counts[k] - 1e-9))) for k, v in shares.items()}
        if sum(add.values()) == extra:
            break
        extra = sum(add.values())
    return {k: add.get(k, 0) for k in counts}


def add_synthetic_slots(items: Sequence[dict], target: float | str | dict = "balance", label_key: str = "label",
                        class_names: Sequence[str] | None = None, seed: int = 0,
                        synthesize_key: str = "synthesize") -> list[dict]:
    """``items`` plus synthetic slots that bring each class to ``target``.

    A slot is a copy of a real item of its class (a seeded round robin over them) with ``synthesize=True``;
    :class:`~medgan.synthesis.transforms.RandSyntheticReplaced` (which pops the flag) replaces it by a synthetic
    image of the class, so put that transform in the chain (after ``LoadImaged``/``EnsureChannelFirstd``).

    Args:
        items: MONAI data dicts with a class label (index or name) under ``label_key``.
        target: ``"balance"`` (every class up to the majority count), a share (every class at least that share
            of the result), or ``{class: share}`` (names need ``class_names`` when labels are indices).
        class_names: the pipeline's class names in label order (to read class names in ``target``).
        seed: which real items the slots copy.
    """
    real = [dict(r) for r in items]
    if any(label_key not in r for r in real):
        raise MedganError(f"every item needs a {label_key!r} key")
    keys = [_canon(r[label_key]) for r in real]
    counts: dict[Any, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    rng = np.random.default_rng(seed)
    out = list(real)
    for k, extra in _slot_counts(counts, target, class_names).items():
        if extra <= 0:
            continue
        pos = rng.permutation([i for i, kk in enumerate(keys) if kk == k])
        out.extend({**real[int(pos[j % len(pos)])], synthesize_key: True} for j in range(extra))
    return out


def manifest_items(folder: str | Path) -> list[dict]:
    """The samples of a ``medgan augment`` folder as ``{"image": absolute path, "label", "is_synthetic": True}``
    items (for ``LoadImaged``; the npz format has no per-sample files: use ``SyntheticBank.from_folder``)."""
    from medgan.synthesis.export import read_manifest

    folder = Path(folder)
    rows = read_manifest(folder)
    if rows and rows[0]["path"].endswith(".npz"):
        raise MedganError(f"{folder} holds one npz file, not per-sample files; use SyntheticBank.from_folder")
    return [{"image": str((folder / r["path"]).resolve()), "label": int(r["label"]), "is_synthetic": True}
            for r in rows]


def mixed_dataset(real: list[dict] | tuple[Any, Any], bank: SyntheticBank | list[dict], ratio: float | str = 0.5,
                  seed: int = 0, transform: Callable | None = None, cache: bool = False, value_range: str = "model",
                  **cache_kwargs: Any):
    """:func:`mix_real_synthetic` wrapped in a ``monai.data.Dataset`` (``CacheDataset`` when ``cache``)."""
    from monai.data import CacheDataset, Dataset

    data = mix_real_synthetic(real, bank, ratio=ratio, seed=seed, value_range=value_range)
    if cache:
        return CacheDataset(data, transform=transform, **{"progress": False, **cache_kwargs})
    return Dataset(data, transform=transform)
