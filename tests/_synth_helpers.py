"""Test helper for the synthesis tests: tiny generator checkpoints in the real checkpoint layout.

Builds a small generator with :func:`medgan.models.build_generator` and saves it with
:func:`medgan.training.checkpoint.save_checkpoint`, so the synthesis code is tested without the training engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medgan.config import Config

TINY_MODEL = {"latent_dim": 8, "base_channels": 4, "embed_dim": 4}


def real_meta(spec: str, size: int | None = None) -> dict[str, Any]:
    """``load_dataset(spec).meta()`` plus the model ``size`` (what a checkpoint's ``data`` holds).

    Skips the test when the shared MedMNIST files are absent.
    """
    import pytest
    from conftest import MEDMNIST_DIR

    from medgan.data.preprocess import choose_size
    from medgan.data.sources import load_dataset

    if not MEDMNIST_DIR.exists():
        pytest.skip(f"real data not found at {MEDMNIST_DIR}")
    data = load_dataset(spec, data_dir=MEDMNIST_DIR, download=False)
    meta = data.meta()
    meta["size"] = choose_size(data, size)
    return meta


def make_checkpoint(path: str | Path, meta: dict[str, Any], step: int = 7, ema: bool = True,
                    seed: int = 0, model: dict | None = None) -> Path:
    """Write a checkpoint with a tiny randomly initialised generator for ``meta`` (a checkpoint ``data`` dict)."""
    from medgan.models import build_generator
    from medgan.training.checkpoint import save_checkpoint

    cfg = Config.model_validate({"model": model or TINY_MODEL})
    torch.manual_seed(seed)
    g = build_generator(cfg.model, int(meta["spatial_dims"]), int(meta["channels"]), int(meta["size"]),
                        len(meta["class_names"]))
    # wider weights than the DCGAN init, so that outputs use the whole [-1, 1] range like a trained generator
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.modules.conv._ConvNd):
                m.weight.normal_(0.0, 0.5)
    # give BatchNorm non-trivial running statistics, as after training
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(16, g.latent_dim), torch.randint(0, len(meta["class_names"]), (16,)))
    ema_state = None
    if ema:
        ema_state = {k: (v * 0.9 if v.is_floating_point() else v).clone() for k, v in g.state_dict().items()}
    payload = {
        "step": step,
        "config": cfg.model_dump(mode="json"),
        "data": meta,
        "generator": g.state_dict(),
        "ema_generator": ema_state,
        "discriminator": {},
        "opt_g": {},
        "opt_d": {},
        "rng": {},
        "state": {},
    }
    return save_checkpoint(path, payload)


_CACHE: dict[tuple[str, str], Path] = {}


def cached_checkpoint(tmp_path_factory, spec: str, **meta_overrides: Any) -> Path:
    """A tiny checkpoint for a real dataset's meta, made once per test session and spec."""
    key = (spec, repr(sorted(meta_overrides.items())))
    if key not in _CACHE:
        meta = {**real_meta(spec), **meta_overrides}
        _CACHE[key] = make_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{spec}.pt", meta)
    return _CACHE[key]
