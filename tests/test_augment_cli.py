"""`medgan augment`: CLI behaviour, one-line errors, refusal/overwrite, interrupted runs, balance, filter hook."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from _synth_helpers import cached_checkpoint

from medgan.errors import MedganError, OutputError
from medgan.synthesis import export as augment_mod
from medgan.synthesis.export import MANIFEST_COLUMNS, augment, read_manifest


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory, "breastmnist")


@pytest.fixture(scope="module")
def adrenal(tmp_path_factory):
    return cached_checkpoint(tmp_path_factory, "adrenalmnist3d")


@pytest.fixture
def run_cli(medgan_cli):
    """``medgan augment ARGS`` in-process (see conftest)."""
    return lambda *args: medgan_cli("augment", *args)


def test_cli_writes_manifest_with_provenance(tmp_path, breast, run_cli):
    out = tmp_path / "o"
    r = run_cli("--checkpoint", breast, "--out", out, "--n", 4, "--class", "malignant", "--seed", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "wrote 4 png samples (malignant: 4)" in r.stdout
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == 4 and {r["class_name"] for r in rows} == {"malignant"}
    from medgan.io import default_file_mode

    assert (out / "manifest.csv").stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's owner-only 0o600
    from medgan.io import file_sha256

    sha = file_sha256(breast)
    for k, row in enumerate(rows):
        assert (out / row["path"]).is_file()
        assert row["checkpoint_sha256"] == sha and row["generator_step"] == "7" and row["medgan_version"] == "0.1.0"
        assert row["near_copy_redraws"] == "0" and row["index"] == str(k) and int(row["seed"]) >= 0
    assert len({r["seed"] for r in rows}) == 4


@pytest.mark.parametrize("args, message", [
    (["--n", 2, "--class", "benign"], "unknown class 'benign'; valid classes (index=name): 0='malignant', 1='normal, benign'"),
    (["--n", 0], "--n must be a positive number"),
    (["--n", -3], "--n must be a positive number"),
    (["--n", 10**12], "GB are free"),
    ([], "--n N (per class) or --balance"),
    (["--n", 2, "--format", "tiff"], "invalid value for 'augment.format'"),
    (["--n", 2, "--device", "bogus"], "unknown device 'bogus'"),
    (["--n", 2, "--amp", "fp16"], "augment.amp"),
    (["--n", 2, "--workers", -1], "augment.workers"),
])
def test_cli_bad_input_is_one_line(tmp_path, breast, args, message, run_cli):
    r = run_cli("--checkpoint", breast, "--out", tmp_path / "o", *args)
    assert r.returncode in (1, 2)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("medgan: error:"), r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_checkpoints_and_geometry(tmp_path, breast, adrenal, run_cli):
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(breast.read_bytes()[:2000])
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(1)}, other)
    cases = [(tmp_path / "missing.pt", "checkpoint not found"), (trunc, "truncated"),
             (other, "not a medgan checkpoint")]
    for ckpt, msg in cases:
        r = run_cli("--checkpoint", ckpt, "--out", tmp_path / "o", "--n", 1)
        assert r.returncode == 1 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run_cli("--checkpoint", adrenal, "--out", tmp_path / "o3", "--n", 1, "--format", "png")
    assert r.returncode == 1 and "use --format nifti, npz or dicom" in r.stderr
    assert not (tmp_path / "o3").exists()


def test_newer_checkpoint_format_is_refused(tmp_path, breast):
    ck = torch.load(breast, weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, tmp_path / "new.pt")
    with pytest.raises(MedganError, match="newer than this medgan understands"):
        augment(tmp_path / "new.pt", tmp_path / "o", n=1, progress=False)


def test_unwritable_output_folder(tmp_path, breast):
    if os.geteuid() == 0:
        target = tmp_path / "file"
        target.write_text("x")  # root ignores permissions: use a path below a regular file instead
        out = target / "sub"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "sub"
    with pytest.raises(OutputError, match="choose a writable --out|not a folder"):
        augment(breast, out, n=1, progress=False)


def test_non_empty_folder_refused_then_overwritten(tmp_path, breast, run_cli):
    out = tmp_path / "o"
    augment(breast, out, n=3, progress=False)
    before = sorted(p.name for p in out.rglob("*.png"))
    r = run_cli("--checkpoint", breast, "--out", out, "--n", 1)
    assert r.returncode == 1 and "is not empty; pass --overwrite" in r.stderr
    assert sorted(p.name for p in out.rglob("*.png")) == before  # untouched
    (out / "notes.txt").write_text("mine")
    augment(breast, out, n=1, overwrite=True, progress=False)
    assert len(list(out.rglob("*.png"))) == 2  # old synthetic files replaced, not accumulated
    assert (out / "notes.txt").read_text() == "mine"  # files medgan did not write stay
    assert len(read_manifest(out)) == 2


def test_balance_tops_up_to_majority(tmp_path, breast):
    res = augment(breast, tmp_path / "o", balance=True, format="npz", progress=False)
    assert res.counts == {"malignant": 399 - 147}  # BreastMNIST train counts 147 / 399
    with np.load(tmp_path / "o" / "synthetic.npz") as z:
        assert (z["train_labels"] == 0).all() and len(z["train_labels"]) == 252
    with pytest.raises(MedganError, match="exclude each other"):
        augment(breast, tmp_path / "p", n=3, balance=True, progress=False)
    with pytest.raises(MedganError, match="nothing to balance"):
        augment(breast, tmp_path / "q", balance=True, classes=["normal, benign"], progress=False)


def _assert_manifest_consistent(out):
    if (out / "manifest.csv").exists():
        for row in read_manifest(out):
            assert (out / row["path"]).is_file(), row["path"]


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_failure_inside_the_writer_loop_leaves_no_manifest(tmp_path, breast, monkeypatch, fmt):
    out = tmp_path / "o"
    writer_cls = augment_mod.writer_for(fmt)
    calls = {"n": 0}
    original = writer_cls.write_batch

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        return original(self, *a, **k)

    monkeypatch.setattr(writer_cls, "write_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        augment(breast, out, n=20, format=fmt, batch_size=4, progress=False)
    assert not (out / "manifest.csv").exists()
    assert not list(out.glob(".*.tmp"))  # temporary manifest / npz removed
    assert not (out / "synthetic.npz").exists()
    if fmt == "png":
        assert len(list(out.rglob("*.png"))) == 8  # two batches were written before the failure
    monkeypatch.undo()
    augment(breast, out, n=2, format=fmt, overwrite=True, progress=False)  # a re-run cleans up
    _assert_manifest_consistent(out)


def test_killed_run_leaves_no_manifest_pointing_at_missing_files(tmp_path, breast):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "medgan", "augment", "--checkpoint", str(breast), "--out",
                             str(out), "--n", "200000", "--batch-size", "64", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(out.rglob("*.png"))) < 50:
            time.sleep(0.1)
        assert len(list(out.rglob("*.png"))) >= 50, "the run did not start writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.csv").exists()
    _assert_manifest_consistent(out)
    assert all(p.stat().st_size > 0 for p in out.rglob("*.png"))  # no half-written file under a final name


def test_filter_hook_records_redraws(tmp_path, breast):
    plain = augment(breast, tmp_path / "a", n=3, format="npz", progress=False)
    seen = {"calls": 0}

    def reject_first_pass_of_class1(x, y):
        seen["calls"] += 1
        assert x.min() >= -1 and x.max() <= 1  # model space
        return (y == 1) & (seen["calls"] == 1)

    res = augment(breast, tmp_path / "b", n=3, format="npz", filter_fn=reject_first_pass_of_class1, progress=False)
    a, b = read_manifest(plain.out_dir), read_manifest(res.out_dir)
    assert [r["near_copy_redraws"] for r in b] == ["0", "0", "0", "1", "1", "1"]
    assert res.redraws == 3
    assert [r["seed"] for r in a[:3]] == [r["seed"] for r in b[:3]]
    assert all(ra["seed"] != rb["seed"] for ra, rb in zip(a[3:], b[3:], strict=True))
    with np.load(tmp_path / "a" / "synthetic.npz") as za, np.load(tmp_path / "b" / "synthetic.npz") as zb:
        np.testing.assert_array_equal(za["train_images"][:3], zb["train_images"][:3])
        assert (za["train_images"][3:] != zb["train_images"][3:]).any()


def test_end_to_end_with_a_trained_phantom_checkpoint(tmp_path):
    """A real few-step `medgan train` checkpoint: augment to every 2D format, read back, bank, transform."""
    from medgan.config import load_config
    from medgan.synthesis.bank import SyntheticBank
    from medgan.synthesis.sampler import Sampler
    from medgan.synthesis.transforms import RandSyntheticReplaced
    from medgan.training.run import train

    cfg = load_config(None, {"data.dataset": "phantom2d", "train.steps": 3, "train.batch_size": 16,
                             "train.sample_every": 0, "train.progress": False, "model.base_channels": 8,
                             "model.latent_dim": 16, "model.embed_dim": 4})
    res = train(cfg, tmp_path / "run")
    ckpt = res.checkpoint
    x, y = Sampler.from_checkpoint(ckpt).sample(4, out="source")
    for fmt in ("png", "npz", "nifti", "dicom"):
        out = augment(ckpt, tmp_path / fmt, n=4, format=fmt, progress=False)
        assert out.counts == {"few_large": 4, "many_small": 4, "single_bright": 4}
        rows = read_manifest(out.out_dir)
        assert all(r["generator_step"] == "3" for r in rows)
        bank = SyntheticBank.from_folder(out.out_dir)
        np.testing.assert_array_equal(np.rint((bank.images.numpy() + 1) * 127.5).astype(np.uint8), x)
        assert torch.equal(bank.labels, y)
    t = RandSyntheticReplaced("image", "label", bank, prob=1.0).set_random_state(0)
    d = t({"image": torch.zeros(1, 28, 28), "label": 2})
    assert d["is_synthetic"] and any(torch.equal(d["image"], b) for b in bank.images[bank.labels == 2])


def test_cli_amp_and_workers(tmp_path, breast, run_cli):
    out = tmp_path / "o"
    r = run_cli("--checkpoint", breast, "--out", out, "--n", 5, "--format", "npz", "--amp", "bf16", "--workers", 2,
                "--batch-size", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads((out / "augment.json").read_text())["amp"] == "bf16"
    assert len(read_manifest(out)) == 10
