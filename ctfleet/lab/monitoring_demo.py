"""The main job on one machine: a simulated fleet, the collectors, a real Prometheus with
the project's rules, and the programme KPIs read back from Prometheus's HTTP API.

Steps (every process is a child in its own process group and is stopped at the end,
also on Ctrl-C or failure):

1. the simulated fleet: snmpsim agents per router behind a relay that emulates each
   link's latency and loss (VSAT ~650 ms, also on a UDP echo port for the probes), with dead, slow and non-compliant devices
   (:mod:`ctfleet.lab.simfleet`), secrets generated for this run only;
2. the collector sweeps it (SNMP v3 authPriv / v2c, smokeping-style UDP echo probe rounds)
   and serves /metrics on loopback;
3. a real Prometheus (Debian package) on loopback with its own data dir scrapes it and
   evaluates ``monitors/rules/*.yml``; Alertmanager receives the alerts;
4. the KPI tables per lot and region are read back from Prometheus and printed.

Host, router and hosting audits cannot be run on simulated routers: the demo writes
simulated audit results, simulated device inventories (what "equipped" is judged from)
and a few simulated waivers into its results store, each labelled as simulated, so every
KPI and all three outcomes show.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from ctfleet.monitors.collector import Collector, CollectorConfig, ProbeConfig, SnmpConfig
from ctfleet.monitors.exporter import CtfleetCollector
from ctfleet.monitors.http import serve
from ctfleet.monitors.poller import SnmpCreds
from ctfleet.monitors.poller import run as run_poller
from ctfleet.lab.kube_state import ksm_scrape_configs, serve_kube_state, simulated_clusters
from ctfleet.lab.procs.prometheus import Prometheus, prometheus_config
from ctfleet.lab.report_feed import synthetic_audits, synthetic_inventories, with_simulated_waivers
from ctfleet.lab.procs.alertmanager import Alertmanager
from ctfleet.lab.procs.service import Service
from ctfleet.project import Project
from ctfleet.reports.kpi import kpi_rows, national_row
from ctfleet.results import ResultsStore


@dataclass
class DemoOptions:
    workdir: Path
    region: str | None = None
    limit: int | None = None
    sweeps: int = 2
    interval: float = 60.0
    port: int | None = None  # SNMP port the simulated devices answer on (default 161 as root, else 1161)
    keep_running: bool = False


def start_alertmanager(root: Path, workdir: Path) -> tuple[Service, str]:
    am = Alertmanager(root / "monitors/alertmanager/alertmanager.yml", workdir / "alertmanager").start()
    return am, am.address


def run(p: Project, opts: DemoOptions, out: Console) -> dict:
    from ctfleet.lab.simfleet import start_simfleet

    work = opts.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    port = opts.port or (161 if os.geteuid() == 0 else 1161)
    t0 = time.monotonic()
    out.print(f"[1/4] starting the simulated fleet ({opts.region and 'region ' + opts.region or 'national'}"
              f"{f', first {opts.limit} devices' if opts.limit else ''}) ...")
    echo_port = 7 if port == 161 else port + 1
    with start_simfleet(p, work / "simfleet", port=port, limit=opts.limit, region=opts.region, echo_port=echo_port) as fleet:
        env = fleet.credential_env()  # this run's generated secrets, handed over in memory only
        creds_cache: dict[tuple, SnmpCreds] = {}

        def credentials(device):
            key = (str(device.credentials), device.snmp_version)
            if key not in creds_cache:
                creds_cache[key] = SnmpCreds.from_secret(device.snmp_version, env[device.credentials.target])
            return creds_cache[key]

        served = set(fleet.profiles)
        registry = p.registry if not opts.region else p.national.scoped(opts.region)
        out.print(f"      {len(served):,} simulated routers ready in {time.monotonic() - t0:.1f} s")

        cfg = CollectorConfig(shard=f"region:{opts.region}" if opts.region else "all", interval_seconds=opts.interval,
                              # snmpsim answers a few hundred requests/s on this machine: a bounded number
                              # in flight keeps requests queued in the poller, not timing out in the agents.
                              # Round trips are measured over UDP echo through the same emulated links:
                              # loopback ICMP has no latency, and SNMP probes would load the agents.
                              probe=ProbeConfig(method="udp_echo", echo_port=echo_port, count=4, interval_seconds=0.1,
                                                timeout_seconds=3.0, concurrency=200),
                              snmp=SnmpConfig(timeout_seconds=2.5, retries=1, concurrency=96, port=port))
        exporter = CtfleetCollector()
        store = ResultsStore(work / "results")
        norms = with_simulated_waivers(registry, p.norms)
        audits = synthetic_audits(registry, norms, step=2, steps=3)
        for source in sorted({r.source for r in audits}, key=lambda s: s.value):
            store.write_batch(source, "simulated-demo", [r for r in audits if r.source == source])
        inventories = synthetic_inventories(registry, norms, step=2, steps=3)
        store.write_inventory("simulated-demo", inventories)
        out.print(f"      {len(audits):,} simulated audit results (hosts, routers, hosting), "
                  f"{len(inventories):,} simulated device inventories and {len(norms.waivers):,} simulated waivers, "
                  "labelled as such")
        collector = Collector(cfg, registry, norms, store=store, credentials=credentials, exporter=exporter, repo_root=p.root)
        collector.devices = [d for d in collector.devices if d.hostname in served]
        prom_registry = CollectorRegistry()
        prom_registry.register(exporter)
        httpd, _ = serve(prom_registry, "127.0.0.1", 0, version=exporter.version, render=exporter.exposition)
        exporter_addr = f"127.0.0.1:{httpd.server_address[1]}"
        am, am_addr = start_alertmanager(p.root, work)
        # No cluster runs here: a simulated kube-state-metrics per cluster (SDR, SDLs) says
        # which declared tenants exist, so "hosted" and "mutualisations" are non-trivial.
        ksm = {name: serve_kube_state(namespaces) for name, namespaces in simulated_clusters(registry).items()}
        rules = sorted(str(f) for f in (p.root / "monitors/rules").glob("*.yml"))
        prom_cfg = prometheus_config(exporter_addr, rules, scrape_interval="10s", alertmanager=am_addr)
        prom_cfg["scrape_configs"] += ksm_scrape_configs({name: addr for name, (_, addr) in ksm.items()}, "10s")
        prom = Prometheus(work / "prometheus", prom_cfg)
        try:
            prom.start()
            out.print(f"[2/4] Prometheus {prom.url} scraping the exporter at {exporter_addr} and a simulated "
                      f"kube-state-metrics per cluster; Alertmanager {am_addr}")
            report, n = run_poller(_drive(collector, prom, opts, exporter_addr, out))  # the collector's loop (uvloop)
            return {"kpis": report, "sweeps": n, "last_sweep": collector.last_sweep, "registry": collector.registry}
        finally:
            prom.stop()
            am.stop()
            for srv in [httpd] + [srv for srv, _ in ksm.values()]:
                srv.shutdown()
                srv.server_close()


def print_kpis(query, out: Console) -> dict:
    nat = national_row(query)
    report = {"national": nat}
    for by in ("lot", "region"):
        rows = kpi_rows(query, by)
        report[by] = rows
        t = Table(title=f"Programme KPIs by {by} (read back from Prometheus)")
        for col in (by, "CTs", "connected", "meeting norms", "failing", "not assessed", "with waivers", "equipped", "hosted",
                    "avg coverage"):
            t.add_column(col, justify="right")
        for r in rows + [dict(nat, **{by: "all"})]:
            t.add_row(str(r[by]), f"{r['cts']:,}", _pct(r["cts_connected"], r["cts"]), _pct(r["cts_meeting_norms"], r["cts"]),
                      _pct(r["cts_failing"], r["cts"]), _pct(r["cts_not_assessed"], r["cts"]), f"{r['cts_with_waivers']:,}",
                      _pct(r["cts_equipped"], r["cts"]), _pct(r["cts_hosted"], r["cts"]), f"{r['coverage']:.0%}")
        out.print(t)
    mut = query("ctfleet:mutualisations:total")
    declared = query("sum(ctfleet:mutualisations_declared:count_by_region_tier)")
    report["mutualisations"] = (int(float(mut[0]["value"][1])) if mut else 0, int(float(declared[0]["value"][1])) if declared else 0)
    out.print(f"mutualisations réalisées: {report['mutualisations'][0]:,} of {report['mutualisations'][1]:,} declared "
              "(groupings and SDLs whose tenant is present; clusters simulated)")
    out.print("'meeting norms': every applicable control has a known, fresh result and none fails (waived controls apart); "
              "'failing': a known failure; 'not assessed': results missing or stale. The three add up to the CTs; "
              "a CT that is not connected never meets its norms.")
    return report


def _pct(n: int, d: int) -> str:
    return f"{n:,} ({n / d:.0%})" if d else "0"


async def _drive(collector: Collector, prom: Prometheus, opts: DemoOptions, exporter_addr: str, out: Console):
    """All sweeps in one event loop (the poller's socket belongs to it)."""
    try:
        n = 0
        for i in range(opts.sweeps):
            s0 = time.monotonic()
            sweep = await collector.run_once()
            n += 1
            ok = sum(1 for x in sweep.polls.values() if x.ok)
            out.print(f"[3/4] sweep {i + 1}/{opts.sweeps}: {ok:,} of {len(sweep.polls):,} devices answered, "
                      f"{len(sweep.probes):,} probe rounds, {time.monotonic() - s0:.1f} s (interval {opts.interval:g} s)")
        # Read the KPIs only once Prometheus has scraped the last sweep and evaluated the rules on it.
        await asyncio.to_thread(prom.wait_for, f"ctfleet_sweeps_total >= {collector.sweeps_total}", 90)
        await asyncio.sleep(11)  # one rule evaluation (10 s) after that scrape
        out.print("[4/4] programme KPIs from Prometheus's HTTP API:")
        report = await asyncio.to_thread(print_kpis, prom.query, out)
        alerts = (await asyncio.to_thread(prom.api, "alerts"))["alerts"]
        out.print(f"Alerts pending or firing in Prometheus: {len(alerts)} "
                  f"({', '.join(sorted({a['labels']['alertname'] for a in alerts})) or 'none'}); "
                  "most wait 10 minutes before firing.")
        if opts.keep_running:
            out.print(f"Keeping everything running: Prometheus {prom.url}, metrics http://{exporter_addr}/metrics. Ctrl-C to stop.")
            try:
                while True:
                    await asyncio.sleep(opts.interval)
                    await collector.run_once()
                    n += 1
            except (KeyboardInterrupt, asyncio.CancelledError):
                pass
        return report, n
    finally:
        await collector.close()
