"""One module per `fstcn` subcommand; each exposes `command` (see fstcn/cli.py)."""
