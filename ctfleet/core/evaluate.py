"""Which controls apply to which CT and device, and the results the registry alone can give.

Pure functions shared by the collectors, the audits, the exporter and the reports:

* :func:`expected_pairs` — the (device, control) pairs a CT must satisfy, from its norms
  and its equipment in the registry. Device-level controls are expected once per device
  whose role the control applies to; site, link and hosting controls once per CT.
* :func:`registry_results` — results judged from the registry's declarations (declared
  uplink type and bandwidth, backup link, workstation count), source ``registry``.
* :func:`platform_unknowns` — controls no ctfleet check exists for on a device's platform
  yet (e.g. host controls on Windows): reported as ``unknown``, never silently skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Iterator

from ctfleet.core.compliance import ControlResult, Source, Status, judge
from ctfleet.core.models import CT, Platform, Role
from ctfleet.core.norms import NormSet
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
    """:func:`ctfleet.core.compliance.compliance` of a CT, computed by counting (fast path)."""
    from ctfleet.core.compliance import Compliance, latest

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
