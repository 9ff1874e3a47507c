"""The :class:`Trainer`: models, optimisers, RNG streams and one training step, without any file I/O.

For benchmarks and notebooks::

    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.training.trainer import Trainer

    tdata = prepare(load_dataset("breastmnist"), 28)
    trainer = Trainer(cfg, tdata)          # builds G, D, EMA-G, optimisers, RNG streams; data moves to the device
    stats = trainer.run(50)                # 50 steps -> {"steps", "seconds", "images_per_s", "loss_d", ...}
    images = trainer.sample(z, y)          # EMA generator, eval mode

One step = ``train.d_steps`` discriminator updates, then one generator update, then the EMA update. Inside:

* batches are index draws from the in-memory training tensors with a seeded ``torch.Generator``
  (:class:`~medgan.training.batches.IndexDraw`: uniform, or class-balanced when ``train.balanced`` is on, or
  ``auto`` and the largest class is > 1.5x the smallest); generated images use the labels of the real batch, so D
  sees the same class mix;
* ``train.augment_real: classical`` augments each real batch first (:class:`~medgan.training.batches.RealAugment`);
* DiffAugment (``train.diffaugment``) is applied to real and generated images in both D and G passes, with its
  own generator; ADA (``adaptive``) adjusts its probability from D's outputs on real images;
* the EMA of G's weights ramps its decay up (:meth:`Trainer.ema_beta`) and copies G's batch-norm buffers;
* the loss object (:mod:`medgan.training.losses`) gives D's and G's losses and says how D's outputs read;
  one-sided label smoothing (``label_smoothing``), feature matching, lazy R1 and LeCam
  (:mod:`medgan.training.regularizers`);
* two schedules over steps: transitional conditioning (:meth:`Trainer.cond_scale`: G and D unconditional up to
  ``cond_start``, the class phased in over ``cond_ramp`` steps) and instance noise on everything D sees
  (:meth:`Trainer.instance_noise_sd`); both cost nothing when off;
* bf16 autocast (``amp``), channels-last (``channels_last``), losses in float32; nothing is read back from the
  device between log points (losses accumulate on the device; the first non-finite step is tracked there too).

With DDP (:mod:`medgan.training.distributed`) G and D are wrapped in ``DistributedDataParallel``; checkpoints hold
rank 0's RNG states, so an exact resume is guaranteed for single-process runs.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from medgan.errors import CheckpointError, TrainingError
from medgan.runtime import (
    derive_seed,
    global_rng_state,
    make_adam,
    resolve_device,
    seed_everything,
    set_global_rng_state,
)
from medgan.training import schedules
from medgan.training.batches import IndexDraw, RealAugment, use_balanced
from medgan.training.distributed import DistInfo
from medgan.training.losses import get_loss
from medgan.training.regularizers import LeCam, feature_matching_loss, r1_penalty

if TYPE_CHECKING:
    from medgan.config import Config
    from medgan.data.preprocess import TensorData

def use_channels_last(setting: bool | str, device: torch.device, amp: str, spatial_dims: int = 2) -> bool:
    """``train.channels_last`` resolved. ``auto`` follows ``pipelines/bench_train.py`` (docs/results.md): on for
    bf16 (oneDNN's native layout: +23% images/s in 2D 28x28, +10% at 64x64, +6% in 3D) and for 3D on CPU (+5% in
    float32); off for 2D float32, where NCHW was as fast at 28x28 and 5% faster at 64x64."""
    if setting == "auto":
        return amp == "bf16" or (device.type == "cpu" and spatial_dims == 3)
    return bool(setting)


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

        self.cfg = cfg
        self.tdata = tdata
        self.dist = dist or DistInfo()
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        if t.batch_size < 1 or t.d_steps < 1:
            raise TrainingError("train.batch_size and train.d_steps must be at least 1")
        self.device = torch.device(device) if device is not None else \
            resolve_device(t.device, self.dist.local_rank, option="train.device")
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
        self.d_output = self.loss.d_output
        self.real_target = 1.0 - float(t.label_smoothing)
        self.lecam = LeCam(t.lecam, t.lecam_decay, self.device) if t.lecam > 0 else None
        self.cond_scheduled = t.cond_start > 0 or t.cond_ramp > 0

        da = t.diffaugment
        self.use_diffaugment = bool(da.enabled and da.policy)
        self.policy = list(da.policy)
        self.ada = AdaptiveAugment(da.target, da.adjust_every, da.adjust_speed, da.p) if (
            self.use_diffaugment and da.adaptive) else None
        self.aug_p = float(da.p)

        # RNG streams (per rank): batch indices, latent noise, augmentation
        r = self.dist.rank
        self.gen_idx = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 1))
        self.gen_noise = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 2))
        self.gen_aug = torch.Generator(self.device).manual_seed(derive_seed(t.seed, r, 3))

        self.real_aug = RealAugment(t.augment_real, t.augment_real_strength, self.spatial_dims,
                                    derive_seed(t.seed, r, 4), self.memory_format)
        self.x = tdata.x["train"].to(self.device).contiguous(memory_format=self.memory_format)
        self.y = tdata.y["train"].to(self.device)
        self.counts = torch.bincount(tdata.y["train"], minlength=self.num_classes).tolist()
        self.balanced = use_balanced(t.balanced, self.counts)
        self.batches = IndexDraw(self.y, self.num_classes, self.balanced, self.gen_idx, t.seed, self.dist)
        self.amp = t.amp == "bf16"
        self.step = 0
        self.d_updates = 0
        self.reset_accumulators()
        self._set_cond_scale(self.cond_scale(0))

    # ------------------------------------------------------------------------------------ the step

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_diffaugment:
            return x
        from medgan.training.diffaugment import diff_augment

        p = self.ada.p if self.ada is not None else self.aug_p
        return diff_augment(x, self.policy, p=p, generator=self.gen_aug)

    def _d_in(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of an image batch: DiffAugment, then instance noise (both from the augmentation stream)."""
        x = self._aug(x)
        sd = self.instance_noise_sd(self.step)
        if sd > 0:
            x = x + torch.empty_like(x).normal_(0.0, sd, generator=self.gen_aug)  # keeps the memory layout
        return x

    def instance_noise_sd(self, step: int) -> float:
        """The instance noise's standard deviation at ``step`` (:func:`~medgan.training.schedules.instance_noise_sd`
        of ``train.instance_noise`` and ``instance_noise_decay``)."""
        return schedules.instance_noise_sd(step, self.cfg.train.instance_noise, self.cfg.train.instance_noise_decay)

    def cond_scale(self, step: int) -> float:
        """The weight of the class information at ``step`` (:func:`~medgan.training.schedules.cond_scale` of
        ``train.cond_start`` and ``cond_ramp``)."""
        return schedules.cond_scale(step, self.cfg.train.cond_start, self.cfg.train.cond_ramp)

    def _set_cond_scale(self, lam: float) -> None:
        for net in (self.G, self.D, self.G_ema):
            if net is not None:
                net.cond_scale = lam

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=self.gen_noise, device=self.device)

    def reset_accumulators(self) -> None:
        """Start a new interval: zero the loss/D-output means and forget the first non-finite step."""
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
            idx = self.batches.draw(B)
            x_real, y = self.real_aug(self.x[idx]), self.y[idx]
            z = self._noise(B)
            r1 = t.r1_gamma > 0 and self.d_updates % max(1, t.r1_every) == 0
            self.G.requires_grad_(last)
            with torch.set_grad_enabled(last), self._autocast():
                fake = self.G_train(z, y)
            xr = self._d_in(x_real)
            xf = self._d_in(fake.detach().float())
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
                loss_d = loss_d + (t.r1_gamma / 2 * max(1, t.r1_every)) * r1_penalty(real_logits, xr)
            if self.lecam is not None:
                loss_d = loss_d + self.lecam(real_logits, fake_logits)
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
            xf = self._d_in(fake)
            if fm > 0:
                g_logits, fake_feat = self.D(xf, y, return_features=True)
            else:
                g_logits = self.D(xf, y)
        loss_g = self.loss.g_loss(g_logits.float())
        if fm > 0:
            loss_g = loss_g + fm * feature_matching_loss(real_feat.detach(), fake_feat)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        self._update_ema()
        if self.cond_scheduled:  # between steps, G, EMA-G and D hold the weight of the next step
            self._set_cond_scale(self.cond_scale(self.step))
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
        """EMA decay used after ``step`` (:func:`~medgan.training.schedules.ema_beta`: a copy up to ``ema_start``,
        then ramped up to ``ema_decay``)."""
        return schedules.ema_beta(step, self.ema_decay, self.cfg.train.ema_start)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        # torch's public EMA (swa_utils: one fused lerp over all parameters, the same arithmetic and speed as
        # before, so CPU runs stay bit-identical); copies are plain per-tensor copy_ (a few dozen tensors)
        src_p = list(self.G.parameters())
        dst_p = list(self.G_ema.parameters())
        beta = self.ema_beta(self.step)
        if beta <= 0:
            for d, s in zip(dst_p, src_p, strict=True):
                d.copy_(s)
        else:
            get_ema_multi_avg_fn(beta)(dst_p, src_p, None)
        for d, s in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            d.copy_(s)

    def run(self, n: int) -> dict[str, float]:
        """Run ``n`` steps; return timing and the mean losses/D outputs over them (one device sync)."""
        self.reset_accumulators()
        t0 = time.perf_counter()
        for _ in range(n):
            self.train_step()
        self.sync()
        seconds = time.perf_counter() - t0
        stats = self.pop_stats()
        images = n * self.cfg.train.batch_size * self.cfg.train.d_steps * self.dist.world_size
        stats.update({"steps": n, "seconds": seconds, "images_per_s": images / seconds if seconds > 0 else 0.0})
        return stats

    def sync(self) -> None:
        """Wait for the device's queued work (CUDA), so that a timing covers it; a no-op on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def pop_stats(self) -> dict[str, float]:
        """Mean loss_d, loss_g, d_real, d_fake since the last call (+ ADA p); resets the accumulators."""
        n = max(1, self._acc_n)
        vals = torch.stack(list(self._acc.values())).cpu() / n
        out = {k: float(v) for k, v in zip(self._acc, vals, strict=True)}
        if self.ada is not None:
            out["ada_p"] = float(self.ada.p)
        if self.cond_scheduled:
            out["cond_scale"] = self.cond_scale(self.step)
        if self.lecam is not None and self.lecam.started:
            out["lecam_ema_real"], out["lecam_ema_fake"] = self.lecam.ema.tolist()
        for k in self._acc:
            self._acc[k].zero_()
        self._acc_n = 0
        return out

    @property
    def losses_finite(self) -> bool:
        """Whether every loss on this process was finite since the last :meth:`reset_accumulators` (no
        communication between ranks: :meth:`first_bad_step` agrees across them)."""
        return int(self._bad_step) < 0

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
        state = global_rng_state()
        cuda = state.pop("cuda", None)
        state.update(idx=self.gen_idx.get_state(), noise=self.gen_noise.get_state(), aug=self.gen_aug.get_state())
        state.update(self.real_aug.rng_state())
        if cuda is not None:
            state["cuda"] = cuda
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        set_global_rng_state(state)
        self.gen_idx.set_state(state["idx"])
        self.gen_noise.set_state(state["noise"])
        self.gen_aug.set_state(state["aug"])
        self.real_aug.set_rng_state(state)

    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`medgan.training.checkpoint` for the keys)."""
        return {
            "step": self.step,
            "config": self.cfg.model_dump(mode="json"),
            "data": self.tdata.meta(),
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
                "lecam": self.lecam.state_dict() if self.lecam is not None else None,
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
        if self.lecam is not None:
            self.lecam.load_state_dict(st.get("lecam"))
        self._set_cond_scale(self.cond_scale(self.step))
        if "rng" in ckpt and ckpt["rng"] is not None:
            self.set_rng_state(ckpt["rng"])
