"""Router compliance: the running configuration and live state judged against the norms (pure).

For every control the CT's norms apply to routers, the platform's observer
(:mod:`ctfleet.routers.platforms`) turns what the router shows into an observed value,
and :func:`ctfleet.core.compliance.judge` compares it with the norm, as the monitors
do. Nothing observable means unknown, never pass. One :class:`ControlResult` per
(router, control), source ``router_audit``::

    RTR-5 fail  observed False  expected True
        missing: ip access-list standard CTFLEET-MGMT; line vty 0 4 > access-class CTFLEET-MGMT in
    RTR-2 fail  observed 'v2c'  expected 'v3-authpriv'   stray: snmp-server community <secret> RO
    RTR-3 unknown  on an FRR router this is the host's NTP client (chrony) ...
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from ctfleet.core.compliance import ControlResult, Source, Status, judge
from ctfleet.core.norms import Resolved
from ctfleet.routers.configtext import Node, Plan, ordered_paths, show_path
from ctfleet.routers.platforms import (
    BackupAge,
    Classify,
    Count,
    InNorm,
    LiveState,
    PlatformSpec,
    Prerequisite,
    Unobservable,
)


def _lines(paths) -> str:
    return "; ".join(show_path(p) for p in paths)


def observe(spec: PlatformSpec, control: str, running: Sequence[Node], change: Plan,
            state: Mapping[str, str | None], backup_age: float | None) -> tuple[Any, str, bool]:
    """(observed value, evidence, final-unknown) for one control. ``final-unknown``
    forces unknown whatever the value (a prerequisite met, the rest out of view)."""
    obs = spec.observers.get(control)
    texts = [show_path(p) for p in ordered_paths(running)]
    if obs is None:
        return None, f"ctfleet has no observer for {control} on {spec.platform.value}", True
    if isinstance(obs, InNorm):
        delta = change.delta(control)
        if delta is None:
            return None, "the norm asks for nothing here on this router", True
        parts = []
        if delta.missing:
            parts.append("missing: " + _lines(delta.missing))
        if delta.stray:
            parts.append("stray: " + _lines(delta.stray))
        return delta.in_norm, "; ".join(parts) or "as intended", False
    if isinstance(obs, Count):
        rx = re.compile(obs.pattern)
        hits = [t for t in texts if rx.search(t)]
        return len(hits), (_lines((h,) for h in hits) or "none configured"), False
    if isinstance(obs, Classify):
        for pattern, value in obs.rules:
            rx = re.compile(pattern)
            hit = next((t for t in texts if rx.search(t)), None)
            if hit:
                return value, hit, False
        return obs.default, "none configured", False
    if isinstance(obs, LiveState):
        out = state.get(obs.command)
        if out is None:
            return None, f"the router did not answer {obs.command!r}", True
        for pattern, value in obs.rules:
            m = re.search(pattern, out)
            if m:
                return value, f"{obs.command}: {m.group(0)}", False
        return None, f"{obs.command}: no known answer in {out.strip()[:120]!r}", True
    if isinstance(obs, Prerequisite):
        rx = re.compile(obs.pattern)
        hit = next((t for t in texts if rx.search(t)), None)
        if hit is None:
            return False, f"not even the router's part is there (no line matching {obs.pattern!r})", False
        return None, f"{hit}: the rest is out of view: {obs.reason}", True
    if isinstance(obs, Unobservable):
        return None, obs.reason, True
    if isinstance(obs, BackupAge):
        if backup_age is None:
            return None, "no backup of this router in the backup repository", False
        return backup_age, f"last backup {backup_age:g} h ago", False
    raise AssertionError(obs)


def audit_router(spec: PlatformSpec, ct_code: str, hostname: str, norms: Mapping[str, Resolved],
                 running: Sequence[Node], change: Plan, state: Mapping[str, str | None],
                 backup_age: float | None, now: datetime | None = None) -> list[ControlResult]:
    """One result per control applicable to this router (``norms`` already filtered to routers)."""
    now = now or datetime.now(timezone.utc)
    out = []
    for cid, r in norms.items():
        observed, evidence, forced_unknown = observe(spec, cid, running, change, state, backup_age)
        status = Status.UNKNOWN if forced_unknown else judge(r.control, r.value, observed)
        out.append(ControlResult(ct=ct_code, device=hostname, control=cid, status=status, source=Source.ROUTER_AUDIT,
                                 evidence=evidence, observed=_plain(observed), expected=_plain(r.value), observed_at=now))
    return out


def backup_result(ct_code: str, hostname: str, resolved: Resolved, age_hours: float | None,
                  now: datetime | None = None) -> ControlResult:
    """RTR-7 after a backup run (age 0 for a router just fetched)."""
    status = judge(resolved.control, resolved.value, age_hours)
    evidence = "no successful backup yet" if age_hours is None else f"last backup {age_hours:g} h ago"
    return ControlResult(ct=ct_code, device=hostname, control=resolved.control.id, status=status,
                         source=Source.ROUTER_AUDIT, evidence=evidence, observed=age_hours,
                         expected=_plain(resolved.value), observed_at=now or datetime.now(timezone.utc))


def _plain(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)
