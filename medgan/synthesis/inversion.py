"""Latent inversion: real image -> the generator's latent ``z`` for a given class, in batches.

:class:`Inverter` finds, for each image ``x`` of class ``y``, a ``z`` with ``G(z, y)`` close to ``x``: Adam on
``z`` (all images of a batch at once; the loss is a sum of per-image terms, so each ``z`` moves as if alone) on the
mean squared pixel error plus a small penalty that keeps ``|z|^2 / latent_dim`` near 1 (where the generator's
training latents lie). The step size follows a cosine from ``lr`` to a tenth of it. The generator runs as a
:class:`~medgan.models.fixed_class.FixedClassGenerator` (batch norm folded, classes fixed once).

**Warm start.** A :class:`~medgan.models.encoder.LatentEncoder` trained on the generator's own samples
(``(z, y) -> x = G(z, y)``, regressing ``z``: :func:`train_encoder`) guesses ``z`` in one pass, so far fewer
optimisation steps are needed than from noise (``pipelines/bench_inversion.py`` measures both). It is trained on
first use and cached per checkpoint (its SHA-256, EMA or not, the encoder settings) in the user cache
(``$XDG_CACHE_HOME/medgan/encoders/``, default ``~/.cache``), or in ``cache_dir``. Without the encoder the start
is each image's latent of a per-sample seed (:mod:`medgan.synthesis.seeds`).

Everything is seeded: the same images, classes, generator and settings give the same ``z`` (on a given machine
and thread count). Translation into another class builds on it (:class:`LatentTranslator`; the
:class:`~medgan.synthesis.translation_curve.Translator` interface and the curve that measures translators are in
:mod:`medgan.synthesis.translation_curve`).

**Schedules** (latent translation): how a strength ``s`` spreads over the generator's conditioned stages
(:meth:`~medgan.models.generator.ConditionalGenerator.forward`'s ``mix``), coarse to fine:

* ``uniform``: every stage moves by ``s``;
* ``early``: only the coarser half of the stages (at least the first) moves by ``s``; the finer blocks keep the
  source class's conditioning;
* ``late``: only the finer half of the stages (at least the last; the complement of ``early``) moves by ``s``; the
  coarse layout keeps the source class's conditioning;
* ``ramp``: the finest stage moves first: stage ``k`` of ``L`` gets ``clip(s * L - (L - 1 - k), 0, 1)``, so
  ``s = 1`` is the full target class.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.data.classes import class_index
from medgan.errors import MedganError

if TYPE_CHECKING:
    from medgan.models.encoder import LatentEncoder
    from medgan.synthesis.sampler import Sampler

SCHEDULES = ("uniform", "early", "late", "ramp")

#: Bumped whenever the encoder's architecture or training changes (cached encoders of another version are retrained).
ENCODER_VERSION = 1


@dataclass(frozen=True)
class InversionSettings:
    """How :class:`Inverter` optimises ``z`` and trains its warm-start encoder."""

    steps: int = 100
    """Adam steps on ``z`` per batch of images."""
    lr: float = 0.1
    """Adam's step size at the start (cosine decay to a tenth)."""
    norm_penalty: float = 0.01
    """Weight of ``(|z|^2 / latent_dim - 1)^2`` beside the per-pixel squared error."""
    batch_size: int = 1024
    """Images optimised together (their ``z`` do not interact)."""
    encoder: bool = True
    """Start from a :class:`~medgan.models.encoder.LatentEncoder`'s guess (trained on first use, cached)."""
    encoder_steps: int = 400
    encoder_batch: int = 128
    encoder_lr: float = 2e-3
    encoder_width: int = 0
    """Channels of the encoder's first block (0: 32 in 2D, 16 in 3D)."""
    seed: int = 0

    def check(self) -> InversionSettings:
        for name in ("steps", "encoder_steps"):
            if int(getattr(self, name)) < 0:
                raise MedganError(f"inversion {name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "encoder_batch"):
            if int(getattr(self, name)) < 1:
                raise MedganError(f"inversion {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.encoder_lr > 0 and self.norm_penalty >= 0):
            raise MedganError("inversion lr and encoder_lr must be > 0 and norm_penalty >= 0")
        return self


@dataclass
class Inversion:
    """The result of :meth:`Inverter.invert`."""

    z: torch.Tensor
    """``(N, latent_dim)``."""
    reconstruction: torch.Tensor
    """``G(z, y)``, ``(N, C, *spatial)`` in [-1, 1]."""
    mse: torch.Tensor
    """``(N,)``: mean squared pixel error of each reconstruction (model range [-1, 1])."""
    seconds: float = 0.0

    @property
    def psnr(self) -> torch.Tensor:
        """``(N,)`` peak signal-to-noise ratio in dB (peak-to-peak 2, the model range)."""
        return 10.0 * torch.log10(4.0 / self.mse.clamp_min(1e-12))

    def summary(self) -> dict[str, float]:
        """Mean MSE, mean and median PSNR, seconds."""
        return {"n": int(len(self.mse)), "mse": float(self.mse.mean()) if len(self.mse) else float("nan"),
                "psnr_db": float(self.psnr.mean()) if len(self.mse) else float("nan"),
                "psnr_db_median": float(self.psnr.median()) if len(self.mse) else float("nan"),
                "seconds": round(self.seconds, 3)}


def _cosine(step: int, steps: int, lr: float) -> float:
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1))))


class _Adam:
    """Adam (Kingma and Ba, 2015) on a few tensors, without ``torch.optim``, whose first use imports
    ``torch._dynamo`` (seconds, and more on a busy machine) for a loop this small."""

    def __init__(self, params: Sequence[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b1, self.b2, self.eps, self.t = betas[0], betas[1], eps, 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        c1, c2 = 1.0 - self.b1**self.t, 1.0 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1.0 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-lr / c1)
            p.grad = None


def train_encoder(generator: torch.nn.Module, settings: InversionSettings, device: torch.device | str = "cpu",
                  log: Callable[[str], None] | None = None) -> LatentEncoder:
    """A :class:`~medgan.models.encoder.LatentEncoder` fitted to give back ``z`` from ``G(z, y)`` (``z`` standard
    normal, ``y`` uniform over the classes, fresh each step; mean squared latent error; Adam with cosine decay).
    Seeded by ``settings.seed``; the global random generators are left as they were."""
    from medgan.models.encoder import LatentEncoder
    from medgan.runtime import global_rng_state, set_global_rng_state

    g = generator
    if g.training:
        raise MedganError("train_encoder samples the generator in eval mode (running batch-norm statistics): call "
                          "generator.eval() first")
    width = int(settings.encoder_width) or (32 if g.spatial_dims == 2 else 16)
    saved = global_rng_state()
    try:
        torch.manual_seed(int(settings.seed) + 104729)
        enc = LatentEncoder(g.spatial_dims, g.out_channels, g.size, g.num_classes, g.latent_dim, width).to(device)
    finally:
        set_global_rng_state(saved)
    gen = torch.Generator().manual_seed(int(settings.seed) + 15485863)
    opt = _Adam(list(enc.parameters()))
    steps, b, k = int(settings.encoder_steps), int(settings.encoder_batch), max(int(g.num_classes), 1)
    if log is not None:
        log(f"training the inversion encoder ({steps} steps of {b} generated images; cached for this checkpoint)")
    enc.train()
    for step in range(steps):
        z = torch.randn(b, g.latent_dim, generator=gen)
        y = torch.randint(0, k, (b,), generator=gen)
        z, y = z.to(device), y.to(device)
        with torch.no_grad():
            x = g(z, y)
        torch.nn.functional.mse_loss(enc(x, y), z).backward()
        opt.step(_cosine(step, steps, settings.encoder_lr))
    return enc.eval()


def encoder_cache_dir() -> Path:
    """Where encoders are cached: ``$XDG_CACHE_HOME/medgan/encoders`` (default ``~/.cache/medgan/encoders``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medgan" / "encoders"


def _encoder_key(checkpoint_sha256: str, used_ema: bool, settings: InversionSettings) -> str:
    fields = {k: v for k, v in asdict(settings).items() if k.startswith("encoder") or k == "seed"}
    return json.dumps({"version": ENCODER_VERSION, "checkpoint_sha256": checkpoint_sha256, "ema": bool(used_ema),
                       **fields}, sort_keys=True)


def load_or_train_encoder(generator: torch.nn.Module, settings: InversionSettings, checkpoint_sha256: str = "",
                          used_ema: bool = True, cache_dir: str | Path | None = None,
                          device: torch.device | str = "cpu",
                          log: Callable[[str], None] | None = None) -> LatentEncoder:
    """The encoder cached for this checkpoint and settings, else one trained now (:func:`train_encoder`) and
    cached (only for a checkpoint with a known SHA-256). A cache file that cannot be read, or that holds another
    key, is neither used nor replaced."""
    from medgan.io import atomic_write
    from medgan.models.encoder import LatentEncoder

    g = generator
    key = _encoder_key(checkpoint_sha256, used_ema, settings)
    path = None
    if checkpoint_sha256:
        folder = Path(cache_dir) if cache_dir is not None else encoder_cache_dir()
        path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(cached, dict) and cached.get("key") == key:
                    width = int(cached["width"])
                    enc = LatentEncoder(g.spatial_dims, g.out_channels, g.size, g.num_classes, g.latent_dim, width)
                    enc.load_state_dict(cached["state"])
                    return enc.to(device).eval()
            except Exception:  # noqa: BLE001 - unreadable or damaged: trained again, the file is left alone
                pass
            path = None
    enc = train_encoder(g, settings, device, log)
    if path is not None:
        width = int(settings.encoder_width) or (32 if g.spatial_dims == 2 else 16)
        state = {k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: torch.save({"key": key, "width": width, "state": state}, f))
        except OSError:
            pass  # a read-only or full cache: the encoder is used without being kept
    return enc


class Inverter:
    """Batched latent inversion of a conditional generator (see the module docstring).

    Build it with :meth:`from_sampler` (a checkpoint's generator; the encoder is cached for it) or from a generator
    module in eval mode. ``class_names`` name the generator's classes; :meth:`invert` takes class indices or names.
    """

    def __init__(self, generator: torch.nn.Module, class_names: Sequence[str], settings: InversionSettings | None = None,
                 encoder: LatentEncoder | None = None, device: torch.device | str = "cpu") -> None:
        self.settings = (settings or InversionSettings()).check()
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()  # its weights are read, never changed
        self.class_names = [str(c) for c in class_names]
        if len(self.class_names) != max(int(self.generator.num_classes), 1):
            raise MedganError(f"{len(self.class_names)} class names for a generator of {self.generator.num_classes} "
                              "classes")
        self.encoder = encoder
        self.latent_dim = int(self.generator.latent_dim)

    @classmethod
    def from_sampler(cls, sampler: Sampler, settings: InversionSettings | None = None,
                     cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> Inverter:
        """The inverter of a :class:`~medgan.synthesis.sampler.Sampler`'s generator, with its cached encoder
        (trained on first use) when ``settings.encoder``."""
        s = (settings or InversionSettings()).check()
        g = sampler.generator
        enc = None
        if s.encoder:
            enc = load_or_train_encoder(g, s, sampler.checkpoint_sha256, sampler.used_ema, cache_dir,
                                        sampler.device, log)
        return cls(g, sampler.class_names, s, enc, sampler.device)

    def classes(self, y: torch.Tensor | np.ndarray | Sequence[int | str] | int | str, n: int | None = None,
                what: str = "invert into") -> torch.Tensor:
        """Class indices ``(N,)`` of ``y`` (indices or names; one value is repeated ``n`` times); a class the
        generator does not know is a one-line :class:`MedganError`."""
        if isinstance(y, (int, str, np.integer)):
            y = [y] * (1 if n is None else int(n))
        vals = y.tolist() if isinstance(y, (torch.Tensor, np.ndarray)) else list(y)
        try:
            idx = [class_index(v, self.class_names) for v in vals]
        except MedganError as e:
            raise MedganError(f"cannot {what} class: the generator does not know it ({e})") from None
        return torch.as_tensor(idx, dtype=torch.long)

    def _start(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            with torch.no_grad():
                return self.encoder(x, y).float()
        from medgan.synthesis.seeds import derive_seeds, latents_for_seeds

        seeds = derive_seeds(int(self.settings.seed), y.cpu().numpy(), ids.cpu().numpy())
        return latents_for_seeds(seeds, self.latent_dim).to(self.device)

    def invert(self, x: torch.Tensor, y: torch.Tensor | Sequence[int | str] | int | str,
               ids: torch.Tensor | np.ndarray | None = None) -> Inversion:
        """``z`` for images ``x`` ``(N, C, *spatial)`` in [-1, 1] (the generator's shape) of classes ``y``.
        ``ids`` (default ``0..N-1``) name the images for the seeded start without encoder."""
        import time

        from medgan.models.fixed_class import FixedClassGenerator

        t0 = time.perf_counter()
        x = torch.as_tensor(x, dtype=torch.float32)
        want = (int(self.generator.out_channels),) + (int(self.generator.size),) * int(self.generator.spatial_dims)
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise MedganError(f"images of shape {tuple(x.shape[1:])} cannot be inverted by a generator of shape {want} "
                              "(channels, *spatial); prepare them at the generator's size and channels")
        y = self.classes(y, len(x))
        if len(y) != len(x):
            raise MedganError(f"{len(x)} images but {len(y)} classes")
        ids = torch.arange(len(x)) if ids is None else torch.as_tensor(np.asarray(ids), dtype=torch.long)
        s = self.settings
        zs, recs, errs = [], [], []
        for i in range(0, len(x), int(s.batch_size)):
            xb = x[i:i + s.batch_size].to(self.device)
            yb = y[i:i + s.batch_size].to(self.device)
            f = FixedClassGenerator(self.generator, yb)
            z = self._start(xb, yb, ids[i:i + s.batch_size]).clone().requires_grad_(True)
            opt = _Adam([z])
            for step in range(int(s.steps)):
                err = (f(z) - xb).pow(2).flatten(1).mean(1)
                pen = (z.pow(2).mean(1) - 1.0).pow(2)
                (err + s.norm_penalty * pen).sum().backward()
                opt.step(_cosine(step, int(s.steps), s.lr))
            with torch.no_grad():
                z = z.detach()
                rec = f(z)
                zs.append(z.cpu())
                recs.append(rec.cpu())
                errs.append((rec - xb).pow(2).flatten(1).mean(1).cpu())
        if not zs:
            return Inversion(torch.zeros(0, self.latent_dim), torch.zeros(0, *want), torch.zeros(0))
        return Inversion(torch.cat(zs), torch.cat(recs), torch.cat(errs), time.perf_counter() - t0)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None,
                 mix: torch.Tensor | float | None = None) -> torch.Tensor:
        """``G(z, y)``, or conditioned on a mix of ``y`` and ``target`` (``mix``: see
        :meth:`~medgan.models.generator.ConditionalGenerator.forward`), CPU, in [-1, 1]."""
        from medgan.models.fixed_class import FixedClassGenerator

        out = []
        bs = int(self.settings.batch_size)
        for i in range(0, len(z), bs):
            sl = slice(i, i + bs)
            m = mix[sl] if isinstance(mix, torch.Tensor) and mix.dim() == 2 else mix
            f = FixedClassGenerator(self.generator, y[sl].to(self.device),
                                    None if target is None else target[sl].to(self.device), m)
            out.append(f(z[sl].to(self.device)).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def info(self) -> dict[str, Any]:
        """The settings (for records such as ``augment.json``)."""
        return {**asdict(self.settings), "encoder_used": self.encoder is not None}


def mix_weights(strength: float, levels: int, schedule: str = "uniform") -> torch.Tensor:
    """The per-stage weights ``(levels,)`` of a strength under a schedule (module docstring)."""
    from medgan.synthesis.translation_curve import check_strength

    s = check_strength(strength, "strength")
    if schedule not in SCHEDULES:
        raise MedganError(f"unknown translation schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    k = torch.arange(levels, dtype=torch.float32)
    if schedule == "uniform" or levels == 1:
        return torch.full((levels,), s)
    if schedule in ("early", "late"):
        coarse = levels - max(1, levels // 2)
        moves = k < coarse if schedule == "early" else k >= coarse
        return torch.where(moves, torch.tensor(s), torch.tensor(0.0))
    return (s * levels - (levels - 1 - k)).clamp(0.0, 1.0)


class LatentTranslator:
    """A :class:`~medgan.synthesis.translation_curve.Translator` by latent inversion: ``x`` of class ``y_src`` is
    inverted (:meth:`Inverter.invert`, with ``y_src``), then generated from its ``z`` with the class conditioning
    moved from ``y_src`` towards ``y_tgt`` by ``strength`` under a ``schedule``
    (:func:`mix_weights`).

    ``residual`` (``r`` in [0, 1]; ``True`` is 1): add that share of what the generator could not reconstruct back:
    ``G_s(z) + r * (x - G_0(z))`` (clipped to [-1, 1]); with ``r = 1`` strength 0 gives ``x`` itself and the
    translation only adds the class change. The last inversion is kept, so a curve over strengths inverts once.
    """

    def __init__(self, inverter: Inverter, schedule: str = "uniform", residual: float = 0.0) -> None:
        if schedule not in SCHEDULES:
            raise MedganError(f"unknown translation schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
        self.inverter = inverter
        self.class_names = inverter.class_names
        self.schedule = schedule
        self.residual = float(residual)
        if not 0.0 <= self.residual <= 1.0:
            raise MedganError(f"the residual share must lie in [0, 1], got {residual}")
        self._memo: tuple[str, Inversion] | None = None

    def inversion(self, x: torch.Tensor, y_src: torch.Tensor) -> Inversion:
        """The inversion of ``x`` with classes ``y_src`` (kept for the next call with the same images)."""
        h = hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes())
        h.update(y_src.detach().cpu().numpy().astype(np.int64).tobytes())
        if self._memo is None or self._memo[0] != h.hexdigest():
            self._memo = (h.hexdigest(), self.inverter.invert(x, y_src))
        return self._memo[1]

    def translate(self, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, strength: float) -> torch.Tensor:
        from medgan.synthesis.translation_curve import check_strength

        s = check_strength(strength, "strength")
        y_src = self.inverter.classes(y_src, len(x), "translate from")
        y_tgt = self.inverter.classes(y_tgt, len(x), "translate into")
        inv = self.inversion(x, y_src)
        w = mix_weights(s, int(self.inverter.generator.mix_levels), self.schedule)
        out = self.inverter.generate(inv.z, y_src, y_tgt, w)
        if self.residual == 1.0:  # exactly x at strength 0
            out = (x.float().cpu() + (out - inv.reconstruction)).clamp_(-1.0, 1.0)
        elif self.residual > 0.0:
            out = (out + self.residual * (x.float().cpu() - inv.reconstruction)).clamp_(-1.0, 1.0)
        return out

    def info(self) -> dict[str, Any]:
        return {"kind": "latent", "schedule": self.schedule, "residual": self.residual,
                "inversion": self.inverter.info()}
