"""Full and read-only disks (issue 14, defect 7): one line instead of `OSError: [Errno 28/30]` or torch's
`RuntimeError ... inline_container.cc`; no partial files that look complete; the run can go on afterwards.

Each case runs on a real small tmpfs where this machine allows mounting one (root with CAP_SYS_ADMIN; skipped
otherwise), and again with the write failing through a patched file layer, which runs everywhere."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from helpers import tiny_cfg, write_png
from reliability.util import one_line

from medgan.errors import OutputError
from medgan.synthesis import export, outdir
from medgan.synthesis.export import augment, read_manifest
from medgan.training.checkpoint import load_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullAfter:
    """A file whose writes fail with ENOSPC once ``limit`` bytes were written (what the kernel does)."""

    def __init__(self, f, limit: int) -> None:
        self.f, self.left = f, limit

    def write(self, b) -> int:
        if len(b) > self.left:
            _enospc()
        self.left -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _full_checkpoint_writes(monkeypatch, from_call: int = 1) -> None:
    """Checkpoint writes (``.last.pt.*.tmp``) hit a full disk from the ``from_call``-th one on."""
    real_fdopen = os.fdopen
    calls = {"n": 0}

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] >= from_call:
                return _FullAfter(f, 10_000)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)


# ----------------------------------------------------------------------------------------------------- augment


def _check_augment_disk_full(out, run_cli):
    r = run_cli()
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert "No space left on device" in msg and "is as it was" in msg
    assert len(read_manifest(out)) == 6 and not (out / outdir.STAGING).exists()  # previous run complete, no partials
    samples = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert samples == sorted(r["path"] for r in read_manifest(out))


def test_disk_full_in_augment_on_a_real_small_filesystem(small_fs, ckpt2d, medgan_cli, monkeypatch):
    out = small_fs(256 * 1024) / "syn"
    augment(ckpt2d, out, n=2, progress=False)
    args = ("augment", "--checkpoint", ckpt2d, "--out", out, "--n", 200, "--overwrite", "--quiet")
    r = medgan_cli(*args)  # the free-space estimate refuses first, before writing anything
    assert r.returncode == 1 and "GB are free" in one_line(r.stderr)
    monkeypatch.setattr(export, "_check_space", lambda *a: None)  # now the kernel has to say it
    _check_augment_disk_full(out, lambda: medgan_cli(*args))


def test_disk_full_in_augment_patched(tmp_path, ckpt2d, medgan_cli, monkeypatch):
    out = tmp_path / "syn"
    augment(ckpt2d, out, n=2, progress=False)
    from medgan.synthesis import writers

    real, calls = writers.write_bytes_fast, {"n": 0}

    def write(path, data):
        calls["n"] += 1
        if calls["n"] > 40:
            _enospc()
        real(path, data)

    monkeypatch.setattr(writers, "write_bytes_fast", write)
    _check_augment_disk_full(out, lambda: medgan_cli("augment", "--checkpoint", ckpt2d, "--out", out, "--n", 50,
                                                     "--overwrite", "--quiet"))


# ------------------------------------------------------------------------------------------------------- train


def _check_train_disk_full(out, run, kept: str):
    with pytest.raises(OutputError) as ei:
        run()
    msg = str(ei.value)
    assert "\n" not in msg and "No space left on device writing" in msg and "last.pt" in msg and kept in msg, msg
    assert not list(out.rglob("*.tmp"))  # no temporary of the failed write left


def test_disk_full_in_train_on_a_real_small_filesystem(small_fs):
    out = small_fs(160 * 1024) / "run"
    cfg = tiny_cfg(train__steps=2, train__sample_every=0, train__collapse_every=0)
    _check_train_disk_full(out, lambda: train(cfg, out), "no checkpoint was written yet")
    # more space (as a user would free some): the same command starts the run over in the same folder
    subprocess.run(["mount", "-o", "remount,size=2m", str(out.parent)], check=True)
    assert train(cfg, out).checkpoint.is_file()


def test_disk_full_in_train_patched_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = tiny_cfg(train__steps=4, train__checkpoint_every=2, train__sample_every=0, train__collapse_every=0)
    _full_checkpoint_writes(monkeypatch, from_call=1)
    _check_train_disk_full(out, lambda: train(cfg, out), "no checkpoint was written yet")
    monkeypatch.undo()
    _full_checkpoint_writes(monkeypatch, from_call=2)  # the step-2 checkpoint fits, the step-4 one does not
    _check_train_disk_full(out, lambda: train(cfg, out), "the last good checkpoint is")
    monkeypatch.undo()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2
    assert train(cfg, out, resume=True).step == 4


# --------------------------------------------------------------------------------------------------- read-only


@pytest.fixture
def readonly(small_fs, tmp_path):
    """A read-only folder: a read-only tmpfs as root (permissions do not stop root), else a 0o500 folder."""
    if os.geteuid() == 0:
        return small_fs(64 * 1024, readonly=True)
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d


def test_read_only_out_is_one_line_for_every_command(readonly, ckpt2d, medgan_cli, tiny_yaml):
    runs = {
        "train": ("train", "--dataset", "phantom2d", "--config", tiny_yaml, "--out", readonly / "run"),
        "evaluate": ("evaluate", "--dataset", "phantom2d", "--arms", "baseline", "--seeds", 2, "--epochs", 1,
                     "--no-quality", "--no-privacy", "--out", readonly / "rep", "--quiet"),
        "info --grid": ("info", "dataset", "phantom2d", "--grid", readonly / "grid.png"),
        "augment": ("augment", "--checkpoint", ckpt2d, "--out", readonly / "syn", "--n", 1),
    }
    for name, args in runs.items():
        r = medgan_cli(*args)
        assert r.returncode == 1, (name, r.stderr)
        msg = one_line(r.stderr)
        assert ("Read-only file system" in msg or "Permission denied" in msg) and "writable" in msg, (name, msg)


def test_a_user_file_in_the_way_of_info_grid(tmp_path, medgan_cli):
    write_png(tmp_path / "f.png")
    r = medgan_cli("info", "dataset", "phantom2d", "--grid", tmp_path / "f.png" / "grid.png")
    assert r.returncode == 1 and "cannot write the grid" in one_line(r.stderr)
