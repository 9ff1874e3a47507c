"""The evaluation's synthetic pool: a :class:`~medgan.synthesis.bank.SyntheticBank` drawn from a checkpoint (loaded
and hashed once) or read from an augment folder, behind the leakage guard; optional sample filtering; the
per-seed draw each GAN arm adds to the real training split.

Leakage guard: a generator must have been trained on exactly this evaluation's (scarce) training split, never on
its validation or test images. The checkpoint's ``data.train_fingerprint`` (or the one an augment folder
records) must equal the fingerprint of the training split built from ``--dataset``, ``--scarce`` and the split
seed, or the evaluation refuses. The bank's ``provenance`` says how the guard was passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.data.classes import folder_name
from medgan.errors import EvaluationError
from medgan.synthesis.bank import SyntheticBank

if TYPE_CHECKING:
    from medgan.data.dataset import RealData
    from medgan.training.checkpoint import CheckpointChoice


def check_leakage(ckpt_data: dict[str, Any], data: RealData, where: str = "the checkpoint") -> None:
    """Refuse a generator that was not trained on exactly this evaluation's training split."""
    theirs = ckpt_data.get("train_fingerprint")
    ours = data.fingerprint()
    if theirs is None:
        raise EvaluationError(f"{where} records no training-set fingerprint, so the leakage guard cannot verify what "
                              "the generator saw; use a checkpoint written by 'medgan train'")
    if theirs != ours:
        sc = ckpt_data.get("scarcity") or {}
        their_spec = " ".join(f"--scarce {s}" for s in sc.get("spec", [])) or "no --scarce"
        seed = sc.get("seed")
        raise EvaluationError(
            f"leakage guard: {where} was trained on a different training split (fingerprint {theirs[:12]}) than "
            f"this evaluation's (fingerprint {ours[:12]}); evaluate with the generator's dataset "
            f"'{ckpt_data.get('name')}', {their_spec}" + (f" and split seed {seed}" if seed is not None else "")
            + " (--dataset, --scarce, data.split_seed), or train a generator on this split"
        )


def check_matches_dataset(class_names: list[str], shape: tuple[int, ...], data: RealData, size: int,
                          where: str) -> None:
    """Classes and image shape of synthetic data must match the evaluation dataset."""
    if list(class_names) != list(data.class_names):
        raise EvaluationError(
            f"{where} has classes {list(class_names)} but dataset '{data.name}' has {list(data.class_names)}; "
            "evaluate on the dataset the generator was trained on"
        )
    want = (data.channels,) + (size,) * data.spatial_dims
    if tuple(shape) != want:
        raise EvaluationError(
            f"{where} holds images of shape {tuple(shape)} but the evaluation uses {want} (channels, *spatial); "
            "use the same dataset and --size as the generator"
        )


def pool_from_checkpoint(path: str | Path | CheckpointChoice, data: RealData, size: int | None, n_per_class: int,
                         seed: int, say: Callable[[str], None] | None = None, pool: str = "sample",
                         strength: float | None = None, pairs: bool = False) -> tuple[SyntheticBank, int]:
    """``n_per_class`` images per class from a checkpoint's generator, after the compatibility and leakage checks
    (``pairs``: as ``n_per_class`` counterfactual pairs, one latent per pair for every class, keeping the pair ids;
    ``pool="from_real"``: real training images of the other classes translated at ``strength``).
    ``path``: a checkpoint, a run folder, or the :class:`~medgan.training.checkpoint.CheckpointChoice` the caller
    resolved; the file is loaded (and hashed) once. ``say`` announces the drawing once the checks passed (a
    refusal announces no work). ``pool``: ``sample`` (noise -> image) or ``from_real``: the evaluation's real
    training images of the other classes translated into each class at ``strength``
    (:func:`medgan.synthesis.from_real.translated_bank`; the leakage guard proved they are the generator's
    training images). Returns the pool and the image size."""
    from medgan.synthesis.sampler import Sampler
    from medgan.training.checkpoint import CheckpointChoice, load_checkpoint, resolve_checkpoint

    choice = path if isinstance(path, CheckpointChoice) else resolve_checkpoint(path)
    path = choice.path
    ckpt = load_checkpoint(path)
    meta = ckpt["data"]
    ck_size = int(meta.get("size") or 0)
    if size is not None and ck_size and size != ck_size:
        raise EvaluationError(f"--size {size} differs from the generator's image size {ck_size}; drop --size or "
                              f"pass --size {ck_size}")
    size = ck_size or size
    shape = (int(meta["channels"]),) + (size,) * int(meta["spatial_dims"])
    check_matches_dataset(meta["class_names"], shape, data, size, f"checkpoint {path}")
    check_leakage(meta, data, f"checkpoint {path}")
    sampler = Sampler.from_loaded(ckpt, choice)  # checks the weights too
    del ckpt
    source = {"kind": "checkpoint", "path": str(path), "sha256": sampler.checkpoint_sha256, "seed": seed,
              "n_per_class": n_per_class, "leakage_guard": "passed", "train_fingerprint": meta["train_fingerprint"],
              **({"checkpoint_choice": sampler.checkpoint_note} if choice.why else {}),
              **({"pairs": n_per_class} if pairs else {})}
    if pool == "from_real":
        from medgan.data.preprocess import prepare
        from medgan.synthesis.from_real import translated_bank

        if pairs:
            raise EvaluationError("evaluate.pairs draws counterfactual pairs from noise; it cannot be combined with "
                                  "evaluate.pool: from_real (translations keep their source); drop one of them")
        if say is not None:
            say(f"translating up to {n_per_class} real training images of the other classes into each class with "
                f"{path}")
        td = prepare(data, size)
        source["pool"] = "from_real"
        return translated_bank(sampler, td.x["train"], td.y["train"], n_per_class, seed, strength, source, say), size
    if strength is not None:
        raise EvaluationError("evaluate.strength is the translation strength of evaluate.pool: from_real; set the pool "
                              "to from_real or drop the strength")
    if say is not None:
        say(f"drawing {n_per_class} synthetic images per class from {path}"
            + (" as counterfactual pairs (one latent z per pair for every class)" if pairs else ""))
    return SyntheticBank.from_sampler(sampler, n_per_class=n_per_class, seed=seed, provenance=source,
                                      pairs=pairs), size


def _folder_fingerprint(path: Path) -> tuple[str | None, str]:
    """The training-set fingerprint behind an augment output folder, and how it was found.

    Read from the folder's ``augment.json`` (``train_fingerprint``) when recorded there, else from the checkpoint
    it names, if that file still exists and its SHA-256 matches the one recorded.
    """
    from medgan.io import file_sha256
    from medgan.synthesis.export import INFO
    from medgan.training.checkpoint import load_checkpoint

    folder = path if path.is_dir() else path.parent
    info_path = folder / INFO
    if not info_path.is_file():
        return None, f"unverified: no {INFO} beside the synthetic images"
    info = json.loads(info_path.read_text())
    if info.get("train_fingerprint"):
        return str(info["train_fingerprint"]), f"passed ({INFO})"
    ck = info.get("checkpoint")
    if ck and Path(ck).is_file() and info.get("checkpoint_sha256") == file_sha256(ck):
        return load_checkpoint(ck)["data"].get("train_fingerprint"), f"passed (checkpoint {ck})"
    return None, "unverified: the folder records no training-set fingerprint and its checkpoint is not available"


def pool_from_folder(path: str | Path, data: RealData, size: int | None) -> tuple[SyntheticBank, int]:
    """The images of an augment output folder (or ``.npz``), after the compatibility and leakage checks."""
    path = Path(path)
    bank = SyntheticBank.from_folder(path)
    if len(bank) == 0:
        raise EvaluationError(f"synthetic data in {path} holds no images; run medgan augment with --n or --balance")
    dims = len(bank.spatial_shape)
    if dims != data.spatial_dims:
        raise EvaluationError(f"synthetic data in {path} is {dims}D but dataset '{data.name}' is "
                              f"{data.spatial_dims}D; use synthetic images of this dataset")
    syn_size = int(bank.shape[-1])
    if size is not None and size != syn_size:
        raise EvaluationError(f"--size {size} differs from the synthetic images' size {syn_size}; drop --size")
    check_matches_dataset(bank.class_names, bank.shape, data, syn_size, f"synthetic folder {path}")
    fp, how = _folder_fingerprint(path)
    if fp is not None:
        check_leakage({"train_fingerprint": fp, "name": bank.provenance.get("dataset")}, data,
                      f"the generator behind {path}")
    bank.provenance = {"kind": "folder", "path": str(path), "leakage_guard": how, **bank.provenance}
    return bank, syn_size


def check_pool_classes(pool: SyntheticBank, allocs: dict[str, list[int]], real_counts: list[int]) -> None:
    """Every class a GAN arm adds synthetic images of has images in the pool: checked once the pool is loaded and
    the allocations are known, before the first run (not after hours of training, when the arm comes up)."""
    have = pool.counts
    majority = max(real_counts, default=0)
    for c, name in enumerate(pool.class_names):
        arms = [a for a, alloc in allocs.items() if alloc[c] > 0]
        if not arms or have[c] > 0:
            continue
        most = max(allocs[a][c] for a in arms)
        where = f" ({pool.provenance['path']})" if pool.provenance.get("path") else ""
        raise EvaluationError(
            f"the synthetic pool{where} has no image of class '{name}' (index {c}), and arms {', '.join(arms)} add "
            f"up to {most} of them: write that class too (medgan augment --class {folder_name(name)} --n {most}, "
            "or without --class; --balance writes only the classes below the majority count)"
            + (", use --ratio balance (it adds none to the majority class)," if real_counts[c] == majority else "")
            + " or pass --checkpoint to draw every class")


def filter_pool(pool: SyntheticBank, teacher, threshold: float, device: torch.device,
                allocs: dict[str, list[int]] | None = None) -> tuple[SyntheticBank, dict[str, Any]]:
    """Sample filtering: keep the pool images that the teacher (:mod:`medgan.classify.teacher`, fitted on real data
    only; anything with ``predict_proba(x) -> (N, K)``) gives at least ``threshold`` probability of their
    conditioned class. Returns the filtered pool and what was kept per class.

    Raises :class:`EvaluationError` when an arm needs a class of which no image survives."""
    class_names = pool.class_names
    y = pool.labels
    prob = teacher.predict_proba(pool.array_images)
    p_own = prob.gather(1, y.view(-1, 1)).squeeze(1)
    keep = p_own >= threshold
    n = len(class_names)
    drawn = torch.bincount(y, minlength=n).tolist()
    kept = torch.bincount(y[keep], minlength=n).tolist()
    needed = [max((a[c] for a in (allocs or {}).values()), default=0) for c in range(n)]
    for c in range(n):
        if needed[c] > 0 and kept[c] == 0:
            raise EvaluationError(
                f"sample filtering kept no synthetic image of class '{class_names[c]}' (0 of {drawn[c]} reach "
                f"p >= {threshold}): lower --filter-confidence or train the generator longer")
    info = {"threshold": threshold, "drawn": drawn, "kept": kept,
            "mean_p_own_class": [float(p_own[y == c].mean()) if drawn[c] else None for c in range(n)],
            "classifier": f"teacher ({getattr(teacher, 'info', {}).get('recipe', 'fitted on the real training split')})"}
    out = pool.subset(np.flatnonzero(keep.numpy()))
    out.provenance = {**pool.provenance, "filter": info}
    return out, info


def draw_for_arm(pool_y: torch.Tensor, alloc: list[int], seed: int) -> tuple[torch.Tensor, list[str]]:
    """Per class, a seeded draw of ``alloc[c]`` pool positions (without replacement while the pool lasts).
    Returns the positions and notes on classes that had to be drawn with replacement."""
    rs = np.random.RandomState(seed)
    idx, notes = [], []
    labels = pool_y.numpy()
    for c, k in enumerate(alloc):
        if k == 0:
            continue
        have = np.flatnonzero(labels == c)
        if len(have) == 0:
            raise EvaluationError(f"the synthetic pool has no image of class {c}; it is needed to add {k} synthetic "
                                  "images: generate every class (medgan augment without --class)")
        if k <= len(have):
            idx.append(rs.choice(have, size=k, replace=False))
        else:
            notes.append(f"class {c}: {k} synthetic images asked, pool has {len(have)}; reused with replacement")
            idx.append(np.concatenate([have, rs.choice(have, size=k - len(have), replace=True)]))
    sel = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(sel, dtype=torch.long), notes
