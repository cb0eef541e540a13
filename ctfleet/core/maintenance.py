"""Maintenance windows: planned outages of a CT or a whole region, as data (pure after load).

``standards/maintenance.yaml`` lists the windows; the exporter serves
``ctfleet_ct_planned_outage`` = 1 for a CT while one of its windows is open, the
``PlannedOutage`` alert follows it, and Alertmanager inhibits the CT's other alerts
(``monitors/alertmanager/alertmanager.yml``) until the window closes::

    windows:
      - ct: "05.091.07.11"                 # one CT (HCP code) ...
        start: 2026-12-02T08:00:00+01:00   # with a UTC offset (Morocco's legal time moves)
        end: 2026-12-02T12:00:00+01:00
        reason: Replacement of the VSAT modem
        reference: "SDR-05/INT/2026-311"   # optional
      - region: "08"                       # ... or every CT of a region
        start: 2026-12-05T22:00:00+01:00
        end: 2026-12-06T02:00:00+01:00
        reason: Regional cloud network upgrade

Strict: an unknown CT or region, both or neither of ct/region, a time without a UTC
offset, an end not after its start, or a missing reason fail with the file and line.
A window in the past stays as a record and no longer applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ctfleet.core.errors import InputError, InputErrors, Problem
from ctfleet.core.norms import problems_error
from ctfleet.core.yamlio import load_yaml, validate

FILE = "maintenance.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowEntry(_Strict):
    ct: str | None = None
    region: str | None = None
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=3)
    reference: str | None = None


class MaintenanceFile(_Strict):
    description: str | None = None
    windows: list[WindowEntry] = []


@dataclass(frozen=True)
class Window:
    ct: str | None
    region: str | None
    start: datetime
    end: datetime
    reason: str
    reference: str | None
    source: str  # file:line

    def open_at(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def covers(self, ct_code: str, region_code: str) -> bool:
        return self.ct == ct_code if self.ct is not None else self.region == region_code


class Maintenance:
    """The loaded windows.

    >>> from datetime import timezone as tz
    >>> w = Window(None, "08", datetime(2026, 12, 5, 21, tzinfo=tz.utc), datetime(2026, 12, 6, 1, tzinfo=tz.utc), "r", None, "f:2")
    >>> m = Maintenance([w])
    >>> m.in_outage("08.201", "08", datetime(2026, 12, 5, 23, tzinfo=tz.utc)), m.in_outage("08.201", "08", datetime(2026, 12, 6, 1, tzinfo=tz.utc))
    (True, False)
    """

    def __init__(self, windows: Iterable[Window] = ()):
        self.windows = sorted(windows, key=lambda w: (w.start, w.end))

    def __len__(self) -> int:
        return len(self.windows)

    def open_windows(self, ct_code: str, region_code: str, at: datetime) -> list[Window]:
        return [w for w in self.windows if w.open_at(at) and w.covers(ct_code, region_code)]

    def in_outage(self, ct_code: str, region_code: str, at: datetime) -> bool:
        return bool(self.open_windows(ct_code, region_code, at))

    def planned_outages(self, cts: Iterable, at: datetime) -> set[str]:
        """Codes of the CTs (objects with ``code`` and ``region_code``) in a window at ``at``."""
        live = [w for w in self.windows if w.open_at(at)]
        if not live:
            return set()
        return {ct.code for ct in cts if any(w.covers(ct.code, ct.region_code) for w in live)}


def load_maintenance(standards: Path, show, ct_regions: dict[str, str]) -> Maintenance:
    path = standards / FILE
    if not path.exists():
        return Maintenance()
    doc = load_yaml(path, show(path))
    problems: list[Problem] = []
    try:
        parsed: MaintenanceFile = validate(doc, MaintenanceFile)
    except InputErrors as exc:
        raise problems_error(exc.problems) from None
    except InputError:
        raise
    regions = set(ct_regions.values())
    out: list[Window] = []
    for i, e in enumerate(parsed.windows):
        line = doc.line_of(("windows", i))

        def bad(key: str, msg: str, valid: str) -> None:
            problems.append(Problem(doc.path, msg, line=doc.line_of(("windows", i, key)) or line, key=f"windows[{i}].{key}", valid=valid))

        if (e.ct is None) == (e.region is None):
            bad("ct", "give exactly one of ct and region", "ct: an HCP code, or region: an HCP region code")
            continue
        if e.ct is not None and e.ct not in ct_regions:
            bad("ct", f"unknown CT {e.ct!r}", "an HCP code of the registry, e.g. 05.091.07.11")
            continue
        if e.region is not None and e.region not in regions:
            bad("region", f"unknown region {e.region!r}", "an HCP region code, 01 to 12")
            continue
        if e.end <= e.start:
            bad("end", f"end {e.end.isoformat()} is not after start {e.start.isoformat()}", "a time after start")
            continue
        out.append(Window(e.ct, e.region, e.start, e.end, e.reason, e.reference, f"{doc.path}:{line}"))
    if problems:
        raise problems_error(problems)
    return Maintenance(out)
