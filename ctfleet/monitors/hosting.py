"""The hosting declarations as metric families, served by the exporter beside the KPIs.

The stacks declare tenants (:mod:`ctfleet.core.hosting`); the cluster says what exists
(kube-state-metrics). These two families are the declared half; the recording rules in
``monitors/rules/hosting.rules.yml`` join them with ``kube_namespace_labels`` and
``kube_namespace_status_phase`` so a declared tenant that is absent (or not Active) is
never counted hosted. Example output::

    # HELP ctfleet_ct_tenant_declared 1 per hosting tenant the stacks declare for the CT (tier, namespace)
    ctfleet_ct_tenant_declared{ct="12.066.03.05",...,namespace="ct-12-066-03-05",tier="sdr"} 1.0
    # HELP ctfleet_hosting_unit_members CTs a grouping (eci) or SDL (sdl) tenant is declared to host
    ctfleet_hosting_unit_members{namespace="eci-...",region="12",tier="eci",unit="ECI-..."} 4.0
"""

from __future__ import annotations

from typing import Callable

from ctfleet.core import conventions
from ctfleet.core.hosting import declared_tenants, hosting_units
from ctfleet.core.registry import Registry


def hosting_series(registry: Registry, gauge: Callable) -> None:
    """Add the declared tenants of the CTs in ``registry`` (its scope) and the hosting units
    serving them, through ``gauge(name, help, labels)`` (the exporter's family factory)."""
    tenant = gauge("ctfleet_ct_tenant_declared", "1 per hosting tenant the stacks declare for the CT (tier, namespace)",
                   list(conventions.CT_LABELS) + ["tier", "namespace"])
    for t in declared_tenants(registry):
        ct = registry.cts[t.ct]
        tenant.add_metric(list(conventions.ct_label_values(ct, registry.sites_of(ct.code))) + [t.tier, t.namespace], 1)
    unit = gauge("ctfleet_hosting_unit_members", "CTs a grouping (eci) or SDL (sdl) tenant is declared to host",
                 ["region", "tier", "unit", "namespace"])
    for u in hosting_units(registry):
        unit.add_metric([u.region, u.tier, u.unit, u.namespace], len(u.members))
