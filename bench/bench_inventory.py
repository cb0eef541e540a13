#!/usr/bin/env python3
"""How the registry load and Ansible's inventory grow with the number of sites.

For regional profiles of increasing size and the national one, on the generated fleet:

  load      load_project(profile): registry + norms + generated fleet, then region scope
  fleet     ctfleet.core.fleet.generate on the profile's own CTs only (how generation alone grows)
  render    ctfleet.ansible_inventory.render (pure) + json.dumps, as the script does
  script    inventory/ctfleet_inventory.py --list, a fresh process (what Ansible runs)
  graph     ansible-inventory -i inventory/ctfleet_inventory.py --graph (parse only: what a play pays)
  list      ansible-inventory -i inventory/ctfleet_inventory.py --list (parse + every host's merged vars)

Subprocess figures are wall time plus the child's CPU (user+sys of the child and its
descendants, from os.wait4 — the per-child form of getrusage(RUSAGE_CHILDREN)) and peak
RSS. In-process figures are CPU time of this process. Every figure is the least of --repeat
runs (the machine may be shared; CPU time is the figure least disturbed by other load). A least-squares line
``time = fixed + per_site * sites`` is fitted for each measure, with the log-log slope
(1.0 = linear growth once the fixed cost is negligible).

    .venv/bin/python bench/bench_inventory.py                 # regions 12 10 02 03 07 + national
    .venv/bin/python bench/bench_inventory.py --regions 12 10 --no-national --repeat 1
    .venv/bin/python bench/bench_inventory.py --json var/bench/inventory.json

Ansible is isolated from the machine's configuration (empty ANSIBLE_CONFIG, private
ANSIBLE_HOME) and found in the project's venv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "inventory" / "ctfleet_inventory.py"
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_INVENTORY = VENV_BIN / "ansible-inventory"

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ctfleet.ansible_inventory import render  # noqa: E402
from ctfleet.project import load_project  # noqa: E402


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    out_mb: float


@dataclass
class Row:
    profile: str
    cts: int
    sites: int
    hosts: int
    load_s: float
    fleet_s: float
    render_s: float
    script: Run
    graph: Run
    list: Run
    extra: dict = field(default_factory=dict)


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Least CPU time of this process over `repeat` calls (CPU, not wall: the machine may be shared)."""
    best, result = math.inf, None
    for _ in range(repeat):
        t = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t)
    return best, result


def run_child(argv: list[str], env: dict, out: Path) -> Run:
    """Run a command with stdout to a file; wall time, CPU and peak RSS of that child alone."""
    with out.open("wb") as fh:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    if proc.returncode != 0 or b"WARNING" in stderr:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr.decode(errors='replace')}")
    return Run(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, max_rss_mb=usage.ru_maxrss / 1024,
               out_mb=out.stat().st_size / 1e6)


def measure(profile_path: Path, name: str, env: dict, tmp: Path, repeat: int) -> Row:
    from ctfleet.core.fleet import generate

    load_s, project = best_of(repeat, lambda: load_project(profile_path=profile_path, root=ROOT))
    reg = project.registry
    scoped_only = load_project(profile_path=profile_path, root=ROOT, with_fleet=False).registry
    fleet_s, _ = best_of(repeat, lambda: generate(scoped_only, project.norms, seed=project.profile.fleet.seed))
    render_s, text = best_of(repeat, lambda: json.dumps(render(project), sort_keys=True, separators=(",", ":")))
    env = dict(env, CTFLEET_PROFILE=str(profile_path))
    def child(argv: list[str], out: str) -> Run:  # each figure's least value over `repeat` runs: least disturbed by other load
        runs = [run_child(argv, env, tmp / out) for _ in range(repeat)]
        return Run(wall_s=min(r.wall_s for r in runs), cpu_s=min(r.cpu_s for r in runs),
                   max_rss_mb=max(r.max_rss_mb for r in runs), out_mb=runs[0].out_mb)

    script = child([str(SCRIPT), "--list"], f"{name}-script.json")
    graph = child([str(ANSIBLE_INVENTORY), "-i", str(SCRIPT), "--graph"], f"{name}-graph.txt")
    listed = child([str(ANSIBLE_INVENTORY), "-i", str(SCRIPT), "--list"], f"{name}-list.json")
    return Row(profile=name, cts=len(reg.cts), sites=len(reg.sites), hosts=len(reg.devices), load_s=load_s,
               fleet_s=fleet_s, render_s=render_s, script=script, graph=graph, list=listed,
               extra={"render_mb": len(text) / 1e6})


def fit(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b x, R², and the log-log slope (keys name x "site"; also used with hosts)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum((y - a - b * x) ** 2 for x, y in zip(xs, ys)) / ss_tot if ss_tot else 1.0
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mlx, mly = sum(lx) / n, sum(ly) / n
    slx = sum((v - mlx) ** 2 for v in lx)
    k = sum((u - mlx) * (v - mly) for u, v in zip(lx, ly)) / slx if slx else 0.0
    return {"fixed_s": a, "per_site_ms": b * 1000, "r2": r2, "loglog_slope": k}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem = next((line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "unknown")
    version = subprocess.run([str(ANSIBLE_INVENTORY), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {"load_average": load, "arch": platform.machine(), "nproc": os.cpu_count(), "cpu": cpu, "memory": mem,
            "python": platform.python_version(), "ansible": version, "kernel": platform.release()}


MEASURES = {
    "load_project (CPU)": lambda r: r.load_s,
    "generate, own CTs (CPU)": lambda r: r.fleet_s,
    "render + JSON (CPU)": lambda r: r.render_s,
    "script --list (CPU)": lambda r: r.script.cpu_s,
    "ansible-inventory --graph (CPU)": lambda r: r.graph.cpu_s,
    "ansible-inventory --list (CPU)": lambda r: r.list.cpu_s,
    "ansible-inventory --list (wall)": lambda r: r.list.wall_s,
}


def report(rows: list[Row], info: dict) -> str:
    out = [f"Machine: {info['arch']}, {info['nproc']} CPU ({info['cpu']}), {info['memory']} RAM, "
           f"Linux {info['kernel']}, Python {info['python']}, {info['ansible']}; load average at the end {info['load_average']}.", ""]
    out += ["In-process figures (load_project, generate, render) are CPU seconds of the benchmark process; "
            "subprocess figures are wall / CPU seconds of the child and its descendants; each is the least of the runs.", "",
            "| profile | CTs | sites | hosts | load_project s | generate s | render s | script --list s | "
            "--graph s | --list s | --list peak RSS MB | script JSON MB | --list JSON MB | --list CPU ms/site |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r.profile} | {r.cts} | {r.sites} | {r.hosts} | {r.load_s:.2f} | {r.fleet_s:.3f} | {r.render_s:.3f} | "
                   f"{r.script.wall_s:.2f} / {r.script.cpu_s:.2f} | {r.graph.wall_s:.2f} / {r.graph.cpu_s:.2f} | "
                   f"{r.list.wall_s:.2f} / {r.list.cpu_s:.2f} | {r.list.max_rss_mb:.0f} | {r.script.out_mb:.1f} | "
                   f"{r.list.out_mb:.1f} | {1000 * r.list.cpu_s / r.sites:.1f} |")
    if len(rows) >= 2:
        out += ["", "Growth with the number of sites (least squares over the profiles above):", "",
                "| measure | fixed s | per site ms | R² | log-log slope | per host ms (fit on hosts) | R² |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        xs, hs = [r.sites for r in rows], [r.hosts for r in rows]
        for name, get in MEASURES.items():
            ys = [get(r) for r in rows]
            f, h = fit(xs, ys), fit(hs, ys)
            out.append(f"| {name} | {f['fixed_s']:.2f} | {f['per_site_ms']:.2f} | {f['r2']:.3f} | {f['loglog_slope']:.2f} | "
                       f"{h['per_site_ms']:.3f} | {h['r2']:.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", nargs="*", default=["12", "10", "02", "03", "07"], help="HCP region codes, smallest first")
    parser.add_argument("--no-national", action="store_true", help="skip the national profile")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for every timing (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    if not ANSIBLE_INVENTORY.exists():
        parser.error(f"{ANSIBLE_INVENTORY} not found: run scripts/setup")
    try:
        from ctfleet.core.fleet import generate  # noqa: F401
    except ImportError as exc:
        parser.error(f"the fleet generator is missing ({exc}); this benchmark measures the generated fleet")

    rows = []
    with tempfile.TemporaryDirectory(prefix="ctfleet-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "ansible.cfg").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CTFLEET_"))}
        env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
                   ANSIBLE_HOME=str(tmp / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
                   ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_NOCOLOR="1")
        profiles = [(f"region {r}", f'name: bench-region-{r}\nregion: "{r}"\n') for r in args.regions]
        if not args.no_national:
            profiles.append(("national", "name: bench-national\n"))
        for name, text in profiles:
            path = tmp / (name.replace(" ", "-") + ".yaml")
            path.write_text(text + "fleet: {source: generated}\n")
            row = measure(path, name.replace(" ", "-"), env, tmp, args.repeat)
            row.profile = name
            rows.append(row)
            print(f"measured {name}: {row.sites} sites, {row.hosts} hosts, --list {row.list.wall_s:.1f}s", file=sys.stderr)

    rows.sort(key=lambda r: r.sites)
    info = machine()
    print(report(rows, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info,
                                         "rows": [asdict(r) for r in rows],
                                         "fits": {n: fit([r.sites for r in rows], [g(r) for r in rows]) for n, g in MEASURES.items()}
                                         if len(rows) >= 2 else {}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
