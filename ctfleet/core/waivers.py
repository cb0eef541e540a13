"""Waivers: accepted exceptions to a control, as reviewed data (pure after load).

A waiver says that a CT (or some of its devices) need not meet one control until a date,
why, who approved it and under which reference. Files live under ``standards/waivers/``,
scoped like the norms' layers:

    standards/waivers/national.yaml        any CT (a code or a pattern such as 08.201.*)
    standards/waivers/regions/NN.yaml      only CTs of region NN
    standards/waivers/ct/CODE.yaml         only that CT (``ct`` may be left out)

One entry::

    waivers:
      - ct: "08.201.03.09"            # HCP code, or a pattern (fnmatch: *, ?)
        device: "ws-08-201-03-09-*"   # optional: only these devices (hostname pattern)
        control: WS-4
        reason: Workstations delivered without TPM; encryption after the 2027 renewal
        approved_by: "DGCT/DSI, M. Alaoui"
        approved_on: 2026-11-02
        reference: "DGCT/DSI/2026-117"
        expires: 2027-06-30           # in force through this date (UTC), then stops by itself

Loading is strict: an unknown key, control or CT, a missing approver, reason or
reference, and an expiry not after the approval all fail with the file and line. A
waiver past its expiry stays in the file (it is the record of the decision) and simply
stops applying: :meth:`Waivers.applies` is asked with the time of the evaluation.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from ctfleet.core.errors import InputError, InputErrors, Problem
from ctfleet.core.norms import problems_error
from ctfleet.core.yamlio import Doc, load_yaml, validate

EXPIRING_DAYS = 30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WaiverEntry(_Strict):
    ct: str | None = Field(default=None, min_length=2)
    device: str | None = Field(default=None, min_length=1)
    control: str
    reason: str = Field(min_length=3)
    approved_by: str = Field(min_length=2)
    approved_on: date
    reference: str = Field(min_length=1)
    expires: date


class WaiverFile(_Strict):
    description: str | None = None
    waivers: list[WaiverEntry] = []


@dataclass(frozen=True)
class Waiver:
    ct: str  # code or pattern
    device: str | None
    control: str
    reason: str
    approved_by: str
    approved_on: date
    reference: str
    expires: date
    source: str  # "standards/waivers/national.yaml:4"

    def in_force(self, at: datetime | date) -> bool:
        day = at.date() if isinstance(at, datetime) else at
        return self.approved_on <= day <= self.expires

    def expiring(self, at: datetime | date, days: int = EXPIRING_DAYS) -> bool:
        day = at.date() if isinstance(at, datetime) else at
        return self.in_force(day) and self.expires <= day + timedelta(days=days)

    def matches(self, ct_code: str, device: str | None, control: str) -> bool:
        if control != self.control or not fnmatch.fnmatchcase(ct_code, self.ct):
            return False
        if self.device is None:
            return True
        return device is not None and fnmatch.fnmatchcase(device, self.device)


class Waivers:
    """Every loaded waiver; which apply to a CT at a time.

    >>> w = Waiver("08.201.*", None, "WS-4", "r", "DGCT", date(2026, 1, 1), "ref", date(2026, 6, 30), "f:1")
    >>> ws = Waivers([w])
    >>> bool(ws.applies("08.201.03.09", "ws1", "WS-4", date(2026, 6, 30))), bool(ws.applies("08.201.03.09", "ws1", "WS-4", date(2026, 7, 1)))
    (True, False)
    """

    def __init__(self, waivers: Iterable[Waiver] = ()):
        self.all: list[Waiver] = list(waivers)
        self._by_ct: dict[str, list[Waiver]] = {}

    def __len__(self) -> int:
        return len(self.all)

    def of_ct(self, ct_code: str) -> list[Waiver]:
        """Waivers whose CT pattern matches (in force or not), cached per CT."""
        if ct_code not in self._by_ct:
            self._by_ct[ct_code] = [w for w in self.all if fnmatch.fnmatchcase(ct_code, w.ct)]
        return self._by_ct[ct_code]

    def applies(self, ct_code: str, device: str | None, control: str, at: datetime | date) -> Waiver | None:
        for w in self.of_ct(ct_code):
            if w.matches(ct_code, device, control) and w.in_force(at):
                return w
        return None

    def in_force(self, at: datetime | date) -> list[Waiver]:
        return sorted((w for w in self.all if w.in_force(at)), key=lambda w: (w.expires, w.ct, w.control))

    def expiring(self, at: datetime | date, days: int = EXPIRING_DAYS) -> list[Waiver]:
        return [w for w in self.in_force(at) if w.expiring(at, days)]


def _entries(doc: Doc, problems: list[Problem]) -> list[tuple[int, WaiverEntry]]:
    try:
        parsed: WaiverFile = validate(doc, WaiverFile)
    except InputErrors as exc:
        problems.extend(exc.problems)
        return []
    except InputError as exc:
        problems.append(exc.problem)
        return []
    return list(enumerate(parsed.waivers))


def load_waivers(standards: Path, show, controls: set[str], ct_regions: dict[str, str]) -> Waivers:
    """Load every waiver file under ``standards/waivers``; all problems are raised at once.

    ``ct_regions`` maps each CT code of the registry to its region code.
    """
    root = standards / "waivers"
    problems: list[Problem] = []
    out: list[Waiver] = []
    if not root.is_dir():
        return Waivers()
    files: list[tuple[Path, str | None, str | None]] = []  # (path, region scope, ct scope)
    for p in sorted(root.glob("*.yaml")):
        if p.name != "national.yaml":
            problems.append(Problem(show(p), f"unknown waiver file {p.name!r}",
                                    valid="national.yaml, regions/NN.yaml or ct/CODE.yaml"))
            continue
        files.append((p, None, None))
    regions = set(ct_regions.values())
    for p in sorted((root / "regions").glob("*.yaml")):
        if p.stem not in regions:
            problems.append(Problem(show(p), f"unknown region {p.stem!r}", valid="a file named after an HCP region code, e.g. 08.yaml"))
            continue
        files.append((p, p.stem, None))
    for p in sorted((root / "ct").glob("*.yaml")):
        if p.stem not in ct_regions:
            problems.append(Problem(show(p), f"unknown CT code {p.stem!r}", valid="a file named after an HCP code, e.g. 08.201.03.09.yaml"))
            continue
        files.append((p, None, p.stem))
    for path, region, ct_scope in files:
        doc = load_yaml(path, show(path))
        for i, e in _entries(doc, problems):
            line = doc.line_of(("waivers", i))

            def bad(key: str, msg: str, valid: str | None = None) -> None:
                problems.append(Problem(doc.path, msg, line=doc.line_of(("waivers", i, key)) or line, key=f"waivers[{i}].{key}",
                                        valid=valid))

            pattern = e.ct or ct_scope
            if pattern is None:
                bad("ct", "required key is missing", "an HCP code or a pattern such as 08.201.*")
                continue
            if ct_scope is not None and pattern != ct_scope:
                bad("ct", f"{pattern!r} in the waiver file of CT {ct_scope}", f"{ct_scope!r}, or leave ct out")
                continue
            matched = [c for c in ct_regions if fnmatch.fnmatchcase(c, pattern)]
            if not matched:
                bad("ct", f"unknown CT {pattern!r}: no CT of the registry matches", "an HCP code such as 08.201.03.09, or a pattern such as 08.201.*")
                continue
            if region is not None and any(ct_regions[c] != region for c in matched):
                bad("ct", f"{pattern!r} matches CTs outside region {region}", f"CTs of region {region} only")
                continue
            if e.control not in controls:
                bad("control", f"unknown control id {e.control!r}", "a control id from standards/controls.yaml")
                continue
            if e.expires <= e.approved_on:
                bad("expires", f"expiry {e.expires.isoformat()} is not after the approval on {e.approved_on.isoformat()}: "
                               "the waiver would be expired when created", "a date after approved_on")
                continue
            out.append(Waiver(pattern, e.device, e.control, e.reason, e.approved_by, e.approved_on, e.reference, e.expires,
                              f"{doc.path}:{line}"))
    if problems:
        raise problems_error(problems)
    return Waivers(out)
