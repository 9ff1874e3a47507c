"""Index batches drawn from in-memory labels: shuffled epochs, or class-balanced draws (each class equally likely).

Class balancing weighs every image by 1 / (number of images of its class): :func:`inverse_frequency_weights`,
used by the evaluation's batch stream here and by the GAN's device-side draws (:mod:`medgan.training.batches`).
"""

from __future__ import annotations

import torch


def inverse_frequency_weights(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Per-image weight ``1 / count(its class)`` (float32, not normalised): with these weights every class is
    drawn equally often."""
    counts = torch.bincount(labels, minlength=num_classes or 0).float()
    return (1.0 / counts.clamp(min=1))[labels]


class BatchStream:
    """An endless stream of index batches: shuffled epochs, or class-balanced draws with replacement."""

    def __init__(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator, balanced: bool):
        self.n = len(labels)
        self.bs = min(batch_size, self.n)
        self.g = generator
        self.weights = None
        if balanced:
            self.weights = inverse_frequency_weights(labels)
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.weights is not None:
            return torch.multinomial(self.weights, self.bs, replacement=True, generator=self.g)
        out = []
        need = self.bs
        while need:
            if self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
            take = self.perm[self.pos : self.pos + need]
            self.pos += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)
