"""Near-copy rejection while generating (``medgan augment --reject-near-copies``).

A sample is redrawn when it sits closer (pixel space) to a real training image of the generator than the rule in
:mod:`medgan.distances` allows (:data:`~medgan.distances.NEAR_COPY_RULE`); the filter is rebuilt from the
generator's own training split, which must reproduce the checkpoint's training-set fingerprint.
:func:`medgan.evaluation.privacy.memorisation_check` reports the same rule after the fact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medgan.distances import DEFAULT_PERCENTILE, NEAR_COPY_RULE, copy_threshold, nearest
from medgan.errors import EvaluationError


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


def near_copy_filter_for_checkpoint(checkpoint: str | Path | dict[str, Any], data_dir: str | Path | None = None,
                                    percentile: float = DEFAULT_PERCENTILE) -> NearCopyFilter:
    """Rebuild a checkpoint's exact training split from its saved config and return a near-copy filter.

    ``checkpoint``: a path, or the checkpoint's ``{"config", "data"}`` records (a
    :class:`~medgan.synthesis.sampler.Sampler` keeps them as ``config`` and ``meta``, so nothing is loaded
    twice). The dataset is reloaded from ``ckpt['config']['data']`` (dataset, scarcity, split seed; ``data_dir`` overrides the saved folder) and must
    reproduce ``ckpt['data']['train_fingerprint']``, so the filter compares against exactly the images the
    generator saw.
    """
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.checkpoint import load_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    dcfg = dict(ckpt["config"].get("data", {}))
    meta = ckpt["data"]
    data = load_dataset(dcfg.get("dataset"), data_dir or dcfg.get("data_dir"), int(dcfg.get("split_seed", 0)),
                        bool(dcfg.get("download", True)), list(dcfg.get("scarce") or []))
    if meta.get("train_fingerprint") and data.fingerprint() != meta["train_fingerprint"]:
        raise EvaluationError(
            f"cannot rebuild the generator's training images for --reject-near-copies: dataset "
            f"'{dcfg.get('dataset')}' now gives fingerprint {data.fingerprint()[:12]}, the checkpoint recorded "
            f"{meta['train_fingerprint'][:12]}; point --data-dir at the data the generator was trained on"
        )
    td = prepare(data, meta.get("size"))
    return NearCopyFilter(td.x["train"], percentile)
