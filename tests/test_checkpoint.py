"""Checkpoints: exact resume, safe loading (no code execution), corrupt files, incompatible resumes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from _engine_helpers import fast_phantoms, state_equal, tiny_cfg  # noqa: F401

from medgan.errors import CheckpointError, OutputError
from medgan.training.checkpoint import load_checkpoint, save_checkpoint
from medgan.training.run import train

# every RNG stream in play: dropout (global torch RNG), augmentation + ADA, lazy R1, two D steps, EMA, balancing
RESUME_CFG = dict(train__batch_size=4, train__log_every=5, train__sample_every=0, train__checkpoint_every=10, train__collapse_every=0,
                  train__d_steps=2, train__r1_gamma=1.0, train__r1_every=3, train__diffaugment__adaptive=True,
                  train__diffaugment__adjust_every=2, train__diffaugment__p=0.5, model__dropout=0.2,
                  train__feature_matching=0.5, train__label_smoothing=0.1)


def test_resume_is_bit_identical(tmp_path):
    straight = train(tiny_cfg(train__steps=20, **RESUME_CFG), tmp_path / "straight")
    first = train(tiny_cfg(train__steps=10, **RESUME_CFG), tmp_path / "split")
    assert first.step == 10
    resumed = train(tiny_cfg(train__steps=20, **RESUME_CFG), tmp_path / "split", resume=True)
    assert resumed.step == 20
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d", "rng", "state"):
        assert state_equal(a[key], b[key]), key
    assert a["state"]["ada"]["p"] != 0.5 or a["state"]["ada"]["calls"] >= 0  # ADA state travels with the run
    # metrics of the resumed run continue without duplicates
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_resume_redoes_steps_after_the_last_checkpoint(tmp_path):
    cfg = tiny_cfg(train__steps=6, train__log_every=2, train__checkpoint_every=4, train__collapse_every=0,
                   train__sample_every=0)
    train(cfg, tmp_path / "r")
    # pretend the run crashed after step 6 but its last checkpoint is step 4
    os.replace(tmp_path / "r" / "checkpoints" / "step_4.pt", tmp_path / "r" / "checkpoints" / "last.pt")
    res = train(cfg, tmp_path / "r", resume=True)
    assert res.step == 6
    steps = [json.loads(x)["step"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


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


def test_existing_run_and_missing_checkpoint(tmp_path):
    cfg = tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=0)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(cfg, tmp_path / "none", resume=True)
    train(cfg, tmp_path / "run")
    with pytest.raises(OutputError, match="already holds a run.*--resume"):
        train(cfg, tmp_path / "run")


def test_resume_refuses_other_data_or_model(tmp_path):
    cfg = tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=0)
    train(cfg, tmp_path / "run")
    with pytest.raises(CheckpointError, match="classes"):
        train(tiny_cfg(data__dataset="phantom3d", train__steps=4), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="model size"):
        train(tiny_cfg(data__size=32, train__steps=4), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="training images differ"):
        train(tiny_cfg(data__scarce=["2=0.5"], train__steps=4), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="model.base_channels"):
        train(tiny_cfg(model__base_channels=8, train__steps=4), tmp_path / "run", resume=True)


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


def test_atomic_writes_respect_the_umask(tmp_path):
    import os
    import stat

    from medgan.io import atomic_write, default_file_mode

    mask = os.umask(0o022)
    os.umask(mask)
    assert default_file_mode() == 0o666 & ~mask
    atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0o600
