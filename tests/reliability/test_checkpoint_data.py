"""A checkpoint names no data that medgan opens (issue 21, item 8), and each command resolves and loads its
checkpoint once (issue 21, polish).

A crafted checkpoint whose ``config.data.dataset`` is ``../../etc`` made ``medgan augment --reject-near-copies``
read that folder and print the names of the files there. The training images the near-copy filter compares with
now come from ``--dataset`` (checked against the checkpoint's training-set fingerprint); the checkpoint's record is
quoted in the refusal, as text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_checkpoint
from reliability.util import one_line, phantom_meta

import medgan.data.sources as sources
import medgan.training.checkpoint as checkpoint_mod
from medgan.config import load_config
from medgan.errors import ConfigError
from medgan.synthesis.export import augment
from medgan.training.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("fast_phantoms")


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> Path:
    """A valid phantom2d checkpoint whose config names ``../../etc`` as its dataset."""
    d = tmp_path_factory.mktemp("crafted")
    p = make_checkpoint(d / "honest.pt", phantom_meta(2))
    ck = torch.load(p, weights_only=True)
    ck["config"]["data"]["dataset"] = "../../etc"
    return save_checkpoint(d / "crafted.pt", {k: v for k, v in ck.items() if k not in ("format", "format_version")})


@pytest.fixture
def etc(tmp_path, monkeypatch) -> Path:
    """``../../etc`` as seen from the working directory: a class-folder dataset of private file names."""
    folder = tmp_path / "etc"
    for cls in ("shadow", "passwd"):
        (folder / cls).mkdir(parents=True)
        for k in range(3):
            from PIL import Image

            Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(folder / cls / f"private-{cls}-{k}.png")
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return folder


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The dataset specs medgan loads during the test."""
    seen: list[str] = []
    real = sources.load_dataset

    def spy(spec, *a, **kw):
        seen.append(str(spec))
        return real(spec, *a, **kw)

    monkeypatch.setattr(sources, "load_dataset", spy)
    return seen


def test_a_checkpoint_naming_a_folder_makes_augment_open_nothing(tmp_path, crafted, etc, opened, medgan_cli):
    out = tmp_path / "o"
    r = medgan_cli("augment", "--checkpoint", crafted, "--out", out, "--n", 2, "--reject-near-copies", "--quiet")
    line = one_line(r.stderr)
    assert r.returncode == 2
    assert "pass --dataset" in line and "the checkpoint says it was trained on '../../etc'" in line
    assert "private" not in line and "shadow" not in line
    assert opened == [] and not out.exists()


def test_reject_near_copies_reads_only_the_dataset_the_user_names(tmp_path, crafted, etc, opened, medgan_cli):
    out = tmp_path / "o"
    r = medgan_cli("augment", "--checkpoint", crafted, "--out", out, "--n", 3, "--reject-near-copies",
                   "--dataset", "phantom2d", "--quiet")
    assert r.returncode == 0, r.stderr
    assert opened == ["phantom2d"]
    assert (out / "manifest.csv").read_text().splitlines()[0].split(",")[7] == "near_copy_redraws"


def test_a_dataset_that_is_not_the_generators_is_refused(tmp_path, crafted, etc, opened, medgan_cli):
    out = tmp_path / "o"
    r = medgan_cli("augment", "--checkpoint", crafted, "--out", out, "--n", 2, "--reject-near-copies",
                   "--dataset", "phantom2d", "--scarce", "0=5", "--quiet")
    line = one_line(r.stderr)
    assert r.returncode == 1
    assert "is not the generator's" in line and "--dataset" in line and "'../../etc'" in line
    assert opened == ["phantom2d"] and not out.exists()


def test_the_library_needs_the_training_data_named_too(tmp_path, crafted, etc, opened):
    with pytest.raises(ConfigError, match="pass --dataset"):
        augment(crafted, tmp_path / "o", n=2, reject_near_copies=True, progress=False)
    assert opened == [] and not (tmp_path / "o").exists()
    res = augment(crafted, tmp_path / "o", n=2, reject_near_copies=True, progress=False, train_data="phantom2d")
    assert res.n_samples == 6 and opened == ["phantom2d"]


# ------------------------------------------------------------------------------------- one load per command


@pytest.fixture
def loads(monkeypatch) -> dict[str, list]:
    """Every ``torch.load`` and every resolution of a run folder during the test."""
    seen: dict[str, list] = {"torch.load": [], "folder resolved": []}
    real_load, real_resolve = torch.load, checkpoint_mod.resolve_checkpoint

    def load(f, *a, **kw):
        seen["torch.load"].append(f)
        return real_load(f, *a, **kw)

    def resolve(path):
        if Path(path).is_dir():
            seen["folder resolved"].append(path)
        return real_resolve(path)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(checkpoint_mod, "resolve_checkpoint", resolve)
    return seen


@pytest.fixture
def run_folder(tmp_path, ckpt2d) -> Path:
    """A run folder with checkpoints/last.pt and best.pt (best.pt is the one commands take)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt2d, run / "checkpoints" / "last.pt")
    shutil.copy(ckpt2d, run / "checkpoints" / "best.pt")
    return run


def test_augment_resolves_and_loads_the_checkpoint_once(tmp_path, run_folder, loads, medgan_cli):
    r = medgan_cli("augment", "--checkpoint", run_folder, "--out", tmp_path / "o", "--n", 2,
                   "--reject-near-copies", "--dataset", "phantom2d", "--quiet")
    assert r.returncode == 0, r.stderr
    assert loads == {"torch.load": [run_folder / "checkpoints" / "best.pt"], "folder resolved": [run_folder]}
    assert "best.pt (the run's best checkpoint" in r.stdout


def test_evaluate_resolves_and_loads_the_checkpoint_once(run_folder, loads):
    from medgan.evaluation.evaluate import evaluate

    torch.set_num_threads(1)
    cfg = load_config(None, {
        "data.dataset": "phantom2d", "evaluate.arms": "baseline,gan", "evaluate.ratios": "0.5", "evaluate.seeds": 2,
        "evaluate.epochs": 1, "evaluate.min_epochs": 0, "evaluate.batch_size": 64, "evaluate.quality": False,
        "evaluate.privacy": False, "evaluate.device": "cpu", "evaluate.n_synthetic": 20,
    })
    said: list[str] = []
    report = evaluate(cfg, checkpoint=run_folder, log=said.append)
    assert loads == {"torch.load": [run_folder / "checkpoints" / "best.pt"], "folder resolved": [run_folder]}
    assert any(s.startswith("checkpoint: ") and "best.pt (the run's best checkpoint" in s for s in said), said
    assert "best.pt" in report.data["synthetic"]["checkpoint_choice"]
