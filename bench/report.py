"""Console layout of a benchmark run (rich), for `fstcn bench`. The content of each table comes from
`fstcn.bench.tables`; this module only turns them into rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table as RichTable

from fstcn.bench.tables import Table, tables


def rich_table(table: Table) -> RichTable:
    # escaped: titles and cells hold "[min-max]", which rich would otherwise take for markup and drop
    out = RichTable(title=escape(table.title))
    for column in table.columns:
        out.add_column(escape(column))
    for row in table.rows:
        out.add_row(*(escape(cell) for cell in row))
    return out


def render(results: dict[str, Any]) -> Group:
    """One table per section that ran, plus the targets."""
    return Group(*(rich_table(table) for table in tables(results)))
