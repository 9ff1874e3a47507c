"""Class-conditional DCGAN generator for 2D and 3D images, built from MONAI blocks.

One class serves every supported geometry: ``spatial_dims`` (2 or 3) picks 2D or 3D layers through MONAI's
layer factories, and ``size`` picks the number of resolution levels:

======  ==========  =====================================================================
size    start grid  blocks (channels for ``base_channels = b``)
======  ==========  =====================================================================
28      7           1x1 -> 7 (2b) -> 14 (b) -> 28 (out)
32      4           1x1 -> 4 (4b) -> 8 (2b) -> 16 (b) -> 32 (out)
64      4           1x1 -> 4 (8b) -> 8 (4b) -> 16 (2b) -> 32 (b) -> 64 (out)
128     4           1x1 -> 4 (16b) -> ... -> 64 (b) -> 128 (out)        (2D only)
======  ==========  =====================================================================

This is the textbook DCGAN layout (Radford et al., 2016): the projection from the latent vector is a
transposed convolution whose kernel covers the start grid, each following block is a 4x4 stride-2 transposed
convolution + batch norm + ReLU that doubles the resolution and halves the width, and the output block is a
transposed convolution followed by ``tanh``.

Conditioning (``conditioning``):

* ``concat`` (the default): a learned label embedding is concatenated to ``z``;
* ``cbn``: class-conditional batch norm (SNGAN / BigGAN style) in every hidden block: the block's batch norm (one
  shared affine) is followed by a per-class gain and bias, ``h <- h * (1 + gain[y]) + bias[y]``, read from one
  embedding table per block; the tables start at zero, so training starts from the unconditional network, and
  ``z`` enters alone;
* ``both``: the concatenated embedding and the conditional batch norm.

``cond_scale`` (an attribute, 1.0 by default, not in the state dict) multiplies every class contribution: the
concatenated embedding and the conditional gains and biases. The trainer's transitional conditioning schedule
(``train.cond_start``/``train.cond_ramp``) moves it from 0 (unconditional) to 1; at 1 nothing extra is computed.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medgan.errors import TrainingError

#: Ways the generator can be conditioned on the class (``model.conditioning``).
CONDITIONING = ("concat", "cbn", "both")

#: Image sizes supported per number of spatial dimensions.
SUPPORTED_SIZES: dict[int, tuple[int, ...]] = {2: (28, 32, 64, 128), 3: (28, 32, 64)}


def check_geometry(spatial_dims: int, size: int) -> None:
    """Raise :class:`TrainingError` (one line) when ``size`` is not supported in ``spatial_dims`` dims."""
    if spatial_dims not in SUPPORTED_SIZES:
        raise TrainingError(f"spatial_dims must be 2 or 3, got {spatial_dims}; use a 2D or 3D dataset")
    if size not in SUPPORTED_SIZES[spatial_dims]:
        valid = ", ".join(str(s) for s in SUPPORTED_SIZES[spatial_dims])
        raise TrainingError(
            f"model size {size} is not supported in {spatial_dims}D; set data.size to one of {valid}"
        )


def level_plan(size: int) -> tuple[int, int]:
    """``(start_grid, n_levels)`` for an image ``size``: the start grid doubles ``n_levels`` times to ``size``."""
    start = 7 if size == 28 else 4
    levels = {28: 2, 32: 3, 64: 4, 128: 5}[size]
    assert start * 2**levels == size
    return start, levels


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, 0.02), norm weights ~ N(1, 0.02), biases 0.

    Embeddings keep their own initialisation (set by the model that owns them).
    """
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ConditionalGenerator(nn.Module):
    """DCGAN generator ``G(z, y)`` producing images in ``[-1, 1]``.

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels (1 or 3).
        size: output edge length: 28, 32, 64 (and 128 in 2D).
        num_classes: number of classes; ``1`` means unconditional (no embedding, ``y`` is ignored).
        latent_dim: length of the noise vector ``z``.
        base_channels: width of the last hidden block; doubled at each coarser level (DCGAN's ``ngf``).
        embed_dim: length of the label embedding concatenated to ``z`` (``concat`` and ``both``).
        conditioning: ``concat``, ``cbn`` or ``both`` (see the module docstring).
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        size: int,
        num_classes: int,
        latent_dim: int = 100,
        base_channels: int = 64,
        embed_dim: int = 32,
        conditioning: str = "concat",
    ) -> None:
        super().__init__()
        check_geometry(spatial_dims, size)
        if conditioning not in CONDITIONING:
            raise TrainingError(f"unknown conditioning '{conditioning}'; set model.conditioning to one of "
                                f"{', '.join(CONDITIONING)}")
        if num_classes < 1:
            raise TrainingError(f"num_classes must be >= 1, got {num_classes}; check the dataset labels")
        self.spatial_dims = spatial_dims
        self.out_channels = out_channels
        self.size = size
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.conditional = num_classes > 1
        self.conditioning = conditioning
        self.cond_scale = 1.0
        use_concat = self.conditional and conditioning in ("concat", "both")
        self.embed = nn.Embedding(num_classes, embed_dim) if use_concat else None
        in_dim = latent_dim + (embed_dim if use_concat else 0)

        start, levels = level_plan(size)
        width = base_channels * 2 ** (levels - 1)
        act = ("relu", {"inplace": True})
        blocks: list[nn.Module] = [
            # 1x1 -> start x start: a "fully connected" transposed conv whose kernel is the start grid
            Convolution(spatial_dims, in_dim, width, strides=1, kernel_size=start, padding=0, output_padding=0,
                        is_transposed=True, bias=False, norm="batch", act=act, adn_ordering="NA"),
        ]
        for _ in range(levels - 1):
            blocks.append(
                Convolution(spatial_dims, width, width // 2, strides=2, kernel_size=4, padding=1, output_padding=0,
                            is_transposed=True, bias=False, norm="batch", act=act, adn_ordering="NA")
            )
            width //= 2
        blocks.append(
            Convolution(spatial_dims, width, out_channels, strides=2, kernel_size=4, padding=1, output_padding=0,
                        is_transposed=True, bias=False, conv_only=True)
        )
        blocks.append(nn.Tanh())
        self.net = nn.Sequential(*blocks)
        # class-conditional batch norm: per hidden block, a table of (gain, bias) per class, zero at the start
        self.cbn: nn.ModuleList | None = None
        if self.conditional and conditioning in ("cbn", "both"):
            self.cbn = nn.ModuleList(nn.Embedding(num_classes, 2 * int(blk.conv.out_channels)) for blk in blocks[:-2])
        init_dcgan_weights(self)
        for table in self.cbn or ():
            nn.init.zeros_(table.weight)

    @property
    def mix_levels(self) -> int:
        """The number of conditioned stages a class mix weighs separately (:meth:`forward`'s ``mix``): one per
        hidden block (the concatenated embedding counts as stage 0)."""
        return len(self.net) - 2

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, target: torch.Tensor | None = None,
                mix: torch.Tensor | float | None = None) -> torch.Tensor:
        """``z`` (B, latent_dim), ``y`` (B,) class indices -> images (B, out_channels, *[size] * spatial_dims).

        Soft conditioning (translation into another class): with ``target`` (B,) class indices, stage ``k`` (the
        concatenated embedding: stage 0; the class-conditional gain and bias of hidden block ``k``) is conditioned
        on ``(1 - w_k) * class y + w_k * class target``, where ``w = mix`` is a number, ``(mix_levels,)`` or ``(B,
        mix_levels)``: 0 gives class ``y``'s image, 1 class ``target``'s. Without ``target`` the computation is
        exactly the plain one.
        """
        if (self.embed is not None or self.cbn is not None) and y is None:
            raise ValueError("a conditional generator needs class labels y")
        lam = float(self.cond_scale)
        w = None if target is None else self._mix_weights(mix, len(z), z)
        if self.embed is not None:
            e = self.embed(y).to(z.dtype) if w is None else torch.lerp(self.embed(y), self.embed(target), w[:, :1])
            z = torch.cat([z, e if lam == 1.0 else e * lam], dim=1)
        h = z.reshape(*z.shape, *([1] * self.spatial_dims))
        if self.cbn is None:
            return self.net(h)
        for k, blk in enumerate(self.net):
            if k < len(self.cbn):  # conv -> batch norm -> h * (1 + gain[y]) + bias[y] -> ReLU
                h = blk.adn.N(blk.conv(h))
                gb = self.cbn[k](y).to(h.dtype) if w is None else \
                    torch.lerp(self.cbn[k](y), self.cbn[k](target), w[:, k:k + 1]).to(h.dtype)
                gain, bias = (t.reshape(*t.shape, *([1] * self.spatial_dims)) for t in
                              (gb if lam == 1.0 else gb * lam).chunk(2, dim=1))
                h = blk.adn.A(torch.addcmul(h + bias, h, gain))
            else:
                h = blk(h)
        return h

    def _mix_weights(self, mix: torch.Tensor | float | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """``mix`` as a ``(n, mix_levels)`` tensor of weights in [0, 1]."""
        if not self.conditional:
            raise ValueError("an unconditional generator has no class to mix")
        w = torch.as_tensor(1.0 if mix is None else mix, dtype=like.dtype, device=like.device)
        if w.dim() == 0:
            w = w.expand(self.mix_levels)
        if w.shape[-1] != self.mix_levels or w.dim() > 2:
            raise ValueError(f"mix must be a number, ({self.mix_levels},) or (B, {self.mix_levels}); got {tuple(w.shape)}")
        return w.expand(n, self.mix_levels)
