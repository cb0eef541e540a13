"""The shared compliance model, used by collectors, audits, the exporter and reports.

A :class:`ControlResult` is one observation: (CT, device, control id, status, source,
evidence, observed at). A CT's compliance is the share of its applicable controls that
pass, always reported beside its coverage (the share with a known result). Unknown and
waived never count as pass.

A CT has one of three outcomes (:class:`Outcome`, DESIGN.md "KPI definitions"):
*meets* its norms when every applicable control has a known, fresh result and none
fails (waived controls are counted apart); *failing* when any fails; *not assessed*
otherwise (no failure known, but results missing or stale). A CT never "meets" what
could not be observed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ctfleet.core.norms import Control


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"
    WAIVED = "waived"


class Source(str, Enum):
    SNMP = "snmp"
    ICMP = "icmp"
    AUDIT = "audit"  # playbook audit on a host
    ROUTER_AUDIT = "router_audit"
    REGISTRY = "registry"  # judged from registry facts (e.g. declared uplink type)
    STACK = "stack"  # Pulumi stack declarations


class ControlResult(BaseModel):
    """One control result.

    >>> ControlResult(ct="01.511.01.0", device="r-01-511-01-0", control="RTR-2", status="fail",
    ...               source="snmp", evidence="answered SNMPv2c", observed_at="2026-11-27T08:00:00Z").key
    ('01.511.01.0', 'r-01-511-01-0', 'RTR-2')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ct: str
    device: str | None = None  # None for CT-level controls (site, link, hosting)
    control: str
    status: Status
    source: Source
    evidence: str = ""
    observed: Any = None  # the observed value, when there is one
    expected: Any = None  # the norm's value it was judged against
    waiver_reason: str | None = None
    observed_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @model_validator(mode="after")
    def _waiver_needs_reason(self) -> "ControlResult":
        if self.status == Status.WAIVED and not self.waiver_reason:
            raise ValueError("a waived result needs a waiver_reason")
        return self

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.ct, self.device, self.control)


class Outcome(str, Enum):
    MEETS = "meets"
    FAILING = "failing"
    NOT_ASSESSED = "not_assessed"


@dataclass(frozen=True)
class Compliance:
    """Per-CT compliance with its coverage.

    ``ratio`` is passed / applicable; ``coverage`` is known / applicable (known = pass or
    fail). ``outcome`` is the KPI: failing if any control fails; meets only when nothing
    is unknown (missing or stale) and at least one control passes; otherwise not assessed.
    ``stale`` counts the unknowns that had a result, too old to count.

    >>> Compliance(applicable=3, passed=2, failed=0, unknown=0, waived=1).outcome.value
    'meets'
    >>> Compliance(applicable=3, passed=2, failed=0, unknown=1, waived=0).outcome.value
    'not_assessed'
    >>> Compliance(applicable=3, passed=1, failed=1, unknown=1, waived=0).outcome.value
    'failing'
    """

    applicable: int
    passed: int
    failed: int
    unknown: int
    waived: int
    stale: int = 0

    @property
    def known(self) -> int:
        return self.passed + self.failed

    @property
    def ratio(self) -> float:
        return self.passed / self.applicable if self.applicable else 0.0

    @property
    def coverage(self) -> float:
        return self.known / self.applicable if self.applicable else 0.0

    @property
    def outcome(self) -> Outcome:
        if self.failed:
            return Outcome.FAILING
        if self.unknown or not self.passed:
            return Outcome.NOT_ASSESSED
        return Outcome.MEETS

    @property
    def meets_norms(self) -> bool:
        return self.outcome == Outcome.MEETS


def latest(results: Iterable[ControlResult]) -> dict[tuple, ControlResult]:
    """The newest result per (CT, device, control)."""
    out: dict[tuple, ControlResult] = {}
    for r in results:
        prev = out.get(r.key)
        if prev is None or r.observed_at >= prev.observed_at:
            out[r.key] = r
    return out


def compliance(expected: Iterable[tuple[str | None, str]], results: Iterable[ControlResult]) -> Compliance:
    """Compliance of one CT.

    ``expected`` lists the applicable (device, control id) pairs of the CT (from its norms
    and registry); results for pairs not expected are ignored, and expected pairs without a
    result count as unknown.
    """
    want = set(expected)
    got = {(r.device, r.control): r.status for r in latest(results).values()}
    counts = defaultdict(int)
    for pair in want:
        counts[got.get(pair, Status.UNKNOWN)] += 1
    return Compliance(applicable=len(want), passed=counts[Status.PASS], failed=counts[Status.FAIL],
                      unknown=counts[Status.UNKNOWN], waived=counts[Status.WAIVED])


def judge(control: Control, expected: Any, observed: Any) -> Status:
    """Judge an observation against a norm's value (pure). ``None`` observed is unknown.

    >>> from ctfleet.core.norms import Control
    >>> c = Control(id="LNK-2", title="rtt", applies_to=["link"], topic="connectivity", severity="medium",
    ...             type="float", compare="max", sources=[{"source": "x"}])
    >>> judge(c, 800, 612.5).value, judge(c, 150, 612.5).value, judge(c, 150, None).value
    ('pass', 'fail', 'unknown')
    """
    if observed is None:
        return Status.UNKNOWN
    op = control.compare
    try:
        if op == "min":
            ok = observed >= expected
        elif op == "max":
            ok = observed <= expected
        elif op == "equal":
            ok = observed == expected
        elif op == "subset":
            ok = set(map(str, observed)) <= set(map(str, expected))
        elif op == "superset":
            ok = set(map(str, observed)) >= set(map(str, expected))
        elif op == "member":
            ok = str(observed) in set(map(str, expected))
        else:  # pragma: no cover - Literal keeps this unreachable
            raise AssertionError(op)
    except TypeError:
        return Status.UNKNOWN
    return Status.PASS if ok else Status.FAIL
