"""A real Prometheus with some history, fed by the real exporter: for tests and previews.

The collectors' demo (:mod:`ctfleet.lab.monitoring_demo`) sweeps a simulated fleet over SNMP,
which takes minutes for the nation. The report and the dashboards only need what
Prometheus stores, so here the *sweeps* are made up (deterministically, per device,
with a roll-out that improves step after step and regions that differ), while
everything after them is the production path: :func:`build_snapshot` judges them
against each CT's norms, :class:`CtfleetCollector` serves them on loopback, a real
Prometheus scrapes them and evaluates ``monitors/rules/*.yml``. Each step is held for a
few scrapes, so range queries see a trend.

    >>> # with feed_prometheus(project, workdir, steps=5) as fed:
    >>> #     fed.prometheus.url  -> "http://127.0.0.1:PORT"; fed.prometheus.query("ctfleet:cts:count")
"""

from __future__ import annotations

import copy
import random
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from prometheus_client import CollectorRegistry

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.core.evaluate import expected_pairs
from ctfleet.core.models import Role
from ctfleet.core.registry import Registry
from ctfleet.core.waivers import Waiver, Waivers
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.http import serve
from ctfleet.monitors.sweep import DevicePoll, Interface, Probe, Sweep
from ctfleet.lab.kube_state import ksm_scrape_configs, serve_kube_state, simulated_clusters
from ctfleet.lab.procs.prometheus import Prometheus, prometheus_config

# Typical round trips per uplink type (seconds): VSAT is geostationary.
RTT_BY_LINK = {"fibre": 0.012, "adsl": 0.035, "4g": 0.06, "vsat": 0.62, "none": 0.9}


def synthetic_sweep(registry: Registry, step: int, steps: int, seed: int = 7, started: datetime | None = None,
                    interval: float = 60.0) -> Sweep:
    """What a collector could have seen at roll-out ``step`` of ``steps`` (made up, reproducible).

    Each router draws a fixed quality; its region shifts it (so the map differs by
    region); as steps advance, more routers answer, fewer links lose packets and
    some v2c agents are moved to v3.
    """
    started = started or datetime.now(timezone.utc)
    progress = step / max(steps - 1, 1)  # 0 .. 1
    sweep = Sweep(started=started, ended=started + timedelta(seconds=5), interval_seconds=interval, shard="all")
    for d in registry.devices.values():
        if d.role != Role.ROUTER or d.snmp_version == "none":
            continue
        site = registry.sites[d.site_code]
        ct = registry.cts[site.ct_code]
        rnd = random.Random(f"{seed}:{d.hostname}")
        region_shift = (int(ct.region_code) * 7 % 12) / 12 * 0.35  # 0 .. 0.35, fixed per region
        quality = rnd.random() * 0.75 + 0.25 - region_shift + 0.25 * progress
        link = site.uplink.type.value
        if quality < 0.18 or link == "none":
            sweep.polls[d.hostname] = DevicePoll(d.hostname, ok=False, error="timeout", detail="no answer")
            sweep.probes[d.hostname] = Probe(d.hostname, sent=3, rtts=(), method="snmp")
            continue
        version = d.snmp_version
        if version == "v2c" and rnd.random() < progress * 0.5:
            version = "v3"  # the roll-out fixes some agents
        uplink_up = quality >= 0.24
        speed = max(int(site.uplink.bandwidth_mbps), 1)
        octets = int(speed * 125_000 * interval * (0.2 + 0.3 * rnd.random()) * (step + 1))
        iface = Interface(index=2, name="Dialer0" if link in ("adsl", "4g") else "GigabitEthernet0/0/0", admin_up=True,
                          oper_up=uplink_up, speed_mbps=speed, in_octets=octets, out_octets=octets // 4, alias="uplink")
        sweep.polls[d.hostname] = DevicePoll(d.hostname, ok=True, version="v3-authpriv" if version == "v3" else "v2c",
                                             sys_name=d.hostname, sys_descr=f"{d.platform.value} (simulated)",
                                             uptime_seconds=86400.0 * (1 + step), interfaces=(iface,), uplink_index=2)
        base = RTT_BY_LINK.get(link, 0.05)
        lossy = quality < 0.45
        rtts = tuple(base * (1 + 0.3 * rnd.random() + (1.5 if quality < 0.35 else 0)) for _ in range(3 if not lossy else 2))
        sweep.probes[d.hostname] = Probe(d.hostname, sent=3, rtts=rtts if uplink_up else (), method="snmp")
    return sweep


#: Controls the collectors' sweep observes; the simulated audits leave them to it (see
#: :func:`synthetic_sweep`). The registry's declarations are not observations: audits
#: observe the backup link, the uplink type and the workstations too.
OBSERVED_ELSEWHERE = {"RTR-2", "LNK-1", "LNK-2", "LNK-3"}
SIMULATED = "simulated (demo data, not a real observation)"


def _source_of(device_role: str | None, control) -> Source:
    if device_role == "router" or control.id in ("LNK-4", "LNK-5"):
        return Source.ROUTER_AUDIT
    if device_role is not None or control.id == "EQP-1":
        return Source.AUDIT
    return Source.STACK if "hosting" in control.applies_to else Source.SNMP


def synthetic_audits(registry: Registry, norms, step: int, steps: int, seed: int = 7,
                     at: datetime | None = None) -> list[ControlResult]:
    """Audits (host playbooks, router audits, stack checks; simulated) that reached a
    growing share of CTs: every applicable pair of an audited CT that the sweep and the
    registry do not cover gets a result, a few of them failing; the other CTs stay
    without, so all three outcomes (meets, failing, not assessed) appear."""
    at = at or datetime.now(timezone.utc)
    progress = step / max(steps - 1, 1)
    out: list[ControlResult] = []
    for ct in registry.cts.values():
        rnd = random.Random(f"{seed}:audit:{ct.code}")
        region_shift = (int(ct.region_code) * 5 % 12) / 12 * 0.4
        if rnd.random() > 0.1 + 0.6 * progress - region_shift:
            continue
        # Most audited CTs are clean; the others fail one to three of their checks, and
        # the roll-out fixes more of them at each step.
        clean = rnd.random() < 0.45 + 0.45 * progress
        roles = {d.hostname: d.role.value for d in registry.devices_of(ct.code)}
        pairs = [(dev, cid) for dev, cid in expected_pairs(ct, registry, norms) if cid not in OBSERVED_ELSEWHERE]
        failing = set() if clean or not pairs else set(rnd.sample(range(len(pairs)), min(len(pairs), rnd.randint(1, 3))))
        for i, (device, control) in enumerate(pairs):
            # model_construct: made-up results of a known shape; re-validating 100k of them costs seconds.
            out.append(ControlResult.model_construct(
                ct=ct.code, device=device, control=control, status=Status.FAIL if i in failing else Status.PASS,
                source=_source_of(roles.get(device) if device else None, norms.controls[control]), evidence=SIMULATED,
                observed=None, expected=None, waiver_reason=None, observed_at=at))
    return out


def synthetic_inventories(registry: Registry, norms, step: int, steps: int, seed: int = 7,
                          at: datetime | None = None) -> list:
    """Observed inventories (simulated: ``origin="simulated"``, shown so by ``ctfleet
    equipment show``) of the workstations and servers of the CTs :func:`synthetic_audits`
    audited at this step, with the OS the registry declares (Windows 10 fails EQP-3): most at
    their norm, some short of memory, or with a server under its configuration type; a few
    devices not inventoried — so "equipped" in
    the demo is neither 0 nor every CT."""
    from ctfleet.core.inventory import InventoryRecord

    at = at or datetime.now(timezone.utc)
    progress = step / max(steps - 1, 1)
    out = []
    for ct in registry.cts.values():
        rnd = random.Random(f"{seed}:audit:{ct.code}")  # the same CTs as synthetic_audits
        region_shift = (int(ct.region_code) * 5 % 12) / 12 * 0.4
        if rnd.random() > 0.1 + 0.6 * progress - region_shift:
            continue
        hw = random.Random(f"{seed}:inventory:{ct.code}")
        short = hw.random() < 0.35 - 0.2 * progress  # this CT has some under-spec or missing devices
        mem, allowed = norms.value(ct, "EQP-2"), [str(x) for x in norms.value(ct, "EQP-3")]
        oses = [o for o in allowed if o.startswith(("debian-", "ubuntu-"))] or ["debian-12"]
        spec = norms.server_type(ct)
        for d in registry.devices_of(ct.code):
            if d.role == Role.ROUTER:
                continue
            if short and hw.random() < 0.05:
                continue  # not inventoried: not assessed
            os_id = d.os_version if "-" in (d.os_version or "") else hw.choice(oses)  # what the registry declares
            if d.role == Role.WORKSTATION:
                cpus, gib, disk = hw.choice((2, 4, 8)), mem + hw.choice((0, 0, 8)), hw.choice((256, 512))
                if short and hw.random() < 0.15:
                    gib = max(1, mem // 2)  # an old machine
            else:
                cpus, gib, disk = (spec.cpu_count, spec.memory_gib, spec.disk_gib) if spec else (4, 16, 500)
                if short and hw.random() < 0.3:
                    gib = max(1, gib // 2)
            os_name, _, version = os_id.partition("-")
            out.append(InventoryRecord.model_construct(
                record="inventory", ct=ct.code, device=d.hostname, origin="simulated", cpu_count=cpus,
                cpu_model="SIMULATED CPU (demo data)", memory_mib=gib * 1024, disk_gib=float(disk), os=os_name,
                os_version=version, serial=f"SIMULATED-{hw.randrange(10**6):06d}", packages=hw.randint(900, 2400),
                last_boot=at - timedelta(hours=hw.randint(1, 400)), observed_at=at))
    return out


def simulated_waivers(registry: Registry, at: datetime, seed: int = 7) -> Waivers:
    """A few waivers (simulated, labelled so in every field a person reads): disk
    encryption (WS-4) waived for some lot-1 CTs until their workstations are renewed,
    one in ten expiring within 30 days of ``at``."""
    out = []
    for ct in registry.cts.values():
        rnd = random.Random(f"{seed}:waiver:{ct.code}")
        if ct.lot != 1 or rnd.random() > 0.12:
            continue
        days = rnd.randint(5, 25) if rnd.random() < 0.3 else rnd.randint(60, 300)
        out.append(Waiver(ct.code, None, "WS-4", "SIMULATED: workstations without TPM until their renewal",
                          "simulated approver (demo)", (at - timedelta(days=30)).date(), f"SIMULATED-{ct.code}",
                          (at + timedelta(days=days)).date(), "simulated"))
    return Waivers(out)


def with_simulated_waivers(registry: Registry, norms, at: datetime | None = None):
    """The norms with :func:`simulated_waivers` attached (a copy; the project's stay as loaded)."""
    n = copy.copy(norms)
    n.waivers = simulated_waivers(registry, at or datetime.now(timezone.utc))
    return n


def _snapshot(registry: Registry, norms, step: int, steps: int, seed: int, interval: float):
    sweep = synthetic_sweep(registry, step, steps, seed=seed, interval=interval)
    audits = synthetic_audits(registry, norms, step, steps, seed=seed)
    return build_snapshot(registry, norms, sweep, stored=audits, sweeps_total=step + 1)


@dataclass
class Fed:
    prometheus: Prometheus
    exporter_url: str
    norms: object  # the norms the exporter judged with (with the simulated waivers)
    steps: int
    started: float  # unix time when the first step had been scraped
    ended: float  # unix time after the last step was scraped and its rules evaluated


@contextmanager
def feed_prometheus(registry: Registry, norms, root: Path, workdir: Path, steps: int = 5, hold_seconds: float = 4.0,
                    scrape_interval: str = "2s", seed: int = 7) -> Iterator[Fed]:
    """Start exporter + Prometheus (rules of ``root/monitors/rules``), feed ``steps``
    snapshots, yield while both still run; both are stopped on exit, also on failure."""
    norms = with_simulated_waivers(registry, norms)
    exporter = CtfleetCollector()
    reg = CollectorRegistry()
    reg.register(exporter)
    httpd, _ = serve(reg, "127.0.0.1", 0, version=exporter.version)
    exporter_url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    rules = sorted(str(f) for f in (root / "monitors/rules").glob("*.yml"))
    # The clusters' side of "hosted": a simulated kube-state-metrics per cluster (labelled).
    ksm = {name: serve_kube_state(namespaces) for name, namespaces in simulated_clusters(registry, seed=seed).items()}
    cfg = prometheus_config(exporter_url.split("/")[2], rules, scrape_interval=scrape_interval)
    cfg["scrape_configs"] += ksm_scrape_configs({name: addr for name, (_, addr) in ksm.items()}, scrape_interval)
    prom = Prometheus(workdir / "prometheus", cfg)
    try:
        prom.start()
        t0 = time.time()
        snapshot = _snapshot(registry, norms, 0, steps, seed, hold_seconds)
        for step in range(steps):
            exporter.update(snapshot)
            urllib.request.urlopen(exporter_url, timeout=30).read()  # render now, not inside a scrape
            prom.wait_for(f"ctfleet_sweeps_total >= {step + 1}", 60)
            if step == 0:
                t0 = time.time()  # history starts with the first scraped step
            hold_until = time.monotonic() + hold_seconds
            if step + 1 < steps:  # computing the next step is part of the hold
                snapshot = _snapshot(registry, norms, step + 1, steps, seed, hold_seconds)
            time.sleep(max(0.0, hold_until - time.monotonic()))
        # The last step's recording rules are evaluated by now (hold >= evaluation interval).
        prom.wait_for(f"ctfleet:cts:count and on() (max(ctfleet_sweeps_total) >= {steps})", 30)
        # Rule groups are stamped with their scheduled time but written when done: let every
        # evaluation stamped before `ended` finish, so queries at `ended` never change.
        ended = time.time()
        time.sleep(2 * hold_seconds)
        yield Fed(prometheus=prom, exporter_url=exporter_url, norms=norms, steps=steps, started=t0, ended=ended)
    finally:
        prom.stop()
        for srv in [httpd] + [srv for srv, _ in ksm.values()]:
            srv.shutdown()
            srv.server_close()
