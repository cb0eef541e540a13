"""Classification of collectivities into the programme's segments and lots (pure).

The limits and lot assignments come from ``standards/segments.yaml`` (see
:class:`SegmentRules`); nothing here hard-codes a population limit or an expected total.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ctfleet.core.models import Segment


class SegmentDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    label_fr: str
    label_ar: str
    level: Literal["region", "council", "commune"]
    lot: int = Field(ge=1, le=3)
    min_population: int | None = Field(default=None, ge=0)
    with_arrondissements: bool = False


class ProgrammeReference(BaseModel):
    """The programme's published figures, shown beside computed ones (never used to compute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    segments: dict[Segment, int] = {}
    lots: dict[int, int] = {}


class SegmentRules(BaseModel):
    """The programme's segment table, as loaded from ``standards/segments.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    census: Literal["rgph_2014"]
    segments: dict[Segment, SegmentDef]
    seat_lot: int = Field(ge=1, le=3)
    programme_reference: ProgrammeReference = ProgrammeReference()

    @model_validator(mode="after")
    def _complete(self) -> "SegmentRules":
        missing = [s.value for s in Segment if s not in self.segments]
        if missing:
            raise ValueError(f"segments missing: {', '.join(missing)}")
        bands = [d for d in self.segments.values() if d.level == "commune" and not d.with_arrondissements]
        if any(d.min_population is None for d in bands):
            raise ValueError("every commune band needs min_population")
        if not any(d.min_population == 0 for d in bands):
            raise ValueError("one commune band must start at min_population: 0")
        return self

    def commune_bands(self) -> list[tuple[int, Segment]]:
        """(lower limit, segment), highest first."""
        out = [
            (d.min_population, seg)
            for seg, d in self.segments.items()
            if d.level == "commune" and not d.with_arrondissements
        ]
        return sorted(out, key=lambda t: -t[0])  # type: ignore[arg-type, return-value]

    def commune_segment(self, population: int | None, with_arrondissements: bool) -> Segment:
        """Segment of a commune from its census population (lower-bound inclusive).

        A commune with no census figure (HCP "pm") falls in the lowest band.
        """
        if with_arrondissements:
            return next(s for s, d in self.segments.items() if d.with_arrondissements)
        pop = population or 0
        for limit, seg in self.commune_bands():
            if pop >= limit:
                return seg
        raise AssertionError("unreachable: a band starts at 0")

    def lot(self, segment: Segment, is_seat: bool) -> tuple[int, str]:
        """Lot of a CT by the programme's rules, with the reason shown to operators."""
        base = self.segments[segment].lot
        if is_seat and self.seat_lot < base:
            return self.seat_lot, f"chef-lieu of its province (segment {segment.value} is lot {base})"
        return base, f"segment {segment.value}"
