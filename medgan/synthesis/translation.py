"""The :class:`ImageTranslator`: a trained image translator (``medgan train --model translator``) loaded from its
checkpoint, turning real images of one class into the same images as another class.

The interface the from-real synthesis uses (``augment --from-real`` with a translator)::

    tr = ImageTranslator.from_checkpoint("runs/breast_translator")     # a run folder or a .pt file
    tr.class_names                                                      # ['malignant', 'normal, benign']
    y = tr.translate(x, y_src, y_tgt, strength=1.0)                     # x: (N, C, *spatial) in [-1, 1]

``strength`` in [0, 1] interpolates the class conditioning from the source class (0: the image as its own class,
which the identity loss trained to be the image itself) to the target class (1: the full translation). The same
inputs give the same bytes on the CPU whatever the batch size (rows are padded as the
:class:`~medgan.synthesis.sampler.Sampler` pads them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medgan.errors import MedganError
from medgan.runtime import resolve_device
from medgan.synthesis.sampler import PAD_ROWS

if TYPE_CHECKING:
    from medgan.models.translator import ConditionalTranslator
    from medgan.training.checkpoint import CheckpointChoice


class ImageTranslator:
    """A translator network with its checkpoint's record.

    Attributes: ``class_names``, ``meta`` (the checkpoint's ``data`` record: spatial dims, channels, size,
    intensity, the training set's fingerprint), ``config`` (its configuration), ``step``, ``checkpoint_path``,
    ``checkpoint_sha256``, ``checkpoint_note`` (which file of a run folder, and why), ``used_ema``, ``net``.
    """

    def __init__(self, net: ConditionalTranslator, meta: dict[str, Any], step: int = 0, config: dict | None = None,
                 checkpoint_path: str | None = None, checkpoint_sha256: str = "", used_ema: bool = False,
                 device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.meta = dict(meta)
        self.class_names: list[str] = [str(c) for c in meta["class_names"]]
        self.step = int(step)
        self.config: dict[str, Any] = dict(config or {})
        self.checkpoint_path = checkpoint_path
        self.checkpoint_sha256 = checkpoint_sha256
        self.checkpoint_note = str(checkpoint_path or "")
        self.used_ema = used_ema

    @classmethod
    def from_checkpoint(cls, path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"
                        ) -> ImageTranslator:
        """The translator of a checkpoint file or run folder (``best.pt`` when present, else ``last.pt``), loaded
        safely (weights only); its EMA weights when the run kept them and ``use_ema``."""
        from medgan.training.checkpoint import resolve_checkpoint
        from medgan.training.translator import load_translator_checkpoint

        choice = resolve_checkpoint(path)
        return cls.from_loaded(load_translator_checkpoint(choice.path), choice, use_ema, device)

    @classmethod
    def from_loaded(cls, ckpt: dict[str, Any], path: str | Path | CheckpointChoice, use_ema: bool = True,
                    device: str | torch.device = "cpu") -> ImageTranslator:
        """:meth:`from_checkpoint` for a checkpoint dict already loaded from ``path`` (hashed for provenance)."""
        from medgan.io import file_sha256
        from medgan.training.checkpoint import CheckpointChoice, resolve_checkpoint
        from medgan.training.translator import translator_from_checkpoint

        choice = path if isinstance(path, CheckpointChoice) else resolve_checkpoint(path)
        net = translator_from_checkpoint(ckpt, choice.path, use_ema)
        used_ema = bool(use_ema and ckpt.get("ema_translator"))
        tr = cls(net, ckpt["data"], step=int(ckpt.get("step", 0)), config=ckpt.get("config"),
                 checkpoint_path=str(choice.path), checkpoint_sha256=file_sha256(choice.path), used_ema=used_ema,
                 device=device)
        tr.checkpoint_note = choice.describe(tr.step)
        return tr

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one image the translator takes and returns."""
        return (int(self.meta["channels"]),) + (int(self.meta["size"]),) * int(self.meta["spatial_dims"])

    def _labels(self, y: torch.Tensor | int, n: int, what: str) -> torch.Tensor:
        y = torch.as_tensor(y).long().reshape(-1)
        if len(y) == 1 and n != 1:
            y = y.expand(n)
        if len(y) != n:
            raise MedganError(f"{what} holds {len(y)} labels for {n} images; pass one class index per image")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise MedganError(f"{what} holds class {int(y.max()) if int(y.max()) >= self.num_classes else int(y.min())}"
                              f", but the translator knows classes 0..{self.num_classes - 1} "
                              f"({', '.join(self.class_names)})")
        return y

    @torch.no_grad()
    def translate(self, x: torch.Tensor, y_src: torch.Tensor | int, y_tgt: torch.Tensor | int,
                  strength: float = 1.0, batch: int = 256) -> torch.Tensor:
        """``x`` ``(N, C, *spatial)`` in [-1, 1] (model range, channel-first), of classes ``y_src``, as classes
        ``y_tgt`` at ``strength`` in [0, 1]; returns ``(N, C, *spatial)`` float32 in [-1, 1] on the CPU. Labels
        are ``(N,)`` class indices or one index for all."""
        s = float(strength)
        if not 0.0 <= s <= 1.0:
            raise MedganError(f"translation strength {strength} is outside [0, 1]; use 0 (the source unchanged) "
                              "to 1 (the full translation)")
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else type(x).__name__
            raise MedganError(f"images of shape {got} do not fit the translator, which takes (C, *spatial) = "
                              f"{self.shape}; prepare them at the checkpoint's size and channels")
        n = len(x)
        ys, yt = self._labels(y_src, n, "y_src"), self._labels(y_tgt, n, "y_tgt")
        out = []
        for i in range(0, n, batch):
            xb, sb, tb = x[i:i + batch].float(), ys[i:i + batch], yt[i:i + batch]
            m = len(xb)
            pad = -m % PAD_ROWS
            if pad:  # a fixed multiple of rows: a sample's bytes do not depend on the batch it came in
                xb, sb, tb = (torch.cat([v, v[-1:].expand(pad, *v.shape[1:])]) for v in (xb, sb, tb))
            y = self.net.translate(xb.to(self.device), sb.to(self.device), tb.to(self.device), s)
            out.append(y[:m].float().cpu())
        return torch.cat(out) if out else torch.empty((0, *self.shape))
