"""The deployed data path's Prometheus pieces, compiled from the registry and the KPI rules (pure).

* :func:`node_targets` — the region's node_exporter targets in Prometheus's http_sd /
  file_sd JSON, one group per server with the CT labels every other series carries;
* :func:`remote_write` — a regional Prometheus's ``remote_write`` to the national one:
  only the KPI recording-rule series (``write_relabel_configs`` keep), renamed from
  ``ctfleet:`` to ``ctfleet_region:`` so the nation's own sums keep the ``ctfleet:`` names
  the reports read; the region rides in the external label ``sdr``;
* :func:`national_rules` — the national Prometheus's recording rules: each national KPI
  is the sum of the regions' (counts), or the CT-weighted mean of theirs (coverage).

Remote write (not federation): the sender buffers in its WAL across a WAN outage and
sends the samples with their own timestamps when the receiver is back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ctfleet.core.conventions import (
    CT_LABELS,
    KPI_RECORD_PREFIX,
    NODE_EXPORTER_JOB,
    NODE_EXPORTER_PORT,
    REGION_EXTERNAL_LABEL,
    REGION_KPI_PREFIX,
    ct_label_values,
)

if TYPE_CHECKING:
    from ctfleet.core.registry import Registry

_KPI = re.compile(r"^ctfleet:(?P<kpi>[a-z_]+):(?P<agg>count|avg|total)(?:_by_(?P<dim>[a-z_]+))?$")


def programme_kpis(kpi_doc: dict, *cluster_docs: dict) -> dict[str, Any]:
    """The records a region sends to the nation, as one rules document: every record of the
    KPI rules (each must have a national form: :func:`national_rules` says so), and the
    KPI-form records of the cluster rule files (hosting: ``ctfleet:cts_hosted:count...``,
    ``ctfleet:mutualisations:...``), whose per-CT and per-namespace records stay in the region.

    >>> hosting = {"groups": [{"rules": [{"record": "ctfleet:ct_hosted"}, {"record": "ctfleet:cts_hosted:count_by_region_tier"}]}]}
    >>> kpi_record_names(programme_kpis({"groups": [{"rules": [{"record": "ctfleet:cts:count"}]}]}, hosting))
    ['ctfleet:cts:count', 'ctfleet:cts_hosted:count_by_region_tier']
    """
    extra = [{"record": n} for doc in cluster_docs for n in kpi_record_names(doc) if _KPI.match(n)]
    return {"groups": [*kpi_doc.get("groups", []), {"name": "cluster-kpis", "rules": extra}]}


def node_targets(registry: Registry, port: int = NODE_EXPORTER_PORT) -> list[dict[str, Any]]:
    """http_sd groups of the reference servers (role ``server``) of the registry's fleet.

    >>> # [{"targets": ["10.4.0.2:9100"], "labels": {"ct": "04.421.01.0", "region": "04", ...,
    >>> #   "device": "s-04-421-01-0", "role": "server", "platform": "debian"}}, ...]
    """
    groups = []
    for d in sorted(registry.devices.values(), key=lambda d: d.hostname):
        if d.role.value != "server" or d.mgmt_address is None:
            continue
        site = registry.sites.get(d.site_code)
        ct = registry.cts.get(site.ct_code) if site else None
        if ct is None:
            continue
        labels = dict(zip(CT_LABELS, ct_label_values(ct, registry.sites_of(ct.code))))
        labels.update(device=d.hostname, role=d.role.value, platform=d.platform.value)
        host = str(d.mgmt_address)
        groups.append({"targets": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"], "labels": labels})
    return groups


def node_scrape_config(sd_url: str, interval: str = "60s", basic_auth: dict | None = None,
                       tls_config: dict | None = None) -> dict[str, Any]:
    """The regional Prometheus's scrape job of the servers' node_exporter, targets from the collector's http_sd."""
    sd: dict[str, Any] = {"url": sd_url, "refresh_interval": "60s"}
    if basic_auth:
        sd["basic_auth"] = basic_auth
    if tls_config:
        sd["tls_config"] = tls_config
    return {"job_name": NODE_EXPORTER_JOB, "scrape_interval": interval, "http_sd_configs": [sd]}


def kpi_record_names(rules_doc: dict) -> list[str]:
    """The KPI recording rules' names (``ctfleet:...``) of a rules file, in file order."""
    names = []
    for group in rules_doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("record")
            if name and name.startswith(KPI_RECORD_PREFIX) and name not in names:
                names.append(name)
    return names


def remote_write(url: str, region: str, names: list[str], basic_auth: dict | None = None,
                 tls_config: dict | None = None) -> dict[str, Any]:
    """One ``remote_write`` entry of a regional Prometheus (its ``external_labels`` must
    carry :func:`external_labels`).

    >>> rw = remote_write("https://nation/api/v1/write", "04", ["ctfleet:cts:count", "ctfleet:cts:count_by_lot"])
    >>> rw["write_relabel_configs"][0]["regex"], rw["write_relabel_configs"][1]["replacement"]
    ('ctfleet:cts:count|ctfleet:cts:count_by_lot', 'ctfleet_region:$1')
    """
    if not names:
        raise ValueError("no KPI recording rules to send: the regional rules define none")
    cfg: dict[str, Any] = {
        "url": url,
        "name": f"national-{region}",
        "write_relabel_configs": [
            {"source_labels": ["__name__"], "regex": "|".join(re.escape(n) for n in names), "action": "keep"},
            {"source_labels": ["__name__"], "regex": re.escape(KPI_RECORD_PREFIX) + "(.+)", "target_label": "__name__",
             "replacement": REGION_KPI_PREFIX + "$1", "action": "replace"},
        ],
        # A WAN outage of minutes to hours is buffered in the WAL (kept 2 h by default);
        # retries back off up to 30 s so a returning receiver is not stormed.
        "queue_config": {"max_backoff": "30s", "min_backoff": "1s", "capacity": 10000, "max_samples_per_send": 2000},
    }
    if basic_auth:
        cfg["basic_auth"] = basic_auth
    if tls_config:
        cfg["tls_config"] = tls_config
    return cfg


def external_labels(region: str) -> dict[str, str]:
    return {REGION_EXTERNAL_LABEL: region}


def national_rules(rules_doc: dict) -> dict[str, Any]:
    """The national Prometheus's recording rules from the regional KPI rules.

    >>> doc = {"groups": [{"rules": [{"record": "ctfleet:cts:count_by_lot"}, {"record": "ctfleet:ct_coverage:avg_by_lot"}]}]}
    >>> [r["expr"] for r in national_rules(doc)["groups"][0]["rules"]]  # doctest: +NORMALIZE_WHITESPACE
    ['sum by (lot) (ctfleet_region:cts:count_by_lot)',
     'sum by (lot) (ctfleet_region:ct_coverage:avg_by_lot * on (sdr, lot) ctfleet_region:cts:count_by_lot) / sum by (lot) (ctfleet_region:cts:count_by_lot)']
    """
    rules = []
    for name in kpi_record_names(rules_doc):
        m = _KPI.match(name)
        if not m:
            raise ValueError(f"KPI rule {name}: no national form for it (known: ctfleet:<kpi>:count[_by_<dim>], "
                             f"ctfleet:<kpi>:total, ctfleet:<kpi>:avg[_by_<dim>]); add one to ctfleet/core/datapath.py")
        # a dimension names its labels joined by "_" (count_by_region_tier: by region and tier)
        dim, suffix = (", ".join(m["dim"].split("_")) if m["dim"] else None), f"_by_{m['dim']}" if m["dim"] else ""
        by = f"sum by ({dim}) " if dim else "sum "
        region = REGION_KPI_PREFIX + name[len(KPI_RECORD_PREFIX):]
        if m["agg"] in ("count", "total"):
            expr = f"{by}({region})"
        else:  # a mean over CTs: weighted by each region's CT count for the same dimension
            weight = f"{REGION_KPI_PREFIX}cts:count{suffix}"
            on = ", ".join([REGION_EXTERNAL_LABEL] + ([dim] if dim else []))
            expr = f"{by}({region} * on ({on}) {weight}) / {by}({weight})"
        rules.append({"record": name, "expr": expr})
    return {"groups": [{"name": "ctfleet-national-kpi", "rules": rules}]}
