"""Names and mappings that more than one part of ctfleet must agree on — their one home.

Every edge (collector, exporter, rules, stacks, inventory, report, lab) imports these
instead of typing the string again. A name changed here changes everywhere; a test
(``tests/test_conventions.py``) checks that the rules' ``job=`` selectors, the stacks'
scrape jobs and the demo's agree.

Pure: no I/O, imports only :mod:`ctfleet.core.models`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ctfleet.core.models import code_slug

if TYPE_CHECKING:
    from ctfleet.core.models import CT, LinkType, Site

# ---------------------------------------------------------------- Prometheus
#: The scrape job of every collector's /metrics; the alert and recording rules select
#: ``up{job="ctfleet"}`` (CollectorDown, CollectorSweepFailing).
COLLECTOR_JOB = "ctfleet"
#: The collector's /metrics port (and the container's EXPOSE).
COLLECTOR_PORT = 9160
#: The reference servers' node_exporter, scraped by the regional Prometheus.
NODE_EXPORTER_JOB = "node"
NODE_EXPORTER_PORT = 9100
#: The region's results service (audit batches in, TLS + basic auth); its batches path.
RESULTS_SERVICE_PORT = 9163
RESULTS_BATCHES_PATH = "/v1/batches"
#: Served by the collector: the region's node_exporter targets (Prometheus http_sd).
NODE_TARGETS_PATH = "/sd/node"
#: Region -> nation: a regional Prometheus remote-writes only its KPI recording-rule series
#: (names starting with :data:`KPI_RECORD_PREFIX`), renamed to :data:`REGION_KPI_PREFIX`
#: and labelled with its region in :data:`REGION_EXTERNAL_LABEL`; the national Prometheus
#: sums them back into the ``ctfleet:`` names the reports read.
KPI_RECORD_PREFIX = "ctfleet:"
REGION_KPI_PREFIX = "ctfleet_region:"
REGION_EXTERNAL_LABEL = "sdr"
#: The rule files whose programme KPIs go to the nation: every record of the KPI rules, and
#: the KPI-form records (``ctfleet:<kpi>:count|avg|total[_by_<labels>]``) of the hosting
#: rules (CTs hosted, mutualisations); their per-CT and per-namespace records stay in the region.
KPI_RULES_FILE = "kpi.rules.yml"
CLUSTER_KPI_RULES_FILES = ("hosting.rules.yml",)
#: kube-state-metrics of the clusters hosting CT tenants (the hosting rules read its namespace series).
KUBE_STATE_METRICS_JOB = "kube-state-metrics"
KUBE_STATE_METRICS_PORT = 8080
KUBE_STATE_METRICS_SERIES = ("kube_namespace_labels", "kube_namespace_status_phase")
#: Where the project keeps its Prometheus rules and Grafana dashboards, from the repo root.
RULES_DIR = "monitors/rules"
DASHBOARDS_DIR = "monitors/dashboards"

#: The labels every per-CT series carries, in this order; per-device series add
#: :data:`DEVICE_LABELS`. The exporter, the inventory, the stacks and the lab use these.
CT_LABELS: tuple[str, ...] = ("ct", "region", "province", "segment", "lot", "link")
DEVICE_LABELS: tuple[str, ...] = CT_LABELS + ("device", "role", "platform")
#: The link label of a CT that has no site (and so no uplink) in the registry.
NO_LINK = "none"


def ct_label_values(ct: CT, sites: list[Site]) -> tuple[str, ...]:
    """The values of :data:`CT_LABELS` for a CT, its link being its first site's uplink.

    >>> from ctfleet.core.models import CT, Segment
    >>> ct = CT(code="01.511.01.01", level="commune", name_fr="x", name_ar="x", region_code="01",
    ...     province_code="01.511", segment=Segment.COMMUNE_UNDER_15K, lot=3, lot_from_rules=3,
    ...     lot_reason="r", tiers=())
    >>> ct_label_values(ct, [])
    ('01.511.01.01', '01', '01.511', 'commune_under_15k', '3', 'none')
    """
    link = sites[0].uplink.type.value if sites else NO_LINK
    return (ct.code, ct.region_code, ct.province_code or "", ct.segment.value, str(ct.lot), link)


# ---------------------------------------------------------------- sites
SITE_PREFIX = "S-"


def site_code(ct_code: str, suffix: str | None = None) -> str:
    """A CT's site code: ``S-`` and the CT code with dashes, and an optional suffix.

    >>> site_code("01.511.01.01"), site_code("01.511.01.01", "annexe")
    ('S-01-511-01-01', 'S-01-511-01-01-annexe')
    """
    own = SITE_PREFIX + code_slug(ct_code)
    return f"{own}-{suffix}" if suffix else own


# ---------------------------------------------------------------- Ansible groups
_UNSAFE = re.compile(r"[^a-z0-9_]")


def group_name(prefix: str, text: str | int) -> str:
    """A valid Ansible group name: letters, digits and underscores, starting with a letter.

    >>> group_name("ct", "01.511.01.0"), group_name("lot", 3)
    ('ct_01_511_01_0', 'lot_3')
    >>> group_name("grouping", "ECI-AL-HAOUZ-OURIKA")
    'grouping_eci_al_haouz_ourika'
    """
    return f"{prefix}_{_UNSAFE.sub('_', str(text).lower())}"


def lot_group(lot: int) -> str:
    """The inventory group of a roll-out lot (``lot_1`` .. ``lot_3``)."""
    return group_name("lot", lot)


def norms_group_name(ct: CT, link: LinkType | None = None) -> str:
    """The shared norms group of a CT's (segment, lot) and, when known, its site's link type
    (link norms depend on it), e.g. ``norms_region_lot1``, ``norms_commune_under_15k_lot3_vsat``."""
    return f"norms_{ct.segment.value}_lot{ct.lot}" + (f"_{link.value}" if link is not None else "")


# ---------------------------------------------------------------- hosting tenants
def ct_namespace(ct_code: str) -> str:
    """A CT's tenant namespace (in its SDR cloud, or its SDL's), from its code, never its
    name, so renaming a commune does not recreate its tenant.

    >>> ct_namespace("01.511.01.0")
    'ct-01-511-01-0'
    """
    return f"ct-{code_slug(ct_code)}"


def grouping_namespace(grouping_code: str) -> str:
    """An ECI/GCT grouping's tenant namespace (its code, lower-case)."""
    return grouping_code.lower()


#: The namespace label the stacks put on every tenant, holding its hosting tier, as
#: kube-state-metrics exposes it in ``kube_namespace_labels`` (``ctfleet.ma/tier``
#: sanitised); the hosting recording rules join on it. kube-state-metrics must be started
#: with ``--metric-labels-allowlist=namespaces=[ctfleet.ma/tier]`` for it to appear.
KSM_TIER_LABEL = "label_ctfleet_ma_tier"


# ---------------------------------------------------------------- hosting quotas
#: Which hosting control sizes which field of a tenant's quota.
QUOTA_CONTROLS: dict[str, str] = {"cpu": "HST-1", "memory_gib": "HST-2", "storage_gib": "HST-3", "pods": "HST-4"}


# ---------------------------------------------------------------- units
#: Factors to the SI base unit Prometheus series use, for the units ``controls.yaml`` declares.
UNIT_TO_BASE: dict[str, tuple[str, float]] = {
    "ms": ("seconds", 0.001),
    "s": ("seconds", 1.0),
    "seconds": ("seconds", 1.0),
    "minutes": ("seconds", 60.0),
    "hours": ("seconds", 3600.0),
    "days": ("seconds", 86400.0),
    "%": ("ratio", 0.01),
    "percent": ("ratio", 0.01),
    "ratio": ("ratio", 1.0),
    "Mbit/s": ("bits_per_second", 1e6),
    "mbps": ("bits_per_second", 1e6),
    "GiB": ("bytes", 2.0**30),
    "MiB": ("bytes", 2.0**20),
}


def to_base_unit(value: float, unit: str) -> float:
    """A norm value in the unit the catalogue declares, converted to the series' base unit.

    >>> to_base_unit(150, "ms"), to_base_unit(2, "%")
    (0.15, 0.02)
    """
    try:
        return float(value) * UNIT_TO_BASE[unit][1]
    except KeyError:
        raise ValueError(f"unit {unit!r} has no conversion; known: {', '.join(sorted(UNIT_TO_BASE))}") from None


#: What a value in each unit can mean, inclusive (the norms' values and the import's numbers are
#: checked against it): a link is at most 100 Gbit/s, a latency at most a minute, a share at most
#: 100 %, a tenant at most a large cluster. Beyond these a number is a typo, not a norm.
UNIT_RANGE: dict[str, tuple[float, float]] = {
    "ms": (0, 60_000),
    "s": (0, 86_400),
    "seconds": (0, 86_400),
    "minutes": (0, 10_080),
    "hours": (0, 8_784),  # a leap year
    "days": (0, 3_660),
    "%": (0, 100),
    "percent": (0, 100),
    "ratio": (0, 1),
    "Mbit/s": (0, 100_000),
    "mbps": (0, 100_000),
    "GiB": (0, 1_048_576),
    "MiB": (0, 1_073_741_824),
    "cores": (0, 4_096),
    "pods": (0, 100_000),
    "workstations": (0, 10_000),
    "characters": (0, 1_024),
}
#: A number with no unit in the catalogue (a count): non-negative and at most this.
COUNT_MAX = 1_000_000


def unit_range(unit: str | None) -> tuple[float, float]:
    """The inclusive range of a value in ``unit`` (a count when the catalogue gives none).

    >>> unit_range("%"), unit_range(None)
    ((0, 100), (0, 1000000))
    """
    return UNIT_RANGE.get(unit or "", (0, COUNT_MAX))


# ---------------------------------------------------------------- backups (textfile metrics)
#: Router backups, written by ``ctfleet routers backup`` for node_exporter's textfile
#: collector on the collector host; the age is recorded by the rules (it grows between runs).
ROUTER_BACKUP_LAST_SUCCESS = "ctfleet_router_backup_last_success_timestamp_seconds"
ROUTER_BACKUP_MAX_AGE = "ctfleet_router_backup_max_age_seconds"
ROUTER_BACKUP_RUN = "ctfleet_router_backup_run_timestamp_seconds"
ROUTER_BACKUP_AGE = "ctfleet_router_backup_age_seconds"
#: Reference servers' restic backups, written by the backup job on the server (SRV-3/SRV-5).
SERVER_BACKUP_LAST_SUCCESS = "ctfleet_backup_last_success_timestamp_seconds"
SERVER_BACKUP_SIZE = "ctfleet_backup_last_size_bytes"
SERVER_BACKUP_MAX_AGE = "ctfleet_backup_max_age_seconds"
