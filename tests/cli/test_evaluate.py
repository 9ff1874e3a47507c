"""Tests for medgan.cli's `medgan evaluate`: one-line errors, and train -> augment -> evaluate end to end."""

from __future__ import annotations

import json

import pytest

from medgan.config import load_config


@pytest.fixture
def run_cli(medgan_cli):
    """``medgan ARGS`` in-process (see conftest)."""
    return medgan_cli


@pytest.mark.parametrize("args, message, code", [
    (["--arms", "baseline,smote"], "unknown arm 'smote'; choose from: baseline, oversample, weighted, classical, classical+oversample, gan", 2),
    (["--classifier", "vgg16"], "unknown classifier 'vgg16'; choose one of: smallcnn, resnet18", 2),
    (["--ratio", "0.5,-1"], "bad synthetic ratio '-1'", 2),
    (["--arms", "baseline,gan"], "need synthetic images: pass --checkpoint", 1),
    (["--arms", "baseline", "--seeds", "1"], "at least 2 seeds", 2),
    (["--arms", "baseline", "--checkpoint", "nowhere/last.pt"], "checkpoint not found", 1),
])
def test_bad_input_is_one_line(tmp_path, run_cli, args, message, code):
    """Configuration errors (arms, classifier, ratio, seeds) exit 2, other user errors 1 (issue 21, defect 25)."""
    r = run_cli("evaluate", "--dataset", "phantom2d", "--out", tmp_path / "rep", "--no-quality", *args)
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "rep" / "report.json").exists()


def test_synthetic_folder_of_another_dataset_is_refused(tmp_path, run_cli):
    import numpy as np

    np.savez(tmp_path / "s.npz", train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.array([[0], [1], [0], [1]]))
    r = run_cli("evaluate", "--dataset", "phantom2d", "--synthetic", tmp_path / "s.npz", "--arms", "baseline,gan",
                "--out", tmp_path / "rep")
    assert r.returncode == 1 and "has classes" in r.stderr and "phantom2d" in r.stderr


@pytest.mark.slow
def test_end_to_end_train_augment_evaluate(tmp_path, run_cli):
    """Tiny GAN -> augment (rejecting near-copies) -> evaluate from the folder and from the checkpoint."""
    import torch

    from medgan.training.run import train

    torch.set_num_threads(1)
    scarce = ["0=40", "1=40", "2=20"]
    cfg = load_config(None, {
        "data.dataset": "phantom2d", "data.scarce": scarce, "model.base_channels": 8, "model.latent_dim": 16,
        "model.embed_dim": 4, "train.steps": 6, "train.batch_size": 16, "train.sample_every": 6,
        "train.checkpoint_every": 6, "train.collapse_every": 0, "train.progress": False, "train.device": "cpu",
    })
    ckpt = train(cfg, tmp_path / "run").checkpoint
    assert ckpt.is_file()

    synth = tmp_path / "synth"
    r = run_cli("augment", "--checkpoint", ckpt, "--out", synth, "--n", 30, "--format", "npz",
                "--reject-near-copies", "--dataset", "phantom2d", *[x for s in scarce for x in ("--scarce", s)],
                "--quiet")
    assert r.returncode == 0, r.stderr
    assert (synth / "manifest.csv").read_text().splitlines()[0].split(",")[7] == "near_copy_redraws"

    common = ["--dataset", "phantom2d", *[x for s in scarce for x in ("--scarce", s)], "--seeds", 2, "--epochs", 1,
              "--batch-size", 32, "--threads", 1, "--device", "cpu"]
    out1 = tmp_path / "rep_folder"
    r = run_cli("evaluate", *common, "--synthetic", synth, "--arms", "baseline,oversample,gan,gan+classical",
                "--ratio", "0.5", "--out", out1)
    assert r.returncode == 0, r.stderr
    assert "baseline" in r.stdout and "gan@0.5" in r.stdout and "report:" in r.stdout
    d = json.loads((out1 / "report.json").read_text())
    assert set(d) >= {"dataset", "synthetic", "protocol", "arms", "runs", "summary", "comparisons", "headline",
                      "primary", "best_conventional", "best_gan", "quality", "privacy", "timing", "config", "files"}
    # the folder itself records the generator's training-set fingerprint, so the guard needs no checkpoint file
    assert json.loads((synth / "augment.json").read_text())["train_fingerprint"] == d["dataset"]["train_fingerprint"]
    assert d["synthetic"]["leakage_guard"] == "passed (augment.json)"
    assert d["quality"]["frechet"]["floor_test_vs_train"] >= 0 and "tstr" in d["quality"]
    assert set(d["quality"]["per_class"]) == {"few_large", "many_small", "single_bright"}
    assert 0 <= d["privacy"]["fraction_flagged"] <= 1 and "feature" in d["privacy"]
    md = (out1 / "report.md").read_text()
    for heading in ("## Results", "## Per-class sensitivity", "## Paired comparisons", "## Verdict",
                    "## Sample quality", "## Memorisation"):
        assert heading in md
    assert "| `gan+classical@0.5` |" in md
    for png in ("arms.png", "per_class_sensitivity.png", "real_vs_synthetic.png", "nearest_neighbours.png"):
        assert (out1 / png).stat().st_size > 1000, png

    out2 = tmp_path / "rep_ckpt"
    r = run_cli("evaluate", *common, "--checkpoint", ckpt, "--arms", "baseline,gan", "--ratio", "balance",
                "--no-quality", "--no-privacy", "--out", out2, "--quiet")
    assert r.returncode == 0, r.stderr
    d2 = json.loads((out2 / "report.json").read_text())
    assert d2["synthetic"]["kind"] == "checkpoint" and d2["synthetic"]["leakage_guard"] == "passed"
    assert d2["synthetic"]["allocation"]["gan@balance"] == [0, 0, 20]
    assert d2["quality"] is None and d2["privacy"] is None

    # the same checkpoint against another scarcity is a leakage-guard failure
    r = run_cli("evaluate", "--dataset", "phantom2d", "--scarce", "2=10", "--checkpoint", ckpt, "--arms", "baseline,gan",
                "--out", tmp_path / "rep_bad")
    assert r.returncode == 1 and "leakage guard" in r.stderr and "--scarce 0=40" in r.stderr
