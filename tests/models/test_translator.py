"""Tests for medgan.models.translator: the image-conditioned translator and its two-headed discriminator."""

from __future__ import annotations

import pytest
import torch

from medgan.errors import TrainingError
from medgan.models.translator import ConditionalTranslator, TranslatorDiscriminator, class_code


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere (the output layer and the class tables start at zero), as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


@pytest.mark.parametrize("dims,size", [(2, 28), (2, 32), (2, 64), (3, 28)])
def test_shapes_and_range(dims, size):
    t = _randomise(ConditionalTranslator(dims, 1, size, 3, base_channels=4, res_blocks=1))
    x = torch.rand(2, 1, *[size] * dims) * 2 - 1
    y = t.translate(x, torch.tensor([0, 1]), torch.tensor([2, 0]))
    assert y.shape == x.shape and y.abs().max() <= 1.0
    assert (y - x).abs().max() > 0.1  # the randomised network changes the image
    d = TranslatorDiscriminator(dims, 1, size, 3, base_channels=4)
    adv, cls = d(y)
    grid = 7 if size == 28 else 8
    assert adv.shape == (2, 1, *[grid] * dims) and cls.shape == (2, 3)


def test_three_channels():
    t = _randomise(ConditionalTranslator(2, 3, 32, 2, base_channels=4))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert t.translate(x, None, torch.tensor([1, 0])).shape == (2, 3, 32, 32)


def test_untrained_translator_returns_nearly_its_input_and_already_tells_classes_apart():
    """The change starts small (an untrained translation is close to its source) but not class-blind: the class
    tables and the output layer start non-zero, so gradients reach the class tables from the first step."""
    torch.manual_seed(0)
    t = ConditionalTranslator(2, 1, 28, 2, base_channels=4)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, -1.0
    with torch.no_grad():
        to1 = t.translate(x, None, torch.ones(4, dtype=torch.long))
        to0 = t.translate(x, None, torch.zeros(4, dtype=torch.long))
    assert (to1 - x).abs().mean() < 0.02 and (to1 - x).abs().max() < 0.2
    assert not torch.equal(to1, to0)
    t.translate(x, None, torch.ones(4, dtype=torch.long)).square().mean().backward()
    tables = [m.weight for n, m in t.named_modules() if n.endswith(".gain") or n.endswith(".bias")]
    assert tables and all(w.grad is not None and float(w.grad.abs().sum()) > 0 for w in tables)


def test_class_code_interpolates_from_source_to_target():
    src, tgt = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0])
    assert torch.equal(class_code(src, tgt, 3, 0.0), torch.eye(3)[src])
    assert torch.equal(class_code(src, tgt, 3, 1.0), torch.eye(3)[tgt])
    half = class_code(src, tgt, 3, 0.5)
    assert torch.allclose(half, 0.5 * torch.eye(3)[src] + 0.5 * torch.eye(3)[tgt]) and torch.allclose(half.sum(1),
                                                                                                        torch.ones(3))
    per_sample = class_code(src, tgt, 3, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(per_sample[0], torch.eye(3)[0]) and torch.equal(per_sample[2], torch.eye(3)[0])
    with pytest.raises(ValueError, match="needs the source"):
        class_code(None, tgt, 3, 0.5)


def test_strength_zero_is_the_image_as_its_own_class_and_strength_moves_the_output():
    t = _randomise(ConditionalTranslator(2, 1, 28, 2, base_channels=4))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    src, tgt = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    same = t.translate(x, src, src)
    assert torch.equal(t.translate(x, src, tgt, 0.0), same)
    full = t.translate(x, src, tgt, 1.0)
    assert torch.equal(t.translate(x, None, tgt), full)
    with torch.no_grad():
        d = [float((t.translate(x, src, tgt, s) - same).abs().mean()) for s in (0.0, 0.25, 0.5, 1.0)]
    assert d[0] == 0 and 0 < d[1] < d[3] and d[2] > 0 and not torch.allclose(full, same)


def test_conditional_norm_has_one_gain_and_bias_per_class_and_channel():
    t = ConditionalTranslator(2, 1, 28, 3, base_channels=4)
    norms = [m for m in t.modules() if type(m).__name__ == "ConditionalInstanceNorm"]
    assert len(norms) == 1 + 2 + 2 * 2 + 2  # stem, down, res blocks (2 each), up
    for m in norms:
        assert m.gain.weight.shape == m.bias.weight.shape == (m.gain.out_features, 3)
        assert float(m.gain.weight.abs().max()) < 0.2  # small at the start


def test_bad_geometry_and_one_class_are_refused():
    with pytest.raises(TrainingError, match="at least 2 classes"):
        ConditionalTranslator(2, 1, 28, 1)
    with pytest.raises(TrainingError, match="not supported"):
        ConditionalTranslator(2, 1, 30, 2)
    with pytest.raises(TrainingError, match="not supported"):
        TranslatorDiscriminator(3, 1, 128, 2)


def test_discriminator_is_spectrally_normalised_and_its_heads_depend_on_the_input():
    d = TranslatorDiscriminator(2, 1, 28, 2, base_channels=4)
    assert all(hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    d.eval()
    a = d(torch.zeros(1, 1, 28, 28))
    b = d(torch.ones(1, 1, 28, 28))
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
