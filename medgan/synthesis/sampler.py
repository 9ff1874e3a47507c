"""Load a generator from a checkpoint and draw labelled samples, one reproducible seed per sample.

Every sample has its own 63-bit seed, derived from ``(seed, class, index within the class, attempt)`` by a
counter-based hash (SplitMix64), and its latent vector ``z`` is a pure function of that seed. So a sample's
identity does not depend on the batch size, on which other classes are drawn, or on how many samples are
requested: ``sample(10, seed=0)`` is a prefix of ``sample(100, seed=0)`` class by class, and the seed stored in
an augment manifest regenerates its image with :func:`latents_for_seeds`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from medgan.errors import CheckpointError, MedganError

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# distinct odd constants that tag the fields hashed into a per-sample seed
_TAG_CLASS = np.uint64(0xD6E8FEB86659FD93)
_TAG_INDEX = np.uint64(0xA0761D6478BD642F)
_TAG_ATTEMPT = np.uint64(0xE7037ED1A0B428DB)

#: Default bound on how often a sample flagged by a ``filter_fn`` is redrawn before it is kept anyway.
MAX_REDRAWS = 8


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return x


def derive_seeds(seed: int, classes: np.ndarray | int, indices: np.ndarray | int,
                 attempt: np.ndarray | int = 0) -> np.ndarray:
    """Per-sample seeds (int64, non-negative, 63 bits) from the run seed, class, index and redraw attempt."""
    c = np.asarray(classes, dtype=np.int64).astype(np.uint64)
    i = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    a = np.asarray(attempt, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN, dtype=np.uint64))
        h = _mix(h ^ (c * _TAG_CLASS + _GOLDEN))
        h = _mix(h ^ (i * _TAG_INDEX + _GOLDEN))
        h = _mix(h ^ (a * _TAG_ATTEMPT + _GOLDEN))
    c, i, a, h = np.broadcast_arrays(c, i, a, h)
    return (h >> np.uint64(1)).astype(np.int64)


def latents_for_seeds(seeds: np.ndarray | Sequence[int], dim: int) -> torch.Tensor:
    """Standard-normal latent vectors ``(len(seeds), dim)`` (float32), each a pure function of its seed.

    Counter-based: uniform pairs come from SplitMix64 of ``seed + k * golden``, turned into normals with the
    Box-Muller transform (in float64, so the result is the same on every platform).
    """
    s = np.asarray(seeds, dtype=np.int64).astype(np.uint64).reshape(-1, 1)
    half = (dim + 1) // 2
    k = np.arange(1, 2 * half + 1, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        bits = _mix(s + k * _GOLDEN)
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)
    u1, u2 = u[:, :half], u[:, half:]
    r = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 in (0, 1]
    z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1)[:, :dim]
    return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available else CPU; a CUDA device that is not there is a one-line error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MedganError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedganError(f"device {device!r} asked for but no CUDA GPU is available; use --device cpu")
    return dev


AMP_MODES = ("off", "bf16")
#: Generator batches are padded to a multiple of this many rows, so that no sample is ever computed in a tiny
#: batch (BLAS/oneDNN pick other kernels, hence other rounding, for a handful of rows): a sample's bytes do not
#: depend on the batch size it was generated in.
PAD_ROWS = 16


class FusedGenerator:
    """Inference-only form of a DCGAN :class:`~medgan.models.generator.ConditionalGenerator` (2D or 3D).

    It computes the same function as the eval-mode module with less work:

    * the first block (a transposed convolution of the 1x1 latent "image") is a matrix product, and the label
      embedding's share of it is precomputed per class (a table lookup instead of a concatenation);
    * every batch norm is folded into the preceding (transposed) convolution (weights scaled per output
      channel, a bias added), so normalisation costs nothing;
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
                 start_shape: tuple[int, ...], layers: list[tuple[torch.Tensor, torch.Tensor | None, dict[str, Any],
                                                                  bool]], amp: str = "off") -> None:
        self.latent_dim = latent_dim
        self.spatial_dims = spatial_dims
        self.dtype = torch.bfloat16 if amp == "bf16" else torch.float32
        self.table = table.to(self.dtype)
        self.w_z = w_z.to(self.dtype)
        self.start_shape = start_shape  # (*spatial, C) of the first block's output
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        self.layers = [(w.to(self.dtype).contiguous(memory_format=fmt), None if b is None else b.to(self.dtype),
                        kw, relu) for w, b, kw, relu in layers]

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

    @classmethod
    def _build(cls, latent: int, embed: torch.Tensor | None, layers: list, amp: str) -> FusedGenerator | None:
        """From folded ``layers`` ``[(w, b, conv_kwargs, relu)]``; the first must map a 1x1 input (a product)."""
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
            table = (embed.detach().double() @ w0[latent:].double()).float() + bias0
        else:
            table = bias0.unsqueeze(0)
        return cls(latent, sd, table, w0[:latent].contiguous(), (*start, int(layers[0][0].shape[1])), layers[1:], amp)

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
        return cls._build(int(g.latent_dim), None if embed is None else embed.weight, layers, amp)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], latent_dim: int, spatial_dims: int, size: int,
                        channels: int, num_classes: int, amp: str = "off", eps: float = 1e-5) -> FusedGenerator | None:
        """Fold a :class:`~medgan.models.generator.ConditionalGenerator` state dict without building the module.

        Assumes the DCGAN layout documented in :mod:`medgan.models.generator` (a first block whose kernel is
        the start grid, then 4-wide stride-2 padding-1 blocks with batch norm + ReLU, a last block without
        them) and checks every key and shape against it; anything else returns ``None`` (the caller builds
        the module, which also reports weights that do not fit). ``tests/test_sampler.py`` checks that this
        gives exactly :meth:`from_generator`'s result.
        """
        start = 7 if size == 28 else 4
        levels = 0
        while start * 2**levels < size:
            levels += 1
        if start * 2**levels != size or spatial_dims not in (2, 3):
            return None
        conditional = num_classes > 1
        expected = {"embed.weight"} if conditional else set()
        for k in range(levels + 1):
            expected.add(f"net.{k}.conv.weight")
            if k < levels:
                expected |= {f"net.{k}.adn.N.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                            "num_batches_tracked")}
        if set(state) != expected:
            return None
        embed = state["embed.weight"] if conditional else None
        if embed is not None and (embed.dim() != 2 or embed.shape[0] != num_classes):
            return None
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
            cin = cout
        return cls._build(int(latent_dim), embed, layers, amp)

    def to(self, device: torch.device) -> FusedGenerator:
        self.table, self.w_z = self.table.to(device), self.w_z.to(device)
        self.layers = [(w.to(device), None if b is None else b.to(device), kw, r) for w, b, kw, r in self.layers]
        return self

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``z`` (B, latent), ``y`` (B,) -> images (B, C, *spatial) float32 in [-1, 1] (channels-last memory)."""
        import torch.nn.functional as F

        rows = self.table[y] if self.table.shape[0] > 1 else self.table.expand(len(z), -1)
        h = torch.addmm(rows, z.to(self.dtype), self.w_z).relu_()
        sd = self.spatial_dims
        h = h.view(len(z), *self.start_shape).permute(0, sd + 1, *range(1, sd + 1))  # channels-last strides
        conv = F.conv_transpose2d if sd == 2 else F.conv_transpose3d
        for w, b, kw, relu in self.layers:
            h = conv(h, w, b, **kw)
            if relu:
                h = h.relu_()
        return h.float().tanh_()


def _ordered_parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(item)`` for every item on ``workers`` threads with single-threaded torch ops, yielded in order.

    At most ``workers + 1`` results exist at once (memory stays flat). The process-wide torch thread count is
    set to 1 for the duration and restored afterwards (also when the consumer stops early or fails).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pending: deque = deque()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medgan-sample") as ex:
            todo = iter(items)
            try:
                for item in todo:
                    pending.append(ex.submit(fn, item))
                    if len(pending) > workers:
                        break
                while pending:
                    result = pending.popleft().result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(ex.submit(fn, nxt))
                    yield result
            finally:
                for f in pending:
                    f.cancel()
    finally:
        torch.set_num_threads(threads)


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


@dataclass
class _Plan:
    """Which (class, index) pairs to generate, in order: class by class."""

    classes: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


class Sampler:
    """A generator loaded from a medgan checkpoint, in eval mode, ready to sample labelled images.

    Attributes: ``meta`` (the checkpoint's ``data`` record), ``class_names``, ``step`` (the generator's
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
        from medgan.config import ModelConfig
        from medgan.training.checkpoint import file_sha256, load_checkpoint

        ckpt = load_checkpoint(path, map_location="cpu")
        p = Path(path)
        if p.is_dir():  # load_checkpoint accepts a run folder; hash the file it actually read
            p = p / "checkpoints" / "last.pt" if (p / "checkpoints").is_dir() else p / "last.pt"
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
        return cls(generator, meta, step=int(ckpt.get("step", 0)), checkpoint_sha256=file_sha256(p),
                   checkpoint_path=str(p), used_ema=used_ema, device=device, amp=amp, fuse=fuse, fused=fused)

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
        if classes is None:
            return list(range(self.num_classes))
        if isinstance(classes, (int, str, np.integer)):
            classes = [classes]
        out: list[int] = []
        for c in classes:
            idx = self._class_index(c)
            if idx not in out:
                out.append(idx)
        return out

    def _class_index(self, c: int | str) -> int:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if 0 <= int(c) < self.num_classes:
                return int(c)
        else:
            s = str(c).strip()
            if s in self.class_names:
                return self.class_names.index(s)
            low = [n.lower() for n in self.class_names]
            if s.lower() in low:
                return low.index(s.lower())
            if s.isdigit() and int(s) < self.num_classes:
                return int(s)
        valid = ", ".join(f"{i}={n!r}" for i, n in enumerate(self.class_names))
        raise MedganError(f"unknown class {c!r}; valid classes (index=name): {valid}")

    def plan(self, n: int | None = None, classes: Sequence[int | str] | None = None,
             counts: Mapping[int | str, int] | None = None) -> _Plan:
        """The (class, index) pairs for ``n`` samples per class in ``classes``, or explicit per-class ``counts``."""
        if counts is not None:
            per = {self._class_index(c): int(k) for c, k in counts.items()}
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
        from medgan.data.preprocess import from_model_tensor
        from medgan.data.sources import Intensity

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
               max_redraws: int = MAX_REDRAWS, workers: int = 1) -> Iterator[SampleBatch]:
        """Generate batch by batch (memory stays flat): ``n`` samples per requested class, class by class.

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
        plan = self.plan(n, classes, counts)
        spans = [(s0, min(s0 + int(batch_size), len(plan))) for s0 in range(0, len(plan), int(batch_size))]

        def one(span: tuple[int, int]) -> SampleBatch:
            return self._batch(plan, span, seed, out, filter_fn, max_redraws)

        if int(workers) == 1 or filter_fn is not None or len(spans) <= 1:
            for span in spans:
                yield one(span)
            return
        yield from _ordered_parallel(one, spans, int(workers))

    @torch.no_grad()
    def _batch(self, plan: _Plan, span: tuple[int, int], seed: int, out: str, filter_fn, max_redraws) -> SampleBatch:
        """One batch of the plan: seeds, images (redrawn through ``filter_fn``), in model or source space."""
        c = plan.classes[span[0] : span[1]]
        i = plan.indices[span[0] : span[1]]
        attempts = np.zeros(len(c), dtype=np.int64)
        seeds = derive_seeds(seed, c, i, attempts)
        y = torch.from_numpy(c)
        x = self.generate(c, seeds)
        if filter_fn is not None:
            x, seeds, attempts = self._apply_filter(x, y, c, i, seeds, attempts, seed, filter_fn, max_redraws)
        xo = self.to_source(x) if out == "source" else x
        return SampleBatch(xo, y, seeds, i.copy(), attempts)

    def _apply_filter(self, x, y, c, i, seeds, attempts, seed, filter_fn, max_redraws):
        for _ in range(int(max_redraws)):
            mask = np.asarray(torch.as_tensor(filter_fn(x, y)).cpu(), dtype=bool).reshape(-1)
            if mask.shape != (len(x),):
                raise MedganError(f"filter_fn must return one boolean per sample ({len(x)}), got shape {mask.shape}")
            if not mask.any():
                break
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
