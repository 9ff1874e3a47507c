"""Tests for medgan.models.fused: the folded FusedGenerator matches the generator module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import cached_checkpoint

from medgan.models.fused import FusedGenerator
from medgan.synthesis.sampler import Sampler
from medgan.synthesis.seeds import latents_for_seeds


@pytest.fixture(scope="module", params=["breastmnist", "adrenalmnist3d"])
def any_ckpt(request, tmp_path_factory):
    return cached_checkpoint(tmp_path_factory, request.param)


def test_fused_generator_matches_the_module(any_ckpt):
    fused = Sampler.from_checkpoint(any_ckpt)  # folded straight from the checkpoint weights
    module = Sampler.from_checkpoint(any_ckpt, fuse=False)
    assert fused._fused is not None and module._fused is None
    x, _ = fused.sample(5, seed=2)
    ref, _ = module.sample(5, seed=2)
    torch.testing.assert_close(x, ref, atol=2e-5, rtol=0)  # BN folding: float rounding only
    # the state-dict builder gives exactly what folding the built module gives
    from_module = FusedGenerator.from_generator(fused.generator)
    z = latents_for_seeds(np.arange(20), fused.latent_dim)
    yy = torch.arange(20) % fused.num_classes
    with torch.no_grad():
        assert torch.equal(fused._fused(z, yy), from_module(z, yy))


@pytest.mark.parametrize("dims,size", [(2, 28), (2, 32), (3, 28)])
@pytest.mark.parametrize("cond", ["cbn", "both"])
def test_fused_folds_class_conditional_batch_norm(dims, size, cond):
    from medgan.models import ConditionalGenerator

    torch.manual_seed(0)
    g = ConditionalGenerator(dims, 1, size, 3, latent_dim=8, base_channels=4, embed_dim=4, conditioning=cond)
    with torch.no_grad():  # trained-looking statistics and tables
        for m in g.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_()
        for t in g.cbn:
            t.weight.normal_(0.0, 0.3)
    g.eval()
    z = torch.randn(7, 8)
    y = torch.arange(7) % 3
    from_module = FusedGenerator.from_generator(g)
    from_state = FusedGenerator.from_state_dict(g.state_dict(), 8, dims, size, 1, 3)
    assert from_module is not None and from_state is not None  # cbn is folded, not left to the module
    with torch.no_grad():
        ref = g(z, y)
        torch.testing.assert_close(from_module(z, y), ref, atol=2e-5, rtol=0)
        assert torch.equal(from_state(z, y), from_module(z, y))
        g.cond_scale = 0.5  # a generator caught mid-schedule folds with its weight
        torch.testing.assert_close(FusedGenerator.from_generator(g)(z, y), g(z, y), atol=2e-5, rtol=0)


def test_fused_refuses_a_state_dict_that_lacks_a_cbn_table():
    from medgan.models import ConditionalGenerator

    g = ConditionalGenerator(2, 1, 28, 3, latent_dim=8, base_channels=4, embed_dim=4, conditioning="cbn")
    state = dict(g.state_dict())
    state.pop("cbn.1.weight")
    assert FusedGenerator.from_state_dict(state, 8, 2, 28, 1, 3) is None
