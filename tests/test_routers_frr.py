"""Routers against real FRRouting (Debian frr: zebra, staticd, vtysh) behind a real sshd,
each router in its own network, mount and PID namespaces (ctfleet.lab.frr_lab), reached
by netmiko over a private link-local veth: backup, diff, audit, push, a push that cuts
management and comes back by itself, bad input per router, the CLI and the playbook.

In CI (CI=true) a missing FRR, sshd or root is a failure, never a skip."""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ctfleet.core.compliance import Status
from ctfleet.core.models import Device, Platform, Role
from ctfleet.core.secrets import Secret
from ctfleet.routers.configtext import mask
from ctfleet.results import ResultsStore
from ctfleet.routers.backups import BackupStore
from ctfleet.routers.drivers import Target, VtyshSession, Login
from ctfleet.lab.frr_lab import FrrLab, LabError, require_frr_lab
from ctfleet.lab.router_fleet import LOGIN_ENV, SNMP_ENV, lab_env, write_lab_project
from ctfleet.routers.ops import RouterJob, RouterOps
from ctfleet.routers.platforms import platform_spec
from ctfleet.routers.render import TEMPLATES, router_norms
from ctfleet.routers.settings import RouterSettings

pytestmark = pytest.mark.component

# Two communes of region 01 and one of region 02: logins are per region, so region 02's
# reference can hold a wrong password while region 01 carries on.
CTS = ["01.511.01.0", "01.511.01.01"]
CT_OTHER_REGION = "02.411.01.11"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    try:
        require_frr_lab()
    except LabError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    lab = FrrLab(tmp_path_factory.mktemp("frr-lab"), ["r-lab-1", "r-lab-2", "r-lab-3", "r-lab-expired"],
                 sessions={"r-lab-expired": "expired-password"})
    lab.start()
    yield lab
    lab.stop()


def _job(p, code: str, router, platform=Platform.FRR, address: str | None = None) -> RouterJob:
    ct = p.registry.cts[code]
    d = Device(hostname=router if isinstance(router, str) else router.name, site_code="S-" + ct.slug, role=Role.ROUTER,
               platform=platform, mgmt_address=ipaddress.ip_address(address or router.address),
               credentials=f"env:{SNMP_ENV}", snmp_version="v3")
    return RouterJob(d, ct, None, platform_spec(platform), router_norms(p.norms.resolve(ct)))


def _ops(p, lab, tmp: Path, **kw) -> RouterOps:
    env = dict(os.environ, **lab_env(lab))
    env["CTFLEET_RTR_LOGIN_01"] = env[LOGIN_ENV]
    env["CTFLEET_RTR_LOGIN_02"] = json.dumps({"username": "netops", "password": "not-the-password"})
    settings = RouterSettings(connect_timeout_seconds=3, device_timeout_seconds=60)
    return RouterOps(p.root, settings, results=ResultsStore(tmp / "results"), backups=BackupStore(tmp / "backups", p.root),
                     env=env, revert_grace_seconds=3, **kw)


def _strip(cfg: str) -> str:
    return "\n".join(l for l in cfg.splitlines() if not l.startswith(("Building", "Current")))


def test_backup_audit_diff_push_audit_on_frr(lab, registry_only, tmp_path) -> None:
    p = registry_only
    ops = _ops(p, lab, tmp_path)
    jobs = [_job(p, code, r) for code, r in zip(CTS, lab.routers[:2])]

    backup = ops.run("backup", jobs)
    assert [o.status for o in backup.outcomes] == ["ok", "ok"], [o.summary for o in backup.outcomes]
    log = ops.backups.log()
    assert "2 of 2 routers changed" in log and all(code in log for code in CTS)

    before = ops.run("audit", jobs)
    for o in before.outcomes:
        st = {r.control: r.status for r in o.data["results"]}
        assert st["RTR-1"] == Status.FAIL and st["RTR-4"] == Status.FAIL and st["RTR-7"] == Status.PASS
        assert st["RTR-2"] == Status.UNKNOWN and "snmpd" in {r.control: r for r in o.data["results"]}["RTR-2"].evidence

    diff = ops.run("diff", jobs[:1]).outcomes[0]
    assert "+access-list CTFLEET-NO-VTY seq 5 deny any" in diff.data["diff"] and "+log syslog informational" in diff.data["diff"]
    assert lab.routers[0].guard("status").startswith("idle never-armed")  # diff and audit change nothing

    push = ops.run("push", jobs, revert_after=30)
    assert [o.status for o in push.outcomes] == ["changed", "changed"], [o.summary for o in push.outcomes]
    assert push.outcomes[0].data["controls"] == ["RTR-1", "RTR-4"]
    running = lab.routers[0].vtysh("show running-config")
    assert "access-list CTFLEET-NO-VTY seq 5 deny any" in running and " access-class CTFLEET-NO-VTY" in running
    assert lab.routers[0].guard("status").startswith("idle confirmed")  # the timer was cancelled, not left to fire
    assert "log syslog informational" in (lab.routers[0].dir / "etc-frr" / "frr.conf").read_text()  # saved once confirmed

    after = ops.run("audit", jobs)
    for o in after.outcomes:
        st = {r.control: r.status for r in o.data["results"]}
        assert Status.FAIL not in st.values(), o.summary
        assert st["RTR-1"] == Status.PASS and st["RTR-4"] == Status.UNKNOWN  # syslog forwarding is the host's
    assert {o.status for o in ops.run("push", jobs).outcomes} == {"in-norm"}  # idempotent

    again = ops.run("backup", jobs)
    assert again.commit and "2 of 2 routers changed" in ops.backups.log()
    history = subprocess.run(["git", "-C", str(ops.backups.path), "log", "-p", "-1"], capture_output=True, text=True).stdout
    assert "+access-list CTFLEET-NO-VTY seq 5 deny any" in history
    assert ops.run("backup", jobs).commit is None  # nothing changed: no commit
    stored = ResultsStore(tmp_path / "results").latest()
    assert stored[(CTS[0], "r-lab-1", "RTR-7")].status == Status.PASS


def test_push_that_cuts_management_reverts_by_itself(lab, registry_only, tmp_path) -> None:
    """A technician's template adds a route that blackholes the controller: the change is
    applied, the controller loses the router, never confirms; the router restores its
    saved configuration by itself, and management works again."""
    p = registry_only
    r = lab.routers[2]
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "frr.j2").write_text((TEMPLATES / "frr.j2").read_text()
                                      + '{% call control("base") -%}\nip route ' + r.host_address + '/32 blackhole\n{%- endcall %}\n')
    ops = _ops(p, lab, tmp_path, template_dir=templates)
    saved = _strip(r.vtysh("show running-config"))
    t = time.monotonic()
    o = ops.push(_job(p, CTS[0], r), revert_after=10)
    assert o.status == "reverted", o.summary
    assert "management was lost" in o.summary and "restored its saved configuration by itself" in o.summary
    assert o.data["last"].startswith(f"reverted {o.data['token']}")
    assert _strip(r.vtysh("show running-config")) == saved  # exactly the saved configuration
    assert "blackhole" not in (r.dir / "etc-frr" / "frr.conf").read_text().split("192.0.2.0/24 blackhole")[-1]
    assert time.monotonic() - t < 40
    s = VtyshSession(Target(r.name, r.address, login=Login("netops", _secret(lab)), connect_timeout=3))
    try:
        assert "hostname" in s.get_config()  # and management works
    finally:
        s.close()


def _secret(lab):
    from ctfleet.core.secrets import Secret

    return Secret(lab.password)


@pytest.fixture()
def tarpit():
    """A TCP port that accepts and never speaks: a router whose SSH is stuck."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield srv.getsockname()[1]
    stop.set()
    th.join(2)
    for c in held:
        c.close()
    srv.close()


def test_bad_input_is_a_clear_error_per_router_and_the_others_carry_on(lab, registry_only, tmp_path, tarpit) -> None:
    p = registry_only
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there any more
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "frr.j2").write_text((TEMPLATES / "frr.j2").read_text() + '! host NTP servers: {{ norm("RTR-3") }}\n')
    ops = _ops(p, lab, tmp_path, template_dir=templates, ports={"r-closed": closed_port, "r-tarpit": tarpit})
    no_ntp_norm = _job(p, CTS[1], lab.routers[1])
    no_ntp_norm = RouterJob(no_ntp_norm.device.model_copy(update={"hostname": "r-lab-2"}), no_ntp_norm.ct, None,
                            no_ntp_norm.spec, {k: v for k, v in no_ntp_norm.norms.items() if k != "RTR-3"})
    jobs = [
        _job(p, CTS[0], lab.routers[0]),                                   # fine
        _job(p, CT_OTHER_REGION, lab.routers[2]),                          # region 02: wrong password
        _job(p, CTS[0], "r-closed", address="127.0.0.1"),                 # nothing listens
        _job(p, CTS[0], "r-tarpit", address="127.0.0.1"),                 # TCP yes, SSH never
        _job(p, CTS[0], lab.routers[3]),                                   # answers with a password-expired prompt
        no_ntp_norm,                                                       # its CT's norms lack RTR-3, the template needs it
    ]
    t = time.monotonic()
    report = ops.run("audit", jobs, concurrency=6)
    by = {o.hostname: o for o in report.outcomes}
    assert time.monotonic() - t < 45
    assert by["r-lab-1"].status == "ok"
    assert (by["r-lab-3"].error_kind, by["r-closed"].error_kind, by["r-tarpit"].error_kind) == ("auth", "unreachable", "unreachable")
    assert "refused the login of 'netops'" in by["r-lab-3"].summary and "not-the-password" not in by["r-lab-3"].summary
    assert "refused the connection" in by["r-closed"].summary and "never spoke SSH" in by["r-tarpit"].summary
    assert by["r-lab-expired"].error_kind == "prompt" and "password has expired" in by["r-lab-expired"].summary.lower()
    assert by["r-lab-2"].error_kind == "norms" and "frr.j2" in by["r-lab-2"].summary and "'RTR-3'" in by["r-lab-2"].summary
    # An audit that could not look leaves unknowns (coverage drops), never passes.
    unk = {r.status for r in by["r-closed"].data["results"] if r.control != "RTR-7"}
    assert unk == {Status.UNKNOWN}
    assert lab.password not in json.dumps([o.summary for o in report.outcomes])


def test_conformance_vtysh_live(lab) -> None:
    from test_routers_ios_mock import check_conformance

    r = lab.routers[0]
    s = VtyshSession(Target(r.name, r.address, login=Login("netops", _secret(lab)), connect_timeout=3))
    try:
        check_conformance(s, ["show ip route summary", "show no-such-thing"])
        assert s.get_state(["show no-such-thing"]) == {"show no-such-thing": None}
    finally:
        s.close()


def test_cli_and_playbook_on_the_lab(lab, registry_only, tmp_path) -> None:
    """The technician's entry points: ``ctfleet routers`` and ``playbooks/routers.yml``."""
    root = registry_only.root
    env_file = write_lab_project(tmp_path / "walk", registry_only, lab, CTS)
    env = dict(os.environ)
    for line in env_file.read_text().splitlines():
        k, _, v = shlex.split(line)[1].partition("=")
        env[k] = v
    ctfleet = [sys.executable, "-m", "ctfleet.cli.main"]
    r = subprocess.run([*ctfleet, "routers", "backup", "--json"], capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"] == {"ok": 2}
    r = subprocess.run([*ctfleet, "routers", "push"], capture_output=True, text=True, env=env, cwd=root, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "--yes" in r.stderr  # never changes routers without being told
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(root / "inventory" / "ctfleet_inventory.py"),
                str(root / "playbooks" / "routers.yml"), "-e", "ctfleet_router_action=audit"]
    r = subprocess.run(playbook, capture_output=True, text=True, env=dict(env, ANSIBLE_NOCOLOR="1"), cwd=root, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    # Each router reports its own outcome; controls failing is the audit's answer, not a failed play.
    assert r.stdout.count('"msg": "ok: ') == 2 and " pass, " in r.stdout
    assert "failed=0" in r.stdout and "r-lab-1" in r.stdout and "r-lab-2" in r.stdout
    stored = ResultsStore(tmp_path / "walk" / "results").latest()
    assert {(k[1], k[2]) for k in stored} >= {("r-lab-1", "RTR-1"), ("r-lab-2", "RTR-7")}


# ---------------------------------------------------------------------- backups that restore
def _keyed_ops(p, lab, tmp: Path, **kw) -> RouterOps:
    """Operations with encrypted full copies (age keys made here), restores, and the age metrics."""
    from ctfleet.routers.backups import new_identity

    identity, recipient = new_identity()
    key = tmp / "keys" / "router-backups.agekey"
    key.parent.mkdir(parents=True)
    key.write_text(identity.reveal() + "\n")
    ops = _ops(p, lab, tmp, **kw)
    ops.settings = ops.settings.model_copy(update={"backup_recipients": [recipient], "backup_identity": f"file:{key}",
                                                   "backup_metrics_file": str(tmp / "textfile" / "ctfleet_router_backups.prom")})
    ops.backups = BackupStore(tmp / "backups", p.root, recipients=[recipient])
    return ops


def _paths_of(cfg: str) -> set:
    from ctfleet.routers.configtext import parse, paths

    return paths(parse(cfg))


def _no_canary_in_history(store: BackupStore, canaries: list[str]) -> int:
    """Every blob of every commit (and the working tree) must be free of the canaries; returns blobs read."""
    n = 0
    for sha, path, data in store.history():
        n += 1
        for c in canaries:
            assert c.encode() not in data, f"secret in the backup history: {sha[:10]} {path}"
    for f in store.path.rglob("*"):
        if f.is_file() and ".git" not in f.parts:
            for c in canaries:
                assert c.encode() not in f.read_bytes(), f"secret in the backup tree: {f}"
    return n


def test_encrypted_backup_restore_and_the_age_metric(lab, registry_only, tmp_path) -> None:
    """A router with a secret ctfleet does not manage (FRR's vty password): backed up masked
    and encrypted; a changed secret commits the encrypted copy alone; a broken router is
    restored to a chosen revision, the secret back in place; no secret ever in git."""
    from prometheus_client.parser import text_string_to_metric_families

    p = registry_only
    r = lab.routers[1]
    ops = _keyed_ops(p, lab, tmp_path)
    job = _job(p, CTS[1], r)
    canary1, canary2 = "canary-" + os.urandom(6).hex(), "canary-" + os.urandom(6).hex()
    r.vtysh("configure terminal", f"password {canary1}", "end")

    first = ops.run("backup", [job])
    assert first.outcomes[0].status == "ok" and first.outcomes[0].data["sealed"], first.outcomes[0].summary
    rev_a = first.commit
    rel = ops.backups.relpath(job.device, job.ct)
    assert "password <secret>" in (ops.backups.path / rel).read_text()
    assert (ops.backups.path / (rel + ".age")).read_text().startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    saved_a = _strip(r.vtysh("show running-config"))

    # The age metric: node_exporter textfile, checked by promtool, the norm beside it.
    prom = Path(ops.settings.backup_metrics_file).read_text()
    check = subprocess.run(["promtool", "check", "metrics"], input=prom, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fams = {f.name: f for f in text_string_to_metric_families(prom)}
    last = fams["ctfleet_router_backup_last_success_timestamp_seconds"].samples[0]
    assert last.labels["device"] == r.name and last.labels["ct"] == CTS[1] and abs(last.value - time.time()) < 120
    norm = fams["ctfleet_router_backup_max_age_seconds"].samples[0]
    assert norm.value == float(job.norms["RTR-7"].value) * 3600

    # Only the secret changes: one commit, the encrypted copy alone, the secret still out of git.
    r.vtysh("configure terminal", f"password {canary2}", "end")  # overwrites the old one
    second = ops.run("backup", [job])
    assert second.commit and second.commit != rev_a
    changed = subprocess.run(["git", "-C", str(ops.backups.path), "show", "--name-only", "--format=%B", second.commit],
                             capture_output=True, text=True).stdout
    assert rel + ".age" in changed and f"\n{rel}\n" not in changed and "encrypted copy only" in changed
    assert ops.run("backup", [job]).commit is None  # nothing changed: no commit, no re-encryption

    # Break the router (as a technician's mistake would), then restore revision A.
    r.vtysh("configure terminal", "ip route 198.51.100.0/24 blackhole", "no ip route 192.0.2.0/24 blackhole", "end")
    restored = ops.run("restore", [job], rev=rev_a, revert_after=30).outcomes[0]
    assert restored.status == "changed", restored.summary
    assert f"restored revision {rev_a[:10]}" in restored.summary and "confirmed and saved" in restored.summary
    assert "still differing" not in restored.summary
    now = _strip(r.vtysh("show running-config"))
    assert _paths_of(now) == _paths_of(saved_a), (now, saved_a)
    assert f"password {canary1}" in now  # the secret kept only in the encrypted copy is back
    assert canary1 not in json.dumps([restored.summary, restored.data.get("commands")])  # never on screen
    assert lab.routers[1].guard("status").startswith("idle confirmed")
    assert ops.run("restore", [job], rev=rev_a).outcomes[0].status == "in-norm"  # already there: nothing sent

    # A revision whose restore cuts management: the router reverts by itself.
    cut = Secret(saved_a.replace("ip route 192.0.2.0/24 blackhole", f"ip route 192.0.2.0/24 blackhole\nip route {r.host_address}/32 blackhole"))
    ops.backups.init()
    ops.backups.save(job.device, job.ct, mask(cut.reveal()), full=cut)
    rev_cut = ops.backups.commit()
    t = time.monotonic()
    o = ops.restore(job, rev_cut, revert_after=10)
    assert o.status == "reverted", o.summary
    assert "restored its saved configuration by itself" in o.summary and time.monotonic() - t < 45
    assert _paths_of(_strip(r.vtysh("show running-config"))) == _paths_of(saved_a)

    blobs = _no_canary_in_history(ops.backups, [canary1, canary2, lab.password])
    assert blobs >= 6
    r.vtysh("configure terminal", "no password", "end")


def test_restore_refuses_what_it_cannot_restore(lab, registry_only, tmp_path) -> None:
    """No identity for an encrypted revision, a masked-only revision with secrets, an unknown
    revision: one clear error per router, nothing sent."""
    p = registry_only
    r = lab.routers[0]
    job = _job(p, CTS[0], r)
    ops = _keyed_ops(p, lab, tmp_path)
    rev = ops.run("backup", [job]).commit
    no_identity = _ops(p, lab, tmp_path)
    no_identity.backups = ops.backups
    o = no_identity.restore(job, rev)
    assert o.status == "failed" and o.error_kind == "credentials" and "backup_identity" in o.summary
    o = ops.restore(job, "0" * 40)
    assert (o.status, o.error_kind) == ("failed", "backup") and f"no backup of {r.name}" in o.summary, o.summary
    masked_only = _ops(p, lab, tmp_path / "m")
    r.vtysh("configure terminal", "password only-masked-1", "end")
    try:
        masked_only.run("backup", [job])
        o = masked_only.restore(job)
        assert o.status == "failed" and o.error_kind == "credentials" and "kept only masked" in o.summary, o.summary
    finally:
        r.vtysh("configure terminal", "no password", "end")
    assert r.guard("status").split()[0] == "idle"


def test_backup_walkthrough_on_the_lab(lab, registry_only, tmp_path) -> None:
    """The README's "Backups that restore" commands, as a technician runs them: keygen, the
    schedule (its unit's ExecStart run as the timer would), the backup, git log, restore."""
    from prometheus_client.parser import text_string_to_metric_families

    root = registry_only.root
    walk = tmp_path / "walk"
    env_file = write_lab_project(walk, registry_only, lab, CTS)
    env = dict(os.environ)
    for line in env_file.read_text().splitlines():
        k, _, v = shlex.split(line)[1].partition("=")
        env[k] = v
    ctfleet = [sys.executable, "-m", "ctfleet.cli.main"]

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*ctfleet, *args], capture_output=True, text=True, env=env, cwd=root, timeout=180, **kw)

    key = walk / "keys" / "router-backups.agekey"
    r = run("routers", "keygen", "--identity-file", str(key))
    assert r.returncode == 0, r.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600" and key.read_text().count("AGE-SECRET-KEY-1") == 1
    settings_lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith(("backup_recipients:", "backup_identity:"))]
    assert len(settings_lines) == 2
    textfile = walk / "textfile" / "ctfleet_router_backups.prom"
    with open(env["CTFLEET_ROUTER_SETTINGS"], "a") as fh:
        fh.write("\n".join(settings_lines) + f"\nbackup_metrics_file: {textfile}\n")
    assert run("routers", "keygen", "--identity-file", str(key)).returncode == 1  # never overwrites a key

    units = walk / "units"
    r = run("routers", "schedule", "--out", str(units), "--ctfleet", f"{sys.executable} -m ctfleet.cli.main")
    assert r.returncode == 0, r.stderr
    service = (units / "ctfleet-router-backup.service").read_text()
    assert "OnCalendar=*-*-* 00/6:00:00" in (units / "ctfleet-router-backup.timer").read_text()  # RTR-7 24 h / 4
    exec_start = next(ln.split("=", 1)[1] for ln in service.splitlines() if ln.startswith("ExecStart="))
    fired = subprocess.run(shlex.split(exec_start), capture_output=True, text=True, env=env, cwd="/", timeout=180)  # the timer fires
    assert fired.returncode == 0, fired.stdout + fired.stderr
    repo = walk / "backups"
    log = subprocess.run(["git", "-C", str(repo), "log", "--stat", "-1"], capture_output=True, text=True).stdout
    assert "2 of 2 routers changed" in log and ".cfg.age" in log
    fams = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    assert {s.labels["device"] for s in fams["ctfleet_router_backup_last_success_timestamp_seconds"].samples} == {"r-lab-1", "r-lab-2"}

    r0 = lab.routers[0]
    saved = _strip(r0.vtysh("show running-config"))
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    r0.vtysh("configure terminal", "ip route 203.0.113.0/24 blackhole", "end")  # a wrong change on the router
    assert run("routers", "restore", "--ct", CTS[0], "--rev", rev, stdin=subprocess.DEVNULL).returncode == 1  # asks for --yes
    r = run("routers", "restore", "--ct", CTS[0], "--rev", rev, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"restored revision {rev}" in " ".join(r.stdout.split())
    assert _paths_of(_strip(r0.vtysh("show running-config"))) == _paths_of(saved)
