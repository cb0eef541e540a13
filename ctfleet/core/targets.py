"""The programme's KPI targets and deadlines (``standards/targets.yaml``), strictly loaded (pure).

Each target is a share (%) of its KPI's denominator, to reach by a deadline quarter::

    targets:
      - kpi: cts_connected
        target: 100
        deadline: 2022-Q4
        sources: [{source: dgct-2021, ref: "..."}]

Unknown KPIs, a KPI given twice, a share outside 0-100, a malformed quarter or an unknown
source are errors naming the file, the line and what is valid. :func:`status` says
where a measured share stands against its target at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ctfleet.core.errors import InputError, InputErrors, Problem, one_of
from ctfleet.core.norms import SourceRef
from ctfleet.core.yamlio import load_yaml, validate

#: KPI -> its denominator (the recording rules' names without ``ctfleet:`` and ``:count``).
TARGET_KPIS: dict[str, str] = {
    "cts_connected": "cts", "cts_meeting_norms": "cts", "cts_equipped": "cts", "cts_hosted": "cts",
    "mutualisations": "mutualisations_declared",
}
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetEntry(_Strict):
    kpi: str
    target: float = Field(gt=0, le=100)
    deadline: str
    sources: list[SourceRef] = Field(min_length=1)


class TargetsFile(_Strict):
    description: str | None = None
    targets: list[TargetEntry]


@dataclass(frozen=True)
class Target:
    kpi: str
    share: float  # 0..1
    deadline: str  # 2022-Q4
    denominator: str
    sources: tuple[SourceRef, ...]
    source: str  # file:line

    @property
    def deadline_end(self) -> date:
        """The last day of the deadline quarter."""
        return quarter_end(self.deadline)


def quarter_of(when: date | datetime) -> str:
    """>>> quarter_of(date(2022, 11, 30))
    '2022-Q4'
    """
    return f"{when.year}-Q{(when.month - 1) // 3 + 1}"


def quarter_end(quarter: str) -> date:
    """>>> quarter_end("2022-Q2")
    datetime.date(2022, 6, 30)
    """
    m = _QUARTER.match(quarter)
    if not m:
        raise ValueError(f"not a quarter: {quarter!r}")
    year, q = int(m.group(1)), int(m.group(2))
    return date(year, 3 * q, 31 if q in (1, 4) else 30)


def status(target: Target, share: float | None, on: date) -> str:
    """``met`` when the share reaches the target; otherwise ``overdue`` after the deadline
    quarter, ``open`` before it; ``no_data`` without a measure.

    >>> t = Target("cts_connected", 1.0, "2022-Q4", "cts", (), "t.yaml:3")
    >>> status(t, 1.0, date(2023, 1, 1)), status(t, 0.9, date(2023, 1, 1)), status(t, 0.9, date(2022, 12, 1)), status(t, None, date(2022, 1, 1))
    ('met', 'overdue', 'open', 'no_data')
    """
    if share is None:
        return "no_data"
    if share >= target.share - 1e-9:
        return "met"
    return "overdue" if on > target.deadline_end else "open"


def load_targets(standards: Path, show=str, source_ids: set[str] | None = None) -> list[Target]:
    path = standards / "targets.yaml"
    doc = load_yaml(path, show(path))
    data: TargetsFile = validate(doc, TargetsFile)
    problems: list[Problem] = []
    seen: set[str] = set()
    out: list[Target] = []
    for i, t in enumerate(data.targets):
        line = doc.line_of(("targets", i, "kpi"))
        if t.kpi not in TARGET_KPIS:
            problems.append(Problem(doc.path, f"unknown KPI {t.kpi!r}", line=line, key=f"targets[{i}].kpi", valid=one_of(list(TARGET_KPIS))))
            continue
        if t.kpi in seen:
            problems.append(Problem(doc.path, f"KPI {t.kpi!r} has two targets", line=line, key=f"targets[{i}].kpi", valid="one target per KPI"))
        seen.add(t.kpi)
        if not _QUARTER.match(t.deadline):
            problems.append(Problem(doc.path, f"{t.deadline!r} is not a quarter", line=doc.line_of(("targets", i, "deadline")),
                                    key=f"targets[{i}].deadline", valid="YEAR-Qn, e.g. 2022-Q4"))
            continue
        for j, s in enumerate(t.sources):
            if source_ids is not None and s.source not in source_ids:
                problems.append(Problem(doc.path, f"unknown source {s.source!r}", line=doc.line_of(("targets", i, "sources", j)),
                                        key=f"targets[{i}].sources[{j}]", valid=one_of(sorted(source_ids))))
        out.append(Target(t.kpi, t.target / 100, t.deadline, TARGET_KPIS[t.kpi], tuple(t.sources), f"{doc.path}:{line}"))
    if problems:
        raise InputError(problems[0]) if len(problems) == 1 else InputErrors(problems)
    return out
