"""What every ``ctfleet`` sub-command shares: the consoles and the one way errors are shown."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from ctfleet.core.errors import CtfleetError

# Wide enough for the tables when piped (rich falls back to 80 columns without a terminal).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def reports_errors(fn):
    """Print input errors once, without a traceback, and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CtfleetError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper
