"""Norms as code: the control catalogue and its layered values.

``standards/controls.yaml`` declares every control once (id, title, what it applies to,
value type, how an observation is judged, severity, and where the requirement comes
from). Values are layered, later layers winning:

    standards/norms/baseline.yaml            national baseline (every control has a value)
    standards/norms/lots/lot-N.yaml          per roll-out lot
    standards/norms/segments/SEGMENT.yaml    per programme segment
    standards/norms/links/TYPE.yaml          per link type of the CT's site (fibre, adsl, 4g, vsat, none)
    (``links: TYPE:`` in a segment file)     per (segment, link type)
    standards/norms/ct/CODE.yaml             per-CT override

Link-type layers may only set connectivity controls (LNK-*): a medium decides what round
trip, loss and bandwidth can be asked of a site (a geostationary hop alone is ~550 ms), so
a VSAT site in a 15,000-50,000 commune is judged against the satellite value and a fibre
site in a small commune against the fibre one. A CT's link type is its (first) site's
uplink in the registry, attached with :meth:`NormSet.attach_links`; without a fleet (or
a site) no link layer applies. :meth:`NormSet.layers_for` is the one place the order lives.

Each resolved value remembers the file and line it came from, so ``ctfleet norms show``
tells an operator where to change it — in one place.

Every layer may also say how old a result may be before it counts as unknown
(``max_age``), per result source (``snmp: 15m``, ``audit: 35d``) or per control
(``RTR-7: 3d``); a control's own age wins over its source's, later layers win as for
values, and the baseline gives one for every source.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.conventions import to_base_unit, unit_range
from ctfleet.core.errors import InputError, InputErrors, Problem, one_of
from ctfleet.core.models import CT, LinkType, Segment
from ctfleet.core.yamlio import Doc, load_yaml, validate

AppliesTo = Literal["workstation", "server", "router", "link", "hosting", "site"]
ValueType = Literal["int", "float", "bool", "str", "enum", "list"]
Compare = Literal["min", "max", "equal", "subset", "superset", "member"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRef(_Strict):
    source: str  # id in the catalogue's `sources`
    ref: str | None = None  # clause, benchmark id, page


class SourceDoc(_Strict):
    id: str
    title: str
    kind: Literal["programme", "directive", "benchmark", "proposal"]
    url: str | None = None


class Control(_Strict):
    """One control of the catalogue.

    ``compare`` says how an observation is judged against the norm's value:
    ``min`` observed >= value, ``max`` observed <= value, ``equal``, ``subset`` (every
    observed item is allowed by the value), ``superset`` (every required item is observed),
    ``member`` (the observed item is one of the value's items).
    """

    id: str = Field(pattern=r"^[A-Z]{2,4}-\d+(\.\d+)?$")
    title: str
    applies_to: list[AppliesTo] = Field(min_length=1)
    topic: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    level: Literal[1, 2] = 1
    severity: Literal["low", "medium", "high", "critical"]
    type: ValueType
    unit: str | None = None
    choices: list[str] | None = None
    compare: Compare
    disruptive: bool = False  # may cut access: needs an explicit flag to remediate
    sources: list[SourceRef] = Field(min_length=1)
    description: str | None = None

    @field_validator("choices")
    @classmethod
    def _choices_nonempty(cls, v):
        if v is not None and not v:
            raise ValueError("choices must not be empty")
        return v

    def _out_of_range(self, value: float) -> str | None:
        """Why a number cannot mean anything in this control's unit (conventions.UNIT_RANGE), or None."""
        low, high = unit_range(self.unit)
        if low <= value <= high:
            return None
        unit = f" {self.unit}" if self.unit else ""
        return f"{value:,}{unit} is out of range ({low:,} to {high:,}{unit})"

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this control, or None."""
        t = self.type
        unit = f" ({self.unit})" if self.unit else ""
        if t == "bool":
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if t == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return self._out_of_range(value) if ok else f"expected a whole number{unit}, got {value!r}"
        if t == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return self._out_of_range(value) if ok else f"expected a number{unit}, got {value!r}"
        if t == "str":
            return None if isinstance(value, str) else f"expected text, got {value!r}"
        if t == "enum":
            if value not in (self.choices or []):
                return f"expected {one_of(self.choices or [])}, got {value!r}"
            return None
        if t == "list":
            if not isinstance(value, list) or not all(isinstance(x, (str, int)) for x in value):
                return f"expected a list, got {value!r}"
            if self.choices:
                bad = [x for x in value if str(x) not in self.choices]
                if bad:
                    return f"items {bad!r} not allowed; expected items {one_of(self.choices)}"
            return None
        raise AssertionError(t)


class Catalogue(_Strict):
    sources: list[SourceDoc]
    controls: list[Control]


class LinkLayer(_Strict):
    """A link-type layer (``standards/norms/links/TYPE.yaml``, or a segment file's
    ``links: TYPE:`` block): values of connectivity controls for sites on that medium."""

    description: str | None = None
    values: dict[str, Any] = {}
    max_age: dict[str, str] = {}


ServerTypeName = Literal["small", "standard", "large"]


class ServerTypeValues(_Strict):
    """What a server configuration type (EQP-4) means: minimum CPU count, memory and root
    disk. The baseline defines every type; a later layer may change any field."""

    cpu_count: int | None = Field(default=None, ge=1, le=4096)
    memory_gib: int | None = Field(default=None, ge=1, le=1_048_576)
    disk_gib: int | None = Field(default=None, ge=1, le=1_048_576)
    sources: list[SourceRef] = []


class Layer(_Strict):
    """A layer file: values for some controls, controls that do not apply, and the maximum
    age of results (per source or per control) before they count as unknown. A segment file
    may refine connectivity values per link type (``links``). ``server_types`` says what
    EQP-4's configuration types (small, standard, large) mean in CPU, memory and disk."""

    description: str | None = None
    values: dict[str, Any] = {}
    not_applicable: list[str] = []
    max_age: dict[str, str] = {}
    links: dict[LinkType, LinkLayer] = {}
    server_types: dict[ServerTypeName, ServerTypeValues] = {}


_AGE = re.compile(r"^(\d+)(m|h|d|w)$")
_AGE_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The result sources of the compliance model (``ctfleet.core.compliance.Source``), which a
#: ``max_age`` key may name; a test checks the two agree.
RESULT_SOURCES = ("snmp", "icmp", "audit", "router_audit", "registry", "stack")


def parse_age(text: str) -> int | None:
    """Seconds in a maximum age such as ``15m``, ``6h``, ``35d`` or ``2w``; None if malformed.

    >>> parse_age("15m"), parse_age("35d"), parse_age("soon")
    (900, 3024000, None)
    """
    m = _AGE.match(str(text).strip())
    if not m or int(m.group(1)) == 0:
        return None
    return int(m.group(1)) * _AGE_UNIT[m.group(2)]


@dataclass(frozen=True)
class MaxAges:
    """How old a result may be, for one CT's layers: per control first, then per source.

    >>> ages = MaxAges({"RTR-7": (259200, "b.yaml:3")}, {"router_audit": (604800, "b.yaml:9")})
    >>> ages.seconds("RTR-7", "router_audit"), ages.seconds("RTR-1", "router_audit"), ages.seconds("RTR-1", "snmp")
    (259200, 604800, None)
    """

    by_control: dict[str, tuple[int, str]]
    by_source: dict[str, tuple[int, str]]

    def seconds(self, control: str, source: str) -> int | None:
        hit = self.by_control.get(control) or self.by_source.get(source)
        return hit[0] if hit else None

    def origin(self, control: str, source: str) -> str | None:
        hit = self.by_control.get(control) or self.by_source.get(source)
        return hit[1] if hit else None


@dataclass(frozen=True)
class Resolved:
    control: Control
    value: Any
    applicable: bool
    source: str  # "standards/norms/segments/commune_under_15k.yaml:12"
    layer: str  # baseline | lot-3 | segment commune_under_15k | link vsat | segment commune_under_15k, link vsat | ct 01.511.01.0

    def in_base_unit(self) -> float:
        """The value converted from the catalogue's unit to the series' base unit (ms -> s, % -> ratio)."""
        return to_base_unit(self.value, self.control.unit)


@dataclass(frozen=True)
class _LoadedLayer:
    name: str
    doc: Doc
    layer: Layer | LinkLayer
    prefix: tuple = ()  # where the layer sits in its file: () or ("links", "vsat")

    def line_of(self, *loc) -> int | None:
        return self.doc.line_of(self.prefix + loc)

    @property
    def not_applicable(self) -> list[str]:
        return getattr(self.layer, "not_applicable", [])


class NormSet:
    """The loaded catalogue and layers; resolves the norms of any CT (pure after load)."""

    def __init__(self, catalogue: Catalogue, baseline: _LoadedLayer, lots: dict[int, _LoadedLayer],
                 segments: dict[Segment, _LoadedLayer], cts: dict[str, _LoadedLayer],
                 links: dict[LinkType, _LoadedLayer] | None = None,
                 segment_links: dict[tuple[Segment, LinkType], _LoadedLayer] | None = None):
        self.catalogue = catalogue
        self.controls = {c.id: c for c in catalogue.controls}
        self.baseline = baseline
        self.lots = lots
        self.segments = segments
        self.cts = cts
        self.links = links or {}
        self.segment_links = segment_links or {}
        # CT code -> link type of its site, from the registry's fleet (attach_links).
        self.ct_links: dict[str, LinkType] = {}
        self._cache: dict[tuple, dict[str, Resolved]] = {}
        self._ages: dict[tuple, MaxAges] = {}
        # Reviewed exceptions and planned outages (ctfleet.core.waivers / .maintenance),
        # attached by the project loader once the registry is known; None = none loaded.
        self.waivers = None
        self.maintenance = None

    def control(self, control_id: str) -> Control:
        try:
            return self.controls[control_id]
        except KeyError:
            raise InputError(Problem("standards/controls.yaml", f"unknown control id {control_id!r}",
                                     valid=one_of(sorted(self.controls)))) from None

    def resolve_for(self, segment: Segment, lot: int, ct_code: str | None = None,
                    link: LinkType | None = None) -> dict[str, Resolved]:
        layers = self.layers_for(segment, lot, ct_code, link)
        key = tuple(layer.name for layer in layers)
        if key not in self._cache:
            self._cache[key] = _resolve(self.controls, layers)
        return self._cache[key]

    def layers_for(self, segment: Segment, lot: int | None, ct_code: str | None = None,
                   link: LinkType | None = None) -> list[_LoadedLayer]:
        """The layers that apply, in the one order norms are resolved: baseline, lot, segment,
        link type, (segment, link type), CT."""
        layers = [self.baseline]
        if lot in self.lots:
            layers.append(self.lots[lot])
        if segment in self.segments:
            layers.append(self.segments[segment])
        if link in self.links:
            layers.append(self.links[link])
        if (segment, link) in self.segment_links:
            layers.append(self.segment_links[(segment, link)])
        if ct_code in self.cts:
            layers.append(self.cts[ct_code])
        return layers

    def attach_links(self, ct_links: dict[str, LinkType]) -> None:
        """Say each CT's link type (its first site's uplink); later resolutions use it."""
        self.ct_links = dict(ct_links)

    def link_of(self, ct: CT) -> LinkType | None:
        return self.ct_links.get(ct.code)

    def resolve(self, ct: CT) -> dict[str, Resolved]:
        return self.resolve_for(ct.segment, ct.lot, ct.code, self.link_of(ct))

    def layers_of(self, ct: CT) -> list[_LoadedLayer]:
        return self.layers_for(ct.segment, ct.lot, ct.code, self.link_of(ct))

    def max_ages(self, ct: CT) -> MaxAges:
        """The maximum result ages that apply to a CT (cached per set of layers)."""
        layers = self.layers_of(ct)
        key = tuple(layer.name for layer in layers)
        if key not in self._ages:
            by_control: dict[str, tuple[int, str]] = {}
            by_source: dict[str, tuple[int, str]] = {}
            for layer in layers:
                for k, text in layer.layer.max_age.items():
                    hit = (parse_age(text), f"{layer.doc.path}:{layer.line_of('max_age', k)}")
                    (by_source if k in RESULT_SOURCES else by_control)[k] = hit
            self._ages[key] = MaxAges(by_control, by_source)
        return self._ages[key]

    def value(self, ct: CT, control_id: str) -> Any:
        return self.resolve(ct)[self.control(control_id).id].value

    def server_type(self, ct: CT, name: str | None = None):
        """What the CT's server configuration type (EQP-4, or ``name``) means, as a
        :class:`ctfleet.core.inventory.ServerSpec` (each field from the last layer setting
        it; ``origin`` names those files and lines); None for ``none``."""
        from ctfleet.core.inventory import ServerSpec

        name = name or self.value(ct, "EQP-4")
        if name == "none":
            return None
        got: dict[str, tuple[int, str]] = {}
        for layer in self.layers_of(ct):
            t = getattr(layer.layer, "server_types", {}).get(name)
            if t is None:
                continue
            for f in ("cpu_count", "memory_gib", "disk_gib"):
                v = getattr(t, f)
                if v is not None:
                    got[f] = (v, f"{layer.doc.path}:{layer.line_of('server_types', name, f)}")
        origins = sorted({o for _, o in got.values()})
        return ServerSpec(name, got["cpu_count"][0], got["memory_gib"][0], got["disk_gib"][0], origin=", ".join(origins))

    def applicable(self, ct: CT, applies_to: str) -> list[Resolved]:
        return [r for r in self.resolve(ct).values() if r.applicable and applies_to in r.control.applies_to]


def _resolve(controls: dict[str, Control], layers: list[_LoadedLayer]) -> dict[str, Resolved]:
    out: dict[str, Resolved] = {}
    for layer in layers:
        for cid, value in layer.layer.values.items():
            line = layer.line_of("values", cid)
            prev = out.get(cid)
            out[cid] = Resolved(controls[cid], value, prev.applicable if prev else True, f"{layer.doc.path}:{line}", layer.name)
        for i, cid in enumerate(layer.not_applicable):
            prev = out[cid]
            line = layer.line_of("not_applicable", i)
            out[cid] = Resolved(prev.control, prev.value, False, f"{layer.doc.path}:{line}", layer.name)
    return {cid: out[cid] for cid in controls}  # catalogue order


def _load_layer(path: Path, name: str, show, controls: dict[str, Control], problems: list[Problem],
                model: type[Layer] | type[LinkLayer] = Layer) -> _LoadedLayer:
    doc = load_yaml(path, show(path))
    loaded = _LoadedLayer(name, doc, validate(doc, model))
    _check_layer(loaded, controls, problems, links_only=model is LinkLayer)
    return loaded


def _check_layer(loaded: _LoadedLayer, controls: dict[str, Control], problems: list[Problem], links_only: bool = False) -> None:
    doc, layer, pre = loaded.doc, loaded.layer, loaded.prefix
    where = ".".join(pre) + "." if pre else ""
    for cid, value in layer.values.items():
        line, key = loaded.line_of("values", cid), f"{where}values.{cid}"
        if cid not in controls:
            problems.append(Problem(doc.path, f"unknown control id {cid!r}", line=line, key=key,
                                    valid="a control id from standards/controls.yaml"))
            continue
        if links_only and controls[cid].topic != CONNECTIVITY:
            problems.append(Problem(doc.path, f"{cid} is not a connectivity control: a link-type layer may only set those",
                                    line=line, key=key, valid=one_of([c for c, ctl in controls.items() if ctl.topic == CONNECTIVITY])))
            continue
        why = controls[cid].check_value(value)
        if why:
            problems.append(Problem(doc.path, f"{controls[cid].title}: {why}", line=line, key=key))
    for i, cid in enumerate(loaded.not_applicable):
        if cid not in controls:
            problems.append(Problem(doc.path, f"unknown control id {cid!r}", line=loaded.line_of("not_applicable", i),
                                    key=f"not_applicable[{i}]", valid="a control id from standards/controls.yaml"))
    for k, text in layer.max_age.items():
        line = loaded.line_of("max_age", k)
        if k not in controls and k not in RESULT_SOURCES:
            problems.append(Problem(doc.path, f"unknown result source or control id {k!r}", line=line, key=f"{where}max_age.{k}",
                                    valid=one_of(RESULT_SOURCES) + ", or a control id from standards/controls.yaml"))
        elif parse_age(text) is None:
            problems.append(Problem(doc.path, f"{text!r} is not a maximum age", line=line, key=f"{where}max_age.{k}",
                                    valid="a number and m, h, d or w, e.g. 15m, 6h, 35d, 2w"))
    for t, st in getattr(layer, "server_types", {}).items():
        for j, src in enumerate(st.sources):
            if src.source not in _SOURCE_IDS.get():
                problems.append(Problem(doc.path, f"unknown source {src.source!r}", line=loaded.line_of("server_types", t, "sources", j),
                                        key=f"server_types.{t}.sources[{j}]", valid=one_of(sorted(_SOURCE_IDS.get()))))
    if getattr(layer, "links", None) and not loaded.name.startswith("segment "):
        problems.append(Problem(doc.path, "links: (values per link type) is only read in a segment file", line=loaded.line_of("links"),
                                key="links", valid="standards/norms/links/TYPE.yaml, or links: in standards/norms/segments/SEGMENT.yaml"))


#: The catalogue's source ids while a load checks its layers (server_types' sources name them).
_SOURCE_IDS: ContextVar[set[str]] = ContextVar("ctfleet_norm_source_ids", default=set())

#: The topic of the controls a link-type layer may set (LNK-*).
CONNECTIVITY = "connectivity"


def load_norms(standards: Path, show=str, ct_codes: set[str] | None = None) -> NormSet:
    """Load ``standards/controls.yaml`` and every layer; all problems are reported at once."""
    cat_doc = load_yaml(standards / "controls.yaml", show(standards / "controls.yaml"))
    catalogue: Catalogue = validate(cat_doc, Catalogue)
    problems: list[Problem] = []
    source_ids = {s.id for s in catalogue.sources}
    seen: set[str] = set()
    for i, c in enumerate(catalogue.controls):
        if c.id in seen:
            problems.append(Problem(cat_doc.path, f"duplicate control id {c.id!r}", line=cat_doc.line_of(("controls", i, "id")), key=f"controls[{i}].id"))
        seen.add(c.id)
        if c.type in ("enum",) and not c.choices:
            problems.append(Problem(cat_doc.path, "an enum control needs choices", line=cat_doc.line_of(("controls", i)), key=f"controls[{i}].choices"))
        for j, s in enumerate(c.sources):
            if s.source not in source_ids:
                problems.append(Problem(cat_doc.path, f"unknown source {s.source!r}", line=cat_doc.line_of(("controls", i, "sources", j)),
                                        key=f"controls[{i}].sources[{j}]", valid=one_of(sorted(source_ids))))
    if problems:
        raise InputErrors(problems)
    controls = {c.id: c for c in catalogue.controls}
    _SOURCE_IDS.set(source_ids)
    root = standards / "norms"
    baseline = _load_layer(root / "baseline.yaml", "baseline", show, controls, problems)
    missing = [cid for cid in controls if cid not in baseline.layer.values]
    if missing:
        problems.append(Problem(baseline.doc.path, f"no baseline value for control(s) {', '.join(missing)}", key="values",
                                valid="every control in standards/controls.yaml needs a baseline value"))
    for t in ("small", "standard", "large"):
        st = baseline.layer.server_types.get(t)
        if st is None or None in (st.cpu_count, st.memory_gib, st.disk_gib):
            problems.append(Problem(baseline.doc.path, f"server configuration type {t!r} is not fully defined",
                                    line=baseline.line_of("server_types"), key=f"server_types.{t}",
                                    valid="cpu_count, memory_gib and disk_gib for each of small, standard, large"))
    no_age = [s for s in RESULT_SOURCES if s not in baseline.layer.max_age]
    if no_age:
        problems.append(Problem(baseline.doc.path, f"no maximum result age for source(s) {', '.join(no_age)}", key="max_age",
                                valid="a max_age for every result source: " + ", ".join(RESULT_SOURCES)))
    lots: dict[int, _LoadedLayer] = {}
    for p in sorted((root / "lots").glob("*.yaml")):
        if p.stem not in ("lot-1", "lot-2", "lot-3"):
            problems.append(Problem(show(p), f"unknown lot file name {p.name!r}", valid="lot-1.yaml, lot-2.yaml, lot-3.yaml"))
            continue
        lots[int(p.stem[-1])] = _load_layer(p, p.stem, show, controls, problems)
    segments: dict[Segment, _LoadedLayer] = {}
    segment_links: dict[tuple[Segment, LinkType], _LoadedLayer] = {}
    valid_segments = [s.value for s in Segment]
    for p in sorted((root / "segments").glob("*.yaml")):
        if p.stem not in valid_segments:
            problems.append(Problem(show(p), f"unknown segment {p.stem!r}", valid=one_of(valid_segments)))
            continue
        segments[Segment(p.stem)] = seg = _load_layer(p, f"segment {p.stem}", show, controls, problems)
        for link, sub in seg.layer.links.items():
            refined = _LoadedLayer(f"segment {p.stem}, link {link.value}", seg.doc, sub, ("links", link.value))
            _check_layer(refined, controls, problems, links_only=True)
            segment_links[(Segment(p.stem), link)] = refined
    links: dict[LinkType, _LoadedLayer] = {}
    valid_links = [t.value for t in LinkType]
    for p in sorted((root / "links").glob("*.yaml")) if (root / "links").is_dir() else []:
        if p.stem not in valid_links:
            problems.append(Problem(show(p), f"unknown link type {p.stem!r}", valid=one_of(valid_links)))
            continue
        links[LinkType(p.stem)] = _load_layer(p, f"link {p.stem}", show, controls, problems, LinkLayer)
    cts: dict[str, _LoadedLayer] = {}
    for p in sorted((root / "ct").glob("*.yaml")) if (root / "ct").is_dir() else []:
        if ct_codes is not None and p.stem not in ct_codes:
            problems.append(Problem(show(p), f"unknown CT code {p.stem!r}", valid="a file named after an HCP code, e.g. 01.511.01.0.yaml"))
            continue
        cts[p.stem] = _load_layer(p, f"ct {p.stem}", show, controls, problems)
    if problems:
        raise problems_error(problems)
    return NormSet(catalogue, baseline, lots, segments, cts, links, segment_links)


def problems_error(problems: list[Problem]):
    return InputError(problems[0]) if len(problems) == 1 else InputErrors(problems)
