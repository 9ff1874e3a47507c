"""Tests for medgan.synthesis.translation: ImageTranslator, the translator interface of from-real synthesis."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_cfg

from medgan.errors import CheckpointError, MedganError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A translator trained 6 steps on phantom2d (3 classes) and saved as a run's checkpoint, with its trainer."""
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.checkpoint import save_checkpoint
    from medgan.training.translator import TranslatorTrainer

    cfg = tiny_cfg(model__kind="translator", translator__base_channels=4, translator__res_blocks=1,
                   train__lr_g=2e-3)
    tdata = prepare(load_dataset("phantom2d"), 28)
    trainer = TranslatorTrainer(cfg, tdata)
    for _ in range(6):
        trainer.train_step()
    out = tmp_path_factory.mktemp("tr") / "run"
    save_checkpoint(out / "checkpoints" / "last.pt", trainer.checkpoint_payload())
    return out, trainer, tdata


def test_from_checkpoint_translates_as_the_trained_network(run):
    from medgan.synthesis.translation import ImageTranslator

    out, trainer, tdata = run
    tr = ImageTranslator.from_checkpoint(out)
    assert tr.class_names == ["few_large", "many_small", "single_bright"] and tr.shape == (1, 28, 28)
    assert tr.step == 6 and tr.used_ema and len(tr.checkpoint_sha256) == 64
    assert "last.pt" in tr.checkpoint_note and tr.config["model"]["kind"] == "translator"
    x, y = tdata.x["val"][:20], tdata.y["val"][:20]
    tgt = (y + 1) % 3
    got = tr.translate(x, y, tgt)
    assert torch.equal(got, trainer.translate(x, y, tgt))  # the trainer's EMA weights, through the checkpoint
    assert got.dtype == torch.float32 and got.abs().max() <= 1 and not torch.allclose(got, x, atol=1e-3)
    raw = ImageTranslator.from_checkpoint(out / "checkpoints" / "last.pt", use_ema=False)
    assert not raw.used_ema and not torch.equal(raw.translate(x, y, tgt), got)


def test_strength_zero_and_labels_for_all(run):
    from medgan.synthesis.translation import ImageTranslator

    tr = ImageTranslator.from_checkpoint(run[0])
    x = run[2].x["train"][:8]
    own = tr.translate(x, 1, 1)
    assert torch.equal(tr.translate(x, 1, 2, strength=0.0), own)  # s = 0: the image as its own class
    assert torch.equal(tr.translate(x, torch.ones(8, dtype=torch.long), 2), tr.translate(x, 1, 2))
    d = [float((tr.translate(x, 1, 2, strength=s) - own).abs().mean()) for s in (0.0, 0.5, 1.0)]
    assert d[0] == 0 < d[1] < d[2]


def test_translation_does_not_depend_on_the_batch_size(run):
    from medgan.synthesis.translation import ImageTranslator

    tr = ImageTranslator.from_checkpoint(run[0])
    x, y = run[2].x["train"][:45], run[2].y["train"][:45]
    a = tr.translate(x, y, (y + 1) % 3, batch=256)
    b = tr.translate(x, y, (y + 1) % 3, batch=7)
    assert torch.equal(a, b)
    assert tr.translate(x[:0], y[:0], y[:0]).shape == (0, 1, 28, 28)


def test_bad_inputs_get_one_line(run):
    from medgan.synthesis.translation import ImageTranslator

    tr = ImageTranslator.from_checkpoint(run[0])
    x = run[2].x["train"][:4]
    with pytest.raises(MedganError, match=r"strength 1.5 is outside \[0, 1\]"):
        tr.translate(x, 0, 1, strength=1.5)
    with pytest.raises(MedganError, match=r"shape \(1, 32, 32\) do not fit the translator, which takes .*\(1, 28, 28\)"):
        tr.translate(torch.zeros(2, 1, 32, 32), 0, 1)
    with pytest.raises(MedganError, match="class 3, but the translator knows classes 0..2"):
        tr.translate(x, 0, 3)
    with pytest.raises(MedganError, match="3 labels for 4 images"):
        tr.translate(x, torch.tensor([0, 1, 2]), 1)


def test_a_gan_checkpoint_is_no_translator(breast):
    from medgan.synthesis.translation import ImageTranslator

    with pytest.raises(CheckpointError, match="not an image translator's; train one with 'medgan train --model "
                                              "translator'"):
        ImageTranslator.from_checkpoint(breast)
