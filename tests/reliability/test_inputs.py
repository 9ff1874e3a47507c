"""Inputs that used to exhaust memory, crash with a traceback or be silently accepted (issue 14, defects 2, 6
(non-finite images), 7 and 8): each is now refused before any work, with one line naming the problem and the fix
(or, for 16-bit colour PNGs, kept as the docs promise)."""

from __future__ import annotations

import resource
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from helpers import TINY_MODEL, make_checkpoint, one_line_error, tiny_cfg, write_png
from reliability.util import ROOT, one_line, phantom_meta, png16

from medgan.data.folder import load_csv, load_folder
from medgan.data.sources import load_dataset
from medgan.errors import CheckpointError, ConfigError, DatasetError, MedganError
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.export import augment
from medgan.training.checkpoint import load_checkpoint, save_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def _npz(path, labels, images=None, **extra):
    labels = np.asarray(labels)
    if images is None:
        images = np.random.default_rng(0).integers(0, 255, (len(labels), 8, 8), dtype=np.uint8)
    np.savez(path, train_images=images, train_labels=labels.reshape(-1, 1) if labels.ndim == 1 else labels, **extra)
    return path


# ------------------------------------------------------------------------------------------------- labels


def _limit_memory():  # runs in the child before exec: a regression fails with MemoryError instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_a_huge_label_is_refused_without_allocating_per_class(tmp_path):
    """Defect 2: one label of 2**40 made `medgan train` grow to 23.6 GB. Run bounded: 3 GB of address space and
    a timeout, so a regression fails quickly instead of taking the machine down."""
    labels = np.array([0, 1] * 10 + [2**40], dtype=np.int64)
    data = _npz(tmp_path / "huge.npz", labels)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "train": {"steps": 2, "progress": False}}))
    proc = subprocess.run([sys.executable, "-m", "medgan", "train", "--dataset", data, "--config", cfg, "--out",
                           tmp_path / "run"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                          preexec_fn=_limit_memory)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "train_labels[20] is 1099511627776, far beyond any number of classes" in one_line(proc.stderr)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("labels, message", [
    ([0, 9, 0, 9], "the labels take the values 0, 9, but class labels must be 0..K-1 without gaps"),
    ([0.5, 1.5, 0.5, 1.5], "train_labels[0] is 0.5; class labels must be whole numbers"),
    ([0.0, np.nan, 1.0, 1.0], "train_labels[1] is nan; class labels must be whole numbers"),
    (["a", "b", "a", "b"], "train_labels are <U1 (e.g. 'a'), not class indices"),
    ([0, -1, 1, 1], "train_labels[1] is -1; class labels must be 0..K-1 (no negative values)"),
    (np.zeros(0, dtype=np.int64), "holds no labelled images"),
])
def test_bad_npz_labels_are_one_line_errors(tmp_path, labels, message):
    n = len(labels)
    path = _npz(tmp_path / "x.npz", np.asarray(labels), np.zeros((n, 8, 8), np.uint8))
    one_line_error(load_dataset, str(path), match=message)


def test_whole_float_labels_are_accepted(tmp_path):
    data = load_dataset(str(_npz(tmp_path / "x.npz", np.array([0.0, 1.0] * 6))))
    assert data.class_names == ["0", "1"] and data.counts("train") + data.counts("val") + data.counts("test")


def test_a_checkpoint_with_classes_it_never_saw_is_not_sampled_for_them(tmp_path):
    """Defect 2: labels {0, 9} made 8 empty classes, and --balance wrote samples the generator never learned."""
    meta = phantom_meta(2, class_names=[str(i) for i in range(10)], train_counts=[5, 0, 0, 0, 0, 0, 0, 0, 0, 3])
    ck = make_checkpoint(tmp_path / "old.pt", meta)
    one_line_error(augment, ck, tmp_path / "o", balance=True, progress=False, match="never learned them")
    one_line_error(augment, ck, tmp_path / "o", n=2, progress=False, match="'1', '2', '3', '4', '5', '6', '7', '8'")
    res = augment(ck, tmp_path / "o", n=2, classes=["0", "9"], progress=False)
    assert res.counts == {"0": 2, "9": 2}


def test_csv_label_named_two_ways_is_refused(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", value=i)
    (tmp_path / "m.csv").write_text("path,label,class_name\n0.png,1,benign\n1.png,1,malignant\n2.png,0,x\n3.png,0,x\n")
    one_line_error(load_csv, tmp_path / "m.csv", match="label 1 is named 'benign' (row 2) and 'malignant' (row 3)")
    (tmp_path / "m.csv").write_text("path,label,class_name\n0.png,1,same\n1.png,1,same\n2.png,0,same\n3.png,0,same\n")
    one_line_error(load_csv, tmp_path / "m.csv", match="labels 0 and 1 are both named 'same'")


# ------------------------------------------------------------------------------------------------- images


def test_non_finite_images_are_named_before_training(tmp_path):
    """Defect 6: NaN/Inf pixels were reported as "losses became non-finite ... lower the learning rate"."""
    x = np.random.default_rng(0).random((12, 8, 8)).astype(np.float32)
    x[3, 2, 2] = np.nan
    x[7, 0, 0] = np.inf
    path = _npz(tmp_path / "nan.npz", np.array([0, 1] * 6), x)
    with pytest.raises(DatasetError, match=r"2 image\(s\) hold NaN or infinite values \(train_images\[3\], "
                                           r"train_images\[7\]\)"):
        train(tiny_cfg(data__dataset=str(path), train__steps=2), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder was written


def test_non_finite_voxels_in_a_nifti_file_name_the_file(tmp_path):
    for c in ("a", "b"):
        for i in range(2):
            vol = np.ones((6, 6, 4), np.float32) * i
            if (c, i) == ("b", 1):
                vol[1, 1, 1] = np.nan
            (tmp_path / "d" / c).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "d" / c / f"{i}.nii.gz")
    one_line_error(load_folder, tmp_path / "d", match=f"({tmp_path / 'd' / 'b' / '1.nii.gz'})")


def test_complex_images_are_refused(tmp_path):
    """Defect 8: complex-valued images were accepted and written back as complex64."""
    x = (np.ones((6, 8, 8)) + 1j).astype(np.complex64)
    one_line_error(load_dataset, str(_npz(tmp_path / "c.npz", np.array([0, 1] * 3), x)),
                   match="complex-valued images (complex64) are not supported")
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.complex64), np.eye(4)), tmp_path / "d" / c / "v.nii.gz")
    one_line_error(load_folder, tmp_path / "d", match="complex-valued images")


@pytest.mark.parametrize("channels, kept", [(3, 3), (4, 3), (2, 1)])
def test_16_bit_colour_pngs_keep_their_16_bit_values(tmp_path, channels, kept):
    """Defect 8: 48-bit RGB PNGs were reduced to 8 bits although the docs promise 16-bit values are kept."""
    rng = np.random.default_rng(channels)
    arrays = {}
    for c in ("a", "b"):
        for i in range(2):
            a = rng.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
            (tmp_path / c).mkdir(exist_ok=True)
            (tmp_path / c / f"{i}.png").write_bytes(png16(a))
            arrays[str(tmp_path / c / f"{i}.png")] = np.moveaxis(a[..., :kept], -1, 0)
    data = load_folder(tmp_path)
    sp = data.splits["train"]
    assert data.intensity.dtype == "uint16" and data.channels == kept
    for img, path in zip(sp.images, sp.paths, strict=True):
        np.testing.assert_array_equal(img, arrays[path])


# ------------------------------------------------------------------------------------------ synthetic folders


def test_manifest_rows_outside_their_folder_are_refused(tmp_path, ckpt2d, medgan_cli):
    """Defect 8: evaluate --synthetic and SyntheticBank.from_folder read `../../x.png` from anywhere."""
    out = tmp_path / "deep" / "syn"
    augment(ckpt2d, out, n=2, progress=False)
    write_png(tmp_path / "x.png", shape=(28, 28))
    text = (out / "manifest.csv").read_text().splitlines()
    first = text[1].split(",")
    text[1] = ",".join(["../../x.png", *first[1:]])
    (out / "manifest.csv").write_text("\n".join(text) + "\n")
    one_line_error(SyntheticBank.from_folder, out, match="row 2: path '../../x.png' points outside")
    r = medgan_cli("evaluate", "--dataset", "phantom2d", "--synthetic", out, "--seeds", 2, "--epochs", 1,
                   "--no-quality", "--no-privacy", "--out", tmp_path / "rep", "--quiet")
    assert r.returncode == 1 and "points outside" in one_line(r.stderr)


# ---------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("yaml_text, flags, key", [
    ("train: {ema_decay: 2.0}", [], "train.ema_decay"),
    ("train: {lr_g: -0.0002}", [], "train.lr_g"),
    ("model: {dropout: 1.5}", [], "model.dropout"),
    ("", ["--steps", "0"], "train.steps"),
    ("", ["--steps", "-5"], "train.steps"),
    ("", ["--batch-size", "0"], "train.batch_size"),
])
def test_bad_settings_are_usage_errors(tmp_path, medgan_cli, yaml_text, flags, key):
    """Defects 6, 7, 11: these were accepted (ema_decay 2.0), crashed (negative lr), exited 1 (batch size 0,
    dropout 1.5) or exited 0 printing a checkpoint path that does not exist (--steps 0/-5)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text + "\n")
    r = medgan_cli("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "run", *flags)
    assert r.returncode == 2
    assert f"invalid value for '{key}'" in one_line(r.stderr)
    assert "checkpoint" not in r.stdout and not (tmp_path / "run").exists()


def test_augment_batch_size_zero_is_a_usage_error(tmp_path, ckpt2d, medgan_cli):
    r = medgan_cli("augment", "--checkpoint", ckpt2d, "--out", tmp_path / "o", "--n", 1, "--batch-size", 0)
    assert r.returncode == 2 and "augment.batch_size" in one_line(r.stderr)


# ------------------------------------------------------------------------------------------------ checkpoints


def test_a_checkpoint_whose_config_is_a_string_is_refused(tmp_path, ckpt2d, medgan_cli):
    ck = torch.load(ckpt2d, weights_only=True)
    ck["config"] = "model: {}"
    torch.save(ck, tmp_path / "s.pt")
    r = medgan_cli("augment", "--checkpoint", tmp_path / "s.pt", "--out", tmp_path / "o", "--n", 1)
    assert r.returncode == 1 and "'config' is a str, not a mapping" in one_line(r.stderr)


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, ckpt2d, medgan_cli):
    """Defect 8: NaN weights wrote all-zero images and exited 0."""
    ck = load_checkpoint(ckpt2d)
    name = next(k for k, v in ck["ema_generator"].items() if v.is_floating_point())
    ck["ema_generator"][name] = torch.full_like(ck["ema_generator"][name], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in ck.items() if k not in ("format", "format_version")})
    r = medgan_cli("augment", "--checkpoint", tmp_path / "nan.pt", "--out", tmp_path / "o", "--n", 1)
    assert r.returncode == 1 and f"EMA generator weights hold NaN or infinite values (1 tensor(s), first '{name}')" \
        in one_line(r.stderr)
    assert not (tmp_path / "o").exists()
    one_line_error(SyntheticBank.from_checkpoint, tmp_path / "nan.pt", 2, match="hold NaN")


def test_resuming_from_nan_weights_is_refused(tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(train__steps=2), out)
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    name = next(iter(ck["discriminator"]))
    ck["discriminator"][name] = ck["discriminator"][name] * float("inf")
    from medgan.training.run import run_folder

    with run_folder(out):  # written as medgan's (a changed file in a run folder is refused before it is read)
        save_checkpoint(out / "checkpoints" / "last.pt", ck)
    with pytest.raises(CheckpointError, match="discriminator weights hold NaN"):
        train(tiny_cfg(train__steps=4), out, resume=True)


def test_bank_with_a_negative_count_is_one_line(ckpt2d):
    one_line_error(SyntheticBank.from_checkpoint, ckpt2d, n_per_class=-3, match="n_per_class must be a positive")


def test_the_unsafe_checkpoint_message_names_what_it_refused_in_whole_words(tmp_path):
    """Defect 11: the message cut torch's text mid-word."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": "medgan.checkpoint", "generator": Evil()}, tmp_path / "evil.pt")
    msg = one_line_error(load_checkpoint, tmp_path / "evil.pt", match="refused to load")
    assert f"(it references {os.system.__module__}.system)" in msg, msg


def _payloads(marker):
    """Five ways a pickle can run code when loaded; each would create ``marker``."""
    import builtins
    import importlib
    import os
    import subprocess as sp

    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (os.system, (cmd,)),
        "subprocess.call": (sp.call, (["touch", str(marker)],)),
        "builtins.eval": (builtins.eval, (code,)),
        "builtins.exec": (builtins.exec, (code,)),
        "importlib.import_module": (importlib.import_module, ("this",)),
    }


@pytest.mark.parametrize("kind", ["os.system", "subprocess.call", "builtins.eval", "builtins.exec",
                                  "importlib.import_module"])
def test_malicious_checkpoints_never_run_code(tmp_path, kind, medgan_cli):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[kind]

    class Evil:
        def __reduce__(self):
            return payload

    torch.save({"format": "medgan.checkpoint", "format_version": 1, "config": {}, "data": {}, "generator": Evil()},
               tmp_path / "evil.pt")
    r = medgan_cli("augment", "--checkpoint", tmp_path / "evil.pt", "--out", tmp_path / "o", "--n", 1)
    assert r.returncode == 1 and "refused to load" in one_line(r.stderr)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_config_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        tiny_cfg(train__ema_decay=1.0)
    with pytest.raises(MedganError):
        tiny_cfg(model__dropout=-0.1)
