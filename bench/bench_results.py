"""Benchmark of the deployed data path's heavy parts (issue 10).

1. A region's whole audit — every host of the largest region of the generated fleet
   (simulated) x its applicable controls — delivered as one batch per host to the results
   service (real uvicorn process pinned to one core with ``taskset -c 0``, TLS, basic
   auth) on SQLite and on PostgreSQL; the peer is the file store (``ResultsStore``, one
   JSONL file per host, in process). Figures: results/s and the whole audit's time
   (goal: under 60 s on one core).
2. The exporter's /metrics with those results: snapshot build (registry + norms + the
   store's results) and text rendering, time and peak memory (goal: under 1 s).
3. The national Prometheus (remote-write receiver) fed the KPI recording-rule series of
   12 regions by simulated senders (Prometheus remote-write 1.0: protobuf + snappy):
   samples/s accepted and bytes per sample on the wire.

    .venv/bin/python bench/bench_results.py                  # all three, region 07 (~3 min)
    .venv/bin/python bench/bench_results.py --hosts 500 --skip-national

One run each; the machine is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctfleet.core.compliance import ControlResult, Source  # noqa: E402
from ctfleet.core.evaluate import expected_pairs  # noqa: E402
from ctfleet.project import load_project  # noqa: E402
from ctfleet.results import ResultsStore  # noqa: E402
from ctfleet.results.batch import render_batch  # noqa: E402


def region_audit(project, region: str, hosts: int | None):
    """{host: [results]} for every non-router device of the region (routers are audited over SNMP)."""
    reg = project.national.scoped(region)
    now = datetime.now(timezone.utc)
    per_host: dict[str, list[ControlResult]] = defaultdict(list)
    for ct in reg.cts.values():
        for device, control in expected_pairs(ct, reg, project.norms):
            if device is None or reg.devices[device].role.value == "router":
                continue
            status = "fail" if (hash((device, control)) % 7 == 0) else "pass"
            per_host[device].append(ControlResult(ct=ct.code, device=device, control=control, status=status, source=Source.AUDIT,
                                                  evidence="bench (simulated audit)", observed_at=now))
    names = sorted(per_host)[:hosts] if hosts else sorted(per_host)
    return reg, {h: per_host[h] for h in names}


def bench_service(label: str, database: str, audit: dict, profile: Path, senders: int = 4) -> dict:
    from ctfleet.lab.procs.results_service import ResultsService

    work = Path(tempfile.mkdtemp(prefix=f"bench-svc-{label}-"))
    svc = ResultsService(work, database, profile, {"bench": "bench-pw"}, ROOT)
    svc.argv = ["taskset", "-c", "0", *svc.argv]  # the service on one core; the senders elsewhere
    svc.start()
    bodies = [(f"{h}-audit", render_batch(rows).encode()) for h, rows in audit.items()]
    n_results = sum(len(r) for r in audit.values())
    ep = svc.endpoint("bench")
    errors: list = []
    idx = iter(range(len(bodies)))
    lock = threading.Lock()

    def send() -> None:
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            status, doc = ep.put(*bodies[i])
            if status != 201:
                errors.append((status, doc))
                return

    try:
        t0 = time.perf_counter()
        ts = [threading.Thread(target=send) for _ in range(senders)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        cpu = _child_cpu(svc.proc.pid)
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        raise SystemExit(f"{label}: refused: {errors[:2]}")
    return {"store": label, "batches": len(bodies), "results": n_results, "seconds": wall, "results_per_s": n_results / wall,
            "service_cpu_s": cpu}


def _child_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def bench_file_store(audit: dict) -> dict:
    d = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        store = ResultsStore(d)
        n = sum(len(r) for r in audit.values())
        t0 = time.perf_counter()
        for h, rows in audit.items():
            store.write_batch(Source.AUDIT, h, rows)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"store": "files (peer, in process)", "batches": len(audit), "results": n, "seconds": wall, "results_per_s": n / wall,
            "service_cpu_s": None}


def bench_metrics(project, reg, store) -> dict:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot

    tracemalloc.start()
    t0 = time.perf_counter()
    stored = list(store.iter_results(set(reg.cts)))
    t_read = time.perf_counter() - t0
    snap = build_snapshot(reg, project.norms, None, stored)
    t_build = time.perf_counter() - t0 - t_read
    col = CtfleetCollector(snap)
    r = CollectorRegistry()
    r.register(col)
    t1 = time.perf_counter()
    text = generate_latest(r)
    t_render = time.perf_counter() - t1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"results_read": len(stored), "read_s": t_read, "snapshot_s": t_build, "render_s": t_render,
            "metrics_bytes": len(text), "series": text.count(b"\n") - text.count(b"\n#"), "peak_mib": peak / 2**20,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_feed(reg, store, audit: dict) -> dict:
    """What a collector on this database reads per sweep (ctfleet.monitors.stored.StoredRows):
    the first look (every current row), a sweep after nothing arrived, and a sweep after one
    technician's batch (one host re-audited, every result newer)."""
    from ctfleet.monitors.stored import StoredRows
    from ctfleet.results.batch import parse_batch, render_batch

    feed = StoredRows(store, reg.cts)

    def look() -> tuple[float, float, int]:
        before, w0, c0 = feed.reads, time.perf_counter(), time.process_time()
        feed.parts()
        return time.perf_counter() - w0, time.process_time() - c0, feed.reads - before

    first, idle = look(), look()
    host = sorted(audit)[0]
    later = datetime.now(timezone.utc)
    rows = [r.model_copy(update={"observed_at": later}) for r in audit[host]]
    store.ingest(parse_batch(f"bench-{host}-again", render_batch(rows)), sender="bench")
    delta = look()
    return {"first": first, "idle": idle, "delta": delta, "batch_rows": len(rows)}


# ------------------------------------------------------------------ remote write (simulated senders)
# Hand-encoded protobuf: remote-write 1.0's WriteRequest is four small messages
# (WriteRequest{timeseries}, TimeSeries{labels, samples}, Label{name, value},
# Sample{value, timestamp}); encoding them here avoids generating code from the .proto
# (no protoc on these machines). Snappy block format by cramjam.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _series(labels: dict[str, str], samples: list[tuple[float, int]]) -> bytes:
    import struct

    body = b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in sorted(labels.items()))
    for value, ts in samples:
        body += _field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(ts))
    return _field(1, body)


def bench_national(project) -> dict:
    import cramjam
    from ruamel.yaml import YAML

    from ctfleet.core.conventions import REGION_EXTERNAL_LABEL, REGION_KPI_PREFIX, RULES_DIR
    from ctfleet.core.datapath import kpi_record_names
    from ctfleet.lab.datapath import national_prometheus

    names = kpi_record_names(YAML(typ="safe").load((ROOT / RULES_DIR / "kpi.rules.yml").read_text()))
    reg = project.national
    dims = {"lot": sorted({str(c.lot) for c in reg.cts.values()}), "segment": sorted({c.segment.value for c in reg.cts.values()})}
    work = Path(tempfile.mkdtemp(prefix="bench-nation-"))
    nation = national_prometheus(work, ROOT).start()
    try:
        regions = sorted(reg.regions)
        series: list[dict[str, str]] = []
        for region in regions:
            for n in names:
                base = {"__name__": REGION_KPI_PREFIX + n.split(":", 1)[1], REGION_EXTERNAL_LABEL: region}
                dim = n.rsplit("_by_", 1)[1] if "_by_" in n else None
                if dim is None:
                    series.append(base)
                elif dim == "region":
                    series.append({**base, "region": region})
                else:
                    series += [{**base, dim: v} for v in dims[dim]]
        # one hour of 15 s evaluations, sent as each region's queue would: 2000 samples a request
        steps = 240
        t_end = int(time.time() * 1000)
        per_region = defaultdict(list)
        for s in series:
            per_region[s[REGION_EXTERNAL_LABEL]].append(s)
        requests = []
        for region, ss in per_region.items():
            per_req = max(1, 2000 // len(ss))
            for k0 in range(0, steps, per_req):
                ks = range(k0, min(steps, k0 + per_req))
                body = b"".join(_series(s, [(float(i % 50), t_end - (steps - k) * 15000) for k in ks]) for i, s in enumerate(ss))
                requests.append((cramjam.snappy.compress_raw(body), len(ss) * len(ks)))
        sent_bytes = sum(len(b) for b, _ in requests)
        samples = sum(n for _, n in requests)
        t0 = time.perf_counter()
        for body, _ in requests:
            req = urllib.request.Request(nation.url + "/api/v1/write", data=bytes(body), method="POST", headers={
                "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status in (200, 204), r.status
        wall = time.perf_counter() - t0
        got = nation.query(f"count({{__name__=~\"{REGION_KPI_PREFIX}.+\"}})")
        stored_series = int(float(got[0]["value"][1])) if got else 0
    finally:
        nation.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"regions": len(regions), "series": len(series), "stored_series": stored_series, "samples": samples,
            "requests": len(requests), "seconds": wall, "samples_per_s": samples / wall, "bytes_per_sample": sent_bytes / samples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--region", default="07")
    ap.add_argument("--hosts", type=int, default=None, help="only the first N hosts (default: the region's all)")
    ap.add_argument("--skip-national", action="store_true")
    args = ap.parse_args()

    from ctfleet.lab.procs.postgres import PostgreSQL
    from ctfleet.results.db import SqlStore

    project = load_project(root=ROOT)
    reg, audit = region_audit(project, args.region, args.hosts)
    n = sum(len(r) for r in audit.values())
    print(f"region {args.region} (generated fleet, simulated): {len(audit):,} hosts, {n:,} applicable host controls")
    profile = Path(tempfile.mkdtemp(prefix="bench-profile-")) / f"sdr-{args.region}.yaml"
    profile.write_text(f'name: sdr-{args.region}\nregion: "{args.region}"\n')

    rows = [bench_file_store(audit)]
    sqlite_dir = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    rows.append(bench_service("SQLite", str(sqlite_dir / "results.db"), audit, profile))
    with PostgreSQL(Path(tempfile.mkdtemp(prefix="bench-pg-"))).start() as pg:
        pg_url = pg.url("results")
        rows.append(bench_service("PostgreSQL", pg_url, audit, profile))
        metrics = {"PostgreSQL": bench_metrics(project, reg, SqlStore(pg_url))}
        feeds = {"PostgreSQL": bench_feed(reg, SqlStore(pg_url), audit)}
    metrics["SQLite"] = bench_metrics(project, reg, SqlStore(sqlite_dir / "results.db"))
    feeds["SQLite"] = bench_feed(reg, SqlStore(sqlite_dir / "results.db"), audit)
    shutil.rmtree(sqlite_dir, ignore_errors=True)

    print("\n| store | batches | results | s | results/s | service CPU s | vs files |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cpu = f"{r['service_cpu_s']:.1f}" if r["service_cpu_s"] is not None else "-"
        print(f"| {r['store']} | {r['batches']:,} | {r['results']:,} | {r['seconds']:.1f} | {r['results_per_s']:,.0f} | {cpu} | "
              f"{r['seconds'] / rows[0]['seconds']:.1f}x |")
    print("\n| exporter on | results read | read s | snapshot s | render s | /metrics MB | series | peak traced MiB | RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, m in metrics.items():
        print(f"| {k} | {m['results_read']:,} | {m['read_s']:.2f} | {m['snapshot_s']:.2f} | {m['render_s']:.2f} | "
              f"{m['metrics_bytes'] / 1e6:.1f} | {m['series']:,} | {m['peak_mib']:.0f} | {m['rss_mib']:.0f} |")
    print("\n| collector on | look | rows read | wall s | CPU s |")
    print("|---|---|---:|---:|---:|")
    for k, f in feeds.items():
        for name, label in (("first", "first sweep (every row)"), ("idle", "a sweep, nothing new"),
                            ("delta", f"a sweep after one host's batch ({f['batch_rows']} results)")):
            wall, cpu_s, n_rows = f[name]
            print(f"| {k} | {label} | {n_rows:,} | {wall:.3f} | {cpu_s:.3f} |")
    if not args.skip_national:
        nat = bench_national(project)
        print("\n| regions | KPI series | stored at the nation | samples | requests | s | samples/s | bytes/sample (snappy) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {nat['regions']} | {nat['series']:,} | {nat['stored_series']:,} | {nat['samples']:,} | {nat['requests']} | "
              f"{nat['seconds']:.2f} | {nat['samples_per_s']:,.0f} | {nat['bytes_per_sample']:.2f} |")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, "
          f"{subprocess.run(['prometheus', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
