"""The image-conditioned translator and its discriminator, for 2D and 3D images, built from MONAI blocks.

:class:`ConditionalTranslator` turns a real image of one class into the same image as another class
(StarGAN-style, Choi et al. 2018): an encoder-decoder whose every normalisation is a class-conditional instance
norm. Layout for ``base_channels = b`` (``size`` 28; 32, 64 and 128 alike, with coarser grids of ``size / 4``)::

    28 (in) -> 3x3 conv (b) -> 4x4 stride-2 conv (2b, 14) -> 4x4 stride-2 conv (4b, 7)
            -> res_blocks x [3x3 conv, CIN, ReLU, 3x3 conv, CIN, + skip] (4b, 7)
            -> 4x4 stride-2 transposed conv (2b, 14) -> 4x4 stride-2 transposed conv (b, 28)
            -> 3x3 conv (delta, near zero at the start) -> tanh(atanh(x) + delta)

Every convolution is a MONAI :class:`~monai.networks.blocks.Convolution` (``spatial_dims`` 2 or 3 picks the
layers); each but the last is followed by a class-conditional instance norm (:class:`ConditionalInstanceNorm`) and
a ReLU.

**The class code.** The network is conditioned on a code ``c`` in the simplex over the classes:
``c = (1 - s) onehot(source) + s onehot(target)`` for a translation *strength* ``s`` in [0, 1]
(:func:`class_code`). Each conditional norm turns ``c`` into a per-channel gain and bias, linear in ``c``, so ``s``
interpolates the conditioning from the source class to the target: ``s = 0`` asks for the image as its own class,
which training makes the identity (the identity loss), ``s = 1`` for the full translation.

**The output is the input, changed.** The last convolution writes a change ``delta`` in the logit domain of the
intensities, ``y = tanh(atanh(x) + delta)`` (``x`` kept inside (-1, 1) by ``1e-3``), so outputs are in [-1, 1],
an untrained translator (``delta`` about 0.01: the output layer starts at 1% of its usual scale) returns nearly its
input, and a change near the ends of the intensity range stays smooth (no clamp without gradient).

:class:`TranslatorDiscriminator` is StarGAN's two-headed discriminator: spectrally normalised 4x4 stride-2
convolutions with LeakyReLU(0.2) down to a grid of at most 8, then a 3x3 convolution giving one realness logit per
patch (PatchGAN) and a convolution whose kernel covers the whole grid giving one logit per class (the auxiliary
classifier that teaches the translator what each class looks like). The class head sees *where* features are, not
only their mean: on BreastMNIST 50%, trained as classifiers alone (1,200 class-balanced steps of 32, Adam 1e-3,
DiffAugment p 0.5), a head on spatially averaged features reached a validation AUROC of 0.75, the whole-grid head
0.89.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Norm
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from medgan.errors import TrainingError
from medgan.models.generator import check_geometry

#: How far inside (-1, 1) inputs are kept before ``atanh`` (outputs of a zero change differ from inputs by at most
#: this much).
EPS = 1e-3


def class_code(y_src: torch.Tensor | None, y_tgt: torch.Tensor, num_classes: int,
               strength: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``(B, num_classes)`` codes ``(1 - s) onehot(y_src) + s onehot(y_tgt)``; ``y_src`` may be ``None`` when
    ``strength`` is 1. ``strength`` is a number or a ``(B,)`` tensor in [0, 1]."""
    tgt = nn.functional.one_hot(y_tgt.long(), num_classes).float()
    if y_src is None:
        if not (isinstance(strength, (int, float)) and float(strength) == 1.0):
            raise ValueError("a strength below 1 needs the source classes y_src")
        return tgt
    src = nn.functional.one_hot(y_src.long(), num_classes).float()
    s = torch.as_tensor(strength, dtype=torch.float32, device=tgt.device)
    s = s.reshape(-1, 1) if s.dim() == 1 else s
    return torch.lerp(src, tgt, s)


#: Standard deviation of the class tables' initial values, and the scale of the output convolution's initial
#: weights (relative to Kaiming's): small, so an untrained translator returns nearly its input, but not zero: with
#: both at zero no gradient reaches the class tables (the output layer blocks it) and the output layer alone can
#: only change every class alike, which the identity loss undoes; such a translator never starts translating.
INIT_TABLE_SD = 0.02
INIT_OUT_SCALE = 0.01


class ConditionalInstanceNorm(nn.Module):
    """Instance norm without its own affine, then ``h * (1 + gain(c)) + bias(c)`` with ``gain`` and ``bias`` linear
    in the class code ``c`` (one row per class: a per-class gain and bias, mixed as ``c`` mixes the classes); both
    start small (:data:`INIT_TABLE_SD`)."""

    def __init__(self, spatial_dims: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.norm = Norm[Norm.INSTANCE, spatial_dims](channels, affine=False)
        self.gain = nn.Linear(num_classes, channels, bias=False)
        self.bias = nn.Linear(num_classes, channels, bias=False)
        nn.init.normal_(self.gain.weight, 0.0, INIT_TABLE_SD)
        nn.init.normal_(self.bias.weight, 0.0, INIT_TABLE_SD)

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        shape = (*code.shape[:1], -1, *([1] * self.spatial_dims))
        gain = self.gain(code).reshape(shape)
        bias = self.bias(code).reshape(shape)
        return self.norm(h) * (1.0 + gain) + bias


class _CondBlock(nn.Module):
    """MONAI convolution -> class-conditional instance norm -> ReLU (``act=False``: no ReLU)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, num_classes: int, strides: int = 1,
                 kernel_size: int = 3, transposed: bool = False, act: bool = True) -> None:
        super().__init__()
        self.conv = Convolution(spatial_dims, cin, cout, strides=strides, kernel_size=kernel_size,
                                padding=1, output_padding=0 if transposed else None, is_transposed=transposed,
                                bias=False, conv_only=True)
        self.norm = ConditionalInstanceNorm(spatial_dims, cout, num_classes)
        self.act = act

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(h), code)
        return torch.relu(h) if self.act else h


class _ResBlock(nn.Module):
    """``h + [conv, CIN, ReLU, conv, CIN](h)``."""

    def __init__(self, spatial_dims: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.a = _CondBlock(spatial_dims, channels, channels, num_classes)
        self.b = _CondBlock(spatial_dims, channels, channels, num_classes, act=False)

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return h + self.b(self.a(h, code), code)


class ConditionalTranslator(nn.Module):
    """``T(x, code) -> y``: the image ``x`` as the class mixture ``code`` (module docstring), in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        channels: image channels.
        size: edge length: 28, 32, 64 (and 128 in 2D).
        num_classes: number of classes (at least 2).
        base_channels: width of the first block, doubled at each of the two down-sampling levels.
        res_blocks: residual blocks at the coarsest level.
    """

    def __init__(self, spatial_dims: int, channels: int, size: int, num_classes: int, base_channels: int = 16,
                 res_blocks: int = 2) -> None:
        super().__init__()
        check_geometry(spatial_dims, size)
        if num_classes < 2:
            raise TrainingError(f"a translator needs at least 2 classes, the data has {num_classes}; train a GAN "
                                "(model.kind: dcgan) instead")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.size = size
        self.num_classes = num_classes
        b, sd, k = base_channels, spatial_dims, num_classes
        self.stem = _CondBlock(sd, channels, b, k)
        self.down = nn.ModuleList([_CondBlock(sd, b, 2 * b, k, strides=2, kernel_size=4),
                                   _CondBlock(sd, 2 * b, 4 * b, k, strides=2, kernel_size=4)])
        self.res = nn.ModuleList([_ResBlock(sd, 4 * b, k) for _ in range(res_blocks)])
        self.up = nn.ModuleList([_CondBlock(sd, 4 * b, 2 * b, k, strides=2, kernel_size=4, transposed=True),
                                 _CondBlock(sd, 2 * b, b, k, strides=2, kernel_size=4, transposed=True)])
        self.out = Convolution(sd, b, channels, strides=1, kernel_size=3, padding=1, bias=True, conv_only=True)
        for m in self.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        with torch.no_grad():
            self.out.conv.weight.mul_(INIT_OUT_SCALE)
        nn.init.zeros_(self.out.conv.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """``x`` (B, channels, *spatial) in [-1, 1], ``code`` (B, num_classes) -> (B, channels, *spatial)."""
        code = code.to(x.dtype)
        h = self.stem(x, code)
        for blk in self.down:
            h = blk(h, code)
        for blk in self.res:
            h = blk(h, code)
        for blk in self.up:
            h = blk(h, code)
        delta = self.out(h)
        return torch.tanh(torch.atanh(x.clamp(-1.0 + EPS, 1.0 - EPS)) + delta)

    def translate(self, x: torch.Tensor, y_src: torch.Tensor | None, y_tgt: torch.Tensor,
                  strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``x`` of classes ``y_src`` as classes ``y_tgt`` at ``strength`` (:func:`class_code`)."""
        return self(x, class_code(y_src, y_tgt, self.num_classes, strength).to(x.device))


def _down_levels(size: int) -> int:
    """Stride-2 levels of the discriminator: down to a grid of at most 8 (28 -> 7, 32 -> 8, 64 -> 8, 128 -> 8)."""
    n = 0
    while size > 8:
        size //= 2
        n += 1
    return n


class TranslatorDiscriminator(nn.Module):
    """``D(x) -> (patch realness logits (B, 1, *grid), class logits (B, num_classes))`` (module docstring).

    Args:
        spatial_dims: 2 or 3.
        channels: image channels.
        size: edge length: 28, 32, 64 (and 128 in 2D).
        num_classes: number of classes.
        base_channels: width of the first block, doubled per level (at most 8x).
        spectral_norm: spectral normalisation on every convolution.
    """

    def __init__(self, spatial_dims: int, channels: int, size: int, num_classes: int, base_channels: int = 16,
                 spectral_norm: bool = True) -> None:
        super().__init__()
        check_geometry(spatial_dims, size)
        self.num_classes = num_classes
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        act = ("leakyrelu", {"negative_slope": 0.2})
        blocks: list[nn.Module] = []
        cin, width = channels, base_channels
        for _ in range(_down_levels(size)):
            blk = Convolution(spatial_dims, cin, width, strides=2, kernel_size=4, padding=1, act=act, norm=None,
                              bias=True)
            blk.conv = sn(blk.conv)
            blocks.append(blk)
            cin, width = width, min(2 * width, 8 * base_channels)
        feat = Convolution(spatial_dims, cin, cin, strides=1, kernel_size=3, padding=1, act=act, norm=None, bias=True)
        feat.conv = sn(feat.conv)
        blocks.append(feat)
        self.body = nn.Sequential(*blocks)
        self.adv = Convolution(spatial_dims, cin, 1, strides=1, kernel_size=3, padding=1, bias=True, conv_only=True)
        self.adv.conv = sn(self.adv.conv)
        grid = size // 2 ** _down_levels(size)
        self.cls = Convolution(spatial_dims, cin, num_classes, strides=1, kernel_size=grid, padding=0, bias=True,
                               conv_only=True)
        self.cls.conv = sn(self.cls.conv)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.adv(h), self.cls(h).flatten(1)
