"""Fixtures of the synthesis tests: a SyntheticBank drawn from the tiny BreastMNIST checkpoint."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bank(breast):
    from medgan.synthesis.bank import SyntheticBank

    return SyntheticBank.from_checkpoint(breast, n_per_class=20, seed=1)
