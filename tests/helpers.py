"""Plain helpers the tests call with arguments (fixtures are in the conftest.py files): where the real data is, tiny
training configs, tiny generator checkpoints for real dataset metas, small builders of test inputs.

Importable as ``from helpers import ...`` (``pythonpath`` in pyproject.toml puts ``tests/`` on ``sys.path``).
Heavy medgan modules are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# ------------------------------------------------------------------------------------------- paths and real data

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
SHARED_DATA = Path(os.environ.get("MEDGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
MEDMNIST_DIR = SHARED_DATA / "medmnist"
SAMPLES_DIR = SHARED_DATA / "samples"

# ------------------------------------------------------------------------------------------- training engine

#: A tiny, fast training configuration on phantom2d (dotted keys, as ``load_config`` overrides).
TINY = {
    "data.dataset": "phantom2d",
    "model.base_channels": 4,
    "model.latent_dim": 8,
    "model.embed_dim": 4,
    "train.batch_size": 8,
    "train.steps": 4,
    "train.log_every": 2,
    "train.sample_every": 2,
    "train.checkpoint_every": 2,
    "train.collapse_every": 2,
    "train.eval_every": 0,
    "train.ema_decay": 0.9,
    "train.progress": False,
    "train.device": "cpu",
    "teacher.members": 2,
    "teacher.epochs": 2,
    "teacher.min_epochs": 0,
}


def tiny_cfg(**over):
    """A tiny, fast configuration on phantom2d; keyword keys use ``__`` for dots (``train__steps=6``)."""
    from medgan.config import load_config

    return load_config(None, {**TINY, **{k.replace("__", "."): v for k, v in over.items()}})


def state_equal(a: dict, b: dict) -> bool:
    """Nested state dicts (tensors, numbers, lists, dicts) are exactly equal."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# ------------------------------------------------------------------------------------------- networks

#: The narrowest networks, for shape and behaviour tests of the models.
TINY_NET = dict(base_channels=4)


def conv_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Every convolution (2D, 3D, transposed) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]


# ------------------------------------------------------------------------------------------- synthesis

TINY_MODEL = {"latent_dim": 8, "base_channels": 4, "embed_dim": 4}


def real_meta(spec: str, size: int | None = None) -> dict[str, Any]:
    """``load_dataset(spec).meta()`` plus the model ``size`` (what a checkpoint's ``data`` holds).

    Skips the test when the shared MedMNIST files are absent.
    """
    from medgan.data.preprocess import choose_size
    from medgan.data.sources import load_dataset

    if not MEDMNIST_DIR.exists():
        pytest.skip(f"real data not found at {MEDMNIST_DIR}")
    data = load_dataset(spec, data_dir=MEDMNIST_DIR, download=False)
    meta = data.meta()
    meta["size"] = choose_size(data, size)
    return meta


def make_checkpoint(path: str | Path, meta: dict[str, Any], step: int = 7, ema: bool = True,
                    seed: int = 0, model: dict | None = None) -> Path:
    """Write a checkpoint with a tiny randomly initialised generator for ``meta`` (a checkpoint ``data`` dict).

    Builds the generator with :func:`medgan.models.build_generator` and saves it with
    :func:`medgan.training.checkpoint.save_checkpoint`, so the synthesis code is tested without the training engine.
    """
    from medgan.config import Config
    from medgan.models import build_generator
    from medgan.training.checkpoint import save_checkpoint

    cfg = Config.model_validate({"model": model or TINY_MODEL})
    torch.manual_seed(seed)
    g = build_generator(cfg.model, int(meta["spatial_dims"]), int(meta["channels"]), int(meta["size"]),
                        len(meta["class_names"]))
    # wider weights than the DCGAN init, so that outputs use the whole [-1, 1] range like a trained generator
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.modules.conv._ConvNd):
                m.weight.normal_(0.0, 0.5)
        for table in getattr(g, "cbn", None) or ():  # class-conditional batch norm starts at zero: make it matter
            table.weight.normal_(0.0, 0.5)
    # give BatchNorm non-trivial running statistics, as after training
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(16, g.latent_dim), torch.randint(0, len(meta["class_names"]), (16,)))
    ema_state = None
    if ema:
        ema_state = {k: (v * 0.9 if v.is_floating_point() else v).clone() for k, v in g.state_dict().items()}
    payload = {
        "step": step,
        "config": cfg.model_dump(mode="json"),
        "data": meta,
        "generator": g.state_dict(),
        "ema_generator": ema_state,
        "discriminator": {},
        "opt_g": {},
        "opt_d": {},
        "rng": {},
        "state": {},
    }
    return save_checkpoint(path, payload)


def classless_checkpoint(path: str | Path, meta: dict[str, Any]) -> Path:
    """:func:`make_checkpoint` with the class-conditional gains and biases at zero: a generator that ignores the class
    (as one at ``cond_scale`` 0), so that images from the same latent are the same in every class."""
    make_checkpoint(path, meta)
    ckpt = torch.load(path, weights_only=True)
    for key in ("generator", "ema_generator"):
        for name, t in ckpt[key].items():
            if name.startswith("cbn."):
                t.zero_()
    torch.save(ckpt, path)
    return Path(path)


_CACHE: dict[tuple[str, str], Path] = {}


def cached_checkpoint(tmp_path_factory, spec: str, **meta_overrides: Any) -> Path:
    """A tiny checkpoint for a real dataset's meta, made once per test session and spec."""
    key = (spec, repr(sorted(meta_overrides.items())))
    if key not in _CACHE:
        meta = {**real_meta(spec), **meta_overrides}
        _CACHE[key] = make_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{spec}.pt", meta)
    return _CACHE[key]


def marked_bank():
    """A SyntheticBank whose images carry their class in their values: class c images are constant c/2 - 0.5."""
    from medgan.synthesis.bank import SyntheticBank

    y = np.repeat([0, 1, 2], 5)
    x = np.repeat((y / 2 - 0.5)[:, None, None, None], 28 * 28, axis=-1).reshape(15, 1, 28, 28)
    return SyntheticBank.from_tensors(x, y, ["a", "b", "c"], intensity={"min": 0.0, "max": 255.0, "dtype": "uint8"})


def synthetic_mix(train_x, train_y):
    """10 exact copies, 10 slightly noisy copies, 40 fresh phantoms (new seed), 20 smooth-noise images."""
    from medgan.data.phantom import make_phantom
    from medgan.data.preprocess import prepare

    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(train_x), generator=g)[:20]
    copies = train_x[idx[:10]]
    noisy = (train_x[idx[10:]] + 0.02 * torch.randn(train_x[idx[10:]].shape, generator=g)).clamp(-1, 1)
    fresh_td = prepare(make_phantom(2, seed=777))
    fresh = fresh_td.x["train"][:40]
    blobs = torch.nn.functional.interpolate(torch.rand(20, 1, 7, 7, generator=g) * 2 - 1, size=(28, 28),
                                            mode="bilinear", align_corners=False)
    x = torch.cat([copies, noisy, fresh, blobs])
    y = torch.cat([train_y[idx], fresh_td.y["train"][:40], torch.zeros(20, dtype=torch.long)])
    return x, y


# ------------------------------------------------------------------------------------------- data errors

def one_line_error(fn, *args, match: str, **kw) -> str:
    """``fn(*args, **kw)`` raises a one-line MedganError containing ``match`` (any case); returns its message."""
    from medgan.errors import MedganError

    with pytest.raises(MedganError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert match.lower() in msg.lower(), msg
    return msg


def write_png(path: Path, value: int = 0, shape=(16, 16)) -> Path:
    """A constant gray PNG (parent folders created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)
    return path


def two_class_pngs(root: Path, n: int = 3) -> Path:
    """A class folder dataset: ``root/a`` and ``root/b`` with ``n`` small PNGs each."""
    for c in ("a", "b"):
        for i in range(n):
            write_png(root / c / f"{i}.png", value=40 * i + (100 if c == "b" else 0))
    return root


# ------------------------------------------------------------------------------------------- evaluation

SCARCE = ["0=40", "1=40", "2=20"]  # phantom2d: 100 training images, 'single_bright' scarce

# ------------------------------------------------------------------------------------------- pipelines


def run_pipeline(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``pipelines/SCRIPT ARGS`` from the repository root; it must succeed."""
    proc = subprocess.run([sys.executable, str(PIPELINES / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc
