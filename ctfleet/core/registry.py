"""The CT registry: the one source of truth every other part reads.

Built from the HCP census files copied into ``inventory/hcp/`` (codes kept as text), the
provincial-seat list (``inventory/seats.yaml``), the ECI/GCT groupings
(``inventory/groupings.yaml``), per-CT data overrides (``inventory/overrides.yaml``) and
the programme's segment table (``standards/segments.yaml``). Sites and devices come from
a fleet (imported spreadsheets or the deterministic generator) attached afterwards.

Reading files is the only I/O here; every rule (segment, lot, hosting tiers) is a pure
function of the loaded data.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ctfleet.core.classify import SegmentRules
from ctfleet.core.errors import InputError, Problem, one_of
from ctfleet.core.models import (
    CT,
    Arrondissement,
    Device,
    Grouping,
    Level,
    Province,
    Region,
    Segment,
    Site,
    Tier,
)
from ctfleet.core.yamlio import load_yaml, validate


# ---------------------------------------------------------------- data-file schemas
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeatEntry(_Strict):
    province: str
    province_name: str
    commune: str
    commune_name: str
    sources: list[str] = Field(min_length=1)
    doubtful: bool = False
    note: str | None = None


class SeatSource(_Strict):
    id: str
    title: str
    url: str | None = None


class SeatsFile(_Strict):
    sources: list[SeatSource]
    seats: list[SeatEntry]


class LotOverride(_Strict):
    lot: int = Field(ge=1, le=3)
    reason: str = Field(min_length=3)


class HostingOverride(_Strict):
    add: list[Tier] = []
    remove: list[Tier] = []
    reason: str = Field(min_length=3)


class OverridesFile(_Strict):
    lots: dict[str, LotOverride] = {}
    hosting: dict[str, HostingOverride] = {}


class GroupingEntry(_Strict):
    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,40}$")
    name: str
    kind: Literal["eci", "gct"]
    region: str
    members: list[str] = Field(min_length=2)


class GroupingsFile(_Strict):
    illustrative: bool
    note: str | None = None
    groupings: list[GroupingEntry] = []


# ---------------------------------------------------------------- CSV reading
def read_csv(path: Path, display: str, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a UTF-8 CSV as (line number, row); names the file and line on bad input."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(Problem(display, f"missing column(s) {', '.join(missing)}", line=1,
                                         valid="header with " + ", ".join(required)))
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    got = len(header) + len(row.get(None) or []) - sum(1 for k, v in row.items() if k is not None and v is None)
                    raise InputError(Problem(display, f"row has {got} columns where the header has {len(header)}",
                                             line=reader.line_num, valid="one value per header column (quote values holding commas)"))
                rows.append((reader.line_num, row))
            return rows
    except FileNotFoundError:
        raise InputError(Problem(display, "file not found")) from None
    except UnicodeDecodeError as exc:
        raise InputError(Problem(display, f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    except csv.Error as exc:
        raise InputError(Problem(display, f"malformed CSV: {exc}")) from None


def _int(value: str, display: str, line: int, column: str, optional: bool = False) -> int | None:
    if value.strip() == "" and optional:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(Problem(display, f"{value!r} is not a whole number", line=line, column=column)) from None


# ---------------------------------------------------------------- the registry
@dataclass
class Registry:
    regions: dict[str, Region]
    provinces: dict[str, Province]
    cts: dict[str, CT]
    arrondissements: dict[str, Arrondissement]
    groupings: dict[str, Grouping]
    seats: dict[str, SeatEntry]  # by province code
    sites: dict[str, Site] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    fleet_label: str = "no fleet loaded"
    _sites_by_ct: dict[str, list[Site]] = field(default_factory=dict)
    _devices_by_site: dict[str, list[Device]] = field(default_factory=dict)

    # -- lookups
    def ct(self, code: str) -> CT:
        try:
            return self.cts[code]
        except KeyError:
            raise InputError(Problem("registry", f"unknown CT code {code!r}",
                                     valid="an HCP code such as 01 (region), 01.511 (province), 01.511.01.0 (commune)")) from None

    def select(self, region: str | None = None, segment: Segment | None = None, lot: int | None = None,
               level: Level | None = None, province: str | None = None) -> list[CT]:
        """The CTs matching every filter given; an unknown region or province is an error, never "0 collectivities"."""
        self.check_filters(region, province)
        out = []
        for ct in self.cts.values():
            if region and ct.region_code != region:
                continue
            if province and ct.province_code != province:
                continue
            if segment and ct.segment != segment:
                continue
            if lot and ct.lot != lot:
                continue
            if level and ct.level != level:
                continue
            out.append(ct)
        return out

    def check_filters(self, region: str | None = None, province: str | None = None) -> None:
        if region is not None and region not in self.regions:
            valid = (f"did you mean {region.zfill(2)!r}? Region codes have two digits" if region.zfill(2) in self.regions
                     else one_of(sorted(self.regions)))
            raise InputError(Problem("--region", f"unknown region {region!r}", valid=valid))
        if province is not None:
            if province not in self.provinces:
                example = "04.421" if "04.421" in self.provinces or not self.provinces else min(self.provinces)
                raise InputError(Problem("--province", f"unknown province {province!r}",
                                         valid=f"a province code such as {example}; `ctfleet registry list --level council` lists them"))
            if region is not None and self.provinces[province].region_code != region:
                raise InputError(Problem("--province", f"province {province} is not in region {region}"))

    def sites_of(self, ct_code: str) -> list[Site]:
        return self._sites_by_ct.get(ct_code, [])

    def devices_of_site(self, site_code: str) -> list[Device]:
        return self._devices_by_site.get(site_code, [])

    def devices_of(self, ct_code: str) -> list[Device]:
        return [d for s in self.sites_of(ct_code) for d in self.devices_of_site(s.code)]

    def attach_fleet(self, sites: Iterable[Site], devices: Iterable[Device], label: str) -> None:
        self.sites = {s.code: s for s in sites}
        self.devices = {d.hostname: d for d in devices}
        self._sites_by_ct = defaultdict(list)
        for s in self.sites.values():
            self._sites_by_ct[s.ct_code].append(s)
        self._devices_by_site = defaultdict(list)
        for d in self.devices.values():
            self._devices_by_site[d.site_code].append(d)
        self.fleet_label = label

    def scoped(self, region: str | None) -> "Registry":
        """A registry limited to one region (a regional team's profile)."""
        if region is None:
            return self
        if region not in self.regions:
            raise InputError(Problem("profile", f"unknown region {region!r}", key="region", valid=one_of(sorted(self.regions))))
        cts = {c: ct for c, ct in self.cts.items() if ct.region_code == region}
        sites = [s for s in self.sites.values() if s.ct_code in cts]
        codes = {s.code for s in sites}
        r = Registry(
            regions={region: self.regions[region]},
            provinces={c: p for c, p in self.provinces.items() if p.region_code == region},
            cts=cts,
            arrondissements={c: a for c, a in self.arrondissements.items() if a.commune_code in cts},
            groupings={c: g for c, g in self.groupings.items() if g.region_code == region},
            seats={c: s for c, s in self.seats.items() if c.split(".")[0] == region},
        )
        r.attach_fleet(sites, [d for d in self.devices.values() if d.site_code in codes], self.fleet_label)
        return r

    # -- figures
    def segment_counts(self) -> Counter:
        return Counter(ct.segment for ct in self.cts.values())

    def lot_counts(self, from_rules: bool = False) -> Counter:
        return Counter((ct.lot_from_rules if from_rules else ct.lot) for ct in self.cts.values())

    def role_counts(self, ct_code: str | None = None) -> Counter:
        """Devices per role, of the whole fleet or of one CT."""
        devices = self.devices.values() if ct_code is None else self.devices_of(ct_code)
        return Counter(d.role for d in devices)


@dataclass(frozen=True)
class Paths:
    """Where the registry's files are, relative to the project root."""

    root: Path

    @property
    def hcp(self) -> Path:
        return self.root / "inventory" / "hcp"

    @property
    def seats(self) -> Path:
        return self.root / "inventory" / "seats.yaml"

    @property
    def overrides(self) -> Path:
        return self.root / "inventory" / "overrides.yaml"

    @property
    def groupings(self) -> Path:
        return self.root / "inventory" / "groupings.yaml"

    @property
    def segments(self) -> Path:
        return self.root / "standards" / "segments.yaml"

    @property
    def standards(self) -> Path:
        return self.root / "standards"

    def show(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)


def load_segment_rules(paths: Paths) -> SegmentRules:
    doc = load_yaml(paths.segments, paths.show(paths.segments))
    return validate(doc, SegmentRules)


def load_registry(paths: Paths, segment_rules: SegmentRules | None = None) -> Registry:
    """Load and cross-check the CT registry (without a fleet).

    The seams: the HCP tables (:func:`_load_regions`, :func:`_load_provinces`,
    :func:`_load_arrondissements`, the commune rows), the hand-kept YAML (:func:`_load_seats`,
    :func:`_load_groupings`, the overrides), then the CTs built from all of them
    (:class:`_CtBuilder`) and the last cross-checks (:func:`_check_references`).
    """
    rules = segment_rules or load_segment_rules(paths)
    regions = _load_regions(paths)
    provinces = _load_provinces(paths, regions)
    arrondissements, arr_by_commune = _load_arrondissements(paths)
    commune_rows = read_csv(paths.hcp / "communes.csv", paths.show(paths.hcp / "communes.csv"),
                            ["code", "name_fr", "name_ar", "region_code", "province_code", "population_2024", "population_2014"])
    commune_province = {row["code"]: row["province_code"] for _, row in commune_rows}
    seats = _load_seats(paths, provinces, commune_province)
    groupings, member_of = _load_groupings(paths, regions, set(commune_province))
    overrides_doc = load_yaml(paths.overrides, paths.show(paths.overrides))
    overrides: OverridesFile = validate(overrides_doc, OverridesFile)

    build = _CtBuilder(rules, overrides)
    for code, r in regions.items():
        build.add(dict(code=code, level=Level.REGION, name_fr=r.name_fr, name_ar=r.name_ar, region_code=code,
                       population_2024=r.population_2024, segment=Segment.REGION))
    for code, p in provinces.items():
        build.add(dict(code=code, level=Level.COUNCIL, name_fr=p.name_fr, name_ar=p.name_ar, region_code=p.region_code,
                       province_code=code, population_2024=p.population_2024, segment=Segment.COUNCIL))
    seat_communes = {s.commune for s in seats.values()}
    show = paths.show(paths.hcp / "communes.csv")
    for line, row in commune_rows:
        build.add(_commune_kwargs(row, line, show, build.cts, provinces, rules, arr_by_commune, seat_communes, member_of))
    _check_references(paths, build.cts, arrondissements, overrides_doc, overrides)
    return Registry(regions=regions, provinces=provinces, cts=build.cts, arrondissements=arrondissements,
                    groupings=groupings, seats=seats)


def _load_regions(paths: Paths) -> dict[str, Region]:
    show = paths.show(paths.hcp / "regions.csv")
    regions: dict[str, Region] = {}
    for line, row in read_csv(paths.hcp / "regions.csv", show, ["code", "name_fr", "name_ar", "population_2024"]):
        _unique(regions, row["code"], show, line, "region")
        regions[row["code"]] = Region(code=row["code"], name_fr=row["name_fr"], name_ar=row["name_ar"],
                                      population_2024=_int(row["population_2024"], show, line, "population_2024"))
    return regions


def _load_provinces(paths: Paths, regions: dict[str, Region]) -> dict[str, Province]:
    show = paths.show(paths.hcp / "provinces.csv")
    provinces: dict[str, Province] = {}
    for line, row in read_csv(paths.hcp / "provinces.csv", show, ["code", "name_fr", "name_ar", "type", "region_code", "population_2024"]):
        if row["type"] == "prefecture_of_arrondissements":
            continue  # Casablanca's 8 préfectures d'arrondissements are not collectivities
        if row["type"] not in ("prefecture", "province"):
            raise InputError(Problem(show, f"unknown type {row['type']!r}", line=line, column="type",
                                     valid="prefecture, province, prefecture_of_arrondissements"))
        _unique(provinces, row["code"], show, line, "province")
        if row["region_code"] not in regions:
            raise InputError(Problem(show, f"province {row['code']} names region {row['region_code']!r}, which does not exist",
                                     line=line, column="region_code", valid=one_of(sorted(regions))))
        provinces[row["code"]] = Province(code=row["code"], name_fr=row["name_fr"], name_ar=row["name_ar"], kind=row["type"],
                                          region_code=row["region_code"],
                                          population_2024=_int(row["population_2024"], show, line, "population_2024"))
    return provinces


def _load_arrondissements(paths: Paths) -> tuple[dict[str, Arrondissement], dict[str, list[str]]]:
    show = paths.show(paths.hcp / "arrondissements.csv")
    arr_by_commune: dict[str, list[str]] = defaultdict(list)
    arrondissements: dict[str, Arrondissement] = {}
    for line, row in read_csv(paths.hcp / "arrondissements.csv", show, ["code", "name_fr", "name_ar", "commune_code", "population_2024"]):
        _unique(arrondissements, row["code"], show, line, "arrondissement")
        arrondissements[row["code"]] = Arrondissement(code=row["code"], name_fr=row["name_fr"], name_ar=row["name_ar"],
                                                      commune_code=row["commune_code"],
                                                      population_2024=_int(row["population_2024"], show, line, "population_2024"))
        arr_by_commune[row["commune_code"]].append(row["code"])
    return arrondissements, arr_by_commune


def _load_seats(paths: Paths, provinces: dict[str, Province], commune_province: dict[str, str]) -> dict[str, SeatEntry]:
    """One seat per province; the commune must be in that province."""
    seats_doc = load_yaml(paths.seats, paths.show(paths.seats))
    seats_file: SeatsFile = validate(seats_doc, SeatsFile)
    seats: dict[str, SeatEntry] = {}
    source_ids = {s.id for s in seats_file.sources}
    for i, seat in enumerate(seats_file.seats):
        def bad(key: str, msg: str, valid: str | None = None) -> InputError:
            return InputError(Problem(seats_doc.path, msg, line=seats_doc.line_of(("seats", i, key)), key=f"seats[{i}].{key}", valid=valid))
        if seat.province not in provinces:
            raise bad("province", f"unknown province {seat.province!r}", "a province code from inventory/hcp/provinces.csv (not a préfecture d'arrondissements)")
        if seat.province in seats:
            raise bad("province", f"province {seat.province} has two seats")
        if seat.commune not in commune_province:
            raise bad("commune", f"unknown commune {seat.commune!r}", "a commune code from inventory/hcp/communes.csv")
        if commune_province[seat.commune] != seat.province:
            raise bad("commune", f"commune {seat.commune} is in province {commune_province[seat.commune]}, not {seat.province}")
        for s in seat.sources:
            if s not in source_ids:
                raise bad("sources", f"unknown source id {s!r}", one_of(sorted(source_ids)))
        if seat.doubtful and not seat.note:
            raise bad("note", "a doubtful seat needs a note saying why")
        seats[seat.province] = seat
    return seats


def _load_groupings(paths: Paths, regions: dict[str, Region], commune_codes: set[str]) -> tuple[dict[str, Grouping], dict[str, str]]:
    """The ECI/GCT groupings and, for each member commune, its grouping."""
    groupings_doc = load_yaml(paths.groupings, paths.show(paths.groupings))
    groupings_file: GroupingsFile = validate(groupings_doc, GroupingsFile)
    groupings: dict[str, Grouping] = {}
    member_of: dict[str, str] = {}
    for i, g in enumerate(groupings_file.groupings):
        def gbad(key: str, msg: str, valid: str | None = None) -> InputError:
            return InputError(Problem(groupings_doc.path, msg, line=groupings_doc.line_of(("groupings", i, key)), key=f"groupings[{i}].{key}", valid=valid))
        if g.code in groupings:
            raise gbad("code", f"duplicate grouping code {g.code!r}")
        if g.region not in regions:
            raise gbad("region", f"unknown region {g.region!r}", one_of(sorted(regions)))
        for m in g.members:
            if m not in commune_codes:
                raise gbad("members", f"unknown commune {m!r}", "commune codes from inventory/hcp/communes.csv")
            if m in member_of:
                raise gbad("members", f"commune {m} is already a member of {member_of[m]}")
            member_of[m] = g.code
        groupings[g.code] = Grouping(code=g.code, name=g.name, kind=g.kind, region_code=g.region, members=tuple(g.members),
                                     illustrative=groupings_file.illustrative)
    return groupings, member_of


class _CtBuilder:
    """Builds each CT with its lot (rules, then the data override) and hosting tiers."""

    def __init__(self, rules: SegmentRules, overrides: OverridesFile):
        self.rules, self.overrides = rules, overrides
        self.cts: dict[str, CT] = {}

    def add(self, ct_kwargs: dict) -> None:
        code = ct_kwargs["code"]
        segment: Segment = ct_kwargs["segment"]
        lot, reason = self.rules.lot(segment, ct_kwargs.get("is_seat", False))
        ct_kwargs["lot_from_rules"] = lot
        if code in self.overrides.lots:
            o = self.overrides.lots[code]
            ct_kwargs["lot"] = o.lot
            ct_kwargs["lot_reason"] = f"{o.reason} [data override in inventory/overrides.yaml; the rules gave lot {lot}]"
        else:
            ct_kwargs["lot"] = lot
            ct_kwargs["lot_reason"] = reason
        ct_kwargs["tiers"] = tuple(hosting_tiers(segment, ct_kwargs.get("grouping"), self.overrides.hosting.get(code)))
        self.cts[code] = CT(**ct_kwargs)


def _commune_kwargs(row: dict[str, str], line: int, show: str, cts: dict[str, CT], provinces: dict[str, Province],
                    rules: SegmentRules, arr_by_commune: dict[str, list[str]], seat_communes: set[str],
                    member_of: dict[str, str]) -> dict:
    """A commune row of communes.csv, cross-checked against the provinces, as CT fields."""
    code = row["code"]
    if code in cts:
        raise InputError(Problem(show, f"duplicate code {code!r}", line=line, column="code"))
    if row["province_code"] not in provinces:
        raise InputError(Problem(show, f"commune {code} names province {row['province_code']!r}, which does not exist",
                                 line=line, column="province_code", valid="a province code from provinces.csv"))
    if provinces[row["province_code"]].region_code != row["region_code"]:
        raise InputError(Problem(show, f"commune {code}: region {row['region_code']} is not the region of province {row['province_code']}",
                                 line=line, column="region_code"))
    pop14 = _int(row["population_2014"], show, line, "population_2014", optional=True)
    pop24 = _int(row["population_2024"], show, line, "population_2024", optional=True)
    arr = tuple(sorted(arr_by_commune.get(code, ())))
    return dict(code=code, level=Level.COMMUNE, name_fr=row["name_fr"], name_ar=row["name_ar"], region_code=row["region_code"],
                province_code=row["province_code"], population_2014=pop14, population_2024=pop24,
                segment=rules.commune_segment(pop14, bool(arr)), is_seat=code in seat_communes, grouping=member_of.get(code),
                arrondissements=arr, hcp_type=row.get("type") if row.get("type") in ("urban", "rural") else None)


def _check_references(paths: Paths, cts: dict[str, CT], arrondissements: dict[str, Arrondissement], overrides_doc,
                      overrides: OverridesFile) -> None:
    """Arrondissements name existing communes; overrides name existing CTs."""
    show = paths.show(paths.hcp / "arrondissements.csv")
    for a in arrondissements.values():
        if a.commune_code not in cts:
            raise InputError(Problem(show, f"arrondissement {a.code} names commune {a.commune_code!r}, which does not exist"))
    for key, table in (("lots", overrides.lots), ("hosting", overrides.hosting)):
        for code in table:
            if code not in cts:
                raise InputError(Problem(overrides_doc.path, f"unknown CT code {code!r}", line=overrides_doc.line_of((key, code)),
                                         key=f"{key}.{code}", valid="an HCP code of a region, province or commune"))


def hosting_tiers(segment: Segment, grouping: str | None, override: HostingOverride | None) -> list[Tier]:
    """Hosting tiers by the programme's rules, then the CT's data override.

    Every CT uses the national platforms and its region's SDR cloud; a member of an ECI/GCT
    grouping is hosted by it; a commune with arrondissements by its SDL; any other CT has
    its own reference server.
    """
    tiers = [Tier.NATIONAL, Tier.SDR]
    if grouping:
        tiers.append(Tier.ECI)
    if segment == Segment.COMMUNE_ARRONDISSEMENTS:
        tiers.append(Tier.SDL)
    if not grouping and segment != Segment.COMMUNE_ARRONDISSEMENTS:
        tiers.append(Tier.OWN)
    if override:
        tiers = [t for t in tiers if t not in override.remove]
        tiers += [t for t in override.add if t not in tiers]
    return [t for t in Tier if t in tiers]  # canonical order


def _unique(table: dict, code: str, display: str, line: int, what: str) -> None:
    if code in table:
        raise InputError(Problem(display, f"duplicate {what} code {code!r}", line=line, column="code"))
