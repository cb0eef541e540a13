"""The router platform registry: what ctfleet knows about each router OS (pure data).

One :class:`PlatformSpec` per platform says which template renders its intended
configuration, which driver talks to it, which parts of its configuration each
control manages (``owned``: a push removes what is there and not intended), and how
each control is *observed* for the audit. Supporting MikroTik RouterOS or Huawei VRP is
a template in ``templates/`` and an entry here naming a driver (e.g. napalm's community
``ros`` or ``huawei_vrp`` drivers through ``("napalm", "ros")``)::

    Platform.MIKROTIK: PlatformSpec(
        platform=Platform.MIKROTIK, template="mikrotik_routeros.j2", driver=("napalm", "ros"),
        style="ios", owned={"RTR-3": (r"^/system ntp client",)}, observers={...},
        revert="RouterOS safe mode"),

An observer turns what the router shows into the value a control is judged on
(:func:`ctfleet.core.compliance.judge`); what a platform cannot show is reported
:class:`Unobservable` (unknown, with the reason), never as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from ctfleet.core.errors import InputError, Problem, one_of
from ctfleet.core.models import Platform


@dataclass(frozen=True)
class InNorm:
    """True when the control's intended lines are all there and nothing stray is in its scope."""


@dataclass(frozen=True)
class Count:
    """How many running lines match ``pattern`` (over ``parent > child`` paths)."""

    pattern: str


@dataclass(frozen=True)
class Classify:
    """The value of the first rule whose pattern matches a running line; ``default`` when none does."""

    rules: tuple[tuple[str, Any], ...]
    default: Any = None


@dataclass(frozen=True)
class LiveState:
    """The value of the first rule matching the output of a show ``command``; unknown when none does."""

    command: str
    rules: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Prerequisite:
    """The router's own part of a control that a host service completes (FRR logs to the
    host's syslog, which forwards): absent is a definite fail, present is unknown."""

    pattern: str
    reason: str


@dataclass(frozen=True)
class Unobservable:
    reason: str


@dataclass(frozen=True)
class BackupAge:
    """Hours since the router's last successful backup (from the backup store)."""


Observer = Union[InNorm, Count, Classify, LiveState, Prerequisite, Unobservable, BackupAge]


@dataclass(frozen=True)
class PlatformSpec:
    platform: Platform
    template: str
    driver: tuple[str, str | None]  # (kind, name): ("napalm", "ios"), ("vtysh", None)
    style: Literal["ios", "frr"]
    owned: Mapping[str, tuple[str, ...]]
    observers: Mapping[str, Observer]
    revert: str  # how the revert is armed on the device, for reports
    ordered_blocks: tuple[str, ...] = ()
    netmiko_device_type: str = "cisco_ios"
    revert_step_seconds: int = 1  # IOS arms its revert timer in whole minutes
    # Top-level commands that hold one value: a new one overwrites, and "no <old line>" may not
    # even parse (FRR: "no password X" is unknown). A restore sends the new line only.
    single_valued: tuple[str, ...] = ()
    state_commands: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        cmds = tuple(o.command for o in self.observers.values() if isinstance(o, LiveState))
        object.__setattr__(self, "state_commands", tuple(dict.fromkeys(cmds)))


_HOST = "on an FRR router this is the host's {what}, outside vtysh: audited with the host (playbooks), not here"

PLATFORMS: dict[Platform, PlatformSpec] = {
    Platform.CISCO_IOS: PlatformSpec(
        platform=Platform.CISCO_IOS,
        template="cisco_ios.j2",
        driver=("napalm", "ios"),
        style="ios",
        owned={
            "base": (r"^hostname ",),
            "RTR-1": (r"^line vty .* > transport input ", r"^ip ssh version "),
            "RTR-2": (r"^snmp-server community ", r"^snmp-server group "),
            "RTR-3": (r"^ntp server ",),
            "RTR-4": (r"^logging host ", r"^logging trap "),
            "RTR-5": (r"^ip access-list standard CTFLEET-MGMT", r"^line vty .* > access-class "),
            "RTR-6": (r"^banner login ",),
        },
        ordered_blocks=(r"^ip access-list (standard|extended) CTFLEET-",),
        observers={
            "RTR-1": InNorm(),
            "RTR-2": Classify(((r"^snmp-server community ", "v2c"),
                               (r"^snmp-server group \S+ v3 priv", "v3-authpriv"),
                               (r"^snmp-server group \S+ v3 auth", "v3-authnopriv")), default="none"),
            "RTR-3": Count(r"^ntp server "),
            "RTR-4": InNorm(),
            "RTR-5": InNorm(),
            "RTR-6": InNorm(),
            "RTR-7": BackupAge(),
            "SYS-9": LiveState("show ntp status", ((r"Clock is synchronized", True), (r"Clock is unsynchronized", False))),
        },
        revert="configure replace with an IOS archive revert timer (configure confirm to keep)",
        single_valued=("hostname ", "enable secret ", "enable password "),
        revert_step_seconds=60,
    ),
    Platform.FRR: PlatformSpec(
        platform=Platform.FRR,
        template="frr.j2",
        driver=("vtysh", None),
        style="frr",
        owned={
            "RTR-1": (r"^access-list CTFLEET-NO-VTY ", r"^line vty > access-class "),
            "RTR-4": (r"^log syslog",),
        },
        observers={
            "RTR-1": InNorm(),
            "RTR-2": Unobservable(_HOST.format(what="snmpd (FRR only speaks AgentX to it)")),
            "RTR-3": Unobservable(_HOST.format(what="NTP client (chrony)")),
            "RTR-4": Prerequisite(r"^log syslog", _HOST.format(what="syslog daemon forwarding FRR's log to the regional collector")),
            "RTR-5": Unobservable(_HOST.format(what="firewall and sshd, which restrict who reaches vtysh")),
            "RTR-6": Unobservable(_HOST.format(what="sshd login banner (FRR's motd is only for its telnet vty)")),
            "RTR-7": BackupAge(),
            "SYS-9": Unobservable(_HOST.format(what="NTP client (chrony)")),
        },
        revert="a timer on the router host (ctfleet-guard) restores the saved configuration with frr-reload unless confirmed",
        single_valued=("password ", "enable password ", "hostname ", "banner motd "),
    ),
}


def supported() -> list[str]:
    return sorted(p.value for p in PLATFORMS)


def platform_spec(platform: Platform | str, where: str = "registry") -> PlatformSpec:
    """The spec of a router platform, or an error naming the supported ones.

    >>> platform_spec("huawei_vrp")
    Traceback (most recent call last):
    ...
    ctfleet.core.errors.InputError: registry: platform: no router support for 'huawei_vrp' (valid: one of cisco_ios, frr)
    """
    value = platform.value if isinstance(platform, Platform) else str(platform)
    try:
        return PLATFORMS[Platform(value)]
    except (ValueError, KeyError):
        raise InputError(Problem(where, f"no router support for {value!r}", key="platform", valid=one_of(supported()))) from None
