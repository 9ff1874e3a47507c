"""Tests for medgan.training.translator: the translator's training step, its losses, determinism, exact resume,
checkpoints, and runs of ``medgan train --model translator`` in 2D and 3D."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import state_equal, tiny_cfg

from medgan.errors import CheckpointError, TrainingError
from medgan.training.checkpoint import load_checkpoint, save_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")

#: A tiny translator on phantom2d (3 classes).
TINY_T = {"model__kind": "translator", "translator__base_channels": 4, "translator__res_blocks": 1}


def tcfg(**over):
    return tiny_cfg(**{**TINY_T, **over})


def _trainer(cfg):
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.translator import TranslatorTrainer

    data = load_dataset(cfg.data.dataset, scarce=cfg.data.scarce)
    return TranslatorTrainer(cfg, prepare(data, cfg.data.size))


def test_the_step_uses_balanced_sources_other_class_targets_and_reports_its_losses():
    tr = _trainer(tcfg(train__batch_size=64))
    g_idx, g_tgt = copy.deepcopy(tr.gen_idx.get_state()), copy.deepcopy(tr.gen_tgt.get_state())
    T0 = copy.deepcopy(tr.T)
    tr.train_step()
    # replay the draws: the batch and its targets
    tr.gen_idx.set_state(g_idx)
    tr.gen_tgt.set_state(g_tgt)
    idx = tr.batches.draw(64)
    ys = tr.y[idx]
    yt = (ys + torch.randint(1, 3, ys.shape, generator=tr.gen_tgt)) % 3
    assert bool((yt != ys).all())  # a target is always another class
    assert torch.bincount(ys, minlength=3).min() >= 10  # class-balanced sources (phantom2d's counts differ)
    stats = tr.pop_stats()
    x = tr.x[idx]
    with torch.no_grad():
        identity = (T0(x, F.one_hot(ys, 3).float()) - x).abs().mean()
        fake = T0(x, F.one_hot(yt, 3).float())
        cycle = (T0(fake, F.one_hot(ys, 3).float()) - x).abs().mean()
    # the identity loss: the image translated into its own class, against the image; the cycle loss likewise
    assert stats["identity"] == pytest.approx(float(identity), rel=1e-5)
    assert stats["cycle"] == pytest.approx(float(cycle), rel=1e-5)
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "d_class", "g_class", "d_class_acc", "g_class_acc"):
        assert key in stats
    assert stats["d_class"] == pytest.approx(float(torch.log(torch.tensor(3.0))), abs=0.3)  # untrained: ~uniform


def test_identity_loss_teaches_the_translator_to_leave_its_own_class_alone():
    """With a strong identity term, translating an image into its own class changes it less than without."""
    def own_class_change(weight: float) -> float:
        tr = _trainer(tcfg(translator__identity_weight=weight, translator__cycle_weight=0.0,
                           translator__class_weight=5.0, train__lr_g=2e-3, train__ema_decay=0.0))
        for _ in range(12):
            tr.train_step()
        with torch.no_grad():
            x, y = tr.x[:64], tr.y[:64]
            return float((tr.T(x, F.one_hot(y, 3).float()) - x).abs().mean())

    assert own_class_change(50.0) < 0.5 * own_class_change(0.0)


def test_same_seed_is_bit_identical_and_resume_continues_exactly(tmp_path):
    cfg = tcfg(train__steps=4, train__log_every=2, train__sample_every=0, train__checkpoint_every=2,
               train__diffaugment__adaptive=True, train__r1_gamma=1.0, train__r1_every=2)
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    keys = ("translator", "ema_translator", "discriminator", "opt_g", "opt_d")
    ca, cb = load_checkpoint(a.checkpoint, kind="translator"), load_checkpoint(b.checkpoint, kind="translator")
    assert state_equal({k: ca[k] for k in keys}, {k: cb[k] for k in keys})
    c = train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})}), tmp_path / "c")
    cc = load_checkpoint(c.checkpoint, kind="translator")
    assert not state_equal(ca["translator"], cc["translator"])
    # 2 steps, then --resume to 4: the same weights as 4 in one go
    half = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 2})})
    train(half, tmp_path / "r")
    r = train(cfg, tmp_path / "r", resume=True)
    assert r.start_step == 2 and r.step == 4
    cr = load_checkpoint(r.checkpoint, kind="translator")
    assert state_equal({k: ca[k] for k in keys}, {k: cr[k] for k in keys})


def test_run_folder_checkpoint_and_records(tmp_path):
    from medgan.data.sources import load_dataset

    cfg = tcfg(data__scarce=["0=0.5"])
    res = train(cfg, tmp_path / "run")
    out = tmp_path / "run"
    for rel in ("config.yaml", "metrics.jsonl", "curves.png", "train.log", "checkpoints/last.pt",
                "checkpoints/step_2.pt", "samples/real.png", "samples/step_2.png", "samples/step_4.png",
                ".medgan-owned.json"):
        assert (out / rel).is_file(), rel
    assert not (out / "checkpoints" / "best.pt").exists() and not (out / "teacher").exists()  # no judge in training
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["kind"] == "translator" and saved["translator"]["base_channels"] == 4
    ck = load_checkpoint(res.checkpoint, kind="translator")
    data = load_dataset("phantom2d", scarce=["0=0.5"])
    assert ck["data"]["train_fingerprint"] == data.fingerprint()  # the scarce training split it was fitted on
    assert ck["data"]["train_counts"] == data.counts("train")
    assert ck["data"]["scarcity"] == data.scarcity
    assert set(ck) >= {"translator", "ema_translator", "discriminator", "opt_g", "opt_d", "rng", "state"}
    assert "generator" not in ck
    assert "image translator" in res.summary() and "augment, evaluate" not in res.summary()
    from medgan.training.info import checkpoint_info, checkpoint_report  # medgan info checkpoint describes it

    info = checkpoint_info(out)
    assert info["model"]["kind"] == "translator" and info["ema"] and info["train_fingerprint"] == data.fingerprint()
    assert "translator" in checkpoint_report(out)


def test_a_translator_checkpoint_is_refused_where_a_gan_is_needed_and_vice_versa(tmp_path):
    from medgan.synthesis.sampler import Sampler

    tr_run = train(tcfg(train__steps=2), tmp_path / "t")
    with pytest.raises(CheckpointError, match="image translator's checkpoint .* cannot sample"):
        Sampler.from_checkpoint(tmp_path / "t")
    gan = train(tiny_cfg(train__steps=2), tmp_path / "g")
    from medgan.training.translator import load_translator_checkpoint

    with pytest.raises(CheckpointError, match="a GAN's checkpoint, not an image translator's"):
        load_translator_checkpoint(gan.checkpoint)
    # --resume a GAN run as a translator (or the reverse): one line naming the kind
    with pytest.raises(CheckpointError, match="a GAN's checkpoint"):
        train(tcfg(train__steps=4), tmp_path / "g", resume=True)
    with pytest.raises(CheckpointError, match="image translator's checkpoint"):
        train(tiny_cfg(train__steps=4), tmp_path / "t", resume=True)
    # a changed translator section cannot be resumed
    with pytest.raises(CheckpointError, match="translator.cycle_weight"):
        train(tcfg(train__steps=4, translator__cycle_weight=3.0), tmp_path / "t", resume=True)
    assert tr_run.step == 2


def test_crafted_or_broken_translator_checkpoints_are_refused(tmp_path):
    from medgan.synthesis.translation import ImageTranslator

    res = train(tcfg(train__steps=2), tmp_path / "t")
    ck = load_checkpoint(res.checkpoint, kind="translator")
    huge = copy.deepcopy(ck)
    huge["config"]["translator"]["base_channels"] = 10**9
    save_checkpoint(tmp_path / "huge.pt", huge)
    with pytest.raises(CheckpointError, match=r"translator.base_channels is 1000000000"):
        ImageTranslator.from_checkpoint(tmp_path / "huge.pt")
    wide = copy.deepcopy(ck)
    wide["config"]["translator"]["base_channels"] = 8
    save_checkpoint(tmp_path / "wide.pt", wide)
    with pytest.raises(CheckpointError, match="do not fit its record"):
        ImageTranslator.from_checkpoint(tmp_path / "wide.pt")
    nan = copy.deepcopy(ck)
    nan["ema_translator"]["out.conv.weight"][:] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", nan)
    with pytest.raises(CheckpointError, match="NaN"):
        ImageTranslator.from_checkpoint(tmp_path / "nan.pt")


def test_the_translator_trains_in_one_process_only():
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.distributed import DistInfo
    from medgan.training.translator import TranslatorTrainer

    with pytest.raises(TrainingError, match="one process"):
        TranslatorTrainer(tcfg(), prepare(load_dataset("phantom2d")), dist=DistInfo(rank=0, world_size=2))


def test_gan_records_are_unchanged_by_the_translator_options():
    """A GAN's config record (config.yaml, checkpoints) holds neither model.kind nor the translator section, so GAN
    runs write the bytes they wrote before the translator existed."""
    from medgan.config import Config, load_config

    d = Config().model_dump(mode="json")
    assert "translator" not in d and "kind" not in d["model"]
    assert "kind:" not in load_config("breastmnist").to_yaml()
    t = load_config(None, {"model.kind": "translator"}).model_dump(mode="json")
    assert t["model"]["kind"] == "translator" and t["translator"]["cycle_weight"] == 10.0
    assert Config.model_validate(t).model.kind == "translator"  # the record reads back


def test_3d_translator_run(tmp_path):
    res = train(tcfg(data__dataset="phantom3d", train__steps=2, train__batch_size=4), tmp_path / "r3")
    ck = load_checkpoint(res.checkpoint, kind="translator")
    assert ck["data"]["spatial_dims"] == 3 and ck["step"] == 2
    assert (tmp_path / "r3" / "samples" / "step_2.png").is_file()


def test_adrenalmnist3d_translator_run_and_translation(tmp_path, medmnist_dir):
    from medgan.synthesis.translation import ImageTranslator

    cfg = tcfg(data__dataset="adrenalmnist3d", data__size=28, data__scarce=["1=0.5"], train__steps=2,
               train__batch_size=4, train__log_every=1)
    res = train(cfg, tmp_path / "adrenal")
    tr = ImageTranslator.from_checkpoint(tmp_path / "adrenal")
    assert tr.shape == (1, 28, 28, 28) and tr.class_names == ["normal", "hyperplasia"]
    assert tr.meta["scarcity"] and tr.step == res.step == 2
    x = torch.rand(3, 1, 28, 28, 28) * 2 - 1
    y = tr.translate(x, 0, 1)
    assert y.shape == x.shape and y.abs().max() <= 1
