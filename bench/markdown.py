"""Markdown layout of a benchmark run (for bench/RESULTS.md): `python -m fstcn.bench.markdown results.json`.
The content of each table comes from `fstcn.bench.tables`; this module only writes pipe tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fstcn.bench.tables import Table, tables


def _cells(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def markdown_table(table: Table) -> str:
    """The title as a bold line, then a pipe table."""
    lines = [
        f"**{table.title}**",
        "",
        _cells(table.columns),
        "|" + "|".join(" --- " for _ in table.columns) + "|",
    ]
    lines += [_cells(row) for row in table.rows]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    return "\n\n".join(markdown_table(table) for table in tables(results)) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
