"""Names several parts must agree on (ctfleet.core.conventions), checked where they meet.

The production bug this guards: the rules selected ``up{job="ctfleet"}`` while the stacks
named their scrape job ``ctfleet-collector``, so CollectorDown could never fire deployed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ctfleet.core import conventions
from ctfleet.lab.procs.prometheus import prometheus_config
from ctfleet.stacks.generate import default_config
from ctfleet.stacks.plan import plan_stack
from ctfleet.stacks.program import load_inputs

ROOT = Path(__file__).resolve().parent.parent
JOB_SELECTOR = re.compile(r'\bjob\s*(=~|=|!=)\s*"([^"]*)"')


def _rule_exprs() -> list[tuple[str, str]]:
    out = []
    for f in sorted((ROOT / conventions.RULES_DIR).glob("*.yml")):
        doc = YAML(typ="safe").load(f.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for rule in group["rules"]:
                out.append((f"{f.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def _declared_jobs() -> dict[str, set[str]]:
    """The scrape jobs each Prometheus the project deploys or runs declares."""
    from ctfleet.stacks.config import validate_config

    inputs = load_inputs()
    jobs: dict[str, set[str]] = {}
    for name, ref in inputs.stacks.items():
        if ref.tier not in ("sdr", "national"):
            continue
        cfg = validate_config(default_config(ref), name, inputs.registry, name)
        plan = plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting, inputs.rules if ref.tier == "sdr" else {})
        for app in plan.apps:
            text = app.config.get("prometheus.yml")
            if text:
                prom = YAML(typ="safe").load(text)
                jobs[f"{name}/{app.name}"] = {s["job_name"] for s in prom.get("scrape_configs", [])}
    jobs["lab demo"] = {s["job_name"] for s in prometheus_config("127.0.0.1:1", [])["scrape_configs"]}
    return jobs


def test_rules_select_only_jobs_that_are_scraped():
    selectors = [(where, m.group(1), m.group(2)) for where, expr in _rule_exprs() for m in JOB_SELECTOR.finditer(expr)]
    assert selectors, "the rules select no job at all: CollectorDown would not exist"
    jobs = _declared_jobs()
    sdr = [k for k in jobs if k.startswith("sdr-")]
    assert len(sdr) >= 12, sorted(jobs)
    for where, op, value in selectors:
        assert op == "=", f"{where}: only exact job selectors are checked here, got {op}"
        for who in sdr + ["lab demo"]:
            assert value in jobs[who], f"{where} selects job={value!r}, but {who} scrapes only {sorted(jobs[who])}"


def test_every_regional_prometheus_scrapes_the_collector_job():
    jobs = _declared_jobs()
    for who, names in jobs.items():
        if who.startswith("sdr-"):
            assert conventions.COLLECTOR_JOB in names, (who, names)


@pytest.mark.parametrize("unit,value,expected", [("ms", 150, 0.15), ("%", 2, 0.02), ("days", 1, 86400.0), ("GiB", 1, 2**30)])
def test_units_from_the_catalogue_convert_to_base_units(unit, value, expected):
    assert conventions.to_base_unit(value, unit) == pytest.approx(expected)


def test_unknown_unit_is_a_clear_error():
    with pytest.raises(ValueError, match="unit 'furlongs' has no conversion"):
        conventions.to_base_unit(1, "furlongs")


def test_every_unit_the_catalogue_uses_on_a_series_converts():
    """LNK-2, LNK-3 and LNK-6 reach Prometheus; their units must be known."""
    doc = YAML(typ="safe").load((ROOT / "standards/controls.yaml").read_text(encoding="utf-8"))
    units = {c["id"]: c.get("unit") for c in doc["controls"]}
    for cid in ("LNK-2", "LNK-3", "LNK-6"):
        assert units[cid] in conventions.UNIT_TO_BASE, (cid, units[cid])
