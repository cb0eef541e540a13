"""What every ``ctfleet`` sub-command shares: the consoles and the one way errors are shown.

The consoles never read markup: every string printed through them (a site's name, a CT's
label, an error naming a file) shows as written, ``[`` and all. Where a command wants
colour it passes a :class:`rich.text.Text` with a style (:func:`styled`), so no user
string is ever parsed as markup.
"""

from __future__ import annotations

import functools
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ctfleet.core.errors import CtfleetError

# Wide enough for the tables when piped (rich falls back to 80 columns without a terminal).
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 160)


def styled(text: object, style: str) -> Text:
    """``text`` shown literally, in ``style``."""
    return Text(str(text), style=style)


def fail(exc: BaseException | str, code: int = 1) -> NoReturn:
    """The one error style of the CLI: ``error: <what, where, what is valid>`` on stderr, then exit ``code``."""
    err.print(Text.assemble(("error:", "bold red"), " ", str(exc)), soft_wrap=True)
    raise typer.Exit(code)


def reports_errors(fn):
    """Print input errors once, without a traceback, and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CtfleetError as exc:
            fail(exc)

    return wrapper
