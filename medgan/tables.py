"""Tables for the terminal: one renderer (rich) for every table medgan prints, drawn to a string at a fixed width.

Every column is left-aligned, so a column's header and each of its values start at the same character column;
the header is underlined with dashes (plain ASCII, no colour), and columns are separated by two spaces. A table
wider than ``width`` folds its widest cells onto further lines rather than shifting columns.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

#: The width tables are drawn at (a wide terminal; the summary of ``medgan evaluate`` fits it).
WIDTH = 120


def _box():
    from rich.box import Box

    # top, head, head_row, mid, row, foot_row, foot, bottom: only the line under the header is drawn
    return Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], width: int = WIDTH,
                 no_wrap: Sequence[int] = (0,)) -> str:
    """``rows`` under ``headers`` as plain text at most ``width`` characters wide; the columns whose indexes
    ``no_wrap`` lists (the first by default) are never folded. Trailing spaces are stripped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=_box(), show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True,
                  header_style="", highlight=False)
    for i, h in enumerate(headers):
        table.add_column(str(h), justify="left", no_wrap=i in no_wrap, overflow="fold")
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False,
                      emoji=False, markup=False, highlight=False, soft_wrap=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())
