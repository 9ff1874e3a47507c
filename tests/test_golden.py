"""Golden outputs: this tree's augment bytes and evaluate numbers equal those of the commit in tests/golden/REF.

Both are produced on this machine (floating-point results depend on the CPU), so the check holds anywhere. A
change that is meant to alter outputs records its commit in tests/golden/REF (see tests/golden/golden.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "golden"))

import golden  # noqa: E402


def test_differences_finds_a_changed_number_and_a_missing_key():
    a = {"x": {"y": [1, 2.5]}, "z": 1, "tree_commit": "a"}
    b = {"x": {"y": [1, 2.4]}, "tree_commit": "b"}
    d = golden.differences(a, b)
    assert any(s.startswith("/x/y[1]") for s in d) and any(s.startswith("/z") for s in d) and len(d) == 2
    assert golden.differences(a, dict(a, tree_commit="c")) == []


@pytest.mark.slow
def test_outputs_equal_the_reference_commit():
    ref = (ROOT / "tests" / "golden" / "REF").read_text().split()[0]
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", ref + "^{commit}"],
                                                     capture_output=True).returncode != 0:
        pytest.skip(f"golden reference commit {ref[:12]} is not in this clone's history")
    diffs = golden.check(ref)
    assert not diffs, "\n".join(diffs[:20])
