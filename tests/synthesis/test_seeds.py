"""Tests for medgan.synthesis.seeds: per-sample seeds and latents."""

from __future__ import annotations

import numpy as np
import torch

from medgan.synthesis.seeds import derive_seeds, latents_for_seeds


def test_seed_derivation_is_deterministic_and_distinct():
    s = derive_seeds(0, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert len(set(s.tolist())) == 4
    np.testing.assert_array_equal(s, derive_seeds(0, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])))
    assert derive_seeds(1, 0, 0) != derive_seeds(0, 0, 0)
    assert derive_seeds(0, 0, 0, attempt=1) != derive_seeds(0, 0, 0)
    z = latents_for_seeds(derive_seeds(0, 0, np.arange(4000)), 100)
    assert z.shape == (4000, 100)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    torch.testing.assert_close(latents_for_seeds([123], 7), latents_for_seeds([123, 5], 7)[:1])


def test_pair_seeds_depend_on_pair_and_attempt_only():
    from medgan.synthesis.seeds import derive_pair_seeds

    p = derive_pair_seeds(0, np.arange(5))
    assert len(set(p.tolist())) == 5 and (p >= 0).all()
    np.testing.assert_array_equal(p, derive_pair_seeds(0, np.arange(5)))
    assert derive_pair_seeds(0, 0, attempt=1) != derive_pair_seeds(0, 0) and derive_pair_seeds(1, 0) != p[0]
    # its own derivation: a pair's seed is none of the per-class seeds of the same index
    assert not set(p.tolist()) & set(derive_seeds(0, np.repeat([0, 1], 5), np.tile(np.arange(5), 2)).tolist())
