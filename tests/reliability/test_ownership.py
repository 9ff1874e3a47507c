"""Every command that writes owns only what it wrote (issue 21, defects 1-6 and 14): export, evaluate, train and
augment write into a folder they made or one holding their own record, never through a link, and replace or
remove only files whose content they can prove they wrote; anything else stops them before work, naming it."""

from __future__ import annotations

import json
import os

import pytest
from helpers import SCARCE, tiny_cfg, write_png
from reliability.util import one_line

from medgan.config import load_config
from medgan.errors import EvaluationError, OutputError
from medgan.outputs import RECORD, OutputFolder
from medgan.synthesis.bundle import export_generator, is_medgan_export
from medgan.synthesis.export import augment
from medgan.training.run import train


def _tree(folder):
    """Every file below ``folder`` with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(root):
    d = root / "project"
    (d / "data").mkdir(parents=True)
    (d / "data" / "patients.csv").write_text("id,label\n1,0\n")
    (d / "train.py").write_text("print('mine')\n")
    return d


# ------------------------------------------------------------------------------------------------ export


def test_export_bundle_overwrite_never_deletes_a_users_folder(tmp_path, ckpt2d, medgan_cli):
    """Defect 1: `export --format bundle --out DIR --overwrite` deleted the whole DIR (a user's project)."""
    d = _users_folder(tmp_path)
    before = _tree(d)
    r = medgan_cli("export", ckpt2d, "--format", "bundle", "--out", d, "--overwrite")
    assert r.returncode == 1 and "did not write" in one_line(r.stderr)
    assert _tree(d) == before


def test_export_into_the_run_it_exports_is_refused(tmp_path, medgan_cli):
    """Defect 1: `--out` set to the run being exported deleted the run; a torchscript export over the source
    checkpoint replaced it."""
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=0, train__eval_every=0), run)
    before = _tree(run)
    r = medgan_cli("export", run, "--format", "bundle", "--out", run, "--overwrite")
    assert r.returncode == 1 and "--out" in one_line(r.stderr)
    src = run / "checkpoints" / "last.pt"
    r = medgan_cli("export", src, "--format", "torchscript", "--out", src, "--overwrite")
    assert r.returncode == 1 and "checkpoint being exported" in one_line(r.stderr)
    assert _tree(run) == before


def test_export_overwrites_only_its_own_exports(tmp_path, ckpt2d, medgan_cli):
    mine = tmp_path / "model.pt"
    mine.write_bytes(b"a user's model")
    r = medgan_cli("export", ckpt2d, "--format", "torchscript", "--out", mine, "--overwrite")
    assert r.returncode == 1 and "not a file medgan wrote" in one_line(r.stderr)
    assert mine.read_bytes() == b"a user's model"
    ts = tmp_path / "g.pt"
    export_generator(ckpt2d, ts, "torchscript")
    first = ts.read_bytes()
    with pytest.raises(OutputError, match="--overwrite"):
        export_generator(ckpt2d, ts, "torchscript")
    os.utime(ts, (0, 0))
    export_generator(ckpt2d, ts, "torchscript", overwrite=True)  # medgan's own export: replaced
    assert ts.stat().st_mtime > 0 and is_medgan_export(ts) and first[:2] == b"PK"


def test_bundle_overwrite_replaces_its_files_and_keeps_the_users(tmp_path, ckpt2d):
    out = tmp_path / "bundle"
    export_generator(ckpt2d, out, "bundle")
    (out / "notes.md").write_text("mine")
    export_generator(ckpt2d, out, "bundle", overwrite=True)
    assert (out / "notes.md").read_text() == "mine"
    (out / "configs" / "metadata.json").write_text("{}")  # the user edited a file medgan wrote
    with pytest.raises(OutputError, match="metadata.json exists and was not written by medgan export"):
        export_generator(ckpt2d, out, "bundle", overwrite=True)
    assert (out / "configs" / "metadata.json").read_text() == "{}"


# ---------------------------------------------------------------------------------------------- evaluate


def _ecfg(**over):
    base = {"data.dataset": "phantom2d", "data.scarce": SCARCE, "evaluate.seeds": 2, "evaluate.epochs": 1,
            "evaluate.batch_size": 64, "evaluate.threads": 1, "evaluate.quality": False, "evaluate.privacy": False,
            "evaluate.device": "cpu", "evaluate.arms": "baseline,oversample"}
    base.update(over)
    return load_config(None, base)


def _evaluate(out, **kw):
    from medgan.evaluation.evaluate import evaluate

    return evaluate(_ecfg(), out_dir=out, **kw)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A finished tiny evaluation (copied per test)."""
    out = tmp_path_factory.mktemp("ev") / "rep"
    _evaluate(out)
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_restart_removes_only_the_runs_medgan_wrote(tmp_path, evaluated):
    """Defect 2: `--restart` deleted a user's runs/notes.txt, runs/baseline/extra.txt and runs/myarm/a.txt."""
    out = _copy(evaluated, tmp_path / "rep")
    mine = {"runs/notes.txt": "n", "runs/baseline/extra.txt": "e", "runs/myarm/a.txt": "a"}
    for rel, text in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    _evaluate(out, restart=True)
    for rel, text in mine.items():
        assert (out / rel).read_text() == text
    assert (out / "runs" / "baseline" / "seed_0.json").is_file()


def test_an_evaluation_never_resumes_through_a_link(tmp_path, evaluated):
    """Defect 3: with OUT/runs/baseline a link to a folder elsewhere, a re-run overwrote seed_0.json there."""
    out = _copy(evaluated, tmp_path / "rep")
    elsewhere = tmp_path / "elsewhere"
    os.replace(out / "runs" / "baseline", elsewhere)
    os.symlink(elsewhere, out / "runs" / "baseline")
    before = _tree(elsewhere)
    with pytest.raises(OutputError, match="symbolic link"):
        _evaluate(out)
    assert _tree(elsewhere) == before


def test_an_evaluation_never_replaces_a_users_report(tmp_path, evaluated):
    """Defect 4: `evaluate` silently replaced a user's report.md, report.json and arms.png in --out."""
    d = tmp_path / "rep"
    d.mkdir()
    (d / "report.md").write_text("my report")
    with pytest.raises(OutputError, match="did not write"):
        _evaluate(d)
    assert _tree(d) == {"report.md": b"my report"}
    out = _copy(evaluated, tmp_path / "rep2")  # medgan's folder, but its report.md was changed by the user
    (out / "report.md").write_text("annotated")
    with pytest.raises(OutputError, match="report.md exists and was not written"):
        _evaluate(out)
    assert (out / "report.md").read_text() == "annotated"


def test_a_damaged_store_is_one_line(tmp_path, evaluated, medgan_cli):
    """Defect 14: a corrupt runs/request.json (JSONDecodeError) or a seed file holding [] (TypeError)."""
    out = _copy(evaluated, tmp_path / "rep")
    (out / "runs" / "request.json").write_text("{not json")
    r = medgan_cli("evaluate", "--dataset", "phantom2d", "--scarce", SCARCE[0], "--arms", "baseline,oversample",
                   "--seeds", 2, "--epochs", 1, "--no-quality", "--no-privacy", "--out", out)
    assert r.returncode == 1 and "request.json" in one_line(r.stderr)
    out = _copy(evaluated, tmp_path / "rep2")
    (out / "runs" / "baseline" / "seed_1.json").write_text("[]")
    with pytest.raises(OutputError, match="seed_1.json exists and was not written"):
        _evaluate(out)
    # medgan's own record cannot be trusted blindly either: a stored run without its fields is one line
    rec = json.loads((out / RECORD).read_text())
    from medgan.io import file_sha256

    rec["files"]["runs/baseline/seed_1.json"] = [file_sha256(out / "runs" / "baseline" / "seed_1.json")]
    (out / RECORD).write_text(json.dumps(rec))
    with pytest.raises(EvaluationError, match="seed_1.json is not a run"):
        _evaluate(out)


# ------------------------------------------------------------------------------------------------- train


def test_train_never_writes_into_a_users_folder(tmp_path, medgan_cli, tiny_yaml):
    """Defect 5: `train --out DIR` overwrote a user's curves.png and tracking/reference.json and appended to their
    train.log."""
    d = tmp_path / "d"
    (d / "tracking").mkdir(parents=True)
    write_png(d / "curves.png")
    (d / "tracking" / "reference.json").write_text("{}")
    (d / "train.log").write_text("my log\n")
    before = _tree(d)
    r = medgan_cli("train", "--dataset", "phantom2d", "--out", d, "--config", tiny_yaml)
    assert r.returncode == 1 and "did not write" in one_line(r.stderr)
    assert _tree(d) == before


def test_train_into_an_augment_folder_is_refused(tmp_path, ckpt2d, medgan_cli, tiny_yaml):
    """Defect 5: `train --out` into an augment output folder was accepted and left it unreadable as a dataset."""
    out = tmp_path / "synth"
    augment(ckpt2d, out, n=2, progress=False)
    before = _tree(out)
    r = medgan_cli("train", "--dataset", "phantom2d", "--out", out, "--config", tiny_yaml)
    assert r.returncode == 1 and "did not write" in one_line(r.stderr)
    assert _tree(out) == before


def test_a_changed_file_in_a_run_stops_the_next_start(tmp_path):
    """Inside medgan's own run folder, a file a user put at a path the run writes is not replaced."""
    cfg = tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=0, train__eval_every=0)
    run = tmp_path / "run"
    train(cfg, run)
    write_png(run / "curves.png")  # the user's own figure, saved over medgan's
    mine = (run / "curves.png").read_bytes()
    with pytest.raises(OutputError, match="curves.png exists and was not written by medgan train"):
        train(tiny_cfg(train__steps=4, train__collapse_every=0, train__sample_every=0, train__eval_every=0), run,
              resume=True)
    assert (run / "curves.png").read_bytes() == mine


def test_a_resumed_run_keeps_its_record_exact(tmp_path):
    """Every file a run wrote (checkpoints, samples, appended logs) is in its record with its current content."""
    from medgan.io import file_sha256

    cfg = tiny_cfg(train__steps=2, train__collapse_every=0, train__sample_every=2, train__eval_every=0)
    run = tmp_path / "run"
    train(cfg, run)
    train(tiny_cfg(train__steps=4, train__collapse_every=0, train__sample_every=2, train__eval_every=0), run,
          resume=True)
    rec = json.loads((run / RECORD).read_text())
    on_disk = {k for k in _tree(run) if k not in (RECORD,)}
    assert set(rec["files"]) == on_disk
    for rel, hashes in rec["files"].items():
        assert file_sha256(run / rel) in hashes, rel


# ------------------------------------------------------------------------------------------------ augment


def test_overwrite_keeps_a_users_image_copied_over_a_sample(tmp_path, ckpt2d):
    """Defect 6: `augment --overwrite` deleted a user's image copied over a file at a path medgan once wrote."""
    out = tmp_path / "o"
    augment(ckpt2d, out, n=2, progress=False)
    sample = next(p for p in sorted(out.rglob("*.png")))
    write_png(sample)  # the user's own image, copied over medgan's sample
    mine = sample.read_bytes()
    with pytest.raises(OutputError, match="was not written by medgan augment"):
        augment(ckpt2d, out, n=2, overwrite=True, progress=False)  # the new run needs that path: refused up front
    assert sample.read_bytes() == mine
    augment(ckpt2d, out, n=1, overwrite=True, progress=False, classes=[2])  # a run that does not need it
    assert sample.read_bytes() == mine


# ------------------------------------------------------------------------------------------- the rule


def test_the_rule_refuses_links_and_foreign_files_and_records_every_write(tmp_path):
    from medgan.io import append_text, atomic_write

    d = tmp_path / "f"
    with OutputFolder(d, "train") as f:
        atomic_write(d / "a.txt", "x")
        append_text(d / "log.txt", "1\n")
        append_text(d / "log.txt", "2\n")
        assert f.owns("a.txt") and f.owns("log.txt")
        (d / "b.txt").write_text("user")
        with pytest.raises(OutputError, match="b.txt exists and was not written"):
            atomic_write(d / "b.txt", "y")
        os.symlink(tmp_path, d / "link")
        with pytest.raises(OutputError, match="symbolic link"):
            atomic_write(d / "link" / "x.txt", "y")
        assert not (tmp_path / "x.txt").exists()
        assert f.remove_matching() == []  # removes a.txt and log.txt; b.txt and the link are the user's
    assert sorted(p.name for p in d.iterdir()) == sorted([RECORD, "b.txt", "link"])
    with pytest.raises(OutputError, match="not a record medgan evaluate wrote"):
        OutputFolder(d, "evaluate").open()  # another command's folder


def test_info_grid_replaces_only_a_grid_medgan_wrote(tmp_path, medgan_cli):
    """`info dataset --grid PATH` replaced any file at PATH (a user's photo): now only a grid medgan saved."""
    photo = write_png(tmp_path / "photo.png", value=7)
    mine = photo.read_bytes()
    r = medgan_cli("info", "dataset", "phantom2d", "--grid", photo)
    assert r.returncode == 1 and "not a file medgan wrote" in one_line(r.stderr)
    assert photo.read_bytes() == mine
    grid = tmp_path / "grid.png"
    assert medgan_cli("info", "dataset", "phantom2d", "--grid", grid).returncode == 0
    assert medgan_cli("info", "dataset", "phantom2d", "--grid", grid).returncode == 0  # its own grid: replaced
