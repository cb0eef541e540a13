"""The ctfleet exporter: a prometheus-client custom collector serving the last sweep.

A :class:`Snapshot` is computed once per sweep (and when audit results change) from the
registry, the norms, the sweep and the results store; ``collect()`` only yields its
pre-built metric families, so a scrape costs rendering, not recomputation. Metric names
and labels are those of ``monitors/METRICS.md``. Example output (abridged)::

    # HELP ctfleet_ct_connected 1 if the site's router answered in the last sweep and its uplink is up
    # TYPE ctfleet_ct_connected gauge
    ctfleet_ct_connected{ct="01.511.01.0",link="fibre",lot="1",province="01.511",region="01",segment="commune_arrondissements"} 1.0
    # HELP ctfleet_ct_coverage_ratio Share of the CT's applicable controls with a known result
    # TYPE ctfleet_ct_coverage_ratio gauge
    ctfleet_ct_coverage_ratio{ct="01.511.01.0",...} 0.12
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ctfleet.core import conventions
from ctfleet.core.compliance import ControlResult, Outcome, Status, latest
from ctfleet.core.evaluate import assess_ct, registry_results
from ctfleet.core.models import CT, Role, Tier
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.monitors.hosting import hosting_families
from ctfleet.monitors.sweep import Sweep, connected, sweep_results

CT_LABELS = list(conventions.CT_LABELS)
DEVICE_LABELS = list(conventions.DEVICE_LABELS)


def ct_label_values(ct: CT, registry: Registry) -> list[str]:
    return list(conventions.ct_label_values(ct, registry.sites_of(ct.code)))


def equipped(ct: CT, registry: Registry, norms: NormSet, seen: set[str]) -> bool:
    """KPI 'equipped': router, reference server or hosting, and the workstations the norm
    requires are in the registry and were seen by a collector or an audit."""
    devices = registry.devices_of(ct.code)
    routers = [d for d in devices if d.role == Role.ROUTER]
    if not routers or not any(d.hostname in seen for d in routers):
        return False
    if Tier.OWN in ct.tiers:
        servers = [d for d in devices if d.role == Role.SERVER]
        if not any(d.hostname in seen for d in servers):
            return False
    need = norms.value(ct, "EQP-1")
    seen_ws = sum(1 for d in devices if d.role == Role.WORKSTATION and d.hostname in seen)
    return seen_ws >= need


@dataclass
class Snapshot:
    metrics: list[Metric] = field(default_factory=list)
    built_at: float = 0.0
    build_seconds: float = 0.0


def build_snapshot(registry: Registry, norms: NormSet, sweep: Sweep | None, stored: Iterable[ControlResult] = (),
                   planned_outages: set[str] = frozenset(), sweeps_total: int = 0, now: datetime | None = None) -> Snapshot:
    """The metrics of one sweep; ``now`` (default: the current time) decides results' freshness,
    waivers in force and open maintenance windows."""
    t0 = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    results: list[ControlResult] = list(registry_results(registry, norms, now))
    # Platform unknowns (e.g. host controls on Windows) are not materialised here: an
    # applicable pair without a result already counts as unknown.
    if sweep is not None:
        results += sweep_results(sweep, registry, norms)
    results += stored
    newest = latest(results)
    by_ct: dict[str, list[ControlResult]] = defaultdict(list)
    seen: set[str] = set()
    for r in results:  # all of them: assess_ct prefers observations to newer registry declarations
        by_ct[r.ct].append(r)
    for r in newest.values():
        if r.device and r.status in (Status.PASS, Status.FAIL) and r.source.value not in ("registry",):
            seen.add(r.device)
    if sweep is not None:
        seen.update(h for h, p in sweep.polls.items() if p.ok)

    g = lambda name, doc, labels: GaugeMetricFamily(name, doc, labels=labels)  # noqa: E731
    info = g("ctfleet_ct_info", "One series per CT in scope, with its names and hosting", CT_LABELS + ["name_fr", "tiers", "grouping"])
    conn = g("ctfleet_ct_connected", "1 if the site's router answered in the last sweep and its uplink is up", CT_LABELS)
    ctrl = g("ctfleet_ct_controls", "Applicable (device, control) pairs of the CT by result status", CT_LABELS + ["status"])
    ratio = g("ctfleet_ct_compliance_ratio", "Share of the CT's applicable controls that pass", CT_LABELS)
    cover = g("ctfleet_ct_coverage_ratio", "Share of the CT's applicable controls with a known result", CT_LABELS)
    meets = g("ctfleet_ct_meets_norms", "1 if every applicable control has a known, fresh result and none fails", CT_LABELS)
    outcome = g("ctfleet_ct_outcome", "1 for the CT's outcome: meets, failing or not_assessed (results missing or stale)",
                CT_LABELS + ["outcome"])
    stale = g("ctfleet_ct_results_stale", "Results of the CT older than their maximum age (counted as unknown)", CT_LABELS)
    age = g("ctfleet_ct_result_age_seconds", "Age of the oldest result of the CT from this source", CT_LABELS + ["source"])
    equip = g("ctfleet_ct_equipped", "1 if the CT's required equipment is in the registry and was seen", CT_LABELS)
    failing = g("ctfleet_ct_control_failing", "Devices (or the CT itself) failing the control", CT_LABELS + ["control", "severity"])
    n_rtt = g("ctfleet_ct_norm_rtt_max_seconds", "The CT's norm LNK-2: maximum round-trip time", CT_LABELS)
    n_loss = g("ctfleet_ct_norm_loss_max_ratio", "The CT's norm LNK-3: maximum packet loss", CT_LABELS)
    n_util = g("ctfleet_ct_norm_uplink_utilisation_max_ratio", "The CT's norm LNK-6: maximum uplink utilisation", CT_LABELS)
    outage = g("ctfleet_ct_planned_outage", "1 while the CT is in a maintenance window (standards/maintenance.yaml)", CT_LABELS)
    maintenance = getattr(norms, "maintenance", None)
    if maintenance is not None:
        planned_outages = set(planned_outages) | maintenance.planned_outages(registry.cts.values(), now)

    dev_up = g("ctfleet_device_up", "1 if the device answered SNMP in the last sweep", DEVICE_LABELS)
    dev_err = g("ctfleet_device_poll_error_info", "Why the device's last poll failed", DEVICE_LABELS + ["reason"])
    dev_info = g("ctfleet_device_snmp_info", "What the device said about itself", DEVICE_LABELS + ["version", "sys_name", "sys_descr"])
    dev_upt = g("ctfleet_device_uptime_seconds", "sysUpTime of the device", DEVICE_LABELS)
    ul_up = g("ctfleet_uplink_up", "1 if the uplink interface is operationally up", DEVICE_LABELS)
    ul_rx = CounterMetricFamily("ctfleet_uplink_receive_bytes", "Bytes received on the uplink (ifHCInOctets)", labels=DEVICE_LABELS)
    ul_tx = CounterMetricFamily("ctfleet_uplink_transmit_bytes", "Bytes sent on the uplink (ifHCOutOctets)", labels=DEVICE_LABELS)
    ul_speed = g("ctfleet_uplink_speed_bytes_per_second", "Uplink speed (ifHighSpeed)", DEVICE_LABELS)
    rtt = g("ctfleet_link_rtt_seconds", "Mean round-trip time of the last probe round", DEVICE_LABELS)
    rtt_max = g("ctfleet_link_rtt_max_seconds", "Worst round-trip time of the last probe round", DEVICE_LABELS)
    loss = g("ctfleet_link_loss_ratio", "Lost / sent packets in the last probe round", DEVICE_LABELS)

    for ct in registry.cts.values():
        lv = ct_label_values(ct, registry)
        info.add_metric(lv + [ct.name_fr, ",".join(t.value for t in ct.tiers), ct.grouping or ""], 1)
        resolved = norms.resolve(ct)
        n_rtt.add_metric(lv, resolved["LNK-2"].in_base_unit())
        n_loss.add_metric(lv, resolved["LNK-3"].in_base_unit())
        n_util.add_metric(lv, resolved["LNK-6"].in_base_unit())
        outage.add_metric(lv, 1 if ct.code in planned_outages else 0)
        routers = [d for d in registry.devices_of(ct.code) if d.role == Role.ROUTER]
        is_connected = None if sweep is None else any(connected(sweep.polls.get(d.hostname)) for d in routers)
        a = assess_ct(ct, registry, norms, by_ct.get(ct.code, []), now, is_connected)
        comp = a.compliance
        for status, n in ((Status.PASS, comp.passed), (Status.FAIL, comp.failed), (Status.UNKNOWN, comp.unknown), (Status.WAIVED, comp.waived)):
            ctrl.add_metric(lv + [status.value], n)
        ratio.add_metric(lv, comp.ratio)
        cover.add_metric(lv, comp.coverage)
        meets.add_metric(lv, 1 if comp.meets_norms else 0)
        for o in Outcome:
            outcome.add_metric(lv + [o.value], 1 if a.outcome == o else 0)
        stale.add_metric(lv, comp.stale)
        for src, seconds in sorted(a.oldest_age.items()):
            age.add_metric(lv + [src], seconds)
        equip.add_metric(lv, 1 if equipped(ct, registry, norms, seen) else 0)
        for cid, n in sorted(a.failing.items()):
            failing.add_metric(lv + [cid, norms.controls[cid].severity], n)
        if sweep is None:
            continue  # before the first sweep nothing is known: serve no 'connected' series rather than zeros
        conn.add_metric(lv, 1 if is_connected else 0)
        for d in registry.devices_of(ct.code):
            poll = sweep.polls.get(d.hostname)
            probe = sweep.probes.get(d.hostname)
            if poll is None and probe is None:
                continue
            dl = lv + [d.hostname, d.role.value, d.platform.value]
            if poll is not None:
                dev_up.add_metric(dl, 1 if poll.ok else 0)
                if not poll.ok:
                    dev_err.add_metric(dl + [poll.error or "timeout"], 1)
                else:
                    dev_info.add_metric(dl + [poll.version or "", poll.sys_name, poll.sys_descr[:120]], 1)
                    if poll.uptime_seconds is not None:
                        dev_upt.add_metric(dl, poll.uptime_seconds)
                    up = poll.uplink
                    if up is not None:
                        ul_up.add_metric(dl, 1 if up.oper_up else 0)
                        ul_rx.add_metric(dl, up.in_octets)
                        ul_tx.add_metric(dl, up.out_octets)
                        ul_speed.add_metric(dl, up.speed_mbps * 1_000_000 / 8)
            if probe is not None:
                loss.add_metric(dl, probe.loss_ratio)
                if probe.rtt_mean is not None:
                    rtt.add_metric(dl, probe.rtt_mean)
                    rtt_max.add_metric(dl, probe.rtt_max)

    metrics: list[Metric] = [info, conn, ctrl, ratio, cover, meets, outcome, stale, age, equip, failing, n_rtt, n_loss, n_util, outage,
                             dev_up, dev_err, dev_info, dev_upt, ul_up, ul_rx, ul_tx, ul_speed, rtt, rtt_max, loss]
    metrics += hosting_families(registry)  # declared tenants: hosted = declared and present (hosting.rules.yml)
    if sweep is not None:
        polls = list(sweep.polls.values())
        dur = g("ctfleet_sweep_duration_seconds", "Wall time of the last sweep", ["shard"])
        dur.add_metric([sweep.shard], sweep.duration_seconds)
        interval = g("ctfleet_sweep_interval_seconds", "Configured sweep interval", ["shard"])
        interval.add_metric([sweep.shard], sweep.interval_seconds)
        devs = g("ctfleet_sweep_devices", "Devices polled in the last sweep by result", ["shard", "result"])
        devs.add_metric([sweep.shard, "ok"], sum(1 for p in polls if p.ok))
        devs.add_metric([sweep.shard, "failed"], sum(1 for p in polls if not p.ok))
        last = g("ctfleet_sweep_last_success_timestamp_seconds", "End time of the last completed sweep", ["shard"])
        last.add_metric([sweep.shard], (sweep.ended or sweep.started).timestamp())
        total = CounterMetricFamily("ctfleet_sweeps", "Sweeps completed", labels=["shard"])
        total.add_metric([sweep.shard], sweeps_total)
        metrics += [dur, interval, devs, last, total]
    return Snapshot(metrics=metrics, built_at=time.time(), build_seconds=time.perf_counter() - t0)


class CtfleetCollector(Collector):
    """Serves the latest :class:`Snapshot`; :meth:`update` swaps it in atomically."""

    def __init__(self, snapshot: Snapshot | None = None):
        self._snapshot = snapshot or Snapshot()
        self._lock = threading.Lock()

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def version(self) -> Snapshot:
        """Changes (by identity) whenever a new snapshot is swapped in: for render caching."""
        return self._snapshot

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot
        yield from snap.metrics
        built = GaugeMetricFamily("ctfleet_exporter_snapshot_build_seconds", "Time spent computing the served snapshot")
        built.add_metric([], snap.build_seconds)
        yield built
