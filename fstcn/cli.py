"""The `fstcn` console script.

Each subcommand lives in its own module under `fstcn.commands` and exposes a typer-annotated function
named `command`. Command modules import only the standard library and typer at module level, so that
`fstcn serve` works in an image without torch and `fstcn --help` is instant; the heavy imports happen
inside each command.

Every command runs behind one error path (`_reporting_errors`): a domain error, a bad value or a file
that is missing, a folder or not a video ends the command with one line on stderr,
`fstcn <command>: <message>`, and a documented exit code (EXIT_CODES); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import click
import typer

# name -> module; the order is the order of `fstcn --help`.
COMMAND_MODULES: dict[str, str] = {
    "serve": "fstcn.commands.serve",
    "predict": "fstcn.commands.predict",
    "synth": "fstcn.commands.synth",
    "train": "fstcn.commands.train",
    "evaluate": "fstcn.commands.evaluate",
    "export": "fstcn.commands.export",
    "info": "fstcn.commands.info",
    "bench": "fstcn.commands.bench",
    "explain": "fstcn.commands.explain",
    "tsne": "fstcn.commands.tsne",
}

# The exit codes of every command (README.md, "The command line").
EXIT_FAILED = 1  # the work failed: a model that does not load, a video that failed, nothing measured
EXIT_USAGE = 2  # bad options or input: a missing file, a folder, not a video, a bad dataset (click's too)
EXIT_NOT_STARTED = 3  # `fstcn serve`: the server did not start
EXIT_CODES = {
    0: "success",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "bad usage or input",
    EXIT_NOT_STARTED: "not started",
}

app = typer.Typer(
    name="fstcn",
    help="FstCN action recognition: synthesise data, train, export, serve, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's tables cut long option names at 80 columns, turn "A:A:" into an emoji
    # and print a type for every flag.
    rich_markup_mode=None,
)


def error_line(error: BaseException) -> tuple[str, int]:
    """(the one-line message, the exit code) of an error a command reports, or raises it again."""
    from fstcn.core.errors import FstcnError

    runtime = sys.modules.get("fstcn.core.runtime")  # loaded by whoever could raise ModelLoadError
    if runtime is not None and isinstance(error, runtime.ModelLoadError):
        return str(error), EXIT_FAILED
    if isinstance(error, FstcnError):
        return f"{error.message} ({error.code})", EXIT_USAGE
    if isinstance(error, IsADirectoryError):
        return f"{error.filename} is a folder, not a video file", EXIT_USAGE
    if isinstance(error, FileNotFoundError):
        return (f"no such file: {error.filename}" if error.filename else str(error)), EXIT_USAGE
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}", EXIT_USAGE
    if isinstance(error, ValueError):
        return str(error), EXIT_USAGE
    raise error


def _reporting_errors(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # typer reads the options from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # typer.Exit and bad options: click reports them itself
        except Exception as error:
            message, code = error_line(error)  # re-raises what is not a reportable error
            sys.stderr.write(f"fstcn {name}: {message}\n")
            raise typer.Exit(code) from error

    return run


def _register_commands() -> None:
    for name, module_name in COMMAND_MODULES.items():
        module = importlib.import_module(module_name)
        app.command(name=name, help=module.command.__doc__)(_reporting_errors(name, module.command))


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
