"""Tests for pipelines/monai_training_with_synthetic.py: the worked MONAI example runs end to end."""

from __future__ import annotations

import re

import pytest
from helpers import run_pipeline


@pytest.mark.usefixtures("medmnist_dir")
def test_example_adds_synthetic_malignant_samples(breast):
    proc = run_pipeline("monai_training_with_synthetic.py", "--checkpoint", str(breast), "--epochs", "1",
                        "--limit", "120")
    counts = re.search(r"real train counts \{'malignant': (\d+), 'normal_benign': (\d+)\}", proc.stdout)
    assert counts, proc.stdout
    n_mal, n_ben = map(int, counts.groups())
    syn = re.search(r"epoch 1: loss [\d.]+, synthetic (\d+)/(\d+) samples, test AUROC", proc.stdout)
    assert syn, proc.stdout
    assert int(syn.group(1)) == n_ben - n_mal and int(syn.group(2)) == 2 * n_ben  # balanced by synthetic slots
    assert "medgan RandSyntheticReplace" not in proc.stderr  # no layout or range warning


@pytest.mark.usefixtures("medmnist_dir")
def test_example_trains_on_the_generators_scarce_split_and_refuses_another(tmp_path):
    """The classifier used to train on all 147 real malignant images while the generator saw 29: it now takes the
    generator's --dataset/--scarce, checked against the checkpoint's fingerprint."""
    import subprocess
    import sys

    from helpers import MEDMNIST_DIR, PIPELINES, make_checkpoint

    from medgan.data.sources import load_dataset

    data = load_dataset("breastmnist", data_dir=MEDMNIST_DIR, download=False, scarce=["malignant=29"])
    ck = make_checkpoint(tmp_path / "scarce.pt", {**data.meta(), "size": 28})
    script = str(PIPELINES / "monai_training_with_synthetic.py")
    bad = subprocess.run([sys.executable, script, "--checkpoint", str(ck), "--epochs", "1", "--limit", "40"],
                         capture_output=True, text=True, timeout=300)
    err = bad.stderr.strip().splitlines()
    assert bad.returncode != 0 and "epoch 1" not in bad.stdout
    assert err[-1].startswith("monai_training_with_synthetic.py: error: the training split of --dataset breastmnist")
    assert "--scarce malignant=29" in err[-1] and "Traceback" not in bad.stderr
    ok = run_pipeline("monai_training_with_synthetic.py", "--checkpoint", str(ck), "--scarce", "malignant=29",
                      "--epochs", "1", "--limit", "40")
    assert "real training split = the generator's" in ok.stdout
