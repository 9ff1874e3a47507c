"""The domain feature network: a small CNN trained once on the real training split with class-balanced batches.

It is the feature space of the sample-quality and memorisation measures and the judge of sample filtering (a
domain-specific stand-in for Inception features, trained here, never downloaded). Training it is the same call
as the ``oversample`` evaluation arm's seed-0 run, so an evaluation that runs that arm reuses that model.
"""

from __future__ import annotations

import torch

from medgan.classify.fit import train_classifier


def reference_classifier(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                         num_classes: int, epochs: int, patience: int, batch_size: int, lr: float,
                         steps_per_epoch: int, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The class-balanced ``smallcnn`` (seed 0) trained on real images, selected on real validation images."""
    return train_classifier(train_x, train_y, val_x, val_y, classifier="smallcnn", num_classes=num_classes, seed=0,
                            epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
                            steps_per_epoch=steps_per_epoch, balanced=True, device=device).model
