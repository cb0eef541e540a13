"""A technician's audits reach the region: a rollout (and a collect of pull-mode queues)
sends its results to the results service the profile names, through the spool, and what
cannot go now waits for `ctfleet rollout deliver`.

The rollout replays recorded events (as in test_rollout.py); the results service is the
real process (uvicorn, TLS, basic auth) on SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctfleet.core.compliance import Source
from ctfleet.lab.procs.service import free_port
from ctfleet.results.db import SqlStore
from ctfleet.results.forward import ServiceLink, deliver_spool, send
from ctfleet.rollout.config import RolloutPaths, RolloutRequest
from ctfleet.rollout.runner import run_rollout
from test_rollout import replay

CT = "01.511.05.19"  # the CT of the recorded converge run
PASSWORD = "canary-7f3a-results-technicien"


@pytest.fixture()
def service(tmp_path, root):
    from ctfleet.lab.procs.results_service import ResultsService

    profile = tmp_path / "sdr-01.yaml"
    profile.write_text('name: sdr-01\nregion: "01"\n')
    db = tmp_path / "region-01.db"
    with ResultsService(tmp_path / "svc", str(db), profile, {"tech-01": PASSWORD}, root).start() as svc:
        yield svc, db


def _link(url: str, cafile: str | None) -> ServiceLink:
    return ServiceLink(url=url, user="tech-01", password="env:CTFLEET_TEST_RESULTS_01", cafile=cafile)


def _stored(db: Path) -> dict[str, int]:
    store = SqlStore(db)
    try:
        with store.engine.connect() as conn:
            from sqlalchemy import select

            from ctfleet.results.schema import batches

            return {r.batch_id: r.results for r in conn.execute(select(batches.c.batch_id, batches.c.results))}
    finally:
        store.dispose()


def _paths(tmp_path, root) -> RolloutPaths:
    return RolloutPaths(root=root, playbooks=root / "playbooks", inventory=tmp_path / "inv.json",
                        runs=tmp_path / "runs", results=tmp_path / "results")


@pytest.mark.component
def test_a_rollout_sends_its_results_to_the_region_and_keeps_them_when_it_cannot(tmp_path, root, service, monkeypatch):
    svc, db = service
    monkeypatch.setenv("CTFLEET_TEST_RESULTS_01", PASSWORD)
    spool, paths = tmp_path / "spool", _paths(tmp_path, root)
    link = _link(svc.url, str(svc.tls.ca))
    req = RolloutRequest(playbook="site.yml", ct=CT, allow_disruptive=True)

    # 1. service up: the run's results are one batch, stored by the region; the spool is empty after
    o = run_rollout(req, paths, run_fn=replay("converge"), run_id="R1",
                    forward=lambda b, rows: send(spool, b, rows, link, root))
    assert o.results_written > 0
    assert o.delivery.ok and o.delivery.stored == ["rollout-R1"]
    assert _stored(db) == {"rollout-R1": o.results_written}
    assert not list(spool.glob("*.jsonl"))
    assert json.loads(o.record.read_text())["delivery"]["stored"] == ["rollout-R1"]

    # 2. service unreachable (a closed port): the rollout finishes, its batch waits in the spool
    closed = _link(f"https://127.0.0.1:{free_port()}", str(svc.tls.ca))
    o2 = run_rollout(req, paths, run_fn=replay("converge"), run_id="R2",
                     forward=lambda b, rows: send(spool, b, rows, closed, root))
    assert o2.exit_code == 0 and not o2.delivery.ok
    assert o2.delivery.kept == ["rollout-R2"] and "ConnectionRefusedError" in o2.delivery.stopped
    assert (spool / "rollout-R2.jsonl").exists()

    # 3. the credential reference unset: kept, and the error names the reference, never a password
    monkeypatch.delenv("CTFLEET_TEST_RESULTS_01")
    d = deliver_spool(spool, link, root)
    assert d.kept == ["rollout-R2"] and d.stopped.startswith("credentials env:CTFLEET_TEST_RESULTS_01: environment variable")
    monkeypatch.setenv("CTFLEET_TEST_RESULTS_01", PASSWORD)

    # 4. `ctfleet rollout deliver` with the technician's profile sends the spool; a second time finds nothing
    profile = tmp_path / "technicien-01.yaml"
    profile.write_text(f'name: technicien-01\nregion: "01"\nspool_dir: {spool}\n'
                       f'results_service: {{url: "{svc.url}", user: tech-01, password: "env:CTFLEET_TEST_RESULTS_01", cafile: "{svc.tls.ca}"}}\n')
    from ctfleet.cli.main import app

    r = CliRunner().invoke(app, ["--profile", str(profile), "rollout", "deliver"])
    assert r.exit_code == 0, r.output
    assert f"1 batch(es) delivered to {svc.url}" in r.output and PASSWORD not in r.output
    assert _stored(db) == {"rollout-R1": o.results_written, "rollout-R2": o2.results_written}
    r = CliRunner().invoke(app, ["--profile", str(profile), "rollout", "deliver"])
    assert r.exit_code == 0 and f"nothing to deliver: {spool} is empty" in r.output

    # 5. a wrong password: 401 stops delivery, the batch stays, the exit is non-zero and shows no password
    send(spool, "rollout-R3", [], link, root)  # nothing new: no batch written
    assert not list(spool.glob("*.jsonl"))
    (spool / "rollout-R4.jsonl").write_text((tmp_path / "results" / Source.AUDIT.value / next(
        p.name for p in (tmp_path / "results" / Source.AUDIT.value).glob("*.jsonl"))).read_text())
    monkeypatch.setenv("CTFLEET_TEST_RESULTS_01", "not-the-password")
    r = CliRunner().invoke(app, ["--profile", str(profile), "rollout", "deliver"])
    assert r.exit_code == 2 and "HTTP 401" in r.output and "not-the-password" not in r.output
    assert (spool / "rollout-R4.jsonl").exists()


def test_rollout_deliver_without_a_service_in_the_profile_says_what_to_add(tmp_path):
    from ctfleet.cli.main import app

    profile = tmp_path / "p.yaml"
    profile.write_text('name: technicien-01\nregion: "01"\n')
    r = CliRunner().invoke(app, ["--profile", str(profile), "rollout", "deliver"])
    assert r.exit_code == 1
    assert r.output.strip() == (f"error: {profile}: the profile names no results service "
                                "(valid: results_service: {url: https://HOST:PORT, user: NAME, password: env:VAR})")


@pytest.mark.parametrize("service, message", [
    ('{url: "ftp://results.example.ma"}', "results_service.url"),
    ('{url: "https://tech:pw@results.example.ma"}', "without user, password"),
    ('{url: "https://results.example.ma:99999"}', "results_service.url"),
    ('{url: "https://results.example.ma", password: "S3cret-typed-here"}', "not a credentials reference"),
    ('{url: "https://results.example.ma", token: x}', "results_service.token"),
])
def test_a_bad_results_service_in_the_profile_is_one_error_naming_the_key(tmp_path, service, message):
    from ctfleet.cli.main import app

    profile = tmp_path / "p.yaml"
    profile.write_text(f'name: technicien-01\nregion: "01"\nresults_service: {service}\n')
    r = CliRunner().invoke(app, ["--profile", str(profile), "rollout", "deliver"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith("error: ") and str(profile) in r.output and message in r.output, r.output
    assert "S3cret-typed-here" not in r.output and "pw@" not in r.output


@pytest.mark.component
def test_observed_inventories_reach_the_region_in_the_batch(tmp_path, root, service, monkeypatch):
    """An audit's inventory records travel in the results batch and the region stores them."""
    from datetime import datetime, timezone

    from ctfleet.core.compliance import ControlResult
    from ctfleet.core.inventory import InventoryRecord

    svc, db = service
    monkeypatch.setenv("CTFLEET_TEST_RESULTS_01", PASSWORD)
    at = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    rows = [ControlResult(ct=CT, device="th01", control="SYS-3", status="pass", source=Source.AUDIT, observed_at=at),
            InventoryRecord(ct=CT, device="th01", cpu_count=4, memory_mib=7900, disk_gib=50.0, os="debian", os_version="12",
                            packages=420, observed_at=at)]
    d = send(tmp_path / "spool", "rollout-INV", rows, _link(svc.url, str(svc.tls.ca)), root)
    assert d.ok and d.stored == ["rollout-INV"], d
    store = SqlStore(db)
    try:
        got = list(store.iter_inventory({CT}))
        assert [(r.device, r.memory_gib, r.os_id, r.packages) for r in got] == [("th01", 8, "debian-12", 420)]
        assert [r.control for r in store.iter_results({CT})] == ["SYS-3"]
    finally:
        store.dispose()
