"""Tests for medgan.synthesis.inversion: batched latent inversion, its warm-start encoder (cached per checkpoint)
and the latent translator, on tiny generators for the real BreastMNIST and AdrenalMNIST3D geometries."""

from __future__ import annotations

import pytest
import torch
from helpers import one_line_error

from medgan.synthesis.inversion import (
    InversionSettings,
    Inverter,
    LatentTranslator,
    load_or_train_encoder,
    mix_weights,
)
from medgan.synthesis.sampler import Sampler

FAST = InversionSettings(steps=40, lr=0.1, encoder_steps=60, encoder_batch=64)


@pytest.fixture(scope="module")
def sampler(breast):
    return Sampler.from_checkpoint(breast)


@pytest.fixture(scope="module")
def generated(sampler):
    """Images the generator can make exactly (their latents exist): 6 per class."""
    return sampler.sample(6, seed=5)


def test_inversion_reconstructs_and_is_seeded(sampler, generated, tmp_path):
    x, y = generated
    inv = Inverter.from_sampler(sampler, FAST, cache_dir=tmp_path)
    r = inv.invert(x, y)
    assert r.z.shape == (12, sampler.latent_dim) and r.reconstruction.shape == x.shape
    start = Inverter(sampler.generator, sampler.class_names, InversionSettings(steps=0, encoder=False)).invert(x, y)
    assert r.mse.mean() < 0.5 * start.mse.mean()  # the optimisation moves towards the images
    assert r.psnr.mean() > start.psnr.mean() and r.summary()["n"] == 12
    again = Inverter.from_sampler(sampler, FAST, cache_dir=tmp_path).invert(x, y)  # cached encoder, same result
    assert torch.equal(again.z, r.z)
    by_class = inv.invert(x, [sampler.class_names[int(c)] for c in y])  # class names work too
    assert torch.equal(by_class.z, r.z)


def test_encoder_warm_start_beats_noise_for_the_same_steps(sampler, generated, tmp_path):
    x, y = generated
    few = InversionSettings(steps=10, lr=0.1, encoder_steps=300, encoder_batch=64)
    warm = Inverter.from_sampler(sampler, few, cache_dir=tmp_path).invert(x, y)
    cold = Inverter(sampler.generator, sampler.class_names, InversionSettings(steps=10, lr=0.1, encoder=False))
    assert warm.mse.mean() < cold.invert(x, y).mse.mean()


def test_encoder_is_cached_per_checkpoint(sampler, tmp_path):
    msgs: list[str] = []
    a = load_or_train_encoder(sampler.generator, FAST, sampler.checkpoint_sha256, True, tmp_path, log=msgs.append)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and len(msgs) == 1 and "training the inversion encoder" in msgs[0]
    b = load_or_train_encoder(sampler.generator, FAST, sampler.checkpoint_sha256, True, tmp_path, log=msgs.append)
    assert len(msgs) == 1  # loaded, not trained again
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    load_or_train_encoder(sampler.generator, FAST, "0" * 64, True, tmp_path)  # another checkpoint: its own file
    assert len(list(tmp_path.glob("*.pt"))) == 2
    files[0].write_bytes(b"not a checkpoint")  # a damaged cache is neither used nor replaced
    load_or_train_encoder(sampler.generator, FAST, sampler.checkpoint_sha256, True, tmp_path, log=msgs.append)
    assert len(msgs) == 2 and files[0].read_bytes() == b"not a checkpoint"


def test_bad_classes_and_shapes_are_one_line_errors(sampler, generated):
    x, y = generated
    inv = Inverter(sampler.generator, sampler.class_names, InversionSettings(steps=1, encoder=False))
    one_line_error(inv.invert, x, torch.full_like(y, 7), match="the generator does not know it")
    one_line_error(inv.invert, x, ["no such class"] * len(x), match="the generator does not know it")
    one_line_error(inv.invert, x[:, :, :20, :20], y, match="cannot be inverted")
    tr = LatentTranslator(inv)
    one_line_error(tr.translate, x, y, torch.full_like(y, 2), 1.0, match="cannot translate into class")
    one_line_error(tr.translate, x, y, 1 - y, 1.5, match="[0, 1]")
    one_line_error(LatentTranslator, inv, "sideways", match="unknown translation schedule")


def test_mix_weights_schedules():
    assert mix_weights(0.3, 2, "uniform").tolist() == pytest.approx([0.3, 0.3])
    assert mix_weights(0.3, 4, "late").tolist() == pytest.approx([0.0, 0.0, 0.3, 0.3])
    assert mix_weights(0.3, 4, "early").tolist() == pytest.approx([0.3, 0.3, 0.0, 0.0])
    assert mix_weights(0.3, 3, "early").tolist() == pytest.approx([0.3, 0.3, 0.0])  # complements of each other
    assert mix_weights(0.3, 3, "late").tolist() == pytest.approx([0.0, 0.0, 0.3])
    assert mix_weights(0.3, 1, "late").tolist() == mix_weights(0.3, 1, "early").tolist() == pytest.approx([0.3])
    assert mix_weights(0.5, 2, "ramp").tolist() == pytest.approx([0.0, 1.0])  # the finest stage first
    assert mix_weights(1.0, 3, "ramp").tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert mix_weights(0.0, 3, "ramp").tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_latent_translator_runs_from_source_to_target(sampler, generated, tmp_path):
    x, y = generated
    inv = Inverter.from_sampler(sampler, FAST, cache_dir=tmp_path)
    tr = LatentTranslator(inv, "uniform")
    r = tr.inversion(x, y)
    assert torch.allclose(tr.translate(x, y, 1 - y, 0.0), r.reconstruction, atol=1e-6)  # strength 0: the source
    full = tr.translate(x, y, 1 - y, 1.0)
    with torch.no_grad():
        assert torch.allclose(full, sampler.generator(r.z, 1 - y), atol=1e-5)  # strength 1: the target class
    half = tr.translate(x, y, 1 - y, 0.5)
    assert not torch.allclose(half, full) and not torch.allclose(half, r.reconstruction)
    res = LatentTranslator(inv, "uniform", residual=True)
    assert torch.equal(res.translate(x, y, 1 - y, 0.0), x)  # the residual gives the image itself back at 0
    assert torch.allclose(res.translate(x, y, 1 - y, 1.0), (x + full - r.reconstruction).clamp(-1, 1), atol=1e-6)
    part = LatentTranslator(inv, "uniform", residual=0.25).translate(x, y, 1 - y, 1.0)  # a share of the residual
    assert torch.allclose(part, (full + 0.25 * (x - r.reconstruction)).clamp(-1, 1), atol=1e-6)
    assert tr.info()["schedule"] == "uniform" and res.info()["residual"] == 1.0
    one_line_error(LatentTranslator, inv, "uniform", 1.5, match="residual share")


def test_inversion_in_3d(adrenal, tmp_path):
    s = Sampler.from_checkpoint(adrenal)
    x, y = s.sample(2, seed=1)
    settings = InversionSettings(steps=15, lr=0.1, encoder_steps=10, encoder_batch=8)
    inv = Inverter.from_sampler(s, settings, cache_dir=tmp_path)
    r = inv.invert(x, y)
    start = Inverter(s.generator, s.class_names, InversionSettings(steps=0, encoder=False)).invert(x, y)
    assert r.reconstruction.shape == x.shape and r.mse.mean() < start.mse.mean()
    out = LatentTranslator(inv, "late", residual=True).translate(x, y, 1 - y, 1.0)
    assert out.shape == x.shape and out.abs().max() <= 1 and not torch.equal(out, x)
