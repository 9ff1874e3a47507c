"""Tests for medgan.training.schedules: the EMA ramp, transitional conditioning and instance noise over steps."""

from __future__ import annotations

import pytest

from medgan.training.schedules import cond_scale, ema_beta, instance_noise_sd


def test_cond_scale_at_given_steps():
    # unconditional before step 10, then linear over 20 steps
    assert [cond_scale(s, 10, 20) for s in (0, 9, 10, 15, 20, 30, 99)] == [0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert cond_scale(0, 0, 0) == 1.0  # off: conditional from the start
    assert (cond_scale(4, 5, 0), cond_scale(5, 5, 0)) == (0.0, 1.0)  # no ramp: a switch
    assert cond_scale(3, 0, 6) == pytest.approx(0.5)  # ramp from the start


def test_instance_noise_at_given_steps():
    assert instance_noise_sd(100, 0.0, 10) == 0.0
    assert instance_noise_sd(100, 0.2, 0) == 0.2  # constant
    assert [instance_noise_sd(s, 0.2, 100) for s in (0, 50, 100, 150)] == pytest.approx([0.2, 0.1, 0.0, 0.0])


def test_ema_beta_ramp():
    assert ema_beta(0, 0.999) == 0.0 and ema_beta(5, 0.999, start=10) == 0.0
    assert ema_beta(80, 0.999) == pytest.approx(81 / 90)
    assert ema_beta(10**7, 0.999) == 0.999
