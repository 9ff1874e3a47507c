"""Values that change with the training step: the EMA decay ramp, the transitional conditioning weight and the
instance-noise level. Pure functions of the step (and config numbers), so a resumed run recomputes them exactly."""

from __future__ import annotations


def ema_beta(step: int, decay: float, start: int = 0) -> float:
    """EMA decay used after ``step``: 0 (a copy) up to ``start``, then ``min(decay, (1 + s) / (10 + s))`` with
    ``s = step - start``, so that early in a run the average does not drag in the untrained initial weights (0.9
    after 80 steps, 0.99 after ~900, 0.999 after ~9000)."""
    s = step - start
    if s <= 0:
        return 0.0
    return min(decay, (1.0 + s) / (10.0 + s))


def cond_scale(step: int, start: int, ramp: int) -> float:
    """Transitional conditioning (Shahbazi et al., "Collapse by Conditioning", CVPR 2022): the weight of the class
    information at ``step``: 0 (G and D unconditional) before ``start``, then linear up to 1 over ``ramp`` steps (a
    switch when ``ramp`` is 0); 1 from the start when both are 0."""
    if step < start:
        return 0.0
    return 1.0 if ramp <= 0 else min(1.0, (step - start) / ramp)


def instance_noise_sd(step: int, sd: float, decay: int) -> float:
    """Instance noise (Sønderby et al., 2017) at ``step``: ``sd``, decayed linearly to 0 over ``decay`` steps when
    ``decay`` > 0 (constant otherwise); 0 when off."""
    if sd <= 0:
        return 0.0
    return float(sd) * (max(0.0, 1.0 - step / decay) if decay > 0 else 1.0)
