"""Tests for medgan.training.run: train() — run directory, metrics, determinism, 3D, NaN stop, collapse alarm, resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from helpers import state_equal, tiny_cfg

from medgan.errors import CheckpointError, OutputError, TrainingError
from medgan.training.checkpoint import load_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def test_run_directory_layout_and_metrics(tmp_path):
    cfg = tiny_cfg()
    res = train(cfg, tmp_path / "run")
    out = tmp_path / "run"
    assert res.step == 4 and res.checkpoint == out / "checkpoints" / "last.pt"
    assert res.images_per_s > 0
    for rel in ("config.yaml", "metrics.jsonl", "curves.png", "train.log", "checkpoints/last.pt",
                "checkpoints/step_2.pt", "checkpoints/step_4.pt", "samples/real.png", "samples/step_2.png",
                "samples/step_4.png"):
        assert (out / rel).is_file(), rel
    assert res.samples == out / "samples" / "step_4.png"
    # the saved config is the resolved one
    assert yaml.safe_load((out / "config.yaml").read_text()) == cfg.model_dump(mode="json")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    for r in recs:
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "diversity", "diversity_ratio",
                    "collapse", "ada_p" if cfg.train.diffaugment.adaptive else "step"):
            assert key in r, key
        assert math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"])
        assert 0 <= r["d_real"] <= 1 and 0 <= r["d_fake"] <= 1  # mean sigmoid for the bce loss
        assert len(r["diversity"]) == 3
    assert res.metrics["step"] == 4
    # the checkpoint is self-describing and loads safely
    ck = load_checkpoint(res.checkpoint)
    assert ck["step"] == 4
    assert ck["data"]["class_names"] == ["few_large", "many_small", "single_bright"]
    assert (ck["data"]["spatial_dims"], ck["data"]["channels"], ck["data"]["size"]) == (2, 1, 28)
    assert ck["config"]["model"] == cfg.model.model_dump(mode="json")
    for key in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d", "rng", "state"):
        assert ck[key] is not None, key


def _weights(path):
    ck = load_checkpoint(path)
    return {k: ck[k] for k in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d")}


def test_same_seed_is_bit_identical_and_other_seed_differs(tmp_path):
    cfg = tiny_cfg(train__steps=3, train__log_every=3, train__collapse_every=0, train__sample_every=0,
                   train__checkpoint_every=0, train__diffaugment__adaptive=True, model__dropout=0.1)
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    c = train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})}), tmp_path / "c")
    wa, wb, wc = _weights(a.checkpoint), _weights(b.checkpoint), _weights(c.checkpoint)
    assert state_equal(wa, wb)
    assert not state_equal(wa["generator"], wc["generator"])


def test_3d_training_runs(tmp_path):
    cfg = tiny_cfg(data__dataset="phantom3d", train__steps=2, train__batch_size=4, train__collapse_every=0)
    res = train(cfg, tmp_path / "r3")
    ck = load_checkpoint(res.checkpoint)
    assert ck["data"]["spatial_dims"] == 3 and ck["step"] == 2
    assert (tmp_path / "r3" / "samples" / "step_2.png").is_file()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from medgan.training import losses

    calls = {"n": 0}
    orig = losses.BCELoss.d_loss

    def d_loss(self, real, fake, real_target=1.0):
        calls["n"] += 1
        out = orig(self, real, fake, real_target)
        return out * float("nan") if calls["n"] >= 4 else out  # non-finite from step 4 on

    monkeypatch.setattr(losses.BCELoss, "d_loss", d_loss)
    cfg = tiny_cfg(train__steps=6, train__log_every=1, train__collapse_every=0, train__sample_every=0)
    with pytest.raises(TrainingError, match=r"non-finite at step 4.*last good checkpoint.*step 2.*lr") as e:
        train(cfg, tmp_path / "nan")
    assert "\n" not in str(e.value)
    ck = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert ck["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["generator"].values() if v.is_floating_point())
    assert not (tmp_path / "nan" / "checkpoints" / "step_4.pt").exists()


def test_collapse_alarm_warns_and_flags_metrics(tmp_path):
    # a threshold above 1 means "collapsed" whatever the samples look like: the alarm path must fire
    cfg = tiny_cfg(train__steps=2, train__collapse_threshold=5.0, train__sample_every=0)
    train(cfg, tmp_path / "c")
    recs = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["collapse"] is True and recs[-1]["collapsed_classes"]
    assert "possible mode collapse at step 2" in (tmp_path / "c" / "train.log").read_text()


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


def test_resume_is_bit_identical_with_augment_real(tmp_path):
    """The real-batch augmentation's stream travels in the checkpoint: 5 steps + resume to 10 equals 10 in one go."""
    over = dict(train__augment_real="classical", train__batch_size=4, train__log_every=5, train__sample_every=0,
                train__checkpoint_every=5, train__collapse_every=0, train__diffaugment__p=0.5)
    straight = train(tiny_cfg(train__steps=10, **over), tmp_path / "straight")
    train(tiny_cfg(train__steps=5, **over), tmp_path / "split")
    resumed = train(tiny_cfg(train__steps=10, **over), tmp_path / "split", resume=True)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert "real_aug" in a["rng"]
    for key in ("generator", "ema_generator", "discriminator", "opt_g", "opt_d", "rng"):
        assert state_equal(a[key], b[key]), key
    other = load_checkpoint(train(tiny_cfg(train__steps=10, **{**over, "train__augment_real": "none"}),
                                  tmp_path / "off").checkpoint)
    assert not state_equal(a["generator"], other["generator"])  # and the option did change the training


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


def test_curves_refresh_at_every_log_point(tmp_path, monkeypatch):
    """curves.png is redrawn at the log points during training, not only at the end."""
    from helpers import tiny_cfg

    from medgan.training import monitor
    from medgan.training.run import train

    steps = []

    def spy(records, path, title=None, class_names=None):  # instant, so the cost budget never skips a refresh
        steps.append(records[-1]["step"] if records else None)

    monkeypatch.setattr(monitor, "plot_curves", spy)
    train(tiny_cfg(train__steps=6, train__log_every=2), tmp_path / "run")
    assert steps == [2, 4, 6]


def test_curves_are_skipped_when_they_would_cost_too_much(monkeypatch):
    from medgan.training import monitor
    from medgan.training.hooks import Curves

    calls = []
    monkeypatch.setattr(monitor, "plot_curves", lambda *a, **k: calls.append(1))

    class State:
        chunk_seconds, final, title, out = 1.0, False, "t", Path("unused")
        metrics = type("M", (), {"read": staticmethod(list)})()
        cfg = type("C", (), {"train": type("T", (), {"loss": "bce"})()})()
        trainer = type("Tr", (), {"class_names": ["a", "b"]})()

    h = Curves(every=10, budget=0.05)
    h(State())
    h.cost = 2.0  # pretend one refresh took 2 s: at 5% it waits for 40 s of training
    for _ in range(39):
        h(State())
    assert len(calls) == 1
    h(State())
    assert len(calls) == 2
    State.final = True
    h.cost = 100.0
    h(State())
    assert len(calls) == 3  # the last step always plots


def test_summary_names_both_checkpoints_and_the_one_the_other_commands_use(tmp_path):
    """train's summary names last.pt (what --resume continues) and best.pt, and which one augment, evaluate and
    export take from the run folder; without best.pt it says last.pt is used, and why."""
    from medgan.training.run import TrainResult

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    (ck / "last.pt").write_bytes(b"x")
    res = TrainResult(out_dir=tmp_path, checkpoint=ck / "last.pt", step=10, images_per_s=1.0)
    text = res.summary()
    assert f"checkpoint: {ck / 'last.pt'}" in text and "best:" not in text
    assert f"augment, evaluate and export of {tmp_path} use last.pt (no best.pt" in text
    (ck / "best.pt").write_bytes(b"x")
    text = res.summary()
    assert f"best:       {ck / 'best.pt'}" in text
    assert f"augment, evaluate and export of {tmp_path} use best.pt\n" in text
