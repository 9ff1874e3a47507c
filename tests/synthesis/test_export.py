"""Tests for medgan.synthesis.export: augment() — output folders, interrupted runs, the filter hook, determinism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from medgan.errors import MedganError, OutputError
from medgan.synthesis import export as augment_mod
from medgan.synthesis.export import augment, read_manifest

N = 3


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
    assert calls["n"] == 3  # two batches were written (into the staging folder) before the failure
    assert not out.exists()  # the staging folder is gone, and so is the folder the run created
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
        np.testing.assert_array_equal(np.rint((bank.array_images.numpy() + 1) * 127.5).astype(np.uint8), x)
        assert torch.equal(bank.labels, y)
    t = RandSyntheticReplaced("image", "label", bank, prob=1.0, value_range="model").set_random_state(0)
    d = t({"image": torch.zeros(1, 28, 28), "label": 2})
    assert d["is_synthetic"] and any(torch.equal(d["image"], b) for b in bank.images[bank.labels == 2])


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_files_do_not_depend_on_batch_size_or_workers(tmp_path, breast, fmt):
    runs = [augment(breast, tmp_path / f"r{k}", n=9, format=fmt, seed=2, batch_size=bs, workers=w, progress=False)
            for k, (bs, w) in enumerate([(256, 1), (4, 3), (5, 2)])]
    files = sorted(p.relative_to(runs[0].out_dir) for p in runs[0].out_dir.rglob("*") if p.is_file())
    assert len(files) >= 3
    for r in runs[1:]:
        for rel in files:
            assert (runs[0].out_dir / rel).read_bytes() == (r.out_dir / rel).read_bytes(), rel


def test_bf16_run_is_repeatable_and_recorded(tmp_path, breast):
    import json

    a = augment(breast, tmp_path / "a", n=N, format="npz", seed=1, amp="bf16", progress=False)
    b = augment(breast, tmp_path / "b", n=N, format="npz", seed=1, amp="bf16", batch_size=2, progress=False)
    f = augment(breast, tmp_path / "f", n=N, format="npz", seed=1, progress=False)
    assert (a.out_dir / "synthetic.npz").read_bytes() == (b.out_dir / "synthetic.npz").read_bytes()
    assert json.loads((a.out_dir / "augment.json").read_text())["amp"] == "bf16"
    assert json.loads((f.out_dir / "augment.json").read_text())["amp"] == "off"
    xa = np.load(a.out_dir / "synthetic.npz")["train_images"].astype(int)
    xf = np.load(f.out_dir / "synthetic.npz")["train_images"].astype(int)
    assert 0 < np.abs(xa - xf).max() <= 26  # within ~10% of the range, usually a few levels


# ------------------------------------------------------------------------------ counterfactual pairs


def _tree(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("ckpt, fmt", [("breast", "png"), ("breast", "npz"), ("breast", "nifti"), ("breast", "dicom"),
                                       ("adrenal", "nifti"), ("adrenal", "npz"), ("adrenal", "dicom")])
def test_pairs_in_every_format_2d_and_3d(tmp_path, request, ckpt, fmt):
    import json

    from medgan.synthesis.outdir import PAIR_ID
    from medgan.synthesis.sampler import Sampler

    path = request.getfixturevalue(ckpt)
    res = augment(path, tmp_path / "a", n=3, pairs=True, format=fmt, seed=4, progress=False)
    names = Sampler.from_checkpoint(path).class_names
    assert res.pairs == 3 and res.n_samples == 3 * len(names) and "3 counterfactual pairs" in res.summary()
    rows = read_manifest(res.out_dir)
    assert tuple(rows[0]) == (*augment_mod.MANIFEST_COLUMNS, PAIR_ID)
    assert [int(r[PAIR_ID]) for r in rows] == [p for p in range(3) for _ in names]  # pair by pair
    for p in range(3):
        members = [r for r in rows if r[PAIR_ID] == str(p)]
        assert [r["class_name"] for r in members] == names  # one image of every class ...
        assert len({r["seed"] for r in members}) == 1  # ... from one latent
        if fmt != "npz":  # pair p is file p of every class folder
            assert {r["path"].split("/")[1].split(".")[0] for r in members} == {f"{p:06d}"}
    assert json.loads((res.out_dir / "augment.json").read_text())["pairs"] == 3
    # byte-for-byte repeatable with the seed (any batch size); another seed gives other pairs
    again = augment(path, tmp_path / "b", n=3, pairs=True, format=fmt, seed=4, batch_size=1, progress=False)
    assert _tree(res.out_dir) == _tree(again.out_dir)
    other = augment(path, tmp_path / "c", n=3, pairs=True, format=fmt, seed=5, progress=False)
    assert [r["seed"] for r in read_manifest(other.out_dir)] != [r["seed"] for r in rows]


def test_pairs_of_a_class_free_generator_are_identical_images(tmp_path):
    from helpers import classless_checkpoint, real_meta

    ck = classless_checkpoint(tmp_path / "free.pt", real_meta("breastmnist"))
    res = augment(ck, tmp_path / "o", n=4, pairs=True, format="npz", progress=False)
    with np.load(res.out_dir / "synthetic.npz") as z:
        x, y = z["train_images"], z["train_labels"][:, 0]
    assert y.tolist() == [0, 1] * 4
    np.testing.assert_array_equal(x[0::2], x[1::2])
    assert not np.array_equal(x[0], x[2])


def test_pair_redraws_in_the_manifest(tmp_path, breast):
    calls = []

    def flag_pair0_malignant_once(x, y):
        calls.append(1)
        m = torch.zeros(len(y), dtype=torch.bool)
        m[0] = len(calls) == 1
        return m

    res = augment(breast, tmp_path / "o", n=2, pairs=True, format="npz", filter_fn=flag_pair0_malignant_once,
                  progress=False)
    rows = read_manifest(res.out_dir)
    assert [r["near_copy_redraws"] for r in rows] == ["1", "1", "0", "0"] and res.redraws == 2
    assert rows[0]["seed"] == rows[1]["seed"]


@pytest.mark.parametrize("settings, message", [
    ({"n": 2, "classes": ["malignant"]}, "--pairs and --class exclude each other"),
    ({"balance": True}, "--pairs and --balance exclude each other"),
    ({}, "--pairs --n N"),
])
def test_pairs_refusals_are_one_line(tmp_path, breast, settings, message):
    from helpers import one_line_error

    one_line_error(augment, breast, tmp_path / "o", pairs=True, progress=False, match=message, **settings)
    assert not (tmp_path / "o").exists()


def test_pairs_refuse_a_class_the_generator_never_saw(tmp_path):
    from helpers import make_checkpoint, one_line_error, real_meta

    ck = make_checkpoint(tmp_path / "c.pt", {**real_meta("breastmnist"), "train_counts": [0, 50]})
    one_line_error(augment, ck, tmp_path / "o", n=2, pairs=True, progress=False, match="--pairs needs every class")
