"""GAN objectives as a small registry (regularisers such as R1 are in :mod:`medgan.training.regularizers`).

All losses take the discriminator's raw outputs (*logits*, higher = more real) and return scalar tensors
computed in float32 (safe under bf16 autocast). ``real_target`` < 1 is one-sided label smoothing; how each
loss uses it (``t`` below; ``r`` real logits, ``f`` fake logits, ``sp`` = softplus, means over the batch):

============  ==============================================  ==================================
name          D loss                                          G loss
============  ==============================================  ==================================
``minimax``   t sp(-r) + (1-t) sp(r) + sp(f)   (BCE, soft t)  -sp(f) = log(1 - sigmoid(f))
``bce``       same as minimax                                 sp(-f) = -log sigmoid(f)  (non-saturating)
``hinge``     relu(t - r) + relu(1 + f)   (real margin t)     -f
``lsgan``     ½ (r - t)² + ½ f²           (real target t)     ½ (f - 1)²
``energy``    relu(c(r) - (1-t) m) + relu(m - c(f))           c(f)
============  ==============================================  ==================================

``energy`` follows EBGAN (Zhao et al., 2017): the discriminator is a cost network; the cost of a sample is
``c(x) = softplus(-logit)`` (non-negative; low for real-looking samples, so the logit keeps its "higher = more
real" meaning). Real costs are pushed to 0, fake costs up to the margin ``m`` and no further; with smoothing,
real costs below ``(1 - t) m`` are no longer pushed down.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medgan.errors import ConfigError


class GANLoss:
    """Base class: one adversarial objective. Subclasses implement :meth:`d_loss` and :meth:`g_loss`.

    The training loop knows a loss only through this interface, never by its name: ``d_output`` says how D's mean
    output is reported (``"sigmoid"``: a probability of "real"; ``"raw"``: the logit itself)."""

    name = ""
    d_output = "raw"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
        """Discriminator loss; ``real_target`` < 1 applies one-sided label smoothing."""
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Generator loss on the discriminator's logits for generated samples."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _bce_d(real: torch.Tensor, fake: torch.Tensor, t: float) -> torch.Tensor:
    real, fake = real.float(), fake.float()
    real_term = F.softplus(-real) if t == 1.0 else t * F.softplus(-real) + (1.0 - t) * F.softplus(real)
    return real_term.mean() + F.softplus(fake).mean()


class MinimaxLoss(GANLoss):
    """The original GAN objective: D maximises log D(x) + log(1 - D(G(z))), G minimises log(1 - D(G(z)))."""

    name = "minimax"
    d_output = "sigmoid"

    def d_loss(self, real_logits, fake_logits, real_target=1.0):
        return _bce_d(real_logits, fake_logits, real_target)

    def g_loss(self, fake_logits):
        return -F.softplus(fake_logits.float()).mean()


class BCELoss(GANLoss):
    """Non-saturating GAN: D as in minimax, G maximises log D(G(z)) (strong gradients early in training)."""

    name = "bce"
    d_output = "sigmoid"

    def d_loss(self, real_logits, fake_logits, real_target=1.0):
        return _bce_d(real_logits, fake_logits, real_target)

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits.float()).mean()


class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN); with smoothing the real margin becomes ``real_target``."""

    name = "hinge"

    def d_loss(self, real_logits, fake_logits, real_target=1.0):
        return F.relu(real_target - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()

    def g_loss(self, fake_logits):
        return -fake_logits.float().mean()


class LSGANLoss(GANLoss):
    """Least-squares GAN (Mao et al., 2017) with targets 0 (fake), ``real_target`` (real) and 1 (G)."""

    name = "lsgan"

    def d_loss(self, real_logits, fake_logits, real_target=1.0):
        return 0.5 * (real_logits.float() - real_target).pow(2).mean() + 0.5 * fake_logits.float().pow(2).mean()

    def g_loss(self, fake_logits):
        return 0.5 * (fake_logits.float() - 1.0).pow(2).mean()


class EnergyLoss(GANLoss):
    """EBGAN-style margin loss on the cost ``c = softplus(-logit)``: real cost -> 0, fake cost -> ``margin``."""

    name = "energy"

    def __init__(self, margin: float = 1.0) -> None:
        if margin <= 0:
            raise ConfigError(f"energy margin must be > 0, got {margin}; set train.energy_margin to e.g. 1.0")
        self.margin = float(margin)

    @staticmethod
    def cost(logits: torch.Tensor) -> torch.Tensor:
        """Non-negative energy of each sample (low = real-looking)."""
        return F.softplus(-logits.float())

    def d_loss(self, real_logits, fake_logits, real_target=1.0):
        real_cost = self.cost(real_logits)
        if real_target < 1.0:
            real_cost = F.relu(real_cost - (1.0 - real_target) * self.margin)
        return real_cost.mean() + F.relu(self.margin - self.cost(fake_logits)).mean()

    def g_loss(self, fake_logits):
        return self.cost(fake_logits).mean()

    def __repr__(self) -> str:
        return f"EnergyLoss(margin={self.margin})"


LOSSES: dict[str, type[GANLoss]] = {
    cls.name: cls for cls in (MinimaxLoss, BCELoss, HingeLoss, LSGANLoss, EnergyLoss)
}


def get_loss(name: str, margin: float = 1.0) -> GANLoss:
    """The loss registered as ``name`` (``margin`` is used by ``energy`` only)."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ConfigError(f"unknown GAN loss '{name}'; set train.loss to one of: {', '.join(LOSSES)}")
    return EnergyLoss(margin) if key == "energy" else LOSSES[key]()
