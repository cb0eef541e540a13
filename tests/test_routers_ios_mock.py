"""Cisco IOS through napalm's file-backed mock driver: recorded outputs per getter and
case (tests/fixtures/routers/cisco_ios/<getter>/<case>/ with expected_result.json), for
what fake-switches cannot do (configure replace with a revert timer, show ntp status),
and the shared driver conformance test on those recordings."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from ctfleet.core.models import Device, Platform, Role
from ctfleet.results import ResultsStore
from ctfleet.routers.backups import BackupStore
from ctfleet.routers.drivers import NapalmSession, RouterSession, Target
from ctfleet.lab.napalm_mock import RecordedConnector
from ctfleet.routers.ops import RouterJob, RouterOps
from ctfleet.routers.platforms import platform_spec
from ctfleet.routers.render import router_norms
from ctfleet.routers.settings import RouterSettings

FIX = Path(__file__).parent / "fixtures" / "routers" / "cisco_ios"
CT_CODE = "01.511.01.0"
SNMP = {"user": "noc-01", "auth_key": "Auth-Key-Recorded-1", "priv_key": "Priv-Key-Recorded-2"}
ENV = {"CTFLEET_TEST_LOGIN": json.dumps({"username": "netops", "password": "Login-Recorded-3"}),
       "CTFLEET_TEST_SNMP": json.dumps(SNMP)}


def cases(getter: str) -> list[str]:
    return sorted(p.name for p in (FIX / getter).iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def job(registry_only) -> RouterJob:
    ct = registry_only.registry.cts[CT_CODE]
    d = Device(hostname="r-" + ct.slug, site_code="S-" + ct.slug, role=Role.ROUTER, platform=Platform.CISCO_IOS,
               mgmt_address=ipaddress.ip_address("127.0.0.1"), credentials="env:CTFLEET_TEST_SNMP", snmp_version="v3")
    return RouterJob(d, ct, None, platform_spec(d.platform), router_norms(registry_only.norms.resolve(ct)))


def ops_for(case: Path, root: Path, tmp_path: Path, **kw) -> tuple[RouterOps, RecordedConnector]:
    conn = RecordedConnector(case)
    ops = RouterOps(root, RouterSettings(login="env:CTFLEET_TEST_LOGIN", revert_after_seconds=60), connector=conn, env=ENV,
                    sleep=lambda s: None, **kw)
    return ops, conn


@pytest.mark.parametrize("case", cases("get_config"))
def test_get_config_backup(case, job, root, tmp_path) -> None:
    expected = json.loads((FIX / "get_config" / case / "expected_result.json").read_text())
    store = BackupStore(tmp_path / "backups", root).init()
    ops, _ = ops_for(FIX / "get_config" / case, root, tmp_path, backups=store)
    report = ops.run("backup", [job])
    assert report.outcomes[0].status == "ok", report.outcomes[0].summary
    text = (store.path / report.outcomes[0].data["path"]).read_text()
    for s in expected["must_contain"]:
        assert s in text, s
    for s in expected["must_not_contain"]:
        assert s not in text, s
    log = store.log()
    assert f"{CT_CODE} " in log and "1 of 1 router changed" in log
    if expected["last_change"]:
        assert " by ".join(expected["last_change"]) in log


@pytest.mark.parametrize("case", cases("audit"))
def test_audit(case, job, root, tmp_path) -> None:
    expected = json.loads((FIX / "audit" / case / "expected_result.json").read_text())
    store = BackupStore(tmp_path / "backups", root).init()
    if expected["backed_up"]:
        store.save(job.device, job.ct, "hostname x\n")
        store.commit()
    results = ResultsStore(tmp_path / "results")
    ops, _ = ops_for(FIX / "audit" / case, root, tmp_path, backups=store, results=results)
    report = ops.run("audit", [job])
    got = {r.control: r for r in report.outcomes[0].data["results"]}
    assert {c: r.status.value for c, r in got.items()} == expected["status"]
    for control, value in expected["observed"].items():
        assert got[control].observed == value
    stored = results.latest()
    assert {k[2] for k in stored} == set(expected["status"]) and all(r.source.value == "router_audit" for r in stored.values())
    assert "Public2019" not in (tmp_path / "results" / "router_audit" / f"{job.device.hostname}.jsonl").read_text()


@pytest.mark.parametrize("case", cases("push"))
def test_push(case, job, root, tmp_path) -> None:
    expected = json.loads((FIX / "push" / case / "expected_result.json").read_text())
    ops, conn = ops_for(FIX / "push" / case, root, tmp_path)
    o = ops.push(job, 60, allow_disruptive=True)
    assert o.status == expected["status"], o.summary
    assert conn.opened == expected["sessions"]
    if "controls" in expected:
        assert o.data["controls"] == expected["controls"]
    if "error_kind" in expected:
        assert o.error_kind == expected["error_kind"]
    if "candidate_contains" in expected:
        cand = conn.changes[0].candidate
        for s in expected["candidate_contains"]:
            assert s in cand, s
        for s in expected["candidate_lacks"]:
            assert s not in cand, s
        # The device gets the real SNMPv3 keys; nothing the technician sees does.
        assert f"snmp-server user noc-01 CTFLEET-NOC v3 auth sha {SNMP['auth_key']} priv aes 128 {SNMP['priv_key']}" in cand
    shown = json.dumps(o.data) + o.summary
    for secret in (SNMP["auth_key"], SNMP["priv_key"], "Login-Recorded-3", "Public2019"):
        assert secret not in shown


def test_push_holds_back_disruptive_controls_unless_allowed(job, root, tmp_path) -> None:
    ops, conn = ops_for(FIX / "push" / "confirmed", root, tmp_path)
    o = ops.push(job, 60)
    assert o.status == "changed" and "RTR-5" not in o.data["controls"] and o.data["held"] == ["RTR-5"]
    assert "held back (disruptive, needs --allow-disruptive): RTR-5" in o.summary
    assert "CTFLEET-MGMT" not in conn.changes[0].candidate


def test_push_rejects_a_revert_window_ios_cannot_arm(job, root, tmp_path) -> None:
    ops, conn = ops_for(FIX / "push" / "confirmed", root, tmp_path)
    o = ops.push(job, 90)
    assert o.status == "failed" and o.error_kind == "platform" and "multiple of 60" in o.summary and conn.opened == 0


# ------------------------------------------------------------------ conformance (napalm-style)
RETURN_SHAPES = {"get_config": str, "get_state": dict, "arm_and_apply": dict, "pending": dict}


def check_conformance(session: RouterSession, state_commands: list[str]) -> None:
    """Every driver: the interface's methods, and the shapes they return."""
    assert isinstance(session, RouterSession)
    cfg = session.get_config()
    assert isinstance(cfg, str) and "hostname" in cfg
    state = session.get_state(state_commands)
    assert set(state) == set(state_commands) and all(v is None or isinstance(v, str) for v in state.values())
    pend = session.pending()
    assert set(pend) == {"armed", "token", "seconds_left", "last"} and isinstance(pend["armed"], bool)


def test_conformance_napalm_recorded(root) -> None:
    s = NapalmSession("mock", Target("r", "127.0.0.1"), {"path": str(FIX / "audit" / "compliant")})
    check_conformance(s, ["show ntp status"])
    s.close()
