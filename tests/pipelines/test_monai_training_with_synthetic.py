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
