"""The :class:`Sampler`: a generator loaded from a checkpoint, drawing labelled samples with one reproducible
seed per sample (:mod:`medgan.synthesis.seeds`), through the folded :class:`~medgan.models.fused.FusedGenerator`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from medgan.data.classes import class_index, class_indices
from medgan.errors import CheckpointError, MedganError
from medgan.models.fused import AMP_MODES, FusedGenerator
from medgan.runtime import ordered_map, resolve_device
from medgan.synthesis.seeds import derive_pair_seeds, derive_seeds, latents_for_seeds

if TYPE_CHECKING:
    from medgan.training.checkpoint import CheckpointChoice

#: Default bound on how often a sample flagged by a ``filter_fn`` is redrawn before it is kept anyway.
MAX_REDRAWS = 8


#: Generator batches are padded to a multiple of this many rows, so that no sample is ever computed in a tiny
#: batch (BLAS/oneDNN pick other kernels, hence other rounding, for a handful of rows): a sample's bytes do not
#: depend on the batch size it was generated in.
PAD_ROWS = 16


class SampleBatch(NamedTuple):
    """One generated batch: images, labels, the per-sample seeds and bookkeeping for writers."""

    x: torch.Tensor | np.ndarray
    """``(B, C, *spatial)``: float in [-1, 1] (``out="model"``) or numpy in the source range and dtype."""
    y: torch.Tensor
    """``(B,)`` long class indices."""
    seeds: np.ndarray
    """``(B,)`` int64 seed of each sample (after redraws): :func:`latents_for_seeds` regenerates it."""
    index: np.ndarray
    """``(B,)`` int64 index of each sample within its class (0-based)."""
    redraws: np.ndarray
    """``(B,)`` int64 number of times a ``filter_fn`` made the sample be redrawn."""
    pair: np.ndarray | None = None
    """``(B,)`` int64 pair id of each sample when drawn as counterfactual pairs (``pairs=True``), else ``None``."""


@dataclass
class _Plan:
    """Which (class, index) pairs to generate, in order: class by class; or, for counterfactual pairs, pair by pair
    (every class of pair ``p`` in a row; the index within each class is ``p``)."""

    classes: np.ndarray
    indices: np.ndarray
    pairs: bool = False
    group: int = 1
    """Samples per pair (the classes of a pair); 1 without pairs."""

    def __len__(self) -> int:
        return len(self.classes)


class Sampler:
    """A generator loaded from a medgan checkpoint, in eval mode, ready to sample labelled images.

    Attributes: ``meta`` (the checkpoint's ``data`` record), ``config`` (its configuration), ``class_names``, ``step`` (the generator's
    training step), ``checkpoint_sha256``, ``checkpoint_path``, ``generator``, ``used_ema`` and ``amp``.

    Sampling runs a :class:`FusedGenerator` (batch norm folded, channels-last, optionally bfloat16 with
    ``amp="bf16"``) built from ``generator``; ``fuse=False`` runs the module itself (fp32 only).
    :meth:`from_checkpoint` folds the checkpoint's weights directly and builds the module (importing MONAI)
    only when ``generator`` is first accessed.
    """

    def __init__(self, generator: torch.nn.Module | Callable[[], torch.nn.Module], meta: dict[str, Any],
                 step: int = 0, checkpoint_sha256: str = "", checkpoint_path: str | None = None,
                 used_ema: bool = False, device: str | torch.device = "cpu", amp: str = "off", fuse: bool = True,
                 fused: FusedGenerator | None = None) -> None:
        """``generator``: the module, or a function that builds it on first use (then pass ``fused``)."""
        amp = str(amp).lower()
        if amp not in AMP_MODES:
            raise MedganError(f"unknown amp mode {amp!r}; use one of {', '.join(AMP_MODES)}")
        self.device = resolve_device(device)
        self.amp = amp
        self._module: torch.nn.Module | None = None
        self._build = generator
        if isinstance(generator, torch.nn.Module) or fused is None:
            fused = FusedGenerator.from_generator(self.generator, amp) if fuse else None
        self._fused = fused.to(self.device) if fused is not None else None
        if self._fused is None and amp != "off":
            raise MedganError(f"amp={amp!r} needs the fused generator, which this model's layout does not allow; "
                              "use amp off")
        self.meta = dict(meta)
        self.class_names: list[str] = [str(c) for c in meta["class_names"]]
        self.step = int(step)
        self.checkpoint_sha256 = checkpoint_sha256
        self.checkpoint_path = checkpoint_path
        self.used_ema = used_ema
        self.latent_dim = int(self._fused.latent_dim if self._fused is not None else self.generator.latent_dim)
        self.config: dict[str, Any] = {}
        """The checkpoint's resolved configuration (``{}`` for a sampler built from a module)."""
        self.checkpoint_note = str(checkpoint_path or "")
        """Which checkpoint this is and why: ``PATH (the run's best checkpoint by tracked quality; ..., step N)``
        when a run folder was given (:func:`medgan.training.checkpoint.resolve_checkpoint`)."""
        self.checkpoint_why = ""
        """Why this checkpoint of a run folder (empty when a file was given)."""

    @property
    def generator(self) -> torch.nn.Module:
        """The generator module in eval mode (built on first access when the sampler came from a checkpoint)."""
        if self._module is None:
            g = self._build if isinstance(self._build, torch.nn.Module) else self._build()
            self._module = g.to(self.device).eval()
        return self._module

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(cls, path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu",
                        amp: str = "off", fuse: bool = True) -> Sampler:
        """Build the generator recorded in a checkpoint (the EMA weights when present and ``use_ema``).

        ``amp``: ``off`` (fp32) or ``bf16`` (bfloat16 inference; see :class:`FusedGenerator`).
        """
        from medgan.training.checkpoint import load_checkpoint, resolve_checkpoint

        choice = resolve_checkpoint(path)  # once: the file loaded is the file hashed, even while a run writes best.pt
        return cls.from_loaded(load_checkpoint(choice.path, map_location="cpu"), choice, use_ema, device, amp, fuse)

    @classmethod
    def from_loaded(cls, ckpt: dict[str, Any], path: str | Path | CheckpointChoice, use_ema: bool = True,
                    device: str | torch.device = "cpu", amp: str = "off", fuse: bool = True) -> Sampler:
        """:meth:`from_checkpoint` for a checkpoint dict already loaded (by
        :func:`~medgan.training.checkpoint.load_checkpoint`) from ``path`` (or the resolved choice of a run folder),
        which is hashed for provenance."""
        from medgan.config import ModelConfig
        from medgan.io import file_sha256
        from medgan.training.checkpoint import CheckpointChoice, resolve_checkpoint

        choice = path if isinstance(path, CheckpointChoice) else resolve_checkpoint(path)
        p = choice.path
        meta = ckpt["data"]
        try:
            model_cfg = ModelConfig.model_validate((ckpt.get("config") or {}).get("model", {}))
            spatial_dims, channels = int(meta["spatial_dims"]), int(meta["channels"])
            size, names = int(meta["size"]), list(meta["class_names"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{p}: the checkpoint's data/model record is incomplete ({e}); "
                                  "re-save it with 'medgan train'") from None
        state = ckpt.get("ema_generator") if use_ema else None
        used_ema = state is not None
        if state is None:
            state = ckpt["generator"]
        from medgan.training.checkpoint import check_finite_weights

        check_finite_weights(state, "EMA generator" if used_ema else "generator", p)

        def build() -> torch.nn.Module:
            from medgan.models import build_generator

            g = build_generator(model_cfg, spatial_dims, channels, size, len(names))
            try:
                g.load_state_dict(state)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0]
                raise CheckpointError(f"{p}: generator weights do not fit the recorded model config "
                                      f"({first[:150]}); the checkpoint is inconsistent") from None
            return g

        fused = None
        if fuse and str(amp).lower() in AMP_MODES:
            fused = FusedGenerator.from_state_dict(state, model_cfg.latent_dim, spatial_dims, size, channels,
                                                   len(names), str(amp).lower())
        generator = build if fused is not None else build()  # unknown layout: the module (and its errors) now
        sampler = cls(generator, meta, step=int(ckpt.get("step", 0)), checkpoint_sha256=file_sha256(p),
                      checkpoint_path=str(p), used_ema=used_ema, device=device, amp=amp, fuse=fuse, fused=fused)
        sampler.config = dict(ckpt.get("config") or {})
        sampler.checkpoint_note = choice.describe(sampler.step)
        sampler.checkpoint_why = choice.why
        if choice.why:
            import logging

            logging.getLogger("medgan").info("using checkpoint %s", sampler.checkpoint_note)
        return sampler

    # ---------------------------------------------------------------------------------------- helpers

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one generated image."""
        return (int(self.meta["channels"]),) + (int(self.meta["size"]),) * int(self.meta["spatial_dims"])

    def resolve_classes(self, classes: Sequence[int | str] | int | str | None) -> list[int]:
        """Class indices from names or indices (``None``: all classes), in the given order, deduplicated."""
        return class_indices(classes, self.class_names)

    def plan(self, n: int | None = None, classes: Sequence[int | str] | None = None,
             counts: Mapping[int | str, int] | None = None, pairs: bool = False) -> _Plan:
        """The (class, index) pairs for ``n`` samples per class in ``classes``, or explicit per-class ``counts``;
        with ``pairs``, ``n`` counterfactual pairs over ``classes`` (default every class), pair by pair."""
        if pairs:
            if counts is not None:
                raise MedganError("counterfactual pairs give every class the same number of samples: pass n (the "
                                  "number of pairs), not per-class counts")
            if n is None or isinstance(n, bool) or int(n) != n or int(n) <= 0:
                raise MedganError(f"the number of pairs must be a positive integer, got {n}")
            cl = np.asarray(self.resolve_classes(classes), dtype=np.int64)
            return _Plan(np.tile(cl, int(n)), np.repeat(np.arange(int(n), dtype=np.int64), len(cl)), True, len(cl))
        if counts is not None:
            per = {class_index(c, self.class_names): int(k) for c, k in counts.items()}
        else:
            if n is None or int(n) <= 0:
                raise MedganError(f"the number of samples per class must be a positive integer, got {n}")
            per = {c: int(n) for c in self.resolve_classes(classes)}
        if any(k < 0 for k in per.values()):
            raise MedganError(f"per-class sample counts must be >= 0, got {per}")
        cls = [np.full(k, c, dtype=np.int64) for c, k in per.items()]
        idx = [np.arange(k, dtype=np.int64) for k in per.values()]
        empty = np.zeros(0, dtype=np.int64)
        return _Plan(np.concatenate(cls) if cls else empty, np.concatenate(idx) if idx else empty)

    @torch.no_grad()
    def generate(self, y: torch.Tensor | np.ndarray, seeds: np.ndarray) -> torch.Tensor:
        """Images in [-1, 1] for class labels ``y`` and per-sample ``seeds`` (one forward pass, CPU float32).

        The batch is padded to a multiple of :data:`PAD_ROWS` rows, so each image is the same bytes whatever
        the batch size.
        """
        n = len(seeds)
        pad = (-n) % PAD_ROWS
        seeds = np.asarray(seeds, dtype=np.int64)
        labels = np.asarray(y, dtype=np.int64)
        if pad:  # padding rows: seed 0 of class 0, thrown away
            seeds = np.concatenate([seeds, np.zeros(pad, np.int64)])
            labels = np.concatenate([labels, np.zeros(pad, np.int64)])
        z = latents_for_seeds(seeds, self.latent_dim).to(self.device)
        yt = torch.from_numpy(labels).to(self.device)
        x = self._fused(z, yt) if self._fused is not None else self.generator(z, yt)
        return x[:n].float().clamp_(-1.0, 1.0).contiguous().cpu()

    def to_source(self, x: torch.Tensor) -> np.ndarray:
        """Model-space images -> numpy in the training data's source range and dtype.

        Integer data (the common case) is converted in place in torch, operation for operation what
        :func:`medgan.data.preprocess.from_model_tensor` does in numpy (so the bytes are the same), without
        its temporaries; other dtypes go through that function.
        """
        from medgan.data.dataset import Intensity
        from medgan.data.preprocess import from_model_tensor

        inten = Intensity.from_dict(self.meta["intensity"])
        dt = np.dtype(inten.dtype)
        if not (isinstance(x, torch.Tensor) and np.issubdtype(dt, np.integer) and dt.itemsize <= 2):
            return from_model_tensor(x, inten)
        info = np.iinfo(dt)
        a = x.detach().to("cpu", torch.float32, copy=True)
        a.clamp_(-1.0, 1.0).add_(1.0).mul_(0.5).mul_(inten.max - inten.min).add_(inten.min)
        a.round_().clamp_(float(info.min), float(info.max))  # round half to even, as np.rint
        tdt = {"uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "uint16": torch.uint16}[dt.name]
        return a.to(tdt).numpy()

    # --------------------------------------------------------------------------------------- sampling

    def stream(self, n: int | None = None, classes: Sequence[int | str] | None = None, seed: int = 0,
               out: str = "model", batch_size: int = 256, counts: Mapping[int | str, int] | None = None,
               filter_fn: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
               max_redraws: int = MAX_REDRAWS, workers: int = 1, pairs: bool = False) -> Iterator[SampleBatch]:
        """Generate batch by batch (memory stays flat): ``n`` samples per requested class, class by class.

        ``pairs``: ``n`` counterfactual pairs instead, pair by pair: the members of pair ``p`` (one per requested
        class) share one latent vector (:func:`~medgan.synthesis.seeds.derive_pair_seeds`), so they differ only in
        their class; ``SampleBatch.pair`` holds ``p``, and a batch always holds whole pairs (``batch_size`` is
        rounded down to a multiple of the classes, at least one pair). A ``filter_fn`` flagging any member has the
        whole pair redrawn from a new shared latent.

        ``filter_fn(x, y)`` (model space) returns a boolean mask of samples to redraw; a flagged sample is
        regenerated from the seed of its next attempt, at most ``max_redraws`` times (then kept as is).

        ``workers > 1`` generates that many batches at once, each on its own thread with single-threaded torch
        ops (batches still come out in order; at most ``workers + 1`` are in memory). On a small CPU this beats
        one batch on a team of OpenMP threads: there is no barrier per operation, which a busy machine (even a
        nice-19 job on the other core) turns into milliseconds per op. While the stream runs,
        ``torch.get_num_threads()`` is 1 process-wide; it is restored when the stream ends. A ``filter_fn``
        makes the stream sequential (the filter need not be thread-safe). Results do not depend on ``workers``.
        """
        if out not in ("model", "source"):
            raise MedganError(f"out must be 'model' or 'source', got {out!r}")
        if int(batch_size) <= 0:
            raise MedganError(f"batch size must be positive, got {batch_size}")
        if int(workers) < 1:
            raise MedganError(f"workers must be >= 1, got {workers}")
        plan = self.plan(n, classes, counts, pairs=pairs)
        step = max(1, int(batch_size) // plan.group) * plan.group  # whole pairs in every batch
        spans = [(s0, min(s0 + step, len(plan))) for s0 in range(0, len(plan), step)]

        def one(span: tuple[int, int]) -> SampleBatch:
            return self._batch(plan, span, seed, out, filter_fn, max_redraws)

        if int(workers) == 1 or filter_fn is not None or len(spans) <= 1:
            for span in spans:
                yield one(span)
            return
        yield from ordered_map(one, spans, int(workers))

    @torch.no_grad()
    def _batch(self, plan: _Plan, span: tuple[int, int], seed: int, out: str, filter_fn, max_redraws) -> SampleBatch:
        """One batch of the plan: seeds, images (redrawn through ``filter_fn``), in model or source space."""
        c = plan.classes[span[0] : span[1]]
        i = plan.indices[span[0] : span[1]]
        attempts = np.zeros(len(c), dtype=np.int64)
        seeds = derive_pair_seeds(seed, i, attempts) if plan.pairs else derive_seeds(seed, c, i, attempts)
        y = torch.from_numpy(c)
        x = self.generate(c, seeds)
        if filter_fn is not None:
            x, seeds, attempts = self._apply_filter(x, y, c, i, seeds, attempts, seed, filter_fn, max_redraws,
                                                    plan.pairs)
        xo = self.to_source(x) if out == "source" else x
        return SampleBatch(xo, y, seeds, i.copy(), attempts, i.copy() if plan.pairs else None)

    def _apply_filter(self, x, y, c, i, seeds, attempts, seed, filter_fn, max_redraws, pairs=False):
        for _ in range(int(max_redraws)):
            mask = np.asarray(torch.as_tensor(filter_fn(x, y)).cpu(), dtype=bool).reshape(-1)
            if mask.shape != (len(x),):
                raise MedganError(f"filter_fn must return one boolean per sample ({len(x)}), got shape {mask.shape}")
            if not mask.any():
                break
            if pairs:  # the whole pair of a flagged member: its classes keep sharing one latent
                sel = np.flatnonzero(np.isin(i, i[mask]))
                attempts[sel] += 1
                seeds[sel] = derive_pair_seeds(seed, i[sel], attempts[sel])
                x[torch.from_numpy(sel)] = self.generate(c[sel], seeds[sel])
                continue
            sel = np.flatnonzero(mask)
            attempts[sel] += 1
            seeds[sel] = derive_seeds(seed, c[sel], i[sel], attempts[sel])
            x[torch.from_numpy(sel)] = self.generate(c[sel], seeds[sel])
        return x, seeds, attempts

    def iter_batches(self, n: int | None = None, classes: Sequence[int | str] | None = None, seed: int = 0,
                     out: str = "model", batch_size: int = 256,
                     counts: Mapping[int | str, int] | None = None) -> Iterator[tuple[Any, torch.Tensor, np.ndarray]]:
        """Like :meth:`sample`, streamed: yields ``(x, y, per_sample_seeds)`` per batch."""
        for b in self.stream(n, classes, seed, out, batch_size, counts):
            yield b.x, b.y, b.seeds

    def sample(self, n: int, classes: Sequence[int | str] | int | str | None = None, seed: int = 0,
               out: str = "model", batch_size: int = 256) -> tuple[torch.Tensor | np.ndarray, torch.Tensor]:
        """``n`` samples PER requested class (indices or names; ``None``: all), class by class.

        Returns ``(x, y)``: ``x`` float in [-1, 1] ``(N, C, *spatial)`` (``out="model"``) or a numpy array in
        the source range and dtype (``out="source"``); ``y`` ``(N,)`` long.
        """
        xs, ys = [], []
        for x, y, _ in self.iter_batches(n, classes, seed, out, batch_size):
            xs.append(x)
            ys.append(y)
        if not xs:
            return (torch.empty((0, *self.shape)) if out == "model" else np.empty((0, *self.shape))), \
                torch.empty(0, dtype=torch.long)
        x = torch.cat(xs) if out == "model" else np.concatenate(xs)
        return x, torch.cat(ys)
