"""Helpers shared by the training-engine tests: tiny configs and cached phantom datasets."""

from __future__ import annotations

import functools

import pytest
import torch

from medgan.config import Config, load_config
from medgan.data.phantom import make_phantom as _make_phantom

TINY = {
    "data.dataset": "phantom2d",
    "model.base_channels": 4,
    "model.latent_dim": 8,
    "model.embed_dim": 4,
    "train.batch_size": 8,
    "train.steps": 4,
    "train.log_every": 2,
    "train.sample_every": 2,
    "train.checkpoint_every": 2,
    "train.collapse_every": 2,
    "train.ema_decay": 0.9,
    "train.progress": False,
    "train.device": "cpu",
}


def tiny_cfg(**over) -> Config:
    """A tiny, fast configuration on phantom2d; keyword keys use ``__`` for dots (``train__steps=6``)."""
    return load_config(None, {**TINY, **{k.replace("__", "."): v for k, v in over.items()}})


@functools.lru_cache(maxsize=4)
def _phantom(dims: int, size: int = 28, seed: int = 1234):
    return _make_phantom(dims, size, seed)


@pytest.fixture(autouse=True)
def fast_phantoms(monkeypatch):
    """Build each phantom dataset once per test session (they are deterministic) and use one thread."""
    import medgan.data.phantom as phantom

    monkeypatch.setattr(phantom, "make_phantom", _phantom)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def state_equal(a: dict, b: dict) -> bool:
    """Nested state dicts (tensors, numbers, lists, dicts) are exactly equal."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
