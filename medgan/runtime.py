"""Where and how computation runs: device resolution, seeding, global RNG state, worker threads.

* :func:`resolve_device`: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a ``torch.device`` (the one resolver of
  training, generation and evaluation; an unavailable or unknown device is a one-line error naming the option).
* :func:`derive_seed` and :func:`seed_everything`: well-mixed seeds for independent RNG streams; seeding of
  Python's, NumPy's and torch's global generators.
* :func:`global_rng_state` / :func:`set_global_rng_state`: those global generators' states as plain tensors and
  numbers (so a checkpoint holding them loads with ``torch.load(weights_only=True)``).
* :func:`make_adam`: Adam with the fused kernel where the torch build has one (GAN training, classifiers).
* :func:`ordered_map`: run a function over items on worker threads, results in order, memory bounded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from medgan.errors import MedganError


def resolve_device(name: str | torch.device, local_rank: int = 0, option: str = "--device") -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``;
    anything else as given. ``option`` names the setting in error messages."""
    if isinstance(name, torch.device):
        return name
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise MedganError(f"unknown device '{name}'; set {option} to auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedganError(f"{option} is {name} but CUDA is not available here; use {option} auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, rank, stream)``)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (weight initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    """The global generators' states (torch CPU and CUDA, NumPy, Python) as tensors and numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned (CUDA states only where the same GPUs are present)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters; CPU support since torch 2.4) where this torch
    build has it, else the default implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # torch < 2.4 on CPU, or a device without a fused Adam
        return torch.optim.Adam(params, lr=lr, betas=betas)


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
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
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medgan-worker") as ex:
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


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else the physical memory), or
    ``None`` where unknown."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None
