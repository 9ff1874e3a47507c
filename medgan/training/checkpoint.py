"""Self-describing checkpoints: atomic save, safe load (never runs code from the file).

A checkpoint is a ``torch.save`` of a plain dict holding only tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: a file that would need to unpickle arbitrary objects (and so could
execute code) is refused.

Keys (``format_version`` 1):

``format`` ("medgan.checkpoint"), ``format_version``, ``medgan_version``, ``step``, ``config`` (the resolved
:class:`~medgan.config.Config` as JSON-safe dict), ``data`` (:meth:`RealData.meta` plus ``size``: class names,
spatial dims, channels, intensity mapping, spacing, modality, scarcity record, training-set fingerprint),
``generator``, ``ema_generator`` (or ``None``), ``discriminator``, ``opt_g``, ``opt_d`` (state dicts), ``rng``
(CPU/CUDA/numpy/python RNG states as tensors), ``state`` (engine state: ADA probability, counters, LeCam's
averages, the best tracked quality so far, ...); ``best.pt`` also holds ``quality`` (the measurements that made it
the best, :mod:`medgan.training.tracking`).
"""

from __future__ import annotations

import pickle
import re
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medgan.data.dataset import intensity_problem
from medgan.errors import CheckpointError
from medgan.io import atomic_write

FORMAT = "medgan.checkpoint"
FORMAT_VERSION = 1


class _WriteRecorder:
    """A file wrapper that remembers the ``OSError`` of a failed write: ``torch.save`` reports a failed write to a
    real file object as ``RuntimeError [enforce fail at inline_container.cc]``, hiding a full disk."""

    def __init__(self, f) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, b) -> int:
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format keys) atomically to ``path``.

    A failed write (e.g. a full disk) raises the ``OSError`` itself and leaves neither a temporary file nor a
    changed ``path`` behind."""
    from medgan import __version__

    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "medgan_version": __version__, **payload}

    def write(f) -> None:
        rec = _WriteRecorder(f)
        try:
            torch.save(full, rec)
        except RuntimeError:
            if rec.error is not None:
                raise rec.error from None
            raise

    atomic_write(path, write)
    return Path(path)


def _unsafe_reason(e: BaseException) -> str:
    """The part of torch's refusal that names what the file wanted to load, never cut mid-word."""
    text = " ".join(str(e).split())
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return f"it references {m.group(1)}"
    return textwrap.shorten(text, width=160, placeholder=" ...") or type(e).__name__


def check_finite_weights(state: dict[str, Any] | None, what: str, path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (they would write all-zero or garbage images)."""
    bad = [k for k, v in (state or {}).items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: the {what} weights hold NaN or infinite values ({len(bad)} tensor(s), first "
                              f"'{bad[0]}'); use an earlier checkpoint of the run (checkpoints/step_N.pt)")


#: The conditioning of checkpoints whose config predates ``model.conditioning``.
LEGACY_CONDITIONING = "concat"


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint file a path stands for, and why that one."""

    path: Path
    why: str = ""
    """Empty for a file given as such; for a run folder, which of its checkpoints and why."""

    def describe(self, step: int | None = None) -> str:
        """``PATH (why, step N)``: what commands print about the checkpoint they use."""
        bits = [b for b in (self.why, f"step {step}" if step is not None else "") if b]
        return f"{self.path} ({', '.join(bits)})" if bits else str(self.path)


def resolve_checkpoint(path: str | Path) -> CheckpointChoice:
    """The one resolver of "a checkpoint or a run folder" (``augment``, ``evaluate``, ``export``, ``info``,
    :class:`~medgan.synthesis.sampler.Sampler`, :class:`~medgan.synthesis.bank.SyntheticBank`): a file is itself; a
    run folder (or its ``checkpoints/``) gives ``best.pt`` when quality tracking wrote one (the best tracked
    quality, :mod:`medgan.training.tracking`), else ``last.pt``."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; pass the path of a .pt file in a run's checkpoints/ or a "
                              "run folder")
    if not p.is_dir():
        return CheckpointChoice(p)
    folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    if (folder / "best.pt").is_file():
        return CheckpointChoice(folder / "best.pt", "the run's best checkpoint by tracked quality; last.pt is beside "
                                                    "it")
    if (folder / "last.pt").is_file():
        return CheckpointChoice(folder / "last.pt", "the run's last checkpoint; it has no best.pt (quality tracking "
                                                    "was off)")
    raise CheckpointError(f"{p} is a folder without checkpoints/best.pt or checkpoints/last.pt; pass a checkpoint "
                          "file or a run folder")


#: What each ``model.kind`` is called in messages, and the key holding its weights.
KINDS = {"dcgan": ("a GAN", "generator"), "translator": ("an image translator", "translator")}


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """The ``model.kind`` a loaded checkpoint records (``dcgan`` when it records none, as every GAN's does)."""
    model = ckpt.get("config", {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    kind = model.get("kind", "dcgan") if isinstance(model, dict) else "dcgan"
    return kind if isinstance(kind, str) else repr(kind)


def _wrong_kind(p: Path, found: str, kind: str) -> CheckpointError:
    if found not in KINDS:
        return CheckpointError(f"{p} records model.kind {found!r}, which this medgan does not know; upgrade medgan or "
                               "pass a checkpoint written by 'medgan train'")
    if kind == "translator":
        return CheckpointError(f"{p} is {KINDS[found][0]}'s checkpoint, not an image translator's; train one with "
                               "'medgan train --model translator' and pass its run folder")
    return CheckpointError(f"{p} is {KINDS[found][0]}'s checkpoint (model.kind: {found}): it translates real images "
                           "and cannot sample from noise; pass a GAN's checkpoint (a run of 'medgan train' without "
                           "--model translator)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    kind: str | None = "dcgan") -> dict[str, Any]:
    """Load and check a medgan checkpoint without executing code from it (a run folder: see
    :func:`resolve_checkpoint`). ``kind`` is the ``model.kind`` the caller needs (``dcgan``: a GAN, whose generator
    samples; ``translator``: :mod:`medgan.training.translator`; ``None``: any kind medgan knows); a checkpoint of
    another kind is refused, naming it."""
    p = resolve_checkpoint(path).path
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is foreign or cut short
        raise CheckpointError(f"cannot read checkpoint {p}; the file is truncated or not a PyTorch checkpoint")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {p}: it holds objects that could run code when unpickled ({_unsafe_reason(e)}); "
            "only medgan checkpoints (plain tensors and values) are loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {p} ({type(e).__name__}); the file is truncated or not a PyTorch checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a medgan checkpoint (no '{FORMAT}' marker); pass a file written by "
                              "'medgan train'")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {version} (written by medgan {ckpt.get('medgan_version')}), newer than "
            f"this medgan understands ({FORMAT_VERSION}); upgrade medgan"
        )
    found = checkpoint_kind(ckpt)
    if found != kind and (kind is not None or found not in KINDS):
        raise _wrong_kind(p, found, kind or "dcgan")
    kind = found
    for key in ("config", "data", KINDS[kind][1]):
        if key not in ckpt:
            raise CheckpointError(f"{p} lacks '{key}'; the checkpoint is incomplete")
        if not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{p}: '{key}' is a {type(ckpt[key]).__name__}, not a mapping; the file is not a "
                                  "valid medgan checkpoint: pass one written by 'medgan train'")
    for key in ("ema_generator", "ema_translator", "discriminator", "opt_g", "opt_d", "rng", "state"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{p}: '{key}' is a {type(ckpt[key]).__name__}, not a mapping; the file is not a "
                                  "valid medgan checkpoint: pass one written by 'medgan train'")
    if "intensity" in ckpt["data"]:
        problem = intensity_problem(ckpt["data"]["intensity"])
        if problem:
            raise CheckpointError(f"{p}: its intensity record (data.intensity) {problem}, so synthetic images would "
                                  "get wrong values; the file is damaged or edited: use a checkpoint as 'medgan "
                                  "train' wrote it")
    if not isinstance(ckpt.get("step", 0), int) or isinstance(ckpt.get("step"), bool):
        raise CheckpointError(f"{p}: 'step' is not an integer; the file is not a valid medgan checkpoint")
    check_record(ckpt, p)
    model = ckpt["config"].get("model")
    if kind == "dcgan" and isinstance(model, dict) and "conditioning" not in model:
        # written before model.conditioning existed: those generators concatenated a label embedding to z (the
        # default is now class-conditional batch norm)
        ckpt["config"]["model"] = {**model, "conditioning": LEGACY_CONDITIONING}
    return ckpt


#: Sane bounds of a checkpoint's record, checked before anything is built from it (a crafted ``latent_dim`` of
#: 10^9 would otherwise allocate terabytes): far beyond any model medgan trains, far below what exhausts memory.
MAX_RECORD = {"latent_dim": 1 << 14, "embed_dim": 1 << 14, "base_channels": 1 << 12, "channels": 64, "size": 1024,
              "classes": 100_000}


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_record(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose ``data``/``config.model`` record is out of sane bounds (:data:`MAX_RECORD`) or
    does not fit its generator weights (latent and embedding widths, number of classes, channels, dims), before
    anything is built or allocated from it. Keys that are absent are left to the readers (which say so); the
    intensity record is checked by :func:`medgan.data.dataset.intensity_problem` (in :func:`load_checkpoint`)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}; the checkpoint is inconsistent or crafted: pass one written by "
                               "'medgan train'")

    meta, model = ckpt["data"], ckpt["config"].get("model")
    model = model if isinstance(model, dict) else {}
    names = meta.get("class_names")
    if "class_names" in meta and (not isinstance(names, list) or not 1 <= len(names) <= MAX_RECORD["classes"]
                                  or not all(isinstance(n, str | int) and not isinstance(n, bool) for n in names)):
        raise bad(f"'class_names' is not a list of 1..{MAX_RECORD['classes']} names")
    counts = meta.get("train_counts")
    if counts is not None and names is not None and (not isinstance(counts, list) or len(counts) != len(names)):
        raise bad(f"'train_counts' does not give one count per class ({len(names)} class names)")
    if "spatial_dims" in meta and meta["spatial_dims"] not in (2, 3):
        raise bad(f"'spatial_dims' is {meta['spatial_dims']!r}, not 2 or 3")
    for key in ("channels", "size"):
        if key in meta and not _int_in(meta[key], 1, MAX_RECORD[key]):
            raise bad(f"'{key}' is {meta[key]!r}, outside 1..{MAX_RECORD[key]}")
    for key in ("latent_dim", "embed_dim", "base_channels"):
        if key in model and not _int_in(model[key], 1, MAX_RECORD[key]):
            raise bad(f"model.{key} is {model[key]!r}, outside 1..{MAX_RECORD[key]}")
    for key in ("generator", "ema_generator"):
        if isinstance(ckpt.get(key), dict) and ckpt[key]:
            _check_weights(ckpt[key], meta, model, key.replace("_", " "), bad)


def _check_weights(state: dict[str, Any], meta: dict[str, Any], model: dict[str, Any], what: str, bad) -> None:
    """The generator's weight shapes against the record (the layout of :mod:`medgan.models.generator`)."""
    convs = []
    while isinstance(state.get(f"net.{len(convs)}.conv.weight"), torch.Tensor):
        convs.append(state[f"net.{len(convs)}.conv.weight"])
    if len(convs) < 2:
        raise bad(f"the {what} weights are not a medgan generator's (no net.0.conv.weight, net.1.conv.weight)")
    dims = meta.get("spatial_dims")
    if dims in (2, 3) and any(w.dim() != 2 + dims for w in convs):
        raise bad(f"the {what} weights are not {dims}D convolutions as 'spatial_dims' says")
    embed = state.get("embed.weight")
    tables = [v for k, v in state.items() if k.startswith("cbn.") and isinstance(v, torch.Tensor)]
    rows = {int(t.shape[0]) for t in ([embed] if isinstance(embed, torch.Tensor) else []) + tables if t.dim() == 2}
    names = meta.get("class_names")
    if isinstance(names, list) and rows and rows != {len(names)}:
        raise bad(f"it names {len(names)} classes but its {what} weights are for {', '.join(map(str, sorted(rows)))}")
    e_dim = int(embed.shape[1]) if isinstance(embed, torch.Tensor) and embed.dim() == 2 else 0
    if "embed_dim" in model and e_dim and e_dim != model["embed_dim"]:
        raise bad(f"model.embed_dim is {model['embed_dim']} but the {what} embedding is {e_dim} wide")
    if "latent_dim" in model and int(convs[0].shape[0]) != model["latent_dim"] + e_dim:
        raise bad(f"model.latent_dim is {model['latent_dim']} but the {what} weights take "
                  f"{int(convs[0].shape[0]) - e_dim} noise inputs")
    if "base_channels" in model and int(convs[-1].shape[0]) != model["base_channels"]:
        raise bad(f"model.base_channels is {model['base_channels']} but the {what} weights end "
                  f"{int(convs[-1].shape[0])} wide")
    if "channels" in meta and int(convs[-1].shape[1]) != meta["channels"]:
        raise bad(f"'channels' is {meta['channels']} but the {what} weights write {int(convs[-1].shape[1])}")
