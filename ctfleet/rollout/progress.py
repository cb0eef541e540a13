"""Rich display of a rollout: a progress bar per host, then the summary table.

Both only read a :class:`RunState`; the runner calls :meth:`HostProgress.on_event`.
The bar's total is the host's task count from the previous run of the same playbook when
known (``expected``), else it grows with the host's tasks.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ctfleet.rollout.events import RunState

_STYLE = {"ok": "green", "failed": "red", "unreachable": "magenta", "running": "yellow"}


class HostProgress:
    def __init__(self, console: Console, expected: dict[str, int] | None = None):
        self.console = console
        self.expected = expected or {}
        self.progress = Progress(TextColumn("{task.fields[host]:<18}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TextColumn("[dim]{task.fields[task_name]}", markup=True),
                                 TimeElapsedColumn(), console=console, transient=False, refresh_per_second=4)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "HostProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def on_event(self, state: RunState, event: dict, host: str | None) -> None:
        if host is not None:
            self._refresh(state, host)
        elif event.get("event") == "playbook_on_stats":  # the recap: every host's final status
            for name in state.hosts:
                self._refresh(state, name)

    def _refresh(self, state: RunState, host: str) -> None:
        h = state.hosts[host]
        if host not in self._tasks:
            self._tasks[host] = self.progress.add_task("", host=host, status="", task_name="",
                                                       total=self.expected.get(host))
        tid = self._tasks[host]
        total = self.expected.get(host)
        if total is not None and h.tasks_done > total:
            total = None
        status = h.status
        self.progress.update(tid, completed=h.tasks_done, total=total,  # None: no estimate yet, the bar pulses
                             status=f"[{_STYLE.get(status, 'white')}]{status}[/]",
                             task_name=(h.current_task or "")[:60].replace("[", "\\["))


def summary_table(state: RunState, title: str) -> Table:
    """ok/changed/failed/unreachable per host, and the controls still failing."""
    t = Table(title=title)
    for col, just in (("host", "left"), ("status", "left"), ("ok", "right"), ("changed", "right"), ("failed", "right"),
                      ("unreachable", "right"), ("controls failing", "left"), ("first error", "left")):
        t.add_column(col, justify=just, overflow="fold")
    for name in sorted(state.hosts):
        h = state.hosts[name]
        c = h.final_counts()
        failing = h.failing_controls()
        t.add_row(name, Text(h.status, style=_STYLE.get(h.status, "white")), str(c["ok"]), str(c["changed"]), str(c["failed"]),
                  str(c["unreachable"]), ", ".join(failing) or ("-" if h.last_phase() else "not audited"),
                  h.first_error[:120])
    tot = state.totals()
    t.add_row("total", "", str(tot["ok"]), str(tot["changed"]), str(tot["failed"]), str(tot["unreachable"]), "", "",
              end_section=True)
    return t
