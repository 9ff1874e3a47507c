"""Differentiable augmentation for the discriminator (DiffAugment), 2D and 3D, optionally adaptive (ADA-style).

With little data, D memorises the training images. DiffAugment (Zhao et al., 2020) applies the *same kind* of
random, differentiable transform to real and generated images in every D and G pass, so D cannot tell them apart
by the augmentation and G still receives gradients through it. Policies (applied in the order given):

- ``translation``: shift each sample by an integer offset of up to 1/8 of the size per axis, filling with zeros
  (``padding="zeros"``) or with the nearest edge value (``padding="edge"``);
- ``cutout``: zero a random box of half the size per axis (the box may be clipped at the border);
- ``brightness``: add a per-sample offset drawn from U(-0.5, 0.5);
- ``contrast``: scale each sample around its mean by a factor drawn from U(0.5, 1.5).

Each policy is applied to each sample independently with probability ``p`` (``p = 1``: always, as in
DiffAugment; ``p = 0``: the input is returned unchanged). Everything is vectorised over the batch (no Python
loop over samples), works for (N, C, H, W) and (N, C, D, H, W) in any memory format, and is deterministic given
a seeded ``torch.Generator`` (which must live on the tensor's device).

:class:`AdaptiveAugment` adjusts ``p`` from the discriminator's overfitting signal ``r_t = E[sign(D(x_real))]``
(Karras et al., 2020): when D is too sure about the real images (``r_t > target``), ``p`` goes up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medgan.errors import ConfigError

POLICIES = ("translation", "cutout", "brightness", "contrast")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _selected(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor | None:
    """Per-sample Bernoulli(p) mask (N,) as x's dtype, or ``None`` when every sample is augmented."""
    if p >= 1.0:
        return None
    return (torch.rand(x.shape[0], generator=generator, device=x.device) < p).to(x.dtype)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) tensor to broadcast against x (N, C, *spatial)."""
    return v.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


def _brightness(x, p, generator, padding):
    delta = torch.rand(x.shape[0], generator=generator, device=x.device) - 0.5
    sel = _selected(x, p, generator)
    delta = _per_sample(delta, x)
    return x + (delta if sel is None else delta * _per_sample(sel, x))


def _contrast(x, p, generator, padding):
    factor = torch.rand(x.shape[0], generator=generator, device=x.device) + 0.5
    sel = _selected(x, p, generator)
    if sel is not None:
        factor = 1.0 + (factor - 1.0) * sel.float()
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def _translation(x, p, generator, padding):
    n, spatial = x.shape[0], x.shape[2:]
    sel = _selected(x, p, generator)
    flat_index = None  # (N, *spatial) source index into the flattened spatial grid
    valid = None  # (N, *spatial) bool: the source lies inside the image (zero padding)
    stride = 1
    for axis in reversed(range(len(spatial))):
        length = spatial[axis]
        r = int(length * TRANSLATION_RATIO + 0.5)
        shift = torch.randint(-r, r + 1, (n,), generator=generator, device=x.device)
        if sel is not None:
            shift = shift * sel.long()
        src = torch.arange(length, device=x.device).unsqueeze(0) - shift.unsqueeze(1)  # (N, L)
        shape = [n] + [1] * len(spatial)
        shape[axis + 1] = length
        inside = ((src >= 0) & (src < length)).view(shape)
        src = (src.clamp(0, length - 1) * stride).view(shape)
        flat_index = src if flat_index is None else flat_index + src
        valid = inside if valid is None else valid & inside
        stride *= length
    flat_index = flat_index.reshape(n, -1)
    c = x.shape[1]
    if x.movedim(1, -1).is_contiguous() and not x.is_contiguous():
        # channels-last layout: gather whole pixels (N, S, C) and keep the layout
        src = x.movedim(1, -1).reshape(n, -1, c)
        out = src.gather(1, flat_index.unsqueeze(-1).expand(n, -1, c))
        out = out.view(n, *spatial, c).movedim(-1, 1)
    else:
        out = x.reshape(n, c, -1).gather(2, flat_index.unsqueeze(1).expand(n, c, -1)).view(x.shape)
    if padding == "zeros":
        out = out * valid.unsqueeze(1).to(x.dtype)
    return out


def _cutout(x, p, generator, padding):
    n, spatial = x.shape[0], x.shape[2:]
    box = None
    for axis, length in enumerate(spatial):
        size = int(length * CUTOUT_RATIO + 0.5)
        centre = torch.randint(0, length + (1 - size % 2), (n,), generator=generator, device=x.device)
        lo = (centre - size // 2).unsqueeze(1)
        pos = torch.arange(length, device=x.device).unsqueeze(0)
        shape = [n] + [1] * len(spatial)
        shape[axis + 1] = length
        inside = ((pos >= lo) & (pos < lo + size)).view(shape)
        box = inside if box is None else box & inside
    sel = _selected(x, p, generator)
    if sel is not None:
        box = box & sel.bool().view(n, *([1] * len(spatial)))
    return x * (~box).unsqueeze(1).to(x.dtype)


_OPS = {"translation": _translation, "cutout": _cutout, "brightness": _brightness, "contrast": _contrast}


def check_policy(policy: Sequence[str] | str) -> list[str]:
    """Normalise a policy (a list or a comma-separated string) and reject unknown names with a ConfigError."""
    names = [s.strip() for s in policy.split(",") if s.strip()] if isinstance(policy, str) else list(policy)
    for name in names:
        if name not in _OPS:
            raise ConfigError(
                f"unknown DiffAugment policy '{name}'; use any of: {', '.join(POLICIES)}"
            )
    return names


def diff_augment(
    x: torch.Tensor,
    policy: Sequence[str] | str,
    p: float = 1.0,
    generator: torch.Generator | None = None,
    padding: str = "zeros",
) -> torch.Tensor:
    """Augment a batch ``x`` (N, C, H, W) or (N, C, D, H, W) with the policies in ``policy``, differentiably.

    Each policy is applied to each sample with probability ``p``. ``generator`` makes the draws deterministic;
    ``padding`` ("zeros" or "edge") is the fill used by ``translation``. Returns ``x`` itself when ``p <= 0`` or
    the policy is empty.
    """
    names = check_policy(policy)
    if padding not in ("zeros", "edge"):
        raise ConfigError(f"unknown translation padding '{padding}'; use 'zeros' or 'edge'")
    if x.ndim not in (4, 5):
        raise ValueError(f"diff_augment expects (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}")
    if p <= 0.0 or not names:
        return x
    for name in names:
        x = _OPS[name](x, p, generator, padding)
    return x


class AdaptiveAugment:
    """ADA-style controller of the augmentation probability ``p``.

    Call :meth:`update` with D's logits on (augmented) real images after every D step. Every ``adjust_every``
    calls, the overfitting signal ``r_t = mean(sign(logits))`` over the accumulated samples is compared with
    ``target``: ``p`` moves up by ``speed`` when ``r_t > target`` (D is too sure about the real data), down by
    ``speed`` otherwise, clamped to [0, 1]. Accumulation stays on the logits' device, so only one host sync
    happens per adjustment. Under ``torch.distributed`` the sums are all-reduced so every rank gets the same ``p``
    (every rank must call :meth:`update` equally often).
    """

    def __init__(self, target: float = 0.6, adjust_every: int = 4, speed: float = 0.05, p: float = 0.0) -> None:
        if adjust_every < 1:
            raise ConfigError(f"adjust_every must be >= 1, got {adjust_every}; set a positive interval")
        self.target = float(target)
        self.adjust_every = int(adjust_every)
        self.speed = float(speed)
        self.p = min(max(float(p), 0.0), 1.0)
        self.rt = 0.0
        """The last measured overfitting signal ``r_t`` (for logging)."""
        self._sign_sum: torch.Tensor | float = 0.0
        self._count = 0
        self._calls = 0

    def update(self, real_logits: torch.Tensor) -> float:
        """Accumulate ``sign(real_logits)``; adjust and return ``p`` (unchanged between adjustments)."""
        self._sign_sum = self._sign_sum + torch.sign(real_logits.detach().float()).sum()
        self._count += real_logits.numel()
        self._calls += 1
        if self._calls >= self.adjust_every:
            total = torch.as_tensor(self._sign_sum, dtype=torch.float64)
            stats = torch.stack([total.to(torch.float64), torch.tensor(float(self._count), dtype=torch.float64,
                                                                       device=total.device)])
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(stats)
            sign_sum, count = stats.tolist()
            self.rt = sign_sum / max(count, 1.0)
            step = self.speed if self.rt > self.target else -self.speed
            self.p = min(max(self.p + step, 0.0), 1.0)
            self._sign_sum, self._count, self._calls = 0.0, 0, 0
        return self.p

    def state_dict(self) -> dict[str, float | int]:
        """Plain Python numbers only (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {
            "p": float(self.p),
            "target": self.target,
            "adjust_every": self.adjust_every,
            "speed": self.speed,
            "rt": float(self.rt),
            "sign_sum": float(self._sign_sum),
            "count": int(self._count),
            "calls": int(self._calls),
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Restore the controller exactly (including a partly accumulated interval)."""
        self.p = float(state["p"])
        self.target = float(state.get("target", self.target))
        self.adjust_every = int(state.get("adjust_every", self.adjust_every))
        self.speed = float(state.get("speed", self.speed))
        self.rt = float(state.get("rt", 0.0))
        self._sign_sum = float(state.get("sign_sum", 0.0))
        self._count = int(state.get("count", 0))
        self._calls = int(state.get("calls", 0))

    def __repr__(self) -> str:
        return f"AdaptiveAugment(p={self.p:.3f}, target={self.target}, adjust_every={self.adjust_every})"
