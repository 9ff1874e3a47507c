"""Fixtures of the reliability tests: tiny checkpoints that need no shared data, a small real file system, a
process that holds a folder's lock, and `medgan` run as a child process (for signals and `kill -9`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import make_checkpoint
from reliability.util import phantom_meta


@pytest.fixture(scope="session")
def ckpt2d(tmp_path_factory) -> Path:
    """A tiny generator checkpoint for phantom2d (3 classes, 28x28 uint8)."""
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "p2.pt", phantom_meta(2))


def _mount(target: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"medgan-test-{uuid.uuid4().hex[:8]}",
                           str(target)], capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(size_bytes, readonly=False)``: a real tmpfs of that size, unmounted after the test; skips
    where mounting is not allowed (not root, or a container without CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def make(size: int, readonly: bool = False) -> Path:
        target = tmp_path / f"fs{len(mounted)}"
        if not _mount(target, f"size={int(size)}" + (",ro" if readonly else "")):
            pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
        mounted.append(target)
        return target

    yield make
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture
def lock_holder():
    """``lock_holder(folder)``: a child process that takes medgan's lock on ``folder`` and holds it until the
    test ends (or until the test kills it with ``stop``); returns the process."""
    procs: list[subprocess.Popen] = []

    def hold(folder: Path) -> subprocess.Popen:
        code = ("import sys; from medgan.locks import FolderLock; "
                f"lock = FolderLock({str(folder)!r}, 'medgan test holder').acquire(); "
                "print('locked', flush=True); sys.stdin.read()")
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield hold
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=60)
