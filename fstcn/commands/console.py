"""The rich console every command prints through.

On a terminal rich wraps at its width; into a pipe or a file it would hard-wrap at 80 columns, cutting
paths and JSON in the middle, so there it does not wrap at all. Emoji codes stay text (`:a:` in a
class name or a path is not 🅰).
"""

from __future__ import annotations

from rich.console import Console


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps only on a terminal."""
    console = Console(stderr=stderr, emoji=False)
    if not console.is_terminal:
        console.soft_wrap = True
    return console
