"""What one collector sweep saw, and the control results it implies (pure).

The SNMP poller and the reachability prober fill a :class:`Sweep`; this module turns it
into results of the shared compliance model, judged against each CT's resolved norms —
no threshold is typed here. The exporter serves both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Literal, NamedTuple

from ctfleet.core.compliance import ControlResult, Source, Status, judge
from ctfleet.core.models import Role
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry

ErrorReason = Literal["timeout", "auth", "malformed", "refused", "unsupported"]


@dataclass(frozen=True)
class Interface:
    index: int
    name: str  # ifName, else ifDescr
    admin_up: bool
    oper_up: bool
    speed_mbps: int  # ifHighSpeed, else ifSpeed / 10^6
    in_octets: int  # ifHCInOctets, else ifInOctets with its wraps added (see counter_bits)
    out_octets: int  # ifHCOutOctets, else ifOutOctets with its wraps added
    alias: str = ""
    counter_bits: int = 64  # 64: ifHC*Octets; 32: ifIn/OutOctets (wraps at 2^32); 0: no counter
    descr: str = ""  # ifDescr, when ifName is there too


@dataclass(frozen=True)
class DevicePoll:
    """One device's SNMP poll.

    >>> DevicePoll("r-01-511-01-0", ok=True, version="v3-authpriv", sys_name="r-01-511-01-0",
    ...            sys_descr="Cisco IOS XE", uptime_seconds=86400.0, elapsed_seconds=0.012).ok
    True
    """

    hostname: str
    ok: bool
    version: Literal["v3-authpriv", "v3-authnopriv", "v2c", "v1"] | None = None
    error: ErrorReason | None = None
    detail: str = ""
    sys_name: str = ""
    sys_descr: str = ""
    uptime_seconds: float | None = None
    interfaces: tuple[Interface, ...] = ()
    uplink_index: int | None = None
    elapsed_seconds: float = 0.0
    uplink_reason: str = ""  # how the uplink was chosen (registry, alias, name) or why none was

    @property
    def uplink(self) -> Interface | None:
        for i in self.interfaces:
            if i.index == self.uplink_index:
                return i
        return None


@dataclass(frozen=True)
class Probe:
    """One smokeping-style round to a site's router: several packets, RTTs of those answered."""

    hostname: str
    sent: int
    rtts: tuple[float, ...]  # seconds, one per answered packet
    method: Literal["icmp", "snmp", "udp_echo"] = "icmp"

    @property
    def loss_ratio(self) -> float:
        return 1 - len(self.rtts) / self.sent if self.sent else 1.0

    @property
    def rtt_mean(self) -> float | None:
        return sum(self.rtts) / len(self.rtts) if self.rtts else None

    @property
    def rtt_max(self) -> float | None:
        return max(self.rtts) if self.rtts else None


@dataclass
class Sweep:
    started: datetime
    ended: datetime | None = None
    interval_seconds: float = 60.0
    polls: dict[str, DevicePoll] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    shard: str = "all"
    unmatched_datagrams: int = 0  # the poller's count since it started (a counter)

    @property
    def duration_seconds(self) -> float:
        return (self.ended - self.started).total_seconds() if self.ended else 0.0


# The fallback heuristic, anchored (issue 15: "wan" anywhere matched "wuxianwangluo"):
# an ifAlias (the interface's configured description) that *starts* with one of these
# words, else an ifName/ifDescr that is one of these interface kinds followed by its
# number. Among several candidates an operationally up one wins, then the lowest ifIndex.
UPLINK_ALIAS = re.compile(r"^\s*(uplink|wan|internet|isp)\b", re.IGNORECASE)
UPLINK_NAME = re.compile(r"^(dialer|cellular|wwan|lte|pppoe-out|ppp|tunnel-vsat|vsat)[0-9/.:]*$", re.IGNORECASE)


def choose_uplink(interfaces: tuple[Interface, ...], declared: str | None = None) -> tuple[int | None, str]:
    """(ifIndex of the uplink or None, why). ``declared`` is the site's uplink interface
    from the registry (``index:N``, ``name:NAME`` matched against ifName or ifDescr
    case-insensitively, ``description:REGEX`` searched in ifAlias); when it is absent or
    matches nothing on the device, the anchored heuristic above chooses, and the reason
    says so.

    >>> ifs = (Interface(1, "Gi0/0", True, True, 100, 0, 0, "sanxiao_lianwang"),
    ...        Interface(2, "Dialer0", True, True, 8, 0, 0, ""))
    >>> choose_uplink(ifs)
    (2, 'heuristic: ifName Dialer0 is a WAN interface kind')
    >>> choose_uplink(ifs, "index:1")
    (1, 'registry: index:1')
    """
    miss = ""
    if declared:
        kind, _, value = declared.partition(":")
        found: list[Interface] = []
        if kind == "index" and value.isdigit():
            found = [i for i in interfaces if i.index == int(value)]
        elif kind == "name":
            v = value.strip().lower()
            found = [i for i in interfaces if i.name.lower() == v or i.descr.lower() == v]
        elif kind == "description":
            try:
                rx = re.compile(value)
            except re.error:
                rx = None
            found = [i for i in interfaces if rx is not None and rx.search(i.alias)]
        if found:
            best = sorted(found, key=lambda i: (not i.oper_up, i.index))[0]
            return best.index, f"registry: {declared}"
        miss = f"registry's {declared} matches no interface; "
    by_alias = [i for i in interfaces if UPLINK_ALIAS.match(i.alias)]
    if by_alias:
        best = sorted(by_alias, key=lambda i: (not i.oper_up, i.index))[0]
        return best.index, f"{miss}heuristic: ifAlias {best.alias.strip()[:40]!r} starts with an uplink word"
    by_name = [i for i in interfaces if UPLINK_NAME.match(i.name) or UPLINK_NAME.match(i.descr)]
    if by_name:
        best = sorted(by_name, key=lambda i: (not i.oper_up, i.index))[0]
        return best.index, f"{miss}heuristic: ifName {best.name} is a WAN interface kind"
    return None, f"{miss}no interface declared in the registry or named like an uplink"


def find_uplink(interfaces: tuple[Interface, ...], declared: str | None = None) -> int | None:
    """The uplink's ifIndex (see :func:`choose_uplink`), else None (unknown)."""
    return choose_uplink(interfaces, declared)[0]


_CONTROL = re.compile(r"\s*[\x00-\x1f\x7f-\x9f]+\s*")


def clean_text(value, limit: int = 0) -> str:
    r"""An SNMP string as a label value: UTF-8 if it is, else Latin-1 (every octet is a
    character; what old agents mostly send), control characters (CR, LF, NUL ...) as one
    space, ends stripped, at most ``limit`` characters when given.

    >>> clean_text(b"Cisco IOS\r\nVersion 15.2\x00"), clean_text(b"caf\xe9")
    ('Cisco IOS Version 15.2', 'café')
    """
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(value).decode("latin-1")
    else:
        text = str(value)
    if not text.isprintable():
        text = _CONTROL.sub(" ", text).strip()
        # lone surrogates and other non-characters cannot be encoded in an exposition
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit else text


def connected(poll: DevicePoll | None) -> bool:
    """KPI 'connected': the router answered in the last sweep and its uplink is up."""
    if poll is None or not poll.ok:
        return False
    up = poll.uplink
    return bool(up and up.oper_up)


class Observation(NamedTuple):
    """A sweep's result as the exposition counts it: the fields of a
    :class:`~ctfleet.core.compliance.ControlResult` that the assessment reads, as a plain
    tuple. :func:`sweep_observations` builds ~4 per router and sweep from values typed
    here; validating each as a pydantic model cost more than rendering the device's
    series (issue 15). :func:`sweep_results` judges the same way, with evidence."""

    ct: str
    device: str | None
    control: str
    status: Status
    source: Source
    observed_at: datetime

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.ct, self.device, self.control)


def _judged(sweep: Sweep, registry: Registry, norms: NormSet) -> Iterator[tuple]:
    """``(ct, device, control, status, source, at, resolved, poll, probe, observed)`` for
    each result the sweep supports (one judgement for :func:`sweep_results` and
    :func:`sweep_observations`)."""
    at = sweep.ended or sweep.started
    polls, probes = sweep.polls, sweep.probes
    snmp, icmp, router = Source.SNMP, Source.ICMP, Role.ROUTER
    for ct in registry.cts.values():
        resolved = None
        for d in registry.devices_of(ct.code):
            if d.role != router:
                continue
            poll = polls.get(d.hostname)
            probe = probes.get(d.hostname)
            if poll is None and probe is None:
                continue
            if resolved is None:
                resolved = norms.resolve(ct)
            if poll is not None:
                r = resolved["RTR-2"]
                if r.applicable:
                    observed = poll.version if poll.ok else None
                    yield (ct.code, d.hostname, "RTR-2", judge(r.control, r.value, observed), snmp, at, r, poll, None, observed)
                up = poll.uplink if poll.ok else None
                r = resolved["LNK-1"]
                if r.applicable and up is not None:
                    yield (ct.code, None, "LNK-1", judge(r.control, r.value, float(up.speed_mbps)), snmp, at, r, poll, None, up)
            if probe is not None:
                src = snmp if probe.method == "snmp" else icmp
                rtt = probe.rtt_mean
                for cid, observed in (("LNK-2", None if rtt is None else rtt * 1000), ("LNK-3", probe.loss_ratio * 100)):
                    r = resolved[cid]
                    if r.applicable:
                        yield (ct.code, None, cid, judge(r.control, r.value, observed), src, at, r, None, probe, observed)


def sweep_observations(sweep: Sweep, registry: Registry, norms: NormSet) -> Iterator[Observation]:
    """The results of :func:`sweep_results` as :class:`Observation` tuples (no evidence):
    what the exposition counts when the sweep's results are not stored."""
    for ct, device, control, status, source, at, *_ in _judged(sweep, registry, norms):
        yield Observation(ct, device, control, status, source, at)


def sweep_results(sweep: Sweep, registry: Registry, norms: NormSet) -> Iterator[ControlResult]:
    """Control results the sweep supports: SNMP security (RTR-2), uplink speed (LNK-1),
    round-trip time (LNK-2) and loss (LNK-3); judged against each CT's norms."""
    for ct, device, control, status, source, at, r, poll, probe, observed in _judged(sweep, registry, norms):
        if control == "RTR-2":
            evidence = f"answered {poll.version}" if poll.ok else f"no answer ({poll.error}: {poll.detail})"
            yield ControlResult(ct=ct, device=device, control=control, status=status, source=source, evidence=evidence,
                                observed=observed, expected=r.value, observed_at=at)
        elif control == "LNK-1":
            up = observed
            yield ControlResult(ct=ct, device=device, control=control, status=status, source=source,
                                evidence=f"uplink {up.name} ifHighSpeed {up.speed_mbps} Mbit/s",
                                observed=up.speed_mbps, expected=r.value, observed_at=at)
        else:
            yield ControlResult(ct=ct, device=device, control=control, status=status, source=source,
                                evidence=f"{len(probe.rtts)}/{probe.sent} answered ({probe.method})",
                                observed=None if observed is None else round(observed, 3), expected=r.value, observed_at=at)
