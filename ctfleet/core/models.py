"""Typed models of the registry: collectivities, segments, lots, hosting tiers, sites and devices.

Codes stay text (HCP codes carry leading zeros). Models are pydantic and frozen; they are
built by the loaders in :mod:`ctfleet.core.registry` and never do I/O.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctfleet.core.secrets import CredentialRef


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Level(str, Enum):
    REGION = "region"
    COUNCIL = "council"  # prefectural or provincial council
    COMMUNE = "commune"


class Segment(str, Enum):
    """The programme's segments; norms are layered on these."""

    REGION = "region"
    COUNCIL = "council"
    COMMUNE_ARRONDISSEMENTS = "commune_arrondissements"
    COMMUNE_250K_PLUS = "commune_250k_plus"
    COMMUNE_100K_250K = "commune_100k_250k"
    COMMUNE_50K_100K = "commune_50k_100k"
    COMMUNE_15K_50K = "commune_15k_50k"
    COMMUNE_UNDER_15K = "commune_under_15k"
    # Limits and labels live only in standards/segments.yaml.


class Tier(str, Enum):
    """Hosting tiers a CT can use."""

    NATIONAL = "national"  # DGCT national cloud: shared national platforms (every CT)
    SDR = "sdr"  # the region's SDR cloud
    ECI = "eci"  # an inter-communal grouping (ECI/GCT)
    SDL = "sdl"  # the local company of a commune with arrondissements
    OWN = "own"  # own hosting: one reference server on site


class LinkType(str, Enum):
    FIBRE = "fibre"  # fibre / MARWAN
    ADSL = "adsl"
    MOBILE_4G = "4g"
    VSAT = "vsat"
    NONE = "none"  # no coverage: periodic trips to the chef-lieu


TERRESTRIAL = {LinkType.FIBRE, LinkType.ADSL, LinkType.MOBILE_4G}


class Role(str, Enum):
    ROUTER = "router"
    SERVER = "server"
    WORKSTATION = "workstation"


class Platform(str, Enum):
    DEBIAN = "debian"
    UBUNTU = "ubuntu"
    WINDOWS = "windows"
    CISCO_IOS = "cisco_ios"
    FRR = "frr"
    MIKROTIK = "mikrotik_routeros"
    HUAWEI_VRP = "huawei_vrp"


PLATFORMS_BY_ROLE = {
    Role.ROUTER: {Platform.CISCO_IOS, Platform.FRR, Platform.MIKROTIK, Platform.HUAWEI_VRP},
    Role.SERVER: {Platform.DEBIAN, Platform.UBUNTU, Platform.WINDOWS},
    Role.WORKSTATION: {Platform.DEBIAN, Platform.UBUNTU, Platform.WINDOWS},
}


class Region(Strict):
    code: str
    name_fr: str
    name_ar: str
    population_2024: int


class Province(Strict):
    code: str
    name_fr: str
    name_ar: str
    kind: Literal["prefecture", "province"]
    region_code: str
    population_2024: int


class Arrondissement(Strict):
    code: str
    name_fr: str
    name_ar: str
    commune_code: str
    population_2024: int


class CT(Strict):
    """A territorial collectivity (region, prefectural/provincial council or commune)."""

    code: str
    level: Level
    name_fr: str
    name_ar: str
    region_code: str
    province_code: str | None = None  # None for regions
    population_2014: int | None = None
    population_2024: int | None = None
    segment: Segment
    lot: int = Field(ge=1, le=3)
    lot_from_rules: int = Field(ge=1, le=3)  # before any data override
    lot_reason: str
    is_seat: bool = False  # chef-lieu of its province
    # HCP 2024 coding (outside any cercle = "urban"); not the legal status: see inventory/hcp/SOURCES-upstream.md
    hcp_type: Literal["urban", "rural"] | None = None
    tiers: tuple[Tier, ...]
    grouping: str | None = None  # ECI/GCT code when a member
    arrondissements: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return code_slug(self.code)


UPLINK_INTERFACE_FORMS = "index:N (ifIndex), name:NAME (ifName or ifDescr) or description:REGEX (searched in ifAlias)"


class Link(Strict):
    type: LinkType
    bandwidth_mbps: float = Field(ge=0)
    # The router interface that carries this link, as the site declares it (see
    # UPLINK_INTERFACE_FORMS); None: the collector's anchored heuristic chooses.
    interface: str | None = None

    @field_validator("interface")
    @classmethod
    def _interface(cls, v: str | None) -> str | None:
        problem = None if v is None else interface_ref_problem(v)
        if problem:
            raise ValueError(f"{problem}; valid: {UPLINK_INTERFACE_FORMS}")
        return v


def interface_ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not an interface reference (see UPLINK_INTERFACE_FORMS), or None.

    >>> interface_ref_problem("index:3"), interface_ref_problem("description:^WAN"), interface_ref_problem("Gi0/0")
    (None, None, "'Gi0/0' is not index:, name: or description: followed by a value")
    """
    kind, sep, value = ref.partition(":")
    if not sep or not value.strip() or kind not in ("index", "name", "description"):
        return f"{ref!r} is not index:, name: or description: followed by a value"
    if kind == "index" and not (value.isdigit() and 0 < int(value) < 2**31):
        return f"{ref!r}: ifIndex must be a whole number 1..2147483647"
    if kind == "description":
        try:
            re.compile(value)
        except re.error as e:
            return f"{ref!r}: not a regular expression ({e})"
    return None


class Device(Strict):
    hostname: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    site_code: str
    role: Role
    platform: Platform
    os_version: str = ""
    mgmt_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    credentials: CredentialRef | None = None
    snmp_version: Literal["v3", "v2c", "v1", "none"] = "none"  # v1: old agents (UPSes, old routers)


class Site(Strict):
    code: str
    ct_code: str
    name: str
    uplink: Link
    backup: Link | None = None
    generated: bool = False


class Grouping(Strict):
    """An ECI/GCT inter-communal grouping and its members."""

    code: str
    name: str
    kind: Literal["eci", "gct"]
    region_code: str
    members: tuple[str, ...]
    illustrative: bool = False


def code_slug(code: str) -> str:
    """A stable, DNS/Kubernetes/Ansible-safe name for an HCP code.

    >>> code_slug("01.511.01.0")
    '01-511-01-0'
    """
    return code.replace(".", "-")
