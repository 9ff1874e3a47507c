"""medgan.runtime: device resolution, seeds, global RNG state, ordered worker threads."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch

from medgan.errors import MedganError
from medgan.runtime import (
    derive_seed,
    global_rng_state,
    ordered_map,
    resolve_device,
    seed_everything,
    set_global_rng_state,
)


def test_resolve_device_names_the_option_in_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(MedganError, match="train.device is cuda but CUDA is not available"):
            resolve_device("cuda", option="train.device")
    with pytest.raises(MedganError, match="unknown device 'tpu9'; set evaluate.device to auto, cpu or cuda"):
        resolve_device("tpu9", option="evaluate.device")


def test_derive_seed_is_deterministic_and_mixes_every_part():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(1, 2, 3), derive_seed(1, 2, 4), derive_seed(2, 2, 3), derive_seed(1, 3, 3)}) == 4
    assert 0 <= derive_seed(2**40, 7) < 2**63


def test_global_rng_state_round_trips_every_generator():
    seed_everything(5)
    state = global_rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(99)
    set_global_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a
    assert isinstance(state["numpy"]["keys"], torch.Tensor)  # checkpoint-safe: tensors and numbers only


def test_ordered_map_keeps_order_bounds_memory_and_restores_threads():
    threads = torch.get_num_threads()
    seen = []
    lock = threading.Lock()

    def work(i):
        with lock:
            seen.append(torch.get_num_threads())
        return i * i

    assert list(ordered_map(work, list(range(20)), workers=3)) == [i * i for i in range(20)]
    assert set(seen) == {1} and torch.get_num_threads() == threads
    it = ordered_map(work, list(range(20)), workers=2)
    next(it)
    it.close()  # a consumer that stops early still gets the thread count back
    assert torch.get_num_threads() == threads
