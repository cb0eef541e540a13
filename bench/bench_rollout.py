#!/usr/bin/env python3
"""Rollout wall time and bytes per host on the booted test fleet: tuned settings vs stock.

For each fleet size and each configuration, on FRESH hosts (scripts/testhosts up N):

  first    ctfleet rollout site.yml --allow-disruptive (audit, remediate, audit again)
  rerun    the same, again (idempotent: changed=0 expected)

Configurations:
  stock     ansible-playbook defaults: forks 5, no pipelining, no fact cache, ControlPersist 60s
  tuned     ctfleet's settings: forks 25, pipelining, jsonfile fact cache, ControlPersist 120s
  mitogen   tuned + the mitogen_linear strategy (pip package `mitogen`), when it imports

Bytes per host are what the host's veth received (host -> container direction, from
/sys/class/net/vb-<host>/statistics/tx_bytes): Ansible's modules and the packages the
proxy served. ``proxy_upstream_MB`` is what apt-cacher-ng fetched from the mirror during
the run (growth of its cache), i.e. what would cross the satellite link once.

    .venv/bin/python bench/bench_rollout.py                       # sizes 5 20, stock tuned mitogen
    .venv/bin/python bench/bench_rollout.py --sizes 5 --configs stock tuned --json var/bench/rollout.json

Needs root and what scripts/testhosts needs. Workstations and one reference server per 5
hosts. Every fleet is torn down after its runs, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctfleet.project import load_project  # noqa: E402
from ctfleet.lab import testhosts as testfleet  # noqa: E402
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Tuning  # noqa: E402
from ctfleet.rollout.runner import mitogen_strategy_dir, run_rollout  # noqa: E402

CONFIGS = {
    "stock": Tuning.stock(),
    "tuned": Tuning(),
    "mitogen": Tuning(strategy="mitogen_linear"),
}


def veth_tx(status: dict) -> dict[str, int]:
    out = {}
    for name, h in status["hosts"].items():
        p = Path(f"/sys/class/net/{h['veth']}/statistics/tx_bytes")
        out[name] = int(p.read_text()) if p.exists() else 0
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def measure(config: str, n: int, project, ct, workdir: Path) -> dict:
    env = {"CTFLEET_TESTHOSTS_DIR": str(workdir / "state")}
    roles = {f"th{i:02d}": ("server" if i % 5 == 0 else "workstation") for i in range(1, n + 1)}
    proxy_cache = Path(os.environ.get("CTFLEET_CACHE_DIR", "/var/cache/ctfleet")) / "apt-cacher-ng"
    row: dict = {"config": config, "hosts": n}
    try:
        status = testfleet.up(n, env)
        inv = workdir / "inventory.json"
        inv.write_text(json.dumps(testfleet.inventory(status, ct, project.norms, roles)))
        paths = RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=workdir / "runs",
                             results=workdir / "results")
        for phase in ("first", "rerun"):
            req = RolloutRequest(playbook="site.yml", ct=ct.code, allow_disruptive=True, private_key=status["key"],
                                 control_path_dir=status["control_path_dir"], host_key_checking=False, wave="test",
                                 tuning=CONFIGS[config].model_copy(update={"forks": max(CONFIGS[config].forks, 1)}))
            tx0, cache0, t0 = veth_tx(status), dir_bytes(proxy_cache), time.monotonic()
            out = run_rollout(req, paths)
            wall = time.monotonic() - t0
            tx1 = veth_tx(status)
            per_host = [(tx1[h] - tx0[h]) for h in roles]
            row[phase] = {"wall_s": round(wall, 1), "exit": out.exit_code,
                          "changed": sum(h.final_counts()["changed"] for h in out.state.hosts.values()),
                          "failed_hosts": out.failed_hosts,
                          "errors": {h: out.state.hosts[h].first_error[:300] for h in out.failed_hosts},
                          "MB_per_host": round(sum(per_host) / len(per_host) / 1e6, 2),
                          "proxy_upstream_MB": round((dir_bytes(proxy_cache) - cache0) / 1e6, 2)}
            print(f"  {config:8} {n:3} hosts {phase:5}: {wall:7.1f} s, {row[phase]['MB_per_host']:6.2f} MB/host, "
                  f"changed {row[phase]['changed']}, exit {out.exit_code}", flush=True)
    finally:
        testfleet.down(env)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (scripts/testhosts)", file=sys.stderr)
        return 2
    configs = [c for c in args.configs if c != "mitogen" or mitogen_strategy_dir() is not None]
    project = load_project(root=ROOT, with_fleet=False)
    ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
    testfleet.build()
    rows = []
    for n in args.sizes:
        for config in configs:
            with tempfile.TemporaryDirectory(prefix="ctfleet-bench-") as tmp:
                rows.append(measure(config, n, project, ct, Path(tmp)))
    print("\n| hosts | config | first run (s) | re-run (s) | MB/host first | MB/host re-run | changed on re-run | failed |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        f, s = r.get("first", {}), r.get("rerun", {})
        print(f"| {r['hosts']} | {r['config']} | {f.get('wall_s')} | {s.get('wall_s')} | {f.get('MB_per_host')} | "
              f"{s.get('MB_per_host')} | {s.get('changed')} | {len(f.get('failed_hosts', [])) + len(s.get('failed_hosts', []))} |")
    by = {(r["hosts"], r["config"]): r for r in rows}
    print()
    for n in args.sizes:
        stock = by.get((n, "stock"))
        for c in ("tuned", "mitogen"):
            r = by.get((n, c))
            if stock and r and "rerun" in r and "rerun" in stock:
                print(f"{n} hosts, {c} / stock wall time: first {r['first']['wall_s'] / stock['first']['wall_s']:.2f}, "
                      f"re-run {r['rerun']['wall_s'] / stock['rerun']['wall_s']:.2f}; bytes/host re-run "
                      f"{r['rerun']['MB_per_host'] / max(stock['rerun']['MB_per_host'], 1e-9):.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
