"""`fstcn <command> --help` at 80 columns: whole option names, no emoji, a type only where a value is
taken, each default stated once (fstcn/cli.py renders click's plain help)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from fstcn.cli import COMMAND_MODULES, app


def help_text(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", list(COMMAND_MODULES))
def test_help_fits_80_columns_without_cut_names_emoji_or_flag_types(command: str) -> None:
    text = help_text(command)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "<bool>" not in text
    assert not re.search(r"[\U0001F000-\U0001FAFF]", text), "rich emoji codes rendered"
    options = [line for line in text.splitlines() if line.lstrip().startswith("--")]
    assert not any("list[" in line for line in options)  # repeatable options name their value


def test_the_options_a_new_user_reads_first_are_whole() -> None:
    assert "--videos-per-class" in help_text("synth")
    train = " ".join(help_text("train").split())
    assert "A:A: a class that is its own reversal" in train
    drop = train[train.index("--drop-spatial-path") : train.index("--reverse-pair")]
    assert drop.count("default") == 1, drop
