"""LatentEncoder: a small image -> latent network (MONAI blocks, 2D and 3D), the warm start of latent inversion.

``E(x, y) -> z``: the image and its class (as one-hot planes beside the image channels) go through stride-2
``Convolution`` blocks (batch norm, leaky ReLU) down to a 4-cell grid, then one linear layer to ``latent_dim``.
It is trained on the generator's own samples ``(z, y) -> x = G(z, y)`` to give ``z`` back
(:func:`medgan.synthesis.inversion.train_encoder`); the optimisation of :mod:`medgan.synthesis.inversion` then
starts from its guess instead of from noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn


class LatentEncoder(nn.Module):
    """``E(x, y)``: images ``(B, C, *[size] * spatial_dims)`` in [-1, 1] and classes ``(B,)`` -> ``(B, latent_dim)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        size: image edge length (28, 32, 64 or 128).
        num_classes: classes of the generator (one-hot planes; 1: no class input).
        latent_dim: length of ``z``.
        width: channels of the first block, doubled at each following block (at most 8x).
    """

    def __init__(self, spatial_dims: int, in_channels: int, size: int, num_classes: int, latent_dim: int,
                 width: int = 32) -> None:
        super().__init__()
        self.spatial_dims, self.size, self.num_classes, self.latent_dim = spatial_dims, size, num_classes, latent_dim
        cin = in_channels + (num_classes if num_classes > 1 else 0)
        blocks, cells, c = [], size, width
        while cells > 4:
            blocks.append(Convolution(spatial_dims, cin, c, strides=2, kernel_size=3, padding=1, norm="batch",
                                      act=("leakyrelu", {"negative_slope": 0.2})))
            cells = (cells - 1) // 2 + 1
            cin, c = c, min(2 * c, 8 * width)
        self.net = nn.Sequential(*blocks)
        self.head = nn.Linear(cin * cells**spatial_dims, latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes > 1:
            if y is None:
                raise ValueError("a class-conditional encoder needs class labels y")
            planes = F.one_hot(y.long(), self.num_classes).to(x.dtype)
            planes = planes.view(*planes.shape, *([1] * self.spatial_dims)).expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], dim=1)
        return self.head(self.net(x).flatten(1))
