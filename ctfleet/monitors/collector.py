"""The SNMP and reachability collector: sweeps its shard of the fleet every interval.

Each sweep polls the shard's routers and the servers that expose SNMP
(:mod:`ctfleet.monitors.poller`), then measures round trip and loss to each router over
several packets (ICMP through :func:`~ctfleet.monitors.probe.icmp_round`, or one SNMP GET
per packet through :func:`~ctfleet.monitors.probe.packet_round` where ICMP is filtered or
latency is emulated in front of the agents), writes the control results it supports to
the results store (``snmp/<shard>.jsonl``) and swaps a new exporter snapshot in, which
also counts every result audits left in the store. Both phases have deadlines inside the
interval, so a sweep ends in time however many devices are slow or dead.

Run it::

    python -m ctfleet.monitors.collector --config collector.yml            # serve /metrics
    python -m ctfleet.monitors.collector --config collector.yml --dry-run  # validate, exit
    python -m ctfleet.monitors.collector --config collector.yml --once     # one sweep, print

``kill -HUP <pid>`` reloads the configuration and the registry. A configuration::

    shard: region:01          # all | region:NN | hash:i/n (CRC-32 of the CT code)
    interval_seconds: 60
    listen: 127.0.0.1:9160
    web_config: null          # exporter-toolkit web-config file (TLS, basic auth)
    probe: {method: icmp, count: 5, interval_seconds: 0.2}   # icmp | snmp | none
    snmp: {timeout_seconds: 1.0, retries: 1, concurrency: 256, max_rows: 10000}
    results_dir: var/results  # relative to the project root, or a results database URL (postgresql://...)

Credentials come from each device's reference (``env:CTFLEET_SNMP_<region>`` ...)
through :func:`ctfleet.edges.credentials.resolve`; the value is a JSON object with
``user``, ``auth_key``, ``priv_key`` (v3) and/or ``community`` (v2c), or a bare community
for v2c devices. Tests and the demo inject their own ``credentials`` function instead.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ctfleet.core.collector_config import CollectorConfig, ProbeConfig, SnmpConfig  # re-exported
from ctfleet.core.compliance import Source
from ctfleet.core.models import Device, Role
from ctfleet.core.registry import Registry
from ctfleet.core.yamlio import load_yaml, validate
from ctfleet.monitors.exporter import CtfleetCollector, Exposition, sweep_part
from ctfleet.core.sharding import ct_in_shard, parse_shard, shard_label
from ctfleet.monitors.poller import Poller, SnmpCreds, Target, run, select_targets
from ctfleet.monitors.snmp_targets import version_label
from ctfleet.monitors.probe import icmp_round, packet_round, udp_echo_probe
from ctfleet.monitors.stored import StoredBatches, StoredRows
from ctfleet.monitors.sweep import DevicePoll, Probe, Sweep, sweep_results
from ctfleet.results import ResultsStore, open_store

__all__ = ["ProbeConfig", "SnmpConfig", "CollectorConfig", "load_config", "Collector", "shard_registry",
           "shard_label", "resolve_credentials", "main"]


def load_config(path: Path) -> CollectorConfig:
    return validate(load_yaml(Path(path), str(path)), CollectorConfig)


def shard_registry(registry: Registry, shard: str) -> Registry:
    """The registry limited to the shard's CTs, so one shard's exporter never reports
    another shard's CTs as disconnected. Membership is :func:`ctfleet.core.sharding.ct_in_shard`,
    the rule :func:`select_targets` uses too: a CT and all its sites are in one shard."""
    p = parse_shard(shard)
    if p[0] == "all":
        return registry
    if p[0] == "region":
        return registry.scoped(p[1]) if p[1] in registry.regions else Registry(
            regions={}, provinces={}, cts={}, arrondissements={}, groupings={}, seats={})
    cts = {code: ct for code, ct in registry.cts.items() if ct_in_shard(code, ct.region_code, p)}
    r = Registry(regions=registry.regions, provinces=registry.provinces, cts=cts,
                 arrondissements={c: a for c, a in registry.arrondissements.items() if a.commune_code in cts},
                 groupings=registry.groupings, seats=registry.seats)
    sites = [s for s in registry.sites.values() if s.ct_code in cts]
    codes = {s.code for s in sites}
    r.attach_fleet(sites, [d for d in registry.devices.values() if d.site_code in codes], registry.fleet_label)
    return r


def resolve_credentials(repo_root: Path) -> Callable[[Device], SnmpCreds]:
    """Credentials from each device's reference (env:, file:, vault:), cached per
    reference and version for the collector's lifetime (until SIGHUP)."""
    from ctfleet.edges.credentials import resolve

    cache: dict[tuple, SnmpCreds] = {}

    def creds(device: Device) -> SnmpCreds:
        if device.credentials is None:
            raise ValueError(f"device {device.hostname} has no credentials reference")
        key = (str(device.credentials), device.snmp_version)
        c = cache.get(key)
        if c is None:
            c = cache[key] = SnmpCreds.from_secret(device.snmp_version, resolve(device.credentials, repo_root).reveal())
        return c
    return creds


class Collector:
    """Sweeps the shard every ``config.interval_seconds``.

    ``credentials(device) -> SnmpCreds`` (default: resolve the device's reference);
    ``address(device) -> (host, port)`` (default: its management address and
    ``config.snmp.port``). ``run_once()`` and ``run_forever(stop)`` are coroutines.
    """

    def __init__(self, config: CollectorConfig, registry: Registry, norms, store: ResultsStore | None = None,
                 credentials: Callable[[Device], SnmpCreds] | None = None,
                 address: Callable[[Device], tuple] | None = None, repo_root: Path | None = None,
                 exporter: CtfleetCollector | None = None):
        self.config = config
        self.norms = norms
        self.store = store
        self.repo_root = repo_root or Path.cwd()
        self.credentials = credentials or resolve_credentials(self.repo_root)
        self.address = address or (lambda d: (str(d.mgmt_address), config.snmp.port))
        self.exporter = exporter or CtfleetCollector()
        self.sweeps_total = 0
        self.last_sweep: Sweep | None = None
        self.poller: Poller | None = None
        self._stale_poller: Poller | None = None
        self._set_registry(registry)
        self.exporter.update(self.exposition.update(None, self._parts(), inventories=self._inventories()))

    def _inventories(self) -> list | None:
        """The newest observed inventory of each device of the shard (what "equipped" is
        judged from); None without a store."""
        if self.store is None or not hasattr(self.store, "iter_inventory"):
            return None
        return list(self.store.iter_inventory(set(self.registry.cts)))

    def _set_registry(self, registry: Registry) -> None:
        self.national = registry
        self.registry = shard_registry(registry, self.config.shard)
        self.devices = select_targets(registry, self.config.shard)
        self.label = shard_label(self.config.shard)
        # the exposition is kept across sweeps; a reload (registry, norms) starts it anew
        self.exposition = Exposition(self.registry, self.norms)
        self._batches = StoredBatches(self.store) if isinstance(self.store, ResultsStore) else None
        self._rows: StoredRows | None = None  # a results database's change feed

    def reconfigure(self, config: CollectorConfig, registry: Registry | None = None, norms=None) -> None:
        """Apply a reloaded configuration (and registry/norms); the poller is rebuilt
        before the next sweep, keeping nothing from the old one but what it learnt."""
        self.config = config
        if norms is not None:
            self.norms = norms
        if self.poller is not None:
            self._stale_poller = self.poller  # closed in the loop, before the next sweep
        self.poller = None
        self._set_registry(registry or self.national)

    def _parts(self, sweep: Sweep | None = None, results: list | None = None) -> list:
        """The results the exposition counts: every batch of the store (the sweep's own
        among them, once written), else the sweep's results."""
        if isinstance(self.store, ResultsStore):
            if self._batches is None or self._batches.store is not self.store:
                self._batches = StoredBatches(self.store)
            return self._batches.parts()
        if self.store is not None:  # a results database: its current rows, then what changed (StoredRows)
            if self._rows is None or self._rows.store is not self.store:  # _set_registry resets it with the registry
                self._rows = StoredRows(self.store, self.registry.cts)
            return self._rows.parts()
        return [sweep_part(sweep, self.registry, self.norms, results)] if sweep is not None else []

    async def _ensure_poller(self) -> Poller:
        if self.poller is None:
            old = self._stale_poller
            if old is not None:
                await old.close()
                self._stale_poller = None
            s = self.config.snmp
            self.poller = await Poller(timeout=s.timeout_seconds, retries=s.retries, concurrency=s.concurrency,
                                       max_rows=s.max_rows).start()
        return self.poller

    def _targets(self) -> tuple[list[Target], dict[str, DevicePoll]]:
        targets, failed = [], {}
        for d in self.devices:
            try:
                creds = self.credentials(d)
                host, port = self.address(d)
            except Exception as e:  # noqa: BLE001 - one device's bad secret must not stop the sweep
                failed[d.hostname] = DevicePoll(d.hostname, ok=False, error="auth",
                                                version=version_label(d.snmp_version),  # type: ignore[arg-type]
                                                detail=f"credentials {d.credentials} not usable: {e}")
                continue
            site = self.registry.sites.get(d.site_code)
            declared = site.uplink.interface if site is not None and d.role == Role.ROUTER else None
            targets.append(Target(d.hostname, host, creds, port, declared))
        return self._order(targets), failed

    def _order(self, targets: list[Target]) -> list[Target]:
        """Poll order: devices that answered last sweep first, then the others, each in an
        order that changes every sweep (hash of sweep number and hostname).

        When the concurrency bound and the deadline cannot serve every device — dead ones
        hold a slot for their whole timeout — what is left out is then neither always the
        same region (the registry's order) nor the live devices (as separate pollers for
        unreachable hosts do in Zabbix)."""
        import zlib

        last = self.last_sweep.polls if self.last_sweep else {}
        salt = str(self.sweeps_total).encode()
        return sorted(targets, key=lambda t: (not (last.get(t.hostname) and last[t.hostname].ok),
                                              zlib.crc32(salt + t.hostname.encode())))

    async def run_once(self) -> Sweep:
        """One sweep: poll, probe, store, export. Returns the :class:`Sweep`."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        started = datetime.now(timezone.utc)
        poller = await self._ensure_poller()
        targets, failed = self._targets()
        probing = cfg.probe.method != "none"
        # Polls get most of the interval, probe rounds the next part; the rest is for
        # storing and the snapshot.
        poll_deadline = t0 + cfg.interval_seconds * (0.55 if probing else 0.85)
        polls = await poller.sweep(targets, interval=cfg.interval_seconds, deadline=poll_deadline)
        polls.update(failed)
        probes: dict[str, Probe] = {}
        if probing:
            routers = [t for t in targets if self.registry.devices.get(t.hostname) is not None
                       and self.registry.devices[t.hostname].role == Role.ROUTER]
            remaining = t0 + cfg.interval_seconds * 0.85 - loop.time()
            probes = await self._probe(poller, routers, max(0.1, remaining))
        sweep = Sweep(started=started, ended=datetime.now(timezone.utc), interval_seconds=cfg.interval_seconds,
                      polls=polls, probes=probes, shard=self.label, unmatched_datagrams=poller.unmatched_datagrams)
        # ControlResults (validated pydantic models) only to be stored; without a store the
        # exposition judges the sweep itself, as plain tuples (sweep_part)
        results = list(sweep_results(sweep, self.registry, self.norms)) if self.store is not None else None
        if self.store is not None:
            path = await asyncio.to_thread(self.store.write_batch, Source.SNMP, self.label, results)
            if self._batches is not None and self._batches.store is self.store:
                self._batches.remember(path, results)  # known: not read back
        self.sweeps_total += 1
        snap = await asyncio.to_thread(lambda: self.exposition.update(sweep, self._parts(sweep, results),
                                                                      sweeps_total=self.sweeps_total,
                                                                      inventories=self._inventories()))
        self.exporter.update(snap)
        self.last_sweep = sweep
        return sweep

    async def _probe(self, poller: Poller, routers: list[Target], budget: float) -> dict[str, Probe]:
        p = self.config.probe
        if not routers:
            return {}
        if p.method == "udp_echo":
            return await packet_round({t.hostname: t.host for t in routers},
                                      udp_echo_probe(p.echo_port, timeout=min(p.timeout_seconds, budget)),
                                      count=p.count, interval=p.interval_seconds, concurrency=p.concurrency,
                                      deadline=budget, method="udp_echo")
        if p.method == "snmp":
            return await packet_round({t.hostname: t.hostname for t in routers},
                                      poller.probe_fn(routers, timeout=min(p.timeout_seconds, budget)),
                                      count=p.count, interval=p.interval_seconds, concurrency=p.concurrency,
                                      deadline=budget, method="snmp")
        by_addr: dict[str, list[str]] = {}
        for t in routers:
            by_addr.setdefault(t.host, []).append(t.hostname)
        timeout = min(p.timeout_seconds, max(0.05, budget - p.count * p.interval_seconds))
        try:
            got = await asyncio.wait_for(icmp_round(list(by_addr), count=p.count, interval=p.interval_seconds,
                                                    timeout=timeout, concurrency=p.concurrency), budget)
        except (PermissionError, OSError, TimeoutError) as e:
            print(f"collector: ICMP round failed: {e}", file=sys.stderr)
            return {}
        out = {}
        for addr, probe in got.items():
            for host in by_addr.get(addr, []):
                out[host] = Probe(host, sent=probe.sent, rtts=probe.rtts, method="icmp")
        return out

    async def run_forever(self, stop: asyncio.Event, reload: Callable[[], None] | None = None,
                          reload_flag: asyncio.Event | None = None) -> None:
        """Sweep every interval until ``stop`` is set. When ``reload_flag`` is set,
        ``reload()`` runs before the next sweep (SIGHUP)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not stop.is_set():
                if reload_flag is not None and reload_flag.is_set():
                    reload_flag.clear()
                    if reload is not None:
                        try:
                            reload()
                        except Exception as e:  # noqa: BLE001 - keep the old config running
                            print(f"collector: reload failed, keeping the running configuration: {e}", file=sys.stderr)
                try:
                    await self.run_once()
                except Exception as e:  # noqa: BLE001 - a failed sweep is logged; the next one runs
                    err = _store_error(e, self.store)
                    print(f"collector: sweep failed: {err if err is not None else f'{type(e).__name__}: {e}'}", file=sys.stderr)
                next_at += self.config.interval_seconds
                now = loop.time()
                if next_at < now:  # never queue up sweeps behind a slow one
                    next_at = now
                waits = [asyncio.ensure_future(stop.wait())]
                if reload_flag is not None:
                    waits.append(asyncio.ensure_future(reload_flag.wait()))
                done, pending = await asyncio.wait(waits, timeout=max(0.0, next_at - now),
                                                   return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
        finally:
            await self.close()

    async def close(self) -> None:
        for p in (self.poller, self._stale_poller):
            if p is not None:
                await p.close()
        self.poller = self._stale_poller = None


# --------------------------------------------------------------------- command line


ONCE_FAILURES_SHOWN = 20  # failed devices a --once summary lists


def _store_error(exc: BaseException, store) -> Exception | None:
    """A results database that cannot be reached or refused the login, as one clear error
    (the URL without password, what to check); None for any other failure."""
    url = getattr(store, "url", None)
    if url is None:
        return None
    from ctfleet.results.db import database_error

    return database_error(exc, url)


def _load(config_path: Path):
    from ctfleet.project import load_project

    cfg = load_config(config_path)
    project = load_project(cfg.profile)
    results = cfg.results_dir or str(project.results_dir)
    if "://" not in results and not Path(results).is_absolute():
        results = str(project.root / results)
    web = None
    if cfg.web_config:
        from ctfleet.monitors.http import load_web_config
        wp = Path(cfg.web_config)
        web = load_web_config(wp if wp.is_absolute() else config_path.parent / wp)
    try:
        store = open_store(results)  # a directory (JSONL files) or a database URL
    except Exception as exc:
        from ctfleet.results.db import database_error

        err = database_error(exc, results) if "://" in results or results.endswith((".db", ".sqlite")) else None
        if err is None:
            raise
        raise err from None
    return cfg, project, store, web


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctfleet.monitors.collector",
                                 description="ctfleet SNMP and reachability collector: sweeps its shard, serves /metrics")
    ap.add_argument("--config", required=True, type=Path, help="collector YAML configuration")
    ap.add_argument("--dry-run", action="store_true", help="validate the configuration (and the registry), then exit")
    ap.add_argument("--once", action="store_true", help="run one sweep, print a summary and exit (no server)")
    args = ap.parse_args(argv)

    from ctfleet.core.errors import CtfleetError

    try:
        cfg, project, store, web = _load(args.config)
    except (CtfleetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    devices = select_targets(project.registry, cfg.shard)
    if args.dry_run:
        print(f"ok: {args.config}: shard {cfg.shard} ({len(devices)} devices), every {cfg.interval_seconds:g} s, "
              f"probe {cfg.probe.method}, /metrics on {cfg.listen}, results in {store.root}")
        return 0

    collector = Collector(cfg, project.registry, project.norms, store, repo_root=project.root)
    if args.once:
        try:
            sweep = run(_once(collector))  # on uvloop, as the poller is deployed
        except Exception as e:
            err = _store_error(e, store)
            if err is None:
                raise
            print(f"error: {err}", file=sys.stderr)
            return 2
        ok = sum(1 for p in sweep.polls.values() if p.ok)
        print(f"shard {cfg.shard}: {len(sweep.polls)} devices, {ok} ok, {len(sweep.polls) - ok} failed, "
              f"{sweep.duration_seconds:.2f} s")
        failed = sorted((h, p) for h, p in sweep.polls.items() if not p.ok)
        for host, poll in failed[:ONCE_FAILURES_SHOWN]:  # why, per device (a credentials error names its reference)
            print(f"  {host}: {poll.error}: {poll.detail}")
        if len(failed) > ONCE_FAILURES_SHOWN:
            print(f"  ... and {len(failed) - ONCE_FAILURES_SHOWN} more failed devices (see the results store)")
        return 0

    from prometheus_client import CollectorRegistry

    from ctfleet.monitors.http import serve

    registry = CollectorRegistry()
    registry.register(collector.exporter)
    state = {"listen": cfg.listen, "web": cfg.web_config}
    host, _, port = cfg.listen.rpartition(":")
    from ctfleet.core.conventions import NODE_TARGETS_PATH
    from ctfleet.monitors.node_sd import node_sd_app

    extra = {NODE_TARGETS_PATH: node_sd_app(lambda: collector.registry)}  # the region's node_exporter targets (http_sd)
    server = {"httpd": serve(registry, host.strip("[]"), int(port), web, extra=extra, version=collector.exporter.version,
                             render=collector.exporter.exposition)[0]}

    def reload() -> None:
        new_cfg, new_project, new_store, new_web = _load(args.config)
        collector.store = new_store
        collector.reconfigure(new_cfg, new_project.registry, new_project.norms)
        if (new_cfg.listen, new_cfg.web_config) != (state["listen"], state["web"]) or new_cfg.web_config:
            server["httpd"].shutdown()
            server["httpd"].server_close()
            h, _, p = new_cfg.listen.rpartition(":")
            server["httpd"] = serve(registry, h.strip("[]"), int(p), new_web, extra=extra, version=collector.exporter.version,
                                    render=collector.exporter.exposition)[0]
            state.update(listen=new_cfg.listen, web=new_cfg.web_config)
        print(f"collector: reloaded {args.config} (shard {new_cfg.shard}, {len(collector.devices)} devices)", file=sys.stderr)

    async def amain() -> None:
        stop, reload_flag = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_flag.set)
        print(f"collector: shard {cfg.shard} ({len(collector.devices)} devices) every {cfg.interval_seconds:g} s; "
              f"/metrics on {cfg.listen}", file=sys.stderr)
        await collector.run_forever(stop, reload, reload_flag)

    try:
        run(amain())  # on uvloop (see ctfleet.monitors.poller.run)
    finally:
        server["httpd"].shutdown()
        server["httpd"].server_close()
    return 0


async def _once(collector: Collector) -> Sweep:
    try:
        return await collector.run_once()
    finally:
        await collector.close()


if __name__ == "__main__":
    sys.exit(main())
