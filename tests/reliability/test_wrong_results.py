"""Silent wrong results, round two (issue 21, defects 7, 9, 10, 11 and 12): a class name that a spreadsheet runs
as a formula, CSV datasets that leak test images into training, an evaluation with nothing to compare against,
augment folders whose files or manifest were changed afterwards, and a checkpoint with an impossible intensity
record. Each failed (or exited 0 with a wrong result) before the fix."""

from __future__ import annotations

import csv
import io

import pytest
from helpers import make_checkpoint, one_line_error
from reliability.util import phantom_meta

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
    from medgan.synthesis.outdir import escape_cell, unescape_cell

    for s in ["=x", "+1", "-1", "@a", "\tx", "\rx", "'=x", "''+x", "'plain", "plain", "", "'", "a=b", "x-1"]:
        e = escape_cell(s)
        assert unescape_cell(e) == s, s
        assert not e.startswith(_FORMULA_START)
    assert escape_cell("normal") == "normal" and escape_cell("'quoted") == "'quoted"
    assert escape_cell(5) == 5  # numbers are never escaped (they are written non-negative)
