"""The Python blocks of README.md and docs/transform.md run as pasted (as doc-testing projects check them).

Every ```python block of a page runs, in order, in one fresh interpreter (so a later block may use what an earlier
one defined, as a reader pasting them in turn would), in a folder holding what the blocks name: a tiny training
run in ``runs/breast`` (BreastMNIST's classes), its augment folder ``synth/breast`` and training PNGs in one
folder per class under ``data/breast``. A block fenced ```python no-run is shown, not run (none so far).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MEDMNIST_DIR, make_checkpoint, real_meta

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/transform.md"]
FENCE = re.compile(r"^```python[ \t]*(?P<tag>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The code of every ```python block of ``text`` that is not marked ``no-run``."""
    return [m["code"] for m in FENCE.finditer(text) if "no-run" not in m["tag"].split()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["MEDGAN_DATA_DIR"] = str(MEDMNIST_DIR)
    return env


@pytest.fixture(scope="module")
def doc_folder(tmp_path_factory) -> Path:
    """What the pages' blocks name, made small: a run folder, an augment folder, PNG class folders."""
    from PIL import Image

    from medgan.data.sources import load_dataset

    meta = real_meta("breastmnist")  # skips without the shared MedMNIST files
    root = tmp_path_factory.mktemp("docs")
    make_checkpoint(root / "runs" / "breast" / "checkpoints" / "last.pt", meta)
    train = load_dataset("breastmnist", data_dir=MEDMNIST_DIR).splits["train"]
    for c, folder in enumerate(["malignant", "normal_benign"]):
        (root / "data" / "breast" / folder).mkdir(parents=True)
        for i in np.flatnonzero(np.asarray(train.labels) == c)[: 4 + 6 * c]:
            Image.fromarray(np.asarray(train.images[i])[0]).save(root / "data" / "breast" / folder / f"{i:05d}.png")
    r = subprocess.run([sys.executable, "-m", "medgan", "augment", "--checkpoint", "runs/breast", "--n", "8",
                        "--class", "malignant", "--format", "png", "--out", "synth/breast"], cwd=root, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return root


def test_blocks_are_found():
    assert python_blocks("x\n```python\na = 1\n```\n```python no-run\nb\n```\n```bash\nc\n```\n") == ["a = 1\n"]
    for page in PAGES:
        assert python_blocks((ROOT / page).read_text()), page


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run_as_pasted(page, doc_folder):
    """The README's MONAI snippet once failed as pasted (``items`` undefined, ``...`` inside ``Compose``)."""
    code = "\n".join(python_blocks((ROOT / page).read_text()))
    r = subprocess.run([sys.executable, "-c", code], cwd=doc_folder, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{page}: a Python block fails as pasted:\n{r.stderr[-3000:]}"
