"""The roles and the runner on real booted hosts (scripts/testhosts): Debian 12 under
systemd-nspawn -b, each with its own network namespace on a bridge, sshd and systemd,
packages only through the apt-cacher-ng on the bridge.

Order matters (one fleet for the session, tests/booted.py, shared with
tests/test_rollout_links.py which runs after this file): converge, re-run with changed=0, runtime checks
with testinfra, drift audited read-only, a host killed mid-rollout then retried, queued
audits delivered exactly once. The fleet is torn down in the fixture's finaliser, also
when a test fails (close SSH masters, SIGTERM hosts, delete veths and the bridge).

Needs root, debootstrap, systemd-nspawn, apt-cacher-ng, nftables and the Debian mirror.
Outside CI a missing piece skips; with CI=true it fails.
"""

from __future__ import annotations

import os
import threading

import pytest
from booted import ROLES, WORKSTATIONS, first_converge, remediation, request, ssh, task_times, timed

from ctfleet.results import ResultsStore
from ctfleet.lab import testhosts as testfleet
from ctfleet.rollout.audit import read_batch
from ctfleet.rollout.collect import collect_queued
from ctfleet.rollout.runner import retry_request, run_rollout

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.component]


# ---------------------------------------------------------------------- converge, idempotence
def test_converge_then_rerun_changes_nothing(fleet):
    paths = fleet["paths"]
    first = timed("converge", lambda: first_converge(fleet, lambda: run_rollout(request(fleet, allow_disruptive=True), paths)))
    assert first.exit_code == 0, {h: s.first_error for h, s in first.state.hosts.items()}
    assert set(first.state.hosts) == set(ROLES)
    for name, h in first.state.hosts.items():
        assert h.final_counts()["changed"] > 0, name
        assert h.failing_controls("before"), f"{name}: a fresh host should not meet the norm"
        assert h.failing_controls("after") == [], f"{name}: still failing after the rollout: {h.results('after')}"
    # site.yml: the reference server and the workstations run their roles at the same time.
    ran = task_times(first, "Reference servers and workstations")
    server = next(h for h, r in ROLES.items() if r == "server")
    assert set(ran) == set(ROLES), ran
    assert all(min(ran[w]) < max(ran[server]) and min(ran[server]) < max(ran[w]) for w in WORKSTATIONS), \
        {h: (min(t), max(t)) for h, t in ran.items()}
    second = timed("rerun", lambda: run_rollout(request(fleet, allow_disruptive=True), paths))
    assert second.exit_code == 0
    # Nothing is remediated when the first audit found nothing failing (every role's plan is empty and
    # no control's remediation task ran, where the first converge ran many), and the second audit keeps
    # the first one's observations (same observation time) instead of reading the host again.
    first_plans, first_patched = remediation(first)
    plans, patched = remediation(second)
    assert first_patched and any(first_plans.values()), (first_patched, first_plans)
    assert len(plans) >= len(ROLES) * 2 and not any(plans.values()), plans
    assert patched == [], patched
    for name, h in second.state.hosts.items():
        for role, report in h.reports["after"].items():
            assert report["observed_at"] == h.reports["before"][role]["observed_at"], (name, role)
    for name, h in first.state.hosts.items():  # the first converge remediated: observed again
        assert any(r["observed_at"] != h.reports["before"][role]["observed_at"] for role, r in h.reports["after"].items()), name
    changed = {n: h.final_counts()["changed"] for n, h in second.state.hosts.items()}
    assert changed == {n: 0 for n in ROLES}, changed  # from the runner's stats (PLAY RECAP)
    rows = list(ResultsStore(paths.results).iter_results())
    assert {r.device for r in rows} == set(ROLES) and not [r for r in rows if r.status.value == "fail"]
    assert {r.ct for r in rows} == {fleet["ct"].code}
    fleet["converged"] = True


# ---------------------------------------------------------------------- runtime state (testinfra)
@pytest.fixture(scope="module")
def hosts(fleet):
    try:
        import testinfra
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("pytest-testinfra is required in CI (test extra in pyproject.toml)")
        pytest.skip("pytest-testinfra not installed")
    st = fleet["status"]
    return {n: testinfra.get_host(f"ssh://ctfadmin@{st['hosts'][n]['ip']}", ssh_identity_file=st["key"], sudo=True,
                                  ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlPath=none")
            for n in ROLES}


def test_root_and_password_logins_are_really_refused(fleet):
    root = ssh(fleet, "th01", "true", user="root")
    assert root.returncode == 255 and "Permission denied" in root.stderr, root.stderr
    pw = ssh(fleet, "th01", "true", opts=["-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no"])
    assert pw.returncode == 255 and "Permission denied (publickey)" in pw.stderr, pw.stderr
    assert ssh(fleet, "th01", "sudo -n true").returncode == 0  # the authorised admin still gets in


def test_effective_configuration_and_services(hosts, fleet, project):
    norms = {cid: r.value for cid, r in project.norms.resolve(fleet["ct"]).items()}
    for name, host in hosts.items():
        sshd = host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1")
        assert "permitrootlogin no" in sshd and "passwordauthentication no" in sshd
        assert f"maxauthtries {norms['SYS-5']}" in sshd
        ruleset = host.check_output("nft list ruleset")
        assert "policy drop" in ruleset and "chain input" in ruleset
        for svc in ("ssh", "nftables", "chrony", "rsyslog"):
            assert host.service(svc).is_running and host.service(svc).is_enabled, f"{name}: {svc}"
        assert host.service("auditd").is_enabled and not host.service("auditd").is_running  # a container cannot run it
        assert "Leap status     : Normal" in host.check_output("chronyc -n tracking")
        assert host.file("/etc/ansible/facts.d/ctfleet_audit_baseline.fact").exists
    srv = hosts["th04"]
    for svc in ("smbd", "prometheus-node-exporter"):
        assert srv.service(svc).is_running and srv.service(svc).is_enabled
    assert srv.service("ctfleet-backup.timer").is_enabled
    metrics = srv.check_output("python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics').read().decode())\"")
    assert 'ctfleet_audit_control_status{control="SRV-6",severity="medium",status="pass"} 1' in metrics  # textfile collector
    ws = hosts["th01"]
    assert "install /bin/false" in ws.check_output("modprobe -n -v usb-storage 2>&1 || true")


def test_firewall_lets_only_the_norms_ports_through(fleet):
    import socket

    ip = fleet["status"]["hosts"]["th04"]["ip"]

    def connect(port: int) -> str:
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((ip, port))
            return "open"
        except socket.timeout:
            return "dropped"
        except OSError:
            return "refused"
        finally:
            s.close()

    assert connect(22) == "open" and connect(9100) == "open" and connect(445) == "open"  # SRV-2
    assert connect(139) == "dropped"  # samba's NetBIOS port: listening, but not in the norm


# ---------------------------------------------------------------------- drift and read-only audit
DRIFT = {  # by hand on th02, as a technician might: control id -> command
    "SYS-5": "sudo sed -i 's/^MaxAuthTries .*/MaxAuthTries 10/' /etc/ssh/sshd_config.d/00-ctfleet.conf && sudo systemctl reload ssh",
    "SYS-6": "sudo useradd -m stagiaire && sudo usermod -aG sudo stagiaire",
    "WS-3": "sudo rm /etc/modprobe.d/ctfleet-usb-storage.conf",
}


def test_audit_reports_exactly_the_drift_and_changes_nothing(fleet):
    for cid, cmd in DRIFT.items():
        r = ssh(fleet, "th02", cmd)
        assert r.returncode == 0, (cid, r.stderr)
    before = ssh(fleet, "th02", "sudo md5sum /etc/ssh/sshd_config.d/00-ctfleet.conf /etc/group /etc/nftables.conf").stdout
    audit = timed("audit", lambda: run_rollout(request(fleet, audit=True), fleet["paths"]))
    assert audit.exit_code == 0
    assert {n: h.final_counts()["changed"] for n, h in audit.state.hosts.items()} == {n: 0 for n in ROLES}
    failing = {n: h.failing_controls("audit") for n, h in audit.state.hosts.items()}
    assert failing == {"th01": [], "th02": sorted(DRIFT), "th03": [], "th04": []}, failing
    assert ssh(fleet, "th02", "sudo md5sum /etc/ssh/sshd_config.d/00-ctfleet.conf /etc/group /etc/nftables.conf").stdout == before
    assert not ssh(fleet, "th02", "test -e /etc/modprobe.d/ctfleet-usb-storage.conf").returncode == 0
    store = {r.control: r.status.value for r in read_batch(ResultsStore(fleet["paths"].results), "th02")}
    assert sorted(c for c, s in store.items() if s == "fail") == sorted(DRIFT)


# ---------------------------------------------------------------------- equipped from observation
def test_audit_stores_observed_inventories_and_equipped_is_judged_from_them(fleet, data_copy):
    """The audit's inventory records hold what the hosts really show (the container sees the
    machine's CPU and memory), and "equipped" is judged from them: with a test norms layer
    for the fleet's CT, the workstation th01 is at spec and the server th04 under spec."""
    from datetime import datetime, timezone

    from ctfleet.core.inventory import Verdict, judge_ct, judge_server, judge_workstation
    from ctfleet.project import load_project

    store, ct = ResultsStore(fleet["paths"].results), fleet["ct"]
    inv = {r.device: r for r in store.iter_inventory({ct.code})}
    if not {"th01", "th04"} <= set(inv):  # this test run alone: audit the two hosts (read-only)
        out = timed("audit-inventory", lambda: run_rollout(request(fleet, hosts=("th01", "th04"), audit=True), fleet["paths"]))
        assert out.exit_code == 0, {h: s.first_error for h, s in out.state.hosts.items()}
        inv = {r.device: r for r in store.iter_inventory({ct.code})}
    assert {"th01", "th04"} <= set(inv), sorted(inv)
    for host in ("th01", "th04"):
        r = inv[host]
        facts = ssh(fleet, host, "awk '/MemTotal/{print int($2/1024)}' /proc/meminfo; grep -c ^processor /proc/cpuinfo; "
                                 "df -B1 --output=size / | tail -1; cut -d' ' -f1 /proc/uptime; "
                                 "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' | awk '$1 ~ /^.i/{print $2}' | sort -u | wc -l; "
                                 "sudo cat /sys/class/dmi/id/product_serial 2>/dev/null || echo NA").stdout.split("\n")
        mem, cpus, disk, uptime, packages, serial = facts[:6]
        assert (r.ct, r.origin, r.os_id) == (ct.code, "audit", "debian-12"), r
        assert abs(r.memory_mib - int(mem)) <= 1 and r.cpu_count == int(cpus), (r, facts)
        assert abs(r.disk_gib - int(disk) / 2**30) < 0.2 and r.packages == int(packages), (r, facts)
        assert r.serial == (None if serial.strip() in ("", "NA", "Not Specified", "0") else serial.strip())  # never invented
        boot = datetime.now(timezone.utc).timestamp() - float(uptime)
        assert abs(r.last_boot.timestamp() - boot) < 600, (r.last_boot, boot)
        assert store.inventory_history(ct.code, host)[-1] == r  # kept with its history
    # The test norms layer: the workstation spec below the machine, the server's configuration
    # type above it (the containers have the machine's hardware, so only the norm can differ).
    machine_gib = inv["th01"].memory_gib
    project = load_project(root=data_copy)
    server_type = project.norms.value(ct, "EQP-4")
    (data_copy / "standards/norms/ct").mkdir(exist_ok=True)
    (data_copy / f"standards/norms/ct/{ct.code}.yaml").write_text(
        f"values:\n  EQP-2: {max(1, machine_gib - 1)}\nserver_types:\n  {server_type}:\n    memory_gib: {machine_gib + 1}\n",
        encoding="utf-8")
    norms = load_project(root=data_copy).norms
    spec = norms.server_type(ct)
    ws = judge_workstation("th01", inv["th01"], norms.value(ct, "EQP-2"), norms.value(ct, "EQP-3"))
    srv = judge_server("th04", inv["th04"], spec)
    assert ws.verdict == Verdict.AT_SPEC, ws
    assert srv.verdict == Verdict.UNDER_SPEC and [c.fact for c in srv.checks if c.verdict == Verdict.UNDER_SPEC] == ["memory_gib"], srv
    e = judge_ct(ct.code, ["th01"], ["th04"], inv, 1, norms.value(ct, "EQP-2"), norms.value(ct, "EQP-3"), spec, True, True)
    assert (e.equipped, e.workstations_at_spec, e.server_ok) == (False, 1, False)
    at_spec = judge_ct(ct.code, ["th01"], ["th04"], inv, 1, norms.value(ct, "EQP-2"), norms.value(ct, "EQP-3"),
                       norms.server_type(ct, "none"), True, True)
    assert at_spec.equipped  # the same observations, a CT asking for no server


# ---------------------------------------------------------------------- a host dies mid-rollout
def test_killed_host_does_not_stop_the_others_and_retry_converges_it(fleet):
    paths, env = fleet["paths"], fleet["env"]
    killed = threading.Event()

    def on_event(state, event, host):
        # Kill th03 once it is well into its remediation (the others keep going).
        if host == "th03" and not killed.is_set() and state.hosts["th03"].tasks_done >= 60:
            killed.set()
            threading.Thread(target=testfleet.kill, args=("th03", env), daemon=True).start()

    out = timed("rollout_with_kill", lambda: run_rollout(request(fleet, allow_disruptive=True), paths, on_event=on_event))
    assert killed.is_set()
    assert out.exit_code != 0 and out.failed_hosts == ["th03"], {n: (h.status, h.first_error) for n, h in out.state.hosts.items()}
    for name in ("th01", "th02", "th04"):
        h = out.state.hosts[name]
        assert h.status == "ok" and h.failing_controls("after") == [], (name, h.results("after"))
    assert out.state.hosts["th02"].failing_controls("before") == sorted(DRIFT)  # the drift was repaired
    testfleet.start("th03", env)
    again = retry_request(paths)
    assert again is not None and again.hosts == ("th03",)
    retried = timed("retry", lambda: run_rollout(again, paths))
    assert retried.exit_code == 0 and set(retried.state.hosts) == {"th03"}
    assert retried.state.hosts["th03"].failing_controls("after") == []
    assert retry_request(paths) is None


# ---------------------------------------------------------------------- pull mode: queued audits
def test_queued_audits_are_delivered_once(fleet):
    paths = fleet["paths"]
    queued = run_rollout(request(fleet, hosts=tuple(WORKSTATIONS[:2]), audit=True, extravars={"ctfleet_audit_queue": True,
                                                                                              "ctfleet_audit_write_local": True}), paths)
    assert queued.exit_code == 0
    assert ssh(fleet, "th01", "sudo ls /var/spool/ctfleet/audit").stdout.split()  # on the host until delivered
    base = request(fleet, playbook="collect_audits.yml")
    first = collect_queued(base, paths)
    # 2 hosts x (2 roles' audits + the baseline role's inventory)
    assert first["ok"] and first["merged_files"] == 6 and first["already_delivered"] == 0, first
    assert ssh(fleet, "th01", "sudo ls /var/spool/ctfleet/audit").stdout.split() == []  # acknowledged, deleted
    second = collect_queued(base, paths)
    assert second["ok"] and second["merged_files"] == 0 and second["results"] == 0
