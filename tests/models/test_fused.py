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
