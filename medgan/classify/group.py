"""Training the seeds of an arm together: ``G`` copies of a classifier as one network ("stacked" along channels).

Each run is a small network on small batches, so on a CPU (and on a GPU) per-operation overhead, not arithmetic,
dominates. ``G`` independent runs of the same architecture are merged into one network whose every layer holds
the ``G`` members side by side:

* a convolution ``C_in -> C_out`` becomes a grouped convolution ``G*C_in -> G*C_out`` with ``groups = G`` (member
  ``g`` owns channels ``[g*C, (g+1)*C)``);
* batch norm over ``C`` channels becomes batch norm over ``G*C`` channels: normalisation is per channel, so each
  member is normalised with its own batch statistics and keeps its own running statistics;
* the linear head becomes ``G`` heads applied with one ``einsum``;
* :class:`~medgan.classify.nets.SeededDropout` becomes one dropout drawing each member's mask from that member's
  generator, in member order;
* parameter-free, channel-wise layers (activations, pooling, flattening) are kept.

Each member receives its own batch (its own images in its channel slice), so members keep their own batch order,
augmentation stream and labels; the loss is the sum of the members' losses, so each member's gradient is exactly
its own, and Adam (element-wise) over the stacked parameters is exactly ``G`` independent Adams. Results equal the
one-by-one runs up to floating-point reassociation in the grouped kernels (``tests/classify/test_group.py``).
Networks with a layer that is not known to be channel-wise are not stacked (:func:`stack` returns ``None``) and
train one by one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from medgan.classify.nets import SeededDropout

#: parameter-free layers that act on each channel separately
CHANNELWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU, nn.Tanh, nn.Sigmoid, nn.Identity,
               nn.Flatten, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
               nn.modules.dropout._DropoutNd)


class GroupedLinear(nn.Module):
    """``G`` linear layers ``in -> out`` applied to ``(B, G*in)``, giving ``(B, G*out)``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.groups = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone()) \
            if layers[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = torch.einsum("bgi,goi->bgo", x.reshape(b, self.groups, -1), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(b, -1)


class StackedDropout(nn.Module):
    """The members' :class:`SeededDropout` layers as one: member ``g``'s mask from member ``g``'s generator."""

    def __init__(self, layers: list[SeededDropout]) -> None:
        super().__init__()
        self.layers = layers  # not registered as sub-modules: they hold no state but their generators
        self.p = layers[0].p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        b, g = x.shape[0], len(self.layers)
        per = x.shape[1] // g
        mask = torch.cat([m.mask((b, per, *x.shape[2:])) for m in self.layers], dim=1)
        return x * mask.to(x.device, x.dtype)


def _stack_conv(convs: list[nn.modules.conv._ConvNd]) -> nn.Module | None:
    c = convs[0]
    if c.transposed or c.padding_mode != "zeros" or isinstance(c.padding, str):
        return None
    g = len(convs)
    new = type(c)(c.in_channels * g, c.out_channels * g, c.kernel_size, stride=c.stride, padding=c.padding,
                  dilation=c.dilation, groups=c.groups * g, bias=c.bias is not None)
    with torch.no_grad():
        new.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            new.bias.copy_(torch.cat([m.bias for m in convs]))
    return new


def _stack_norm(norms: list[nn.modules.batchnorm._BatchNorm]) -> nn.Module | None:
    n = norms[0]
    if not (n.affine and n.track_running_stats):
        return None
    new = type(n)(n.num_features * len(norms), eps=n.eps, momentum=n.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name).copy_(torch.cat([getattr(m, name) for m in norms]))
        new.num_batches_tracked.copy_(n.num_batches_tracked)
    return new


def stack(models: list[nn.Module]) -> nn.Module | None:
    """One network computing all ``models`` (same architecture) side by side, or ``None`` when some layer is not
    known to be stackable. Input ``(B, G*C, *spatial)``; output ``(B, G*K)`` for ``K`` outputs per member."""
    template = copy.deepcopy(models[0])
    for name, mod in list(template.named_modules()):
        if any(True for _ in mod.children()):
            continue  # containers: their leaves are replaced
        members = [m.get_submodule(name) for m in models]
        if isinstance(mod, nn.modules.conv._ConvNd):
            new = _stack_conv(members)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            new = _stack_norm(members)
        elif isinstance(mod, nn.Linear):
            new = GroupedLinear(members)
        elif isinstance(mod, SeededDropout):
            new = StackedDropout(members)
        elif isinstance(mod, CHANNELWISE) and not list(mod.parameters()) and not list(mod.buffers()):
            if isinstance(mod, nn.modules.dropout._DropoutNd) and mod.p > 0:
                return None  # its masks would come from the global generator: not the members' own
            continue
        else:
            return None
        if new is None:
            return None
        parent_name, _, attr = name.rpartition(".")
        setattr(template.get_submodule(parent_name) if parent_name else template, attr, new)
    return template


def unstack(stacked: nn.Module, like: nn.Module, g: int, groups: int) -> dict[str, torch.Tensor]:
    """Member ``g``'s state dict (for a module shaped like ``like``) cut out of a stacked network's state."""
    src = stacked.state_dict()
    out = {}
    for key, ref in like.state_dict().items():
        t = src[key]
        if t.shape == ref.shape:  # shared counters (num_batches_tracked)
            out[key] = t.detach().clone()
        elif t.shape[0] == groups and t.shape[1:] == ref.shape:  # GroupedLinear
            out[key] = t[g].detach().clone()
        else:  # channel-stacked: member g's block along the first axis
            n = ref.shape[0]
            out[key] = t[g * n : (g + 1) * n].detach().clone()
    return out


@torch.no_grad()
def member_bytes(model: nn.Module, sample_shape: tuple[int, ...], batch_size: int) -> int:
    """Estimated training memory of one member: its activations for one batch (the output of every layer, kept
    for the backward pass and matched by its gradient) plus its weights with their gradients and Adam moments."""
    total = [0]

    def count(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was = model.training
    try:
        model.eval()
        model(torch.zeros((1, *sample_shape)))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(2 * total[0] * batch_size + 4 * params)


def group_size(model: nn.Module, sample_shape: tuple[int, ...], batch_size: int, members: int,
               budget_bytes: float) -> int:
    """How many members fit in ``budget_bytes`` (at least 1, at most ``members``)."""
    return max(1, min(members, int(budget_bytes // max(1, member_bytes(model, sample_shape, batch_size)))))
