"""Cisco IOS over real SSH: fake-switches' cisco_generic model on 127.0.0.1, driven by
napalm's ios driver (open, get_config, cli): backup and audit, wrong credentials per
router, and the driver conformance test live. What fake-switches cannot do (configure
replace with a revert timer) is covered by napalm's mock driver (test_routers_ios_mock).

In CI (CI=true) a missing fake-switches is a failure, never a skip."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from ctfleet.core.compliance import Status
from ctfleet.core.models import Device, Platform, Role
from ctfleet.core.secrets import Secret
from ctfleet.results import ResultsStore
from ctfleet.routers.backups import BackupStore
from ctfleet.routers.drivers import Login, NapalmSession, Target
from ctfleet.lab.frr_lab import FakeIos, LabError, require_fake_switches
from ctfleet.routers.ops import RouterJob, RouterOps
from ctfleet.routers.platforms import platform_spec
from ctfleet.routers.render import router_norms
from ctfleet.routers.settings import RouterSettings

pytestmark = pytest.mark.component
PASSWORD = "Fake-Ios-Login-7"


@pytest.fixture(scope="module")
def fake_ios(tmp_path_factory):
    try:
        require_fake_switches()
    except LabError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    svc = FakeIos(tmp_path_factory.mktemp("fake-ios"), "r-01-511-01-0", "netops", PASSWORD).start()
    yield svc
    svc.stop()


def _job(p, code: str, hostname: str) -> RouterJob:
    ct = p.registry.cts[code]
    d = Device(hostname=hostname, site_code="S-" + ct.slug, role=Role.ROUTER, platform=Platform.CISCO_IOS,
               mgmt_address=ipaddress.ip_address("127.0.0.1"), credentials="env:CTFLEET_TEST_SNMP", snmp_version="v3")
    return RouterJob(d, ct, None, platform_spec(d.platform), router_norms(p.norms.resolve(ct)))


def test_backup_and_audit_over_ssh_and_wrong_credentials(fake_ios, registry_only, tmp_path) -> None:
    p = registry_only
    env = {"CTFLEET_RTR_LOGIN_01": json.dumps({"username": "netops", "password": PASSWORD}),
           "CTFLEET_RTR_LOGIN_02": json.dumps({"username": "netops", "password": "wrong"})}
    jobs = [_job(p, "01.511.01.0", "r-01-511-01-0"), _job(p, "02.411.01.11", "r-02-411-01-11")]
    ops = RouterOps(p.root, RouterSettings(connect_timeout_seconds=5, device_timeout_seconds=60), env=env,
                    port=fake_ios.port, results=ResultsStore(tmp_path / "results"),
                    backups=BackupStore(tmp_path / "backups", p.root))
    backup = ops.run("backup", jobs)
    good, bad = backup.outcomes
    assert good.status == "ok" and bad.status == "failed" and bad.error_kind == "auth", (good.summary, bad.summary)
    assert "hostname r-01-511-01-0" in (ops.backups.path / good.data["path"]).read_text()
    assert "1 of 2 routers changed" in ops.backups.log() and "failed: 1" in ops.backups.log()

    audit = ops.run("audit", jobs[:1]).outcomes[0]
    st = {r.control: r.status for r in audit.data["results"]}
    assert st["RTR-1"] == Status.FAIL and st["RTR-3"] == Status.FAIL and st["RTR-7"] == Status.PASS
    assert st["RTR-2"] == Status.FAIL  # no SNMP at all is not v3 authPriv
    assert st["SYS-9"] == Status.UNKNOWN  # the simulator has no answer to show ntp status: unknown, not pass

    diff = ops.run("diff", jobs[:1]).outcomes[0]
    assert "+ip access-list standard CTFLEET-MGMT" in diff.data["diff"] and "+banner login ^C" in diff.data["diff"]


def test_conformance_napalm_ios_live(fake_ios) -> None:
    from test_routers_ios_mock import check_conformance

    s = NapalmSession("ios", Target("r", "127.0.0.1", fake_ios.port, Login("netops", Secret(PASSWORD)), 5, 30))
    try:
        check_conformance(s, ["show version"])
    finally:
        s.close()
