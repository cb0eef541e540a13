"""Observed inventory: what a workstation or server actually has, and "equipped" judged from it.

An :class:`InventoryRecord` is one device's hardware and software facts at one audit —
what GLPI's agent or osquery report: CPU (count and model), memory, root disk, OS and
version, serial number, installed package count, last boot. The audit mode of the
baseline role collects them read-only from Ansible's facts (:func:`from_ansible_facts`)
and they travel with the results batch (``ctfleet.results.batch``). A fact that cannot be
seen (a container has no DMI serial: Ansible says ``NA``) is ``None`` and shown as
"unknown" — never invented.

"Equipped" is judged from these observations against the CT's norms
(:func:`judge_device`, :func:`judge_ct`):

* a **workstation** meets its specification when its memory is at least EQP-2 (GiB,
  rounded to the nearest GiB: an 8 GiB machine shows ~7.7 GiB to the kernel) and its OS
  is one of EQP-3; it counts toward EQP-1 (workstations per CT) only then. With no
  inventory, or a fact missing, it is *not assessed* and does not count;
* a **server** meets EQP-4's configuration type (``small``, ``standard``, ``large``),
  whose CPU/memory/disk minimums are norm data (``server_types`` in the norm layers,
  resolved like every norm, :meth:`ctfleet.core.norms.NormSet.server_type`); ``none``
  asks for no server.

A CT is equipped when its router was seen, it has the workstations EQP-1 asks for that
meet their specification, and — when it hosts its own server (tier ``own``) — a server
meeting its configuration type. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

#: What an inventory record's ``origin`` says: observed by an audit, or made up by the demo.
Origin = Literal["audit", "simulated"]


class InventoryRecord(BaseModel):
    """One device's observed hardware and software facts.

    >>> r = InventoryRecord(ct="04.161.01.03", device="th01", memory_mib=7890, os="debian", os_version="12",
    ...                     observed_at="2026-12-01T08:00:00Z")
    >>> r.memory_gib, r.os_id, r.serial
    (8, 'debian-12', None)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: Literal["inventory"] = "inventory"  # tells a batch line from a control result
    ct: str = Field(min_length=1, max_length=32)
    device: str = Field(min_length=1, max_length=128)
    origin: Origin = "audit"
    cpu_count: int | None = Field(default=None, ge=0, le=4096)
    cpu_model: str | None = Field(default=None, max_length=200)
    memory_mib: int | None = Field(default=None, ge=0, le=2**30)
    disk_gib: float | None = Field(default=None, ge=0, le=2**20)  # size of the root file system
    os: str | None = Field(default=None, max_length=64)  # distribution, lower case: debian, ubuntu
    os_version: str | None = Field(default=None, max_length=64)  # 12, 24.04
    serial: str | None = Field(default=None, max_length=128)  # None: not observable (container, VM)
    packages: int | None = Field(default=None, ge=0, le=10**6)
    last_boot: datetime | None = None
    observed_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def memory_gib(self) -> int | None:
        """Memory in whole GiB, rounded to the nearest (the kernel reserves part of the installed memory)."""
        return None if self.memory_mib is None else int(self.memory_mib / 1024 + 0.5)

    @property
    def os_id(self) -> str | None:
        """``<distribution>-<version>`` as EQP-3 lists them (debian-12, ubuntu-24.04)."""
        if not self.os or not self.os_version:
            return None
        return f"{self.os}-{self.os_version}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.ct, self.device)


_NA = {"", "na", "n/a", "none", "not specified", "to be filled by o.e.m.", "default string", "0", "system serial number"}


def _known(v: Any) -> str | None:
    """A DMI-style fact, or None when Ansible (or the firmware) says it does not know."""
    if v is None:
        return None
    s = str(v).strip()
    return None if s.lower() in _NA else s


def from_ansible_facts(facts: dict[str, Any], ct: str, device: str, packages: int | None = None,
                       observed_at: datetime | None = None) -> InventoryRecord:
    """An inventory record from ``ansible_facts`` (gathered with the ``hardware`` subset).

    >>> r = from_ansible_facts({"processor_vcpus": 4, "processor": ["0", "GenuineIntel", "Intel(R) Xeon(R)"],
    ...     "memtotal_mb": 15921, "distribution": "Debian", "distribution_major_version": "12",
    ...     "distribution_version": "12.8", "product_serial": "NA", "uptime_seconds": 3600,
    ...     "mounts": [{"mount": "/", "size_total": 53687091200}]}, "04.161.01.03", "th01", packages=412,
    ...     observed_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc))
    >>> r.cpu_count, r.cpu_model, r.memory_gib, r.disk_gib, r.os_id, r.serial, r.packages, r.last_boot.isoformat()
    (4, 'Intel(R) Xeon(R)', 16, 50.0, 'debian-12', None, 412, '2026-12-01T07:00:00+00:00')
    """
    f = {k[8:] if k.startswith("ansible_") else k: v for k, v in (facts or {}).items()}
    when = observed_at or datetime.now(timezone.utc)
    dist = _known(f.get("distribution"))
    os_name = dist.lower() if dist else None
    # Debian's release is its major version (12); Ubuntu's is year.month (24.04).
    version = _known(f.get("distribution_major_version") if os_name == "debian" else f.get("distribution_version"))
    cpus = f.get("processor_vcpus") or f.get("processor_count")
    proc = f.get("processor") or []
    model = next((str(p) for p in reversed(proc) if isinstance(p, str) and not p.isdigit() and "Genuine" not in p
                  and "Authentic" not in p), None) if isinstance(proc, list) else None
    root = next((m for m in f.get("mounts") or [] if isinstance(m, dict) and m.get("mount") == "/"), None)
    disk = round(root["size_total"] / 2**30, 1) if root and isinstance(root.get("size_total"), (int, float)) else None
    up = f.get("uptime_seconds")
    boot = (when - timedelta(seconds=int(up))).replace(microsecond=0) if isinstance(up, (int, float)) and up >= 0 else None
    mem = f.get("memtotal_mb")
    return InventoryRecord(ct=ct, device=device, cpu_count=int(cpus) if isinstance(cpus, int) else None,
                           cpu_model=model[:200] if model else None,
                           memory_mib=int(mem) if isinstance(mem, (int, float)) else None, disk_gib=disk,
                           os=os_name, os_version=version, serial=_known(f.get("product_serial")),
                           packages=packages, last_boot=boot, observed_at=when)


# ----------------------------------------------------------------------------- judgement
class Verdict(str, Enum):
    AT_SPEC = "at_spec"
    UNDER_SPEC = "under_spec"
    NOT_ASSESSED = "not_assessed"


@dataclass(frozen=True)
class ServerSpec:
    """What a server configuration type asks for (``server_types`` in the norms)."""

    name: str
    cpu_count: int
    memory_gib: int
    disk_gib: int
    origin: str = ""  # file:line of the layer that set it


@dataclass(frozen=True)
class Check:
    """One fact of a device compared with its norm."""

    fact: str  # memory_gib, os, cpu_count, disk_gib
    observed: Any
    expected: Any
    verdict: Verdict


@dataclass(frozen=True)
class DeviceJudgement:
    device: str
    role: str
    verdict: Verdict
    checks: tuple[Check, ...] = ()
    record: InventoryRecord | None = None
    why: str = ""


def _check(fact: str, observed, expected, ok) -> Check:
    if observed is None:
        return Check(fact, None, expected, Verdict.NOT_ASSESSED)
    return Check(fact, observed, expected, Verdict.AT_SPEC if ok(observed) else Verdict.UNDER_SPEC)


def _overall(checks: Iterable[Check]) -> Verdict:
    vs = {c.verdict for c in checks}
    if Verdict.UNDER_SPEC in vs:
        return Verdict.UNDER_SPEC
    if Verdict.NOT_ASSESSED in vs or not vs:
        return Verdict.NOT_ASSESSED
    return Verdict.AT_SPEC


def judge_workstation(device: str, record: InventoryRecord | None, min_memory_gib: int, os_allowed: list) -> DeviceJudgement:
    """EQP-2 (memory) and EQP-3 (OS) against the observed record.

    >>> r = InventoryRecord(ct="c", device="th01", memory_mib=4000, os="debian", os_version="12")
    >>> judge_workstation("th01", r, 8, ["debian-12"]).verdict.value
    'under_spec'
    >>> judge_workstation("th01", None, 8, ["debian-12"]).verdict.value
    'not_assessed'
    """
    if record is None:
        return DeviceJudgement(device, "workstation", Verdict.NOT_ASSESSED, why="no inventory observed")
    allowed = {str(x) for x in os_allowed}
    checks = (_check("memory_gib", record.memory_gib, min_memory_gib, lambda v: v >= min_memory_gib),
              _check("os", record.os_id, sorted(allowed), lambda v: v in allowed))
    return DeviceJudgement(device, "workstation", _overall(checks), checks, record)


def judge_server(device: str, record: InventoryRecord | None, spec: ServerSpec | None) -> DeviceJudgement:
    """EQP-4: CPU count, memory and root disk at least the configuration type's.

    >>> r = InventoryRecord(ct="c", device="srv", cpu_count=2, memory_mib=8192, disk_gib=100)
    >>> judge_server("srv", r, ServerSpec("small", 2, 8, 100)).verdict.value
    'at_spec'
    >>> judge_server("srv", r, ServerSpec("standard", 4, 16, 500)).verdict.value
    'under_spec'
    """
    if spec is None:
        return DeviceJudgement(device, "server", Verdict.AT_SPEC, why="configuration type none: no server asked for", record=record)
    if record is None:
        return DeviceJudgement(device, "server", Verdict.NOT_ASSESSED, why="no inventory observed")
    checks = (_check("cpu_count", record.cpu_count, spec.cpu_count, lambda v: v >= spec.cpu_count),
              _check("memory_gib", record.memory_gib, spec.memory_gib, lambda v: v >= spec.memory_gib),
              _check("disk_gib", record.disk_gib, spec.disk_gib, lambda v: v >= spec.disk_gib))
    return DeviceJudgement(device, "server", _overall(checks), checks, record, why=f"configuration type {spec.name}")


@dataclass(frozen=True)
class CTEquipment:
    """A CT's equipment judged from observation."""

    ct: str
    equipped: bool
    workstations_needed: int
    workstations_at_spec: int
    server_needed: str  # EQP-4's configuration type (none, small, standard, large) or "" when not own-hosted
    server_ok: bool
    router_seen: bool
    devices: tuple[DeviceJudgement, ...] = field(default_factory=tuple)

    @property
    def not_assessed(self) -> int:
        return sum(1 for d in self.devices if d.verdict == Verdict.NOT_ASSESSED)


def judge_ct(ct: str, workstations: list[str], servers: list[str], inventories: dict[str, InventoryRecord],
             need_workstations: int, min_memory_gib: int, os_allowed: list, server_spec: ServerSpec | None,
             needs_server: bool, router_seen: bool) -> CTEquipment:
    """Judge every workstation and server of a CT; ``inventories`` maps hostname -> newest record.

    >>> inv = {"w1": InventoryRecord(ct="c", device="w1", memory_mib=8192, os="debian", os_version="12"),
    ...        "w2": InventoryRecord(ct="c", device="w2", memory_mib=2048, os="debian", os_version="12")}
    >>> e = judge_ct("c", ["w1", "w2", "w3"], [], inv, 1, 8, ["debian-12"], None, False, True)
    >>> e.equipped, e.workstations_at_spec, e.not_assessed
    (True, 1, 1)
    """
    devs = [judge_workstation(w, inventories.get(w), min_memory_gib, os_allowed) for w in workstations]
    at_spec = sum(1 for d in devs if d.verdict == Verdict.AT_SPEC)
    server_ok = True
    if needs_server:
        sj = [judge_server(s, inventories.get(s), server_spec) for s in servers]
        devs += sj
        server_ok = server_spec is None or any(d.verdict == Verdict.AT_SPEC for d in sj)
    return CTEquipment(ct=ct, equipped=router_seen and server_ok and at_spec >= need_workstations,
                       workstations_needed=need_workstations, workstations_at_spec=at_spec,
                       server_needed=(server_spec.name if server_spec else "none") if needs_server else "",
                       server_ok=server_ok, router_seen=router_seen, devices=tuple(devs))


def newest(records: Iterable[InventoryRecord]) -> dict[tuple[str, str], InventoryRecord]:
    """The newest record per (CT, device)."""
    out: dict[tuple[str, str], InventoryRecord] = {}
    for r in records:
        p = out.get(r.key)
        if p is None or r.observed_at >= p.observed_at:
            out[r.key] = r
    return out


def judge_equipment(ct, registry, norms, seen, inventories=None) -> CTEquipment:
    """A registry CT's :class:`CTEquipment`: its devices (registry), its norms (EQP-1..4 and
    the server configuration type), ``seen`` (anything answering ``hostname in seen``: the
    router was observed) and ``inventories`` (hostname -> newest record)."""
    from ctfleet.core.models import Role, Tier

    devices = registry.devices_of(ct.code)
    router_seen = any(d.hostname in seen for d in devices if d.role == Role.ROUTER)
    return judge_ct(ct.code, [d.hostname for d in devices if d.role == Role.WORKSTATION],
                    [d.hostname for d in devices if d.role == Role.SERVER], inventories or {},
                    need_workstations=norms.value(ct, "EQP-1"), min_memory_gib=norms.value(ct, "EQP-2"),
                    os_allowed=norms.value(ct, "EQP-3"), server_spec=norms.server_type(ct),
                    needs_server=Tier.OWN in ct.tiers, router_seen=router_seen)
