"""Tests for medgan.io: atomic writes and file modes, JSON (one NaN policy), Markdown tables."""

from __future__ import annotations

import json


def test_atomic_writes_respect_the_umask(tmp_path):
    import os
    import stat

    from medgan.io import atomic_write, default_file_mode

    mask = os.umask(0o022)
    os.umask(mask)
    assert default_file_mode() == 0o666 & ~mask
    atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0o600


def test_markdown_table_shape():
    from medgan.io import markdown_table

    t = markdown_table(["a", "b"], [[1, 2], [3, 4]]).splitlines()
    assert t[0] == "| a | b |" and t[1] == "|---|---|" and t[3] == "| 3 | 4 |"


def test_write_json_is_atomic_and_readable(tmp_path):
    from medgan.io import write_json

    p = write_json(tmp_path / "sub" / "r.json", {"x": 1.5, "y": [1, 2]})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [1, 2]}
    assert json.loads(write_json(p, {"nan": float("nan")}).read_text()) == {"nan": None}  # one NaN policy
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temp file left behind
