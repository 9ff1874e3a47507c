"""The generator with each sample's class conditioning fixed: a differentiable function of ``z`` alone, for latent
inversion (:mod:`medgan.synthesis.inversion`), which runs the generator hundreds of times on the same classes.

Built from an eval-mode :class:`~medgan.models.generator.ConditionalGenerator` and per-sample classes (or a mix
of two classes, :meth:`ConditionalGenerator.forward`'s ``target`` and ``mix``): every batch norm is folded into
the convolution before it (running statistics), the concatenated label embedding's share of the first block and
each block's class-conditional gain and bias become one per-sample scale and shift, computed once. What is left per
call is a matrix product, two or three transposed convolutions, multiply-adds, ReLU and ``tanh``: the same function
as the module (to float rounding), about a third cheaper forward and backward, and gradients flow to ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _folded(blk: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """A generator block's transposed convolution with its eval-mode batch norm folded in: ``(weight, bias,
    conv keyword arguments)``."""
    conv = blk.conv
    w = conv.weight.detach().double()
    b = None if conv.bias is None else conv.bias.detach().double()
    bn = getattr(getattr(blk, "adn", None), "N", None)
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        shift = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
        if b is not None:
            shift = shift + b * scale
        w, b = w * scale.view(1, -1, *([1] * (w.dim() - 2))), shift
    kw = {"stride": conv.stride, "padding": conv.padding, "output_padding": conv.output_padding,
          "dilation": conv.dilation}
    return w.float(), None if b is None else b.float(), kw


class FixedClassGenerator:
    """``G(z)`` for fixed per-sample classes ``y`` (optionally mixed with ``target`` by ``mix``; see
    :meth:`~medgan.models.generator.ConditionalGenerator.forward`): call it with ``z`` ``(B, latent_dim)``.

    :meth:`select` gives the same generator for a subset of the samples (a mini-batch of an inversion).
    """

    def __init__(self, g: nn.Module, y: torch.Tensor, target: torch.Tensor | None = None,
                 mix: torch.Tensor | float | None = None) -> None:
        if g.training:
            raise ValueError("FixedClassGenerator folds the running batch-norm statistics: put the generator in eval mode")
        self.spatial_dims = int(g.spatial_dims)
        self.latent_dim = int(g.latent_dim)
        blocks = list(g.net)
        hidden = blocks[:-2]
        lam = float(g.cond_scale)
        n = len(y)
        dev = next(g.parameters()).device
        y = y.to(dev)
        w = None if target is None else g._mix_weights(mix, n, torch.zeros((), device=dev)).float()
        target = None if target is None else target.to(dev)

        def table(t: nn.Embedding, k: int) -> torch.Tensor:
            rows = t.weight.detach()[y]
            if w is not None:
                rows = torch.lerp(rows, t.weight.detach()[target], w[:, k:k + 1])
            return rows * lam

        with torch.no_grad():
            w0, b0, _ = _folded(hidden[0])
            start = w0.shape[2:]
            cells = int(torch.tensor(start).prod())
            cout0 = int(w0.shape[1])
            # (Cin, Cout, *k) -> (Cin, Cout * cells): the product comes out as (B, Cout, *start)
            w0 = w0.reshape(w0.shape[0], -1)
            base = (b0 if b0 is not None else torch.zeros(cout0)).repeat_interleave(cells).to(dev)
            base = base.expand(n, -1)
            if g.embed is not None:
                base = base + table(g.embed, 0) @ w0[self.latent_dim:].to(dev)
            self.w_z = w0[: self.latent_dim].to(dev).contiguous()
            self.start = (cout0, *start)
            scales, shifts = [], []
            for k in range(len(hidden)):
                if g.cbn is not None:
                    gain, bias = table(g.cbn[k], k).chunk(2, dim=1)
                    scale = 1.0 + gain
                else:
                    scale = bias = None
                scales.append(scale)
                shifts.append(bias)
            s0 = scales[0]
            if s0 is not None:
                s0 = s0.repeat_interleave(cells, dim=1)
                self.row0 = (base * s0 + shifts[0].repeat_interleave(cells, dim=1)).contiguous()
            else:
                self.row0 = base.contiguous()
            self.scale0 = s0
            self.layers = []
            shape = (n, -1) + (1,) * self.spatial_dims
            for k, blk in enumerate(blocks[1:-1], start=1):
                wk, bk, kw = _folded(blk)
                aff = None
                if k < len(hidden):
                    bvec = (bk if bk is not None else torch.zeros(wk.shape[1])).to(dev)
                    if scales[k] is not None:
                        aff = (scales[k].reshape(shape).contiguous(),
                               (bvec * scales[k] + shifts[k]).reshape(shape).contiguous())
                    else:
                        aff = (None, bvec.reshape(1, -1, *([1] * self.spatial_dims)))
                    bk = None
                self.layers.append((wk.to(dev), None if bk is None else bk.to(dev), kw, aff, k < len(hidden)))

    def select(self, idx: torch.Tensor) -> FixedClassGenerator:
        """The generator of the samples ``idx`` only."""
        out = object.__new__(FixedClassGenerator)
        out.__dict__.update(self.__dict__)
        out.row0 = self.row0[idx]
        out.scale0 = None if self.scale0 is None else self.scale0[idx]
        out.layers = [(w, b, kw, None if aff is None else
                       tuple(t if t is None or t.shape[0] == 1 else t[idx] for t in aff), relu)
                      for w, b, kw, aff, relu in self.layers]
        return out

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` in [-1, 1]."""
        h = z @ self.w_z
        h = h * self.scale0 + self.row0 if self.scale0 is not None else h + self.row0
        h = F.relu(h).view(len(z), *self.start)
        conv = F.conv_transpose2d if self.spatial_dims == 2 else F.conv_transpose3d
        for w, b, kw, aff, relu in self.layers:
            h = conv(h, w, b, **kw)
            if aff is not None:
                h = h + aff[1] if aff[0] is None else torch.addcmul(aff[1], h, aff[0])
            if relu:
                h = F.relu(h)
        return torch.tanh(h)
