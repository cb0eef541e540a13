"""Errors that name where the bad input is and what would be valid.

Every loader raises :class:`InputError` (one problem) or :class:`InputErrors` (all the
problems of one file, e.g. every bad row of a spreadsheet) so that the CLI prints one
clear message and exits non-zero, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One bad value: where it is and what would be valid.

    >>> str(Problem("inventory/seats.yaml", "unknown commune '01.999.01.0'", line=12, key="seats[3].commune"))
    "inventory/seats.yaml:12: seats[3].commune: unknown commune '01.999.01.0'"
    """

    file: str
    message: str
    line: int | None = None
    key: str | None = None
    column: str | None = None
    valid: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.key:
            parts.append(self.key)
        if self.column:
            parts.append(f"column {self.column!r}")
        text = ": ".join(parts) + f": {self.message}"
        if self.valid:
            text += f" (valid: {self.valid})"
        return text


class CtfleetError(Exception):
    """Base class of every error the CLI reports without a traceback."""


class InputError(CtfleetError):
    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


@dataclass
class InputErrors(CtfleetError):
    """Several problems found in one pass (all bad rows at once)."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} found, nothing written:"
        return "\n".join([head, *("  " + str(p) for p in self.problems)])


def one_of(values) -> str:
    """Render the valid choices for an error message: ``one of a, b, c``."""
    return "one of " + ", ".join(str(v) for v in values)
