"""What one collector sweep saw, and the control results it implies (pure).

The SNMP poller and the reachability prober fill a :class:`Sweep`; this module turns it
into results of the shared compliance model, judged against each CT's resolved norms —
no threshold is typed here. The exporter serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Literal

from ctfleet.core.compliance import ControlResult, Source, judge
from ctfleet.core.models import Role
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry

ErrorReason = Literal["timeout", "auth", "malformed", "refused", "unsupported"]


@dataclass(frozen=True)
class Interface:
    index: int
    name: str
    admin_up: bool
    oper_up: bool
    speed_mbps: int  # ifHighSpeed
    in_octets: int  # ifHCInOctets
    out_octets: int  # ifHCOutOctets
    alias: str = ""


@dataclass(frozen=True)
class DevicePoll:
    """One device's SNMP poll.

    >>> DevicePoll("r-01-511-01-0", ok=True, version="v3-authpriv", sys_name="r-01-511-01-0",
    ...            sys_descr="Cisco IOS XE", uptime_seconds=86400.0, elapsed_seconds=0.012).ok
    True
    """

    hostname: str
    ok: bool
    version: Literal["v3-authpriv", "v3-authnopriv", "v2c"] | None = None
    error: ErrorReason | None = None
    detail: str = ""
    sys_name: str = ""
    sys_descr: str = ""
    uptime_seconds: float | None = None
    interfaces: tuple[Interface, ...] = ()
    uplink_index: int | None = None
    elapsed_seconds: float = 0.0

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

    @property
    def duration_seconds(self) -> float:
        return (self.ended - self.started).total_seconds() if self.ended else 0.0


UPLINK_HINTS = ("uplink", "wan", "dialer", "cellular", "vsat", "tunnel-vsat")


def find_uplink(interfaces: tuple[Interface, ...]) -> int | None:
    """The uplink interface: the one whose alias or name says so, else None (unknown)."""
    for i in interfaces:
        text = f"{i.alias} {i.name}".lower()
        if any(h in text for h in UPLINK_HINTS):
            return i.index
    return None


def connected(poll: DevicePoll | None) -> bool:
    """KPI 'connected': the router answered in the last sweep and its uplink is up."""
    if poll is None or not poll.ok:
        return False
    up = poll.uplink
    return bool(up and up.oper_up)


def sweep_results(sweep: Sweep, registry: Registry, norms: NormSet) -> Iterator[ControlResult]:
    """Control results the sweep supports: SNMP security (RTR-2), uplink speed (LNK-1),
    round-trip time (LNK-2) and loss (LNK-3); judged against each CT's norms."""
    at = sweep.ended or sweep.started
    for ct in registry.cts.values():
        resolved = norms.resolve(ct)
        for d in registry.devices_of(ct.code):
            if d.role != Role.ROUTER:
                continue
            poll = sweep.polls.get(d.hostname)
            if poll is not None:
                r = resolved["RTR-2"]
                if r.applicable:
                    observed = poll.version if poll.ok else None
                    evidence = f"answered {poll.version}" if poll.ok else f"no answer ({poll.error}: {poll.detail})"
                    yield ControlResult(ct=ct.code, device=d.hostname, control="RTR-2", status=judge(r.control, r.value, observed),
                                        source=Source.SNMP, evidence=evidence, observed=observed, expected=r.value, observed_at=at)
                up = poll.uplink if poll.ok else None
                r = resolved["LNK-1"]
                if r.applicable and up is not None:
                    yield ControlResult(ct=ct.code, device=None, control="LNK-1", status=judge(r.control, r.value, float(up.speed_mbps)),
                                        source=Source.SNMP, evidence=f"uplink {up.name} ifHighSpeed {up.speed_mbps} Mbit/s",
                                        observed=up.speed_mbps, expected=r.value, observed_at=at)
            probe = sweep.probes.get(d.hostname)
            if probe is not None:
                for cid, observed, unit in (("LNK-2", None if probe.rtt_mean is None else probe.rtt_mean * 1000, "ms"),
                                            ("LNK-3", probe.loss_ratio * 100, "%")):
                    r = resolved[cid]
                    if not r.applicable:
                        continue
                    status = judge(r.control, r.value, observed)
                    yield ControlResult(ct=ct.code, device=None, control=cid, status=status, source=Source.SNMP if probe.method == "snmp" else Source.ICMP,
                                        evidence=f"{len(probe.rtts)}/{probe.sent} answered ({probe.method})",
                                        observed=None if observed is None else round(observed, 3), expected=r.value, observed_at=at)
