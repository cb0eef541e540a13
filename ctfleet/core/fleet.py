"""The deterministic demo fleet: one site per CT, its router, servers and workstations.

A *simulated* fleet, never real equipment: it gives every tool (inventory, collectors,
compliance, reports) a national-scale fleet to work on until the regional teams import
their spreadsheets (:mod:`ctfleet.importer`). It is a pure function of the registry, the
norms and a seed, so the same seed always gives the same fleet, byte for byte.

What it models, from the programme's facts and norms:

- 15% of communes have no terrestrial coverage (small, non-seat communes first): most on
  VSAT, the most isolated tenth with no link at all ("periodic trips to the chef-lieu").
- Other sites use a terrestrial type the segment's norm accepts (``LNK-5``): fibre for the
  big segments, a mix of fibre, ADSL and 4G for the small ones, with bandwidth meeting
  ``LNK-1`` except for a chosen 8%; a backup link where ``LNK-4`` requires one, except
  for a chosen 10% of those.
- Devices: one router per site (7% still on SNMP v2c), a reference server when the CT is
  self-hosted (``Tier.OWN``; two for regions, councils and some large communes), and the
  ``EQP-1`` number of workstations (6% of CTs short by 1-3), a few on Windows 10.

Management addresses are loopback only (the project never sends traffic off the host):

    routers       127.20.0.1 ...  (dense, so a demo can bind one SNMP agent per router)
    servers       127.21.0.1 ...
    workstations  127.24.0.1 ...

Addresses ending in .0 or .255 are skipped.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ctfleet.core import conventions
from ctfleet.core.models import (
    CT,
    Device,
    Level,
    Link,
    LinkType,
    Platform,
    Role,
    Segment,
    Site,
    Tier,
    code_slug,
)
from ctfleet.core.norms import NormSet
from ctfleet.core.secrets import CredentialRef

if TYPE_CHECKING:
    from ctfleet.core.registry import Registry

# Shares of the fleet that deliberately fail a norm, so compliance has something to show.
NO_COVERAGE_SHARE = 0.15  # communes without terrestrial coverage (programme figure)
NO_LINK_SHARE = 0.10  # of those, no link at all
SHORT_BANDWIDTH_SHARE = 0.08  # sites with a link below LNK-1
MISSING_BACKUP_SHARE = 0.10  # of the sites LNK-4 requires a backup for
SNMP_V2C_SHARE = 0.07  # routers (RTR-2 fails)
SHORT_WORKSTATIONS_SHARE = 0.06  # CTs below EQP-1
LEGACY_WINDOWS_SHARE = 0.05  # CTs with some workstations still on Windows 10 (EQP-3 fails)

ROUTER_BLOCK = ipaddress.IPv4Network("127.20.0.0/16")
SERVER_BLOCK = ipaddress.IPv4Network("127.21.0.0/16")
WORKSTATION_BLOCK = ipaddress.IPv4Network("127.24.0.0/14")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# What an operator sells per link type (Mbit/s), smallest first.
OFFERS: dict[LinkType, tuple[float, ...]] = {
    LinkType.FIBRE: (10, 20, 50, 100, 200, 500, 1000),
    LinkType.ADSL: (4, 8, 12, 20),
    LinkType.MOBILE_4G: (4, 10, 20, 50),
    LinkType.VSAT: (2, 4, 8),
    LinkType.NONE: (0,),
}
BACKUP_OFFER = {LinkType.MOBILE_4G: 20.0, LinkType.ADSL: 8.0}

# Terrestrial mix by segment (weights); filtered by what LNK-5 accepts and LNK-1 needs.
_SMALL_MIX = {LinkType.FIBRE: 1, LinkType.ADSL: 5, LinkType.MOBILE_4G: 4}
_MEDIUM_MIX = {LinkType.FIBRE: 3, LinkType.ADSL: 5, LinkType.MOBILE_4G: 2}
_LARGE_MIX = {LinkType.FIBRE: 8, LinkType.ADSL: 2}
_FIBRE_ONLY = {LinkType.FIBRE: 1}
TERRESTRIAL_MIX: dict[Segment, dict[LinkType, int]] = {
    Segment.REGION: _FIBRE_ONLY,
    Segment.COUNCIL: _LARGE_MIX,
    Segment.COMMUNE_ARRONDISSEMENTS: _FIBRE_ONLY,
    Segment.COMMUNE_250K_PLUS: _FIBRE_ONLY,
    Segment.COMMUNE_100K_250K: _LARGE_MIX,
    Segment.COMMUNE_50K_100K: _MEDIUM_MIX,
    Segment.COMMUNE_15K_50K: _MEDIUM_MIX,
    Segment.COMMUNE_UNDER_15K: _SMALL_MIX,
}
LARGE_COMMUNES = {Segment.COMMUNE_250K_PLUS, Segment.COMMUNE_100K_250K, Segment.COMMUNE_50K_100K}

ROUTER_PLATFORMS = ((Platform.CISCO_IOS, 75), (Platform.FRR, 17), (Platform.MIKROTIK, 8))
ROUTER_OS = {Platform.CISCO_IOS: "ios-15.9", Platform.FRR: "frr-9.1", Platform.MIKROTIK: "routeros-7.14"}
SERVER_PLATFORMS = ((Platform.DEBIAN, 80), (Platform.UBUNTU, 20))
WORKSTATION_PLATFORMS = ((Platform.WINDOWS, 75), (Platform.UBUNTU, 15), (Platform.DEBIAN, 10))
LEGACY_WINDOWS = "windows-10"
# Servers' OS; and workstations' when a CT's EQP-3 norm lists no version of the platform.
DEFAULT_OS = {Platform.WINDOWS: "windows-11", Platform.DEBIAN: "debian-12", Platform.UBUNTU: "ubuntu-24.04"}


@dataclass(frozen=True)
class Plan:
    """Which CTs get which deliberate shortfall; drawn once, in registry order."""

    isolated: dict[str, LinkType]  # commune code -> vsat | none
    short_bandwidth: frozenset[str]
    missing_backup: frozenset[str]
    snmp_v2c: frozenset[str]
    short_workstations: dict[str, int]  # CT code -> how many fewer than EQP-1
    legacy_windows: frozenset[str]


def generate(registry: Registry, norms: NormSet, seed: int = 2014) -> tuple[list[Site], list[Device]]:
    """The demo fleet of every CT in ``registry``, a pure function of its inputs.

    >>> sites, devices = generate(registry, norms)                    # doctest: +SKIP
    >>> sites[0].code, sites[0].name, sites[0].uplink                 # doctest: +SKIP
    ('S-01', 'Siège du conseil de la région Tanger-Tétouan-Al Hoceima', Link(type=<LinkType.FIBRE: 'fibre'>, bandwidth_mbps=100.0))
    >>> [(d.hostname, str(d.mgmt_address), d.credentials) for d in devices[:2]]  # doctest: +SKIP
    [('r-01', '127.20.0.1', 'env:CTFLEET_SNMP_01'), ('srv1-01', '127.21.0.1', 'env:CTFLEET_SSH_01')]
    """
    rng = random.Random(seed)
    cts = list(registry.cts.values())
    plan = make_plan(cts, norms, rng)
    province_kind = {code: p.kind for code, p in registry.provinces.items()}
    addresses = {role: _addresses(block) for role, block in
                 ((Role.ROUTER, ROUTER_BLOCK), (Role.SERVER, SERVER_BLOCK), (Role.WORKSTATION, WORKSTATION_BLOCK))}
    sites: list[Site] = []
    devices: list[Device] = []
    for ct in cts:
        site = make_site(ct, norms, plan, rng, province_kind.get(ct.code, "province"))
        sites.append(site)
        devices.extend(make_devices(ct, site, norms, plan, rng, addresses))
    return sites, devices


# ---------------------------------------------------------------- the plan
def make_plan(cts: list[CT], norms: NormSet, rng: random.Random) -> Plan:
    communes = [ct for ct in cts if ct.level == Level.COMMUNE]
    isolated = pick_isolated(communes, rng)
    linked = [ct.code for ct in cts if isolated.get(ct.code) != LinkType.NONE]
    needs_backup = [ct.code for ct in cts if norms.value(ct, "LNK-4")]
    codes = [ct.code for ct in cts]
    short_ws = _sample(codes, SHORT_WORKSTATIONS_SHARE, rng)
    return Plan(
        isolated=isolated,
        short_bandwidth=frozenset(_sample(linked, SHORT_BANDWIDTH_SHARE, rng)),
        missing_backup=frozenset(_sample(needs_backup, MISSING_BACKUP_SHARE, rng)),
        snmp_v2c=frozenset(_sample(codes, SNMP_V2C_SHARE, rng)),
        short_workstations={code: rng.randint(1, 3) for code in short_ws},
        legacy_windows=frozenset(_sample(codes, LEGACY_WINDOWS_SHARE, rng)),
    )


def pick_isolated(communes: list[CT], rng: random.Random) -> dict[str, LinkType]:
    """Exactly round(15%) of communes without terrestrial coverage, and how they connect.

    Small rural communes that are not a chef-lieu are drawn first, the smaller the likelier
    (weighted sampling without replacement: the k largest ``u ** (1/w)``); the tenth with
    the highest draw has no link at all.
    """
    k = round(NO_COVERAGE_SHARE * len(communes))
    keyed = []
    for ct in communes:
        u = rng.random()
        keyed.append((u ** (1.0 / _isolation_weight(ct)), ct.code))
    keyed.sort(reverse=True)
    chosen = [code for _, code in keyed[:k]]
    n_none = round(NO_LINK_SHARE * k)
    return {code: (LinkType.NONE if i < n_none else LinkType.VSAT) for i, code in enumerate(chosen)}


def _isolation_weight(ct: CT) -> float:
    if ct.segment != Segment.COMMUNE_UNDER_15K or ct.is_seat:
        return 0.01
    rural = 1.0 if ct.hcp_type == "rural" else 0.25  # HCP's 2024 coding: rural communes are likelier isolated
    return rural * 15_000 / max(ct.population_2014 or 15_000, 500)


def _sample(codes: list[str], share: float, rng: random.Random) -> list[str]:
    return rng.sample(codes, round(share * len(codes)))


# ---------------------------------------------------------------- sites
def make_site(ct: CT, norms: NormSet, plan: Plan, rng: random.Random, province_kind: str = "province") -> Site:
    minimum = float(norms.value(ct, "LNK-1"))
    kind = plan.isolated.get(ct.code) or _terrestrial_type(ct, norms, minimum, rng)
    mbps = _bandwidth(kind, minimum, ct.code in plan.short_bandwidth, rng)
    return Site(code=site_code(ct), ct_code=ct.code, name=site_name(ct, province_kind),
                uplink=Link(type=kind, bandwidth_mbps=mbps), backup=_backup(ct, norms, plan, kind, rng), generated=True)


def site_code(ct: CT) -> str:
    """``S-`` and the CT's slug: ``S-01-511-01-0``."""
    return conventions.site_code(ct.code)


def site_name(ct: CT, province_kind: str = "province") -> str:
    """The seat of the CT, as people call it.

    >>> site_name(CT.model_construct(level=Level.COMMUNE, name_fr="Assilah"))
    "Hôtel de la commune d'Assilah"
    """
    if ct.level == Level.REGION:
        return f"Siège du conseil de la région {ct.name_fr}"
    if ct.level == Level.COUNCIL:
        adjective = "préfectoral" if province_kind == "prefecture" else "provincial"
        return f"Siège du conseil {adjective} {_de(ct.name_fr)}"
    return f"Hôtel de la commune {_de(ct.name_fr)}"


def _de(name: str) -> str:
    return f"d'{name}" if name[:1].upper() in "AEIOUÂÉÈÎÔ" else f"de {name}"


def _terrestrial_type(ct: CT, norms: NormSet, minimum: float, rng: random.Random) -> LinkType:
    accepted = {LinkType(t) for t in norms.value(ct, "LNK-5")}
    mix = {t: w for t, w in TERRESTRIAL_MIX[ct.segment].items() if t in accepted and OFFERS[t][-1] >= minimum}
    if not mix:
        return LinkType.FIBRE
    types = list(mix)
    return rng.choices(types, weights=[mix[t] for t in types])[0]


def _bandwidth(kind: LinkType, minimum: float, short: bool, rng: random.Random) -> float:
    offers = OFFERS[kind]
    if short:
        below = [o for o in offers if o < minimum]
        return float(below[-1]) if below else minimum / 2
    enough = [o for o in offers if o >= minimum] or [offers[-1]]
    # Most take the smallest offer that meets the norm; some one size up.
    step = 1 if len(enough) > 1 and rng.random() < 0.3 else 0
    return float(enough[step])


def _backup(ct: CT, norms: NormSet, plan: Plan, uplink: LinkType, rng: random.Random) -> Link | None:
    if uplink == LinkType.NONE:
        return None
    required = bool(norms.value(ct, "LNK-4"))
    if required and ct.code in plan.missing_backup:
        return None
    if not required and rng.random() >= 0.05:  # a few sites have one anyway
        return None
    kind = LinkType.MOBILE_4G if uplink != LinkType.MOBILE_4G and rng.random() < 0.7 else LinkType.ADSL
    return Link(type=kind, bandwidth_mbps=BACKUP_OFFER[kind])


# ---------------------------------------------------------------- devices
def make_devices(ct: CT, site: Site, norms: NormSet, plan: Plan, rng: random.Random,
                 addresses: dict[Role, Iterator[ipaddress.IPv4Address]]) -> list[Device]:
    slug = code_slug(ct.code)
    ssh = CredentialRef(f"env:CTFLEET_SSH_{ct.region_code}")
    router = _router(ct, site, slug, plan, rng, next(addresses[Role.ROUTER]))
    servers = [_device(f"srv{i}-{slug}", site, Role.SERVER, p, DEFAULT_OS[p], next(addresses[Role.SERVER]), ssh)
               for i, p in enumerate(_server_platforms(ct, rng), 1)]
    workstations = [_device(f"ws{i:03d}-{slug}", site, Role.WORKSTATION, p, os, next(addresses[Role.WORKSTATION]), ssh)
                    for i, (p, os) in enumerate(_workstation_platforms(ct, norms, plan, rng), 1)]
    return [router, *servers, *workstations]


def _router(ct: CT, site: Site, slug: str, plan: Plan, rng: random.Random, address: ipaddress.IPv4Address) -> Device:
    platform = _pick(ROUTER_PLATFORMS, rng)
    snmp = "v2c" if ct.code in plan.snmp_v2c else "v3"
    return _device(f"r-{slug}", site, Role.ROUTER, platform, ROUTER_OS[platform], address,
                   CredentialRef(f"env:CTFLEET_SNMP_{ct.region_code}"), snmp)


def _server_platforms(ct: CT, rng: random.Random) -> list[Platform]:
    if Tier.OWN not in ct.tiers:
        return []
    two = ct.level in (Level.REGION, Level.COUNCIL) or (ct.segment in LARGE_COMMUNES and rng.random() < 0.5)
    return [_pick(SERVER_PLATFORMS, rng) for _ in range(2 if two else 1)]


def _workstation_platforms(ct: CT, norms: NormSet, plan: Plan, rng: random.Random) -> list[tuple[Platform, str]]:
    count = max(0, int(norms.value(ct, "EQP-1")) - plan.short_workstations.get(ct.code, 0))
    supported = _supported_os(norms.value(ct, "EQP-3"))
    legacy = ct.code in plan.legacy_windows
    out = []
    for _ in range(count):
        platform = _pick(WORKSTATION_PLATFORMS, rng)
        if legacy and platform == Platform.WINDOWS and rng.random() < 0.5:
            out.append((platform, LEGACY_WINDOWS))
        else:
            out.append((platform, rng.choice(supported[platform])))
    return out


def _supported_os(items: list[str]) -> dict[Platform, list[str]]:
    """EQP-3 items grouped by platform: ``{windows: ['windows-11'], ubuntu: ['ubuntu-24.04', ...]}``."""
    out = {p: [i for i in items if i.startswith(p.value + "-")] for p in DEFAULT_OS}
    return {p: (v or [DEFAULT_OS[p]]) for p, v in out.items()}


def _pick(weighted: tuple[tuple[Platform, int], ...], rng: random.Random) -> Platform:
    return rng.choices([p for p, _ in weighted], weights=[w for _, w in weighted])[0]


def _device(hostname: str, site: Site, role: Role, platform: Platform, os_version: str,
            address: ipaddress.IPv4Address, credentials: CredentialRef, snmp: str = "none") -> Device:
    return Device(hostname=hostname, site_code=site.code, role=role, platform=platform, os_version=os_version,
                  mgmt_address=address, credentials=credentials, snmp_version=snmp)


def _addresses(block: ipaddress.IPv4Network) -> Iterator[ipaddress.IPv4Address]:
    """Host addresses of ``block`` in order, skipping x.x.x.0 and x.x.x.255; loopback only."""
    assert block.subnet_of(LOOPBACK), block  # the project never addresses anything off this host
    start = int(block.network_address)
    for n in range(start, start + block.num_addresses):
        if n & 0xFF not in (0, 255):
            yield ipaddress.IPv4Address(n)
    raise RuntimeError(f"address block {block} exhausted")
