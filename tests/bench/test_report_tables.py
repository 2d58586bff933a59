"""The two layouts of a benchmark report (Markdown for bench/RESULTS.md, rich for `fstcn bench`) show the
same tables, cell for cell, as `fstcn.bench.tables` builds them: each layout is read back and compared."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from fstcn.bench.core import Stats
from fstcn.bench.markdown import render as render_markdown
from fstcn.bench.report import render as render_rich
from fstcn.bench.tables import Table, stats_text, tables

# Two recorded `fstcn bench` runs, frozen here so the results record (bench/results/) can change freely:
# every section of a full timing run, and an agreement run.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
Shown = list[tuple[str, list[str], list[list[str]]]]  # (title, columns, rows) per table


def _partial_results() -> dict[str, Any]:
    """A run with only some sections, and cells that look like rich markup or hold a pipe."""
    return {
        "config": {"threads": 2, "repeats": 3, "model": "m.onnx", "trained_weights": False},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.5, 1.0, 1.0]},
        "engines": {
            "rows": 90,
            "times_ms": {"ort_plain": Stats.of([100.0, 110.0]).to_dict(), "tiny": Stats.of([0.4]).to_dict()},
            "achieved_gflops": {"ort_plain": 50.0},
            "ratios": {"ort_plain_vs_torch_eager": Stats.of([3.5, 3.6]).to_dict()},
        },
        "decode": {
            "times_ms": {"long_600s": Stats.of([5.0]).to_dict()},
            "long_vs_short": Stats.of([2.0]).to_dict(),
            "two_vs_one_decoder": Stats.of([1.25, 1.5]).to_dict(),
            "frames": {},
        },
        "agreement": {
            "videos": 3,
            "data": "[bold]synth[/bold] | test",
            "disagreements_shared_trunk": ["a"],
            "recheck_shared_trunk": {
                "0.1": {"rate": 0.25, "top1_agreement": 1.0, "accuracy": 0.75, "speedup_vs_exact": 2.5},
                "0.05": {"rate": 0.0, "top1_agreement": 0.5, "accuracy": 0.5},
            },
        },
        "targets": [{"target": "ORT vs PyTorch eager", "goal": ">= 3x", "measured": 3.55, "met": True}],
    }


def _results(name: str) -> dict[str, Any]:
    if name == "partial":
        return _partial_results()
    return json.loads((FIXTURES / name).read_text())


def _markdown_shown(text: str) -> Shown:
    """Read back `fstcn.bench.markdown`'s layout: a bold title line, a blank line, a pipe table."""
    shown: Shown = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        if len(lines) == 1 and lines[0].startswith("**") and lines[0].endswith("**"):
            shown.append((lines[0][2:-2], [], []))
            continue
        assert shown and not shown[-1][1], f"a table without a title line before it:\n{block}"
        assert set(lines[1].replace("|", "").split()) == {"---"}, lines[1]

        def cells(line: str) -> list[str]:
            assert line.startswith("| ") and line.endswith(" |"), line
            parts = line[2:-2].replace("\\|", "\0").split(" | ")
            return [part.replace("\0", "|") for part in parts]

        title = shown.pop()[0]
        shown.append((title, cells(lines[0]), [cells(line) for line in lines[2:]]))
    return shown


def _plain(markup: Any) -> str:
    """What the console shows for a title, header or cell (markup applied, escapes removed)."""
    return Text.from_markup(markup).plain


def _rich_shown(group: Any) -> Shown:
    shown: Shown = []
    for table in group.renderables:
        assert isinstance(table, RichTable)
        columns = [_plain(column.header) for column in table.columns]
        by_column = [[_plain(cell) for cell in column.cells] for column in table.columns]
        rows = [list(row) for row in zip(*by_column, strict=True)]
        shown.append((_plain(table.title), columns, rows))
    return shown


@pytest.mark.parametrize("name", ["full-run.json", "agreement-run.json", "partial"])
def test_markdown_and_console_show_the_same_tables(name: str) -> None:
    results = _results(name)
    built = [(table.title, table.columns, table.rows) for table in tables(results)]
    assert sum(len(rows) for _, _, rows in built) > 5
    assert _markdown_shown(render_markdown(results)) == built
    assert _rich_shown(render_rich(results)) == built


def test_console_keeps_text_that_looks_like_markup() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render_rich(_partial_results()))
    text = console.export_text()
    assert "ms: median [min-max]" in text
    assert "[bold]synth[/bold] | test" in text


def test_decode_table_shows_the_two_decoder_speed() -> None:
    (decode,) = [table for table in tables(_partial_results()) if table.title.startswith("decode + sampling")]
    assert decode.rows[-1][:2] == ["speed of two decoders vs one (10-minute video)", "1.38x [1.25-1.50]"]


def test_tables_keep_every_figure_of_a_full_run() -> None:
    """The union of what the Markdown and the console layouts used to show, from one results file."""
    shown = {table.title.split(" (")[0].split(":")[0]: table for table in tables(_results("full-run.json"))}
    run = dict(map(tuple, shown["machine and run"].rows))
    assert run["started"] == "2026-11-27 04:22:53" and run["threads / repeats"] == "2 / 5"
    assert run["CPU"].endswith("(2 CPUs)") and run["seconds"] == "152.6"
    assert shown["SGEMM peak"].rows == [
        ["2", "openblas 0.3.31.188.0 (SkylakeX)", "234.5", "234.3 [234.1-234.5]"]
    ]
    assert ["ort_plain", "196 [194-210]", "183.1"] in shown["one request"].rows
    assert ["shared_total", "10.12"] in shown["GFLOP per request"].rows
    assert len(shown["ONNX Runtime profile"].rows[0][-1].split(", ")) == 8
    assert ["frames_exact", "44.6 [43.2-46.2]", "0.35 [0.34-0.39]"] == shown["data plane per stage"].rows[1][
        :3
    ]
    assert ["long_600s", "189 [188-213]", "1077", "50"] in shown["decode + sampling"].rows
    assert [row[:2] for row in shown["decode + sampling"].rows[-2:]] == [
        ["ratio long / short (keyframe every 2 s)", "0.99x [0.81-1.07]"],
        ["speed of two decoders vs one (10-minute video)", "1.34x [1.17-1.38]"],
    ]
    ort = shown["ONNX Runtime session options"]
    assert ort.columns[1:3] == ["plain ms", "plain speed"]
    assert ort.rows[1][:3] == ["optimisation disabled", "531 [508-948]", "0.37x [0.25-0.44]"]
    assert shown["POST /predict"].rows[0] == [
        "shared_branch", "1", "4", "7.23", "123", "146", "54", "43%", "0", "1.2"
    ]  # fmt: skip
    assert shown["targets"].rows[0] == ["ORT vs PyTorch eager", ">= 3x", "3.83", "True"]


def test_table_and_stats_text_fail_loudly_or_pick_readable_digits() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        Table("t", ["a", "b", "c"], [["1", "2"]])
    assert stats_text(None) == "-"
    assert stats_text({"median": 961.13, "min": 919.0, "max": 972.1}) == "961 [919-972]"
    assert stats_text({"median": 71.24, "min": 70.0, "max": 80.0}) == "71.2 [70.0-80.0]"
    assert stats_text({"median": 0.42, "min": 0.28, "max": 0.49}) == "0.42 [0.28-0.49]"
    assert stats_text({"median": 3.1, "min": 2.9, "max": 3.3}, "x", 2) == "3.10x [2.90-3.30]"
