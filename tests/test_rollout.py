"""The rollout runner without hosts: request validation, command building (pure), event
folding, results store merge, exactly-once delivery of queued audits, retry, and the CLI.

ansible-runner is replaced by a function replaying recorded events
(``tests/fixtures/rollout/<scenario>/events.jsonl``, recorded from the booted test fleet).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from ctfleet.core.compliance import Source
from ctfleet.results import ResultsStore
from ctfleet.rollout.audit import Ledger, ingest_inbox, merge_into_store, read_batch, report_to_results
from ctfleet.rollout.command import as_shell, build, tuning_env
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Tuning
from ctfleet.rollout.events import RunState
from ctfleet.rollout.runner import retry_request, run_rollout

FIXTURES = Path(__file__).parent / "fixtures" / "rollout"


def events(scenario: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / scenario / "events.jsonl").read_text(encoding="utf-8").splitlines() if line]


def replay(scenario: str, status: str = "successful", rc: int = 0, calls: list | None = None):
    """A stand-in for ansible_runner.run that feeds recorded events to the event handler."""

    def run_fn(**kwargs):
        if calls is not None:
            calls.append(kwargs)
        for e in events(scenario):
            kwargs["event_handler"](e)
        return SimpleNamespace(status=status, rc=rc, config=SimpleNamespace(artifact_dir=str(Path(kwargs["private_data_dir"]) / "artifacts" / kwargs["ident"])))

    return run_fn


@pytest.fixture()
def paths(tmp_path, root) -> RolloutPaths:
    return RolloutPaths(root=root, playbooks=root / "playbooks", inventory=tmp_path / "inv.json",
                        runs=tmp_path / "runs", results=tmp_path / "results")


# ---------------------------------------------------------------------- requests
def test_request_needs_exactly_one_selection():
    with pytest.raises(ValidationError, match="exactly one of --ct, --region, --lot"):
        RolloutRequest(playbook="site.yml")
    with pytest.raises(ValidationError, match="exactly one"):
        RolloutRequest(playbook="site.yml", ct="01.511.05.19", lot=3)
    with pytest.raises(ValidationError, match="--audit changes nothing"):
        RolloutRequest(playbook="site.yml", lot=3, audit=True, allow_disruptive=True)
    with pytest.raises(ValidationError, match="playbook file name"):
        RolloutRequest(playbook="site.yml; rm -rf /", lot=3)
    with pytest.raises(ValidationError):
        RolloutRequest(playbook="site.yml", lot=3, unknown_key=1)


@pytest.mark.parametrize("kwargs, limit, wave", [
    (dict(ct="01.511.05.19"), "ct_01_511_05_19", "default"),
    (dict(region="04"), "region_04", "default"),
    (dict(lot=2), "lot_2", "lot_2"),
    (dict(hosts=("th01", "th03")), "th01,th03", "default"),
])
def test_selection_is_an_inventory_group(kwargs, limit, wave):
    r = RolloutRequest(playbook="site.yml", **kwargs)
    assert r.limit == limit and r.wave_name == wave


def test_selected_groups_exist_in_the_dynamic_inventory(project):
    """--ct/--region/--lot name groups the colleague's inventory really has."""
    from ctfleet.ansible_inventory import render

    groups = set(render(project))
    ct = next(iter(project.registry.cts.values()))
    for req in (RolloutRequest(playbook="site.yml", ct=ct.code), RolloutRequest(playbook="site.yml", region=ct.region_code),
                RolloutRequest(playbook="site.yml", lot=ct.lot)):
        assert req.limit in groups, req.limit
    for g in ("role_workstation", "role_server", "platform_windows"):
        assert g in groups  # the plays' host patterns


# ---------------------------------------------------------------------- command building (pure)
def test_build_is_pure_and_complete(paths):
    r = RolloutRequest(playbook="workstations.yml", ct="01.511.05.19", audit=True, tags=("SYS-3", "ssh"), check=True,
                       private_key="/k", control_path_dir="/cp", host_key_checking=False)
    a = build(r, paths, run_id="R1", mitogen_strategy_dir=Path("/m"))
    assert a == build(r, paths, run_id="R1", mitogen_strategy_dir=Path("/m"))
    assert a.playbook == paths.playbooks / "workstations.yml"
    assert a.extravars == {"ctfleet_mode": "audit", "ctfleet_allow_disruptive": False, "ctfleet_run_id": "R1", "ctfleet_wave": "default"}
    assert a.cmdline == ("--tags", "SYS-3,ssh", "--check")
    assert a.envvars["ANSIBLE_PRIVATE_KEY_FILE"] == "/k" and a.envvars["ANSIBLE_SSH_CONTROL_PATH_DIR"] == "/cp"
    assert a.envvars["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert "ansible-playbook -i" in as_shell(a) and "--limit ct_01_511_05_19" in as_shell(a)


def test_rollout_without_allow_disruptive_says_what_it_leaves_out(paths):
    notes = build(RolloutRequest(playbook="site.yml", lot=3), paths, run_id="R", mitogen_strategy_dir=Path("/m")).notes
    assert any("--allow-disruptive" in n for n in notes)


def test_tuned_and_stock_settings_differ_where_they_should(tmp_path):
    tuned, stock = tuning_env(Tuning(), tmp_path, tmp_path / "m"), tuning_env(Tuning.stock(), tmp_path)
    assert tuned["ANSIBLE_PIPELINING"] == "True" and "ANSIBLE_PIPELINING" not in stock
    assert tuned["ANSIBLE_CACHE_PLUGIN"] == "jsonfile" and tuned["ANSIBLE_GATHERING"] == "smart" and "ANSIBLE_GATHERING" not in stock
    with pytest.raises(ValueError, match="mitogen"):
        tuning_env(Tuning(strategy="mitogen_linear"), tmp_path, mitogen_strategy_dir=None)
    env = tuning_env(Tuning(strategy="mitogen_linear"), tmp_path, mitogen_strategy_dir=tmp_path / "m")
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear" and env["ANSIBLE_STRATEGY_PLUGINS"] == str(tmp_path / "m")


# ---------------------------------------------------------------------- events
def _ev(kind, host=None, task="t", **data):
    d = {"task": task, **data}
    if host:
        d["host"] = host
    return {"event": kind, "event_data": d}


def test_events_fold_into_per_host_state():
    s = RunState()
    report = {"role": "baseline", "phase": "after", "host": "h1", "ct": "01.511.05.19", "observed_at": "2026-11-27T08:00:00Z",
              "results": {"SYS-5": {"status": "fail"}, "SYS-3": {"status": "pass"}, "SYS-10": {"status": "fail"}}}
    for e in [_ev("playbook_on_play_start", play="p"), _ev("runner_on_start", "h1", task="SYS-3 | PATCH | x"),
              _ev("runner_on_ok", "h1", res={"changed": True}),
              _ev("runner_on_ok", "h1", res={"ansible_facts": {"baseline_audit_report": report}}),
              _ev("runner_on_failed", "h2", task="SYS-8 | PATCH | y", res={"msg": "failed to validate"}),
              _ev("runner_on_unreachable", "h3", res={"msg": "No route to host"}),
              {"event": "playbook_on_stats", "event_data": {"ok": {"h1": 2, "h2": 1}, "changed": {"h1": 1}, "failures": {"h2": 1},
                                                            "dark": {"h3": 1}, "processed": {"h1": 1, "h2": 1, "h3": 1}}}]:
        s.apply(e)
    assert s.hosts["h1"].status == "ok" and s.hosts["h1"].final_counts()["changed"] == 1
    assert s.hosts["h1"].failing_controls() == ["SYS-5", "SYS-10"]  # numeric order, not text order
    assert s.hosts["h2"].status == "failed" and "failed to validate" in s.hosts["h2"].first_error
    assert s.hosts["h3"].status == "unreachable"
    assert s.failed_hosts() == ["h2", "h3"]
    assert s.totals()["failed"] == 1 and s.totals()["unreachable"] == 1


def test_recorded_converge_run_folds_to_the_recap():
    s = RunState()
    for e in events("converge"):
        s.apply(e)
    assert s.finished and s.hosts
    for h in s.hosts.values():
        assert h.status == "ok"
        assert set(h.reports) == {"before", "after"}
        assert h.failing_controls("after") == []
        assert h.failing_controls("before")  # the fresh hosts did not meet the norm


# ---------------------------------------------------------------------- runner with replayed events
def test_run_writes_results_record_and_exit_code(paths):
    calls = []
    req = RolloutRequest(playbook="site.yml", ct="01.511.05.19", allow_disruptive=True)
    o = run_rollout(req, paths, run_fn=replay("converge", calls=calls), run_id="R1")
    assert o.exit_code == 0 and o.failed_hosts == []
    assert calls[0]["limit"] == "ct_01_511_05_19" and calls[0]["rotate_artifacts"] == 20 and calls[0]["ident"] == "R1"
    store = ResultsStore(paths.results)
    rows = list(store.iter_results())
    assert rows and {r.source for r in rows} == {Source.AUDIT}
    assert all(r.status.value != "fail" for r in rows)  # the "after" phase went to the store
    record = json.loads(o.record.read_text())
    assert record["failed_hosts"] == [] and set(record["hosts"]) == {r.device for r in rows}
    assert retry_request(paths) is None


def test_failed_hosts_are_retried_alone(paths):
    req = RolloutRequest(playbook="site.yml", ct="01.511.05.19")
    o = run_rollout(req, paths, run_fn=replay("host_killed", status="failed", rc=2), run_id="R2")
    assert o.exit_code == 2 and o.failed_hosts
    again = retry_request(paths)
    assert again is not None and again.hosts == tuple(o.failed_hosts) and again.ct is None
    assert again.playbook == "site.yml" and again.limit == ",".join(o.failed_hosts)
    o2 = run_rollout(again, paths, run_fn=replay("converge"), run_id="R3")
    assert o2.exit_code == 0
    assert retry_request(paths) is None  # converged: nothing left to retry


def test_artifacts_are_rotated(paths):
    for i in range(3):
        run_rollout(RolloutRequest(playbook="site.yml", lot=3), paths, run_fn=replay("converge"), run_id=f"R{i}", keep_runs=2)
    assert len(list((paths.runs / "runs").glob("*.json"))) == 3  # run records (200 kept)


# ---------------------------------------------------------------------- results store
def _report(observed_at: str, status: str = "pass", cid: str = "SYS-3") -> dict:
    return {"host": "th01", "ct": "01.511.05.19", "phase": "audit", "role": "baseline", "observed_at": observed_at,
            "results": {cid: {"status": status, "observed": status == "pass", "expected": True, "evidence": "e"}}}


def test_merge_keeps_other_controls_and_newest_row(tmp_path):
    store = ResultsStore(tmp_path)
    merge_into_store(store, "th01", report_to_results(_report("2026-11-27T08:00:00Z", "fail", "SYS-3")))
    merge_into_store(store, "th01", report_to_results(_report("2026-11-27T09:00:00Z", "pass", "SYS-5")))
    merge_into_store(store, "th01", report_to_results(_report("2026-11-27T07:00:00Z", "pass", "SYS-3")))  # older: ignored
    rows = {r.control: r.status.value for r in read_batch(store, "th01")}
    assert rows == {"SYS-3": "fail", "SYS-5": "pass"}


def test_queued_reports_are_delivered_exactly_once(tmp_path):
    store = ResultsStore(tmp_path / "results")
    inbox = tmp_path / "inbox"
    (inbox / "th01").mkdir(parents=True)
    (inbox / "th01" / "run1-audit-baseline.json").write_text(json.dumps(_report("2026-11-27T08:00:00Z", "fail")))
    first = ingest_inbox(inbox, store)
    assert first["merged"] == 1 and first["rows"] == 1 and first["acks"] == {"th01": ["run1-audit-baseline.json"]}
    # the link dropped before the host deleted the file: fetched again, not counted again
    second = ingest_inbox(inbox, store)
    assert second["merged"] == 0 and second["skipped"] == 1 and second["rows"] == 0
    (inbox / "th01" / "run2-audit-baseline.json").write_text(json.dumps(_report("2026-11-27T10:00:00Z", "pass")))
    third = ingest_inbox(inbox, store)
    assert third["merged"] == 1
    rows = read_batch(store, "th01")
    assert len(rows) == 1 and rows[0].status.value == "pass"  # one row per control, the newest
    assert Ledger(store.root / "audit" / ".delivered.json").has("th01", "run1-audit-baseline.json")


def test_pre_change_audits_of_pull_runs_stay_out_of_the_store(tmp_path):
    store = ResultsStore(tmp_path / "results")
    inbox = tmp_path / "inbox" / "th01"
    inbox.mkdir(parents=True)
    before = _report("2026-11-27T08:00:00Z", "fail") | {"phase": "before"}
    (inbox / "r-before-baseline.json").write_text(json.dumps(before))
    assert ingest_inbox(tmp_path / "inbox", store)["rows"] == 0


# ---------------------------------------------------------------------- CLI
def test_cli_rollout_is_the_default_command(root):
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    r = CliRunner().invoke(app, ["rollout", "site.yml", "--lot", "3", "--show-command"])
    assert r.exit_code == 0, r.output
    assert "--limit lot_3" in r.output and "ctfleet_wave" in r.output
    bad = CliRunner().invoke(app, ["rollout", "site.yml", "--lot", "3", "--ct", "01.511.05.19"])
    assert bad.exit_code == 1 and "exactly one" in bad.output
    missing = CliRunner().invoke(app, ["rollout", "nope.yml", "--lot", "3"])
    assert missing.exit_code == 1 and "site.yml" in missing.output


def test_queued_inventories_are_stored_once(tmp_path):
    """Pull mode: the baseline role queues its inventory beside its reports; the collect
    stores it as an inventory record (once), never as control results."""
    store = ResultsStore(tmp_path / "results")
    inbox = tmp_path / "inbox" / "th01"
    inbox.mkdir(parents=True)
    inv = {"kind": "inventory", "host": "th01", "ct": "01.511.05.19", "observed_at": "2026-11-27T08:00:00Z", "packages": 512,
           "facts": {"memtotal_mb": 16000, "processor_vcpus": 4, "distribution": "Debian", "distribution_major_version": "12",
                     "product_serial": "NA", "uptime_seconds": 60}, "root_mount": [{"mount": "/", "size_total": 64 * 2**30}]}
    (inbox / "r1-inventory-baseline.json").write_text(json.dumps(inv))
    first = ingest_inbox(tmp_path / "inbox", store)
    assert first["rows"] == 0 and first["merged"] == 1 and [r.device for r in first["inventories"]] == ["th01"]
    assert ingest_inbox(tmp_path / "inbox", store)["inventories"] == []  # fetched again: not stored again
    (r,) = store.inventory_history("01.511.05.19", "th01")
    assert (r.memory_gib, r.cpu_count, r.os_id, r.serial, r.packages, r.disk_gib) == (16, 4, "debian-12", None, 512, 64.0)
    assert list(store.iter_results()) == []
