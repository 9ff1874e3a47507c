"""Interrupts and runs that stop early (issue 14, defects 6 and 9): Ctrl-C exits 130 and leaves nothing that looks
complete; a run that stopped before its first checkpoint can be started again (or resumed); stale temporaries of
an interrupted checkpoint write are removed."""

from __future__ import annotations

import json
import signal
import time

import pytest
from helpers import tiny_cfg
from reliability.util import medgan_proc, stop

from medgan.errors import TrainingError
from medgan.synthesis import outdir
from medgan.synthesis.export import augment, read_manifest
from medgan.training.checkpoint import load_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def test_ctrl_c_in_train_exits_130_and_saves_a_checkpoint(tmp_path, medgan_cli, tiny_yaml, monkeypatch):
    """Defect 9: Ctrl-C made `medgan train` exit 0."""
    from medgan.training.trainer import Trainer

    calls = {"n": 0}
    orig = Trainer.train_step

    def step(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    r = medgan_cli("train", "--dataset", "phantom2d", "--config", tiny_yaml, "--out", tmp_path / "run",
                   "--steps", 50)
    assert r.returncode == 130 and "medgan: interrupted" in r.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_ctrl_c_in_augment_exits_130_and_keeps_the_previous_run(tmp_path, ckpt2d, medgan_cli, monkeypatch):
    """Defect 9: Ctrl-C made `medgan augment` exit 0, so `augment ... && next-step` went on with a half-written
    folder."""
    out = tmp_path / "o"
    augment(ckpt2d, out, n=2, progress=False)
    before = sorted(p.name for p in out.rglob("*"))
    from medgan.synthesis.writers import PngWriter

    monkeypatch.setattr(PngWriter, "encode", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    r = medgan_cli("augment", "--checkpoint", ckpt2d, "--out", out, "--n", 5, "--overwrite", "--quiet")
    assert r.returncode == 130 and "medgan: interrupted" in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == before and len(read_manifest(out)) == 6


def test_sigint_to_a_real_augment_process(tmp_path, ckpt2d):
    out = tmp_path / "o"
    augment(ckpt2d, out, n=2, progress=False)
    proc = medgan_proc("augment", "--checkpoint", ckpt2d, "--out", out, "--n", 200000, "--batch-size", 64,
                       "--overwrite", "--quiet")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list((out / outdir.STAGING).rglob("*.png"))) < 50:
            time.sleep(0.05)
    finally:
        _, err = stop(proc, signal.SIGINT)
    assert proc.returncode == 130 and "medgan: interrupted" in err, err
    assert not (out / outdir.STAGING).exists() and len(read_manifest(out)) == 6  # staging removed, old run kept


def test_a_run_that_failed_before_its_first_checkpoint_can_start_again(tmp_path, monkeypatch):
    """Defect 6: such a folder was accepted neither by a new run nor by --resume."""
    from medgan.training import losses

    orig = losses.BCELoss.d_loss
    monkeypatch.setattr(losses.BCELoss, "d_loss", lambda self, *a, **k: orig(self, *a, **k) * float("nan"))
    cfg = tiny_cfg(train__steps=4, train__checkpoint_every=0, train__log_every=1)
    with pytest.raises(TrainingError, match="no checkpoint was written before it"):
        train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    with pytest.raises(TrainingError):
        train(cfg, tmp_path / "run", resume=True)  # --resume of such a folder starts it over, too
    monkeypatch.undo()
    res = train(cfg, tmp_path / "run")
    assert res.step == 4 and res.checkpoint.is_file()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # nothing of the failed run's metrics left


def test_a_run_killed_before_its_first_checkpoint_can_start_again(tmp_path, monkeypatch):
    """As kill -9 after some steps: no handler saves a checkpoint (SystemExit is not caught by the run)."""
    from medgan.training.trainer import Trainer

    orig = Trainer.train_step
    calls = {"n": 0}

    def step(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise SystemExit("killed")
        return orig(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(tiny_cfg(train__steps=20, train__checkpoint_every=10), out)
    monkeypatch.undo()
    assert (out / "metrics.jsonl").exists() and not (out / "checkpoints" / "last.pt").exists()
    (out / "checkpoints" / ".last.pt.x8z1q0.tmp").write_bytes(b"\0" * 100)  # as a write cut by the kill
    res = train(tiny_cfg(train__steps=2), out)
    assert res.checkpoint.is_file() and load_checkpoint(res.checkpoint)["step"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt", "step_2.pt"]


def test_resume_removes_the_temporary_of_an_interrupted_checkpoint_write(tmp_path):
    """Defect 4: a crashed checkpoint write left a `.last.pt.*.tmp` that --resume never removed."""
    out = tmp_path / "run"
    train(tiny_cfg(train__steps=2), out)
    stale = out / "checkpoints" / ".last.pt.k2j4x9.tmp"
    stale.write_bytes(b"\0" * 4096)
    (out / ".config.yaml.a1b2.tmp").write_text("x")
    res = train(tiny_cfg(train__steps=4), out, resume=True)
    assert res.step == 4 and not stale.exists() and not (out / ".config.yaml.a1b2.tmp").exists()
