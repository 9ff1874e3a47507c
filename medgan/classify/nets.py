"""Classifiers for evaluation and quality tracking: MONAI's ResNet-18 and a small CNN, 2D and 3D.

Both expose ``features(x)`` (the penultimate, globally pooled features, used as the domain feature space of
the sample-quality and memorisation checks) and ``forward(x)`` (class logits).

* ``resnet18``: :func:`monai.networks.nets.resnet18` without its classification layer, with the stem the
  MedMNIST benchmark uses at 28 px (a 3x3 stride-1 first convolution and no max-pool, so the small images are
  not downsampled 4x before the first residual stage).
* ``smallcnn``: three stages of two MONAI ``Convolution`` blocks (conv-batchnorm-ReLU; the second of each
  stage has stride 2), global average pooling, dropout and a linear head. About 0.1 M parameters: one training
  run on BreastMNIST at 28 px takes seconds on a laptop CPU, which makes multi-seed, multi-arm studies practical.
"""

from __future__ import annotations

import torch
from torch import nn

from medgan.errors import ConfigError

CLASSIFIERS = ("smallcnn", "resnet18")


class SeededDropout(nn.Module):
    """Dropout whose masks come from its own ``generator`` (set by the fitting loop from the run's seed), so a run's
    masks do not depend on what else draws from torch's global generator, and the seeds of an arm trained together
    (:mod:`medgan.classify.group`) draw exactly the masks each would draw alone."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A scaled keep-mask (CPU): 0 with probability ``p``, else ``1 / (1 - p)``."""
        keep = torch.rand(shape, generator=self.generator) >= self.p
        return keep.float() / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * self.mask(tuple(x.shape)).to(x.device, x.dtype)


class Classifier(nn.Module):
    """A feature trunk (``(N, C, *spatial)`` -> ``(N, F)``) followed by dropout and a linear head."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, ``(N, feature_dim)``."""
        return self.trunk(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _small_cnn_trunk(spatial_dims: int, in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    from monai.networks.blocks import Convolution
    from monai.networks.layers.factories import Pool

    layers: list[nn.Module] = []
    c_in = in_channels
    for w in widths:
        # no bias before batch norm (it would be subtracted again): the standard choice, and a bias with no gradient
        # is what Adam turns into noise of +-lr per step
        layers.append(Convolution(spatial_dims, c_in, w, strides=1, kernel_size=3, act="RELU", norm="BATCH",
                                  bias=False))
        layers.append(Convolution(spatial_dims, w, w, strides=2, kernel_size=3, act="RELU", norm="BATCH",
                                  bias=False))
        c_in = w
    layers.append(Pool[Pool.ADAPTIVEAVG, spatial_dims](1))
    return nn.Sequential(*layers)


def build_classifier(name: str, spatial_dims: int, in_channels: int, num_classes: int) -> Classifier:
    """A downstream classifier by name (``smallcnn`` or ``resnet18``) for 2D or 3D inputs."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"classifiers work on 2D or 3D images, not {spatial_dims}D")
    if name == "smallcnn":
        widths = (16, 32, 64) if spatial_dims == 2 else (8, 16, 32)
        return Classifier(_small_cnn_trunk(spatial_dims, in_channels, widths), widths[-1], num_classes, dropout=0.2)
    if name == "resnet18":
        from monai.networks.nets import resnet18

        trunk = resnet18(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes,
                         conv1_t_size=3, conv1_t_stride=1, no_max_pool=True, feed_forward=False)
        return Classifier(trunk, 512, num_classes)
    raise ConfigError(f"unknown classifier '{name}'; choose one of: {', '.join(CLASSIFIERS)} (--classifier)")
