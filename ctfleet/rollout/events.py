"""Folding ansible-runner's event stream into a rollout's state (pure).

:class:`RunState` takes events one by one (:meth:`RunState.apply`) and keeps, per host:
task counts, the current task, the first failure message, the final play recap, and the
audit reports the roles leave as facts (``baseline_audit_report``,
``workstation_audit_report``, ``reference_server_audit_report``). Progress displays and
the summary read it; nothing here prints.

An event, as ansible-runner hands it to ``event_handler`` (abridged)::

    {"event": "runner_on_ok", "counter": 42,
     "event_data": {"host": "th01", "task": "SYS-3 | AUDIT | Record the observation",
                    "res": {"ansible_facts": {"baseline_audit_report": {...}}, "changed": false}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPORT_SUFFIX = "_audit_report"
INVENTORY_FACT = "baseline_inventory_report"
_DONE = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
         "runner_on_skipped": "skipped"}


@dataclass
class HostState:
    name: str
    tasks_done: int = 0
    current_task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    first_error: str = ""
    recap: dict[str, int] | None = None  # from playbook_on_stats: ok, changed, failures, dark, skipped, ...
    # phase -> role -> report ({"results": {control: {...}}, "ct": ..., "observed_at": ...})
    reports: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # the baseline role's observed inventory (``baseline_inventory_report``), the last one seen
    inventory: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        r = self.recap
        if r is not None:
            if r.get("dark", 0):
                return "unreachable"
            if r.get("failures", 0):
                return "failed"
            return "ok"
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "running"

    def final_counts(self) -> dict[str, int]:
        """ok/changed/failed/unreachable/skipped from the recap (what Ansible reports), else from events."""
        r = self.recap
        if r is not None:
            return {"ok": r.get("ok", 0), "changed": r.get("changed", 0), "failed": r.get("failures", 0),
                    "unreachable": r.get("dark", 0), "skipped": r.get("skipped", 0)}
        return {"ok": self.ok, "changed": self.changed, "failed": self.failed, "unreachable": self.unreachable,
                "skipped": self.skipped}

    def last_phase(self) -> str | None:
        for phase in ("after", "audit", "before"):
            if phase in self.reports:
                return phase
        return None

    def results(self, phase: str | None = None) -> dict[str, dict[str, Any]]:
        """Control results of a phase (default: the last one), all roles merged."""
        phase = phase or self.last_phase()
        out: dict[str, dict[str, Any]] = {}
        for report in (self.reports.get(phase, {}) if phase else {}).values():
            out.update(report.get("results") or {})
        return out

    def failing_controls(self, phase: str | None = None) -> list[str]:
        return sorted((cid for cid, r in self.results(phase).items() if r.get("status") == "fail"), key=_control_order)


def _control_order(cid: str):
    prefix, _, num = cid.partition("-")
    try:
        return (prefix, tuple(int(x) for x in num.split(".")))
    except ValueError:
        return (prefix, (0,))


@dataclass
class RunState:
    hosts: dict[str, HostState] = field(default_factory=dict)
    plays: int = 0
    current_play: str = ""
    finished: bool = False

    def host(self, name: str) -> HostState:
        if name not in self.hosts:
            self.hosts[name] = HostState(name)
        return self.hosts[name]

    def apply(self, event: dict[str, Any]) -> str | None:
        """Fold one event in; returns the host it concerned, if any."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.plays += 1
            self.current_play = data.get("play", "")
            return None
        if kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed"):
                for host, n in (data.get(key) or {}).items():
                    h = self.host(host)
                    h.recap = h.recap or {}
                    if key != "processed":
                        h.recap[key] = int(n)
            for host in (data.get("processed") or {}):
                h = self.host(host)
                h.recap = h.recap or {}
            self.finished = True
            return None
        host = data.get("host")
        if not host:
            return None
        h = self.host(host)
        if kind == "runner_on_start":
            h.current_task = data.get("task", "")
            return host
        if kind not in _DONE:
            return None
        h.tasks_done += 1
        setattr(h, _DONE[kind], getattr(h, _DONE[kind]) + 1)
        res = data.get("res") or {}
        if kind == "runner_on_ok" and res.get("changed"):
            h.changed += 1
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors") and not h.first_error:
            h.first_error = f"{data.get('task', '')}: {str(res.get('msg') or res.get('stderr') or res)[:300]}"
        if kind == "runner_on_ok":
            for key, report in (res.get("ansible_facts") or {}).items():
                if key == INVENTORY_FACT and isinstance(report, dict):
                    h.inventory = report
                    continue
                if key.endswith(REPORT_SUFFIX) and isinstance(report, dict) and "results" in report:
                    role = report.get("role") or key[: -len(REPORT_SUFFIX)]
                    h.reports.setdefault(str(report.get("phase", "audit")), {})[role] = report
        return host

    def failed_hosts(self) -> list[str]:
        return sorted(n for n, h in self.hosts.items() if h.status in ("failed", "unreachable"))

    def totals(self) -> dict[str, int]:
        out = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}
        for h in self.hosts.values():
            for k, v in h.final_counts().items():
                out[k] += v
        return out
