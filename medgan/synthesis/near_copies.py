"""Near-copy rejection while generating (``medgan augment --reject-near-copies``).

A sample is redrawn when it sits closer (pixel space) to a real training image of the generator than the rule in
:mod:`medgan.distances` allows (:data:`~medgan.distances.NEAR_COPY_RULE`); the filter is built from the training
data the USER names (``medgan augment --dataset``), whose training split must reproduce the checkpoint's
training-set fingerprint. The dataset a checkpoint records is quoted in messages, never opened: a crafted
checkpoint could name any folder.
:func:`medgan.evaluation.privacy.memorisation_check` reports the same rule after the fact.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.distances import DEFAULT_PERCENTILE, NEAR_COPY_RULE, copy_threshold, nearest
from medgan.errors import ConfigError, EvaluationError

if TYPE_CHECKING:
    from medgan.config import DataConfig
    from medgan.data.dataset import RealData
    from medgan.data.preprocess import TensorData


class NearCopyFilter:
    """``filter(x_batch, y_batch) -> bool mask``: True for samples to redraw (near-copies of training images).

    The threshold is :func:`copy_threshold` of the training images' leave-one-out nearest-neighbour pixel
    distances (or an explicit ``threshold``); see the module docstring.
    """

    def __init__(self, train_x: torch.Tensor, percentile: float = DEFAULT_PERCENTILE, threshold: float | None = None):
        self.train = train_x.reshape(len(train_x), -1).float()
        if threshold is None:
            if len(self.train) < 2:
                raise EvaluationError("the near-copy filter needs at least 2 training images to set its threshold")
            loo, _ = nearest(self.train, self.train, exclude_self=True)
            threshold = copy_threshold(loo.numpy(), percentile)
        self.threshold = float(threshold)
        self.percentile = percentile
        self.rule = NEAR_COPY_RULE.format(p=percentile)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        d, _ = nearest(x.detach().cpu().float(), self.train)
        return d

    def __call__(self, x_batch: torch.Tensor, y_batch: torch.Tensor | None = None) -> torch.Tensor:
        return self.distances(x_batch) <= self.threshold


def near_copy_filter(train_x: torch.Tensor, percentile: float = DEFAULT_PERCENTILE,
                     threshold: float | None = None) -> NearCopyFilter:
    """A :class:`NearCopyFilter` against the training images ``train_x`` (model range [-1, 1])."""
    return NearCopyFilter(train_x, percentile, threshold)


def recorded_training_data(ckpt: dict[str, Any]) -> str:
    """What a checkpoint says it was trained on, as TEXT for messages (never opened): the dataset spec of its
    config (else its data record's name), with the scarcity and split seed of its record."""
    data_cfg = (ckpt.get("config") or {}).get("data") if isinstance(ckpt.get("config"), dict) else None
    meta = ckpt.get("data") if isinstance(ckpt.get("data"), dict) else {}
    spec = (data_cfg or {}).get("dataset") if isinstance(data_cfg, dict) else None
    spec = spec if spec is not None else meta.get("name")
    if spec is None:
        return "the checkpoint does not say what it was trained on"
    sc = meta.get("scarcity") if isinstance(meta.get("scarcity"), dict) else {}
    scarce = " ".join(f"--scarce {s}" for s in (sc.get("spec") or []) if isinstance(s, str | int | float))
    seed = sc.get("seed", (data_cfg or {}).get("split_seed") if isinstance(data_cfg, dict) else None)
    extra = "".join(f" {b}" for b in (scarce, f"--split-seed {seed}" if isinstance(seed, int) else "") if b)
    return f"the checkpoint says it was trained on {textwrap.shorten(repr(str(spec)), 120)}{extra}"


def _user_data(train_data: str | DataConfig | RealData) -> RealData:
    """The user's training data: a dataset spec, a :class:`~medgan.config.DataConfig` or loaded data."""
    from medgan.config import DataConfig
    from medgan.data.dataset import RealData
    from medgan.data.sources import load_dataset

    if isinstance(train_data, RealData):
        return train_data
    d = train_data if isinstance(train_data, DataConfig) else DataConfig(dataset=str(train_data))
    return load_dataset(d.dataset, d.data_dir, d.split_seed, d.download, list(d.scarce))


def checkpoint_training_data(checkpoint: str | Path | dict[str, Any], train_data: str | DataConfig | RealData | None,
                             flag: str = "--reject-near-copies") -> TensorData:
    """The generator's training data, read from data the CALLER names, prepared at the generator's size (model
    range): a dataset spec, a :class:`~medgan.config.DataConfig` (dataset, data folder, scarcity, split seed: what
    ``medgan augment --dataset/--data-dir/--scarce/--split-seed`` give) or a loaded
    :class:`~medgan.data.dataset.RealData`. Its images must have the generator's dimensions, channels and native
    shape, and its training split must reproduce the checkpoint's ``data.train_fingerprint``.

    ``checkpoint``: a path, or the loaded checkpoint (at least its ``data`` record, and its ``config`` for the hint;
    a :class:`~medgan.synthesis.sampler.Sampler` keeps them as ``meta`` and ``config``). Data a checkpoint names is
    never opened: a crafted file could name any folder. Without ``train_data`` this raises :class:`ConfigError`
    whose message quotes (as text) what the checkpoint says it was trained on; ``flag`` names the option that needs
    the data in messages.
    """
    from medgan.data.preprocess import prepare

    if isinstance(checkpoint, dict):
        ckpt = checkpoint
    else:
        from medgan.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
    meta = ckpt["data"]
    hint = recorded_training_data(ckpt)
    what = ("compares samples with the generator's training images" if flag == "--reject-near-copies" else
            "translates the generator's training images")
    if train_data is None:
        raise ConfigError(f"{flag} {what}, which medgan reads only from data you name: pass --dataset (with the "
                          f"--scarce, --split-seed and --data-dir of its training); {hint}")
    theirs = meta.get("train_fingerprint")
    if not theirs:
        raise EvaluationError("the checkpoint records no training-set fingerprint, so medgan cannot verify that "
                              f"--dataset is the generator's training data; drop {flag} or use a checkpoint written "
                              "by 'medgan train'")
    data = _user_data(train_data)
    ours = (int(data.spatial_dims), int(data.channels), list(data.native_shape()))
    want = (meta.get("spatial_dims"), meta.get("channels"), meta.get("native_shape"))
    if any(w is not None and (list(w) if isinstance(w, list | tuple) else int(w)) != o
           for w, o in zip(want, ours, strict=True)):
        raise EvaluationError(
            f"{flag}: dataset '{data.name}' holds {ours[0]}D images of {ours[1]} channel(s), shape {ours[2]}, but the "
            f"generator was trained on {want[0]}D images of {want[1]} channel(s), shape {want[2]}; pass the data it "
            f"was trained on (--dataset, --scarce, --split-seed, --data-dir); {hint}")
    if data.fingerprint() != theirs:
        raise EvaluationError(
            f"{flag}: the training split of dataset '{data.name}' (fingerprint "
            f"{data.fingerprint()[:12]}) is not the generator's (fingerprint {str(theirs)[:12]}); pass the data it "
            f"was trained on (--dataset, --scarce, --split-seed, --data-dir); {hint}"
        )
    return prepare(data, meta.get("size"))


def near_copy_filter_for_checkpoint(checkpoint: str | Path | dict[str, Any],
                                    train_data: str | DataConfig | RealData | None,
                                    percentile: float = DEFAULT_PERCENTILE) -> NearCopyFilter:
    """A near-copy filter against a generator's training images, read from data the CALLER names
    (:func:`checkpoint_training_data`: its training split must reproduce the checkpoint's fingerprint, so the filter
    compares against exactly the images the generator saw)."""
    td = checkpoint_training_data(checkpoint, train_data)
    return NearCopyFilter(td.x["train"], percentile)
