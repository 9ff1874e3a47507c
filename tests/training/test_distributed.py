"""Tests for medgan.training.distributed: DDP on CPU with 2 gloo processes and torchrun (slow)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_cfg

from medgan.training.checkpoint import load_checkpoint


def _tiny_data(seed: int = 0):
    """A small 2-class RealData of random 28x28 images (fast to build in every process)."""
    from medgan.data.dataset import Intensity, RealData, Split
    from medgan.data.preprocess import prepare

    rs = np.random.RandomState(seed)
    splits = {}
    for s, n in (("train", 40), ("val", 8), ("test", 8)):
        imgs = rs.randint(0, 256, size=(n, 1, 28, 28)).astype(np.uint8)
        labels = np.array([i % 2 for i in range(n)], dtype=np.int64)
        splits[s] = Split(imgs, labels)
    data = RealData("tiny", "npz", ["a", "b"], 2, 1, splits, Intensity(0.0, 255.0, "uint8"))
    return prepare(data, 28)


def _worker(rank: int, store: str, result_dir: str) -> None:
    import torch.distributed as dist

    from medgan.training.distributed import DistInfo
    from medgan.training.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        tr = Trainer(tiny_cfg(train__diffaugment__adaptive=True, train__diffaugment__adjust_every=1, train__r1_gamma=1.0,
                             train__r1_every=2, train__feature_matching=1.0, train__d_steps=2,
                             train__augment_real="classical"),
                     _tiny_data(), dist=DistInfo(rank, 2, 0))
        shard = tr.batches.indices.clone()
        tr.run(3)
        g = torch.cat([p.detach().flatten() for p in tr.G.parameters()])
        d = torch.cat([p.detach().flatten() for p in tr.D.parameters()])
        torch.save({"g": g, "d": d, "shard": shard, "ada_p": tr.ada.p,
                    "real_aug": tr.real_aug.generator.get_state()}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # each rank drew from its own half of the data, yet the weights are identical: gradients were all-reduced
    assert set(r0["shard"].tolist()).isdisjoint(r1["shard"].tolist())
    assert sorted(r0["shard"].tolist() + r1["shard"].tolist()) == list(range(40))
    assert torch.equal(r0["g"], r1["g"]) and torch.equal(r0["d"], r1["d"])
    assert r0["ada_p"] == r1["ada_p"]
    assert not torch.equal(r0["real_aug"], r1["real_aug"])  # each rank augments its real batches from its own stream
    init = tiny_cfg()  # and they did train (weights moved away from the seeded initialisation)
    from medgan.models import build_generator

    torch.manual_seed(init.train.seed)
    g0 = build_generator(init.model, 2, 1, 28, 2)
    assert not torch.equal(torch.cat([p.detach().flatten() for p in g0.parameters()]), r0["g"])


@pytest.mark.slow
def test_torchrun_cli_rank0_writes(tmp_path, tiny_yaml):
    x = np.random.RandomState(0).randint(0, 256, size=(48, 28, 28)).astype(np.uint8)
    y = (np.arange(48) % 2).astype(np.uint8)[:, None]
    np.savez(tmp_path / "tiny.npz", train_images=x[:32], train_labels=y[:32], val_images=x[32:40],
             val_labels=y[32:40], test_images=x[40:], test_labels=y[40:])
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medgan",
         "train", "--dataset", str(tmp_path / "tiny.npz"), "--out", str(out), "--config", str(tiny_yaml),
         "--steps", "3"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 3 and ck["state"]["world_size"] == 2
    assert proc.stdout.count("checkpoint:") == 1  # only rank 0 reports (and writes)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt", "step_2.pt"]
