"""Benchmark: mock evaluation of all 27 Pulumi stacks, and growth with hosted CTs.

    .venv/bin/python bench/bench_stacks.py                 # all 27 stacks + growth series, markdown to stdout
    .venv/bin/python bench/bench_stacks.py --sizes 50,200  # a shorter growth series
    .venv/bin/python bench/bench_stacks.py --json out.json

What is timed (one process, stacks one after another, as ``tests/test_stacks_mocks.py`` does
per worker):

- mock evaluation: the Pulumi program under ``pulumi.runtime`` mocks — config validation,
  planning, every resource registered with the SDK — per stack; "registrations" counts
  components and the provider too, "objects" only Kubernetes objects;
- plan + render: the pure planner and renderer alone (what ``ctfleet stacks plan`` runs);
- schema: validating every object against the Kubernetes OpenAPI schema (cached validator);
- growth: one regional stack whose region is given N synthetic CTs (copies of the region's
  communes under new codes, same segments), to see how the cost scales with hosted CTs.

Not a test: figures depend on the machine and its load; the point is the shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctfleet.core.models import Level, Tier  # noqa: E402
from ctfleet.stacks.generate import read_stack_file  # noqa: E402
from ctfleet.stacks.manifests import render  # noqa: E402
from ctfleet.lab.pulumi_mocks import run_stack, with_kubeconfig  # noqa: E402
from ctfleet.stacks.program import STACKS_DIR, Inputs, load_inputs, main, plan_for  # noqa: E402
from ctfleet.stacks.schema import validator  # noqa: E402


def stack_config(name: str) -> dict:
    """The committed config plus a (test) secret kubeconfig, as before a real `pulumi up`."""
    return with_kubeconfig(read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{name}.yaml")[0])


def measure(inputs: Inputs, name: str) -> dict:
    cfg = stack_config(name)
    t0 = time.perf_counter()
    objects = render(plan_for(inputs, name, cfg, secret_keys={"ctfleet:kubeconfig"}))
    t1 = time.perf_counter()
    v = validator()
    errors = sum(1 for o in objects if v.errors(o))
    t2 = time.perf_counter()
    cap = run_stack(name, cfg, lambda: main(inputs))
    tenants = sum(1 for o in objects if o["kind"] == "Namespace")
    return {"stack": name, "tenants": tenants, "objects": len(cap.manifests), "registrations": len(cap.registrations),
            "mock_s": round(cap.seconds, 3), "plan_render_s": round(t1 - t0, 4), "schema_s": round(t2 - t1, 4),
            "schema_errors": errors}


def with_synthetic_region(inputs: Inputs, region: str, n_cts: int) -> Inputs:
    """A copy of the inputs where ``region`` hosts ``n_cts`` CTs (its own, then copies of its communes)."""
    from dataclasses import replace

    base = [ct for ct in inputs.registry.cts.values() if ct.region_code == region]
    # copies of ordinary communes only: an SDL commune or a grouping member would add stacks
    communes = [ct for ct in base if ct.level == Level.COMMUNE and Tier.SDL not in ct.tiers and not ct.grouping]
    cts = {c: ct for c, ct in inputs.registry.cts.items() if ct.region_code != region}
    chosen = base[:n_cts]
    i = 0
    while len(chosen) < n_cts:
        src = communes[i % len(communes)]
        chosen.append(src.model_copy(update={"code": f"{region}.9{i // 10000:02d}.{(i // 100) % 100:02d}.{i % 100:02d}"}))
        i += 1
    cts.update({ct.code: ct for ct in chosen})
    return replace(inputs, registry=replace(inputs.registry, cts=cts))


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200,400,800,1600", help="Hosted CT counts for the growth series.")
    ap.add_argument("--region", default="07", help="Region whose stack is grown (default 07, Marrakech-Safi).")
    ap.add_argument("--json", type=Path, help="Also write the figures as JSON.")
    args = ap.parse_args(argv)

    inputs = load_inputs()
    names = list(inputs.stacks)
    run_stack(names[-1], stack_config(names[-1]), lambda: main(inputs))  # warm-up: imports, schema files

    started = time.perf_counter()
    rows = [measure(inputs, n) for n in names]
    wall = time.perf_counter() - started
    total = {k: sum(r[k] for r in rows) for k in ("tenants", "objects", "registrations", "mock_s", "plan_render_s", "schema_s")}

    region_stack = next(n for n, r in inputs.stacks.items() if r.tier == "sdr" and r.unit == args.region)
    growth = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        grown = with_synthetic_region(inputs, args.region, n)
        row = measure(grown, region_stack)
        row["hosted_cts"] = n
        growth.append(row)

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"load average at the end {load}; {len(names)} stacks run one after another in one process.\n")
    print("| stack | tenants | k8s objects | registrations | mock evaluation (s) | plan + render (s) | schema check (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stack']} | {r['tenants']} | {r['objects']} | {r['registrations']} | {r['mock_s']:.2f} | "
              f"{r['plan_render_s']:.3f} | {r['schema_s']:.3f} |")
    print(f"| **total ({len(names)} stacks)** | **{total['tenants']}** | **{total['objects']}** | **{total['registrations']}** | "
          f"**{total['mock_s']:.1f}** | **{total['plan_render_s']:.2f}** | **{total['schema_s']:.2f}** |")
    rate = total["registrations"] / total["mock_s"]
    print(f"\nMock evaluation: {total['registrations']} registrations in {total['mock_s']:.1f} s "
          f"({rate:.0f} registrations/s); wall time for the {len(names)} stacks incl. planning and schema: {wall:.1f} s. "
          f"Schema errors: {sum(r['schema_errors'] for r in rows)}.\n")
    print(f"Growth: stack {region_stack} with N hosted CTs (synthetic copies of the region's communes):\n")
    print("| hosted CTs | k8s objects | registrations | mock evaluation (s) | ms per CT | plan + render (s) | schema check (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for g in growth:
        print(f"| {g['hosted_cts']} | {g['objects']} | {g['registrations']} | {g['mock_s']:.2f} | "
              f"{1000 * g['mock_s'] / g['hosted_cts']:.1f} | {g['plan_render_s']:.3f} | {g['schema_s']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"stacks": rows, "total": total, "wall_s": wall, "growth": growth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
