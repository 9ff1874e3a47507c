"""Crashes after work started, and messages (issue 21, defects 19-24, 26, 27): inputs that failed only once the run
folder existed are refused before it is made, crafted checkpoints and library arguments are one-line errors before
anything is allocated, and the messages say what the user must do."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SAMPLES_DIR, tiny_cfg
from reliability.util import ROOT, one_line

from medgan.errors import CheckpointError, MedganError
from medgan.synthesis.sampler import Sampler
from medgan.training.checkpoint import save_checkpoint
from medgan.training.run import train

pytestmark = pytest.mark.usefixtures("fast_phantoms")


def _gray(n: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 255, (n, 28, 28)).astype(np.uint8)


# ------------------------------------------------------------------------------------- 19: train after the folder


def test_an_empty_validation_split_skips_quality_tracking_with_a_warning(tmp_path, capsys):
    """Defect 19: `torch.cat(): expected a non-empty list` in quality tracking, after the run folder was made."""
    tr, lab = _gray(20), np.arange(20) % 2
    p = tmp_path / "noval.npz"
    np.savez(p, train_images=tr, train_labels=lab, val_images=tr[:0], val_labels=lab[:0], test_images=tr[:4],
             test_labels=lab[:4])
    res = train(tiny_cfg(data__dataset=str(p), train__eval_every=2, train__steps=2), tmp_path / "run")
    assert res.checkpoint.is_file()
    assert "quality tracking is skipped: the dataset has no validation images" in capsys.readouterr().err


def test_a_class_without_validation_images_is_not_tracked_but_the_run_goes_on(tmp_path, capsys):
    tr, lab = _gray(20), np.arange(20) % 2
    p = tmp_path / "oneval.npz"
    np.savez(p, train_images=tr, train_labels=lab, val_images=tr[:3], val_labels=np.array([1, 1, 1]),
             test_images=tr[:4], test_labels=lab[:4])
    res = train(tiny_cfg(data__dataset=str(p), train__eval_every=2, train__steps=2), tmp_path / "run")
    assert "quality tracking cannot measure class(es) '0'" in capsys.readouterr().err
    assert np.isnan(res.metrics["q_fd"][0]) and np.isfinite(res.metrics["q_fd"][1])


def test_eight_dicom_slices_in_two_class_folders_train(tmp_path, capsys):
    """Defect 19: 8 DICOM slices in two class folders (stratified split: no validation image) crashed tracking."""
    src = SAMPLES_DIR / "dicom" / "pydicom" / "CT_small.dcm"
    if not src.is_file():
        pytest.skip("shared DICOM sample not found")
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            shutil.copy(src, tmp_path / "data" / c / f"{i}.dcm")
    res = train(tiny_cfg(data__dataset=str(tmp_path / "data"), data__size=28, train__eval_every=2,
                         train__steps=2), tmp_path / "run")
    assert res.checkpoint.is_file()
    assert "quality tracking is skipped" in capsys.readouterr().err


def test_rgb_validation_images_beside_gray_training_images_are_refused_before_the_folder(tmp_path, medgan_cli,
                                                                                         tiny_yaml):
    """Defect 19: a convolution RuntimeError (traceback) once the run had started."""
    rgb = np.random.RandomState(1).randint(0, 255, (4, 28, 28, 3)).astype(np.uint8)
    p = tmp_path / "mixed.npz"
    np.savez(p, train_images=_gray(20), train_labels=np.arange(20) % 2, val_images=rgb, val_labels=np.arange(4) % 2)
    r = medgan_cli("train", "--dataset", p, "--config", tiny_yaml, "--out", tmp_path / "run")
    line = one_line(r.stderr)
    assert r.returncode == 1 and "val_images[0] has 3 channel(s)" in line and "training images have 1" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("images, what", [
    (np.full((20, 28, 28), 1e300), "train_images[0] holds the value 1e+300"),
    (np.where(np.arange(20)[:, None, None] % 2, 3e38, -3e38) * np.ones((20, 28, 28)), "a range float32 cannot hold"),
])
def test_float_values_beyond_float32_are_refused_before_the_folder(tmp_path, medgan_cli, tiny_yaml, images, what):
    """Defect 19: float64 pixels near 1e300 became `Input contains NaN` after the run folder was made."""
    p = tmp_path / "huge.npz"
    np.savez(p, train_images=images, train_labels=np.arange(20) % 2)
    r = medgan_cli("train", "--dataset", p, "--config", tiny_yaml, "--out", tmp_path / "run")
    line = one_line(r.stderr)
    assert r.returncode == 1 and what in line and "rescale" in line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------- 24: resume, another dataset


def test_resume_with_another_dataset_names_the_runs_dataset_and_the_way_out(tmp_path, medgan_cli, tiny_yaml):
    out = tmp_path / "run"
    assert medgan_cli("train", "--dataset", "phantom2d", "--config", tiny_yaml, "--out", out).returncode == 0
    r = medgan_cli("train", "--dataset", "phantom3d", "--out", out, "--resume", "--steps", 4)
    line = one_line(r.stderr)
    assert r.returncode == 1
    assert "the run used the dataset 'phantom2d'" in line and "drop --dataset" in line
    assert "--dataset phantom2d" in line
    assert medgan_cli("train", "--out", out, "--resume", "--steps", 4).returncode == 0


# ------------------------------------------------------------------------------------- 20: crafted checkpoints


def _limit_memory():  # in the child before exec: a regression fails with MemoryError instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _crafted(src: Path, dst: Path, change) -> Path:
    ck = {k: v for k, v in torch.load(src, weights_only=True).items()
          if k not in ("format", "format_version", "medgan_version")}
    change(ck)
    return save_checkpoint(dst, ck)


def test_a_crafted_latent_dim_is_refused_before_anything_is_allocated(tmp_path, ckpt2d):
    """Defect 20: `latent_dim` 10^9 built a generator of terabytes before looking at the weights. Run bounded
    (3 GB of address space, a timeout)."""
    bad = _crafted(ckpt2d, tmp_path / "latent.pt", lambda c: c["config"]["model"].update(latent_dim=10**9))
    proc = subprocess.run([sys.executable, "-m", "medgan", "augment", "--checkpoint", bad, "--out", tmp_path / "o",
                           "--n", "1"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                          preexec_fn=_limit_memory)
    line = one_line(proc.stderr)
    assert proc.returncode == 1 and "model.latent_dim is 1000000000, outside 1..16384" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, what", [
    (lambda c: c["config"]["model"].update(latent_dim=9), "model.latent_dim is 9 but the generator weights take 8"),
    (lambda c: c["config"]["model"].update(base_channels=2), "model.base_channels is 2 but the generator weights"),
    (lambda c: c["data"].update(channels=3), "'channels' is 3 but the generator weights write 1"),
    (lambda c: c["data"].update(size=10**12), "'size' is 1000000000000, outside 1..1024"),
    (lambda c: c["data"].update(intensity="0..255"), "intensity record (data.intensity) is a str"),
    (lambda c: c["data"]["intensity"].update(dtype="object"), "intensity record (data.intensity) 'dtype' is 'object'"),
])
def test_a_record_that_does_not_fit_its_weights_is_one_line_before_building(tmp_path, ckpt2d, change, what,
                                                                            monkeypatch):
    import medgan.models

    monkeypatch.setattr(medgan.models, "build_generator", lambda *a, **k: pytest.fail("built before checking"))
    bad = _crafted(ckpt2d, tmp_path / "bad.pt", change)
    with pytest.raises(CheckpointError, match="inconsistent or crafted|damaged or edited") as e:
        Sampler.from_checkpoint(bad)
    assert what in str(e.value) and "\n" not in str(e.value)


def test_info_of_a_checkpoint_naming_more_classes_than_its_weights_is_one_line(tmp_path, ckpt2d, medgan_cli):
    """Defect 20: three class names for two-class weights made `medgan info checkpoint` raise in zip()."""
    four = _crafted(ckpt2d, tmp_path / "four.pt",
                    lambda c: c["data"].update(class_names=["a", "b", "c", "d"], train_counts=[1, 2, 3, 4]))
    r = medgan_cli("info", "checkpoint", four)
    assert r.returncode == 1 and "it names 4 classes but its generator weights are for 3" in one_line(r.stderr)
    counts = _crafted(ckpt2d, tmp_path / "counts.pt", lambda c: c["data"].update(class_names=["a", "b"]))
    r = medgan_cli("info", "checkpoint", counts)
    assert r.returncode == 1 and "'train_counts' does not give one count per class (2 class names)" in one_line(r.stderr)


# ------------------------------------------------------------------------------------- 21, 26: library arguments


@pytest.fixture(scope="module")
def bank2d(ckpt2d):
    from medgan.synthesis.bank import SyntheticBank

    return SyntheticBank.from_checkpoint(ckpt2d, n_per_class=2)


@pytest.mark.parametrize("kw, what", [
    ({"prob": "0.5"}, "prob must be a number in [0, 1], got '0.5'"),
    ({"prob": None}, "prob must be a number in [0, 1], got None"),
    ({"prob": 1.5}, "prob must be a number in [0, 1], got 1.5"),
    ({"class_prob": {"few_large": 2.0}}, "class_prob['few_large'] must be a number in [0, 1], got 2.0"),
    ({"class_prob": {"few_large": -0.1}}, "class_prob['few_large'] must be a number in [0, 1], got -0.1"),
    ({"class_prob": [0.5]}, "class_prob must be a mapping"),
])
def test_transform_probabilities_are_checked_up_front(bank2d, kw, what):
    """Defects 21, 26: `prob="0.5"` or `None` raised a TypeError; `class_prob={...: 2.0}` was silently clipped."""
    from medgan.synthesis.transforms import RandSyntheticReplace, RandSyntheticReplaced

    for make in (lambda: RandSyntheticReplaced("image", bank=bank2d, **kw), lambda: RandSyntheticReplace(bank2d, **kw)):
        with pytest.raises(MedganError) as e:
            make()
        assert what in str(e.value) and "\n" not in str(e.value)


def test_a_bank_larger_than_memory_is_refused_naming_the_numbers(ckpt2d, monkeypatch):
    """Defect 21: `SyntheticBank.from_checkpoint(n_per_class=10**9)` raised MemoryError."""
    import medgan.synthesis.bank as bank

    monkeypatch.setattr(bank, "available_memory", lambda: 1 << 30)
    with pytest.raises(MedganError, match=r"n_per_class=1000000000 x 3 class\(es\) x 1x28x28 uint8 images need "
                                          r"2190\.5 GiB, more than the 1\.0 GiB of memory available"):
        bank.SyntheticBank.from_checkpoint(ckpt2d, n_per_class=10**9)
    assert len(bank.SyntheticBank.from_checkpoint(ckpt2d, n_per_class=3)) == 9


def test_a_bank_from_tensors_refuses_non_finite_images():
    """Defect 26: NaN images were cast to uint8 (with a numpy warning) and handed out as data."""
    from medgan.synthesis.bank import SyntheticBank

    x = torch.zeros(3, 1, 28, 28)
    x[2, 0, 5, 5] = float("nan")
    with pytest.raises(MedganError, match=r"1 image\(s\) hold NaN or infinite values \(first x\[2\]\)"):
        SyntheticBank.from_tensors(x, [0, 1, 0], ["a", "b"])
    x[2] = float("-inf")
    with pytest.raises(MedganError, match="NaN or infinite"):
        SyntheticBank.from_tensors(x.numpy(), [0, 1, 0], ["a", "b"])
    assert len(SyntheticBank.from_tensors(torch.zeros(3, 1, 28, 28), [0, 1, 0], ["a", "b"])) == 3


# ------------------------------------------------------------------------------------- 22, 23: messages


def test_a_pool_without_a_class_names_the_real_flag():
    """Defect 22: the message told to run augment "without --classes"; the flag is --class."""
    from medgan.errors import EvaluationError
    from medgan.evaluation.pool import draw_for_arm

    with pytest.raises(EvaluationError) as e:
        draw_for_arm(torch.zeros(4, dtype=torch.long), [1, 2], seed=0)
    assert "without --class)" in str(e.value) and "--classes" not in str(e.value)


def test_medgan_data_dir_naming_a_file_says_so(tmp_path, monkeypatch, medgan_cli, tiny_yaml):
    """Defect 23: MEDGAN_DATA_DIR set to the .npz itself gave "cannot write to ... to download" (or "not found")."""
    f = tmp_path / "breastmnist.npz"
    f.write_bytes(b"not used")
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(f))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = medgan_cli("train", "--dataset", "breastmnist", "--config", tiny_yaml, "--out", tmp_path / "run")
    line = one_line(r.stderr)
    assert r.returncode == 1 and f"the variable MEDGAN_DATA_DIR names a file ({f}), not a folder" in line
    assert f"(e.g. {tmp_path})" in line and not (tmp_path / "run").exists()
    r = medgan_cli("train", "--dataset", "breastmnist", "--config", tiny_yaml, "--out", tmp_path / "run",
                   "--data-dir", f)
    assert r.returncode == 1 and f"--data-dir names a file ({f})" in one_line(r.stderr)


# ------------------------------------------------------------------------------------- 27: control characters


def test_a_class_name_with_a_line_break_is_refused_at_load(tmp_path, medgan_cli):
    """Defect 27: a class folder named "bad<newline>name" broke the `medgan info dataset` table (and would have
    travelled into checkpoints, manifests and DICOM headers). Refused at load, shown escaped."""
    from helpers import write_png

    for c in ("ok", "bad\nname"):
        for i in range(3):
            write_png(tmp_path / "data" / c / f"{i}.png", 10 * i)
    r = medgan_cli("info", "dataset", tmp_path / "data")
    line = one_line(r.stderr)
    assert r.returncode == 1 and "the class name 'bad\\nname'" in line and "rename the class folder" in line
    assert r.stdout == ""


def test_a_csv_class_name_with_a_tab_is_refused(tmp_path):
    from helpers import write_png

    from medgan.data.sources import load_dataset
    from medgan.errors import DatasetError

    rows = ["path,label,class_name"]
    for i in range(6):
        write_png(tmp_path / f"{i}.png", 10 * i)
        rows.append(f'{i}.png,{i % 2},"{"a" if i % 2 == 0 else "b	c"}"')
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"the class name 'b\\tc'"):
        load_dataset(str(tmp_path / "m.csv"))


# ------------------------------------------------------------------------------------- polish: one collapse alarm


def test_a_collapsed_class_warns_once_per_step(tmp_path, capsys):
    """The collapse check and quality tracking both warned at the same step (two measures, two alarms): the
    collapse check is the one alarm; tracking keeps the diversity ratio as a term of its score."""
    cfg = tiny_cfg(train__steps=2, train__collapse_threshold=5.0, train__collapse_every=2, train__eval_every=2,
                   train__eval_samples=8, train__sample_every=0)
    train(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert err.count("possible mode collapse at step 2") == 1, err
    assert (tmp_path / "run" / "train.log").read_text().count("possible mode collapse") == 1


# ------------------------------------------------------------------------------------- polish: strict JSON


def test_info_checkpoint_json_is_strict_json_even_with_nan_quality(tmp_path, ckpt2d, medgan_cli):
    """`--json` printed with json.dumps, so a NaN of the quality record reached stdout as `NaN` (not JSON)."""
    import json

    ck = _crafted(ckpt2d, tmp_path / "best.pt",
                  lambda c: c.update(quality={"q_fd": [float("nan"), 1.5], "q_score": float("inf")}))
    r = medgan_cli("info", "checkpoint", ck, "--json")
    assert r.returncode == 0, r.stderr

    def refuse(name):
        raise AssertionError(f"{name} in --json output")

    info = json.loads(r.stdout, parse_constant=refuse)
    assert info["quality"] == {"q_fd": [None, 1.5], "q_score": None}
