"""The `ftrl` command line: a thin Typer layer over the library; each command parses options and calls one function.

One module per command group; importing them registers their commands on `app`."""

from ftrl.cli import analyze, bench, data, runs, training  # noqa: F401 - registers the commands
from ftrl.cli.common import app, console

__all__ = ["app", "console"]
