"""Ansible's dynamic inventory, compiled from the registry and the norms.

Pure: :func:`render` turns a project (or a registry with its fleet, and the norm set)
into the JSON an inventory script prints for ``--list``; :func:`host_vars` is the
``--host`` answer. ``inventory/ctfleet_inventory.py`` is the thin executable around them.

Hosts are the fleet's devices (routers, servers, workstations), named by hostname, and
carry only their identity; everything shared lives in group vars so that ``--list``
stays small at national scale (tens of thousands of workstations)::

    all
    ├── region_04                       region facts
    │   └── province_04_161             province facts
    │       └── ct_04_161_01_01         CT facts (+ full norms only if the CT has an override file)
    │           └── site_<site>         site and link facts; the hosts are here
    ├── segment_commune_under_15k
    │   └── norms_commune_under_15k_lot3    ctfleet_norms, ctfleet_norms_not_applicable
    │       └── ct_04_161_01_01              (every CT is a child of exactly one norms_* group)
    ├── lot_3 ── norms_commune_under_15k_lot3, ...
    ├── tier_own / tier_eci / ... ── ct_*
    ├── grouping_<eci code> ── ct_* (members)
    ├── link_vsat / link_4g / ... ── site_*
    ├── role_router / role_server / role_workstation ── hosts
    └── platform_cisco_ios / platform_debian / ... ── hosts

Why the norm values come out right for every host: Ansible merges group vars in order of
(depth, priority, name), deeper groups winning. Only two kinds of group set
``ctfleet_norms``: ``norms_<segment>_lot<n>`` (depth 2, under segment_* and lot_*) and,
for a CT with a ``standards/norms/ct/CODE.yaml`` override, that CT's ``ct_*`` group,
which is a child of its norms group and therefore always deeper. Dicts are replaced,
not merged (Ansible's default ``hash_behaviour``), so an override group carries the
CT's complete resolved norms, never a partial dict.

Example host (``--host``, after Ansible merged the groups)::

    {"ansible_host": "10.12.0.1", "ansible_connection": "ansible.netcommon.network_cli",
     "ansible_network_os": "cisco.ios.ios", "ctfleet_role": "router",
     "ctfleet_platform": "cisco_ios", "ctfleet_os_version": "15.9",
     "ctfleet_ct": "12.551.01.01", "ctfleet_site": "...",
     "ctfleet_credentials_ref": "vault:creds/12.yml#rtr",
     "ctfleet_segment": "commune_under_15k", "ctfleet_lot": 3, ...,
     "ctfleet_norms": {"LNK-1": 2, "SYS-2": 45, ...},
     "ctfleet_norms_not_applicable": [...], "ctfleet_norms_layers": ["baseline", "lot-3", ...]}
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ctfleet.core.conventions import group_name, norms_group_name
from ctfleet.core.errors import InputError, Problem
from ctfleet.core.models import CT, Device, Level, LinkType, Platform, Role, Segment, Site
from ctfleet.core.norms import NormSet, Resolved
from ctfleet.core.registry import Registry

if TYPE_CHECKING:  # the pure renderer never loads a project itself
    from ctfleet.project import Project

# ansible_network_os per router platform: the collection's network OS plugin.
NETWORK_OS: dict[Platform, str] = {
    Platform.CISCO_IOS: "cisco.ios.ios",
    Platform.FRR: "frr.frr.frr",
    Platform.MIKROTIK: "community.routeros.routeros",
    Platform.HUAWEI_VRP: "community.network.ce",  # Huawei CloudEngine/VRP modules
}
NETWORK_CONNECTION = "ansible.netcommon.network_cli"



def _plain(value: Any) -> Any:
    """JSON-plain copies of norm values (the YAML loader hands out its own subclasses)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None:
        return None
    raise TypeError(f"norm value {value!r} of type {type(value).__name__} cannot be written to the inventory")


def norm_layers(norms: NormSet, ct_or_segment: CT | Segment, lot: int | None = None, link: LinkType | None = None) -> list[str]:
    """The layer files applied, in order: for a CT (with its link type and override) or a (segment, lot, link type)."""
    if isinstance(ct_or_segment, CT):
        return [layer.name for layer in norms.layers_of(ct_or_segment)]
    return [layer.name for layer in norms.layers_for(ct_or_segment, lot, None, link)]


def norm_vars(resolved: dict[str, Resolved], layers: list[str], sources: bool = False) -> dict[str, Any]:
    """The group vars that carry one resolved norm set.

    >>> # {"ctfleet_norms": {"LNK-1": 2, ...}, "ctfleet_norms_not_applicable": ["HST-5"],
    >>> #  "ctfleet_norms_layers": ["baseline", "lot-3", "segment commune_under_15k"]}
    """
    out: dict[str, Any] = {
        "ctfleet_norms": {cid: _plain(r.value) for cid, r in sorted(resolved.items()) if r.applicable},
        "ctfleet_norms_not_applicable": sorted(cid for cid, r in resolved.items() if not r.applicable),
        "ctfleet_norms_layers": layers,
    }
    if sources:
        out["ctfleet_norm_sources"] = {cid: r.source for cid, r in sorted(resolved.items())}
    return out


def ct_vars(ct: CT) -> dict[str, Any]:
    return {
        "ctfleet_ct_name_fr": ct.name_fr,
        "ctfleet_ct_name_ar": ct.name_ar,
        "ctfleet_ct_level": ct.level.value,
        "ctfleet_segment": ct.segment.value,
        "ctfleet_lot": ct.lot,
        "ctfleet_region": ct.region_code,
        "ctfleet_province": ct.province_code,
        "ctfleet_is_seat": ct.is_seat,
        "ctfleet_tiers": [t.value for t in ct.tiers],
        "ctfleet_grouping": ct.grouping,
    }


def site_vars(site: Site) -> dict[str, Any]:
    return {
        "ctfleet_site_name": site.name,
        "ctfleet_link_type": site.uplink.type.value,
        "ctfleet_link_bandwidth_mbps": site.uplink.bandwidth_mbps,
        "ctfleet_backup_link_type": site.backup.type.value if site.backup else None,
        "ctfleet_backup_link_bandwidth_mbps": site.backup.bandwidth_mbps if site.backup else None,
    }


def device_vars(device: Device, ct_code: str) -> dict[str, Any]:
    """A host's own vars: its identity and how to reach it, never a secret."""
    out: dict[str, Any] = {}
    if device.mgmt_address is not None:
        out["ansible_host"] = str(device.mgmt_address)
    if device.role == Role.ROUTER:
        out["ansible_connection"] = NETWORK_CONNECTION
        out["ansible_network_os"] = NETWORK_OS[device.platform]
    out["ctfleet_role"] = device.role.value
    out["ctfleet_platform"] = device.platform.value
    out["ctfleet_os_version"] = device.os_version
    out["ctfleet_ct"] = ct_code
    out["ctfleet_site"] = device.site_code
    if device.credentials is not None:
        out["ctfleet_credentials_ref"] = str(device.credentials)  # a reference (env:/file:/vault:), not a secret
    if device.snmp_version != "none":
        out["ctfleet_snmp_version"] = device.snmp_version
    return out


class _Groups:
    """Groups being built; refuses two different names collapsing to one group name."""

    def __init__(self) -> None:
        self.hosts: dict[str, set[str]] = defaultdict(set)
        self.children: dict[str, set[str]] = defaultdict(set)
        self.vars: dict[str, dict[str, Any]] = {}
        self._origin: dict[str, tuple[str, str]] = {}

    def name(self, prefix: str, text: str) -> str:
        name = group_name(prefix, text)
        seen = self._origin.setdefault(name, (prefix, str(text)))
        if seen != (prefix, str(text)):
            raise InputError(Problem("inventory", f"group name {name!r} would stand for both {seen[0]} {seen[1]!r} and {prefix} {text!r}",
                                     valid="codes that differ after lower-casing and keeping only letters, digits and underscores"))
        return name

    def child(self, parent: str, child: str) -> None:
        self.children[parent].add(child)

    def all_names(self) -> set[str]:
        names = set(self.hosts) | set(self.children) | set(self.vars)
        for kids in self.children.values():
            names |= kids
        return names


def render(source: "Project | Registry", norms: NormSet | None = None, *, profile_name: str | None = None,
           norm_sources: bool = False) -> dict[str, Any]:
    """The ``--list`` JSON of a project, or of a registry and its norms.

    ``render(project)`` uses the project's registry (already scoped to the profile's
    region), norms and profile name; ``render(registry, norms)`` renders that registry's
    fleet as it is. ``norm_sources=True`` adds ``ctfleet_norm_sources`` (control id ->
    "file:line") to the norms groups: about 20 kB nationally, off by default because no
    play needs it and ``--host`` gives it. Output is deterministic: groups, hosts,
    children and keys are sorted.

    >>> # {"_meta": {"hostvars": {"r-12-551-01-01": {...}}},
    >>> #  "all": {"children": ["link_4g", ..., "region_12", ...], "vars": {"ctfleet_profile": ...}},
    >>> #  "region_12": {"children": ["ct_12", "province_12_551"], "vars": {...}}, ...}
    """
    registry, norms, project_profile = _unpack(source, norms)
    if profile_name is None:
        profile_name = project_profile
    g = _Groups()
    hostvars: dict[str, dict[str, Any]] = {}
    top: set[str] = set()

    for code, region in registry.regions.items():
        name = g.name("region", code)
        g.vars[name] = {"ctfleet_region_name_fr": region.name_fr, "ctfleet_region_name_ar": region.name_ar}
        top.add(name)
    for code, province in registry.provinces.items():
        name = g.name("province", code)
        g.vars[name] = {"ctfleet_province_name_fr": province.name_fr, "ctfleet_province_name_ar": province.name_ar,
                        "ctfleet_province_kind": province.kind}
        g.child(g.name("region", province.region_code), name)
    for code, grouping in registry.groupings.items():
        name = g.name("grouping", code)
        g.vars[name] = {"ctfleet_grouping_name": grouping.name, "ctfleet_grouping_kind": grouping.kind,
                        "ctfleet_grouping_illustrative": grouping.illustrative}
        top.add(name)

    for ct in registry.cts.values():
        ct_group = g.name("ct", ct.code)
        vars_ = ct_vars(ct)
        if ct.code in norms.cts:  # a per-CT override file: this CT's complete norms win (deeper group)
            vars_.update(norm_vars(norms.resolve(ct), norm_layers(norms, ct), norm_sources))
        g.vars[ct_group] = vars_
        if ct.level == Level.REGION:
            g.child(g.name("region", ct.region_code), ct_group)
        else:
            g.child(g.name("province", ct.province_code), ct_group)
        link = norms.link_of(ct)
        shared = norms_group_name(ct, link)
        if shared not in g.vars:
            g.vars[shared] = norm_vars(norms.resolve_for(ct.segment, ct.lot, link=link),
                                       norm_layers(norms, ct.segment, ct.lot, link), norm_sources)
            g.child(g.name("segment", ct.segment.value), shared)
            g.child(g.name("lot", ct.lot), shared)
        g.child(shared, ct_group)
        for tier in ct.tiers:
            g.child(g.name("tier", tier.value), ct_group)
        if ct.grouping and ct.grouping in registry.groupings:
            g.child(g.name("grouping", ct.grouping), ct_group)

        for site in sorted(registry.sites_of(ct.code), key=lambda s: s.code):
            site_group = g.name("site", site.code)
            g.vars[site_group] = site_vars(site)
            g.child(ct_group, site_group)
            g.child(g.name("link", site.uplink.type.value), site_group)
            for device in registry.devices_of_site(site.code):
                hostvars[device.hostname] = device_vars(device, ct.code)
                g.hosts[site_group].add(device.hostname)
                g.hosts[g.name("role", device.role.value)].add(device.hostname)
                g.hosts[g.name("platform", device.platform.value)].add(device.hostname)

    for prefix in ("segment", "lot", "tier", "link", "role", "platform"):
        top |= {n for n in g.all_names() if n.startswith(prefix + "_")}

    all_vars: dict[str, Any] = {"ctfleet_fleet": registry.fleet_label}
    if profile_name is not None:
        all_vars["ctfleet_profile"] = profile_name
    out: dict[str, Any] = {
        "_meta": {"hostvars": {h: hostvars[h] for h in sorted(hostvars)}},
        "all": {"children": sorted(top), "vars": all_vars},
    }
    for name in sorted(g.all_names()):
        group: dict[str, Any] = {}
        if g.hosts.get(name):
            group["hosts"] = sorted(g.hosts[name])
        if g.children.get(name):
            group["children"] = sorted(g.children[name])
        if g.vars.get(name):
            group["vars"] = {k: g.vars[name][k] for k in sorted(g.vars[name])}
        out[name] = group or {"hosts": []}  # a bare {} would be read by Ansible as a host named after the group
    return out


def _unpack(source: "Project | Registry", norms: NormSet | None) -> tuple[Registry, NormSet, str | None]:
    if isinstance(source, Registry):
        if norms is None:
            raise TypeError("render(registry, norms): the norms are needed with a registry; or pass a Project alone")
        return source, norms, None
    return source.registry, norms or source.norms, source.profile.name


def host_vars(source: "Project | Registry", norms_or_hostname: "NormSet | str", hostname: str | None = None) -> dict[str, Any]:
    """The ``--host`` answer: the host's own vars plus ``ctfleet_norm_sources`` for its CT.

    Called as ``host_vars(project, hostname)`` or ``host_vars(registry, norms, hostname)``.
    Ansible never calls ``--host`` (``--list`` carries ``_meta``); this is for people and
    tools asking where each of a host's norm values comes from::

        {"ansible_host": "127.21.6.138", "ctfleet_ct": "12.066.03.05", ...,
         "ctfleet_norm_sources": {"SYS-2": "standards/norms/lots/lot-3.yaml:3", ...}}

    Raises InputError naming the host when it is not in the (profile-scoped) fleet.
    """
    if hostname is None:
        assert isinstance(norms_or_hostname, str)
        registry, norms, _ = _unpack(source, None)
        hostname = norms_or_hostname
    else:
        assert isinstance(norms_or_hostname, NormSet)
        registry, norms, _ = _unpack(source, norms_or_hostname)
    device = registry.devices.get(hostname)
    site = registry.sites.get(device.site_code) if device else None
    if device is None or site is None:
        raise InputError(Problem("inventory", f"unknown host {hostname!r}",
                                 valid=f"a hostname of the fleet ({len(registry.devices)} hosts in {registry.fleet_label}; "
                                       f"the profile's region scope applies)"))
    ct = registry.ct(site.ct_code)
    out = device_vars(device, ct.code)
    out["ctfleet_norm_sources"] = {cid: r.source for cid, r in sorted(norms.resolve(ct).items())}
    return out
