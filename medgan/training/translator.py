"""Training the image-conditioned translator (``model.kind: translator``): :class:`TranslatorTrainer` and the
hooks of its run.

``medgan train --model translator`` (or ``model.kind: translator`` in the config) runs the same run machinery as
the GAN (:func:`medgan.training.run.train`: the run folder and its ownership rule, the lock, ``--resume``, the
metrics, curves, checkpoints, the non-finite guard) with this trainer in place of the GAN's, on the same real
training split (after ``--scarce``; validation and test are never seen). One step, StarGAN-style (Choi et al.
2018):

* a class-balanced batch of real sources ``x`` of classes ``s`` (every class equally likely), and for each a
  target class ``t`` drawn uniformly among the other classes (so targets are class-balanced too);
* the discriminator (:class:`~medgan.models.translator.TranslatorDiscriminator`) learns real vs translated
  (``train.loss`` on its patch logits, optional R1 ``train.r1_gamma``) and to classify real images by their class
  (cross-entropy, ``translator.class_weight``);
* the translator learns to fool it (``train.loss``), to have its translation ``T(x, t)`` classified as ``t``
  (``class_weight``), to return ``x`` when translated back, ``|T(T(x, t), s) - x|`` (``cycle_weight``), to change
  nothing when asked for the image's own class, ``|T(x, s) - x|`` (``identity_weight``), and optionally to stay
  near its source, ``|T(x, t) - x|`` (``keep_weight``).

D sees real and translated images through DiffAugment (``train.diffaugment``, ADA when ``adaptive``), with its own
seeded generator. The translator's weights have an EMA (``train.ema_decay``) that the checkpoint's users translate
with. The judge of the result, the teacher (:mod:`medgan.classify.teacher`), is never a training signal. On CPU one
seed gives bit-identical checkpoints, and ``--resume`` continues exactly (every RNG stream is in the checkpoint).

Checkpoint keys (the format of :mod:`medgan.training.checkpoint`, ``config.model.kind: translator``): ``step``,
``config``, ``data`` (with the training set's fingerprint), ``translator``, ``ema_translator`` (or ``None``),
``discriminator``, ``opt_g``, ``opt_d``, ``rng``, ``state``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
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
from medgan.training import hooks, schedules
from medgan.training.batches import IndexDraw

if TYPE_CHECKING:
    from pathlib import Path

    from medgan.config import Config
    from medgan.data.preprocess import TensorData
    from medgan.models.translator import ConditionalTranslator
    from medgan.training.distributed import DistInfo

#: The statistics averaged between log points (besides the GAN's ``loss_d``, ``loss_g``, ``d_real``, ``d_fake``).
STATS = ("loss_d", "loss_g", "d_real", "d_fake", "d_class", "g_class", "cycle", "identity", "keep", "d_class_acc",
         "g_class_acc")
#: Sane bounds of a translator checkpoint's record, checked before its network is built.
MAX_TRANSLATOR = {"base_channels": 1 << 12, "res_blocks": 64}


def build_translator(cfg: Config, spatial_dims: int, channels: int, size: int, num_classes: int):
    """The :class:`~medgan.models.translator.ConditionalTranslator` of the ``translator`` config section."""
    from medgan.models.translator import ConditionalTranslator

    tc = cfg.translator
    return ConditionalTranslator(spatial_dims, channels, size, num_classes, tc.base_channels, tc.res_blocks)


class TranslatorTrainer:
    """The translator, its discriminator, optimisers, RNG streams and one training step (module docstring); the
    interface the run's hooks use is the GAN :class:`~medgan.training.trainer.Trainer`'s."""

    def __init__(self, cfg: Config, tdata: TensorData, dist: DistInfo | None = None,
                 device: torch.device | str | None = None) -> None:
        from medgan.models.translator import TranslatorDiscriminator
        from medgan.training.diffaugment import AdaptiveAugment
        from medgan.training.distributed import DistInfo
        from medgan.training.losses import get_loss

        self.cfg, self.tdata = cfg, tdata
        self.dist = dist or DistInfo()
        if self.dist.enabled:
            raise TrainingError("the translator trains in one process; run medgan train without torchrun")
        t, tc = cfg.train, cfg.translator
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = torch.device(device) if device is not None else resolve_device(t.device, option="train.device")
        data = tdata.data
        self.num_classes = data.num_classes
        self.class_names = list(data.class_names)
        self.spatial_dims = data.spatial_dims
        self.counts = torch.bincount(tdata.y["train"], minlength=self.num_classes).tolist()
        missing = [self.class_names[c] for c, n in enumerate(self.counts) if n == 0]
        if missing:
            raise TrainingError(f"the training split has no images of {', '.join(map(repr, missing))}; a translator "
                                "learns every class from real images: check --scarce and the dataset")
        seed_everything(t.seed)
        self.T = build_translator(cfg, data.spatial_dims, data.channels, tdata.size, self.num_classes).to(self.device)
        self.D = TranslatorDiscriminator(data.spatial_dims, data.channels, tdata.size, self.num_classes,
                                         tc.base_channels).to(self.device)
        self.T.train()
        self.D.train()
        self.ema_decay = float(t.ema_decay)
        self.T_ema = copy.deepcopy(self.T).eval().requires_grad_(False) if self.ema_decay > 0 else None
        self.G_ema = self.T_ema  # the run's hooks ask for the EMA network by the GAN's name
        self.opt_g = make_adam(self.T.parameters(), t.lr_g, (t.beta1, t.beta2))
        self.opt_d = make_adam(self.D.parameters(), t.lr_d, (t.beta1, t.beta2))
        self.loss = get_loss(t.loss, margin=t.energy_margin)
        self.d_output = self.loss.d_output
        self.real_target = 1.0 - float(t.label_smoothing)
        da = t.diffaugment
        self.use_diffaugment = bool(da.enabled and da.policy)
        self.ada = AdaptiveAugment(da.target, da.adjust_every, da.adjust_speed, da.p) if (
            self.use_diffaugment and da.adaptive) else None
        self.gen_idx = torch.Generator(self.device).manual_seed(derive_seed(t.seed, 0, 1))
        self.gen_tgt = torch.Generator(self.device).manual_seed(derive_seed(t.seed, 0, 2))
        self.gen_aug = torch.Generator(self.device).manual_seed(derive_seed(t.seed, 0, 3))
        self.x = tdata.x["train"].to(self.device)
        self.y = tdata.y["train"].to(self.device)
        self.balanced = True  # sources every class equally often; targets uniform among the other classes
        self.batches = IndexDraw(self.y, self.num_classes, True, self.gen_idx, t.seed, self.dist)
        self.step = 0
        self.d_updates = 0
        self.reset_accumulators()

    # ------------------------------------------------------------------------------------ the step

    def _d_in(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_diffaugment:
            return x
        from medgan.training.diffaugment import diff_augment

        p = self.ada.p if self.ada is not None else float(self.cfg.train.diffaugment.p)
        return diff_augment(x, self.cfg.train.diffaugment.policy, p=p, generator=self.gen_aug)

    def _code(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()

    def train_step(self) -> None:
        """One D update, one translator update, the EMA update; nothing is read back from the device."""
        t, tc = self.cfg.train, self.cfg.translator
        k = self.num_classes
        idx = self.batches.draw(t.batch_size)
        x, ys = self.x[idx], self.y[idx]
        yt = (ys + torch.randint(1, k, ys.shape, generator=self.gen_tgt, device=self.device)) % k
        code_s, code_t = self._code(ys), self._code(yt)
        self.T.requires_grad_(True)
        fake = self.T(x, code_t)
        # discriminator: real vs translated, and the class of real images
        self.D.requires_grad_(True)
        r1 = t.r1_gamma > 0 and self.d_updates % max(1, t.r1_every) == 0
        xr, xf = self._d_in(x), self._d_in(fake.detach())
        if r1:
            xr = xr.detach().requires_grad_(True)
        adv_r, cls_r = self.D(xr)
        adv_f, _ = self.D(xf)
        d_class = F.cross_entropy(cls_r.float(), ys)
        loss_d = self.loss.d_loss(adv_r.float(), adv_f.float(), self.real_target) + tc.class_weight * d_class
        if r1:
            from medgan.training.regularizers import r1_penalty

            loss_d = loss_d + (t.r1_gamma / 2 * max(1, t.r1_every)) * r1_penalty(adv_r.flatten(1).mean(1), xr)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self.d_updates += 1
        if self.ada is not None:
            self.ada.update(adv_r.detach().flatten(1).mean(1))
        # translator: fool D, be classified as the target, come back, keep what needs no change
        self.D.requires_grad_(False)
        adv_g, cls_g = self.D(self._d_in(fake))
        g_class = F.cross_entropy(cls_g.float(), yt)
        cycle = (self.T(fake, code_s) - x).abs().mean()
        identity = (self.T(x, code_s) - x).abs().mean() if tc.identity_weight > 0 else x.new_zeros(())
        keep = (fake - x).abs().mean()
        loss_g = (self.loss.g_loss(adv_g.float()) + tc.class_weight * g_class + tc.cycle_weight * cycle
                  + tc.identity_weight * identity + tc.keep_weight * keep)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        self._update_ema()
        with torch.no_grad():
            vals = {"loss_d": loss_d, "loss_g": loss_g, "d_real": self._d_out(adv_r), "d_fake": self._d_out(adv_f),
                    "d_class": d_class, "g_class": g_class, "cycle": cycle, "identity": identity, "keep": keep,
                    "d_class_acc": (cls_r.argmax(1) == ys).float().mean(),
                    "g_class_acc": (cls_g.argmax(1) == yt).float().mean()}
            for key, v in vals.items():
                self._acc[key] += v.detach().float()
            self._acc_n += 1
            ld, lg = vals["loss_d"].detach().float(), vals["loss_g"].detach().float()
            bad = ~(torch.isfinite(ld) & torch.isfinite(lg)) & (self._bad_step < 0)
            self._bad_step = torch.where(bad, torch.full_like(self._bad_step, self.step), self._bad_step)
            self._bad_loss = torch.where(bad, torch.stack([ld, lg]), self._bad_loss)

    def _d_out(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.detach().float()
        return torch.sigmoid(logits).mean() if self.d_output == "sigmoid" else logits.mean()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.T_ema is None:
            return
        src, dst = list(self.T.parameters()), list(self.T_ema.parameters())
        beta = schedules.ema_beta(self.step, self.ema_decay, self.cfg.train.ema_start)
        if beta <= 0:
            for d, s in zip(dst, src, strict=True):
                d.copy_(s)
        else:
            get_ema_multi_avg_fn(beta)(dst, src, None)

    # ------------------------------------------------------------------------------------ bookkeeping

    def reset_accumulators(self) -> None:
        z = torch.zeros((), device=self.device)
        self._acc = {k: z.clone() for k in STATS}
        self._acc_n = 0
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._bad_loss = torch.zeros(2, device=self.device)

    def pop_stats(self) -> dict[str, float]:
        """The means of :data:`STATS` since the last call (+ ADA p); resets the accumulators."""
        n = max(1, self._acc_n)
        vals = torch.stack(list(self._acc.values())).cpu() / n
        out = {k: float(v) for k, v in zip(self._acc, vals, strict=True)}
        if self.ada is not None:
            out["ada_p"] = float(self.ada.p)
        for v in self._acc.values():
            v.zero_()
        self._acc_n = 0
        return out

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def losses_finite(self) -> bool:
        return int(self._bad_step) < 0

    def first_bad_step(self) -> tuple[int, float, float] | None:
        s = int(self._bad_step)
        if s < 0:
            return None
        ld, lg = self._bad_loss.tolist()
        return s, ld, lg

    # ------------------------------------------------------------------------------------ translating

    @torch.no_grad()
    def translate(self, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, strength: float = 1.0,
                  ema: bool = True) -> torch.Tensor:
        """``x`` (classes ``y_src``) as classes ``y_tgt`` at ``strength`` (EMA weights when kept), on the CPU."""
        net = self.T_ema if (ema and self.T_ema is not None) else self.T
        return net.translate(x.to(self.device), y_src.to(self.device), y_tgt.to(self.device), strength).float().cpu()

    def fixed_noise(self, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed inputs of the run's grids (the GAN's fixed noise): ``per_class`` real training sources per
        class, the same on every call and every resume (a seeded order of each class's images, repeated when a
        class has fewer)."""
        g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, 104729))
        y_all = self.tdata.y["train"]
        picks = []
        for c in range(self.num_classes):
            idx = torch.nonzero(y_all == c).reshape(-1)
            idx = idx[torch.randperm(len(idx), generator=g)]
            picks.append(idx.repeat(-(-per_class // len(idx)))[:per_class])
        sel = torch.cat(picks)
        return self.tdata.x["train"][sel].clone(), y_all[sel].clone()

    # ------------------------------------------------------------------------------------ state

    def rng_state(self) -> dict[str, Any]:
        state = global_rng_state()
        state.pop("cuda", None)
        state.update(idx=self.gen_idx.get_state(), tgt=self.gen_tgt.get_state(), aug=self.gen_aug.get_state())
        return state

    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint dict (module docstring)."""
        return {
            "step": self.step,
            "config": self.cfg.model_dump(mode="json"),
            "data": self.tdata.meta(),
            "translator": self.T.state_dict(),
            "ema_translator": self.T_ema.state_dict() if self.T_ema is not None else None,
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng_state(),
            "state": {"d_updates": self.d_updates, "balanced": True,
                      "ada": self.ada.state_dict() if self.ada is not None else None, "world_size": 1},
        }

    def load_payload(self, ckpt: dict[str, Any]) -> None:
        """Restore weights, optimisers, counters and RNG streams (``--resume``); the ``translator`` section must be
        the checkpoint's."""
        old = (ckpt.get("config") or {}).get("translator") or {}
        new = self.cfg.translator.model_dump(mode="json")
        diff = [k for k in new if old.get(k) != new[k]]
        if diff:
            raise CheckpointError(f"cannot resume: translator.{diff[0]} is {old.get(diff[0])!r} in the checkpoint but "
                                  f"{new[diff[0]]!r} now; resume with the run's config.yaml or use another --out")
        try:
            self.T.load_state_dict(ckpt["translator"])
            self.D.load_state_dict(ckpt["discriminator"])
            if self.T_ema is not None:
                self.T_ema.load_state_dict(ckpt.get("ema_translator") or ckpt["translator"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint weights do not fit this translator ({first}); resume with the run's "
                                  "own config or start a new run in another --out") from None
        st = ckpt.get("state") or {}
        self.step = int(ckpt["step"])
        self.d_updates = int(st.get("d_updates", self.step))
        if self.ada is not None and st.get("ada") is not None:
            self.ada.load_state_dict(st["ada"])
        rng = ckpt.get("rng")
        if rng is not None:
            set_global_rng_state(rng)
            self.gen_idx.set_state(rng["idx"])
            self.gen_tgt.set_state(rng["tgt"])
            self.gen_aug.set_state(rng["aug"])


# ---------------------------------------------------------------------------------------------- the run's hooks


class TranslationGrid(hooks.Hook):
    """``samples/step_N.png``: fixed real training sources of each class (a row) and their translations into every
    other class (a row each, EMA weights)."""

    def __call__(self, state: hooks.RunState) -> None:
        from medgan.viz import save_grid

        tr = state.trainer
        n, per = tr.num_classes, hooks.GRID_PER_CLASS
        names = tr.class_names
        imgs, rows, titles = [], [], []
        for c in range(n):
            src = state.z_fix[state.y_fix == c][:per]
            y_src = torch.full((len(src),), c, dtype=torch.long)
            imgs.append(src)
            rows.append(torch.full((len(src),), len(titles)))
            titles.append(f"{names[c]}: real")
            for k in range(n):
                if k != c:
                    imgs.append(tr.translate(src, y_src, torch.full_like(y_src, k)))
                    rows.append(torch.full((len(src),), len(titles)))
                    titles.append(f"-> {names[k]}")
        state.sample_path = save_grid(state.out / "samples" / f"step_{state.step}.png", torch.cat(imgs),
                                      torch.cat(rows), titles, per_class=per, indexed=False,
                                      title=f"{state.title}, step {state.step}: real sources and their translations")


def translator_hooks(cfg: Config) -> list[hooks.Hook]:
    """The hooks of a translator run, in order (the GAN's, without collapse alarm and quality tracking)."""
    t = cfg.train
    return [hooks.NonFiniteGuard(t.log_every, t.checkpoint_every), hooks.CollectStats(t.log_every),
            hooks.WriteLog(t.log_every), hooks.Curves(t.log_every), TranslationGrid(t.sample_every),
            hooks.SaveCheckpoint(t.checkpoint_every)]


# ---------------------------------------------------------------------------------------------- checkpoints


def load_translator_checkpoint(path: str | Path) -> dict[str, Any]:
    """A translator checkpoint, loaded safely (:func:`~medgan.training.checkpoint.load_checkpoint`: weights only),
    its record within sane bounds."""
    from medgan.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, kind="translator")
    rec = ckpt["config"].get("translator")
    if not isinstance(rec, dict):
        raise CheckpointError(f"{path}: the checkpoint lacks its 'translator' settings; pass one written by "
                              "'medgan train --model translator'")
    for key, top in MAX_TRANSLATOR.items():
        v = rec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            raise CheckpointError(f"{path}: translator.{key} is {v!r}, outside 0..{top}; the checkpoint is "
                                  "inconsistent or crafted: pass one written by 'medgan train --model translator'")
    return ckpt


def translator_from_checkpoint(ckpt: dict[str, Any], path: str | Path, use_ema: bool = True
                               ) -> ConditionalTranslator:
    """The translator network of a loaded checkpoint (its EMA weights when present and ``use_ema``), in eval
    mode on the CPU."""
    from medgan.config import TranslatorConfig
    from medgan.models.translator import ConditionalTranslator
    from medgan.training.checkpoint import check_finite_weights

    meta = ckpt["data"]
    tc = TranslatorConfig.model_validate(ckpt["config"]["translator"])
    key = "ema_translator" if use_ema and ckpt.get("ema_translator") else "translator"
    check_finite_weights(ckpt[key], key.replace("_", " "), path)
    try:
        net = ConditionalTranslator(int(meta["spatial_dims"]), int(meta["channels"]), int(meta["size"]),
                                    len(meta["class_names"]), tc.base_channels, tc.res_blocks)
        net.load_state_dict(ckpt[key])
    except (KeyError, TypeError, RuntimeError, ValueError, TrainingError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: the translator weights do not fit its record ({first}); pass a checkpoint "
                              "as 'medgan train --model translator' wrote it") from None
    return net.eval().requires_grad_(False)
