"""Regularisers added to the GAN losses: the R1 gradient penalty on real data (D), the LeCam regulariser (D) and
feature matching (G)."""

from __future__ import annotations

import torch


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty (Mescheder et al., 2018): mean over samples of ``||dD(x)/dx||²`` on real data.

    ``real_images`` must require grad and ``real_logits`` must be computed from them; the result keeps the graph
    (``create_graph=True``) so it can be added to D's loss, usually as ``r1_gamma / 2 * r1_penalty(...)``.
    Returns 0 when D's output does not depend on its input.
    """
    (grad,) = torch.autograd.grad(
        real_logits.float().sum(), real_images, create_graph=True, allow_unused=True
    )
    if grad is None:
        return real_logits.float().sum() * 0.0
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Feature matching (Salimans et al., 2016): squared distance between mean D features of real and fake.

    Averaged over the feature dimension; real features are treated as constants (no gradient to D).
    """
    diff = real_features.detach().float().mean(dim=0) - fake_features.float().mean(dim=0)
    return diff.pow(2).mean()


class LeCam:
    """LeCam regulariser of the discriminator (Tseng et al., "Regularizing Generative Adversarial Networks under
    Limited Data", CVPR 2021)::

        R = mean((D(x) - a_fake)²) + mean((D(G(z)) - a_real)²)

    on raw logits, where ``a_real`` and ``a_fake`` are exponential moving averages (decay ``decay``) of D's mean
    output on real and generated images. It keeps D's outputs on real and generated images from drifting apart,
    which bounds D's overconfidence when it can memorise a small training set. The averages start at the first
    batch's means and are updated (without gradient) before the penalty is computed; they live on the device and
    travel in the checkpoint (:meth:`state_dict`), so a resumed run is exact.

    ``weight * R`` is what :meth:`__call__` returns (the term added to D's loss).
    """

    def __init__(self, weight: float, decay: float = 0.99, device: torch.device | str = "cpu") -> None:
        self.weight = float(weight)
        self.decay = float(decay)
        self.ema = torch.zeros(2, device=device)  # (real, fake)
        self.started = False

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r, f = real_logits.float(), fake_logits.float()
        with torch.no_grad():
            means = torch.stack([r.mean(), f.mean()])
            if self.started:
                self.ema.lerp_(means, 1.0 - self.decay)
            else:
                self.ema.copy_(means)
                self.started = True
        return self.weight * ((r - self.ema[1]).pow(2).mean() + (f - self.ema[0]).pow(2).mean())

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        return {"ema": self.ema.detach().cpu().clone()} if self.started else None

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            self.ema.copy_(torch.as_tensor(state["ema"]).to(self.ema.device))
            self.started = True
