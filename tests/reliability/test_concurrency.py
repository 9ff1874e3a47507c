"""Two processes on one folder (issue 14, defect 3): a real lock (flock) refuses the second one with one line
naming the first; a lock left by a dead process never blocks; runs never mix their files."""

from __future__ import annotations

import json
import os

import pytest
from helpers import tiny_cfg
from reliability.util import medgan_proc, one_line, stop

from medgan.errors import OutputError
from medgan.io import file_sha256
from medgan.locks import LOCK_NAME, FolderLock
from medgan.synthesis.export import augment, read_manifest
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def test_augment_into_a_folder_in_use_is_refused_naming_the_holder(tmp_path, ckpt2d, lock_holder, medgan_cli):
    out = tmp_path / "o"
    holder = lock_holder(out)
    r = medgan_cli("augment", "--checkpoint", ckpt2d, "--out", out, "--n", 1, "--overwrite", "--quiet")
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert f"is in use by pid {holder.pid}" in msg and "medgan test holder" in msg and "another --out" in msg
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    stop(holder)  # kill -9: the kernel releases the lock; the stale lock file stays behind
    assert (out / LOCK_NAME).exists()
    augment(ckpt2d, out, n=1, progress=False)  # the stale lock does not block
    assert not (out / LOCK_NAME).exists() and len(read_manifest(out)) == 3


def test_train_into_a_folder_in_use_is_refused(tmp_path, lock_holder):
    out = tmp_path / "run"
    holder = lock_holder(out)
    with pytest.raises(OutputError, match=f"in use by pid {holder.pid}"):
        train(tiny_cfg(train__steps=2), out)
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    stop(holder)
    res = train(tiny_cfg(train__steps=2), out)
    assert res.checkpoint.is_file() and not (out / LOCK_NAME).exists()


def test_lock_is_exclusive_within_a_process_too_and_released(tmp_path):
    with FolderLock(tmp_path / "x", "first"):
        with pytest.raises(OutputError, match=f"in use by pid {os.getpid()} \\(first"):
            FolderLock(tmp_path / "x", "second").acquire()
    assert not (tmp_path / "x").exists()  # the lock made the folder and nothing was written: removed again
    with FolderLock(tmp_path / "x", "third"):
        pass


def test_two_augments_racing_into_one_folder_never_mix(tmp_path, ckpt2d):
    """Two `augment --overwrite` at once: one may be refused, but the folder always holds exactly one run."""
    out = tmp_path / "o"
    augment(ckpt2d, out, n=3, seed=1, progress=False)
    procs = [medgan_proc("augment", "--checkpoint", ckpt2d, "--out", out, "--n", n, "--seed", seed, "--overwrite",
                         "--quiet", "--batch-size", 16) for n, seed in ((100, 2), (60, 3))]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        results.append((p.returncode, stderr))
    for code, err in results:
        assert code == 0 or (code == 1 and "is in use by pid" in one_line(err)), err
    rows = read_manifest(out)
    info = json.loads((out / "augment.json").read_text())
    assert info["manifest_sha256"] == file_sha256(out / "manifest.csv")
    assert {r["seed"] for r in rows} and len(rows) == sum(info["counts"].values())
    winner = info["seed"]
    assert len(rows) == {2: 300, 3: 180}[winner]
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert on_disk == sorted(r["path"] for r in rows)  # files of one run only, none of the other's
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging, no lock left
