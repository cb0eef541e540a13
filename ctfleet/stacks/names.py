"""Names: stacks, tenant namespaces, and the label rules Kubernetes enforces (pure).

Stacks are named after the hosting unit they provision::

    national                          the DGCT national cloud
    sdr-<region slug>                 a region's SDR cloud, e.g. sdr-rabat-sale-kenitra
    eci-<grouping code, lower-case>   an ECI/GCT grouping, e.g. eci-gct-figuig-hauts-plateaux (no eci-eci-)
    sdl-<commune slug>                the SDL of a commune with arrondissements, e.g. sdl-sale

Tenant namespaces are derived from codes, never from names, so that renaming a commune
does not rename (and so delete and recreate) its tenant::

    >>> ct_namespace("01.511.01.0")
    'ct-01-511-01-0'
    >>> ascii_slug("Laâyoune-Sakia El Hamra")
    'laayoune-sakia-el-hamra'
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctfleet.core.conventions import ct_namespace, grouping_namespace  # noqa: F401 (shared names, re-exported)
from ctfleet.core.hosting import tenant_home  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ctfleet.core.registry import Registry

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespace and object names, <= 63
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # <= 63
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # the part after the prefix, <= 63

LABEL_PREFIX = "ctfleet.ma"
MONITORING_NAMESPACE = "ctfleet-monitoring"
PKGCACHE_NAMESPACE = "ctfleet-pkgcache"
RESULTS_NAMESPACE = "ctfleet-results"  # a region's results service and its PostgreSQL (ctfleet.stacks.dataplane)
NATIONAL_STACK = "national"


def ascii_slug(text: str) -> str:
    """Lower-case ASCII words joined by '-': accents dropped, apostrophes removed."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    ascii_text = re.sub(r"['’]", "", ascii_text)
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")


def region_stack(region_name_fr: str) -> str:
    return f"sdr-{ascii_slug(region_name_fr)}"


def grouping_stack(grouping_code: str) -> str:
    """``eci-…`` for every grouping; a code that already says ECI/GCT is not prefixed twice.

    >>> grouping_stack("ECI-AL-HAOUZ-OURIKA"), grouping_stack("GCT-ZAGORA-DRAA"), grouping_stack("TIZNIT-SUD")
    ('eci-al-haouz-ourika', 'eci-gct-zagora-draa', 'eci-tiznit-sud')
    """
    code = grouping_code.lower()
    return code if code.startswith("eci-") else f"eci-{code}"


def sdl_stack(commune_name_fr: str) -> str:
    return f"sdl-{ascii_slug(commune_name_fr)}"


def platform_namespace(platform_slug: str) -> str:
    return f"nat-{platform_slug}"


def label(name: str) -> str:
    """A ctfleet label key: ``ctfleet.ma/<name>``."""
    return f"{LABEL_PREFIX}/{name}"


#: The annotation on a tenant's Namespace and a workload's PVC when the stack's config allows
#: this update to delete or replace them (``ctfleet:allowDestructiveChanges: true``).
DESTRUCTIVE_ALLOWED = label("destructive-changes-allowed")


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(DNS1123_LABEL.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(LABEL_VALUE.match(value))


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(is_dns_label(p) for p in prefix.split("."))):
        return False
    return 0 < len(name) <= 63 and bool(LABEL_NAME.match(name))


# ------------------------------------------------------------------ one home per tenant
# tenant_home lives in the core (ctfleet.core.hosting), so the monitors can count what
# the stacks declare without importing the stacks; re-exported here for the stacks.


# ------------------------------------------------------------------ the stacks of the registry
TIERS = ("national", "sdr", "eci", "sdl")


@dataclass(frozen=True)
class StackRef:
    """One stack: its name, tier, the unit it provisions (region, grouping or commune code) and a title."""

    name: str
    tier: str
    unit: str | None
    title: str


def stack_index(registry: "Registry") -> dict[str, StackRef]:
    """Every stack the registry calls for, by name, in a stable order.

    One national stack, one per region (SDR), one per ECI/GCT grouping whose members are
    hosted by it, one per commune hosted by an SDL. Raises if two units would share a name.
    """
    from ctfleet.core.models import Tier

    refs = [StackRef(NATIONAL_STACK, "national", None, "DGCT national cloud")]
    for code in sorted(registry.regions):
        r = registry.regions[code]
        refs.append(StackRef(region_stack(r.name_fr), "sdr", code, f"SDR cloud of {r.name_fr} (region {code})"))
    for code in sorted(registry.groupings):
        g = registry.groupings[code]
        if any(tenant_home(registry.cts[m]) == "eci" for m in g.members if m in registry.cts):
            refs.append(StackRef(grouping_stack(code), "eci", code, f"{g.kind.upper()} {g.name} ({code})"))
    for ct in sorted(registry.cts.values(), key=lambda c: c.code):
        if Tier.SDL in ct.tiers:
            refs.append(StackRef(sdl_stack(ct.name_fr), "sdl", ct.code, f"SDL of {ct.name_fr} ({ct.code})"))
    out: dict[str, StackRef] = {}
    for ref in refs:
        if ref.name in out:
            raise ValueError(f"two hosting units share the stack name {ref.name!r}: {out[ref.name].title} and {ref.title}")
        out[ref.name] = ref
    return out


def check_namespaces(registry: "Registry") -> None:
    """Raise ValueError when two CTs or groupings would share a Kubernetes namespace, or one is not a DNS label."""
    owner: dict[str, str] = {}
    names = [(ct_namespace(c), f"CT {c}") for c in sorted(registry.cts)]
    names += [(grouping_namespace(g), f"grouping {g}") for g in sorted(registry.groupings)]
    for name, what in names:
        if not is_dns_label(name):
            raise ValueError(f"{what} gives the namespace {name!r}, which is not a DNS label")
        if name in owner:
            raise ValueError(f"two hosting units share the namespace {name!r}: {owner[name]} and {what}")
        owner[name] = what
