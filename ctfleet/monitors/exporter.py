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
from prometheus_client.utils import floatToGoString

from ctfleet.core import conventions
from ctfleet.core.compliance import ControlResult, Outcome, Status, latest
from ctfleet.core.evaluate import assess_ct, registry_results
from ctfleet.core.models import CT, Role, Tier
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.monitors.hosting import hosting_series
from ctfleet.monitors.sweep import Sweep, clean_text, connected, sweep_results

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


class Family:
    """One metric family of the exposition: samples as ``(label values, value)``, label
    names in the family's order. Rendered straight to text (:meth:`render`), with each
    sample's label string built once and cached across sweeps (:data:`_LABELS`): a
    device's or CT's labels rarely change, so a sweep costs formatting the values, not
    escaping and sorting the labels again. :meth:`to_metric` gives prometheus-client's
    family, for ``collect()``."""

    __slots__ = ("name", "kind", "help", "labels", "samples")

    def __init__(self, name: str, kind: str, help: str, labels: list[str]):
        self.name = name
        self.kind = kind  # gauge | counter
        self.help = help
        self.labels = list(labels)
        self.samples: list[tuple[tuple, float]] = []

    def add_metric(self, values: list | tuple, value: float) -> None:
        self.samples.append((tuple(values), value))

    def render(self) -> str:
        sample = self.name + ("_total" if self.kind == "counter" else "")
        order = sorted(range(len(self.labels)), key=self.labels.__getitem__)
        names = [self.labels[i] for i in order]
        cache = _LABELS.setdefault(sample, {})
        if len(cache) > 1_000_000:
            cache.clear()
        fmt = floatToGoString
        out = [f"# HELP {sample} {self.help}\n# TYPE {sample} {self.kind}\n"]
        append = out.append
        for values, value in self.samples:
            prefix = cache.get(values)
            if prefix is None:
                prefix = cache[values] = sample + ("{" + ",".join(
                    f'{n}="{_escape(values[i])}"' for n, i in zip(names, order)) + "} " if names else " ")
            append(prefix + fmt(value) + "\n")
        return "".join(out)

    def to_metric(self) -> Metric:
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        m = cls(self.name, self.help, labels=self.labels)
        for values, value in self.samples:
            m.add_metric(list(values), value)
        return m


# sample name -> label values -> 'name{label="value",...} ' (kept across snapshots)
_LABELS: dict[str, dict[tuple, str]] = {}


def _escape(v) -> str:
    v = str(v)
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


@dataclass
class Snapshot:
    families: list[Family] = field(default_factory=list)
    built_at: float = 0.0
    build_seconds: float = 0.0
    _text: bytes | None = None
    _metrics: list | None = None

    def text(self) -> bytes:
        """The exposition of every family (rendered once, then kept)."""
        if self._text is None:
            self._text = "".join(f.render() for f in self.families).encode("utf-8")
        return self._text

    @property
    def metrics(self) -> list[Metric]:
        if self._metrics is None:
            self._metrics = [f.to_metric() for f in self.families]
        return self._metrics


class _Families:
    """The families of one snapshot, by name, in the order of monitors/METRICS.md."""

    def __init__(self) -> None:
        self.all: list[Family] = []

    def gauge(self, name: str, help: str, labels: list[str]) -> Family:
        f = Family(name, "gauge", help, labels)
        self.all.append(f)
        return f

    def counter(self, name: str, help: str, labels: list[str]) -> Family:
        f = Family(name, "counter", help, labels)
        self.all.append(f)
        return f


def _results_by_ct(registry: Registry, norms: NormSet, sweep: Sweep | None, stored: Iterable[ControlResult],
                   now: datetime) -> tuple[dict[str, list[ControlResult]], set[str]]:
    """Every result per CT (registry declarations, the sweep's, the store's) and the
    devices seen by a collector or an audit."""
    results: list[ControlResult] = list(registry_results(registry, norms, now))
    # Platform unknowns (e.g. host controls on Windows) are not materialised here: an
    # applicable pair without a result already counts as unknown.
    if sweep is not None:
        results += sweep_results(sweep, registry, norms)
    results += stored
    by_ct: dict[str, list[ControlResult]] = defaultdict(list)
    for r in results:  # all of them: assess_ct prefers observations to newer registry declarations
        by_ct[r.ct].append(r)
    seen: set[str] = set()
    for r in latest(results).values():
        if r.device and r.status in (Status.PASS, Status.FAIL) and r.source.value not in ("registry",):
            seen.add(r.device)
    if sweep is not None:
        seen.update(h for h, p in sweep.polls.items() if p.ok)
    return by_ct, seen


class _CtSeries:
    """The per-CT families (compliance in the shared model, the KPIs' inputs)."""

    def __init__(self, fam: _Families):
        g = fam.gauge
        self.info = g("ctfleet_ct_info", "One series per CT in scope, with its names and hosting", CT_LABELS + ["name_fr", "tiers", "grouping"])
        self.conn = g("ctfleet_ct_connected", "1 if the site's router answered in the last sweep and its uplink is up", CT_LABELS)
        self.ctrl = g("ctfleet_ct_controls", "Applicable (device, control) pairs of the CT by result status", CT_LABELS + ["status"])
        self.ratio = g("ctfleet_ct_compliance_ratio", "Share of the CT's applicable controls that pass", CT_LABELS)
        self.cover = g("ctfleet_ct_coverage_ratio", "Share of the CT's applicable controls with a known result", CT_LABELS)
        self.meets = g("ctfleet_ct_meets_norms", "1 if every applicable control has a known, fresh result and none fails", CT_LABELS)
        self.outcome = g("ctfleet_ct_outcome", "1 for the CT's outcome: meets, failing or not_assessed (results missing or stale)",
                         CT_LABELS + ["outcome"])
        self.stale = g("ctfleet_ct_results_stale", "Results of the CT older than their maximum age (counted as unknown)", CT_LABELS)
        self.age = g("ctfleet_ct_result_age_seconds", "Age of the oldest result of the CT from this source", CT_LABELS + ["source"])
        self.equip = g("ctfleet_ct_equipped", "1 if the CT's required equipment is in the registry and was seen", CT_LABELS)
        self.failing = g("ctfleet_ct_control_failing", "Devices (or the CT itself) failing the control", CT_LABELS + ["control", "severity"])
        self.n_rtt = g("ctfleet_ct_norm_rtt_max_seconds", "The CT's norm LNK-2: maximum round-trip time", CT_LABELS)
        self.n_loss = g("ctfleet_ct_norm_loss_max_ratio", "The CT's norm LNK-3: maximum packet loss", CT_LABELS)
        self.n_util = g("ctfleet_ct_norm_uplink_utilisation_max_ratio", "The CT's norm LNK-6: maximum uplink utilisation", CT_LABELS)
        self.outage = g("ctfleet_ct_planned_outage", "1 while the CT is in a maintenance window (standards/maintenance.yaml)", CT_LABELS)

    def add(self, ct: CT, lv: list[str], registry: Registry, norms: NormSet, results: list[ControlResult], now: datetime,
            is_connected: bool | None, planned: bool, seen: set[str]) -> None:
        self.info.add_metric(lv + [ct.name_fr, ",".join(t.value for t in ct.tiers), ct.grouping or ""], 1)
        resolved = norms.resolve(ct)
        self.n_rtt.add_metric(lv, resolved["LNK-2"].in_base_unit())
        self.n_loss.add_metric(lv, resolved["LNK-3"].in_base_unit())
        self.n_util.add_metric(lv, resolved["LNK-6"].in_base_unit())
        self.outage.add_metric(lv, 1 if planned else 0)
        self.add_compliance(ct, lv, registry, norms, results, now, is_connected)
        self.equip.add_metric(lv, 1 if equipped(ct, registry, norms, seen) else 0)
        if is_connected is not None:  # before the first sweep nothing is known: no 'connected' series rather than zeros
            self.conn.add_metric(lv, 1 if is_connected else 0)

    def add_compliance(self, ct: CT, lv: list[str], registry: Registry, norms: NormSet, results: list[ControlResult],
                       now: datetime, is_connected: bool | None) -> None:
        """The CT's compliance series: one call of the core's :func:`assess_ct`."""
        a = assess_ct(ct, registry, norms, results, now, is_connected)
        comp = a.compliance
        for status, n in ((Status.PASS, comp.passed), (Status.FAIL, comp.failed), (Status.UNKNOWN, comp.unknown), (Status.WAIVED, comp.waived)):
            self.ctrl.add_metric(lv + [status.value], n)
        self.ratio.add_metric(lv, comp.ratio)
        self.cover.add_metric(lv, comp.coverage)
        self.meets.add_metric(lv, 1 if comp.meets_norms else 0)
        for o in Outcome:
            self.outcome.add_metric(lv + [o.value], 1 if a.outcome == o else 0)
        self.stale.add_metric(lv, comp.stale)
        for src, seconds in sorted(a.oldest_age.items()):
            self.age.add_metric(lv + [src], seconds)
        for cid, n in sorted(a.failing.items()):
            self.failing.add_metric(lv + [cid, norms.controls[cid].severity], n)


class _DeviceSeries:
    """The per-device families (what the last sweep saw of each device)."""

    def __init__(self, fam: _Families):
        g = fam.gauge
        self.up = g("ctfleet_device_up", "1 if the device answered SNMP in the last sweep", DEVICE_LABELS)
        self.err = g("ctfleet_device_poll_error_info", "Why the device's last poll failed", DEVICE_LABELS + ["reason"])
        self.info = g("ctfleet_device_snmp_info", "What the device said about itself", DEVICE_LABELS + ["version", "sys_name", "sys_descr"])
        self.upt = g("ctfleet_device_uptime_seconds", "sysUpTime of the device", DEVICE_LABELS)
        self.ul_up = g("ctfleet_uplink_up", "1 if the uplink interface is operationally up", DEVICE_LABELS)
        self.ul_info = g("ctfleet_uplink_info", "The interface taken for the uplink, how (registry or heuristic), "
                         "and the width of its octet counters (64: ifHC*, 32: ifIn/OutOctets, 0: none)",
                         DEVICE_LABELS + ["interface", "if_index", "chosen_by", "octets_width"])
        self.ul_rx = fam.counter("ctfleet_uplink_receive_bytes", "Bytes received on the uplink (ifHCInOctets, else ifInOctets with wraps added)", DEVICE_LABELS)
        self.ul_tx = fam.counter("ctfleet_uplink_transmit_bytes", "Bytes sent on the uplink (ifHCOutOctets, else ifOutOctets with wraps added)", DEVICE_LABELS)
        self.ul_speed = g("ctfleet_uplink_speed_bytes_per_second", "Uplink speed (ifHighSpeed, else ifSpeed)", DEVICE_LABELS)
        self.rtt = g("ctfleet_link_rtt_seconds", "Mean round-trip time of the last probe round", DEVICE_LABELS)
        self.rtt_max = g("ctfleet_link_rtt_max_seconds", "Worst round-trip time of the last probe round", DEVICE_LABELS)
        self.loss = g("ctfleet_link_loss_ratio", "Lost / sent packets in the last probe round", DEVICE_LABELS)

    def add(self, dl: list[str], poll, probe) -> None:
        if poll is not None:
            self.up.add_metric(dl, 1 if poll.ok else 0)
            if not poll.ok:
                self.err.add_metric(dl + [poll.error or "timeout"], 1)
            else:
                self.info.add_metric(dl + [poll.version or "", clean_text(poll.sys_name, 120), clean_text(poll.sys_descr, 120)], 1)
                if poll.uptime_seconds is not None:
                    self.upt.add_metric(dl, poll.uptime_seconds)
                up = poll.uplink
                if up is not None:
                    self.ul_up.add_metric(dl, 1 if up.oper_up else 0)
                    by = "registry" if poll.uplink_reason.startswith("registry:") else "heuristic"
                    self.ul_info.add_metric(dl + [clean_text(up.name, 120), str(up.index), by, str(up.counter_bits)], 1)
                    self.ul_rx.add_metric(dl, up.in_octets)
                    self.ul_tx.add_metric(dl, up.out_octets)
                    self.ul_speed.add_metric(dl, up.speed_mbps * 1_000_000 / 8)
        if probe is not None:
            self.loss.add_metric(dl, probe.loss_ratio)
            if probe.rtt_mean is not None:
                self.rtt.add_metric(dl, probe.rtt_mean)
                self.rtt_max.add_metric(dl, probe.rtt_max)


def _sweep_series(fam: _Families, sweep: Sweep, sweeps_total: int) -> None:
    """Collector health."""
    polls = list(sweep.polls.values())
    fam.gauge("ctfleet_sweep_duration_seconds", "Wall time of the last sweep", ["shard"]).add_metric([sweep.shard], sweep.duration_seconds)
    fam.gauge("ctfleet_sweep_interval_seconds", "Configured sweep interval", ["shard"]).add_metric([sweep.shard], sweep.interval_seconds)
    devs = fam.gauge("ctfleet_sweep_devices", "Devices polled in the last sweep by result", ["shard", "result"])
    devs.add_metric([sweep.shard, "ok"], sum(1 for p in polls if p.ok))
    devs.add_metric([sweep.shard, "failed"], sum(1 for p in polls if not p.ok))
    fam.gauge("ctfleet_sweep_last_success_timestamp_seconds", "End time of the last completed sweep", ["shard"]).add_metric(
        [sweep.shard], (sweep.ended or sweep.started).timestamp())
    fam.counter("ctfleet_sweeps", "Sweeps completed", ["shard"]).add_metric([sweep.shard], sweeps_total)
    fam.counter("ctfleet_snmp_unmatched_datagrams", "Datagrams that matched no outstanding SNMP request (ignored)",
                ["shard"]).add_metric([sweep.shard], sweep.unmatched_datagrams)


def build_snapshot(registry: Registry, norms: NormSet, sweep: Sweep | None, stored: Iterable[ControlResult] = (),
                   planned_outages: set[str] = frozenset(), sweeps_total: int = 0, now: datetime | None = None) -> Snapshot:
    """The metrics of one sweep; ``now`` (default: the current time) decides results' freshness,
    waivers in force and open maintenance windows. Seams: the results per CT
    (:func:`_results_by_ct`), the per-CT series (:class:`_CtSeries`, compliance through
    the core's ``assess_ct`` in :meth:`_CtSeries.add_compliance`), the per-device series
    (:class:`_DeviceSeries`) and collector health (:func:`_sweep_series`)."""
    t0 = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    by_ct, seen = _results_by_ct(registry, norms, sweep, stored, now)
    maintenance = getattr(norms, "maintenance", None)
    if maintenance is not None:
        planned_outages = set(planned_outages) | maintenance.planned_outages(registry.cts.values(), now)
    fam = _Families()
    cts = _CtSeries(fam)
    devices = _DeviceSeries(fam)
    for ct in registry.cts.values():
        lv = ct_label_values(ct, registry)
        ct_devices = registry.devices_of(ct.code)
        is_connected = None
        if sweep is not None:
            is_connected = any(connected(sweep.polls.get(d.hostname)) for d in ct_devices if d.role == Role.ROUTER)
        cts.add(ct, lv, registry, norms, by_ct.get(ct.code, []), now, is_connected, ct.code in planned_outages, seen)
        if sweep is None:
            continue
        for d in ct_devices:
            poll = sweep.polls.get(d.hostname)
            probe = sweep.probes.get(d.hostname)
            if poll is not None or probe is not None:
                devices.add(lv + [d.hostname, d.role.value, d.platform.value], poll, probe)
    if sweep is not None:
        _sweep_series(fam, sweep, sweeps_total)
    hosting_series(registry, fam.gauge)  # declared tenants: hosted = declared and present (hosting.rules.yml)
    return Snapshot(families=fam.all, built_at=time.time(), build_seconds=time.perf_counter() - t0)


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

    def _built(self, snap: Snapshot) -> Family:
        built = Family("ctfleet_exporter_snapshot_build_seconds", "gauge", "Time spent computing the served snapshot", [])
        built.add_metric([], snap.build_seconds)
        return built

    def exposition(self) -> bytes:
        """The whole exposition text, as ``generate_latest`` would render ``collect()``,
        from the snapshot's cached text (see :class:`Family`)."""
        with self._lock:
            snap = self._snapshot
        return snap.text() + self._built(snap).render().encode()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot
        yield from snap.metrics
        yield self._built(snap).to_metric()
