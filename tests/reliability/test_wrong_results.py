"""Silent wrong results, round two (issue 21, defects 7, 9, 10, 11 and 12): a class name that a spreadsheet runs
as a formula, CSV datasets that leak test images into training, an evaluation with nothing to compare against,
augment folders whose files or manifest were changed afterwards, and a checkpoint with an impossible intensity
record. Each failed (or exited 0 with a wrong result) before the fix."""

from __future__ import annotations

import csv
import io

import pytest
from helpers import make_checkpoint, one_line_error, write_png
from reliability.util import one_line, phantom_meta

from medgan.data.folder import load_csv
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.export import augment, read_manifest

pytestmark = pytest.mark.usefixtures("fast_phantoms")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------------------------- manifest.csv (defect 7)


def test_class_names_that_a_spreadsheet_would_run_are_neutralised_and_round_trip(tmp_path):
    """Defect 7: a class named `=cmd|calc` was written as is into manifest.csv (CSV injection)."""
    names = ["=cmd|calc", "-2+3", "normal"]
    ck = make_checkpoint(tmp_path / "c.pt", phantom_meta(2, class_names=names))
    out = tmp_path / "syn"
    augment(ck, out, n=1, progress=False)
    text = (out / "manifest.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    cells = [c for r in rows[1:] for c in r]
    assert cells and not [c for c in cells if c.startswith(_FORMULA_START)], cells
    by_name = {r[2]: r for r in rows[1:]}
    assert set(by_name) == {"'=cmd|calc", "'-2+3", "normal"}  # a quote in front only where it is needed
    assert [r["class_name"] for r in read_manifest(out)] == names  # medgan reads the names back exactly
    bank = SyntheticBank.from_folder(out)
    assert bank.class_names == names and len(bank) == 3
    augment(ck, out, n=1, progress=False, overwrite=True)  # the folder is still recognised as medgan's


def test_cell_escaping_is_exactly_reversible():
    from medgan.io import escape_cell, unescape_cell

    for s in ["=x", "+1", "-1", "@a", "\tx", "\rx", "'=x", "''+x", "'plain", "plain", "", "'", "a=b", "x-1"]:
        e = escape_cell(s)
        assert unescape_cell(e) == s, s
        assert not e.startswith(_FORMULA_START)
    assert escape_cell("normal") == "normal" and escape_cell("'quoted") == "'quoted"
    assert escape_cell(5) == 5  # numbers are never escaped (they are written non-negative)


# ---------------------------------------------------------------------------------- CSV datasets (defect 9)


def _csv_dataset(root, rows, header="path,label,split"):
    for i in range(8):  # 8 different images, 4 per class
        write_png(root / f"img{i}.png", value=10 * i + 1, shape=(8, 8))
    (root / "data.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root / "data.csv"


_GOOD = [f"img{i}.png,{i % 2},train" for i in range(6)] + ["img6.png,0,test", "img7.png,1,test"]


def test_a_csv_dataset_with_one_image_in_train_and_test_is_refused(tmp_path):
    """Defect 9: the same image in the training and the test split (leakage) was accepted."""
    load_csv(_csv_dataset(tmp_path / "ok", _GOOD))  # the clean manifest loads
    p = _csv_dataset(tmp_path / "a", [*_GOOD, "img0.png,0,test"])
    one_line_error(load_csv, p, match="rows 2 and 10 list the same file")
    msg = one_line_error(load_csv, p, match="in the train and the test split")
    assert "img0.png" in msg and "leakage" in msg
    # the same file reached by another path (relative with .., or absolute) is the same image
    write_png(tmp_path / "b" / "sub" / "x.png", value=99, shape=(8, 8))
    p = _csv_dataset(tmp_path / "b", [*_GOOD, "sub/x.png,0,train", "sub/../sub/x.png,0,val"])
    one_line_error(load_csv, p, match="rows 10 and 11 list the same file")
    p = _csv_dataset(tmp_path / "c", [*_GOOD, str((tmp_path / "c" / "img7.png").resolve()) + ",1,val"])
    one_line_error(load_csv, p, match="rows 9 and 10 list the same file")


def test_a_csv_dataset_with_one_image_under_two_labels_is_refused(tmp_path):
    p = _csv_dataset(tmp_path, [*_GOOD, "img2.png,1,train"])
    one_line_error(load_csv, p, match="rows 4 and 10 list the same file")
    one_line_error(load_csv, p, match="as '0' and '1'; give each image one label")


def test_a_csv_dataset_with_repeated_rows_is_refused(tmp_path, medgan_cli):
    """8 training rows were counted as 11: repeats are refused, naming them (see docs/reliability.md for why
    not silently dropped)."""
    p = _csv_dataset(tmp_path, [*_GOOD, "img0.png,0,train", "img1.png,1,train", "img0.png,0,training"])
    one_line_error(load_csv, p, match="rows 2 and 10 list")
    r = medgan_cli("info", "dataset", p)
    assert r.returncode == 1 and "twice; remove the repeated row" in one_line(r.stderr)
    p = _csv_dataset(tmp_path / "nosplit", [f"img{i}.png,{i % 2}" for i in range(8)] + ["img3.png,1"],
                     header="path,label")
    one_line_error(load_csv, p, match="rows 5 and 10 list")


# ------------------------------------------------------------------------- evaluate without a comparison (defect 10)


@pytest.mark.parametrize("arms", ["gan", "gan,gan+oversample"])
def test_evaluate_with_only_gan_arms_is_refused_before_any_work(tmp_path, ckpt2d, medgan_cli, arms):
    """Defect 10: `--arms gan` exited 0 saying the GAN did NOT beat the best conventional option (`None`), Holm
    over 0 comparisons."""
    from medgan.config import load_config
    from medgan.errors import EvaluationError
    from medgan.evaluation.evaluate import check_request

    cfg = load_config(None, {"evaluate.arms": arms})
    with pytest.raises(EvaluationError, match="nothing to be compared with"):
        check_request(cfg.evaluate, ckpt2d, None)
    r = medgan_cli("evaluate", "--dataset", "phantom2d", "--checkpoint", ckpt2d, "--arms", arms, "--seeds", 2,
                   "--epochs", 1, "--no-quality", "--no-privacy", "--out", tmp_path / "rep", "--quiet")
    line = one_line(r.stderr)
    assert r.returncode == 1 and "add a conventional arm, e.g. --arms baseline,classical+oversample," in line
    assert not (tmp_path / "rep").exists()
    assert check_request(load_config(None, {"evaluate.arms": "baseline," + arms}).evaluate, ckpt2d, None)


# ----------------------------------------------------------------------- intensity record of a checkpoint (defect 12)


@pytest.mark.parametrize("change, field", [
    ({"min": 255.0, "max": 0.0}, "'min' (255) is not below 'max' (0)"),
    ({"min": 7.0, "max": 7.0}, "'min' (7) is not below 'max' (7)"),
    ({"min": float("nan")}, "'min' is nan, not a finite number"),
    ({"max": float("inf")}, "'max' is inf, not a finite number"),
    ({"max": "255"}, "'max' is '255', not a finite number"),
    ({"min": True}, "'min' is True, not a finite number"),
    ({"dtype": "complex64"}, "'dtype' is 'complex64', not a numeric dtype name"),
    ({"dtype": "uint9"}, "'dtype' is 'uint9', not a numeric dtype name"),
    ({"dtype": None}, "'dtype' is None"),
    ({"min": -1000.0}, "'min' (-1000) is outside the range of uint8 (0..255)"),
    ({"max": 70000.0}, "'max' (70000) is outside the range of uint8 (0..255)"),
    ({"dtype": "float16", "max": 1e6}, "'max' (1e+06) is outside the range of float16"),
    ({"min": None}, "'min' is None, not a finite number"),
    ("drop dtype", "lacks 'dtype'"),
    ("not a dict", "is a str, not a mapping"),
])
def test_a_checkpoint_with_an_impossible_intensity_record_is_refused(tmp_path, ckpt2d, medgan_cli, change, field):
    """Defect 12: min 255 and max 0 wrote inverted images, exit 0."""
    import torch

    from medgan.errors import CheckpointError
    from medgan.training.checkpoint import load_checkpoint

    ck = torch.load(ckpt2d, weights_only=True)
    inten = dict(ck["data"]["intensity"])
    assert inten == {"min": 0.0, "max": 255.0, "dtype": "uint8"}
    if change == "drop dtype":
        del inten["dtype"]
    elif change == "not a dict":
        inten = "0..255"
    else:
        inten.update(change)
    ck["data"]["intensity"] = inten
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="intensity record") as ei:
        load_checkpoint(tmp_path / "bad.pt")
    assert field in str(ei.value) and "\n" not in str(ei.value)
    if change != {"min": 255.0, "max": 0.0}:
        return
    r = medgan_cli("augment", "--checkpoint", tmp_path / "bad.pt", "--out", tmp_path / "o", "--n", 1)
    assert r.returncode == 1 and "(data.intensity)" in one_line(r.stderr) and field in r.stderr
    assert not (tmp_path / "o").exists()


def test_sound_intensity_records_are_accepted():
    from medgan.data.dataset import intensity_problem

    for rec in ({"min": 0.0, "max": 255.0, "dtype": "uint8"}, {"min": -1024, "max": 3071, "dtype": "int16"},
                {"min": 0.0, "max": 1.0, "dtype": "bool"}, {"min": -0.5, "max": 2.5e3, "dtype": "float32"},
                {"min": 0.0, "max": 65535.0, "dtype": "uint16", "extra": "kept"}):
        assert intensity_problem(rec) is None, rec


# ------------------------------------------------------------- augment folders changed afterwards (defect 11)


def _evaluate_synthetic(medgan_cli, folder, out):
    return medgan_cli("evaluate", "--dataset", "phantom2d", "--synthetic", folder, "--seeds", 2, "--epochs", 1,
                      "--no-quality", "--no-privacy", "--out", out, "--quiet")


def test_synthetic_images_replaced_by_other_sizes_are_refused(tmp_path, ckpt2d, medgan_cli):
    """Defect 11: PNGs replaced by 64-px ones under an augment.json that says 28 were evaluated at 64 px."""
    out = tmp_path / "syn"
    augment(ckpt2d, out, n=2, progress=False)
    paths = [r["path"] for r in read_manifest(out)]
    assert SyntheticBank.from_folder(out).shape == (1, 28, 28)
    for rel in paths:
        write_png(out / rel, value=128, shape=(64, 64))
    msg = one_line_error(SyntheticBank.from_folder, out, match="holds an image of shape (1, 64, 64)")
    assert paths[0] in msg and "records (1, 28, 28)" in msg
    r = _evaluate_synthetic(medgan_cli, out, tmp_path / "rep")
    assert r.returncode == 1 and "records (1, 28, 28)" in one_line(r.stderr)
    assert not (tmp_path / "rep" / "report.json").exists()


def test_a_hand_edited_manifest_is_refused(tmp_path, ckpt2d, medgan_cli):
    """Defect 11: a manifest.csv whose SHA-256 no longer matched augment.json was used (labels swapped)."""
    import json

    from medgan.io import file_sha256

    for fmt in ("png", "npz"):
        out = tmp_path / fmt
        augment(ckpt2d, out, n=2, format=fmt, progress=False)
        SyntheticBank.from_folder(out)
        recorded = json.loads((out / "augment.json").read_text())["manifest_sha256"]
        text = (out / "manifest.csv").read_text().splitlines()
        text[1], text[-1] = text[-1], text[1]  # two rows swapped: every file now has another row's label
        (out / "manifest.csv").write_text("\n".join(text) + "\n")
        found = file_sha256(out / "manifest.csv")
        msg = one_line_error(SyntheticBank.from_folder, out, match="is not the manifest medgan augment wrote")
        assert f"records SHA-256 {recorded[:16]}..., the file has {found[:16]}..." in msg
        assert str(out / "manifest.csv") in msg
    r = _evaluate_synthetic(medgan_cli, tmp_path / "png", tmp_path / "rep")
    assert r.returncode == 1 and "is not the manifest medgan augment wrote" in one_line(r.stderr)


def test_an_augment_json_with_an_impossible_intensity_record_is_refused(tmp_path, ckpt2d):
    import json

    out = tmp_path / "syn"
    augment(ckpt2d, out, n=1, progress=False)
    info = json.loads((out / "augment.json").read_text())
    info["intensity"] = {**info["intensity"], "min": 255.0, "max": 0.0}
    (out / "augment.json").write_text(json.dumps(info))
    one_line_error(SyntheticBank.from_folder, out, match="intensity record 'min' (255) is not below 'max' (0)")


def test_an_augment_manifest_with_quoted_class_names_reads_back_as_a_dataset(tmp_path):
    """docs/datasets.md: the manifests medgan augment writes can be read back directly as CSV datasets."""
    names = ["=cmd|calc", "@home", "normal"]
    ck = make_checkpoint(tmp_path / "c.pt", phantom_meta(2, class_names=names))
    augment(ck, tmp_path / "syn", n=1, progress=False)
    assert load_csv(tmp_path / "syn" / "manifest.csv").class_names == names
