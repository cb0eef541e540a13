"""Which tenants the hosting stacks declare, as data the monitors can serve (pure).

The KPIs "CTs hébergées" (per hosting tier) and "mutualisations réalisées" compare what
the stacks *declare* with what the cluster *has* (kube-state-metrics' namespace series,
scraped by the regional Prometheus; recording rules in ``monitors/rules/hosting.rules.yml``
join the two on the namespace and its tier label). The stacks and the monitors may not
import each other (import-linter), so the declaration is this pure function of the
registry, in the core, which both sides can reach; the stacks' planners
(``ctfleet.stacks.plan``) place each tenant with the same :func:`tenant_home`. Each CT
has one tenant, in its most local hosting tier: its SDL's, else its grouping's, else its
region's SDR cloud. ``tests/test_hosting.py`` checks the declaration against
``plan_stack`` for every stack, so the two cannot drift apart silently.

    >>> # declared_tenants(registry)[0]
    >>> # DeclaredTenant(ct='01', tier='sdr', namespace='ct-01', unit='01')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ctfleet.core.conventions import ct_namespace, grouping_namespace
from ctfleet.core.models import CT, Tier
from ctfleet.core.registry import Registry

#: The tiers whose tenants live in a cloud the stacks provision, per CT (national: shared
#: platforms every CT uses, not a tenant of its own; own: a reference server on site).
CLOUD_TIERS = (Tier.SDR, Tier.ECI, Tier.SDL)
#: The tiers where one hosting unit serves several CTs: the programme's "mutualisations".
MUTUALISED_TIERS = (Tier.ECI, Tier.SDL)


@dataclass(frozen=True)
class DeclaredTenant:
    """One CT hosted in one tier: the namespace that must exist for it to count as hosted."""

    ct: str
    tier: str  # sdr | eci | sdl
    namespace: str
    unit: str  # region code (sdr), grouping code (eci), commune code (sdl)


@dataclass(frozen=True)
class HostingUnit:
    """A grouping or an SDL hosting its members in one tenant (a mutualisation when present)."""

    tier: str  # eci | sdl
    unit: str
    namespace: str
    region: str
    members: tuple[str, ...]  # CT codes (for an SDL: the commune, whose arrondissements it serves)


def tenant_home(ct) -> str | None:
    """The one tier whose stack holds this CT's tenant: the most local hosting it has.

    A commune with arrondissements lives in its SDL's stack, a grouping member in its
    ECI/GCT's, any other CT hosted by its region in the SDR's; a CT with none of these
    (own hosting only) has no tenant. Never two: a namespace declared by two stacks
    would be fought over, and deleted by whichever stack drops it first.

    >>> from types import SimpleNamespace as C
    >>> [tenant_home(C(tiers=t, grouping=g)) for t, g in [((Tier.SDR, Tier.SDL), None), ((Tier.SDR, Tier.ECI), "G"), ((Tier.SDR,), None)]]
    ['sdl', 'eci', 'sdr']
    """
    if Tier.SDL in ct.tiers:
        return "sdl"
    if Tier.ECI in ct.tiers and ct.grouping:
        return "eci"
    if Tier.SDR in ct.tiers:
        return "sdr"
    return None


def declared_tenants(registry: Registry, cts: Iterable[CT] | None = None) -> list[DeclaredTenant]:
    """The tenants the stacks declare for ``cts`` (default: every CT of the registry)."""
    out: list[DeclaredTenant] = []
    for ct in sorted(cts if cts is not None else registry.cts.values(), key=lambda c: c.code):
        home = tenant_home(ct)
        if home == "sdr":
            out.append(DeclaredTenant(ct.code, home, ct_namespace(ct.code), ct.region_code))
        elif home == "eci" and ct.grouping in registry.groupings:
            out.append(DeclaredTenant(ct.code, home, grouping_namespace(ct.grouping), ct.grouping))
        elif home == "sdl":
            out.append(DeclaredTenant(ct.code, home, ct_namespace(ct.code), ct.code))
    return out


def hosting_units(registry: Registry) -> list[HostingUnit]:
    """Groupings with at least one member hosted by them, and SDLs, of the registry."""
    units: list[HostingUnit] = []
    for code in sorted(registry.groupings):
        g = registry.groupings[code]
        members = tuple(m for m in g.members if m in registry.cts and tenant_home(registry.cts[m]) == "eci")
        if members:
            units.append(HostingUnit(Tier.ECI.value, code, grouping_namespace(code), g.region_code, members))
    for ct in sorted(registry.cts.values(), key=lambda c: c.code):
        if Tier.SDL in ct.tiers:
            units.append(HostingUnit(Tier.SDL.value, ct.code, ct_namespace(ct.code), ct.region_code, (ct.code,)))
    return units
