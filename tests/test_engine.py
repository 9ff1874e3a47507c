"""The training engine: run directory, metrics, determinism, EMA, balanced batches, 3D, bf16, NaN stop, alarm."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from _engine_helpers import fast_phantoms, state_equal, tiny_cfg  # noqa: F401

from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.distances import within_class_diversity
from medgan.errors import TrainingError
from medgan.training import monitor
from medgan.training.batches import IndexDraw, use_balanced
from medgan.training.checkpoint import load_checkpoint
from medgan.training.run import train
from medgan.training.trainer import Trainer


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


def _trainer(**over) -> Trainer:
    cfg = tiny_cfg(**over)
    return Trainer(cfg, prepare(load_dataset(cfg.data.dataset), None))


def test_trainer_run_stats_without_io():
    tr = _trainer()
    stats = tr.run(2)
    assert tr.step == 2 and stats["steps"] == 2
    assert stats["images_per_s"] > 0 and stats["seconds"] > 0
    assert all(math.isfinite(stats[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake"))


def test_ema_differs_from_g_and_follows_it():
    tr = _trainer(train__ema_decay=0.5)
    tr.run(1)
    ema_before = [p.detach().clone() for p in tr.G_ema.parameters()]
    tr.train_step()
    g_now = list(tr.G.parameters())
    ema_now = list(tr.G_ema.parameters())
    assert any(not torch.equal(e, g) for e, g in zip(ema_now, g_now, strict=True))  # EMA is not a copy of G
    beta = tr.ema_beta(tr.step)
    assert 0 < beta <= 0.5 and tr.ema_beta(10**6) == 0.5 and tr.ema_beta(0) == 0.0
    for e0, e1, g in zip(ema_before, ema_now, g_now, strict=True):
        torch.testing.assert_close(e1, torch.lerp(e0, g.detach(), 1 - beta))  # and moves towards it
    for eb, gb in zip(tr.G_ema.buffers(), tr.G.buffers(), strict=True):  # batch-norm statistics are copied
        assert torch.equal(eb, gb)
    assert not any(p.requires_grad for p in tr.G_ema.parameters())


def test_ema_off_samples_with_g(tmp_path):
    tr = _trainer(train__ema_decay=0.0)
    assert tr.G_ema is None
    z, y = tr.fixed_noise(2)
    assert tr.sample(z, y).shape == (6, 1, 28, 28)
    assert tr.checkpoint_payload()["ema_generator"] is None


def test_balanced_batches_balance_a_10_to_1_dataset():
    labels = torch.tensor([0] * 1000 + [1] * 100)
    assert use_balanced("auto", [1000, 100]) and not use_balanced("auto", [100, 120])
    assert use_balanced("on", [100, 100]) and not use_balanced("off", [1000, 10])
    g = torch.Generator().manual_seed(0)
    bal = IndexDraw(labels, 2, balanced=True, generator=g).draw(20000)
    frac = (labels[bal] == 1).float().mean().item()
    assert 0.45 < frac < 0.55
    uni = IndexDraw(labels, 2, balanced=False, generator=g).draw(20000)
    frac = (labels[uni] == 1).float().mean().item()
    assert 0.07 < frac < 0.11


def test_fixed_noise_is_fixed():
    tr = _trainer()
    z1, y1 = tr.fixed_noise(4)
    tr.run(1)
    z2, y2 = tr.fixed_noise(4)
    assert torch.equal(z1, z2) and torch.equal(y1, y2)
    assert y1.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_3d_training_runs(tmp_path):
    cfg = tiny_cfg(data__dataset="phantom3d", train__steps=2, train__batch_size=4, train__collapse_every=0)
    res = train(cfg, tmp_path / "r3")
    ck = load_checkpoint(res.checkpoint)
    assert ck["data"]["spatial_dims"] == 3 and ck["step"] == 2
    assert (tmp_path / "r3" / "samples" / "step_2.png").is_file()


def test_bf16_autocast_runs():
    tr = _trainer(train__amp="bf16", train__channels_last=True)
    stats = tr.run(2)
    assert math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())
    z, y = tr.fixed_noise(1)
    assert tr.sample(z, y).dtype == torch.float32


@pytest.mark.parametrize("over", [
    {"train__loss": "hinge", "train__d_steps": 2},
    {"train__loss": "energy", "train__feature_matching": 1.0},
    {"train__loss": "lsgan", "train__r1_gamma": 1.0, "train__r1_every": 1, "train__label_smoothing": 0.1},
    {"train__loss": "minimax", "train__diffaugment__adaptive": True, "train__diffaugment__adjust_every": 1},
    {"train__diffaugment__enabled": False, "model__spectral_norm": False, "model__minibatch_std": False},
])
def test_training_options_give_finite_losses(over):
    tr = _trainer(**over)
    stats = tr.run(2)
    assert math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])
    if over.get("train__diffaugment__adaptive"):
        assert "ada_p" in stats and tr.d_updates == 2


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


def test_within_class_diversity_and_alarm():
    x = torch.randn(40, 1, 8, 8)
    y = torch.tensor([0] * 20 + [1] * 20)
    x[20:] = x[20]  # class 1 is a single image repeated
    div = within_class_diversity(x, y, 3)
    assert div[0] > 1.0 and div[1] == 0.0 and math.isnan(div[2])
    rec = monitor.CollapseAlarm([div[0], div[0], 1.0], ["a", "b", "c"], 0.5).check(div)
    assert rec["collapse"] is True and rec["collapsed_classes"] == ["b"]
    assert monitor.CollapseAlarm(div, ["a", "b", "c"]).check(div)["collapse"] is False


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TrainingError, match="tensorboard.*not installed"):
        train(tiny_cfg(train__tensorboard=True), tmp_path / "tb")


def test_channels_last_auto_policy():
    from medgan.training.trainer import use_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("auto", cpu, "bf16", 2) and use_channels_last("auto", cpu, "off", 3)
    assert not use_channels_last("auto", cpu, "off", 2) and not use_channels_last("auto", cuda, "off", 3)
    assert use_channels_last("auto", cuda, "bf16", 2)
    assert use_channels_last(True, cpu, "off", 2) and not use_channels_last(False, cpu, "bf16", 3)
    tr = _trainer(train__amp="bf16")
    assert tr.x.is_contiguous(memory_format=torch.channels_last)
    assert any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in tr.G.parameters())


@pytest.mark.parametrize("d_steps", [1, 2])
def test_one_generator_forward_per_d_update(d_steps):
    tr = _trainer(train__d_steps=d_steps, train__loss="hinge")
    calls = []
    handle = tr.G.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    tr.run(2)
    handle.remove()
    # per step: one forward per D update, the last one with grad (its output is reused for the G update)
    assert calls == ([False] * (d_steps - 1) + [True]) * 2


def test_adam_is_fused_where_torch_supports_it():
    tr = _trainer()
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        assert tr.opt_g.defaults["fused"] and tr.opt_d.defaults["fused"]
