"""The inference-only, folded form of :class:`~medgan.models.generator.ConditionalGenerator`, beside the module
it mirrors: batch norm folded into the convolutions, the latent block as one matrix product with a per-class
table, channels-last activations, optional bfloat16. Sampling uses it (:mod:`medgan.synthesis.sampler`);
building it from a state dict needs no MONAI import.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

AMP_MODES = ("off", "bf16")


class FusedGenerator:
    """Inference-only form of a DCGAN :class:`~medgan.models.generator.ConditionalGenerator` (2D or 3D).

    It computes the same function as the eval-mode module with less work:

    * the first block (a transposed convolution of the 1x1 latent "image") is a matrix product, and the label
      embedding's share of it is precomputed per class (a table lookup instead of a concatenation);
    * every batch norm is folded into the preceding (transposed) convolution (weights scaled per output
      channel, a bias added), so normalisation costs nothing;
    * class-conditional batch norm (``conditioning: cbn | both``) becomes a per-class scale and shift table per
      block, applied after the folded convolution (one multiply-add per activation; the first block's per-class
      shift joins the label table);
    * activations stay channels-last (NHWC / NDHWC), the layout oneDNN's kernels are fastest in on CPU;
    * ``amp="bf16"`` runs the matrix product and the convolutions in bfloat16 (AMX / AVX512-BF16 on recent
      x86 CPUs); outputs are then numerically different from fp32 (not more than about 1% of the intensity
      range) but still deterministic on a given machine.

    In fp32 the results differ from the module's only by float rounding (about 1e-6). Two builders:
    :meth:`from_generator` (from the module) and :meth:`from_state_dict` (straight from a checkpoint's
    weights, so sampling never imports MONAI: that saves more than a second of start-up). Both return
    ``None`` for a layout they do not recognise; callers then run the module itself.
    """

    def __init__(self, latent_dim: int, spatial_dims: int, table: torch.Tensor, w_z: torch.Tensor,
                 start_shape: tuple[int, ...], layers: list[tuple], amp: str = "off",
                 scale0: torch.Tensor | None = None) -> None:
        """``layers``: ``(weight, bias, conv_kwargs, relu, class_affine)`` per block after the first, where
        ``class_affine`` is ``None`` or the per-class ``(scale, shift)`` tables ``(K, C)``; ``scale0``: the first
        block's per-class scale ``(K, cells * C)`` (``None`` without class-conditional batch norm)."""
        self.latent_dim = latent_dim
        self.spatial_dims = spatial_dims
        self.dtype = torch.bfloat16 if amp == "bf16" else torch.float32
        self.table = table.to(self.dtype)
        self.w_z = w_z.to(self.dtype)
        self.scale0 = None if scale0 is None else scale0.to(self.dtype)
        self.start_shape = start_shape  # (*spatial, C) of the first block's output
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        self.layers = [(w.to(self.dtype).contiguous(memory_format=fmt), None if b is None else b.to(self.dtype),
                        kw, relu, None if aff is None else tuple(t.to(self.dtype) for t in aff))
                       for w, b, kw, relu, aff in layers]

    @staticmethod
    def _fold(w: torch.Tensor, b: torch.Tensor | None, bn: tuple[torch.Tensor, ...] | None,
              eps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Transposed-conv weights ``(Cin, Cout, *k)`` and bias with an eval-mode batch norm
        ``(weight, bias, running_mean, running_var)`` folded in (computed in float64)."""
        w = w.detach().double()
        b = b.detach().double() if b is not None else None
        if bn is None:
            return w.float(), None if b is None else b.float()
        gamma, beta, mean, var = (t.detach().double() for t in bn)
        scale = gamma / torch.sqrt(var + eps)
        shift = beta - mean * scale
        if b is not None:
            shift = shift + b * scale
        return (w * scale.view(1, -1, *([1] * (w.dim() - 2)))).float(), shift.float()

    @staticmethod
    def _class_affine(shift: torch.Tensor | None, table: torch.Tensor, lam: float = 1.0) -> tuple[torch.Tensor, ...]:
        """A folded block's ``shift`` (its bias, ``(C,)``) followed by class-conditional batch norm ``h * (1 +
        gain[c]) + bias[c]`` (``table`` ``(K, 2C)``, scaled by ``lam``): per-class ``(scale, shift)``, ``(K, C)``."""
        gain, bias = (table.detach().double() * lam).chunk(2, dim=1)
        scale = 1.0 + gain
        base = torch.zeros(scale.shape[1], dtype=torch.float64) if shift is None else shift.detach().double()
        return scale.float(), (base * scale + bias).float()

    @classmethod
    def _build(cls, latent: int, embed: torch.Tensor | None, layers: list, amp: str,
               cbn: list[torch.Tensor] | None = None, lam: float = 1.0) -> FusedGenerator | None:
        """From folded ``layers`` ``[(w, b, conv_kwargs, relu)]``; the first must map a 1x1 input (a product).
        ``cbn``: the class-conditional batch-norm tables of the hidden blocks, ``(K, 2 C)`` each; ``lam``: the
        generator's ``cond_scale``."""
        if cbn is not None and len(cbn) != sum(1 for *_, relu in layers if relu):
            return None
        w0, b0, kw0, relu0 = layers[0]
        if any(s != 0 for s in kw0["padding"]) or any(s != 0 for s in kw0["output_padding"]) or not relu0 \
                or any(s != 1 for s in kw0["dilation"]):
            return None
        sd = w0.dim() - 2
        start = tuple(int(k) for k in w0.shape[2:])
        cells = int(np.prod(start))
        # (Cin, Cout, *k) -> (Cin, *k, Cout): the product comes out channels-last
        w0 = w0.permute(0, *range(2, 2 + sd), 1).reshape(w0.shape[0], -1)
        bias0 = (b0 if b0 is not None else torch.zeros(w0.shape[1] // cells)).repeat(cells)
        if w0.shape[0] != latent + (0 if embed is None else embed.shape[1]):
            return None
        if embed is not None:
            table = (embed.detach().double() * lam @ w0[latent:].double()).float() + bias0
        else:
            table = bias0.unsqueeze(0)
        scale0, rest = None, [(*layer, None) for layer in layers[1:]]
        if cbn is not None:
            s0, t0 = cls._class_affine(None, cbn[0], lam)
            scale0 = s0.repeat(1, cells)  # (K, cells * C): the product's columns are (cell, channel), channel fastest
            table = table * scale0 + t0.repeat(1, cells)
            rest = [(w, None, kw, relu, cls._class_affine(b, cbn[k + 1], lam)) if relu else (w, b, kw, relu, None)
                    for k, (w, b, kw, relu) in enumerate(layers[1:])]
        return cls(latent, sd, table, w0[:latent].contiguous(), (*start, int(layers[0][0].shape[1])), rest, amp,
                   scale0)

    @classmethod
    def from_generator(cls, g: torch.nn.Module, amp: str = "off") -> FusedGenerator | None:
        """Fold an eval-mode generator module; ``None`` when its structure is not the DCGAN layout this knows."""
        from torch import nn

        blocks = list(getattr(g, "net", []))
        if len(blocks) < 3 or not isinstance(blocks[-1], nn.Tanh) or not hasattr(g, "latent_dim"):
            return None
        layers = []
        for blk in blocks[:-1]:
            conv = getattr(blk, "conv", None)
            if not isinstance(conv, (nn.ConvTranspose2d, nn.ConvTranspose3d)) or conv.groups != 1:
                return None
            bn, relu = None, False
            for m in getattr(blk, "adn", nn.Sequential()).children():  # eval mode: dropout is the identity
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and not (bn or relu):
                    bn = m  # a norm after the activation could not be folded into the convolution
                elif isinstance(m, nn.ReLU) and not relu:
                    relu = True
                elif not isinstance(m, (nn.modules.dropout._DropoutNd, nn.Identity)):
                    return None  # an unknown layer: let the module itself run
            stats = None if bn is None else (bn.weight, bn.bias, bn.running_mean, bn.running_var)
            w, b = cls._fold(conv.weight, conv.bias, stats, bn.eps if bn is not None else 0.0)
            kw = {"stride": conv.stride, "padding": conv.padding, "output_padding": conv.output_padding,
                  "dilation": conv.dilation}
            layers.append((w, b, kw, relu))
        embed = getattr(g, "embed", None)
        cbn = getattr(g, "cbn", None)
        return cls._build(int(g.latent_dim), None if embed is None else embed.weight, layers, amp,
                          None if cbn is None else [t.weight for t in cbn], float(getattr(g, "cond_scale", 1.0)))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], latent_dim: int, spatial_dims: int, size: int,
                        channels: int, num_classes: int, amp: str = "off", eps: float = 1e-5) -> FusedGenerator | None:
        """Fold a :class:`~medgan.models.generator.ConditionalGenerator` state dict without building the module.

        Assumes the DCGAN layout documented in :mod:`medgan.models.generator` (a first block whose kernel is
        the start grid, then 4-wide stride-2 padding-1 blocks with batch norm + ReLU, a last block without
        them) and checks every key and shape against it; anything else returns ``None`` (the caller builds
        the module, which also reports weights that do not fit). The conditioning is read from the keys: ``embed``
        (concatenation), ``cbn.k`` (class-conditional batch norm), or both. ``tests/models/test_fused.py`` checks
        that this gives exactly :meth:`from_generator`'s result.
        """
        start = 7 if size == 28 else 4
        levels = 0
        while start * 2**levels < size:
            levels += 1
        if start * 2**levels != size or spatial_dims not in (2, 3):
            return None
        conditional = num_classes > 1
        has_cbn = conditional and any(k.startswith("cbn.") for k in state)
        has_embed = conditional and ("embed.weight" in state or not has_cbn)
        expected = {"embed.weight"} if has_embed else set()
        expected |= {f"cbn.{k}.weight" for k in range(levels)} if has_cbn else set()
        for k in range(levels + 1):
            expected.add(f"net.{k}.conv.weight")
            if k < levels:
                expected |= {f"net.{k}.adn.N.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                            "num_batches_tracked")}
        if set(state) != expected:
            return None
        embed = state["embed.weight"] if has_embed else None
        if embed is not None and (embed.dim() != 2 or embed.shape[0] != num_classes):
            return None
        cbn = [state[f"cbn.{k}.weight"] for k in range(levels)] if has_cbn else None
        layers, cin = [], latent_dim + (embed.shape[1] if embed is not None else 0)
        for k in range(levels + 1):
            w = state[f"net.{k}.conv.weight"]
            kernel = start if k == 0 else 4
            if w.dim() != 2 + spatial_dims or w.shape[0] != cin or tuple(w.shape[2:]) != (kernel,) * spatial_dims:
                return None
            cout = int(w.shape[1])
            bn = None
            if k < levels:
                bn = tuple(state[f"net.{k}.adn.N.{p}"] for p in ("weight", "bias", "running_mean", "running_var"))
                if any(t.shape != (cout,) for t in bn):
                    return None
            elif cout != channels:
                return None
            wf, bf = cls._fold(w, None, bn, eps)
            stride, pad = (1, 0) if k == 0 else (2, 1)
            kw = {"stride": (stride,) * spatial_dims, "padding": (pad,) * spatial_dims,
                  "output_padding": (0,) * spatial_dims, "dilation": (1,) * spatial_dims}
            layers.append((wf, bf, kw, k < levels))
            if cbn is not None and k < levels and tuple(cbn[k].shape) != (num_classes, 2 * cout):
                return None
            cin = cout
        return cls._build(int(latent_dim), embed, layers, amp, cbn)

    def to(self, device: torch.device) -> FusedGenerator:
        self.table, self.w_z = self.table.to(device), self.w_z.to(device)
        self.scale0 = None if self.scale0 is None else self.scale0.to(device)
        self.layers = [(w.to(device), None if b is None else b.to(device), kw, r,
                        None if aff is None else tuple(t.to(device) for t in aff)) for w, b, kw, r, aff in self.layers]
        return self

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``z`` (B, latent), ``y`` (B,) -> images (B, C, *spatial) float32 in [-1, 1] (channels-last memory)."""
        import torch.nn.functional as F

        rows = self.table[y] if self.table.shape[0] > 1 else self.table.expand(len(z), -1)
        if self.scale0 is None:
            h = torch.addmm(rows, z.to(self.dtype), self.w_z).relu_()
        else:
            h = torch.addcmul(rows, z.to(self.dtype) @ self.w_z, self.scale0[y]).relu_()
        sd = self.spatial_dims
        h = h.view(len(z), *self.start_shape).permute(0, sd + 1, *range(1, sd + 1))  # channels-last strides
        conv = F.conv_transpose2d if sd == 2 else F.conv_transpose3d
        per_sample = (len(z), -1) + (1,) * sd
        for w, b, kw, relu, aff in self.layers:
            h = conv(h, w, b, **kw)
            if aff is not None:  # class-conditional batch norm: a per-class scale and shift (layout kept)
                h = h.mul_(aff[0][y].view(per_sample)).add_(aff[1][y].view(per_sample))
            if relu:
                h = h.relu_()
        return h.float().tanh_()
