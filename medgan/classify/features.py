"""The domain feature network: a small CNN trained once on the real training split with class-balanced batches.

It is the feature space of the sample-quality and memorisation measures and the judge of sample filtering (a
domain-specific stand-in for Inception features, trained here, never downloaded). Training it is the same call
as the ``oversample`` evaluation arm's seed-0 run, so an evaluation that runs that arm reuses that model.
:func:`feature_network` is the same network on a fixed, small step budget: the yardstick of quality tracking
while a GAN trains (:mod:`medgan.training.tracking`).
"""

from __future__ import annotations

import torch

from medgan.classify.fit import Member, Protocol, RunResult, fit_group, train_classifier


def reference_classifier(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                         num_classes: int, epochs: int, patience: int, batch_size: int, lr: float,
                         steps_per_epoch: int, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The class-balanced ``smallcnn`` (seed 0) trained on real images, selected on real validation images."""
    return train_classifier(train_x, train_y, val_x, val_y, classifier="smallcnn", num_classes=num_classes, seed=0,
                            epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
                            steps_per_epoch=steps_per_epoch, balanced=True, device=device).model


def feature_network(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                    num_classes: int, steps: int, eval_every: int, batch_size: int = 32, lr: float = 1e-3,
                    device: torch.device | str = "cpu") -> RunResult:
    """The domain feature network on a fixed budget (quality tracking during GAN training): the class-balanced
    ``smallcnn`` (seed 0, channels-last) trained for ``steps`` optimisation steps, scored on the validation images
    every ``eval_every`` steps; the weights with the best validation balanced accuracy are kept (its arg-max is
    what class fidelity reads). Deterministic for a device and thread count; draws from torch's global RNG (the
    weight initialisation), which the caller saves and restores if it must not move."""
    epochs = max(1, steps // max(1, eval_every))
    protocol = Protocol("smallcnn", epochs, epochs, batch_size, lr, eval_every, select="balanced_accuracy",
                        channels_last=True)
    return fit_group([Member(0, train_x, train_y, balanced=True)], protocol, val_x, val_y, num_classes, device)[0]
