"""What the SNMP poller asks, of which devices, with which secrets (no I/O).

* The OIDs of a poll and the :class:`PollSpec` that groups them (a GET of scalars, then
  interface columns walked together).
* :class:`SnmpCreds` (v1/v2c community, or an SNMPv3 USM user) and :class:`Target`
  (one device: address, credentials, the uplink interface its site declares).
* :func:`select_targets`: the devices of a collector shard, by the one sharding rule of
  :mod:`ctfleet.core.sharding` (a CT is never split across shards).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from ctfleet.core.sharding import ct_in_shard, parse_shard
from ctfleet.monitors.ber import oid_from_str

__all__ = [
    "SYS_NAME", "SYS_DESCR", "SYS_UPTIME", "IF_DESCR", "IF_SPEED", "IF_ADMIN_STATUS", "IF_OPER_STATUS",
    "IF_IN_OCTETS", "IF_OUT_OCTETS", "IF_NAME", "IF_HC_IN_OCTETS", "IF_HC_OUT_OCTETS", "IF_HIGH_SPEED",
    "IF_ALIAS", "IF_COLUMNS", "SnmpCreds", "Target", "PollSpec", "FULL_SPEC", "BENCH_SPEC", "select_targets",
    "version_label",
]

SYS_DESCR = oid_from_str("1.3.6.1.2.1.1.1.0")
SYS_UPTIME = oid_from_str("1.3.6.1.2.1.1.3.0")
SYS_NAME = oid_from_str("1.3.6.1.2.1.1.5.0")
IF_DESCR = oid_from_str("1.3.6.1.2.1.2.2.1.2")
IF_SPEED = oid_from_str("1.3.6.1.2.1.2.2.1.5")  # bit/s, Gauge32: where ifHighSpeed is missing
IF_ADMIN_STATUS = oid_from_str("1.3.6.1.2.1.2.2.1.7")
IF_OPER_STATUS = oid_from_str("1.3.6.1.2.1.2.2.1.8")
IF_IN_OCTETS = oid_from_str("1.3.6.1.2.1.2.2.1.10")  # Counter32: where ifHCInOctets is missing
IF_OUT_OCTETS = oid_from_str("1.3.6.1.2.1.2.2.1.16")
IF_NAME = oid_from_str("1.3.6.1.2.1.31.1.1.1.1")
IF_HC_IN_OCTETS = oid_from_str("1.3.6.1.2.1.31.1.1.1.6")
IF_HC_OUT_OCTETS = oid_from_str("1.3.6.1.2.1.31.1.1.1.10")
IF_HIGH_SPEED = oid_from_str("1.3.6.1.2.1.31.1.1.1.15")
IF_ALIAS = oid_from_str("1.3.6.1.2.1.31.1.1.1.18")
IF_COLUMNS = (IF_DESCR, IF_SPEED, IF_ADMIN_STATUS, IF_OPER_STATUS, IF_IN_OCTETS, IF_OUT_OCTETS, IF_NAME,
              IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED, IF_ALIAS)


@dataclass(frozen=True)
class SnmpCreds:
    """The secrets to talk to one device. ``auth_key``/``priv_key`` are the USM
    passwords (HMAC-SHA-96 / AES-128), as in the simulated fleet's secret files;
    ``community`` serves v1 and v2c."""

    version: Literal["v1", "v2c", "v3"]
    community: str = ""
    user: str = ""
    auth_key: str = ""
    priv_key: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"SnmpCreds(version={self.version!r}, user={self.user!r}, community=***, auth_key=***, priv_key=***)"

    __str__ = __repr__

    @classmethod
    def from_secret(cls, version: str, text: str) -> "SnmpCreds":
        """From the value behind a credentials reference: a JSON object with ``user``,
        ``auth_key``, ``priv_key`` and/or ``community`` (the simulated fleet's format),
        or, for v1/v2c only, the bare community string."""
        if version not in ("v1", "v2c", "v3"):
            raise ValueError(f"SNMP version {version!r} is not polled (v1, v2c or v3)")
        text = text.strip()
        data: Any = None
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                raise ValueError("SNMP credentials look like JSON but do not parse (value not shown)") from None
        if isinstance(data, dict):
            creds = cls(version, community=str(data.get("community") or ""), user=str(data.get("user") or ""),  # type: ignore[arg-type]
                        auth_key=str(data.get("auth_key") or data.get("auth_password") or ""),
                        priv_key=str(data.get("priv_key") or data.get("priv_password") or ""))
        elif version in ("v1", "v2c"):
            creds = cls(version, community=text)  # type: ignore[arg-type]
        else:
            raise ValueError("SNMPv3 credentials must be a JSON object with user, auth_key and priv_key")
        if version in ("v1", "v2c") and not creds.community:
            raise ValueError(f"SNMP{version} credentials carry no community")
        if version == "v3" and not (creds.user and len(creds.auth_key) >= 8 and len(creds.priv_key) >= 8):
            raise ValueError("SNMPv3 credentials need user, auth_key and priv_key (passwords of 8+ characters)")
        return creds


def version_label(creds_version: str) -> str:
    """The ``version`` a poll reports (and RTR-2 judges): v3-authpriv, v2c or v1."""
    return "v3-authpriv" if creds_version == "v3" else creds_version


@dataclass(frozen=True)
class Target:
    """One device to poll. ``uplink``: the site's declared uplink interface
    (``index:N``, ``name:NAME`` or ``description:REGEX``, see
    :data:`ctfleet.core.models.UPLINK_INTERFACE_FORMS`), None to let the heuristic choose."""

    hostname: str
    host: str  # IP address (no name resolution on the hot path)
    creds: SnmpCreds
    port: int = 161
    uplink: str | None = None


@dataclass(frozen=True)
class PollSpec:
    """What to ask each device: scalars in one GET, then columns walked together."""

    get: tuple = (SYS_NAME, SYS_DESCR, SYS_UPTIME)
    columns: tuple = IF_COLUMNS
    max_repetitions: int = 10


FULL_SPEC = PollSpec()
# The benchmark's load, as in the measurements: GET sysUpTime+sysDescr, GETBULK
# ifOperStatus+ifHCInOctets.
BENCH_SPEC = PollSpec(get=(SYS_UPTIME, SYS_DESCR), columns=(IF_OPER_STATUS, IF_HC_IN_OCTETS),
                      max_repetitions=10)


def select_targets(registry, shard: str = "all") -> list:
    """Devices this collector polls: routers, and servers that expose SNMP, with a
    management address, whose CT is in the shard. Sorted by hostname."""
    spec = parse_shard(shard)
    out = []
    for d in registry.devices.values():
        role = getattr(d.role, "value", d.role)
        if role not in ("router", "server") or d.snmp_version == "none" or d.mgmt_address is None:
            continue
        if spec[0] != "all":
            site = registry.sites.get(d.site_code)
            ct = registry.cts.get(site.ct_code) if site else None
            if ct is None or not ct_in_shard(ct.code, ct.region_code, spec):
                continue
        out.append(d)
    out.sort(key=lambda d: d.hostname)
    return out
