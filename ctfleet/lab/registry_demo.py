"""The demo: what the main job prints on a simulated fleet on this machine.

Until the collectors land this loads and validates everything, then prints the
programme table, the lot split, the fleet and the compliance the registry alone can
judge (declared links and equipment), each CT's figure shown beside its coverage.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from ctfleet.core.evaluate import ct_compliance, registry_results
from ctfleet.core.models import TERRESTRIAL, Level
from ctfleet.project import Project
from ctfleet.reports.stats import registry_figures


def run_demo(p: Project, out: Console) -> dict:
    reg = p.registry
    figures = registry_figures(reg, p.rules)
    t = Table(title="Programme table (computed from HCP data, RGPH 2014)")
    t.add_column("segment")
    t.add_column("CTs", justify="right")
    t.add_column("programme", justify="right")
    for row in figures["segments"]:
        t.add_row(row["label"], f"{row['count']:,}", "" if row["programme"] is None else f"{row['programme']:,}")
    out.print(t)
    lots = "  ".join(f"Lot {r['lot']}: {r['with_overrides']:,} (rules {r['from_rules']:,}, programme {r['programme'] or '-'})" for r in figures["lots"])
    out.print(lots)

    communes = [c for c in reg.cts.values() if c.level == Level.COMMUNE]
    no_terrestrial = sum(1 for c in communes for s in reg.sites_of(c.code) if s.uplink.type not in TERRESTRIAL)
    roles = reg.role_counts()
    out.print(f"Fleet: {len(reg.sites):,} sites, " + ", ".join(f"{n:,} {r.value}s" for r, n in sorted(roles.items(), key=lambda kv: kv[0].value))
              + f"; {no_terrestrial:,} of {len(communes):,} communes ({no_terrestrial / max(len(communes), 1):.0%}) without terrestrial coverage"
              + f"  [{reg.fleet_label}]")

    now = datetime.now(timezone.utc)
    # Applicable pairs without a result (e.g. host controls on Windows) count as unknown.
    results = list(registry_results(reg, p.norms, now))
    by_ct = defaultdict(list)
    for r in results:
        by_ct[r.ct].append(r)
    per_lot: dict[int, Counter] = defaultdict(Counter)
    for ct in reg.cts.values():
        comp = ct_compliance(ct, reg, p.norms, by_ct.get(ct.code, []))
        c = per_lot[ct.lot]
        c["cts"] += 1
        c["meets"] += comp.meets_norms
        c["applicable"] += comp.applicable
        c["known"] += comp.known
        c["passed"] += comp.passed
        c["declared_fail"] += comp.failed > 0
    kt = Table(title="Compliance judged from registry declarations only (links, equipment); live checks come from the collectors")
    for col in ("lot", "CTs", "no failed control", "pass share", "coverage"):
        kt.add_column(col, justify="right")
    for lot in sorted(per_lot):
        c = per_lot[lot]
        kt.add_row(str(lot), f"{c['cts']:,}", f"{c['meets']:,}", f"{c['passed'] / max(c['applicable'], 1):.1%}",
                   f"{c['known'] / max(c['applicable'], 1):.1%}")
    out.print(kt)
    out.print("Coverage is low on purpose: most controls need a live check (SNMP, audits); unknown never counts as pass.")
    return {"figures": figures, "per_lot": {k: dict(v) for k, v in per_lot.items()}}
