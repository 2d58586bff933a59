"""The `fstcn` console script.

Each subcommand lives in its own module under `fstcn.commands` and exposes a typer-annotated function
named `command`. Command modules import only the standard library and typer at module level, so that
`fstcn serve` works in an image without torch and `fstcn --help` is instant; the heavy imports happen
inside each command.
"""

from __future__ import annotations

import importlib

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

app = typer.Typer(
    name="fstcn",
    help="FstCN action recognition: synthesise data, train, export, serve, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for name, module_name in COMMAND_MODULES.items():
        module = importlib.import_module(module_name)
        app.command(name=name, help=module.command.__doc__)(module.command)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
