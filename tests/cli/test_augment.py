"""Tests for medgan.cli's `medgan augment`: output, one-line errors, refusal/overwrite, options."""

from __future__ import annotations

import csv

import pytest
import torch

from medgan.synthesis.export import MANIFEST_COLUMNS, augment, read_manifest


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


def test_cli_amp_and_workers(tmp_path, breast, run_cli):
    out = tmp_path / "o"
    r = run_cli("--checkpoint", breast, "--out", out, "--n", 5, "--format", "npz", "--amp", "bf16", "--workers", 2,
                "--batch-size", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads((out / "augment.json").read_text())["amp"] == "bf16"
    assert len(read_manifest(out)) == 10


def test_class_accepts_the_folder_name_augment_writes(tmp_path, breast, run_cli):
    r = run_cli("--checkpoint", breast, "--out", tmp_path / "o", "--n", "2", "--class", "normal_benign", "--quiet")
    assert r.returncode == 0, r.stderr
    assert [row["class_name"] for row in read_manifest(tmp_path / "o")] == ["normal, benign"] * 2


def test_augment_says_which_checkpoint_of_a_run_folder_before_writing(tmp_path, breast, run_cli):
    """A run folder gives its best.pt: the command says so on stderr before any file is written, and the summary
    names it too."""
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(breast, run / "checkpoints" / "last.pt")
    shutil.copy(breast, run / "checkpoints" / "best.pt")
    r = run_cli("--checkpoint", run, "--out", tmp_path / "o", "--n", 1)
    assert r.returncode == 0, r.stderr
    said = f"checkpoint: {run / 'checkpoints' / 'best.pt'} (the run's best checkpoint by tracked quality"
    assert said in r.stderr and said in r.stdout
    assert r.stderr.index(said) < r.stderr.index("augment -> png")  # before the progress bar: before the work
    seen = []
    augment(run, tmp_path / "p", n=1, progress=False,
            log=lambda s: seen.append((s, any(f.is_file() for f in (tmp_path / "p").rglob("*.png")))))
    assert seen == [(f"checkpoint: {run / 'checkpoints' / 'best.pt'} (the run's best checkpoint by tracked "
                     "quality; last.pt is beside it, step 7)", False)]


def test_cli_pairs_write_pair_ids(tmp_path, breast, run_cli):
    from medgan.synthesis.outdir import PAIR_ID

    out = tmp_path / "p"
    r = run_cli("--checkpoint", breast, "--out", out, "--pairs", "--n", 3, "--format", "nifti", "--seed", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "wrote 6 nifti samples (3 counterfactual pairs;" in r.stdout
    rows = read_manifest(out)
    assert [r[PAIR_ID] for r in rows] == ["0", "0", "1", "1", "2", "2"]
    assert all(rows[2 * k]["seed"] == rows[2 * k + 1]["seed"] for k in range(3))


@pytest.mark.parametrize("args, message", [
    (["--pairs", "--n", 2, "--class", "malignant"], "--pairs and --class exclude each other"),
    (["--pairs", "--balance"], "--pairs and --balance exclude each other"),
    (["--pairs"], "how many counterfactual pairs"),
])
def test_cli_pairs_refusals_are_one_line(tmp_path, breast, args, message, run_cli):
    r = run_cli("--checkpoint", breast, "--out", tmp_path / "o", *args)
    assert r.returncode in (1, 2) and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


# -------------------------------------------------------------------------------------------- --from-real


@pytest.fixture
def fast_inversion(monkeypatch):
    import medgan.synthesis.from_real as from_real
    from medgan.synthesis.inversion import InversionSettings

    monkeypatch.setattr(from_real, "INVERSION", InversionSettings(steps=3, encoder_steps=3, encoder_batch=8))


def test_cli_from_real_translates_real_images_with_their_sources(tmp_path, breast, medmnist_dir, run_cli,
                                                                  fast_inversion):
    from medgan.synthesis.export import FROM_REAL_COLUMNS

    out = tmp_path / "o"
    r = run_cli("--checkpoint", breast, "--out", out, "--n", 3, "--class", "malignant", "--from-real",
                "--strength", 0.6, "--dataset", "breastmnist", "--format", "nifti")
    assert r.returncode == 0, r.stderr
    assert "wrote 3 nifti samples (malignant: 3)" in r.stdout
    assert "training the inversion encoder" in r.stderr  # first use for this checkpoint, said on stderr
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_COLUMNS + FROM_REAL_COLUMNS
    assert [(r["source_class"], r["strength"]) for r in rows] == [("normal, benign", "0.6")] * 3
    r2 = run_cli("--checkpoint", breast, "--out", tmp_path / "o2", "--n", 3, "--class", "malignant", "--from-real",
                 "--strength", 0.6, "--dataset", "breastmnist", "--format", "nifti")
    assert "training the inversion encoder" not in r2.stderr  # cached
    assert (out / "manifest.csv").read_bytes().replace(b"/o/", b"") == (tmp_path / "o2" / "manifest.csv").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--from-real"], "--from-real translates the generator's training images, which medgan reads only from data "
                      "you name: pass --dataset"),
    (["--from-real", "--dataset", "adrenalmnist3d"], "--from-real: dataset 'adrenalmnist3d' holds 3D images"),
    (["--from-real", "--dataset", "breastmnist", "--scarce", "0=0.5"], "is not the generator's"),
    (["--strength", 0.5], "add --from-real"),
    (["--from-real", "--strength", 1.5, "--dataset", "breastmnist"], "augment.strength"),
    (["--from-real", "--dataset", "breastmnist", "--class", "7"], "unknown class '7'"),
])
def test_cli_from_real_errors_are_one_line(tmp_path, breast, medmnist_dir, run_cli, args, message):
    r = run_cli("--checkpoint", breast, "--out", tmp_path / "o", "--n", 2, "--quiet", *args)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
