"""A simulated kube-state-metrics: the two namespace series the hosting rules read, on loopback.

No cluster can run on these machines (the stacks are tested with Pulumi mocks), so tests
and the demo serve what kube-state-metrics v2 would for a cluster's namespaces, with its
metric names and label sanitising (``ctfleet.ma/tier`` -> ``label_ctfleet_ma_tier``),
each family's help text saying it is simulated. A real Prometheus scrapes it beside the
exporter and evaluates ``monitors/rules/hosting.rules.yml`` as deployed. Example::

    # HELP kube_namespace_labels Kubernetes labels converted to Prometheus labels. (simulated kube-state-metrics: not a real cluster)
    kube_namespace_labels{label_ctfleet_ma_tier="sdr",namespace="ct-12-066-03-05"} 1.0
    kube_namespace_status_phase{namespace="ct-12-066-03-05",phase="Active"} 1.0
    kube_namespace_status_phase{namespace="ct-12-066-03-05",phase="Terminating"} 0.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ctfleet.core.conventions import KSM_TIER_LABEL
from ctfleet.core.hosting import declared_tenants, hosting_units
from ctfleet.core.registry import Registry
from ctfleet.monitors.http import serve

SIMULATED = " (simulated kube-state-metrics: not a real cluster)"


@dataclass(frozen=True)
class Namespace:
    name: str
    tier: str | None  # the ctfleet.ma/tier label, None for a namespace ctfleet did not create
    phase: str = "Active"  # Active | Terminating


class KubeStateSim(Collector):
    def __init__(self, namespaces: Iterable[Namespace]):
        self.namespaces = list(namespaces)

    def collect(self) -> Iterator[Metric]:
        labels = GaugeMetricFamily("kube_namespace_labels", "Kubernetes labels converted to Prometheus labels." + SIMULATED,
                                   labels=["namespace", KSM_TIER_LABEL])
        phase = GaugeMetricFamily("kube_namespace_status_phase", "kubernetes namespace status phase." + SIMULATED,
                                  labels=["namespace", "phase"])
        for ns in self.namespaces:
            labels.add_metric([ns.name, ns.tier or ""], 1)
            for p in ("Active", "Terminating"):
                phase.add_metric([ns.name, p], 1 if ns.phase == p else 0)
        yield labels
        yield phase


def serve_kube_state(namespaces: Iterable[Namespace]):
    """Serve the simulated series on a free loopback port; returns (server, "127.0.0.1:PORT")."""
    reg = CollectorRegistry()
    sim = KubeStateSim(namespaces)
    reg.register(sim)
    # The namespaces never change: render once (a national exposition rendered per scrape
    # can outlast a short scrape timeout on a busy machine; a failed scrape marks every
    # series stale and the hosted count would drop to 0 for that evaluation).
    httpd, _ = serve(reg, "127.0.0.1", 0, version=lambda: sim)
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


def simulated_clusters(registry: Registry, seed: int = 7, absent: float = 0.08, terminating: float = 0.02) -> dict[str, list[Namespace]]:
    """A made-up state of the region's clusters, by cluster: the SDR cloud (CT and grouping
    tenants) and the SDLs' (their communes' tenants, named like the SDR's: a separate
    cluster, so a separate kube-state-metrics). Most declared tenants exist and are Active;
    some are absent or Terminating (reproducible from ``seed``)."""
    rnd = random.Random(seed)
    clusters: dict[str, list[Namespace]] = {"sdr": [Namespace("kube-system", None), Namespace("ctfleet-monitoring", "sdr")],
                                            "sdl": [Namespace("kube-system", None)]}
    wanted = {(t.namespace, t.tier) for t in declared_tenants(registry)} | {(u.namespace, u.tier) for u in hosting_units(registry)}
    for name, tier in sorted(wanted):
        x = rnd.random()
        if x < absent:
            continue
        clusters["sdl" if tier == "sdl" else "sdr"].append(Namespace(name, tier, "Terminating" if x < absent + terminating else "Active"))
    return clusters


def ksm_scrape_configs(addresses: dict[str, str], interval: str = "5s") -> list[dict]:
    """Prometheus scrape configs for the simulated kube-state-metrics, labelled simulated."""
    return [{"job_name": "kube-state-metrics", "scrape_interval": interval, "scrape_timeout": interval,
             "static_configs": [{"targets": [addr], "labels": {"cluster": cluster, "simulated": "true"}}
                                for cluster, addr in sorted(addresses.items())]}]
