"""Backups that restore, on real booted hosts (scripts/testhosts): a reference server
backed up by the role (restic, local + off-site over SFTP on a second host, password
escrowed in an Ansible Vault on the controller), its data destroyed, then restored on a
third, fresh host by ``ctfleet backups drill`` with the escrowed password; checksums
compared; the age metrics exported through node_exporter; the SRV-3 audit failing when the
newest snapshot is older than the norm; a drill over a damaged off-site copy failing.

Needs root, systemd-nspawn, apt-cacher-ng and the Debian mirror (as test_playbooks_hosts).
Outside CI a missing piece skips; with CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctfleet.lab import testhosts as testfleet
from ctfleet.results import ResultsStore
from ctfleet.rollout.config import RolloutPaths, RolloutRequest
from ctfleet.rollout.runner import run_rollout

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.component]

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"th01": "server", "th02": "backup_offsite", "th03": "spare"}
DATA = "/srv/commune"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, project):
    missing = ([] if os.geteuid() == 0 else ["root"]) + [c for c in ("debootstrap", "systemd-nspawn", "apt-cacher-ng", "ip", "ssh")
                                                            if shutil.which(c) is None]
    if missing:
        msg = f"booted test hosts need: {', '.join(missing)} (scripts/setup installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    tmp = tmp_path_factory.mktemp("backups")
    env = {"CTFLEET_TESTHOSTS_DIR": os.environ.get("CTFLEET_BACKUPS_TESTHOSTS_DIR", str(tmp / "state"))}
    testfleet.down(env)
    saved_env = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    try:
        t0 = time.monotonic()
        testfleet.build(env)
        status = testfleet.up(len(ROLES), env)
        TIMINGS["boot"] = time.monotonic() - t0
        ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
        # The escrow: an Ansible Vault on the controller, outside the project.
        (tmp / "vault").mkdir()
        vault_pw = tmp / "vault" / "vault-password"
        vault_pw.write_text(os.urandom(16).hex() + "\n")
        vault_pw.chmod(0o600)
        os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_pw)
        vault = tmp / "vault" / "backup-keys.vault"
        inv = tmp / "inventory.json"
        yield {"status": status, "ct": ct, "env": env, "tmp": tmp, "vault": vault, "inventory": inv,
               "paths": RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=tmp / "runs", results=tmp / "results")}
    finally:
        if saved_env is None:
            os.environ.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
        else:
            os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = saved_env
        testfleet.down(env)
        print(f"\n[backups] timings: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


def ssh(fleet, host: str, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    st = fleet["status"]
    return subprocess.run(["ssh", "-i", st["key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "ConnectTimeout=10", "-o", "ControlPath=none", f"ctfadmin@{st['hosts'][host]['ip']}", command],
                          input=stdin, capture_output=True, text=True, timeout=300)


def ctfleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctfleet.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900, env=dict(os.environ))


def rollout(fleet, **kw):
    st = fleet["status"]
    base = dict(private_key=st["key"], control_path_dir=st["control_path_dir"], host_key_checking=False, wave="test")
    return run_rollout(RolloutRequest(**{**base, **kw}), fleet["paths"])


def test_backup_wipe_restore_on_a_fresh_host(fleet, project):
    ct, status = fleet["ct"], fleet["status"]
    # 1. escrow the CT's password (the role and the drill read the same reference)
    r = ctfleet("backups", "escrow", "--ct", ct.code, "--vault", str(fleet["vault"]))
    assert r.returncode == 0, r.stderr
    ref = r.stdout.split("reference_server_backup_password_ref: ")[1].split()[0]
    assert ref.startswith("vault:") and b"$ANSIBLE_VAULT" in fleet["vault"].read_bytes()[:20]
    again = ctfleet("backups", "escrow", "--ct", ct.code, "--vault", str(fleet["vault"]))
    assert "already escrowed (kept)" in again.stdout  # never replaced: the repositories stay readable
    inv = testfleet.inventory(status, ct, project.norms, ROLES, extra_vars={"reference_server_backup_password_ref": ref})
    fleet["inventory"].write_text(json.dumps(inv))

    # 2. the commune's data on the server, and its checksums as the test sees them
    made = ssh(fleet, "th01", f"sudo mkdir -p {DATA}/registre && for i in 1 2 3 4 5; do sudo head -c 300000 /dev/urandom "
                              f"| sudo tee {DATA}/registre/acte-$i.bin >/dev/null; done && echo 'état civil' | sudo tee {DATA}/lisez-moi.txt"
                              f" >/dev/null && sudo sha256sum {DATA}/registre/* {DATA}/lisez-moi.txt")
    assert made.returncode == 0, made.stderr
    before = made.stdout

    # 3. the region's SFTP host, then the server's backup controls (SRV-3..6) by the role
    t0 = time.monotonic()
    off = rollout(fleet, playbook="backup_offsite.yml", hosts=("th02",))
    assert off.exit_code == 0, {h: s.first_error for h, s in off.state.hosts.items()}
    conv = rollout(fleet, playbook="servers.yml", hosts=("th01",), tags=("SRV-3", "SRV-4", "SRV-5", "SRV-6"))
    TIMINGS["converge"] = time.monotonic() - t0
    assert conv.exit_code == 0, {h: s.first_error for h, s in conv.state.hosts.items()}
    h = conv.state.hosts["th01"]
    assert {"SRV-3", "SRV-5"} <= set(h.failing_controls("before")), h.results("before")
    assert not {"SRV-3", "SRV-4", "SRV-5", "SRV-6"} & set(h.failing_controls("after")), h.results("after")
    stored = {r.control: r for r in ResultsStore(fleet["paths"].results).iter_results() if r.device == "th01"}
    assert "newest snapshot" in stored["SRV-3"].evidence and "off-site sftp:backup_sftp@" in stored["SRV-5"].evidence
    assert stored["SRV-3"].status.value == "pass" and stored["SRV-5"].status.value == "pass"

    # 4. the age metrics, served by node_exporter's textfile collector
    m = ssh(fleet, "th01", "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics').read().decode())\"")
    lines = {l.split(" ")[0]: float(l.split(" ")[1]) for l in m.stdout.splitlines() if l.startswith("ctfleet_backup_")}
    for repo in ("local", "offsite"):
        labels = f'{{ct="{ct.code}",repository="{repo}"}}'
        assert abs(lines["ctfleet_backup_last_success_timestamp_seconds" + labels] - time.time()) < 900, lines
        assert lines["ctfleet_backup_last_size_bytes" + labels] > 1_500_000  # the five 300 kB files at least
        assert lines["ctfleet_backup_max_age_seconds" + labels] == float(project.norms.resolve(ct)["SRV-3"].value) * 3600
    assert "node_textfile_scrape_error 0" in m.stdout

    # 5. the data is destroyed on the server (the server is as good as dead)
    assert ssh(fleet, "th01", f"sudo rm -rf {DATA} && test ! -e {DATA}").returncode == 0

    # 6. the drill: restore on th03 (never had the server's key) with the escrowed password
    t0 = time.monotonic()
    key = status["key"]
    d = ctfleet("backups", "drill", "--ct", ct.code, "--on", "th03", "-i", str(fleet["inventory"]), "--private-key", key,
                "--results", str(fleet["paths"].results), "--json")
    TIMINGS["drill"] = time.monotonic() - t0
    assert d.returncode == 0, d.stdout[-2000:] + d.stderr[-2000:]
    report = json.loads(d.stdout)
    assert report["status"] == "pass" and report["failed"] == 0 and report["files"] >= 6, report
    assert report["server"] == "th01" and report["drill_host"] == "th03"
    drilled = next(r for r in ResultsStore(fleet["paths"].results).iter_results() if r.source.value == "audit"
                   and "restore drill" in r.evidence)
    assert drilled.control == "SRV-5" and drilled.status.value == "pass"
    assert ssh(fleet, "th03", "sudo test ! -e /root/.ctfleet-drill.pass").returncode == 0  # the password did not stay

    # 7. independently: the same snapshot restored on th03, checksums equal to the server's before the wipe
    from ctfleet.edges.credentials import resolve

    pw = resolve(ref, ROOT).reveal()
    repo = inv["all"]["vars"]["reference_server_backup_offsite_repository"]
    check = ssh(fleet, "th03", "sudo sh -c 'umask 077; cat > /root/pw; restic -r " + repo + " -o sftp.command=\"ssh -F "
                "/root/.ssh/ctfleet_drill_config " + repo.split("@")[1].split(":")[0] + " -s sftp\" --password-file /root/pw "
                "restore latest --tag ctfleet --target /root/check --include " + DATA + " >/dev/null; rm -f /root/pw; cd /root/check && "
                "sha256sum ." + DATA + "/registre/* ." + DATA + "/lisez-moi.txt; rm -rf /root/check'", stdin=pw + "\n")
    assert check.returncode == 0, check.stderr
    assert check.stdout.replace("  ./", "  /") == before
    assert pw not in d.stdout + d.stderr

    # 8. the audit fails when the newest snapshot is older than the norm (a real restic snapshot, 3 days old)
    old = ssh(fleet, "th01", "sudo sh -c '. /etc/ctfleet/backup.env; export RESTIC_REPOSITORY RESTIC_PASSWORD_FILE; "
                             "restic forget --tag ctfleet --keep-last 1 >/dev/null && restic forget latest >/dev/null && "
                             "restic backup --tag ctfleet --time \"$(date -d \"-3 days\" \"+%Y-%m-%d %H:%M:%S\")\" /etc/hostname >/dev/null && "
                             "restic snapshots --json | python3 -c \"import json,sys; print(len(json.load(sys.stdin)))\"'")
    assert old.returncode == 0 and old.stdout.strip() == "1", old.stdout + old.stderr
    audit = rollout(fleet, playbook="servers.yml", hosts=("th01",), audit=True, tags=("SRV-3", "SRV-5"))
    assert audit.exit_code == 0
    res = {r.control: r for r in ResultsStore(fleet["paths"].results).iter_results() if r.device == "th01"
           and r.observed_at.timestamp() > time.time() - 600}
    failing = audit.state.hosts["th01"].failing_controls("audit")
    assert "SRV-3" in failing and "SRV-5" not in failing, audit.state.hosts["th01"].results("audit")
    assert audit.state.hosts["th01"].final_counts()["changed"] == 0
    assert res  # written to the results store

    # 9. a damaged off-site copy: the drill fails (exit 1), the result is not a pass
    assert ssh(fleet, "th02", f"sudo sh -c 'find /srv/backups/{ct.code}/data -type f | head -n 50 | xargs rm -f'").returncode == 0
    bad = ctfleet("backups", "drill", "--ct", ct.code, "--on", "th03", "-i", str(fleet["inventory"]), "--private-key", key,
                  "--results", str(fleet["paths"].results), "--json")
    assert bad.returncode == 1, bad.stdout[-1500:] + bad.stderr[-1500:]
    assert json.loads(bad.stdout)["status"] in ("fail", "unknown")
