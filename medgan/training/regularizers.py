"""Regularisers added to the GAN losses: the R1 gradient penalty on real data (D) and feature matching (G)."""

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
