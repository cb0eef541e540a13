"""The NOC's Prometheus rules and Alertmanager configuration, checked by the real tools.

- ``promtool check rules`` on every rule file and ``promtool test rules`` on every unit
  test under ``monitors/rules/tests/`` (Debian package ``prometheus``);
- ``amtool check-config`` and ``amtool config routes test`` on the Alertmanager config
  (Debian package ``prometheus-alertmanager``);
- the inhibitions, in a real Alertmanager started on loopback;
- the checks are not vacuous: a broken rule, a weakened rule and a broken config fail.

A missing tool is a failure (run ``scripts/setup``), never a skip.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ctfleet.lab.procs.alertmanager import Alertmanager

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "monitors" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
AM_CONFIG = ROOT / "monitors" / "alertmanager" / "alertmanager.yml"
METRICS_MD = ROOT / "monitors" / "METRICS.md"
REGIONS = [f"{i:02d}" for i in range(1, 13)]


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package!r} by running scripts/setup "
                    f"(it is listed in scripts/apt-packages.txt)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return tool("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="module")
def alertmanager_bin() -> str:
    return tool("prometheus-alertmanager", "prometheus-alertmanager")


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules_of(kind: str) -> list[dict]:
    return [r for f in RULE_FILES for g in load(f)["groups"] for r in g["rules"] if kind in r]


# ------------------------------------------------------------------ the real tools


def test_rule_files_present():
    names = {p.name for p in RULE_FILES}
    assert {"kpi.rules.yml", "alerts.rules.yml"} <= names, names
    assert TEST_FILES, "no promtool unit tests in monitors/rules/tests/"


def test_promtool_check_rules(promtool):
    res = run(promtool, "check", "rules", *RULE_FILES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests(promtool):
    res = run(promtool, "test", "rules", *TEST_FILES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAILED" not in res.stdout + res.stderr


def test_amtool_check_config(amtool):
    res = run(amtool, "check-config", AM_CONFIG)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_apt_packages_list_the_tools():
    listed = {w for line in (ROOT / "scripts" / "apt-packages.txt").read_text().splitlines()
              for w in line.split("#", 1)[0].split()}
    assert {"prometheus", "prometheus-alertmanager"} <= listed


# ------------------------------------------------------------------ coverage of the tests


def alert_cases() -> tuple[set[str], set[str]]:
    """(alert names with a firing case, alert names with a non-firing case) in the unit tests."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for f in TEST_FILES:
        for t in load(f).get("tests", []):
            for case in t.get("alert_rule_test", []) or []:
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    return firing, quiet


def test_every_alert_has_a_firing_and_a_quiet_case():
    alerts = {r["alert"] for r in rules_of("alert")}
    assert {"CTUnreachable", "UplinkSaturated", "LinkLatencyAboveNorm", "LinkLossAboveNorm",
            "ComplianceRegression", "CollectorSweepOverrun", "CollectorStale", "CollectorDown",
            "PlannedOutage", "CTResultsStale"} <= alerts
    firing, quiet = alert_cases()
    assert not alerts - firing, f"alerts without a firing unit test (exp_alerts): {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts without a non-firing unit test: {sorted(alerts - quiet)}"


def test_every_alert_variant_fires_in_a_test():
    """Alerts defined twice (ComplianceRegression, CollectorStale) are told apart by a label;
    each variant must be expected somewhere."""
    variants = {(r["alert"], k, v) for r in rules_of("alert") for k, v in r.get("labels", {}).items()
                if k not in ("severity",)}
    expected = set()
    for f in TEST_FILES:
        for t in load(f).get("tests", []):
            for case in t.get("alert_rule_test", []) or []:
                for a in case.get("exp_alerts") or []:
                    for k, v in (a.get("exp_labels") or {}).items():
                        expected.add((case["alertname"], k, str(v)))
    assert not variants - expected, sorted(variants - expected)


def test_recording_rules_match_the_contract_and_are_checked():
    recorded = {r["record"] for r in rules_of("record")}
    section = METRICS_MD.read_text(encoding="utf-8").split("## Recording rules", 1)[1]
    kpis = set(re.findall(r"ctfleet:(\w+):count\b", section))
    assert {"cts", "cts_connected", "cts_meeting_norms", "cts_failing", "cts_not_assessed", "cts_with_waivers",
            "cts_equipped"} <= kpis
    wanted = {f"ctfleet:{k}:count_by_{d}" for k in kpis for d in ("lot", "segment", "region")}
    wanted |= {f"ctfleet:ct_coverage:avg_by_{d}" for d in ("lot", "segment", "region")}
    assert not wanted - recorded, f"contract names not recorded: {sorted(wanted - recorded)}"
    checked = {case["expr"].strip() for f in TEST_FILES for t in load(f).get("tests", [])
               for case in t.get("promql_expr_test", []) or [] if case.get("exp_samples")}
    assert not recorded - checked, f"recording rules without exact values in a unit test: {sorted(recorded - checked)}"


def test_link_alerts_compare_with_the_norm_series_not_typed_numbers():
    by_name = {r["alert"]: r["expr"] for r in rules_of("alert")}
    for alert, norm in (("LinkLatencyAboveNorm", "ctfleet_ct_norm_rtt_max_seconds"),
                        ("LinkLossAboveNorm", "ctfleet_ct_norm_loss_max_ratio"),
                        ("UplinkSaturated", "ctfleet_ct_norm_uplink_utilisation_max_ratio")):
        expr = by_name[alert]
        assert norm in expr, alert
        assert 'link!="none"' in expr, alert
        # no decimal literal anywhere (window sizes like [10m] are not thresholds)
        assert not re.search(r"(?<![\w.\[])\d*\.\d+", expr), (alert, expr)
    assert 'link!="none"' in by_name["CTUnreachable"]


# ------------------------------------------------------------------ the checks bite


@pytest.fixture()
def rules_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "rules"
    shutil.copytree(RULES_DIR, dst)
    return dst


def test_promtool_rejects_a_broken_rule(promtool, rules_copy):
    path = rules_copy / "alerts.rules.yml"
    text = path.read_text(encoding="utf-8")
    broken = text.replace("ctfleet_ct_connected{link!=\"none\"} == 0", "ctfleet_ct_connected{link!=\"none\"} == == 0", 1)
    assert broken != text
    path.write_text(broken, encoding="utf-8")
    res = run(promtool, "check", "rules", path)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "CTUnreachable" in res.stdout + res.stderr


def test_unit_tests_catch_a_weakened_rule(promtool, rules_copy):
    """Dropping the 'no link' exclusion must make the CTUnreachable unit test fail."""
    path = rules_copy / "alerts.rules.yml"
    text = path.read_text(encoding="utf-8")
    weakened = text.replace('ctfleet_ct_connected{link!="none"}', "ctfleet_ct_connected", 1)
    assert weakened != text
    path.write_text(weakened, encoding="utf-8")
    assert run(promtool, "check", "rules", path).returncode == 0  # still valid PromQL
    res = run(promtool, "test", "rules", *sorted((rules_copy / "tests").glob("*.yml")))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "01.151.05.15" in res.stdout + res.stderr  # Tanaqoub, the commune with no link


def test_unit_tests_catch_a_wrong_kpi(promtool, rules_copy):
    """Counting info series without deduplicating by ct double-counts an HA replica."""
    path = rules_copy / "kpi.rules.yml"
    text = path.read_text(encoding="utf-8")
    wrong = text.replace("count by (lot) (group by (ct, lot) (ctfleet_ct_info))", "count by (lot) (ctfleet_ct_info)")
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    res = run(promtool, "test", "rules", rules_copy / "tests" / "kpi_test.yml")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ctfleet:cts:count_by_lot" in res.stdout + res.stderr


def test_unit_tests_catch_meeting_without_connection(promtool, rules_copy):
    """Counting the exporter's "meets" without requiring the CT to be connected lets
    Fezna (not connected) count as meeting: meeting > connected in lot 3."""
    path = rules_copy / "kpi.rules.yml"
    text = path.read_text(encoding="utf-8")
    wrong = re.sub(r"\n\s+and on\(ct\)\n\s+\(max by \(ct\) \(ctfleet_ct_connected\) == 1\)", "", text)
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    res = run(promtool, "test", "rules", rules_copy / "tests" / "kpi_test.yml")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ctfleet:cts_meeting_norms:count_by_lot" in res.stdout + res.stderr


def test_unit_tests_catch_a_ct_without_outcome_lost(promtool, rules_copy):
    """Not assessed must be CTs - meeting - failing: counting only the CTs whose exporter
    says not_assessed loses Assilah (no outcome served), and the three no longer add up."""
    path = rules_copy / "kpi.rules.yml"
    text = path.read_text(encoding="utf-8")
    old = ("ctfleet:cts:count_by_lot\n            - ctfleet:cts_meeting_norms:count_by_lot\n"
           "            - ctfleet:cts_failing:count_by_lot")
    wrong = text.replace(old, 'sum by (lot) (max by (ct, lot) (ctfleet_ct_outcome{outcome="not_assessed"}))')
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    res = run(promtool, "test", "rules", rules_copy / "tests" / "kpi_test.yml")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ctfleet:cts_not_assessed:count_by_lot" in res.stdout + res.stderr


def test_amtool_rejects_a_broken_config(amtool, tmp_path):
    cfg = load(AM_CONFIG)
    cfg["route"]["routes"].append({"receiver": "noc-region-13", "matchers": ['region="13"']})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = run(amtool, "check-config", path)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "noc-region-13" in res.stdout + res.stderr


# ------------------------------------------------------------------ routing


def route(amtool: str, *labels: str) -> list[str]:
    res = run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip().split(",")


def test_routes_by_region(amtool):
    for region in REGIONS:
        assert route(amtool, "alertname=CTUnreachable", f"region={region}", "ct=X") == [f"noc-region-{region}"]
    assert route(amtool, "alertname=CTUnreachable", "region=99", "ct=X") == ["noc-national"]
    assert route(amtool, "alertname=CollectorDown", "instance=127.0.0.1:9310") == ["noc-national"]
    assert route(amtool, "alertname=CollectorStale", "region=05") == ["noc-national", "noc-region-05"]
    assert route(amtool, "alertname=PlannedOutage", "region=08", "ct=X") == ["noc-silent"]


def test_receivers_are_loopback_webhooks():
    cfg = load(AM_CONFIG)
    names = {r["name"] for r in cfg["receivers"]}
    assert {f"noc-region-{r}" for r in REGIONS} | {"noc-national"} <= names
    assert cfg["route"]["group_by"] == ["alertname", "region", "ct"]
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            assert w["url"].startswith("http://127.0.0.1:"), w


# ------------------------------------------------------------------ inhibitions, in a real Alertmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


@pytest.fixture()
def alertmanager(alertmanager_bin, tmp_path):
    with Alertmanager(AM_CONFIG, tmp_path / "am") as am:
        yield am.start().url


def post(base: str, *alerts: dict[str, str]) -> None:
    http("POST", f"{base}/api/v2/alerts", [{"labels": a} for a in alerts])


def states(base: str, want: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """(alertname, ct or region) -> 'active' | 'suppressed', polled until it equals `want`
    (the inhibitor ingests alerts asynchronously) or 10 s have passed."""
    deadline = time.monotonic() + 10
    while True:
        got = {(a["labels"]["alertname"], a["labels"].get("ct") or a["labels"].get("region", "")): a["status"]["state"]
               for a in http("GET", f"{base}/api/v2/alerts")}
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_inhibitions_in_alertmanager(alertmanager):
    base = alertmanager
    ct = lambda name, code, region, **kw: {"alertname": name, "ct": code, "region": region, "severity": "warning", **kw}  # noqa: E731
    post(base,
         # (a) Fezna unreachable: its latency alert is inhibited; Errachidia's is not
         ct("CTUnreachable", "08.201.03.09", "08"),
         ct("LinkLatencyAboveNorm", "08.201.03.09", "08"),
         ct("LinkLatencyAboveNorm", "08.201", "08"),
         # (b) Naour in a planned outage: all its alerts are inhibited, not the outage itself
         ct("PlannedOutage", "05.091.07.11", "05", severity="info"),
         ct("CTUnreachable", "05.091.07.11", "05"),
         ct("UplinkSaturated", "05.091.07.11", "05"),
         ct("ComplianceRegression", "05.091.07.11", "05"),
         # (c) the region 01 collector is down: CTUnreachable in 01 inhibited, not in 09
         {"alertname": "CollectorDown", "region": "01", "instance": "127.0.0.1:9312", "job": "ctfleet"},
         ct("CTUnreachable", "01.511.01.01", "01"),
         ct("CTUnreachable", "09.541.01.02", "09"))
    want = {
        ("CTUnreachable", "08.201.03.09"): "active",
        ("LinkLatencyAboveNorm", "08.201.03.09"): "suppressed",
        ("LinkLatencyAboveNorm", "08.201"): "active",
        ("PlannedOutage", "05.091.07.11"): "active",
        ("CTUnreachable", "05.091.07.11"): "suppressed",
        ("UplinkSaturated", "05.091.07.11"): "suppressed",
        ("ComplianceRegression", "05.091.07.11"): "suppressed",
        ("CollectorDown", "01"): "active",
        ("CTUnreachable", "01.511.01.01"): "suppressed",
        ("CTUnreachable", "09.541.01.02"): "active",
    }
    assert states(base, want) == want

    # a collector without a region (one national shard) going stale covers every region
    post(base, {"alertname": "CollectorStale", "instance": "127.0.0.1:9310", "job": "ctfleet", "cause": "last_sweep_old"})
    want |= {("CollectorStale", ""): "active",
             ("CTUnreachable", "08.201.03.09"): "suppressed",
             ("CTUnreachable", "09.541.01.02"): "suppressed"}
    # Fezna's latency alert stays suppressed: an inhibited alert still inhibits
    assert states(base, want) == want
