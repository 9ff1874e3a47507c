"""The GAN training loop: ``train(cfg, out_dir)`` and the lower-level :class:`Trainer`.

High level
----------
:func:`train` loads the dataset named in ``cfg.data``, prepares it at the model size, builds the conditional
generator and discriminator, trains for ``cfg.train.steps`` steps and keeps a run directory::

    out/config.yaml                   the resolved configuration
    out/checkpoints/last.pt           self-describing checkpoint (see medgan.training.checkpoint)
    out/checkpoints/step_N.pt         every train.checkpoint_every steps
    out/samples/real.png              real training images per class (for comparison)
    out/samples/step_N.png            per-class grid from FIXED noise with the EMA generator
    out/metrics.jsonl                 one JSON line every train.log_every steps
    out/curves.png                    losses and D outputs at the end
    out/train.log                     the text log (warnings such as the mode-collapse alarm)
    out/tensorboard/                  when train.tensorboard is on

``train(cfg, out, resume=True)`` continues from ``out/checkpoints/last.pt`` exactly: on CPU, 10 steps + resume
to 20 gives bit-identical weights to 20 steps in one go (the checkpoint holds every RNG stream).

Low level (for benchmarks and notebooks, no disk I/O)
-----------------------------------------------------
::

    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.engine import Trainer

    tdata = prepare(load_dataset("breastmnist"), 28)
    trainer = Trainer(cfg, tdata)          # builds G, D, EMA-G, optimisers, RNG streams; data moves to the device
    stats = trainer.run(50)                # 50 steps -> {"steps", "seconds", "images_per_s", "loss_d", ...}
    images = trainer.sample(z, y)          # EMA generator, eval mode

One step = ``train.d_steps`` discriminator updates, then one generator update, then the EMA update. Inside:

* batches are index draws from the in-memory training tensors with a seeded ``torch.Generator`` (uniform, or
  class-balanced with weights 1/count(class) when ``train.balanced`` is on, or ``auto`` and the largest class
  is > 1.5x the smallest); generated images use the labels of the real batch, so D sees the same class mix;
* DiffAugment (``train.diffaugment``) is applied to real and generated images in both D and G passes, with its
  own generator; ADA (``adaptive``) adjusts its probability from D's outputs on real images;
* the EMA of G's weights ramps its decay up (:meth:`Trainer.ema_beta`) and copies G's batch-norm buffers;
* one-sided label smoothing (``label_smoothing``), feature matching (``feature_matching``, on D features of
  the last real batch), lazy R1 (``r1_gamma`` every ``r1_every`` D updates, scaled by ``r1_every``);
* bf16 autocast (``amp``), channels-last (``channels_last``), losses in float32; nothing is read back from the
  device between log points (losses accumulate on the device; the first non-finite step is tracked there too).

Distributed (``torchrun --nproc_per_node N -m medgan train ...``): with ``WORLD_SIZE`` > 1 the process group is
initialised (gloo on CPU, NCCL on CUDA), G and D are wrapped in DistributedDataParallel and every rank draws
from its own disjoint, class-stratified shard of the training set (the in-memory equivalent of a
``DistributedSampler``: shard = every ``world_size``-th index of a seeded per-class permutation) with its own
seeded generators. ``batch_size`` is per process. Only rank 0 writes files; checkpoints hold rank 0's RNG states,
so an exact resume is guaranteed for single-process runs.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medgan.errors import CheckpointError, OutputError, TrainingError
from medgan.training.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from medgan.config import Config
    from medgan.data.preprocess import TensorData

log = logging.getLogger("medgan.train")

#: Ratio of largest to smallest class above which ``balanced: auto`` turns class balancing on.
AUTO_BALANCE_RATIO = 1.5
#: Fixed-noise samples per class in grids and diversity checks.
GRID_PER_CLASS = 8
DIVERSITY_PER_CLASS = 32


# ------------------------------------------------------------------------------------------- helpers


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, rank, stream)``)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch's global generators (weight init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainingError(f"unknown device '{name}'; set train.device to auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"train.device is {name} but CUDA is not available here; use train.device: auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def use_balanced(mode: str, counts: list[int]) -> bool:
    """Whether batches are class-balanced: ``on``/``off``, or ``auto`` = largest class > 1.5x smallest."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    present = [c for c in counts if c > 0]
    return len(present) > 1 and max(present) > AUTO_BALANCE_RATIO * min(present)


def _rng_state_numpy() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_rng_state_numpy(s: dict[str, Any]) -> None:
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def _rng_state_python() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    return {"version": int(version), "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss}


def _set_rng_state_python(s: dict[str, Any]) -> None:
    random.setstate((s["version"], tuple(int(v) for v in s["state"].tolist()), s["gauss"]))


@dataclass
class DistInfo:
    """Where this process sits in a ``torchrun`` job (single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_pref: str = "auto") -> tuple[DistInfo, bool]:
    """Initialise ``torch.distributed`` from torchrun's environment when ``WORLD_SIZE`` > 1.

    Returns the rank info and whether this call created the process group (and so must destroy it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    import torch.distributed as dist

    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return info, False
    cuda = torch.cuda.is_available() and device_pref != "cpu"
    if cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return info, True


# ---------------------------------------------------------------------------------------- sampler


class IndexSampler:
    """Batch indices drawn on the device from in-memory labels (no DataLoader, one kernel per batch).

    Each rank keeps a disjoint, class-stratified shard of the indices. Uniform draws are with replacement;
    balanced draws weight each image by 1/count(its class) within the shard, so every class is equally likely.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, balanced: bool, generator: torch.Generator,
                 seed: int = 0, dist: DistInfo | None = None):
        dist = dist or DistInfo()
        device = labels.device
        y = labels.cpu()
        if dist.enabled:
            perm_gen = torch.Generator().manual_seed(derive_seed(seed, 7919))
            shard = []
            for c in range(num_classes):
                idx = torch.nonzero(y == c).reshape(-1)
                idx = idx[torch.randperm(len(idx), generator=perm_gen)]
                shard.append(idx[dist.rank :: dist.world_size])
            shard_idx = torch.sort(torch.cat(shard)).values
            if len(shard_idx) == 0:
                raise TrainingError(f"rank {dist.rank} got no training images; use fewer processes")
        else:
            shard_idx = torch.arange(len(y))
        self.indices = shard_idx.to(device)
        self.balanced = balanced
        self.generator = generator
        counts = torch.bincount(y[shard_idx], minlength=num_classes).float()
        if balanced:
            w = (1.0 / counts.clamp(min=1))[y[shard_idx]]
            self.weights = (w / w.sum()).to(device)
        else:
            self.weights = None

    def draw(self, n: int) -> torch.Tensor:
        if self.weights is not None:
            pick = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        else:
            pick = torch.randint(0, len(self.indices), (n,), generator=self.generator, device=self.indices.device)
        return self.indices[pick]


# ---------------------------------------------------------------------------------------- trainer


def use_channels_last(setting: bool | str, device: torch.device, amp: str, spatial_dims: int = 2) -> bool:
    """``train.channels_last`` resolved. ``auto`` follows ``pipelines/bench_train.py`` (docs/results.md): on for
    bf16 (oneDNN's native layout: +23% images/s in 2D 28x28, +10% at 64x64, +6% in 3D) and for 3D on CPU (+5% in
    float32); off for 2D float32, where NCHW was as fast at 28x28 and 5% faster at 64x64."""
    if setting == "auto":
        return amp == "bf16" or (device.type == "cpu" and spatial_dims == 3)
    return bool(setting)


def make_adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters; CPU support since torch 2.4) where this torch
    build has it, else the default implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # torch < 2.4 on CPU, or a device without a fused Adam
        return torch.optim.Adam(params, lr=lr, betas=betas)


class Trainer:
    """Models, optimisers, RNG streams and the training step, without any file I/O.

    Args:
        cfg: the resolved :class:`~medgan.config.Config` (``model`` and ``train`` sections are used).
        tdata: prepared tensors (:func:`medgan.data.preprocess.prepare`); the training split moves to the device.
        dist: rank info for DDP (default: single process).
        device: overrides ``cfg.train.device``.
    """

    def __init__(self, cfg: Config, tdata: TensorData, dist: DistInfo | None = None,
                 device: torch.device | str | None = None):
        from medgan.models import build_discriminator, build_generator
        from medgan.training.diffaugment import AdaptiveAugment
        from medgan.training.losses import get_loss

        self.cfg = cfg
        self.tdata = tdata
        self.dist = dist or DistInfo()
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        if t.batch_size < 1 or t.d_steps < 1:
            raise TrainingError("train.batch_size and train.d_steps must be at least 1")
        self.device = torch.device(device) if device is not None else resolve_device(t.device, self.dist.local_rank)
        data = tdata.data
        self.num_classes = data.num_classes
        self.class_names = list(data.class_names)
        self.spatial_dims = data.spatial_dims

        seed_everything(t.seed)
        g = build_generator(cfg.model, data.spatial_dims, data.channels, tdata.size, data.num_classes)
        d = build_discriminator(cfg.model, data.spatial_dims, data.channels, tdata.size, data.num_classes)
        self.memory_format = torch.contiguous_format
        if use_channels_last(t.channels_last, self.device, t.amp, data.spatial_dims):
            self.memory_format = torch.channels_last if data.spatial_dims == 2 else torch.channels_last_3d
        self.G = g.to(self.device, memory_format=self.memory_format)
        self.D = d.to(self.device, memory_format=self.memory_format)
        self.G.train()
        self.D.train()
        self.latent_dim = int(self.G.latent_dim)
        self.ema_decay = float(t.ema_decay)
        self.G_ema: nn.Module | None = None
        if self.ema_decay > 0:
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.G_train: nn.Module = self.G
        self.D_train: nn.Module = self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids)
            self.D_train = DDP(self.D, device_ids=ids)
        self.opt_g = make_adam(self.G.parameters(), t.lr_g, (t.beta1, t.beta2))
        self.opt_d = make_adam(self.D.parameters(), t.lr_d, (t.beta1, t.beta2))
        self.loss = get_loss(t.loss, margin=t.energy_margin)
        self.d_output = "sigmoid" if t.loss in ("bce", "minimax") else "raw"
        self.real_target = 1.0 - float(t.label_smoothing)

        da = t.diffaugment
        self.augment = bool(da.enabled and da.policy)
        self.policy = list(da.policy)
        self.ada = AdaptiveAugment(da.target, da.adjust_every, da.adjust_speed, da.p) if (
            self.augment and da.adaptive) else None
        self.aug_p = float(da.p)

        # RNG streams (per rank): batch indices, latent noise, augmentation
        r = self.dist.rank
        self.gen_idx = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 1))
        self.gen_noise = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 2))
        self.gen_aug = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 3))

        self.x = tdata.x["train"].to(self.device).contiguous(memory_format=self.memory_format)
        self.y = tdata.y["train"].to(self.device)
        self.counts = torch.bincount(tdata.y["train"], minlength=self.num_classes).tolist()
        self.balanced = use_balanced(t.balanced, self.counts)
        self.sampler = IndexSampler(self.y, self.num_classes, self.balanced, self.gen_idx, t.seed, self.dist)
        self.amp = t.amp == "bf16"
        self.step = 0
        self.d_updates = 0
        self._reset_accumulators()

    # ------------------------------------------------------------------------------------ the step

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        if not self.augment:
            return x
        from medgan.training.diffaugment import diff_augment

        p = self.ada.p if self.ada is not None else self.aug_p
        return diff_augment(x, self.policy, p=p, generator=self.gen_aug)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=self.gen_noise, device=self.device)

    def _reset_accumulators(self) -> None:
        z = torch.zeros((), device=self.device)
        self._acc = {"loss_d": z.clone(), "loss_g": z.clone(), "d_real": z.clone(), "d_fake": z.clone()}
        self._acc_n = 0
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._bad_loss = torch.zeros(2, device=self.device)

    def _d_out(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.detach().float()
        return torch.sigmoid(logits).mean() if self.d_output == "sigmoid" else logits.mean()

    def train_step(self) -> None:
        """One step: ``d_steps`` D updates, one G update, EMA update. Nothing is read back from the device.

        As in the textbook DCGAN step, the generator runs forward once per step for the last D update: its output
        is detached for D's loss and reused, with its graph, for G's loss (earlier D updates of ``d_steps > 1``
        draw their own fakes without a graph)."""
        t = self.cfg.train
        B = t.batch_size
        fm = float(t.feature_matching)
        real_feat = None
        self.D.requires_grad_(True)
        for k in range(t.d_steps):
            last = k == t.d_steps - 1
            idx = self.sampler.draw(B)
            x_real, y = self.x[idx], self.y[idx]
            z = self._noise(B)
            r1 = t.r1_gamma > 0 and self.d_updates % max(1, t.r1_every) == 0
            self.G.requires_grad_(last)
            with torch.set_grad_enabled(last), self._autocast():
                fake = self.G_train(z, y)
            xr = self._aug(x_real)
            xf = self._aug(fake.detach().float())
            if r1:
                xr = xr.detach().requires_grad_(True)
            with self._autocast():
                if fm > 0:
                    real_logits, real_feat = self.D_train(xr, y, return_features=True)
                else:
                    real_logits = self.D_train(xr, y)
                fake_logits = self.D_train(xf, y)
            loss_d = self.loss.d_loss(real_logits.float(), fake_logits.float(), self.real_target)
            if r1:
                from medgan.training.losses import r1_penalty

                loss_d = loss_d + (t.r1_gamma / 2 * max(1, t.r1_every)) * r1_penalty(real_logits, xr)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            self.d_updates += 1
            if self.ada is not None:
                self.ada.update(real_logits.detach().float())
        # generator update on the fakes of the last D update: D is used through the bare module, so DDP does not
        # expect (or sync) D gradients
        self.D.requires_grad_(False)
        with self._autocast():
            xf = self._aug(fake)
            if fm > 0:
                g_logits, fake_feat = self.D(xf, y, return_features=True)
            else:
                g_logits = self.D(xf, y)
        loss_g = self.loss.g_loss(g_logits.float())
        if fm > 0:
            from medgan.training.losses import feature_matching_loss

            loss_g = loss_g + fm * feature_matching_loss(real_feat.detach(), fake_feat)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        self._update_ema()
        # bookkeeping on the device (no sync)
        with torch.no_grad():
            ld, lg = loss_d.detach().float(), loss_g.detach().float()
            self._acc["loss_d"] += ld
            self._acc["loss_g"] += lg
            self._acc["d_real"] += self._d_out(real_logits)
            self._acc["d_fake"] += self._d_out(fake_logits)
            self._acc_n += 1
            bad = ~(torch.isfinite(ld) & torch.isfinite(lg)) & (self._bad_step < 0)
            self._bad_step = torch.where(bad, torch.full_like(self._bad_step, self.step), self._bad_step)
            self._bad_loss = torch.where(bad, torch.stack([ld, lg]), self._bad_loss)

    def ema_beta(self, step: int) -> float:
        """EMA decay used after ``step``: 0 (copy) up to ``ema_start``, then ramped up as
        ``min(ema_decay, (1 + s) / (10 + s))`` with ``s = step - ema_start``, so that early in a run the average
        does not drag in the untrained initial weights (0.9 after 80 steps, 0.99 after ~900, 0.999 after ~9000)."""
        s = step - self.cfg.train.ema_start
        if s <= 0:
            return 0.0
        return min(self.ema_decay, (1.0 + s) / (10.0 + s))

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        src_p = list(self.G.parameters())
        dst_p = list(self.G_ema.parameters())
        beta = self.ema_beta(self.step)
        if beta <= 0:
            torch._foreach_copy_(dst_p, src_p)
        else:
            torch._foreach_lerp_(dst_p, src_p, 1.0 - beta)
        bufs = list(self.G.buffers())
        if bufs:
            torch._foreach_copy_(list(self.G_ema.buffers()), bufs)

    def run(self, n: int) -> dict[str, float]:
        """Run ``n`` steps; return timing and the mean losses/D outputs over them (one device sync)."""
        self._reset_accumulators()
        t0 = time.perf_counter()
        for _ in range(n):
            self.train_step()
        self._sync()
        seconds = time.perf_counter() - t0
        stats = self.pop_stats()
        images = n * self.cfg.train.batch_size * self.cfg.train.d_steps * self.dist.world_size
        stats.update({"steps": n, "seconds": seconds, "images_per_s": images / seconds if seconds > 0 else 0.0})
        return stats

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def pop_stats(self) -> dict[str, float]:
        """Mean loss_d, loss_g, d_real, d_fake since the last call (+ ADA p); resets the accumulators."""
        n = max(1, self._acc_n)
        vals = torch.stack(list(self._acc.values())).cpu() / n
        out = {k: float(v) for k, v in zip(self._acc, vals, strict=True)}
        if self.ada is not None:
            out["ada_p"] = float(self.ada.p)
        for k in self._acc:
            self._acc[k].zero_()
        self._acc_n = 0
        return out

    def first_bad_step(self) -> tuple[int, float, float] | None:
        """``(step, loss_d, loss_g)`` of the first non-finite loss since the last reset, agreed across ranks."""
        bad = self._bad_step.clone()
        if self.dist.enabled:
            import torch.distributed as dist

            # -1 means "fine": map to a large number so MIN picks the earliest bad step of any rank
            b = torch.where(bad < 0, torch.full_like(bad, 2**62), bad)
            dist.all_reduce(b, op=dist.ReduceOp.MIN)
            bad = torch.where(b == 2**62, torch.full_like(b, -1), b)
        s = int(bad)
        if s < 0:
            return None
        ld, lg = self._bad_loss.tolist()
        return s, ld, lg

    # ------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, z: torch.Tensor, y: torch.Tensor, ema: bool = True, batch: int = 256) -> torch.Tensor:
        """Images from ``G(z, y)`` in eval mode (EMA generator when available and ``ema``), on the CPU, float32."""
        net = self.G_ema if (ema and self.G_ema is not None) else self.G
        was_training = net.training
        net.eval()
        out = []
        try:
            for i in range(0, len(z), batch):
                with self._autocast():
                    out.append(net(z[i : i + batch].to(self.device), y[i : i + batch].to(self.device)).float().cpu())
        finally:
            net.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def fixed_noise(self, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The same ``(z, y)`` on every call and every resume: ``per_class`` latent vectors per class."""
        g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, 104729))
        y = torch.arange(self.num_classes).repeat_interleave(per_class)
        z = torch.randn(len(y), self.latent_dim, generator=g)
        return z, y

    # ------------------------------------------------------------------------------------ state

    def rng_state(self) -> dict[str, Any]:
        state = {
            "torch": torch.get_rng_state(),
            "numpy": _rng_state_numpy(),
            "python": _rng_state_python(),
            "idx": self.gen_idx.get_state(),
            "noise": self.gen_noise.get_state(),
            "aug": self.gen_aug.get_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        _set_rng_state_numpy(state["numpy"])
        _set_rng_state_python(state["python"])
        self.gen_idx.set_state(state["idx"])
        self.gen_noise.set_state(state["noise"])
        self.gen_aug.set_state(state["aug"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])

    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`medgan.training.checkpoint` for the keys)."""
        return {
            "step": self.step,
            "config": self.cfg.model_dump(mode="json"),
            "data": {**self.tdata.data.meta(), "size": self.tdata.size},
            "generator": self.G.state_dict(),
            "ema_generator": self.G_ema.state_dict() if self.G_ema is not None else None,
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng_state(),
            "state": {
                "d_updates": self.d_updates,
                "balanced": self.balanced,
                "ada": self.ada.state_dict() if self.ada is not None else None,
                "world_size": self.dist.world_size,
            },
        }

    def load_payload(self, ckpt: dict[str, Any]) -> None:
        """Restore weights, optimisers, counters and RNG streams from a checkpoint dict."""
        try:
            self.G.load_state_dict(ckpt["generator"])
            self.D.load_state_dict(ckpt["discriminator"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(ckpt["ema_generator"] or ckpt["generator"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint weights do not fit this model ({first}); resume with the run's "
                                  "own config or start a new run in another --out") from None
        st = ckpt.get("state") or {}
        self.step = int(ckpt["step"])
        self.d_updates = int(st.get("d_updates", self.step * self.cfg.train.d_steps))
        if self.ada is not None and st.get("ada") is not None:
            self.ada.load_state_dict(st["ada"])
        if "rng" in ckpt and ckpt["rng"] is not None:
            self.set_rng_state(ckpt["rng"])


# ---------------------------------------------------------------------------------------- run dir


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    checkpoint: Path
    step: int
    images_per_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: Path | None = None
    seconds: float = 0.0


RUN_MARKERS = ("config.yaml", "checkpoints", "metrics.jsonl")


def check_run_dir(out: Path, resume: bool) -> Path | None:
    """Refuse to overwrite a run; with ``resume`` return the checkpoint to continue from."""
    last = out / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {last}; drop --resume to start a new run there")
        return last
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; pass a folder for the run")
    held = [m for m in RUN_MARKERS if (out / m).exists()]
    if held:
        raise OutputError(f"{out} already holds a run ({', '.join(held)}); use --resume to continue it or pass "
                          "another --out")
    return None


def check_compatible(ckpt: dict[str, Any], cfg: Config, tdata: TensorData, path: Path) -> None:
    """A checkpoint can only be resumed with the same data (classes, shape, training images) and model."""
    cd = ckpt.get("data") or {}
    here = {**tdata.data.meta(), "size": tdata.size}
    for key, what in (("class_names", "classes"), ("spatial_dims", "dims"), ("channels", "channels"),
                      ("size", "model size")):
        if cd.get(key) != here.get(key):
            raise CheckpointError(
                f"cannot resume {path}: it was trained on '{cd.get('name')}' with {what} {cd.get(key)}, this run "
                f"uses '{here['name']}' with {what} {here.get(key)}; resume with the same dataset/--size or use "
                "another --out"
            )
    if cd.get("train_fingerprint") and cd.get("train_fingerprint") != here["train_fingerprint"]:
        raise CheckpointError(
            f"cannot resume {path}: its training images differ from this run's ('{cd.get('name')}' vs "
            f"'{here['name']}', --scarce/--data-dir/split seed changed?); resume with the same data or use another --out"
        )
    old_model = (ckpt.get("config") or {}).get("model") or {}
    new_model = cfg.model.model_dump(mode="json")
    diff = [k for k in new_model if old_model.get(k) != new_model[k]]
    if diff:
        k = diff[0]
        raise CheckpointError(f"cannot resume {path}: model.{k} is {old_model.get(k)!r} there but {new_model[k]!r} "
                              "now; resume with the run's config.yaml or use another --out")


def _warn(msg: str, progress=None) -> None:
    log.warning(msg)
    if progress is not None and progress.bar is not None:
        progress.write(f"medgan: warning: {msg}")
    else:
        print(f"medgan: warning: {msg}", file=sys.stderr)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def train(cfg: Config, out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train a conditional GAN as configured and keep a run directory in ``out_dir`` (see the module docstring).

    Raises :class:`~medgan.errors.OutputError` when ``out_dir`` already holds a run (without ``resume``),
    :class:`~medgan.errors.CheckpointError` for a missing/incompatible checkpoint on resume,
    :class:`~medgan.errors.TrainingError` when the losses become non-finite (the last good checkpoint is kept).
    """
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training import monitor

    out = Path(out_dir)
    t = cfg.train
    dist, owns_group = init_distributed(t.device)
    handler = None
    try:
        ckpt_path = check_run_dir(out, resume)
        ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if t.tensorboard and dist.is_main:
            monitor.TensorBoard.check_available()
        data = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, split_seed=cfg.data.split_seed,
                            download=cfg.data.download, scarce=cfg.data.scarce)
        tdata = prepare(data, cfg.data.size)
        if ckpt is not None:
            check_compatible(ckpt, cfg, tdata, ckpt_path)
        trainer = Trainer(cfg, tdata, dist=dist)
        if ckpt is not None:
            trainer.load_payload(ckpt)
            del ckpt
        start = trainer.step

        ck_dir, sm_dir = out / "checkpoints", out / "samples"
        metrics = monitor.MetricsLog(out / "metrics.jsonl")
        z_fix, y_fix = trainer.fixed_noise(max(GRID_PER_CLASS, DIVERSITY_PER_CLASS))
        grid_sel = torch.cat([torch.arange(c * DIVERSITY_PER_CLASS, c * DIVERSITY_PER_CLASS + GRID_PER_CLASS)
                              for c in range(trainer.num_classes)])
        alarm = None
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            ck_dir.mkdir(exist_ok=True)
            sm_dir.mkdir(exist_ok=True)
            text = cfg.to_yaml()
            atomic_write_bytes(out / "config.yaml", lambda f: f.write(text.encode("utf-8")))
            handler = monitor.add_file_log(out / "train.log")
            metrics.truncate_after(start)
            log.info("%s run: dataset %s (%s, train counts %s), model size %d, device %s, balanced batches %s, "
                     "world size %d, from step %d to %d", "resumed" if resume else "new", data.name,
                     "x".join(map(str, tdata.shape)), trainer.counts, tdata.size, trainer.device,
                     trainer.balanced, dist.world_size, start, t.steps)
            if not (sm_dir / "real.png").exists():
                from medgan.viz import save_grid

                save_grid(sm_dir / "real.png", tdata.x["train"], tdata.y["train"], trainer.class_names,
                          per_class=GRID_PER_CLASS, title=f"{data.name}: real training images")
            if t.collapse_every > 0:
                g = torch.Generator().manual_seed(derive_seed(t.seed, 15485863))
                real_div = monitor.within_class_diversity(tdata.x["train"], tdata.y["train"], trainer.num_classes,
                                                          max_per_class=DIVERSITY_PER_CLASS, generator=g)
                alarm = monitor.CollapseAlarm(real_div, trainer.class_names, t.collapse_threshold)

        tb = monitor.TensorBoard(out / "tensorboard") if (t.tensorboard and dist.is_main) else None
        progress = monitor.Progress(t.steps, start, t.progress and dist.is_main)
        step = start
        last_ckpt = ck_dir / "last.pt" if start > 0 else None
        last_ckpt_step = start if start > 0 else None
        record: dict[str, Any] = {}
        train_seconds, train_images, ips = 0.0, 0, 0.0
        sample_path = None
        trainer._reset_accumulators()
        try:
            while step < t.steps:
                events = [t.steps] + [(step // e + 1) * e for e in (t.log_every, t.sample_every, t.checkpoint_every,
                                                                     t.collapse_every) if e > 0]
                nxt = min(events)
                t0 = time.perf_counter()
                for _ in range(nxt - step):
                    trainer.train_step()
                trainer._sync()
                dt = time.perf_counter() - t0
                progress.update(nxt - step)
                train_seconds += dt
                n_img = (nxt - step) * t.batch_size * t.d_steps * dist.world_size
                train_images += n_img
                step = nxt
                final = step >= t.steps
                do_log = _due(step, t.log_every) or final
                do_ckpt = _due(step, t.checkpoint_every) or final
                do_div = alarm is not None and (_due(step, t.collapse_every) or final)
                do_sample = _due(step, t.sample_every) or final
                if do_log or do_ckpt:
                    bad = trainer.first_bad_step()
                    if bad is not None:
                        s, ld, lg = bad
                        kept = (f"the last good checkpoint is {last_ckpt} (step {last_ckpt_step})" if last_ckpt
                                else "no checkpoint was written before it")
                        raise TrainingError(
                            f"losses became non-finite at step {s} (D loss {ld}, G loss {lg}); stopped, {kept}; "
                            f"lower train.lr_d/train.lr_g or try another --loss (e.g. hinge)"
                        )
                if do_log:
                    ips = n_img / dt if dt > 0 else 0.0
                    stats = trainer.pop_stats()
                    record = {"step": step, **stats, "d_output": trainer.d_output, "images_per_s": round(ips, 2),
                              "elapsed_s": round(train_seconds, 2)}
                if not dist.is_main:
                    continue
                if do_div:
                    fake = trainer.sample(z_fix, y_fix)
                    rec_div = alarm.check(monitor.within_class_diversity(fake, y_fix, trainer.num_classes,
                                                                         max_per_class=DIVERSITY_PER_CLASS))
                    if rec_div["collapse"]:
                        _warn(f"possible mode collapse at step {step}: within-class diversity of "
                              f"{', '.join(repr(c) for c in rec_div['collapsed_classes'])} is below {t.collapse_threshold} x the "
                              f"real data's (ratios {rec_div['diversity_ratio']})", progress)
                    if do_log:
                        record.update(rec_div)
                    else:
                        metrics.append({"step": step, **rec_div})
                if do_log:
                    metrics.append(record)
                    progress.show(record)
                    if tb is not None:
                        tb.add(record)
                    log.info("step %d: D %.4f G %.4f D(x) %.3f D(G(z)) %.3f %.1f img/s", step, record["loss_d"],
                             record["loss_g"], record["d_real"], record["d_fake"], ips)
                if do_sample:
                    from medgan.viz import save_grid

                    imgs = trainer.sample(z_fix[grid_sel], y_fix[grid_sel])
                    sample_path = save_grid(sm_dir / f"step_{step}.png", imgs, y_fix[grid_sel], trainer.class_names,
                                            per_class=GRID_PER_CLASS,
                                            title=f"{data.name}, step {step} ({'EMA ' if trainer.G_ema else ''}G)")
                if do_ckpt:
                    payload = trainer.checkpoint_payload()
                    if _due(step, t.checkpoint_every):
                        save_checkpoint(ck_dir / f"step_{step}.pt", payload)
                    last_ckpt = save_checkpoint(ck_dir / "last.pt", payload)
                    last_ckpt_step = step
        except KeyboardInterrupt:
            if dist.is_main and step > (last_ckpt_step or 0) and int(trainer._bad_step) < 0:
                save_checkpoint(ck_dir / "last.pt", trainer.checkpoint_payload())
                _warn(f"interrupted: saved {ck_dir / 'last.pt'} at step {trainer.step}; continue with --resume",
                      progress)
            raise
        finally:
            progress.close()
            if tb is not None:
                tb.close()
        if dist.is_main:
            monitor.plot_curves(metrics.read(), out / "curves.png", title=f"{data.name}: {t.loss} loss")
            if start >= t.steps:
                log.info("nothing to do: the checkpoint is at step %d, train.steps is %d", start, t.steps)
                last_ckpt = ck_dir / "last.pt"
        overall = train_images / train_seconds if train_seconds > 0 else 0.0
        return TrainResult(out_dir=out, checkpoint=ck_dir / "last.pt", step=step, images_per_s=overall,
                           metrics=record, samples=sample_path, seconds=train_seconds)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if owns_group:
            import torch.distributed as tdist

            # Rank 0 still writes curves and checkpoints after the loop: without a barrier the other ranks
            # tear the gloo group down under it (seen as 'terminate called without an active exception').
            try:
                tdist.barrier()
            finally:
                tdist.destroy_process_group()


__all__ = ["DistInfo", "IndexSampler", "TrainResult", "Trainer", "derive_seed", "train", "use_balanced"]
