"""The deployed data path on one machine, for the end-to-end test, the benchmark and a demo:
a region's fleet imported from a spreadsheet, its simulated devices, its collector (serving
/metrics and the node_exporter http_sd) on the results database, its Prometheus with the
project's rules remote-writing the KPI series to a national Prometheus.

Everything simulated here is labelled so: the devices (snmpsim behind the relay) and the
TLS material; the collector, Prometheus, PostgreSQL and the results service are the real
programs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import Workbook
from prometheus_client import CollectorRegistry

from ctfleet.core import conventions
from ctfleet.core.datapath import external_labels, kpi_record_names, national_rules, node_scrape_config, programme_kpis, remote_write
from ctfleet.lab.procs.prometheus import Prometheus
from ctfleet.monitors.collector import Collector, CollectorConfig, ProbeConfig, SnmpConfig
from ctfleet.monitors.exporter import CtfleetCollector
from ctfleet.monitors.http import serve
from ctfleet.monitors.node_sd import node_sd_app
from ctfleet.monitors.poller import SnmpCreds, new_event_loop


def fleet_workbook(path: Path, rows_sites: list[list], rows_devices: list[list]) -> Path:
    """An XLSX as a regional team fills it in: a ``sites`` and a ``devices`` sheet."""
    wb = Workbook()
    ws = wb.active
    ws.title = "sites"
    ws.append(["site_code", "ct_code", "name", "uplink_type", "uplink_mbps", "backup_type", "backup_mbps"])
    for r in rows_sites:
        ws.append(r)
    wd = wb.create_sheet("devices")
    wd.append(["hostname", "site_code", "role", "platform", "os_version", "mgmt_address", "credentials_ref", "snmp_version"])
    for r in rows_devices:
        wd.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def ctfleet_cli(root: Path, *args: str, profile: Path | None = None) -> subprocess.CompletedProcess:
    """The real ``ctfleet`` command (the same entry point a person types)."""
    # the installed console script: `python -m ctfleet.cli.main` would load the CLI module
    # twice (as __main__ and as ctfleet.cli.main), and sub-commands would not see --profile
    argv = [str(Path(sys.executable).parent / "ctfleet")] + (["--profile", str(profile)] if profile else []) + list(args)
    return subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)


def regional_prometheus_config(region: str, collector: str, rule_files: list[str], national_write_url: str,
                               kpi_names: list[str], interval: str = "5s", extra_scrape_configs: list[dict] = ()) -> dict:
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "external_labels": external_labels(region)},
        "rule_files": rule_files,
        "scrape_configs": [
            {"job_name": conventions.COLLECTOR_JOB, "static_configs": [{"targets": [collector]}]},
            node_scrape_config(f"http://{collector}{conventions.NODE_TARGETS_PATH}", interval="15s"),
            *extra_scrape_configs,
        ],
        "remote_write": [remote_write(national_write_url, region, kpi_names)],
    }


def national_prometheus(workdir: Path, root: Path, port: int | None = None, interval: str = "5s") -> Prometheus:
    """The national Prometheus: the remote-write receiver and the national KPI rules (no scrape)."""
    from ruamel.yaml import YAML

    rules = workdir / "national.rules.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    with rules.open("w") as fh:
        YAML(typ="safe").dump(national_rules(_programme_kpis(root)), fh)
    cfg = {"global": {"evaluation_interval": interval}, "rule_files": [str(rules)]}
    return Prometheus(workdir, cfg, port=port, extra_args=("--web.enable-remote-write-receiver",))


def _programme_kpis(root: Path) -> dict:
    from ruamel.yaml import YAML

    def load(name: str) -> dict:
        return YAML(typ="safe").load((root / conventions.RULES_DIR / name).read_text(encoding="utf-8"))

    return programme_kpis(load(conventions.KPI_RULES_FILE), *(load(n) for n in conventions.CLUSTER_KPI_RULES_FILES))


def kpi_names(root: Path) -> list[str]:
    """What a region remote-writes: the programme KPIs (KPI rules, and the hosting rules' KPI-form records)."""
    return kpi_record_names(_programme_kpis(root))


@dataclass
class RunningCollector:
    """A collector sweeping in its own thread and event loop, serving /metrics and /sd/node."""

    collector: Collector
    address: str
    sweeps: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _httpd: object = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(60)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def start_collector(project, fleet, store, interval: float = 5.0) -> RunningCollector:
    """The region's collector on the simulated fleet ``fleet`` (its generated secrets, in memory)."""
    env = fleet.credential_env()
    cache: dict[tuple, SnmpCreds] = {}

    def credentials(device):
        key = (str(device.credentials), device.snmp_version)
        if key not in cache:
            cache[key] = SnmpCreds.from_secret(device.snmp_version, env[device.credentials.target])
        return cache[key]

    cfg = CollectorConfig(shard=f"region:{project.profile.region}", interval_seconds=interval,
                          probe=ProbeConfig(method="none"),
                          snmp=SnmpConfig(timeout_seconds=1.0, retries=2, concurrency=32, port=fleet.port))
    exporter = CtfleetCollector()
    collector = Collector(cfg, project.registry, project.norms, store=store, credentials=credentials, exporter=exporter,
                          repo_root=project.root)
    reg = CollectorRegistry()
    reg.register(exporter)
    httpd, _ = serve(reg, "127.0.0.1", 0, version=exporter.version,
                     extra={conventions.NODE_TARGETS_PATH: node_sd_app(lambda: collector.registry)})
    rc = RunningCollector(collector, f"127.0.0.1:{httpd.server_address[1]}", _httpd=httpd)

    def loop() -> None:
        async def main() -> None:
            try:
                while not rc._stop.is_set():
                    await collector.run_once()
                    rc.sweeps += 1
                    for _ in range(int(interval * 10)):
                        if rc._stop.is_set():
                            break
                        await asyncio.sleep(0.1)
            finally:
                await collector.close()
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the collector's loop (uvloop)
            runner.run(main())

    rc._thread = threading.Thread(target=loop, name=f"collector-{project.profile.region}", daemon=True)
    rc._thread.start()
    return rc
