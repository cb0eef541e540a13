#!/usr/bin/env python3
"""Rollout over commune links on the booted test fleet: stock Ansible vs ctfleet's default.

For each link type and each configuration, on FRESH hosts (scripts/testhosts up N) behind
the emulated uplink (scripts/testhosts link TYPE: the relay's round trip and loss, tc tbf
for the bandwidth, figures from ctfleet.lab.testhosts.link_profile):

  first    ctfleet rollout site.yml --allow-disruptive (audit, remediate, audit again)
  rerun    the same, again (idempotent: changed=0 expected)

Configurations:
  stock     ansible-playbook defaults: forks 5, linear, no pipelining, no fact cache, ControlPersist 60s
  default   what `ctfleet rollout` uses (Tuning()): mitogen_linear, forks 25, pipelining, fact cache
  linear    the default's settings with Ansible's linear strategy (--no-mitogen), optional

Bytes per host are what crossed the uplink for that host (the relay's count, both
directions: Ansible's modules, its results, and the packages the site cache fetched from
the SDR's), not the LAN. ``sdr_debs`` / ``dup`` are the package files the SDR cache served
during the run and how many of them it served more than once (each package should cross
the uplink once: the site's reference server caches for the workstations).

    .venv/bin/python bench/bench_rollout.py                                  # fibre adsl vsat x stock default, 5 hosts
    .venv/bin/python bench/bench_rollout.py --links vsat --hosts 5 --json var/bench/rollout.json

Needs root and what scripts/testhosts needs. One reference server per 5 hosts. Every
fleet is torn down after its runs, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctfleet.lab import testhosts as testfleet  # noqa: E402
from ctfleet.project import load_project  # noqa: E402
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Tuning  # noqa: E402
from ctfleet.rollout.runner import run_rollout  # noqa: E402

CONFIGS = {
    "stock": Tuning.stock(),
    "default": Tuning(),
    "linear": Tuning(strategy="linear"),
}


def sdr_debs(state: Path, since: int, cache: Path) -> tuple[int, int]:
    """Package files the SDR cache (the proxy on the bridge) served from line ``since`` on: (files, sent twice or more),
    counted in bytes against each file's size (apt-cacher-ng may log one response in two lines)."""
    log = state / "proxy-log" / "apt-cacher.log"
    text = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[since:]) if log.exists() else ""
    per_file = testfleet.packages_sent(text, cache)
    return len(per_file), len(testfleet.sent_twice(per_file))


def log_lines(state: Path) -> int:
    log = state / "proxy-log" / "apt-cacher.log"
    return len(log.read_text(encoding="utf-8", errors="replace").splitlines()) if log.exists() else 0


def measure(link: str, config: str, n: int, project, ct, workdir: Path) -> dict:
    state = workdir / "state"
    env = {"CTFLEET_TESTHOSTS_DIR": str(state)}
    roles = {f"th{i:02d}": ("server" if i % 5 == 0 else "workstation") for i in range(1, n + 1)}
    norms = {cid: r.value for cid, r in project.norms.resolve(ct).items()}
    profile = testfleet.link_profile(link, min_mbps=float(norms["LNK-1"]))
    row: dict = {"link": link, "config": config, "hosts": n, "profile": profile.__dict__}
    try:
        status = testfleet.up(n, env)
        inv = workdir / "inventory.json"
        site = next(iter(project.registry.sites_of(ct.code)), None)
        inv.write_text(json.dumps(testfleet.inventory(status, ct, project.norms, roles, site=site)))
        paths = RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=workdir / "runs",
                             results=workdir / "results")
        testfleet.set_link(profile, env)
        ips = {status["hosts"][h]["ip"] for h in roles}
        for phase in ("first", "rerun"):
            req = RolloutRequest(playbook="site.yml", ct=ct.code, allow_disruptive=True, private_key=status["key"],
                                 control_path_dir=status["control_path_dir"], host_key_checking=False, wave="test",
                                 tuning=CONFIGS[config])
            before, line0, t0 = testfleet.link_stats(env), log_lines(state), time.monotonic()
            out = run_rollout(req, paths)
            wall = time.monotonic() - t0
            after = testfleet.link_stats(env)
            per_host = [sum(after.get(ip, {}).get(k, 0) - before.get(ip, {}).get(k, 0) for k in ("down", "up")) for ip in ips]
            files, dup = sdr_debs(state, line0, Path(status["proxy_cache"]))
            row[phase] = {"wall_s": round(wall, 1), "exit": out.exit_code,
                          "changed": sum(h.final_counts()["changed"] for h in out.state.hosts.values()),
                          "failed_hosts": out.failed_hosts,
                          "errors": {h: out.state.hosts[h].first_error[:300] for h in out.failed_hosts},
                          "MB_per_host": round(sum(per_host) / len(per_host) / 1e6, 2),
                          "MB_max_host": round(max(per_host) / 1e6, 2), "sdr_debs": files, "dup": dup}
            print(f"  {link:5} {config:8} {n:3} hosts {phase:5}: {wall:7.1f} s, {row[phase]['MB_per_host']:6.2f} MB/host "
                  f"over the uplink, changed {row[phase]['changed']}, exit {out.exit_code}, SDR served {files} debs "
                  f"({dup} twice)", flush=True)
    finally:
        testfleet.down(env)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", nargs="+", default=["fibre", "adsl", "vsat"], choices=["fibre", "adsl", "4g", "vsat"])
    ap.add_argument("--configs", nargs="+", default=["stock", "default"], choices=list(CONFIGS))
    ap.add_argument("--hosts", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (scripts/testhosts)", file=sys.stderr)
        return 2
    project = load_project(root=ROOT, with_fleet=False)
    ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
    testfleet.build()
    rows = []
    for link in args.links:
        for config in args.configs:
            with tempfile.TemporaryDirectory(prefix="ctfleet-bench-") as tmp:
                rows.append(measure(link, config, args.hosts, project, ct, Path(tmp)))
    print(f"\nmachine: {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print("\n| link | config | first run (s) | re-run (s) | MB/host first | MB/host re-run | changed on re-run | SDR debs (twice) | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        f, s = r.get("first", {}), r.get("rerun", {})
        print(f"| {r['link']} | {r['config']} | {f.get('wall_s')} | {s.get('wall_s')} | {f.get('MB_per_host')} | "
              f"{s.get('MB_per_host')} | {s.get('changed')} | {f.get('sdr_debs')} ({f.get('dup')}) | "
              f"{len(f.get('failed_hosts', [])) + len(s.get('failed_hosts', []))} |")
    by = {(r["link"], r["config"]): r for r in rows}
    print()
    for link in args.links:
        stock, default = by.get((link, "stock")), by.get((link, "default"))
        if stock and default and "rerun" in stock and "rerun" in default:
            print(f"{link}: default / stock wall time: first {default['first']['wall_s'] / stock['first']['wall_s']:.2f}, "
                  f"re-run {default['rerun']['wall_s'] / stock['rerun']['wall_s']:.2f}; MB/host re-run "
                  f"{default['rerun']['MB_per_host']} vs {stock['rerun']['MB_per_host']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
