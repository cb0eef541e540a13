"""Which controls apply to which CT and device, and the results the registry alone can give.

Pure functions shared by the collectors, the audits, the exporter and the reports:

* :func:`expected_pairs` — the (device, control) pairs a CT must satisfy, from its norms
  and its equipment in the registry. Device-level controls are expected once per device
  whose role the control applies to; site, link and hosting controls once per CT.
* :func:`registry_results` — results judged from the registry's declarations (declared
  uplink type and bandwidth, backup link, workstation count), source ``registry``.
* :func:`platform_unknowns` — controls no ctfleet check exists for on a device's platform
  yet (e.g. host controls on Windows): reported as ``unknown``, never silently skipped.
* :func:`assess_ct` — a CT's outcome (meets / failing / not assessed) at a time: results
  older than their maximum age (``max_age`` in the norms) count as unknown, controls
  under a waiver in force count as waived, and a CT that is not connected cannot pass a
  connectivity control. The exporter, the demo and the reports all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator

from ctfleet.core.compliance import Compliance, ControlResult, Outcome, Source, Status, judge, latest
from ctfleet.core.models import CT, Platform, Role
from ctfleet.core.norms import CONNECTIVITY, NormSet
from ctfleet.core.registry import Registry

CT_LEVEL = ("site", "link", "hosting")

# Platforms each device-level control topic can be checked on today. Anything else is
# reported unknown with this explanation until a check is written for it.
CHECKABLE: dict[Role, set[Platform]] = {
    Role.WORKSTATION: {Platform.DEBIAN, Platform.UBUNTU},
    Role.SERVER: {Platform.DEBIAN, Platform.UBUNTU},
    Role.ROUTER: {Platform.CISCO_IOS, Platform.FRR},
}


def expected_pairs(ct: CT, registry: Registry, norms: NormSet) -> list[tuple[str | None, str]]:
    resolved = norms.resolve(ct)
    devices = registry.devices_of(ct.code)
    pairs: list[tuple[str | None, str]] = []
    for cid, r in resolved.items():
        if not r.applicable:
            continue
        targets = r.control.applies_to
        if any(t in CT_LEVEL for t in targets):
            pairs.append((None, cid))
        for d in devices:
            if d.role.value in targets:
                pairs.append((d.hostname, cid))
    return pairs


def registry_results(registry: Registry, norms: NormSet, at: datetime, cts: Iterable[CT] | None = None) -> Iterator[ControlResult]:
    """Results judged from what the registry declares (not from live observation)."""
    for ct in cts if cts is not None else registry.cts.values():
        resolved = norms.resolve(ct)
        sites = registry.sites_of(ct.code)
        if not sites:
            continue
        site = sites[0]
        devices = registry.devices_of(ct.code)
        observations = {
            "LNK-1": site.uplink.bandwidth_mbps,
            "LNK-4": site.backup is not None,
            "LNK-5": site.uplink.type.value,
            "EQP-1": sum(1 for d in devices if d.role == Role.WORKSTATION),
        }
        for cid, observed in observations.items():
            r = resolved.get(cid)
            if r is None or not r.applicable:
                continue
            if cid == "LNK-4" and r.value is False:
                status = Status.PASS  # not required: having one or not both meet the norm
            else:
                status = judge(r.control, r.value, observed)
            yield ControlResult(ct=ct.code, device=None, control=cid, status=status, source=Source.REGISTRY,
                                evidence=f"declared in the registry ({registry.fleet_label})", observed=observed,
                                expected=r.value, observed_at=at)


def platform_unknowns(registry: Registry, norms: NormSet, at: datetime, cts: Iterable[CT] | None = None) -> Iterator[ControlResult]:
    for ct in cts if cts is not None else registry.cts.values():
        resolved = norms.resolve(ct)
        for d in registry.devices_of(ct.code):
            if d.platform in CHECKABLE.get(d.role, set()):
                continue
            for cid, r in resolved.items():
                if r.applicable and d.role.value in r.control.applies_to:
                    yield ControlResult(ct=ct.code, device=d.hostname, control=cid, status=Status.UNKNOWN,
                                        source=Source.AUDIT, evidence=f"no ctfleet check for {d.role.value}s on {d.platform.value} yet",
                                        observed_at=at)



class Applicability:
    """Which controls apply at CT level and per device role, for one CT's resolved norms.

    Equivalent to :func:`expected_pairs` but counts instead of listing every
    (device, control) pair: a national snapshot has ~300,000 such pairs.
    """

    def __init__(self, ct: CT, norms: NormSet):
        resolved = norms.resolve(ct)
        self.ct_level = frozenset(cid for cid, r in resolved.items()
                                  if r.applicable and any(t in CT_LEVEL for t in r.control.applies_to))
        self.by_role = {role: frozenset(cid for cid, r in resolved.items() if r.applicable and role.value in r.control.applies_to)
                        for role in Role}

    @classmethod
    def of(cls, ct: CT, norms: NormSet) -> "Applicability":
        """Cached per resolved-norms object (CTs of one segment and lot share it)."""
        cache = norms.__dict__.setdefault("_applicability", {})
        key = id(norms.resolve(ct))
        if key not in cache:
            cache[key] = cls(ct, norms)
        return cache[key]

    def applies(self, device_role: Role | None, control: str) -> bool:
        return control in (self.ct_level if device_role is None else self.by_role[device_role])


def ct_compliance(ct: CT, registry: Registry, norms: NormSet, results: Iterable[ControlResult]):
    """:func:`ctfleet.core.compliance.compliance` of a CT, computed by counting (fast path),
    with no notion of time: no freshness, no waivers (see :func:`assess_ct` for the KPI)."""
    app = Applicability.of(ct, norms)
    roles = {d.hostname: d.role for d in registry.devices_of(ct.code)}
    applicable = len(app.ct_level) + sum(len(app.by_role[r]) for r in roles.values())
    counts = {Status.PASS: 0, Status.FAIL: 0, Status.WAIVED: 0, Status.UNKNOWN: 0}
    for r in latest(results).values():
        if r.device is None:
            ok = r.control in app.ct_level
        else:
            role = roles.get(r.device)
            ok = role is not None and r.control in app.by_role[role]
        if ok:
            counts[r.status] += 1
    unknown = applicable - counts[Status.PASS] - counts[Status.FAIL] - counts[Status.WAIVED]
    return Compliance(applicable=applicable, passed=counts[Status.PASS], failed=counts[Status.FAIL], unknown=unknown,
                      waived=counts[Status.WAIVED])


#: Controls of this topic need the CT to be connected to pass: a CT whose router did not
#: answer (or before any sweep) cannot be counted as meeting them, whatever was declared.
CONNECTIVITY_TOPIC = CONNECTIVITY


@dataclass(frozen=True)
class Assessment:
    """A CT's assessment at one time: counts, outcome, and what decided it.

    ``failing`` maps each failing control to the number of devices (or 1 for the CT)
    failing it; ``oldest_age`` maps each result source to the age in seconds of the
    oldest result counted from it; ``stale`` maps each source to the number of results
    too old to count; ``waivers`` lists the waivers in force that applied.
    """

    compliance: Compliance
    failing: dict[str, int] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    waivers: tuple = ()

    @property
    def outcome(self) -> Outcome:
        return self.compliance.outcome


def assess_ct(ct: CT, registry: Registry, norms: NormSet, results: Iterable[ControlResult], now: datetime,
              connected: bool | None) -> Assessment:
    """The KPI outcome of one CT at ``now`` (pure).

    Of each (device, control) pair's newest result: one older than its maximum age
    counts as unknown (stale); a pass of a connectivity control counts as unknown unless
    the CT is ``connected`` (None: not observed); a pair under a waiver in force
    (``norms.waivers``) counts as waived, with or without a result; a stored result that
    calls itself waived without such a waiver counts as unknown (waivers are reviewed data);
    a result judged from the registry's declarations (source ``registry``) counts as
    unknown: what a CT declared is not what was observed, and a CT never meets (nor
    fails) its norms on paper alone.
    """
    app = Applicability.of(ct, norms)
    devices = registry.devices_of(ct.code)
    roles = {d.hostname: d.role for d in devices}
    applicable = len(app.ct_level) + sum(len(app.by_role[r]) for r in roles.values())
    ages = norms.max_ages(ct)
    waivers = getattr(norms, "waivers", None)
    ct_waivers = [w for w in waivers.of_ct(ct.code) if w.in_force(now)] if waivers is not None else []
    counts = {Status.PASS: 0, Status.FAIL: 0, Status.WAIVED: 0, Status.UNKNOWN: 0}
    failing: dict[str, int] = {}
    oldest: dict[str, float] = {}
    stale: dict[str, int] = {}
    applied: dict[int, object] = {}
    seen: set[tuple[str | None, str]] = set()
    observed = (r for r in results if r.source != Source.REGISTRY)  # declared is not observed
    for r in latest(observed).values():
        if r.device is None:
            ok = r.control in app.ct_level
        else:
            role = roles.get(r.device)
            ok = role is not None and r.control in app.by_role[role]
        if not ok:
            continue
        seen.add((r.device, r.control))
        status = r.status
        src = r.source.value
        age = (now - r.observed_at).total_seconds()
        oldest[src] = max(oldest.get(src, 0.0), age)
        limit = ages.seconds(r.control, src)
        if limit is not None and age > limit and status in (Status.PASS, Status.FAIL):
            status = Status.UNKNOWN
            stale[src] = stale.get(src, 0) + 1
        if status == Status.PASS and connected is not True and norms.controls[r.control].topic == CONNECTIVITY_TOPIC:
            status = Status.UNKNOWN
        if status == Status.WAIVED:
            status = Status.UNKNOWN  # only a waiver from standards/waivers waives
        for w in ct_waivers:
            if w.matches(ct.code, r.device, r.control):
                status = Status.WAIVED
                applied[id(w)] = w
                break
        counts[status] += 1
        if status == Status.FAIL:
            failing[r.control] = failing.get(r.control, 0) + 1
    for w in ct_waivers:  # waived pairs that have no result at all
        pairs = [(None, w.control)] if w.device is None and w.control in app.ct_level else []
        pairs += [(h, w.control) for h, role in roles.items() if w.control in app.by_role[role] and w.matches(ct.code, h, w.control)]
        for pair in pairs:
            if pair not in seen:
                seen.add(pair)
                counts[Status.WAIVED] += 1
                applied[id(w)] = w
    unknown = applicable - counts[Status.PASS] - counts[Status.FAIL] - counts[Status.WAIVED]
    comp = Compliance(applicable=applicable, passed=counts[Status.PASS], failed=counts[Status.FAIL], unknown=unknown,
                      waived=counts[Status.WAIVED], stale=sum(stale.values()))
    return Assessment(comp, failing, oldest, stale, tuple(applied.values()))
