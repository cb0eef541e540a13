"""The deployed data path end to end, on loopback with the real components (issue 10).

Two regions (04 and 05), each with a fleet imported from a spreadsheet with
``ctfleet import``, its simulated devices (snmpsim behind the relay), its collector on a
PostgreSQL results database (region 04 also with its results service over TLS), its
Prometheus with the project's rules remote-writing the KPI series to a national
Prometheus. Then: audit batches delivered from a store-and-forward spool to region 04
(one twice, one of region 05 refused, the service killed mid-delivery and restarted);
the national Prometheus stopped 60 s and restarted; ``ctfleet report`` against the
national Prometheus must show both regions with the regions' own figures, and no
regional KPI sample may be missing at the nation.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ctfleet.core.compliance import ControlResult
from ctfleet.core.conventions import site_code
from ctfleet.core.evaluate import expected_pairs
from ctfleet.core.models import code_slug

pytestmark = [pytest.mark.component, pytest.mark.slow]

REGIONS = {"04": 61, "05": 62}  # region -> second octet of its devices' loopback addresses
N_CTS = 4


def _router_ok(hostname: str, seed: int) -> bool:
    """The simulated device of this hostname is either up or dead, never slow or truncated
    (those answer or not depending on timing; the test's figures must not)."""
    from ctfleet.lab.simfleet.data import DEAD_SHARE, SLOW_SHARE, TRUNCATED_SHARE, _unit

    u = _unit(seed, "fault", hostname)
    return not (DEAD_SHARE <= u < DEAD_SHARE + SLOW_SHARE + TRUNCATED_SHARE)


def _fleet_rows(registry, region: str, octet: int, seed: int):
    cts = sorted(c for c, ct in registry.cts.items() if ct.region_code == region and ct.level.value == "commune")[:N_CTS]
    sites, devices = [], []
    for i, ct in enumerate(cts, 1):
        s = site_code(ct)
        sites.append([s, ct, f"Siège de la commune {ct}", "fibre", 20, "", ""])
        host = next(h for h in (f"r-{code_slug(ct)}{suf}" for suf in ("", "-b", "-c", "-d", "-e")) if _router_ok(h, seed))
        devices.append([host, s, "router", "cisco_ios", "ios-15.9", f"127.{octet}.0.{i}", f"env:CTFLEET_SNMP_{region}", "v3"])
        devices.append([f"srv1-{code_slug(ct)}", s, "server", "debian", "debian-12", f"127.{octet}.1.{i}", f"env:CTFLEET_SSH_{region}", ""])
    return cts, sites, devices


def _wait(fn, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def _truth(rc) -> dict:
    """A region's figures as its exporter serves them (the regional input of the chain)."""
    fams = {m.name: m for m in rc.collector.exporter.version().metrics}
    total = lambda name: int(sum(s.value for s in fams[name].samples))  # noqa: E731
    cov = [s.value for s in fams["ctfleet_ct_coverage_ratio"].samples]
    return {"cts": len(fams["ctfleet_ct_info"].samples), "cts_connected": total("ctfleet_ct_connected"),
            "cts_meeting_norms": total("ctfleet_ct_meets_norms"), "cts_equipped": total("ctfleet_ct_equipped"),
            "coverage": sum(cov) / len(cov)}


def test_two_regions_to_the_nation(tmp_path, root, postgresql):
    from ctfleet.lab.kube_state import ksm_scrape_configs, serve_kube_state, simulated_clusters
    from ctfleet.lab.datapath import (ctfleet_cli, fleet_workbook, kpi_names, national_prometheus,
                                      regional_prometheus_config, start_collector)
    from ctfleet.lab.procs.prometheus import Prometheus
    from ctfleet.lab.procs.results_service import ResultsService
    from ctfleet.lab.simfleet import start_simfleet
    from ctfleet.project import load_project
    from ctfleet.results.db import SqlStore
    from ctfleet.results.forward import deliver, enqueue

    national_registry = load_project(root=root, with_fleet=False).national
    seed = 2014
    stack = []  # everything started, stopped in reverse order
    try:
        nation = national_prometheus(tmp_path / "nation", root).start()
        stack.append(nation)
        write_url = f"{nation.url}/api/v1/write"
        names = kpi_names(root)
        rules = sorted(str(f) for f in (root / "monitors/rules").glob("*.yml"))
        regions = {}
        for region, octet in REGIONS.items():
            work = tmp_path / f"region-{region}"
            cts, site_rows, device_rows = _fleet_rows(national_registry, region, octet, seed)
            book = fleet_workbook(work / f"parc-{region}.xlsx", site_rows, device_rows)
            profile = work / f"sdr-{region}.yaml"
            profile.write_text(f'name: sdr-{region}\nregion: "{region}"\nfleet: {{source: files, dir: {work / "fleet"}, seed: {seed}}}\n')
            imp = ctfleet_cli(root, "import", str(book), "--into", str(work / "fleet"), profile=profile)
            assert imp.returncode == 0, imp.stdout + imp.stderr
            project = load_project(profile, root=root)
            assert project.registry.fleet_label.startswith("files in") and len(project.registry.devices) == 2 * N_CTS
            fleet = start_simfleet(project, work / "simfleet", port=16000 + octet, region=region)
            stack.append(fleet)
            db = postgresql.url(f"results_{region}")
            store = SqlStore(db)
            store.migrate()
            rc = start_collector(project, fleet, store)
            stack.append(rc)
            # the region's clusters as a simulated kube-state-metrics each (labelled simulated): the hosted KPI
            clusters = simulated_clusters(project.registry, seed=int(region))
            ksm = {name: serve_kube_state(namespaces) for name, namespaces in clusters.items()}
            stack.extend(_Stoppable(srv) for srv, _ in ksm.values())
            prom = Prometheus(work / "prometheus", regional_prometheus_config(
                region, rc.address, rules, write_url, names,
                extra_scrape_configs=ksm_scrape_configs({n: addr for n, (_, addr) in ksm.items()})))
            prom.start()
            stack.append(prom)
            regions[region] = {"project": project, "cts": cts, "store": store, "rc": rc, "prom": prom, "fleet": fleet,
                               "profile": profile, "db": db, "hosted": _hosted_truth(project.registry, clusters)}

        # ---- region 04's results service, and audits delivered from a store-and-forward spool
        a = regions["04"]
        svc = ResultsService(tmp_path / "svc-04", a["db"], a["profile"], {"pull-04": "p-04"}, root).start()
        stack.append(svc)
        ct = a["cts"][0]
        server = f"srv1-{code_slug(ct)}"
        host_controls = sorted(c for d, c in expected_pairs(a["project"].registry.cts[ct], a["project"].registry, a["project"].norms)
                               if d == server)
        assert host_controls, "the reference server has applicable controls"
        now = datetime.now(timezone.utc)
        audit = [ControlResult(ct=ct, device=server, control=c, status="fail" if i == 0 else "pass", source="audit",
                               evidence="simulated audit (test)", observed_at=now) for i, c in enumerate(host_controls)]
        spool = tmp_path / "spool"
        enqueue(spool, f"{server}-audit-1", audit)
        other = regions["05"]["cts"][0]
        enqueue(spool, "foreign-1", [ControlResult(ct=other, device="x", control=host_controls[0], status="pass", source="audit")])
        # many small batches, the service killed while they flow
        import threading

        for k in range(60):
            enqueue(spool, f"z-{k:03d}", [r.model_copy(update={"device": f"{server}", "evidence": f"run {k}"}) for r in audit[:1]])
        t = threading.Thread(target=lambda: deliver(spool, svc.endpoint("pull-04")))
        t.start()
        _wait(lambda: len(list(spool.glob("z-*.jsonl"))) < 50, 60, "some batches delivered")
        os.killpg(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(10)
        t.join(60)
        svc.start()
        got = deliver(spool, svc.endpoint("pull-04"))
        assert got.stopped is None and not list(spool.glob("*.jsonl"))
        assert set(got.rejected) <= {"foreign-1"}
        assert "this service takes region 04 only" in (spool / "rejected" / "foreign-1.reason").read_text()
        again = deliver(_respool(tmp_path, f"{server}-audit-1", audit), svc.endpoint("pull-04"))
        assert again.duplicates == [f"{server}-audit-1"]
        counts = a["store"].counts()
        assert a["store"].batch(f"{server}-audit-1")["results"] == len(audit)
        assert all(a["store"].batch(f"z-{k:03d}") is not None for k in range(60)), "every batch stored after the restart"
        assert counts["result_batches"] >= 61

        # the collector's next sweep reads them: the failing control shows at the region
        failing = host_controls[0]
        _wait(lambda: a["prom"].query(f'ctfleet_ct_control_failing{{ct="{ct}",control="{failing}"}}'), 90,
              "the delivered failing control at region 04's Prometheus")

        # the reference servers' node_exporter targets come from the collector's http_sd, with the CT labels
        # (each target's first scrape is spread over the interval: wait for all of them, then compare)
        want_servers = {f"srv1-{code_slug(c)}" for c in a["cts"]}

        def all_node_targets():
            up = a["prom"].query('up{job="node"}')
            return up if len({s["metric"]["device"] for s in up}) >= len(want_servers) else None

        node_up = _wait(all_node_targets, 90, "every node_exporter target discovered and scraped once")
        assert {s["metric"]["device"] for s in node_up} == want_servers
        assert all(s["metric"]["region"] == "04" and s["metric"]["ct"] in a["cts"] and s["metric"]["lot"] for s in node_up)

        # ---- the national Prometheus stopped for 60 s, then restarted
        _wait(lambda: nation.query('ctfleet_region:cts:count{sdr="05"}') and nation.query('ctfleet_region:cts:count{sdr="04"}'),
              90, "both regions at the nation")
        t_stop = time.time()
        nation.stop()
        time.sleep(60)
        nation.start()
        t_back = time.time()

        def caught_up():
            for region, r in regions.items():
                reg = r["prom"].query("timestamp(ctfleet:cts:count)")
                nat = nation.query(f'timestamp(ctfleet_region:cts:count{{sdr="{region}"}})')
                if not reg or not nat or float(nat[0]["value"][1]) < t_back:
                    return False
            return True
        _wait(caught_up, 120, "the nation catching up")
        time.sleep(10)
        window = int(time.time() - t_stop + 30)
        at = time.time() - 10
        for region, r in regions.items():
            for name in ("cts:count", "cts_meeting_norms:count_by_region", "ct_coverage:avg_by_lot"):
                reg = {json.dumps(s["metric"], sort_keys=True): s["value"][1]
                       for s in r["prom"].query(f"count_over_time(ctfleet:{name}[{window}s] @ {at})")}
                nat = {json.dumps({k: v for k, v in s["metric"].items() if k != "sdr"}, sort_keys=True): s["value"][1]
                       for s in nation.query(f'count_over_time(ctfleet_region:{name}{{sdr="{region}"}}[{window}s] @ {at})')}
                assert reg and reg == nat, f"region {region} {name}: samples at the region {reg} vs at the nation {nat}"

        # ---- ctfleet report against the national Prometheus: both regions, equal to their own figures
        truth = {region: _truth(r["rc"]) | {"cts_hosted": r["hosted"]} for region, r in regions.items()}
        assert all(0 < t["cts_hosted"] < t["cts"] for t in truth.values()), truth  # some tenants absent, most present
        for region, r in regions.items():
            assert truth[region]["cts"] == len(r["project"].registry.cts)
            dead = sum(1 for p in r["fleet"].profiles.values() if p.fault == "dead" or p.uplink_utilisation == 0.0)
            assert truth[region]["cts_connected"] == N_CTS - dead
        meets = {s.labels["ct"]: s.value for m in a["rc"].collector.exporter.version().metrics
                 if m.name == "ctfleet_ct_meets_norms" for s in m.samples}
        assert meets[ct] == 0, "the CT whose delivered audit fails a control does not meet its norms"

        def report_matches():
            out = tmp_path / "report"
            res = ctfleet_cli(root, "report", "--prometheus", nation.url, "--out", str(out), "--range", "10m")
            if res.returncode != 0:
                return False
            data = json.loads((out / "kpis.json").read_text())
            rows = {row["region"]: row for row in data["region"]}
            ok = set(rows) == set(REGIONS) and all(
                all(rows[g][k] == truth[g][k] for k in ("cts", "cts_connected", "cts_meeting_norms", "cts_equipped", "cts_hosted"))
                and abs(rows[g]["coverage"] - truth[g]["coverage"]) < 1e-9 for g in REGIONS)
            nat = data["national"]
            ok = ok and nat["cts"] == sum(t["cts"] for t in truth.values()) and \
                nat["cts_meeting_norms"] == sum(t["cts_meeting_norms"] for t in truth.values()) and \
                nat["cts_hosted"] == sum(t["cts_hosted"] for t in truth.values())
            return ok or (rows, nat, truth)
        last: list = []

        def matches() -> bool:
            last[:] = [report_matches()]
            return last[0] is True
        deadline = time.monotonic() + 60
        while not matches() and time.monotonic() < deadline:
            time.sleep(5)
        assert last[0] is True, f"national report (region rows, national row) vs the regions' figures: {last[0]}"
    finally:
        for thing in reversed(stack):
            thing.stop()
        for r in locals().get("regions", {}).values():
            r["store"].dispose()


class _Stoppable:
    def __init__(self, httpd):
        self.httpd = httpd

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _hosted_truth(registry, clusters) -> int:
    """CTs hosted, from the clusters' namespaces themselves (not through the rules): every tenant the stacks
    declare for the CT exists, is Active and carries the tier its stack labelled it with."""
    from ctfleet.core.hosting import declared_tenants

    active = {(ns.name, ns.tier) for namespaces in clusters.values() for ns in namespaces if ns.phase == "Active"}
    by_ct: dict[str, list] = {}
    for t in declared_tenants(registry):
        by_ct.setdefault(t.ct, []).append((t.namespace, t.tier))
    return sum(1 for tenants in by_ct.values() if all(t in active for t in tenants))


def _respool(tmp_path: Path, batch_id: str, rows) -> Path:
    from ctfleet.results.forward import enqueue

    spool = tmp_path / "spool-again"
    enqueue(spool, batch_id, rows)
    return spool
