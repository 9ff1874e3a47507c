"""Class-conditional DCGAN discriminator with projection conditioning, for 2D and 3D images.

Layout for ``base_channels = b`` (mirror image of the generator, see :mod:`medgan.models.generator`):

======  =====================================================================================
size    blocks
======  =====================================================================================
28      28 (in) -> 14 (b) -> 7 (2b) -> [minibatch-std] -> 7x7 conv -> features (2b)
32      32 (in) -> 16 (b) -> 8 (2b) -> 4 (4b) -> [minibatch-std] -> 4x4 conv -> features (4b)
64      64 (in) -> ... -> 4 (8b) -> [minibatch-std] -> 4x4 conv -> features (8b)
128     128 (in) -> ... -> 4 (16b) -> [minibatch-std] -> 4x4 conv -> features (16b)   (2D only)
======  =====================================================================================

Every down-sampling block is a 4x4 stride-2 convolution + LeakyReLU(0.2); the input block has no
normalisation, the others use batch norm unless spectral normalisation is on (then no batch norm: spectral
norm is the stabiliser, and batch statistics would couple samples of a batch). The last block is a
convolution whose kernel covers the whole remaining grid, giving the feature vector ``phi(x)``.

Conditioning is the projection discriminator of Miyato & Koyama (2018)::

    logit(x, y) = w . phi(x) + b + <embed(y), phi(x)>

so the class enters through an inner product with the features rather than as an extra input plane.
``cond_scale`` (an attribute, 1.0 by default, not in the state dict) multiplies the projection term: the trainer's
transitional conditioning schedule moves it from 0 (an unconditional D) to 1.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from medgan.errors import TrainingError
from medgan.models.generator import check_geometry, init_dcgan_weights, level_plan


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al., 2018): one statistic per sample measuring batch diversity.

    For each feature and position, the standard deviation across a group of ``G = min(group_size, B)`` samples
    (samples ``n``, ``n + B/G``, ``n + 2B/G``, ... form a group; the whole batch when ``B`` is not divisible by
    ``G``) is averaged into one number, shared by the group's members. A batch of near-identical samples (mode
    collapse) gets a small value, which the discriminator can learn to punish.

    ``forward`` returns that statistic, shape (B,). The classic layer appends it as a constant feature map; the
    discriminator folds that map into its last convolution instead (see :class:`ConditionalDiscriminator`).
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = min(self.group_size, b)
        if b % g:
            g = b
        m = b // g
        if not x.is_contiguous() and x.movedim(1, -1).is_contiguous():
            x = x.movedim(1, -1)  # channels-last: flatten in memory order (the statistic is order-free)
        grouped = x.float().reshape(g, m, -1)
        # written out rather than Tensor.var, whose backward is several times slower on CPU
        centred = grouped - grouped.mean(dim=0)
        std = (centred.square().mean(dim=0) + self.eps).sqrt().mean(dim=1)  # (m,)
        return std.repeat(g)


class ConditionalDiscriminator(nn.Module):
    """DCGAN discriminator ``D(x, y)`` returning one logit per sample (higher = more real).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (1 or 3).
        size: input edge length: 28, 32, 64 (and 128 in 2D).
        num_classes: number of classes; ``1`` means unconditional (no projection term, ``y`` is ignored).
        base_channels: width of the first block, doubled per level (DCGAN's ``ndf``).
        spectral_norm: spectral normalisation on every convolution and the output linear layer (no batch norm).
        minibatch_std: append a minibatch standard-deviation feature map before the last block.
        dropout: dropout probability after each hidden block's activation (0: none).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        size: int,
        num_classes: int,
        base_channels: int = 64,
        spectral_norm: bool = True,
        minibatch_std: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_geometry(spatial_dims, size)
        if num_classes < 1:
            raise TrainingError(f"num_classes must be >= 1, got {num_classes}; check the dataset labels")
        if not 0.0 <= dropout < 1.0:
            raise TrainingError(f"model.dropout must be in [0, 1), got {dropout}; set a smaller value")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size = size
        self.num_classes = num_classes
        self.use_spectral_norm = spectral_norm

        start, levels = level_plan(size)
        act = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})
        drop = dropout if dropout > 0 else None
        norm = None if spectral_norm else "batch"
        width = base_channels
        blocks: list[nn.Module] = [
            Convolution(spatial_dims, in_channels, width, strides=2, kernel_size=4, padding=1,
                        bias=True, norm=None, act=act, dropout=drop, adn_ordering="NAD"),
        ]
        for _ in range(levels - 1):
            blocks.append(
                Convolution(spatial_dims, width, width * 2, strides=2, kernel_size=4, padding=1,
                            bias=spectral_norm, norm=norm, act=act, dropout=drop, adn_ordering="NAD")
            )
            width *= 2
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd() if minibatch_std else None
        self.feature_dim = width
        # the last block: a convolution covering the whole start x start grid -> a feature vector phi(x)
        self.head = Convolution(spatial_dims, width, width, strides=1, kernel_size=start, padding=0, bias=True,
                                conv_only=True)
        # the minibatch-std feature map is constant over the grid, and the head's kernel covers the whole grid
        # without padding, so "append the map, then convolve" equals "convolve, then add std * w" with one
        # weight per output feature: the same function without a concatenated copy and an odd channel count.
        self.mbstd_proj = nn.Linear(1, width, bias=False) if minibatch_std else None
        self.head_act = nn.LeakyReLU(0.2, inplace=True)
        self.linear = nn.Linear(width, 1)
        self.embed = nn.Embedding(num_classes, width) if num_classes > 1 else None
        self.cond_scale = 1.0
        init_dcgan_weights(self)
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                    _spectral_norm(m)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, C, *spatial), ``y`` (B,) -> logits (B,) [and features phi(x) (B, feature_dim)]."""
        h = self.blocks(x)
        phi = self.head(h).flatten(1)
        if self.mbstd is not None:
            phi = phi + self.mbstd_proj(self.mbstd(h).unsqueeze(1).to(phi.dtype))
        phi = self.head_act(phi)
        logits = self.linear(phi).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional discriminator needs class labels y")
            proj = (self.embed(y).to(phi.dtype) * phi).sum(dim=1)
            # scaled even by 0 (not skipped): the embedding stays in the graph, as DDP expects of every parameter
            logits = logits + (proj if self.cond_scale == 1.0 else float(self.cond_scale) * proj)
        return (logits, phi) if return_features else logits
