"""Every `fstcn <command> ...` line in README.md and docs/*.md (code blocks and inline code) names a
command the CLI has and only options that command takes, so renaming an option fails here until the
documents follow."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main

from fstcn.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `fstcn CMD`, `.venv/bin/fstcn CMD`, `python -m fstcn.cli CMD` (torchrun), after `$ ` or variables
INVOCATION = re.compile(r"(?:^|[\s`$/])(?:fstcn|-m fstcn\.cli)\s+([a-z][a-z-]*)(.*)$")
FENCE = re.compile(r"^```")


def code_lines(text: str) -> list[str]:
    """Lines of fenced blocks (continuations joined) and inline code spans."""
    lines: list[str] = []
    in_block = False
    pending = ""
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_block = not in_block
            continue
        if in_block:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
        else:
            lines.extend(re.findall(r"`([^`]*fstcn[^`]*)`", line))
    return lines


def invocations() -> list[tuple[str, str, str]]:
    """(document: line number, command, argument text) of every fstcn command line."""
    found = []
    for document in DOCUMENTS:
        for line in code_lines(document.read_text()):
            code = line.split(" #", 1)[0]  # a shell comment
            match = INVOCATION.search(code)
            if match:
                found.append((document.relative_to(REPO).as_posix(), match.group(1), match.group(2)))
    return found


def options_of(text: str) -> list[str]:
    try:
        tokens = shlex.split(text.replace("[", " ").replace("]", " "))
    except ValueError:  # an unbalanced quote in prose
        tokens = text.split()
    return [token.split("=", 1)[0] for token in tokens if token.startswith("--") and len(token) > 2]


COMMANDS: dict[str, click.Command] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
FOUND = invocations()


def test_the_documents_show_every_first_hour_command() -> None:
    assert {"synth", "train", "evaluate", "export", "serve", "predict", "explain", "tsne"} <= {
        command for _, command, _ in FOUND
    }


@pytest.mark.parametrize(("where", "command", "arguments"), FOUND, ids=[f"{w}:{c}" for w, c, _ in FOUND])
def test_documented_command_line_uses_real_options(where: str, command: str, arguments: str) -> None:
    assert command in COMMANDS, f"{where}: `fstcn {command}` is not a command"
    known = {"--help"}
    for param in COMMANDS[command].params:
        known.update(name for name in (*param.opts, *param.secondary_opts) if name.startswith("--"))
    unknown = [option for option in options_of(arguments) if option not in known]
    assert not unknown, f"{where}: `fstcn {command}` has no {', '.join(unknown)}"
