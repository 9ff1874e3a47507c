"""Tests for medgan.training.checkpoint: safe loading (no code execution), corrupt files, the self-describing layout."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import tiny_cfg

from medgan.errors import CheckpointError
from medgan.training.checkpoint import load_checkpoint, save_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


class _Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "medgan.checkpoint", "format_version": 1, "config": {}, "data": {},
                "generator": _Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_corrupt_and_foreign_checkpoints_are_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"step": 1, "config": {}, "data": {}, "generator": {}})
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "noise.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "noise.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a medgan checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_rebuilds_the_generator(tmp_path):
    """What `medgan augment` relies on: config.model + data (dims, channels, size, classes) rebuild G."""
    from medgan.config import ModelConfig
    from medgan.models import build_generator

    res = train(tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=0), tmp_path / "r")
    ck = load_checkpoint(res.checkpoint)
    d = ck["data"]
    g = build_generator(ModelConfig(**ck["config"]["model"]), d["spatial_dims"], d["channels"], d["size"],
                        len(d["class_names"]))
    g.load_state_dict(ck["ema_generator"])
    g.eval()
    with torch.no_grad():
        x = g(torch.randn(3, g.latent_dim), torch.tensor([0, 1, 2]))
    assert x.shape == (3, 1, 28, 28) and x.abs().max() <= 1


def test_a_checkpoint_from_before_model_conditioning_is_read_as_concat(tmp_path):
    from helpers import TINY_MODEL, make_checkpoint

    from medgan.synthesis.sampler import Sampler

    meta = {"name": "x", "class_names": ["a", "b"], "spatial_dims": 2, "channels": 1, "size": 28}
    path = make_checkpoint(tmp_path / "old.pt", meta, model={**TINY_MODEL, "conditioning": "concat"})
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["model"]["conditioning"]  # as written before the key existed
    save_checkpoint(path, ckpt)
    assert load_checkpoint(path)["config"]["model"]["conditioning"] == "concat"
    s = Sampler.from_checkpoint(path)
    x, y = s.sample(2, seed=0)
    assert x.shape == (4, 1, 28, 28) and y.tolist() == [0, 0, 1, 1]
