"""What each simulated SNMP agent says and how its link behaves (pure, deterministic).

From the registry and a seed this module builds one :class:`DeviceProfile` per router
(every device with an SNMP version and a management address): the system group
(sysName = hostname, a sysDescr in the text of its platform), an interface table with
the uplink identifiable by the collector (ifAlias ``UPLINK <type> ...`` and a fixed
ifName per link type such as ``Dialer0`` or ``Tunnel-VSAT``), the uplink's ifHighSpeed
equal to the site's declared bandwidth, counters that grow at a chosen utilisation,
and the faults and link figures the relay emulates:

* ``dead``: no agent answers (every site with link type ``none`` is dead: it has no
  link to the NOC);
* ``slow``: answers, but several seconds late (past any sane per-device timeout);
* ``truncated``: answers with a datagram cut short (a malformed response);
* link latency and loss by link type (fibre 5-20 ms, ADSL 30-60, 4G 50-120, VSAT
  600-750 ms of round trip; loss 0 on fibre up to a few percent on VSAT).

Every choice is a function of ``(seed, hostname)`` only, so a device gets the same
profile whether the whole country or one region is simulated. SNMP secrets are not
derived from the (public) fleet seed: :func:`make_credentials` takes a separate secret
seed, random per run unless a caller passes one, and the files holding them are only
ever written under the runtime work directory (mode 0600).

Nothing here does network I/O; :mod:`ctfleet.lab.simfleet.run` starts the agents.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal, Mapping, Sequence

from ctfleet.core.models import Device, LinkType, Platform

Fault = Literal["ok", "dead", "slow", "truncated"]

# Shares of the simulated fleet with each fault (per device, independent of the subset).
DEAD_SHARE = 0.04
SLOW_SHARE = 0.03
TRUNCATED_SHARE = 0.005
UPLINK_DOWN_SHARE = 0.03  # answering devices whose uplink is oper down
SATURATED_SHARE = 0.05  # uplinks above the LNK-6 saturation threshold
SLOW_DELAY_S = (4.0, 8.0)  # extra response delay of a slow device

# Round trip (ms) and round-trip loss ratio ranges by link type.
LINK_RTT_MS: dict[str, tuple[float, float]] = {
    "fibre": (5.0, 20.0),
    "adsl": (30.0, 60.0),
    "4g": (50.0, 120.0),
    "vsat": (600.0, 750.0),
    "none": (0.0, 0.0),
}
LINK_LOSS: dict[str, tuple[float, float]] = {
    "fibre": (0.0, 0.0),
    "adsl": (0.0, 0.005),
    "4g": (0.0, 0.01),
    "vsat": (0.005, 0.03),
    "none": (1.0, 1.0),
}
JITTER_SHARE = 0.08  # standard deviation of a packet's round trip, share of the mean

# Numeric OIDs (Debian ships no MIBs; the collectors use numeric OIDs too).
SYS = "1.3.6.1.2.1.1"
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME = f"{SYS}.1.0", f"{SYS}.2.0", f"{SYS}.3.0"
SYS_CONTACT, SYS_NAME, SYS_LOCATION, SYS_SERVICES = f"{SYS}.4.0", f"{SYS}.5.0", f"{SYS}.6.0", f"{SYS}.7.0"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_ENTRY = "1.3.6.1.2.1.2.2.1"  # .C.ifIndex
IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"  # .C.ifIndex
IF_DESCR, IF_TYPE, IF_ADMIN, IF_OPER = f"{IF_ENTRY}.2", f"{IF_ENTRY}.3", f"{IF_ENTRY}.7", f"{IF_ENTRY}.8"
IF_NAME, IF_HC_IN, IF_HC_OUT = f"{IFX_ENTRY}.1", f"{IFX_ENTRY}.6", f"{IFX_ENTRY}.10"
IF_HIGH_SPEED, IF_ALIAS = f"{IFX_ENTRY}.15", f"{IFX_ENTRY}.18"

# snmprec type tags.
INTEGER, OCTETS, OID, IPADDRESS, COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = 2, 4, 6, 64, 65, 66, 67, 70

# IANAifType values used here.
IFT_OTHER, IFT_ETHERNET, IFT_PPP, IFT_LOOPBACK, IFT_PROP_P2P_SERIAL, IFT_TUNNEL, IFT_BRIDGE = 1, 6, 23, 24, 22, 131, 209
IFT_L2VLAN = 135


@dataclass(frozen=True)
class Interface:
    index: int
    descr: str
    name: str
    if_type: int
    speed_mbps: int  # ifHighSpeed
    admin_up: bool = True
    oper_up: bool = True
    alias: str = ""
    mtu: int = 1500
    in_octets: int = 0  # ifHCInOctets when the agent started
    out_octets: int = 0
    in_rate: float = 0.0  # bytes per second the counters grow by while up
    out_rate: float = 0.0
    mac: str = ""  # 12 hex digits, empty for none


@dataclass(frozen=True)
class LinkProfile:
    """The emulated link between the NOC and the device."""

    type: str
    bandwidth_mbps: float
    rtt_ms: float  # mean round trip
    jitter_ms: float  # standard deviation of a packet's round trip
    loss: float  # round-trip loss ratio (0-1)


@dataclass(frozen=True)
class DeviceProfile:
    hostname: str
    address: str  # the management address the agent answers on
    site_code: str
    ct_code: str
    region: str
    role: str
    platform: str
    os_version: str
    snmp_version: Literal["v3", "v2c"]
    credentials_ref: str  # the registry's reference; devices sharing it share secrets
    sys_descr: str
    sys_object_id: str
    sys_uptime_ticks: int  # hundredths of a second, when the agent starts
    sys_contact: str
    sys_location: str
    interfaces: tuple[Interface, ...]
    uplink_index: int
    link: LinkProfile
    fault: Fault = "ok"
    slow_delay_s: float = 0.0
    uplink_utilisation: float = 0.0  # of the declared bandwidth, inbound

    @property
    def uplink(self) -> Interface:
        return next(i for i in self.interfaces if i.index == self.uplink_index)

    @property
    def answers(self) -> bool:
        """True if an SNMP request can get a well-formed answer in time."""
        return self.fault == "ok"


@dataclass(frozen=True)
class SnmpCredentials:
    """Fake demo secrets for one credentials reference (e.g. ``env:CTFLEET_SNMP_01``).

    One USM user for the v3 devices (HMAC-SHA-96 + AES-128-CFB) and one community for
    the v2c devices behind the same reference, as a region's routers would share them.
    """

    ref: str
    user: str
    auth_key: str
    priv_key: str
    community: str
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"

    def secret_text(self) -> str:
        """The value to put behind the reference (e.g. in the environment variable)."""
        return json.dumps(asdict(self) | {"ref": None}, sort_keys=True)

    def __repr__(self) -> str:  # never print the keys by accident
        return f"SnmpCredentials(ref={self.ref!r}, user={self.user!r}, auth_key=***, priv_key=***, community=***)"


# --------------------------------------------------------------------------- building


def _rng(seed: int | str, *parts: str) -> random.Random:
    # random.Random(str) hashes the string with SHA-512: stable across runs and machines.
    return random.Random(":".join([str(seed), *parts]))


def _unit(seed: int | str, *parts: str) -> float:
    """A deterministic number in [0, 1) for a (seed, parts) pair."""
    h = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def snmp_devices(registry) -> list[Device]:
    """The registry's devices that speak SNMP (routers today), in hostname order."""
    return sorted((d for d in registry.devices.values()
                   if d.snmp_version in ("v3", "v2c") and d.mgmt_address is not None
                   and isinstance(d.mgmt_address, ipaddress.IPv4Address)),
                  key=lambda d: d.hostname)


def build_profiles(registry, seed: int, devices: Iterable[Device] | None = None,
                   region: str | None = None, limit: int | None = None) -> list[DeviceProfile]:
    """Profiles of the SNMP devices of ``registry`` (optionally one region, the first
    ``limit`` in hostname order), deterministic in ``seed``."""
    chosen = list(devices) if devices is not None else snmp_devices(registry)
    out = []
    for d in chosen:
        site = registry.sites[d.site_code]
        ct = registry.cts[site.ct_code]
        if region and ct.region_code != region:
            continue
        out.append(build_profile(d, site, ct, seed))
        if limit is not None and len(out) >= limit:
            break
    return out


def build_profile(device: Device, site, ct, seed: int) -> DeviceProfile:
    host = device.hostname
    rng = _rng(seed, "profile", host)
    link_type = site.uplink.type.value
    bw = float(site.uplink.bandwidth_mbps)

    # Faults: one draw per device, independent of which other devices are simulated.
    u = _unit(seed, "fault", host)
    fault: Fault = "ok"
    if link_type == LinkType.NONE.value or u < DEAD_SHARE:
        fault = "dead"
    elif u < DEAD_SHARE + SLOW_SHARE:
        fault = "slow"
    elif u < DEAD_SHARE + SLOW_SHARE + TRUNCATED_SHARE:
        fault = "truncated"
    slow_delay = round(rng.uniform(*SLOW_DELAY_S), 3) if fault == "slow" else 0.0

    lo, hi = LINK_RTT_MS[link_type]
    rtt = round(rng.uniform(lo, hi), 1)
    llo, lhi = LINK_LOSS[link_type]
    loss = round(rng.uniform(llo, lhi), 4)
    link = LinkProfile(link_type, bw, rtt, round(rtt * JITTER_SHARE, 1), loss)

    uplink_down = link_type == LinkType.NONE.value or _unit(seed, "uplink-down", host) < UPLINK_DOWN_SHARE
    if _unit(seed, "saturated", host) < SATURATED_SHARE:
        util = rng.uniform(0.85, 0.97)
    else:
        util = rng.uniform(0.03, 0.6)
    util = 0.0 if uplink_down else round(util, 3)

    interfaces, uplink_index = _interfaces(device, site, rng, uplink_down, util)
    uptime_days = rng.uniform(0.5, 200.0)
    descr, oid = _sys_descr(device, rng)
    return DeviceProfile(
        hostname=host, address=str(device.mgmt_address), site_code=site.code, ct_code=ct.code,
        region=ct.region_code, role=device.role.value, platform=device.platform.value,
        os_version=device.os_version, snmp_version=device.snmp_version,  # type: ignore[arg-type]
        credentials_ref=str(device.credentials or f"sim:{ct.region_code}"),
        sys_descr=descr, sys_object_id=oid, sys_uptime_ticks=int(uptime_days * 86400 * 100),
        sys_contact=f"NOC DGCT <noc-{ct.region_code}@ctfleet.invalid>",
        sys_location=_ascii(f"{site.name} [{site.code}]"),
        interfaces=interfaces, uplink_index=uplink_index, link=link, fault=fault,
        slow_delay_s=slow_delay, uplink_utilisation=util,
    )


def _ascii(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _version(os_version: str, default: str) -> str:
    m = re.search(r"(\d+(?:\.\d+)*)", os_version or "")
    return m.group(1) if m else default


def _sys_descr(d: Device, rng: random.Random) -> tuple[str, str]:
    """sysDescr and sysObjectID in the text each platform really uses."""
    host = d.hostname
    if d.platform == Platform.CISCO_IOS:
        v = _version(d.os_version, "17.9")
        if int(v.split(".")[0]) >= 16:  # IOS XE
            return (f"Cisco IOS Software [Cupertino], ISR Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
                    f"Version {v}.4a, RELEASE SOFTWARE (fc3)\r\nTechnical Support: http://www.cisco.com/techsupport\r\n"
                    f"Copyright (c) 1986-2023 by Cisco Systems, Inc.\r\nCompiled Fri 20-Oct-23 10:44 by mcpre",
                    "1.3.6.1.4.1.9.1.2068")  # ciscoISR1100
        return (f"Cisco IOS Software, C800 Software (C800-UNIVERSALK9-M), Version {v}(3)M7, RELEASE SOFTWARE (fc2)\r\n"
                f"Technical Support: http://www.cisco.com/techsupport\r\nCopyright (c) 1986-2022 by Cisco Systems, Inc.\r\n"
                f"Compiled Thu 04-Aug-22 12:37 by prod_rel_team", "1.3.6.1.4.1.9.1.1858")  # cisco C891F
    if d.platform == Platform.FRR:
        v = _version(d.os_version, "9.1")
        return (f"Linux {host} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 "
                f"(FRRouting {v})", "1.3.6.1.4.1.8072.3.2.10")  # net-snmp linux
    if d.platform == Platform.MIKROTIK:
        model = rng.choice(["RB4011iGS+", "RB5009UG+S+", "hEX S", "CCR2004-16G-2S+"])
        return f"RouterOS {model}", "1.3.6.1.4.1.14988.1"
    if d.platform == Platform.HUAWEI_VRP:
        return ("Huawei Versatile Routing Platform Software\r\nVRP (R) software, Version 8.180 "
                "(AR6300 V300R019C10SPC300)\r\nCopyright (C) 2012-2020 Huawei Technologies Co., Ltd.\r\nHUAWEI AR6300",
                "1.3.6.1.4.1.2011.2.224.279")
    return f"{d.platform.value} {d.os_version}", "1.3.6.1.4.1.8072.3.2.10"


# Interface names by platform: (uplink name by link type, LAN ports, extra virtual ones).
_UPLINK_NAMES = {
    Platform.CISCO_IOS: {"fibre": ("GigabitEthernet0/0/0", IFT_ETHERNET), "adsl": ("Dialer0", IFT_PPP),
                         "4g": ("Cellular0/1/0", IFT_PROP_P2P_SERIAL), "vsat": ("Tunnel-VSAT", IFT_TUNNEL),
                         "none": ("GigabitEthernet0/0/0", IFT_ETHERNET)},
    Platform.FRR: {"fibre": ("eth0", IFT_ETHERNET), "adsl": ("ppp0", IFT_PPP), "4g": ("wwan0", IFT_PPP),
                   "vsat": ("vsat0", IFT_ETHERNET), "none": ("eth0", IFT_ETHERNET)},
    Platform.MIKROTIK: {"fibre": ("sfp-sfpplus1", IFT_ETHERNET), "adsl": ("pppoe-out1", IFT_PPP),
                        "4g": ("lte1", IFT_PPP), "vsat": ("ether1-vsat", IFT_ETHERNET),
                        "none": ("ether1", IFT_ETHERNET)},
    Platform.HUAWEI_VRP: {"fibre": ("GigabitEthernet0/0/1", IFT_ETHERNET), "adsl": ("Dialer1", IFT_PPP),
                          "4g": ("Cellular0/0/0", IFT_PPP), "vsat": ("Tunnel0/0/1", IFT_TUNNEL),
                          "none": ("GigabitEthernet0/0/1", IFT_ETHERNET)},
}
_BACKUP_NAMES = {
    Platform.CISCO_IOS: {"fibre": ("GigabitEthernet0/0/1", IFT_ETHERNET), "adsl": ("Dialer1", IFT_PPP),
                         "4g": ("Cellular0/2/0", IFT_PROP_P2P_SERIAL), "vsat": ("Tunnel-VSAT2", IFT_TUNNEL)},
    Platform.FRR: {"fibre": ("eth2", IFT_ETHERNET), "adsl": ("ppp1", IFT_PPP), "4g": ("wwan1", IFT_PPP),
                   "vsat": ("vsat1", IFT_ETHERNET)},
    Platform.MIKROTIK: {"fibre": ("sfp2", IFT_ETHERNET), "adsl": ("pppoe-out2", IFT_PPP), "4g": ("lte2", IFT_PPP),
                        "vsat": ("ether8-vsat", IFT_ETHERNET)},
    Platform.HUAWEI_VRP: {"fibre": ("GigabitEthernet0/0/2", IFT_ETHERNET), "adsl": ("Dialer2", IFT_PPP),
                          "4g": ("Cellular0/0/1", IFT_PPP), "vsat": ("Tunnel0/0/2", IFT_TUNNEL)},
}
_LAN_NAMES = {
    Platform.CISCO_IOS: ["GigabitEthernet0/1/0", "GigabitEthernet0/1/1", "GigabitEthernet0/1/2", "Vlan1"],
    Platform.FRR: ["eth1", "eth3", "br0", "eth4"],
    Platform.MIKROTIK: ["ether2", "ether3", "ether4", "bridge"],
    Platform.HUAWEI_VRP: ["GigabitEthernet0/0/3", "GigabitEthernet0/0/4", "Vlanif1", "GigabitEthernet0/0/5"],
}
_LOOPBACK = {Platform.CISCO_IOS: "Loopback0", Platform.FRR: "lo", Platform.MIKROTIK: "lo",
             Platform.HUAWEI_VRP: "LoopBack0"}
_ISP = {"fibre": "MARWAN", "adsl": "IAM ADSL", "4g": "4G", "vsat": "VSAT", "none": "no link"}


def _interfaces(d: Device, site, rng: random.Random, uplink_down: bool,
                util: float) -> tuple[tuple[Interface, ...], int]:
    """3-8 interfaces; the uplink first among those the collector may take for one, so
    it is the one found (``find_uplink`` takes the first whose alias/name says so)."""
    plat = d.platform if d.platform in _UPLINK_NAMES else Platform.FRR
    link_type = site.uplink.type.value
    bw = float(site.uplink.bandwidth_mbps)
    rows: list[dict] = []

    def mac() -> str:
        return "00" + "".join(f"{rng.randrange(256):02x}" for _ in range(5))

    def counters(rate_in: float, rate_out: float) -> dict:
        return dict(in_octets=rng.randrange(10**9, 10**12), out_octets=rng.randrange(10**8, 10**11),
                    in_rate=round(rate_in, 1), out_rate=round(rate_out, 1))

    loop_first = plat in (Platform.FRR, Platform.MIKROTIK)  # Linux and RouterOS number lo first
    if loop_first:
        rows.append(dict(name=_LOOPBACK[plat], if_type=IFT_LOOPBACK, speed_mbps=10 if plat == Platform.FRR else 0,
                         mtu=65536, **counters(0, 0)))

    up_name, up_type = _UPLINK_NAMES[plat][link_type]
    rate_in = util * bw * 1e6 / 8
    rows.append(dict(name=up_name, if_type=up_type, speed_mbps=max(0, round(bw)), mtu=1500 if up_type != IFT_PPP else 1492,
                     alias=f"UPLINK {link_type} {_ISP[link_type]} {bw:g}M", oper_up=not uplink_down,
                     mac=mac() if up_type == IFT_ETHERNET else "", uplink=True,
                     **counters(rate_in, rate_in * rng.uniform(0.15, 0.5))))

    if site.backup is not None and site.backup.type.value in _BACKUP_NAMES[plat]:
        b_type = site.backup.type.value
        b_name, b_iftype = _BACKUP_NAMES[plat][b_type]
        rows.append(dict(name=b_name, if_type=b_iftype, speed_mbps=max(0, round(site.backup.bandwidth_mbps)),
                         alias=f"BACKUP {b_type} {site.backup.bandwidth_mbps:g}M", mac="",
                         **counters(rng.uniform(0, 2000), rng.uniform(0, 800))))

    n_lan = rng.randint(1, 4)
    lan_in = rate_in * 0.4 + rng.uniform(1e3, 5e4)
    for k, name in enumerate(_LAN_NAMES[plat][:n_lan]):
        is_virtual = name.lower().startswith(("vlan", "br", "bridge"))
        oper = k == 0 or is_virtual or rng.random() < 0.6
        rows.append(dict(name=name, if_type=IFT_BRIDGE if name.startswith(("br", "bridge")) else
                         IFT_L2VLAN if name.lower().startswith("vlan") else IFT_ETHERNET,
                         speed_mbps=1000, alias=f"LAN {site.code}" if k == 0 else "", oper_up=oper,
                         admin_up=oper or rng.random() < 0.5, mac=mac(),
                         **counters(lan_in / (k + 1) if oper else 0, rate_in * 0.9 / (k + 1) if oper else 0)))

    if not loop_first:
        rows.append(dict(name=_LOOPBACK[plat], if_type=IFT_LOOPBACK, speed_mbps=8000 if plat == Platform.CISCO_IOS else 0,
                         mtu=1514, **counters(0, 0)))
    if plat == Platform.CISCO_IOS and rng.random() < 0.5:
        rows.append(dict(name="Null0", if_type=IFT_OTHER, speed_mbps=10000, mtu=1500, **counters(0, 0)))
    while len(rows) < 3:  # at least 3 interfaces
        rows.append(dict(name=f"unrouted{len(rows)}", if_type=IFT_OTHER, speed_mbps=0, oper_up=False,
                         admin_up=False, **counters(0, 0)))

    out, uplink_index = [], 0
    start = 1 if plat != Platform.CISCO_IOS else rng.choice([1, 1, 2])
    for i, r in enumerate(rows[:8]):
        index = start + i
        if r.pop("uplink", False):
            uplink_index = index
        name = r.pop("name")
        admin = r.pop("admin_up", True)
        oper = r.pop("oper_up", True) and admin
        out.append(Interface(index=index, descr=name, name=name, admin_up=admin, oper_up=oper, **r))
    return tuple(out), uplink_index


# --------------------------------------------------------------------------- credentials


def _token(secret_seed: bytes, *parts: str, n: int = 24) -> str:
    return hmac.new(secret_seed, "|".join(parts).encode(), hashlib.sha256).hexdigest()[:n]


def make_credentials(refs: Iterable[str], secret_seed: bytes | None = None) -> dict[str, SnmpCredentials]:
    """Fake per-reference SNMP secrets. ``secret_seed=None`` draws a random seed (the
    usual case: secrets of a demo run exist only for that run)."""
    seed = secret_seed if secret_seed is not None else os.urandom(32)
    out = {}
    for ref in sorted(set(refs)):
        tag = re.sub(r"[^a-z0-9]+", "-", ref.split(":", 1)[-1].lower()).strip("-") or "sim"
        out[ref] = SnmpCredentials(
            ref=ref, user=f"ctfleet-{tag}"[:32],
            auth_key=_token(seed, "auth", ref), priv_key=_token(seed, "priv", ref),
            community=f"c{_token(seed, 'community', ref, n=20)}",  # a valid snmpsim data file name
        )
    return out


# --------------------------------------------------------------------------- snmprec


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


def _octets(value: str | bytes) -> tuple[str, str]:
    """snmprec tag suffix and value: plain printable text, else hex ("4x")."""
    raw = value.encode() if isinstance(value, str) else value
    if raw and all(0x20 <= b < 0x7F and b != 0x7C for b in raw):  # printable, no '|'
        return "", raw.decode()
    return "x", raw.hex()


def snmprec_records(p: DeviceProfile) -> list[tuple[str, str, str]]:
    """``(oid, tag, value)`` rows of the device's data file, sorted by OID.

    Uptime and octet counters use snmpsim's ``numeric`` variation module so they grow
    with time from the values here (counters at the interface's rate; the 32-bit ones
    wrap), as a collector computing rates expects."""
    rows: list[tuple[str, str, str]] = []

    def octets(oid: str, value: str | bytes) -> None:
        sfx, v = _octets(value)
        rows.append((oid, f"{OCTETS}{sfx}", v))

    octets(SYS_DESCR, p.sys_descr)
    rows.append((SYS_OBJECT_ID, str(OID), p.sys_object_id))
    rows.append((SYS_UPTIME, f"{TIMETICKS}:numeric", f"initial={p.sys_uptime_ticks},rate=100,max=4294967295,wrap=1"))
    octets(SYS_CONTACT, p.sys_contact)
    octets(SYS_NAME, p.hostname)
    octets(SYS_LOCATION, p.sys_location)
    rows.append((SYS_SERVICES, str(INTEGER), "6"))
    rows.append((IF_NUMBER, str(INTEGER), str(len(p.interfaces))))
    for i in p.interfaces:
        x = i.index
        up = i.oper_up
        rin, rout = (i.in_rate, i.out_rate) if up else (0.0, 0.0)
        rows += [
            (f"{IF_ENTRY}.1.{x}", str(INTEGER), str(x)),
            (f"{IF_ENTRY}.3.{x}", str(INTEGER), str(i.if_type)),
            (f"{IF_ENTRY}.4.{x}", str(INTEGER), str(i.mtu)),
            (f"{IF_ENTRY}.5.{x}", str(GAUGE32), str(min(i.speed_mbps * 1_000_000, 4294967295))),
            (f"{IF_ENTRY}.7.{x}", str(INTEGER), "1" if i.admin_up else "2"),
            (f"{IF_ENTRY}.8.{x}", str(INTEGER), "1" if up else "2"),
            (f"{IF_ENTRY}.9.{x}", str(TIMETICKS), str(max(0, p.sys_uptime_ticks - 100 * (x * 3600)))),
            (f"{IF_ENTRY}.10.{x}", f"{COUNTER32}:numeric",
             f"initial={i.in_octets % 2**32},rate={rin},max=4294967295,wrap=1"),
            (f"{IF_ENTRY}.16.{x}", f"{COUNTER32}:numeric",
             f"initial={i.out_octets % 2**32},rate={rout},max=4294967295,wrap=1"),
            (f"{IFX_ENTRY}.6.{x}", f"{COUNTER64}:numeric", f"initial={i.in_octets},rate={rin}"),
            (f"{IFX_ENTRY}.10.{x}", f"{COUNTER64}:numeric", f"initial={i.out_octets},rate={rout}"),
            (f"{IFX_ENTRY}.15.{x}", str(GAUGE32), str(i.speed_mbps)),
        ]
        octets(f"{IF_ENTRY}.2.{x}", i.descr)
        rows.append((f"{IF_ENTRY}.6.{x}", f"{OCTETS}x", i.mac))
        octets(f"{IFX_ENTRY}.1.{x}", i.name)
        octets(f"{IFX_ENTRY}.18.{x}", i.alias)
    rows.sort(key=lambda r: _oid_key(r[0]))
    return rows


def snmprec_text(p: DeviceProfile) -> str:
    return "".join(f"{oid}|{tag}|{value}\n" for oid, tag, value in snmprec_records(p))


def write_snmprec(p: DeviceProfile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(snmprec_text(p), encoding="ascii")


def manifest(profiles: Sequence[DeviceProfile]) -> list[dict]:
    """A JSON-able description of the simulated fleet (no secrets)."""
    return [asdict(p) for p in profiles]


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def credentials_json(creds: Mapping[str, SnmpCredentials]) -> str:
    return json.dumps({ref: asdict(c) for ref, c in creds.items()}, indent=2, sort_keys=True)


__all__ = [
    "DeviceProfile", "Interface", "LinkProfile", "SnmpCredentials", "Fault",
    "build_profile", "build_profiles", "snmp_devices", "make_credentials",
    "snmprec_records", "snmprec_text", "write_snmprec", "manifest",
]
