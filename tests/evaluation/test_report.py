"""Tests for medgan.evaluation.report and report_sections: the terminal table, the numbers' names and scales."""

from __future__ import annotations

from medgan.evaluation.report import Report


def _ci(m):
    return {"mean": m, "lo": m - 0.05, "hi": m + 0.05}


def _data():
    arms = ["baseline", "oversample", "gan+oversample@0.5_with_a_long_name"]
    summary = {a: {"scarce_sens_at_spec": _ci(0.4 + 0.1 * i), "auroc": _ci(0.8 + 0.01 * i)} for i, a in enumerate(arms)}
    comp = {"diff": 0.125, "lo": 0.01, "hi": 0.2, "p": 0.01, "p_holm": 0.03125}
    return {"dataset": {"name": "breastmnist"}, "primary": {"key": "scarce_sens_at_spec", "label": "sens"},
            "protocol": {"seeds": [0, 1], "classifier": "smallcnn"}, "best_conventional": "oversample",
            "summary": summary, "comparisons": {arms[2]: {"oversample": {"scarce_sens_at_spec": comp}}},
            "headline": ["**verdict**"], "timing": {"total_s": 3.0}}


def test_summary_table_columns_line_up():
    """Each column's header and all its values start at the same character column (the `primary` header used to
    stand at column 47 with its values from column 34)."""
    text = Report(_data()).summary_table(width=120)
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("arm "))
    header, body = lines[head], [line for line in lines[head + 2 :] if not line.startswith("*")]
    assert len(body) == 3
    for name, value in (("primary", "0.400 [0.350, 0.450]"), ("AUROC", "0.800 [0.750, 0.850]")):
        col = header.index(name)
        assert body[0].index(value) == col, (name, text)
    for name, value in (("primary", "0.600 [0.550, 0.650]"), ("d vs best conv.", "+0.125"), ("p (Holm)", "0.0312")):
        assert body[2].index(value) == header.index(name), (name, text)
    assert "oversample *" in body[1] and set(lines[head + 1]) <= {"-", " "}
    assert all(len(line) <= 120 for line in lines)


def test_table_cells_are_shown_literally():
    """Arm and class names are text, not rich markup or emoji codes."""
    from medgan.tables import render_table

    out = render_table(["name", "value"], [["[bold]x[/bold] :smile:", "0.1 [0.0, 0.2]"]])
    assert "[bold]x[/bold] :smile:" in out and "0.1 [0.0, 0.2]" in out

