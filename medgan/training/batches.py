"""The GAN's batches: index draws on the device from the in-memory labels (no DataLoader, one kernel per batch),
uniform or class-balanced, from this rank's shard of the training set; and the classical augmentation of the real
batch (``train.augment_real``)."""

from __future__ import annotations

import torch

from medgan.data.batches import inverse_frequency_weights
from medgan.errors import TrainingError
from medgan.runtime import derive_seed
from medgan.training.distributed import DistInfo

#: Ratio of largest to smallest class above which ``balanced: auto`` turns class balancing on.
AUTO_BALANCE_RATIO = 1.5


def use_balanced(mode: str, counts: list[int]) -> bool:
    """Whether batches are class-balanced: ``on``/``off``, or ``auto`` = largest class > 1.5x smallest."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    present = [c for c in counts if c > 0]
    return len(present) > 1 and max(present) > AUTO_BALANCE_RATIO * min(present)


class IndexDraw:
    """Batch indices drawn on the device from in-memory labels (no DataLoader, one kernel per batch).

    Each rank keeps a disjoint, class-stratified shard of the indices. Uniform draws are with replacement;
    balanced draws weight each image by 1/count(its class) within the shard, so every class is equally likely.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, balanced: bool, generator: torch.Generator,
                 seed: int = 0, dist: DistInfo | None = None):
        dist = dist or DistInfo()
        device = labels.device
        y = labels.cpu()
        if dist.enabled:
            perm_gen = torch.Generator().manual_seed(derive_seed(seed, 7919))
            shard = []
            for c in range(num_classes):
                idx = torch.nonzero(y == c).reshape(-1)
                idx = idx[torch.randperm(len(idx), generator=perm_gen)]
                shard.append(idx[dist.rank :: dist.world_size])
            shard_idx = torch.sort(torch.cat(shard)).values
            if len(shard_idx) == 0:
                raise TrainingError(f"rank {dist.rank} got no training images; use fewer processes")
        else:
            shard_idx = torch.arange(len(y))
        self.indices = shard_idx.to(device)
        self.balanced = balanced
        self.generator = generator
        if balanced:
            w = inverse_frequency_weights(y[shard_idx], num_classes)
            self.weights = (w / w.sum()).to(device)
        else:
            self.weights = None

    def draw(self, n: int) -> torch.Tensor:
        if self.weights is not None:
            pick = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        else:
            pick = torch.randint(0, len(self.indices), (n,), generator=self.generator, device=self.indices.device)
        return self.indices[pick]


class RealAugment:
    """``train.augment_real``: what the real images of a batch become before D sees them (before DiffAugment and
    instance noise): themselves (``none``), or classically augmented (``classical``:
    :func:`medgan.classify.augment.classical_augment` at ``strength``, the augmentation of evaluate's ``classical``
    arms), so that G learns the augmented distribution.

    The augmentation draws from its own CPU generator seeded with ``seed`` (per rank), so turning it on leaves every
    other stream as it was; :meth:`rng_state` / :meth:`set_rng_state` carry it in the checkpoint (key ``real_aug``)
    for an exact ``--resume``. ``none`` draws nothing and returns the batch itself."""

    def __init__(self, mode: str, strength: str, spatial_dims: int, seed: int,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.generator: torch.Generator | None = None
        self.augment = None
        self.memory_format = memory_format
        if mode == "classical":
            from medgan.classify.augment import classical_augment

            self.generator = torch.Generator().manual_seed(seed)
            self.augment = classical_augment(strength, spatial_dims, self.generator)
        elif mode != "none":
            raise TrainingError(f"unknown train.augment_real {mode!r}; use none or classical")

    @property
    def enabled(self) -> bool:
        return self.augment is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment is None:
            return x
        return self.augment(x).contiguous(memory_format=self.memory_format)

    def rng_state(self) -> dict[str, torch.Tensor]:
        """``{"real_aug": state}`` when on, else ``{}`` (the checkpoint's ``rng`` record)."""
        return {"real_aug": self.generator.get_state()} if self.generator is not None else {}

    def set_rng_state(self, state: dict) -> None:
        """Restore the stream from a checkpoint's ``rng`` record (a run that had the option off has none)."""
        if self.generator is not None and "real_aug" in state:
            self.generator.set_state(state["real_aug"])
