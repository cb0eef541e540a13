"""The ctfleet exporter: a prometheus-client custom collector serving the last sweep.

An :class:`Exposition` (one per collector) keeps the exposition text of a registry and
its norms across sweeps and re-renders only what changed (issue 15, "count the whole
path to Prometheus"):

* per device, the text of its series is re-rendered only when its poll or probe round
  is a new one (a live device's counters and uptime move every sweep; a dead one's
  don't), and then only its values are formatted: the label prefix of each series is
  rendered once, the info lines (SNMP, uplink, error) only when their raw values change
  (:class:`_DeviceText`);
* the sweep's own results come as plain tuples (:func:`sweep_part`,
  :func:`~ctfleet.monitors.sweep.sweep_observations`) unless the collector stores them;
* per CT, :func:`~ctfleet.core.evaluate.assess_ct` runs again only when the CT's
  results changed status or source, its connectivity or the waivers in force changed,
  or the earliest time one of its results goes stale has passed; a result that is only
  observed again (same status, newer time) moves the CT's result ages, not its
  assessment. Only the age series is formatted at every sweep;
* results are taken from *parts* (the sweep's, or each batch file of the results store
  with a version, see :mod:`ctfleet.monitors.stored`): a part whose version did not
  change is not read again, and only the (device, control) pairs of a changed part are
  merged again;
* the text of each family is joined again only when one of its blocks changed.

:func:`build_snapshot` is the same machinery from empty caches: the tests check that
after random changes the incremental text equals it byte for byte, and that it equals
prometheus-client's ``generate_latest`` of ``collect()``. Metric names and labels are
those of ``monitors/METRICS.md``. Example output (abridged)::

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
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ctfleet.core import conventions
from ctfleet.core.compliance import ControlResult, Outcome, Source, Status
from ctfleet.core.evaluate import Applicability, assess_ct
from ctfleet.core.inventory import judge_equipment
from ctfleet.core.models import CT, Role
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.monitors.hosting import hosting_series
from ctfleet.monitors.sweep import Sweep, clean_text, connected, sweep_observations

CT_LABELS = list(conventions.CT_LABELS)
DEVICE_LABELS = list(conventions.DEVICE_LABELS)


def ct_label_values(ct: CT, registry: Registry) -> list[str]:
    return list(conventions.ct_label_values(ct, registry.sites_of(ct.code)))


def equipped(ct: CT, registry: Registry, norms: NormSet, seen, inventories=None) -> bool:
    """KPI 'equipped', from observation (:mod:`ctfleet.core.inventory`): the CT's router was
    seen (``seen``: anything answering ``hostname in seen``), the workstations EQP-1 asks for
    have an observed inventory meeting EQP-2 (memory) and EQP-3 (OS), and a CT hosting its
    own server (tier ``own``) has one meeting EQP-4's configuration type. ``inventories``
    maps hostname -> newest :class:`~ctfleet.core.inventory.InventoryRecord`; a device
    without one is not assessed and does not count."""
    return judge_equipment(ct, registry, norms, seen, inventories).equipped


# --------------------------------------------------------------------- text rendering


def _escape(v) -> str:
    v = str(v)
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _fmt(value) -> str:
    """floatToGoString's text, with the two values most samples carry (int 0 and 1)
    spelled out, and Python's ``repr`` taken as is where floatToGoString would return it
    unchanged (finite, at most 6 digits before the point); the rest through
    floatToGoString (Inf, NaN, Go's earlier switch to exponents)."""
    if value.__class__ is int and 0 <= value <= 1:
        return "1.0" if value else "0.0"
    s = repr(float(value))
    dot = s.find(".")
    if 0 < dot <= 6:
        return s
    if dot > 6 and s[0] != "-":  # floatToGoString's exponent form, inline: counters take it at every sweep
        return f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.") + f"e+{dot - 1:02d}"
    return floatToGoString(value)


# sample name -> label values -> 'name{label="value",...} ' (kept across snapshots: a
# device's or CT's labels rarely change, so a sweep formats values, not labels)
_LABELS: dict[str, dict[tuple, str]] = {}


class Spec:
    """One metric family: name, type, help, label names; renders sample lines the way
    prometheus-client's ``generate_latest`` does (labels sorted by name, values escaped,
    values through ``floatToGoString``), each sample's label string built once."""

    __slots__ = ("name", "kind", "help", "labels", "sample", "header", "_order", "_cache")

    def __init__(self, name: str, kind: str, help: str, labels: Sequence[str]):
        self.name, self.kind, self.help, self.labels = name, kind, help, list(labels)
        self.sample = name + ("_total" if kind == "counter" else "")
        self.header = f"# HELP {self.sample} {help}\n# TYPE {self.sample} {kind}\n"
        self._order = sorted(range(len(self.labels)), key=self.labels.__getitem__)
        self._cache = _LABELS.setdefault(self.sample, {})

    def prefix(self, values: tuple) -> str:
        p = self._cache.get(values)
        if p is None:
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            if self.labels:
                p = self.sample + "{" + ",".join(f'{self.labels[i]}="{_escape(values[i])}"' for i in self._order) + "} "
            else:
                p = self.sample + " "
            self._cache[values] = p
        return p

    def lines(self, samples: Iterable[tuple[tuple, float]]) -> str:
        return "".join(self.prefix(v) + _fmt(x) + "\n" for v, x in samples)

    def metric(self, samples: Iterable[tuple[tuple, float]]) -> Metric:
        """prometheus-client's family of these samples (for ``collect()``)."""
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        m = cls(self.name, self.help, labels=self.labels)
        for values, value in samples:
            m.add_metric(list(values), value)
        return m


class Family:
    """A family with its samples, for the few series rebuilt at every sweep (collector
    health) and for ``collect()``."""

    __slots__ = ("spec", "samples")

    def __init__(self, name: str, kind: str, help: str, labels: list[str]):
        self.spec = Spec(name, kind, help, labels)
        self.samples: list[tuple[tuple, float]] = []

    @property
    def name(self) -> str:
        return self.spec.name

    def add_metric(self, values: list | tuple, value: float) -> None:
        self.samples.append((tuple(values), value))

    def render(self) -> str:
        return self.spec.header + self.spec.lines(self.samples)

    def to_metric(self) -> Metric:
        return self.spec.metric(self.samples)


class Snapshot:
    """What one sweep exposes: the text (rendered when the snapshot is made) and, for
    ``collect()``, the metric families built from the same samples on demand."""

    def __init__(self, text: bytes = b"", families: Callable[[], list[Family]] | None = None,
                 built_at: float = 0.0, build_seconds: float = 0.0):
        self._text = text
        self._families_fn = families
        self._families: list[Family] | None = None if families else []
        self._metrics: list[Metric] | None = None
        self.built_at = built_at
        self.build_seconds = build_seconds

    def text(self) -> bytes:
        return self._text

    @property
    def families(self) -> list[Family]:
        if self._families is None:
            self._families = self._families_fn()
        return self._families

    @property
    def metrics(self) -> list[Metric]:
        if self._metrics is None:
            self._metrics = [f.to_metric() for f in self.families]
        return self._metrics


# --------------------------------------------------------------------- the families

_G, _C = "gauge", "counter"
CT_SPECS = [
    Spec("ctfleet_ct_info", _G, "One series per CT in scope, with its names and hosting", CT_LABELS + ["name_fr", "tiers", "grouping"]),
    Spec("ctfleet_ct_connected", _G, "1 if the site's router answered in the last sweep and its uplink is up", CT_LABELS),
    Spec("ctfleet_ct_controls", _G, "Applicable (device, control) pairs of the CT by result status", CT_LABELS + ["status"]),
    Spec("ctfleet_ct_compliance_ratio", _G, "Share of the CT's applicable controls that pass", CT_LABELS),
    Spec("ctfleet_ct_coverage_ratio", _G, "Share of the CT's applicable controls with a known result", CT_LABELS),
    Spec("ctfleet_ct_meets_norms", _G, "1 if every applicable control has a known, fresh result and none fails", CT_LABELS),
    Spec("ctfleet_ct_outcome", _G, "1 for the CT's outcome: meets, failing or not_assessed (results missing or stale)",
         CT_LABELS + ["outcome"]),
    Spec("ctfleet_ct_results_stale", _G, "Results of the CT older than their maximum age (counted as unknown)", CT_LABELS),
    Spec("ctfleet_ct_result_age_seconds", _G, "Age of the oldest result of the CT from this source", CT_LABELS + ["source"]),
    Spec("ctfleet_ct_equipped", _G, "1 if the CT's router was seen and its observed inventories meet the workstation and server norms", CT_LABELS),
    Spec("ctfleet_ct_control_failing", _G, "Devices (or the CT itself) failing the control", CT_LABELS + ["control", "severity"]),
    Spec("ctfleet_ct_norm_rtt_max_seconds", _G, "The CT's norm LNK-2: maximum round-trip time", CT_LABELS),
    Spec("ctfleet_ct_norm_loss_max_ratio", _G, "The CT's norm LNK-3: maximum packet loss", CT_LABELS),
    Spec("ctfleet_ct_norm_uplink_utilisation_max_ratio", _G, "The CT's norm LNK-6: maximum uplink utilisation", CT_LABELS),
    Spec("ctfleet_ct_planned_outage", _G, "1 while the CT is in a maintenance window (standards/maintenance.yaml)", CT_LABELS),
]
(C_INFO, C_CONN, C_CTRL, C_RATIO, C_COVER, C_MEETS, C_OUTCOME, C_STALE, C_AGE, C_EQUIP, C_FAILING,
 C_RTT, C_LOSS, C_UTIL, C_OUTAGE) = range(len(CT_SPECS))
_ASSESSED = (C_CTRL, C_RATIO, C_COVER, C_MEETS, C_OUTCOME, C_STALE, C_FAILING)

DEVICE_SPECS = [
    Spec("ctfleet_device_up", _G, "1 if the device answered SNMP in the last sweep", DEVICE_LABELS),
    Spec("ctfleet_device_poll_error_info", _G, "Why the device's last poll failed", DEVICE_LABELS + ["reason"]),
    Spec("ctfleet_device_snmp_info", _G, "What the device said about itself", DEVICE_LABELS + ["version", "sys_name", "sys_descr"]),
    Spec("ctfleet_device_uptime_seconds", _G, "sysUpTime of the device", DEVICE_LABELS),
    Spec("ctfleet_uplink_up", _G, "1 if the uplink interface is operationally up", DEVICE_LABELS),
    Spec("ctfleet_uplink_info", _G, "The interface taken for the uplink, how (registry or heuristic), "
         "and the width of its octet counters (64: ifHC*, 32: ifIn/OutOctets, 0: none)",
         DEVICE_LABELS + ["interface", "if_index", "chosen_by", "octets_width"]),
    Spec("ctfleet_uplink_receive_bytes", _C, "Bytes received on the uplink (ifHCInOctets, else ifInOctets with wraps added)", DEVICE_LABELS),
    Spec("ctfleet_uplink_transmit_bytes", _C, "Bytes sent on the uplink (ifHCOutOctets, else ifOutOctets with wraps added)", DEVICE_LABELS),
    Spec("ctfleet_uplink_speed_bytes_per_second", _G, "Uplink speed (ifHighSpeed, else ifSpeed)", DEVICE_LABELS),
    Spec("ctfleet_link_rtt_seconds", _G, "Mean round-trip time of the last probe round", DEVICE_LABELS),
    Spec("ctfleet_link_rtt_max_seconds", _G, "Worst round-trip time of the last probe round", DEVICE_LABELS),
    Spec("ctfleet_link_loss_ratio", _G, "Lost / sent packets in the last probe round", DEVICE_LABELS),
]
(D_UP, D_ERR, D_INFO, D_UPT, D_UL_UP, D_UL_INFO, D_UL_RX, D_UL_TX, D_UL_SPEED, D_RTT, D_RTT_MAX, D_LOSS) = range(len(DEVICE_SPECS))


_NONE: tuple = ()


def device_samples(dl: tuple, poll, probe) -> list[tuple]:
    """The per-device samples of a poll and a probe round, per family of
    :data:`DEVICE_SPECS`: a tuple of ``(label values, value)`` for each."""
    out = [_NONE] * len(DEVICE_SPECS)
    if poll is not None:
        out[D_UP] = ((dl, 1 if poll.ok else 0),)
        if not poll.ok:
            out[D_ERR] = ((dl + (poll.error or "timeout",), 1),)
        else:
            out[D_INFO] = ((dl + (poll.version or "", clean_text(poll.sys_name, 120), clean_text(poll.sys_descr, 120)), 1),)
            if poll.uptime_seconds is not None:
                out[D_UPT] = ((dl, poll.uptime_seconds),)
            up = poll.uplink
            if up is not None:
                out[D_UL_UP] = ((dl, 1 if up.oper_up else 0),)
                by = "registry" if poll.uplink_reason.startswith("registry:") else "heuristic"
                out[D_UL_INFO] = ((dl + (clean_text(up.name, 120), str(up.index), by, str(up.counter_bits)), 1),)
                out[D_UL_RX] = ((dl, up.in_octets),)
                out[D_UL_TX] = ((dl, up.out_octets),)
                out[D_UL_SPEED] = ((dl, up.speed_mbps * 1_000_000 / 8),)
    if probe is not None:
        out[D_LOSS] = ((dl, probe.loss_ratio),)
        if probe.rtt_mean is not None:
            out[D_RTT] = ((dl, probe.rtt_mean),)
            out[D_RTT_MAX] = ((dl, probe.rtt_max),)
    return out


_VALUED = (D_UP, D_UPT, D_UL_UP, D_UL_RX, D_UL_TX, D_UL_SPEED, D_RTT, D_RTT_MAX, D_LOSS)  # labels: the device's only


class _DeviceText:
    """A device's label prefixes, rendered once: ``name{labels} `` of each family whose
    labels are the device's alone (only the value is formatted at each sweep), and the
    whole line of each info family (error, SNMP info, uplink info) with the raw values it
    was rendered from (rendered again only when they change)."""

    __slots__ = ("dl", "pre", "info")

    def __init__(self, dl: tuple):
        self.dl = dl
        self.pre = [DEVICE_SPECS[fi].prefix(dl) if fi in _VALUED else "" for fi in range(len(DEVICE_SPECS))]
        self.info: dict[int, tuple] = {}  # family -> (raw key, line)

    def line(self, fi: int, key: tuple, extra: Callable[[], tuple]) -> str:
        got = self.info.get(fi)
        if got is not None and got[0] == key:
            return got[1]
        text = DEVICE_SPECS[fi].prefix(self.dl + extra()) + "1.0\n"
        self.info[fi] = (key, text)
        return text

    def texts(self, poll, probe) -> list[str]:
        """The device's line (or "") per family of :data:`DEVICE_SPECS`: the text of
        :func:`device_samples` rendered by :class:`Spec` (the tests compare both)."""
        out = [""] * len(DEVICE_SPECS)
        pre = self.pre
        if poll is not None:
            if not poll.ok:
                out[D_UP] = pre[D_UP] + "0.0\n"
                reason = poll.error or "timeout"
                out[D_ERR] = self.line(D_ERR, (reason,), lambda: (reason,))
            else:
                out[D_UP] = pre[D_UP] + "1.0\n"
                out[D_INFO] = self.line(D_INFO, (poll.version, poll.sys_name, poll.sys_descr), lambda: (
                    poll.version or "", clean_text(poll.sys_name, 120), clean_text(poll.sys_descr, 120)))
                if poll.uptime_seconds is not None:
                    out[D_UPT] = pre[D_UPT] + _fmt(poll.uptime_seconds) + "\n"
                up = poll.uplink
                if up is not None:
                    out[D_UL_UP] = pre[D_UL_UP] + ("1.0\n" if up.oper_up else "0.0\n")
                    by = "registry" if poll.uplink_reason.startswith("registry:") else "heuristic"
                    out[D_UL_INFO] = self.line(D_UL_INFO, (up.name, up.index, by, up.counter_bits), lambda: (
                        clean_text(up.name, 120), str(up.index), by, str(up.counter_bits)))
                    out[D_UL_RX] = pre[D_UL_RX] + _fmt(up.in_octets) + "\n"
                    out[D_UL_TX] = pre[D_UL_TX] + _fmt(up.out_octets) + "\n"
                    out[D_UL_SPEED] = pre[D_UL_SPEED] + _fmt(up.speed_mbps * 1_000_000 / 8) + "\n"
        if probe is not None:
            out[D_LOSS] = pre[D_LOSS] + _fmt(probe.loss_ratio) + "\n"
            rtts = probe.rtts
            if rtts:
                out[D_RTT] = pre[D_RTT] + _fmt(probe.rtt_mean) + "\n"
                out[D_RTT_MAX] = pre[D_RTT_MAX] + _fmt(probe.rtt_max) + "\n"
        return out


def _sweep_families(sweep: Sweep, sweeps_total: int) -> list[Family]:
    """Collector health (a handful of series, rebuilt at every sweep)."""
    polls = list(sweep.polls.values())
    fams = []

    def fam(name, kind, help, labels, samples):
        f = Family(name, kind, help, labels)
        for values, value in samples:
            f.add_metric(values, value)
        fams.append(f)

    s = sweep.shard
    fam("ctfleet_sweep_duration_seconds", _G, "Wall time of the last sweep", ["shard"], [([s], sweep.duration_seconds)])
    fam("ctfleet_sweep_interval_seconds", _G, "Configured sweep interval", ["shard"], [([s], sweep.interval_seconds)])
    ok = sum(1 for p in polls if p.ok)
    fam("ctfleet_sweep_devices", _G, "Devices polled in the last sweep by result", ["shard", "result"],
        [([s, "ok"], ok), ([s, "failed"], len(polls) - ok)])
    fam("ctfleet_sweep_last_success_timestamp_seconds", _G, "End time of the last completed sweep", ["shard"],
        [([s], (sweep.ended or sweep.started).timestamp())])
    fam("ctfleet_sweeps", _C, "Sweeps completed", ["shard"], [([s], sweeps_total)])
    fam("ctfleet_snmp_unmatched_datagrams", _C, "Datagrams that matched no outstanding SNMP request (ignored)", ["shard"],
        [([s], sweep.unmatched_datagrams)])
    return fams


# --------------------------------------------------------------------- results as parts

#: A part of the results: ``(key, version, load)``. Parts are merged in the order of their
#: keys (a later part wins a tie between results observed at the same time, as
#: :func:`~ctfleet.core.compliance.latest` over their concatenation would); a part whose
#: version equals the one seen at the previous update is not loaded again (``None``:
#: load it every time).
Part = tuple[tuple, object, Callable[[], Iterable[ControlResult]]]

_NEVER = datetime.max.replace(tzinfo=timezone.utc)
_PASS_FAIL = (Status.PASS, Status.FAIL)
_REGISTRY = Source.REGISTRY
_SOURCE_NAME = {s: s.value for s in Source}  # Enum.value is a slow descriptor in a hot loop


class _Seen:
    """``hostname in seen``: the device has a pass or fail result (from a collector or an
    audit; declarations are not observations) or answered the last sweep."""

    __slots__ = ("counts", "polled_ok")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.polled_ok: set[str] = set()

    def __contains__(self, hostname: str) -> bool:
        return self.counts.get(hostname, 0) > 0 or hostname in self.polled_ok


class _CtState:
    """What the exposition keeps of one CT between updates."""

    __slots__ = ("ct", "lv", "routers", "app", "roles", "ages", "parts", "winners", "groups", "min_obs",
                 "deadline", "until", "verified", "assessment", "a_conn", "a_waivers", "connected", "planned",
                 "equipped", "age_now", "_applies", "_limits")

    def __init__(self, ct: CT, lv: tuple, registry: Registry, norms: NormSet):
        self.ct, self.lv = ct, lv
        devices = registry.devices_of(ct.code)
        self.routers = [d.hostname for d in devices if d.role == Role.ROUTER]
        self.roles = {d.hostname: d.role for d in devices}
        self.app = Applicability.of(ct, norms)
        self.ages = norms.max_ages(ct)
        self.parts: dict[tuple, dict[tuple, ControlResult]] = {}  # part key -> (device, control) -> newest in the part
        self.winners: dict[tuple, tuple[ControlResult, tuple]] = {}  # (device, control) -> (newest overall, its part key)
        self.groups: dict[str, dict[tuple, ControlResult]] = {}  # source -> applicable pairs' newest results from it
        self.min_obs: dict[str, datetime] = {}  # source -> oldest observation among its group
        self.deadline: dict[str, datetime] = {}  # source -> when the first fresh pass/fail of the group goes stale
        self.until = _NEVER
        self.verified: datetime | None = None  # the assessment holds at this time (and until `until`)
        self.assessment = None
        self.a_conn: object = ()
        self.a_waivers: tuple = ()
        self.connected: object = ()
        self.planned: bool | None = None
        self.equipped: bool | None = None
        self.age_now: datetime | None = None
        self._applies: dict[tuple, bool] = {}
        self._limits: dict[tuple, timedelta | None] = {}

    def applies(self, key: tuple) -> bool:
        """Whether the (device, control) pair is applicable (``assess_ct``'s rule)."""
        ok = self._applies.get(key)
        if ok is None:
            device, control = key
            if device is None:
                ok = control in self.app.ct_level
            else:
                role = self.roles.get(device)
                ok = role is not None and control in self.app.by_role[role]
            self._applies[key] = ok
        return ok

    def limit(self, control: str, source: Source) -> timedelta | None:
        """The maximum age of a result (``max_age`` of the CT's norms), as a timedelta.
        ``age > limit`` in seconds (``assess_ct``'s test) is ``now - observed > limit`` here:
        both are exact in microseconds."""
        key = (control, source)
        if key not in self._limits:
            sec = self.ages.seconds(control, _SOURCE_NAME[source])
            self._limits[key] = None if sec is None else timedelta(seconds=sec)
        return self._limits[key]


class Exposition:
    """The exposition of one registry and its norms, kept across sweeps (see the module
    docstring). Not thread-safe: one caller (the collector's sweep loop) updates it;
    the :class:`Snapshot` each update returns is immutable and may be served from any
    thread.

    >>> # exp = Exposition(registry, norms)
    >>> # snap = exp.update(sweep, [((0, "sweep"), None, lambda: sweep_results(sweep, registry, norms))])
    """

    def __init__(self, registry: Registry, norms: NormSet, per_ct: bool = True):
        """``per_ct=False``: the per-device series and the collector's health only, no
        CT series, no results (parts are ignored) and no hosting series: what a device
        exporter such as snmp_exporter serves (the benchmark's like-for-like figure)."""
        self.registry, self.norms, self.per_ct = registry, norms, per_ct
        self._cts: list[_CtState] = []
        self._ct_index: dict[str, int] = {}
        self._dev_lv: list[tuple] = []
        self._dev_index: dict[str, int] = {}
        self._dev_ct: dict[str, int] = {}
        for i, ct in enumerate(registry.cts.values()):
            lv = tuple(ct_label_values(ct, registry))
            self._cts.append(_CtState(ct, lv, registry, norms))
            self._ct_index[ct.code] = i
            for d in registry.devices_of(ct.code):
                self._dev_index[d.hostname] = len(self._dev_lv)
                self._dev_ct[d.hostname] = i
                self._dev_lv.append(lv + (d.hostname, d.role.value, d.platform.value))
        waivers = getattr(norms, "waivers", None)
        self._waived = [i for i, s in enumerate(self._cts) if waivers is not None and waivers.of_ct(s.ct.code)]
        n, nd = len(self._cts), len(self._dev_lv)
        self._ct_samples: list[list[tuple]] = [[()] * n for _ in CT_SPECS]
        self._ct_text: list[list[str]] = [[""] * n for _ in CT_SPECS]
        self._ct_joined: list[bytes | None] = [None] * len(CT_SPECS)  # each family's text, encoded
        self._dev_state: list[_DeviceText | None] = [None] * nd
        self._dev_text: list[list[str]] = [[""] * nd for _ in DEVICE_SPECS]
        self._dev_joined: list[bytes | None] = [None] * len(DEVICE_SPECS)
        self._dev_inputs: dict[int, tuple] = {}  # device index -> (poll, probe) rendered
        self._dev_order: list[int] = []
        self._parts: dict[tuple, tuple[object, dict[int, dict[tuple, ControlResult]]]] = {}
        self._seen = _Seen()
        self._inventories: dict = {}  # hostname -> newest observed InventoryRecord
        self._now: datetime | None = None
        self.stats = {"assessed": 0, "devices_rendered": 0, "parts_loaded": 0}  # of the last update
        self._hosting: list[Family] = []  # declared tenants: hosted = declared and present (hosting.rules.yml)

        def gauge(name: str, help: str, labels: list[str]) -> Family:
            f = Family(name, _G, help, labels)
            self._hosting.append(f)
            return f

        if per_ct:
            hosting_series(registry, gauge)  # from the registry alone: rendered once
        self._hosting_text = "".join(f.render() for f in self._hosting).encode("utf-8")
        for i, s in enumerate(self._cts if per_ct else ()):  # what only a reload changes
            ct = s.ct
            self._set_ct(C_INFO, i, ((s.lv + (ct.name_fr, ",".join(t.value for t in ct.tiers), ct.grouping or ""), 1),))
            resolved = norms.resolve(ct)
            self._set_ct(C_RTT, i, ((s.lv, resolved["LNK-2"].in_base_unit()),))
            self._set_ct(C_LOSS, i, ((s.lv, resolved["LNK-3"].in_base_unit()),))
            self._set_ct(C_UTIL, i, ((s.lv, resolved["LNK-6"].in_base_unit()),))

    # ------------------------------------------------------------ blocks
    def _set_ct(self, fi: int, i: int, samples: tuple) -> None:
        if samples == self._ct_samples[fi][i]:
            return
        self._ct_samples[fi][i] = samples
        self._ct_text[fi][i] = CT_SPECS[fi].lines(samples)
        self._ct_joined[fi] = None

    def _set_device(self, j: int, poll, probe) -> None:
        """A device's lines (:meth:`_DeviceText.texts`); a family is joined again only
        when one of its lines changed."""
        state = self._dev_state[j]
        if state is None:
            state = self._dev_state[j] = _DeviceText(self._dev_lv[j])
        texts, joined = self._dev_text, self._dev_joined
        for fi, line in enumerate(state.texts(poll, probe)):
            per = texts[fi]
            if line != per[j]:
                per[j] = line
                joined[fi] = None

    # ------------------------------------------------------------ results
    def _partition(self, results: Iterable[ControlResult]) -> dict[int, dict[tuple, ControlResult]]:
        """The newest result per CT and pair within one part; declarations (source
        ``registry``) are left out, as ``assess_ct`` leaves them out."""
        out: dict[int, dict[tuple, ControlResult]] = {}
        index = self._ct_index
        last, m = None, None
        for r in results:
            if r.source is _REGISTRY:
                continue
            ct = r.ct
            if ct != last:  # results mostly come CT by CT
                last = ct
                i = index.get(ct)
                m = None if i is None else out.get(i)
                if i is not None and m is None:
                    m = out[i] = {}
            if m is None:
                continue
            k = (r.device, r.control)
            prev = m.get(k)
            if prev is None or r.observed_at >= prev.observed_at:
                m[k] = r
        return out

    def _apply_parts(self, parts: Iterable[Part]) -> tuple[set[int], dict[int, list], set[str]]:
        """Load the parts whose version changed and merge their pairs again. Returns the
        CTs whose newest results changed status or source (or appeared, or went), the
        pairs only observed again (``ct -> [(pair, old, new)]``), and the devices whose
        'seen' state may have changed."""
        changed: dict[int, set[tuple]] = {}  # ct -> pairs to merge again
        given = set()
        for key, version, load in parts:
            given.add(key)
            cur = self._parts.get(key)
            if cur is not None and version is not None and cur[0] == version:
                continue
            per_ct = self._partition(load())
            self.stats["parts_loaded"] += 1
            old = cur[1] if cur is not None else {}
            self._parts[key] = (version, per_ct)
            for i in old.keys() | per_ct.keys():
                o, n = old.get(i, {}), per_ct.get(i)
                s = self._cts[i]
                if n:
                    s.parts[key] = n
                else:
                    s.parts.pop(key, None)
                pairs = changed.setdefault(i, set())
                pairs.update(o.keys())
                if n:
                    pairs.update(n.keys())
        for key in [k for k in self._parts if k not in given]:  # a batch that went away
            _, old = self._parts.pop(key)
            for i, o in old.items():
                self._cts[i].parts.pop(key, None)
                changed.setdefault(i, set()).update(o.keys())
        dirty: set[int] = set()
        touched: dict[int, list] = {}
        seen_changed: set[str] = set()
        counts = self._seen.counts
        for i, pairs in changed.items():
            s = self._cts[i]
            items = list(s.parts.items())
            only = items[0] if len(items) == 1 else None
            for k in pairs:
                if only is not None:
                    best_key, best = only[0], only[1].get(k)
                else:
                    best, best_key = None, None
                    for pk, m in items:
                        r = m.get(k)
                        if r is not None and (best is None or (r.observed_at, pk) > (best.observed_at, best_key)):
                            best, best_key = r, pk
                was = s.winners.get(k)
                old = was[0] if was is not None else None
                if best is None:
                    if old is None:
                        continue
                    del s.winners[k]
                else:
                    s.winners[k] = (best, best_key)
                if old is not None and best is not None and old.status == best.status and old.source == best.source:
                    if old.observed_at != best.observed_at:
                        touched.setdefault(i, []).append((k, old, best))
                    continue
                dirty.add(i)
                device = k[0]
                if device is not None:
                    delta = (best is not None and best.status in _PASS_FAIL) - (old is not None and old.status in _PASS_FAIL)
                    if delta:
                        before = counts.get(device, 0)
                        counts[device] = before + delta
                        if (before > 0) != (before + delta > 0):
                            seen_changed.add(device)
        return dirty, touched, seen_changed

    # ------------------------------------------------------------ assessment
    def _regroup(self, s: _CtState, now: datetime, sources: Iterable[str] | None = None) -> None:
        """Oldest observation and next staleness deadline per source (all sources, or those given)."""
        if sources is None:
            s.groups = {}
            for k, (r, _) in s.winners.items():
                if s.applies(k):
                    s.groups.setdefault(r.source, {})[k] = r
            sources = list(s.groups)
            s.min_obs, s.deadline = {}, {}
        for src in sources:
            group = s.groups.get(src)
            if not group:
                s.groups.pop(src, None)
                s.min_obs.pop(src, None)
                s.deadline.pop(src, None)
                continue
            oldest, first = None, _NEVER
            for (device, control), r in group.items():
                obs = r.observed_at
                if oldest is None or obs < oldest:
                    oldest = obs
                if r.status in _PASS_FAIL:
                    limit = s.limit(control, src)
                    if limit is not None:
                        at = obs + limit
                        if now <= at < first:  # fresh now: goes stale once `now` passes `at`
                            first = at
            s.min_obs[src] = oldest
            s.deadline[src] = first
        s.until = min(s.deadline.values(), default=_NEVER)

    def _still_valid(self, s: _CtState, now: datetime, touched: list) -> bool:
        """Whether the CT's cached assessment still holds at ``now`` after the pairs in
        ``touched`` were observed again with the same status and source: no result went
        stale since it was computed, and no result observed again changed staleness."""
        if s.verified is None or now < s.verified or now > s.until:
            return False
        verified, limits = s.verified, s._limits
        for k, old, new in touched:
            if new.status not in _PASS_FAIL or not s.applies(k):
                continue
            lk = (k[1], new.source)
            limit = limits[lk] if lk in limits else s.limit(*lk)
            if limit is not None and ((verified - old.observed_at) > limit) != ((now - new.observed_at) > limit):
                return False
        return True

    def _assess(self, i: int, s: _CtState, now: datetime, conn, waivers_key: tuple) -> None:
        a = assess_ct(s.ct, self.registry, self.norms, [r for r, _ in s.winners.values()], now,
                      None if conn is None else conn)
        self.stats["assessed"] += 1
        s.assessment, s.a_conn, s.a_waivers, s.verified = a, conn, waivers_key, now
        self._regroup(s, now)
        comp, lv = a.compliance, s.lv
        self._set_ct(C_CTRL, i, tuple((lv + (st.value,), n) for st, n in (
            (Status.PASS, comp.passed), (Status.FAIL, comp.failed), (Status.UNKNOWN, comp.unknown), (Status.WAIVED, comp.waived))))
        self._set_ct(C_RATIO, i, ((lv, comp.ratio),))
        self._set_ct(C_COVER, i, ((lv, comp.coverage),))
        self._set_ct(C_MEETS, i, ((lv, 1 if comp.meets_norms else 0),))
        self._set_ct(C_OUTCOME, i, tuple((lv + (o.value,), 1 if a.outcome == o else 0) for o in Outcome))
        self._set_ct(C_STALE, i, ((lv, comp.stale),))
        controls = self.norms.controls
        self._set_ct(C_FAILING, i, tuple((lv + (cid, controls[cid].severity), n) for cid, n in sorted(a.failing.items())))
        # assess_ct's own ages (the incremental path computes them from min_obs: the tests
        # compare both ways)
        self._set_ct(C_AGE, i, tuple((lv + (src,), sec) for src, sec in sorted(a.oldest_age.items())))
        s.age_now = now

    def _ages(self, i: int, s: _CtState, now: datetime) -> None:
        if s.age_now == now:
            return
        s.age_now = now
        spec, lv = CT_SPECS[C_AGE], s.lv
        samples = tuple((lv + (_SOURCE_NAME[src],), max(0.0, (now - t).total_seconds()))
                        for src, t in (sorted(s.min_obs.items()) if len(s.min_obs) > 1 else s.min_obs.items()))
        if samples != self._ct_samples[C_AGE][i]:  # the ages move with `now`: no need to compare lines
            self._ct_samples[C_AGE][i] = samples
            self._ct_text[C_AGE][i] = "".join([spec.prefix(v) + floatToGoString(x) + "\n" for v, x in samples])
            self._ct_joined[C_AGE] = None

    # ------------------------------------------------------------ update
    def update(self, sweep: Sweep | None, parts: Iterable[Part] = (), now: datetime | None = None,
               sweeps_total: int = 0, planned_outages: Iterable[str] = frozenset(),
               inventories: Iterable | None = None) -> Snapshot:
        """The exposition after a sweep (or before any, ``sweep=None``) with the results of
        ``parts``; ``now`` (default: the current time) decides results' freshness, waivers
        in force and open maintenance windows. ``inventories`` (the newest observed
        inventory records; None: unchanged since the last update) decide "equipped"."""
        t0 = time.perf_counter()
        now = now or datetime.now(timezone.utc)
        self.stats = {"assessed": 0, "devices_rendered": 0, "parts_loaded": 0}
        per_ct = self.per_ct
        dirty, touched, seen_changed = self._apply_parts(parts) if per_ct else (set(), {}, set())
        if per_ct and inventories is not None:
            inv = {r.device: r for r in inventories}
            seen_changed = set(seen_changed) | {h for h in inv.keys() | self._inventories.keys()
                                                if inv.get(h) != self._inventories.get(h)}
            self._inventories = inv
        first = self._now is None
        self._now = now

        # devices: what answered, and each device's block
        polls = sweep.polls if sweep is not None else {}
        probes = sweep.probes if sweep is not None else {}
        seen = self._seen
        ok_now = {h for h, p in polls.items() if p.ok}
        seen_changed |= ok_now ^ seen.polled_ok
        seen.polled_ok = ok_now
        index, inputs = self._dev_index, self._dev_inputs
        live: set[int] = set()
        for h in polls.keys() | probes.keys():
            j = index.get(h)
            if j is None:
                continue
            live.add(j)
            poll, probe = polls.get(h), probes.get(h)
            was = inputs.get(j)
            if was is not None and was[0] is poll and was[1] is probe:
                continue
            inputs[j] = (poll, probe)
            self._set_device(j, poll, probe)
            self.stats["devices_rendered"] += 1
        gone = [j for j in inputs if j not in live]
        for j in gone:
            del inputs[j]
            self._set_device(j, None, None)
        if gone or len(live) != len(self._dev_order):
            self._dev_order = sorted(live)

        # CTs
        planned = set(planned_outages)
        maintenance = getattr(self.norms, "maintenance", None)
        if maintenance is not None:
            planned |= maintenance.planned_outages((s.ct for s in self._cts), now)
        waivers = getattr(self.norms, "waivers", None)
        waived = {i: tuple(id(w) for w in waivers.of_ct(self._cts[i].ct.code) if w.in_force(now)) for i in self._waived}
        equip_todo = set(range(len(self._cts))) if first else {self._dev_ct[h] for h in seen_changed if h in self._dev_ct}
        for i, s in enumerate(self._cts if per_ct else ()):
            if sweep is None:
                conn = None
            elif len(s.routers) == 1:
                conn = connected(polls.get(s.routers[0]))
            else:
                conn = any(connected(polls.get(h)) for h in s.routers)
            if conn != s.connected:
                s.connected = conn
                self._set_ct(C_CONN, i, () if conn is None else ((s.lv, 1 if conn else 0),))
            p = s.ct.code in planned
            if p != s.planned:
                s.planned = p
                self._set_ct(C_OUTAGE, i, ((s.lv, 1 if p else 0),))
            wk = waived.get(i, ())
            t = touched.get(i, ())
            if (i in dirty or conn != s.a_conn or wk != s.a_waivers or not self._still_valid(s, now, t)):
                self._assess(i, s, now, conn, wk)
            else:
                if t:
                    s.verified = now
                    srcs = set()
                    for k, old, new in t:
                        if s.applies(k):
                            s.groups.setdefault(new.source, {})[k] = new
                            srcs.add(new.source)
                    self._regroup(s, now, srcs)
                else:
                    s.verified = now
                self._ages(i, s, now)
            if i in equip_todo:
                e = equipped(s.ct, self.registry, self.norms, seen, self._inventories)
                if e != s.equipped:
                    s.equipped = e
                    self._set_ct(C_EQUIP, i, ((s.lv, 1 if e else 0),))

        # text: each family joined again only when one of its blocks changed
        out = []
        for fi, spec in enumerate(CT_SPECS if per_ct else ()):
            if self._ct_joined[fi] is None:
                self._ct_joined[fi] = (spec.header + "".join(self._ct_text[fi])).encode("utf-8")
            out.append(self._ct_joined[fi])
        order = self._dev_order
        for fi, spec in enumerate(DEVICE_SPECS):
            if self._dev_joined[fi] is None:
                texts = self._dev_text[fi]
                self._dev_joined[fi] = (spec.header + "".join([texts[j] for j in order])).encode("utf-8")
            out.append(self._dev_joined[fi])
        health = _sweep_families(sweep, sweeps_total) if sweep is not None else []
        out.extend(f.render().encode("utf-8") for f in health)
        out.append(self._hosting_text)
        text = b"".join(out)  # families encoded apart: an unchanged one is not encoded again

        ct_samples = [list(x) for x in self._ct_samples] if per_ct else []
        lv, dev_inputs = self._dev_lv, dict(inputs)  # polls and probes are frozen; `order` is not changed in place

        def families() -> list[Family]:
            # for collect(): the device samples from the same inputs, through Spec and
            # prometheus-client, not through _DeviceText (the tests compare both texts)
            dev_samples = [[] for _ in DEVICE_SPECS]
            for j in order:
                for per, b in zip(dev_samples, device_samples(lv[j], *dev_inputs[j])):
                    per.extend(b)
            fams = []
            for spec, per in zip(CT_SPECS, ct_samples):
                f = Family(spec.name, spec.kind, spec.help, spec.labels)
                for b in per:
                    f.samples.extend(b)
                fams.append(f)
            for spec, per in zip(DEVICE_SPECS, dev_samples):
                f = Family(spec.name, spec.kind, spec.help, spec.labels)
                f.samples = per
                fams.append(f)
            return fams + health + self._hosting

        return Snapshot(text, families, built_at=time.time(), build_seconds=time.perf_counter() - t0)


def sweep_part(sweep: Sweep, registry: Registry, norms: NormSet, results: Iterable[ControlResult] | None = None) -> Part:
    """The part of a sweep's own results, loaded at every update: ``results`` when given
    (the :func:`sweep_results` the collector stored), else :func:`sweep_observations` (the
    same judgements as plain tuples, without building pydantic results)."""
    return ((0, "sweep"), None, (lambda: results) if results is not None else (lambda: sweep_observations(sweep, registry, norms)))


def build_snapshot(registry: Registry, norms: NormSet, sweep: Sweep | None, stored: Iterable[ControlResult] = (),
                   planned_outages: set[str] = frozenset(), sweeps_total: int = 0, now: datetime | None = None,
                   inventories: Iterable | None = None) -> Snapshot:
    """The metrics of one sweep from nothing kept: the sweep's results, then ``stored``.
    ``now`` (default: the current time) decides results' freshness, waivers in force and
    open maintenance windows. A collector keeps an :class:`Exposition` instead."""
    parts: list[Part] = [((1, "stored"), None, lambda: stored)]
    if sweep is not None:
        parts.insert(0, sweep_part(sweep, registry, norms))
    return Exposition(registry, norms).update(sweep, parts, now=now, sweeps_total=sweeps_total, planned_outages=planned_outages,
                                              inventories=inventories)


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
