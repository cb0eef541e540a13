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
    .venv/bin/python bench/bench_rollout.py --links vsat --converge-with default   # re-runs only, both configs
    .venv/bin/python bench/bench_rollout.py --first-limit 1800 --json var/bench/rollout.json  # the issue's one run

--first-limit S stops a first converge that runs longer than S seconds (stock's over VSAT
takes hours): its time so far bounds the ratio, the fleet is then finished with
--finish-with (default: the default configuration, recorded as the row's ``finish`` phase,
not measured against anything) and the row's own configuration is measured on the re-run.

With --json, the JSON and a Markdown table beside it (.md) are rewritten after every phase,
so a run cut short keeps what it measured. Needs root and what scripts/testhosts needs. One reference server per 5 hosts. Every
fleet is torn down after its runs, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
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


def limited_run(limit: float | None):
    """ansible-runner's own job timeout (status "timeout": it kills ansible-playbook) for a run
    limited to ``limit`` seconds; the plain run otherwise."""
    if not limit:
        return {}
    import ansible_runner

    return {"run_fn": lambda **kw: ansible_runner.run(timeout=int(limit), **kw)}


def unfinished(out, wall: float) -> dict:
    """A phase that did not run to its end (canceled, or stopped at --first-limit): its time so far
    and how far it got."""
    return {"wall_s": round(wall, 1), "exit": out.exit_code,
            "changed": sum(h.final_counts()["changed"] for h in out.state.hosts.values()),
            "tasks_done": {h: s.tasks_done for h, s in out.state.hosts.items()}}


def measure(link: str, config: str, n: int, project, ct, workdir: Path, save=lambda row: None,
            converge_with: str | None = None, first_limit: float | None = None, finish_with: str = "default") -> dict:
    """One (link, config) row: a fresh fleet, first converge and re-run. ``save(row)`` is called after
    each phase (and on failure), so a run cut short still leaves what it measured. A failure (the
    fleet does not boot, the link cannot be set, the rollout raises) is recorded in ``row["error"]``
    and the next row goes on. ``converge_with``: the first converge runs with that configuration
    instead (recorded in the row; the row's own configuration is then measured on the re-run only).
    ``first_limit``: a first converge still running after that many seconds is stopped (recorded
    with ``stopped_at_limit``), the fleet is converged by ``finish_with`` (phase ``finish``) and the
    re-run is measured with the row's own configuration."""
    state = workdir / "state"
    # Only the state dir is per fleet: CTFLEET_TESTHOSTS_NET / _PROXY_PORT come from the
    # environment (os.environ reaches scripts/testhosts), so parallel benches keep their own bridge.
    env = {"CTFLEET_TESTHOSTS_DIR": str(state)}
    roles = {f"th{i:02d}": ("server" if i % 5 == 0 else "workstation") for i in range(1, n + 1)}
    norms = {cid: r.value for cid, r in project.norms.resolve(ct).items()}
    profile = testfleet.link_profile(link, min_mbps=float(norms["LNK-1"]))
    row: dict = {"link": link, "config": config, "hosts": n, "profile": profile.__dict__,
                 "first_config": converge_with or config}
    try:
        status = testfleet.up(n, env)
        inv = workdir / "inventory.json"
        site = next(iter(project.registry.sites_of(ct.code)), None)
        inv.write_text(json.dumps(testfleet.inventory(status, ct, project.norms, roles, site=site)))
        paths = RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=workdir / "runs",
                             results=workdir / "results")
        testfleet.set_link(profile, env)
        ips = {status["hosts"][h]["ip"] for h in roles}
        phases = ["first", "rerun"]
        while phases:
            phase = phases.pop(0)
            run_config = {"first": row["first_config"], "finish": finish_with}.get(phase, config)
            print(f"  {link:5} {config:8} {n:3} hosts {phase:6}: started {time.strftime('%H:%M:%S')} ({run_config}), "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            row[f"{phase}_started"] = time.strftime("%H:%M:%S")
            save(row)
            req = RolloutRequest(playbook="site.yml", ct=ct.code, allow_disruptive=True, private_key=status["key"],
                                 control_path_dir=status["control_path_dir"], host_key_checking=False, wave="test",
                                 tuning=CONFIGS[run_config])
            before, line0, t0 = testfleet.link_stats(env), log_lines(state), time.monotonic()
            handler = signal.getsignal(signal.SIGTERM)
            out = run_rollout(req, paths, **limited_run(first_limit if phase == "first" else None))
            wall = time.monotonic() - t0
            # ansible-runner puts its own SIGTERM/SIGINT handler in place for the run (it cancels
            # ansible-playbook and returns "canceled") and leaves it there: put ours back, and a
            # canceled run stops the bench (its time so far is kept, marked canceled).
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if out.runner_status == "canceled":
                row[phase] = {**unfinished(out, wall), "canceled": True}
                raise KeyboardInterrupt(f"SIGTERM: {phase} run canceled after {wall:.0f} s")
            if out.runner_status == "timeout":
                # stopped at --first-limit: the time so far bounds the ratio; finish the fleet, then the re-run
                row[phase] = {**unfinished(out, wall), "stopped_at_limit": first_limit}
                print(f"  {link:5} {config:8} {n:3} hosts {phase:6}: stopped at the {first_limit:.0f} s limit, unfinished "
                      f"({row[phase]['changed']} changes made); the fleet is finished with {finish_with}", flush=True)
                stop_leftovers(workdir)
                phases.insert(0, "finish")
                save(row)
                continue
            after = testfleet.link_stats(env)
            per_host = [sum(after.get(ip, {}).get(k, 0) - before.get(ip, {}).get(k, 0) for k in ("down", "up")) for ip in ips]
            files, dup = sdr_debs(state, line0, Path(status["proxy_cache"]))
            row[phase] = {"wall_s": round(wall, 1), "exit": out.exit_code,
                          "changed": sum(h.final_counts()["changed"] for h in out.state.hosts.values()),
                          "failed_hosts": out.failed_hosts,
                          "errors": {h: out.state.hosts[h].first_error[:300] for h in out.failed_hosts},
                          "MB_per_host": round(sum(per_host) / len(per_host) / 1e6, 2),
                          "MB_max_host": round(max(per_host) / 1e6, 2), "sdr_debs": files, "dup": dup}
            if phase == "finish":
                row[phase]["config"] = finish_with
            print(f"  {link:5} {config:8} {n:3} hosts {phase:6}: {wall:7.1f} s, {row[phase]['MB_per_host']:6.2f} MB/host "
                  f"over the uplink, changed {row[phase]['changed']}, exit {out.exit_code}, SDR served {files} debs "
                  f"({dup} twice)", flush=True)
            save(row)
    except Exception as e:  # noqa: BLE001 - a bench row records its failure and the next row runs
        row["error"] = f"{type(e).__name__}: {str(e)[-1500:]}"
        print(f"  {link:5} {config:8} FAILED: {row['error']}", flush=True)
    finally:
        row["load_end"] = round(os.getloadavg()[0], 2)
        save(row)
        testfleet.down(env)
        stop_leftovers(workdir)
    return row


def stop_leftovers(workdir: Path) -> None:
    """After a canceled or stopped run, mitogen's multiplexer (forked from ansible-playbook, same
    command line) may outlive its parent: stop the processes whose command line names this row's
    inventory, and nothing else. Not the whole row directory: the fleet's own services (the link
    relay, the SDR cache) name its state directory, and a run stopped at --first-limit goes on
    with the same fleet (the first version killed the relay there, and the row failed)."""
    mark = str(workdir / "inventory.json").encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
                print(f"  stopped a leftover process {proc.name} of this row", flush=True)
        except (OSError, ProcessLookupError):
            continue


def table(rows: list[dict]) -> list[str]:
    out = ["| link | config | first run (s) | re-run (s) | MB/host first | MB/host re-run | changed on re-run | "
           "SDR debs (twice) first | SDR debs (twice) re-run | failed hosts | error |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        f, s = r.get("first", {}), r.get("rerun", {})
        failed = sorted(set(f.get("failed_hosts", [])) | set(s.get("failed_hosts", [])))
        first_s, rerun_s = (f"> {x['wall_s']} (canceled)" if x.get("canceled") else
                            f"> {x['wall_s']} (stopped at the limit, unfinished)" if x.get("stopped_at_limit") else
                            x.get("wall_s", "-") for x in (f, s))
        if r.get("first_config", r["config"]) != r["config"]:
            first_s = f"{first_s} (by {r['first_config']}, not {r['config']})"
        if "finish" in r:
            first_s = f"{first_s}; finished by {r['finish']['config']} in {r['finish'].get('wall_s', '-')}"
        out.append(f"| {r['link']} | {r['config']} | {first_s} | {rerun_s} | "
                   f"{f.get('MB_per_host', '-')} | {s.get('MB_per_host', '-')} | {s.get('changed', '-')} | "
                   f"{f.get('sdr_debs', '-')} ({f.get('dup', '-')}) | {s.get('sdr_debs', '-')} ({s.get('dup', '-')}) | "
                   f"{', '.join(failed) or '-'} | {r.get('error', '-')[:120] if r.get('error') else '-'} |")
    return out


def ratios(rows: list[dict], links: list[str]) -> list[str]:
    by = {(r["link"], r["config"]): r for r in rows}
    out = []
    for link in links:
        stock, default = by.get((link, "stock")), by.get((link, "default"))
        if stock and default and stock.get("first", {}).get("canceled") and "wall_s" in default.get("first", {}):
            # stock did not finish: its time so far bounds the ratio from above
            out.append(f"{link}: default / stock wall time: first < {default['first']['wall_s'] / stock['first']['wall_s']:.2f} "
                       f"(stock canceled after {stock['first']['wall_s']} s, unfinished); re-run not measured for stock")
        elif stock and default and stock.get("first", {}).get("stopped_at_limit") and "rerun" in stock and "rerun" in default:
            out.append(f"{link}: default / stock wall time: first < {default['first']['wall_s'] / stock['first']['wall_s']:.2f} "
                       f"(stock stopped at the limit after {stock['first']['wall_s']} s, unfinished), re-run "
                       f"{default['rerun']['wall_s'] / stock['rerun']['wall_s']:.2f} (stock's fleet finished by "
                       f"{stock['finish']['config']}); MB/host re-run {default['rerun']['MB_per_host']} vs "
                       f"{stock['rerun']['MB_per_host']}")
        elif stock and default and "rerun" in stock and "rerun" in default and stock.get("first_config", "stock") != "stock":
            out.append(f"{link}: default / stock wall time: re-run {default['rerun']['wall_s'] / stock['rerun']['wall_s']:.2f} "
                       f"(stock's fleet converged by {stock['first_config']}: no first-run ratio); MB/host re-run "
                       f"{default['rerun']['MB_per_host']} vs {stock['rerun']['MB_per_host']}")
        elif stock and default and "rerun" in stock and "rerun" in default:
            out.append(f"{link}: default / stock wall time: first {default['first']['wall_s'] / stock['first']['wall_s']:.2f}, "
                       f"re-run {default['rerun']['wall_s'] / stock['rerun']['wall_s']:.2f}; MB/host re-run "
                       f"{default['rerun']['MB_per_host']} vs {stock['rerun']['MB_per_host']}")
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"node": platform.node(), "cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--links", nargs="+", default=["fibre", "adsl", "vsat"], choices=["fibre", "adsl", "4g", "vsat"])
    ap.add_argument("--configs", nargs="+", default=["stock", "default"], choices=list(CONFIGS))
    ap.add_argument("--hosts", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--converge-with", choices=list(CONFIGS),
                    help="run every row's first converge with this configuration (e.g. default): the rows' own "
                         "configurations are then measured on the re-run only (stock's first run over VSAT takes hours)")
    ap.add_argument("--first-limit", type=float, metavar="SECONDS",
                    help="stop a first converge still running after SECONDS (its time bounds the ratio), finish the "
                         "fleet with --finish-with, then measure the re-run")
    ap.add_argument("--finish-with", choices=list(CONFIGS), default="default")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (scripts/testhosts)", file=sys.stderr)
        return 2
    project = load_project(root=ROOT, with_fleet=False)
    ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
    testfleet.build()
    # `timeout` sends SIGTERM: unwind through measure()'s finally so the fleet is torn down.
    def on_term(*_):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    info = {**machine(), "load_start": [round(x, 2) for x in os.getloadavg()], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "args": {"links": args.links, "configs": args.configs, "hosts": args.hosts, "converge_with": args.converge_with,
                     "first_limit": args.first_limit, "finish_with": args.finish_with}}
    print(f"machine: {info['node']}, {info['cpus']} CPUs ({info['cpu_model']}), kernel {info['kernel']}, "
          f"load average at start {info['load_start']}", flush=True)
    rows: list[dict] = []
    partial: list[dict] = []  # the row being measured, until measure() returns it

    def save(row: dict | None = None) -> None:
        """Write what is measured so far (the JSON and a Markdown table beside it), after every phase."""
        if row is not None:
            partial[:] = [row]
        current = rows + [r for r in partial if r not in rows]
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            doc = {**info, "load_now": [round(x, 2) for x in os.getloadavg()], "rows": current}
            args.json.write_text(json.dumps(doc, indent=1))
            args.json.with_suffix(".md").write_text("\n".join(table(current) + [""] + ratios(current, args.links)) + "\n")

    try:
        for link in args.links:
            for config in args.configs:
                with tempfile.TemporaryDirectory(prefix="ctfleet-bench-") as tmp:
                    rows.append(measure(link, config, args.hosts, project, ct, Path(tmp), save=save,
                                        converge_with=args.converge_with, first_limit=args.first_limit,
                                        finish_with=args.finish_with))
                save()
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e}): rows measured so far follow", flush=True)
        rows.extend(r for r in partial if r not in rows)
        for r in partial:
            r.setdefault("error", f"interrupted ({e}) during this row, after {', '.join(p for p in ('first', 'rerun') if p in r) or 'no phase'}")
    info["load_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(f"\nmachine: {info['node']} {info['cpus']} CPUs, load average {info['load_start']} at the start, "
          f"{info['load_end']} at the end\n")
    print("\n".join(table(rows) + [""] + ratios(rows, args.links)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
