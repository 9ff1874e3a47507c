"""Tests for medgan.training.trainer: the Trainer's steps, EMA, fixed noise, bf16, loss options, channels-last, Adam."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_cfg

from medgan.data.preprocess import prepare
from medgan.data.sources import load_dataset
from medgan.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("fast_phantoms")


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


def test_fixed_noise_is_fixed():
    tr = _trainer()
    z1, y1 = tr.fixed_noise(4)
    tr.run(1)
    z2, y2 = tr.fixed_noise(4)
    assert torch.equal(z1, z2) and torch.equal(y1, y2)
    assert y1.tolist() == [0] * 4 + [1] * 4 + [2] * 4


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


# ------------------------------------------------------------------------------ conditioning options, LeCam, noise


def test_conditioning_schedule_is_applied_to_g_ema_g_and_d():
    tr = _trainer(train__cond_start=2, train__cond_ramp=4)
    assert (tr.G.cond_scale, tr.D.cond_scale, tr.G_ema.cond_scale) == (0.0, 0.0, 0.0)
    tr.run(4)  # between steps the nets hold the weight of the next step: step 4 -> (4 - 2) / 4
    assert tr.G.cond_scale == tr.D.cond_scale == tr.G_ema.cond_scale == pytest.approx(0.5)
    stats = tr.run(2)
    assert stats["cond_scale"] == 1.0 and tr.G.cond_scale == 1.0
    off = _trainer()
    assert not off.cond_scheduled and off.G.cond_scale == 1.0 and "cond_scale" not in off.run(1)


@pytest.mark.parametrize("dataset", ["phantom2d", "phantom3d"])
@pytest.mark.parametrize("over", [
    {"model__conditioning": "cbn"},
    {"model__conditioning": "both", "train__lecam": 0.3},
    {"train__lecam": 0.1, "train__loss": "hinge", "train__cond_start": 1, "train__cond_ramp": 2},
    {"train__instance_noise": 0.1, "train__instance_noise_decay": 3, "train__r1_gamma": 1.0, "train__r1_every": 1},
])
def test_new_options_train_in_2d_and_3d(dataset, over):
    tr = _trainer(data__dataset=dataset, train__batch_size=4, **over)
    stats = tr.run(3)
    assert math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])
    assert ("lecam_ema_real" in stats) == bool(over.get("train__lecam"))
    if over.get("train__lecam"):
        assert tr.lecam.started and tr.checkpoint_payload()["state"]["lecam"]["ema"].shape == (2,)


def test_lecam_adds_to_d_loss_only_when_on():
    a, b = _trainer(), _trainer(train__lecam=1.0)
    sa, sb = a.run(1), b.run(1)
    assert sb["loss_d"] > sa["loss_d"]  # same first batch, plus a non-negative penalty
    assert a.lecam is None and a.checkpoint_payload()["state"]["lecam"] is None


def test_instance_noise_reaches_d_and_costs_nothing_when_off():
    tr = _trainer(train__diffaugment__enabled=False, train__instance_noise=0.5, train__instance_noise_decay=4)
    x = tr.x[:4]
    assert not torch.equal(tr._d_in(x), x)
    tr.step = 4  # fully decayed
    assert torch.equal(tr._d_in(x), x)
    off = _trainer(train__diffaugment__enabled=False)
    state = off.gen_aug.get_state()
    assert off._d_in(x) is x and torch.equal(off.gen_aug.get_state(), state)  # no draw from the stream


# ------------------------------------------------------------------------------ a GAN on classically augmented reals


def _first_real_batch(tr: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """(the raw images of the first real batch, what D was given as that batch) for one step of ``tr``."""
    drawn, seen = [], []
    draw, d_in = tr.batches.draw, tr._d_in
    tr.batches.draw = lambda n: drawn.append(draw(n)) or drawn[-1]
    tr._d_in = lambda x: seen.append(x.detach().clone()) or d_in(x)
    tr.train_step()
    return tr.x[drawn[0]], seen[0]  # D's first input of a step is the real batch


@pytest.mark.parametrize("dataset", ["phantom2d", "phantom3d"])
def test_augment_real_changes_the_real_batch_d_sees_and_only_that(dataset):
    common = dict(data__dataset=dataset, train__batch_size=4, train__diffaugment__enabled=False)
    off = _trainer(**common)
    raw_off, seen_off = _first_real_batch(off)
    assert torch.equal(seen_off, raw_off) and not off.real_aug.enabled and "real_aug" not in off.rng_state()
    on = _trainer(**common, train__augment_real="classical")
    raw_on, seen_on = _first_real_batch(on)
    assert torch.equal(raw_on, raw_off)  # its own stream: the batch indices are the same as without it
    assert seen_on.shape == raw_on.shape and not torch.equal(seen_on, raw_on)
    assert seen_on.abs().max() <= 1.0  # still in the model's intensity range
    # the same images, mildly moved: much closer to their own raw image than to another one of the batch
    own = (seen_on - raw_on).abs().flatten(1).mean(1)
    other = (seen_on - raw_on.roll(1, 0)).abs().flatten(1).mean(1)
    assert (own < other).all()
    stats = on.run(2)
    assert math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])
    assert "real_aug" in on.rng_state()


def test_augment_real_is_seeded_and_its_strength_counts():
    a, b = _trainer(train__augment_real="classical"), _trainer(train__augment_real="classical")
    idx = a.batches.draw(8)
    assert torch.equal(a.real_aug(a.x[idx]), b.real_aug(b.x[idx]))  # same seed, same augmentation
    c = _trainer(train__augment_real="classical", train__seed=1)
    assert not torch.equal(a.real_aug(a.x[idx]), c.real_aug(c.x[idx]))
    mild, moderate = (_trainer(train__augment_real="classical", train__augment_real_strength=s) for s in
                      ("mild", "moderate"))
    assert mild.real_aug.augment.rotate < moderate.real_aug.augment.rotate
    assert mild.real_aug.augment.scale < moderate.real_aug.augment.scale
