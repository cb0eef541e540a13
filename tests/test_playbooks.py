"""The roles without hosts: generated inputs up to date, every control present with its id
in task names and tags, the audit filter agreeing with the core judge, syntax, and
ansible-lint at the production profile.

In CI (CI=true) a missing tool (ansible-lint, ansible-playbook, promtool) is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ctfleet.core.compliance import judge
from ctfleet.rollout.role_inputs import ROLES, controls_by_role, render_roles, read_sources, role_of, slug, stale_files

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
VENV_BIN = Path(sys.executable).parent
OUR_PLAYBOOKS = ["site.yml", "workstations.yml", "workstations_windows.yml", "servers.yml", "collect_audits.yml", "collect_ack.yml", "pull.yml", "pull_setup.yml"]
NAME = re.compile(r"^(?P<cid>[A-Z]{2,4}-\d+(\.\d+)?) \| (?P<mode>AUDIT|PATCH) \| [A-Z]")

sys.path.insert(0, str(PLAYBOOKS / "filter_plugins"))
import ctfleet_audit  # noqa: E402  the filter plugin, as Ansible loads it


def need(tool: str) -> str:
    path = shutil.which(tool, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (scripts/setup installs it)")
        pytest.skip(f"{tool} not installed")
    return path


def _tasks(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or []


# ---------------------------------------------------------------------- generation
def test_generated_files_are_up_to_date(project):
    stale = stale_files(project.norms, PLAYBOOKS)
    assert stale == [], f"run `ctfleet playbooks generate`: out of date: {stale}"


def test_every_host_control_of_the_catalogue_is_in_a_role(project):
    by_role = controls_by_role(project.norms)
    host_controls = [c.id for c in project.norms.controls.values() if {"workstation", "server"} & set(c.applies_to)]
    assert sorted(sum(by_role.values(), [])) == sorted(host_controls)
    assert role_of(project.norms.control("SYS-9")) == "baseline"  # also applies to routers
    assert "WS-2" in by_role["workstation"] and "SRV-6" in by_role["reference_server"]


def test_a_control_without_an_audit_file_fails_generation_naming_the_file(project):
    from ctfleet.core.errors import CtfleetError

    sources = read_sources(PLAYBOOKS)
    broken = dict(sources)
    broken["baseline"] = type(sources["baseline"])(audit_tasks=sources["baseline"].audit_tasks - {"sys_5"},
                                                   remediate_tasks=sources["baseline"].remediate_tasks, inputs=sources["baseline"].inputs)
    with pytest.raises(CtfleetError, match=r"roles/baseline/tasks/audit/sys_5\.yml"):
        render_roles(project.norms, broken)


@pytest.mark.parametrize("role", ROLES)
def test_task_names_carry_the_control_id_and_mode(role, project):
    base = PLAYBOOKS / "roles" / role / "tasks"
    for mode, folder in (("AUDIT", "audit"), ("PATCH", "remediate")):
        for f in sorted((base / folder).glob("*.yml")):
            for task in _tasks(f):
                m = NAME.match(task.get("name", ""))
                assert m, f"{f.relative_to(ROOT)}: task name {task.get('name')!r} must be '<ID> | {mode} | <What>'"
                assert slug(m["cid"]) == f.stem and m["mode"] == mode, f"{f.relative_to(ROOT)}: {task['name']!r}"
                project.norms.control(m["cid"])  # a real control id


@pytest.mark.parametrize("role", ROLES)
def test_each_control_has_a_switch_tags_and_typed_inputs(role, project):
    audit = _tasks(PLAYBOOKS / "roles" / role / "tasks" / "audit.yml")
    specs = yaml.safe_load((PLAYBOOKS / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text())
    for cid in controls_by_role(project.norms)[role]:
        c = project.norms.control(cid)
        imp = next(t for t in audit if t["name"].startswith(f"{cid} |"))
        assert imp["tags"][:3] == [cid, c.topic, f"level{c.level}"]
        assert f"{role}_{slug(cid)} | bool" in imp["when"]
        assert specs[f"{role}_{slug(cid)}"]["type"] == "bool" and defaults[f"{role}_{slug(cid)}"] is True
        assert specs[f"{role}_{slug(cid)}_value"]["type"] in ("bool", "int", "float", "str", "list")
    for name, spec in specs.items():
        assert spec.get("description"), f"{role}: input {name} is not documented"


def _remediation_plan(role: str) -> tuple[dict[str, str], list[dict]]:
    """remediate.yml: {control: its condition in the plan} and the per-control includes."""
    tasks = _tasks(PLAYBOOKS / "roles" / role / "tasks" / "remediate.yml")
    plan = tasks[0]["ansible.builtin.set_fact"][f"{role}_to_remediate"]
    conds = {m.group(1): m.group(2) for m in re.finditer(r"\+ \(\['([A-Z]+-\d+)'\] if (.+?)\s+else \[\]\)", plan, re.S)}
    return conds, tasks[1:]


def test_disruptive_controls_need_the_explicit_flag(project):
    for role in ROLES:
        conds, includes = _remediation_plan(role)
        assert conds and len(conds) == len(includes), role
        for cid, cond in conds.items():
            flagged = "(ctfleet_allow_disruptive | default(false) | bool)" in cond
            assert flagged == project.norms.control(cid).disruptive, cid


def test_only_what_the_first_audit_found_failing_is_remediated(project):
    """The plan names a control when it is enabled, applicable and the first audit's result for
    it is fail (or missing: not observed in this run); each control's tasks are included only
    when the plan names it, with the control's tags."""
    for role in ROLES:
        conds, includes = _remediation_plan(role)
        for task in includes:
            cid = task["name"].split(" |")[0]
            gate = f"(({role}_audit_report | default({{}})).results | default({{}})).get('{cid}', {{}}).get('status', 'fail') == 'fail'"
            assert gate in conds[cid] and f"({role}_{slug(cid)} | bool)" in conds[cid], cid
            assert task["when"] == f"'{cid}' in {role}_to_remediate"
            assert task["ansible.builtin.include_tasks"]["file"] == f"remediate/{slug(cid)}.yml"
            assert task["ansible.builtin.include_tasks"]["apply"]["tags"] == task["tags"] and cid in task["tags"]


# ---------------------------------------------------------------------- the audit filter
_VALUES = st.one_of(st.integers(-5, 50), st.floats(-5, 50, allow_nan=False), st.booleans(), st.none(),
                    st.lists(st.sampled_from(["22", "445", "9100", "fibre", "vsat", 22, 445]), max_size=4),
                    st.sampled_from(["debian-12", "small", "v2c"]))


@settings(max_examples=300, deadline=None)
@given(compare=st.sampled_from(["min", "max", "equal", "subset", "superset", "member"]), expected=_VALUES, observed=_VALUES)
def test_filter_judges_like_the_core(compare, expected, observed):
    from ctfleet.core.norms import Control

    c = Control(id="SYS-5", title="t", applies_to=["server"], topic="ssh", severity="low", type="int", compare=compare,
                sources=[{"source": "x"}])
    assert ctfleet_audit._judge(compare, expected, observed) == judge(c, expected, observed).value


def test_filter_reports_only_enabled_controls_of_its_role():
    controls = {"SYS-5": {"compare": "max", "title": "t", "severity": "medium", "topic": "ssh"},
                "SYS-3": {"compare": "equal", "title": "t", "severity": "high", "topic": "ssh"}}
    observed = {"SYS-5": {"observed": 6, "evidence": "sshd -T: maxauthtries 6"}, "SYS-3": {"observed": True},
                "WS-2": {"observed": 5}}
    out = ctfleet_audit.ctfleet_judge(observed, controls, {"SYS-5": 4, "SYS-3": True}, {"SYS-5": True, "SYS-3": "False"})
    assert set(out) == {"SYS-5"} and out["SYS-5"]["status"] == "fail" and out["SYS-5"]["expected"] == 4
    forced = ctfleet_audit.ctfleet_judge({"SYS-5": {"observed": None, "status": "fail"}}, controls, {"SYS-5": 4})
    assert forced["SYS-5"]["status"] == "fail"


def test_textfile_metrics_are_valid(tmp_path):
    text = ctfleet_audit.ctfleet_textfile({"observed_at": "2026-11-27T08:00:00Z", "results": {
        "SYS-3": {"status": "pass", "severity": "high"}, "WS-2": {"status": "fail", "severity": 'me"d'}}})
    assert 'ctfleet_audit_control_status{control="SYS-3",severity="high",status="pass"} 1' in text
    assert 'ctfleet_audit_control_status{control="WS-2",severity="me\\"d",status="fail"} 1' in text
    promtool = need("promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


# ---------------------------------------------------------------------- Ansible's own checks
def _ansible_env() -> dict:
    return {**os.environ, "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"), "ANSIBLE_FILTER_PLUGINS": str(PLAYBOOKS / "filter_plugins"),
            "ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.component
@pytest.mark.parametrize("playbook", OUR_PLAYBOOKS)
def test_playbook_syntax(playbook, tmp_path):
    exe = need("ansible-playbook")
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  children:\n    role_workstation: {hosts: {}}\n    role_server: {hosts: {}}\n    platform_windows: {hosts: {}}\n")
    p = subprocess.run([exe, "--syntax-check", "-i", str(inv), str(PLAYBOOKS / playbook)], capture_output=True, text=True,
                       env=_ansible_env(), cwd=PLAYBOOKS)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.component
def test_ansible_lint_production_profile_passes():
    exe = need("ansible-lint")
    # Every playbook of playbooks/ (routers.yml too), not only the roles' ones.
    targets = sorted(p.name for p in PLAYBOOKS.glob("*.yml")) + [f"roles/{r}" for r in ROLES]
    p = subprocess.run([exe, "--offline", "--profile", "production", "--nocolor", "-f", "pep8", *targets], capture_output=True,
                       text=True, env=_ansible_env(), cwd=PLAYBOOKS, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "it passed" in p.stderr + p.stdout


def test_cli_check_and_generate_agree(tmp_path):
    from typer.testing import CliRunner

    from ctfleet.cli.rollout import playbooks_app

    r = CliRunner().invoke(playbooks_app, ["check"])
    assert r.exit_code == 0 and "ok: generated role files match" in r.output, r.output


# ---------------------------------------------------------------------- effective-state readers
# Recorded outputs of the hosts' own tools (tests/fixtures/audit/*/README.md says how); the
# same readers are proven on booted hosts by tests/test_audit_mutations.py.
AUDIT_FIXTURES = ROOT / "tests" / "fixtures" / "audit"


@pytest.mark.parametrize("case, deny, tcp, words", [
    ("good", True, [22, 445, 9100], []),
    ("empty", False, ["any"], ["input hook chains none"]),
    ("acceptall", False, ["any"], ["inet ctfleet input handle 13: 'accept' opens tcp every port"]),
    ("policy", False, ["any"], ["(policy accept)", "'policy accept' opens tcp every port"]),
    ("jump", False, ["any"], ["inet ctfleet lan handle 14: 'accept' opens tcp every port"]),
    ("range", True, None, ["'tcp dport 8000-8100 accept' opens tcp 8000-8100", "'udp dport 53 accept' opens udp 53"]),
    ("second", True, [22, 445, 9100], ["ip extra in (policy accept), inet ctfleet input (policy drop)"]),
])
def test_firewall_is_judged_by_its_verdicts(case, deny, tcp, words):
    out = ctfleet_audit.ctfleet_nft_inbound((AUDIT_FIXTURES / "nft" / f"{case}.json").read_text(), [22, 445, 9100])
    assert out["default_deny"] is deny, out["evidence"]
    if tcp is not None:
        assert out["tcp"] == tcp
    for w in words:
        assert w in out["evidence"], out["evidence"]
    if case == "range":  # the ports the extra rules open, and only those, beyond the norm
        assert out["tcp"] == [22, 445, *range(8000, 8101), 9100] and out["udp"] == [53]
    if case == "good":
        assert out["extra"] == [] and out["udp"] == []


def test_sshd_is_asked_in_every_context_and_names_the_line():
    gathered = (AUDIT_FIXTURES / "sshd" / "match_lan_gathered.txt").read_text()
    runs = (AUDIT_FIXTURES / "sshd" / "match_lan_runs.txt").read_text()
    assert ctfleet_audit.ctfleet_sshd_args(gathered) == ["-o", "PasswordAuthentication=yes"]
    ctx = ctfleet_audit.ctfleet_sshd_contexts(gathered, [{"name": "ctfadmin"}], ["192.168.4.0/24"],
                                              [{"address": "10.250.81.11", "network": "10.250.81.0", "netmask": "255.255.255.0"}])
    addrs = {c.split("addr=")[1].split(",")[0] for c in ctx}
    assert addrs == {"127.0.0.1", "10.0.0.1", "10.250.81.1", "192.168.4.1", "203.0.113.10"}  # Match Address, LAN, admins, outside
    assert {c.split(",")[0] for c in ctx} == {"user=root", "user=ctfadmin"}
    root = ctfleet_audit.ctfleet_sshd_effective(runs, "permitrootlogin", gathered)
    assert root["observed"] is False
    assert "permitrootlogin yes for user=root,host=10.0.0.1,addr=10.0.0.1" in root["evidence"]
    assert "50-lan.conf:4 'PermitRootLogin yes' (in 'Match Address 10.0.0.0/8' at line 3)" in root["evidence"]
    pw = ctfleet_audit.ctfleet_sshd_effective(runs, "password", gathered)
    assert pw["observed"] is False and "sshd command line (unit ExecStart) '-o PasswordAuthentication=yes'" in pw["evidence"]
    tries = ctfleet_audit.ctfleet_sshd_effective(runs, "maxauthtries", gathered, 4)
    assert tries["observed"] == 8 and "50-lan.conf:5 'MaxAuthTries 8'" in tries["evidence"]
    broken = ctfleet_audit.ctfleet_sshd_effective("### user=root\n/etc/ssh/sshd_config line 3: Bad option\n### rc=255\n", "password")
    assert broken["observed"] is None and "Bad option" in broken["evidence"]


def test_sshd_command_line_variables_are_expanded_as_systemd_does():
    g = ("### execstart\n{ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS -f ${ALT} ; ignore_errors=no }\n"
         "### environ\nSSHD_OPTS=\nSSHD_OPTS=-oPermitRootLogin=yes -o MaxAuthTries=9\nALT=/etc/ssh/alt_config\n")
    assert ctfleet_audit.ctfleet_sshd_args(g) == ["-o", "PermitRootLogin=yes", "-o", "MaxAuthTries=9", "-f", "/etc/ssh/alt_config"]


def test_sudo_grants_name_the_account_and_the_line():
    text = ("### root groups=root\nUser root may run the following commands on h:\n    (ALL : ALL) ALL\n### rc=0\n"
            "### ctfadmin groups=ctfadmin,sudo\nUser ctfadmin may run the following commands on h:\n    (ALL) NOPASSWD: ALL\n### rc=0\n"
            "### agent groups=agent,users\nUser agent may run the following commands on h:\n    (ALL) ALL\n### rc=0\n"
            "### nobody groups=nogroup\nUser nobody is not allowed to run sudo on h.\n### rc=0\n")
    sudoers = "/etc/sudoers:50:%sudo\tALL=(ALL:ALL) ALL\n/etc/sudoers.d/50-users:1:%users ALL=(ALL) ALL\n"
    out = ctfleet_audit.ctfleet_sudo_grants(text, [{"name": "ctfadmin"}], sudoers)
    assert out["observed"] is False
    assert out["evidence"].startswith("sudo -l -U: agent may run (ALL) ALL (granted by /etc/sudoers.d/50-users:1 '%users ALL=(ALL) ALL')")
    ok = ctfleet_audit.ctfleet_sudo_grants(text.split("### agent")[0], [{"name": "ctfadmin"}], sudoers)
    assert ok["observed"] is True and "2 accounts" in ok["evidence"]


_APT_OK = ("### package\ninstall ok installed\n### timers\napt-daily.timer enabled active\napt-daily-upgrade.timer enabled active\n"
           "### dump\nAPT::Periodic \"\";\nAPT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n"
           "Unattended-Upgrade::Origins-Pattern \"\";\n"
           "Unattended-Upgrade::Origins-Pattern:: \"origin=Debian,codename=${distro_codename},label=Debian-Security\";\n"
           "### files\n/etc/apt/apt.conf.d/20auto-upgrades:2:APT::Periodic::Update-Package-Lists \"1\";\n")


@pytest.mark.parametrize("drift, words", [
    (("", ""), None),
    (("APT::Periodic \"\";\n", "APT::Periodic \"\";\nAPT::Periodic::Enable \"0\";\n"),
     "APT::Periodic::Enable \"0\""),
    (("apt-daily-upgrade.timer enabled active", "apt-daily-upgrade.timer masked inactive"), "apt-daily-upgrade.timer masked/inactive"),
    (("label=Debian-Security", "label=Debian"), "no security origin"),
    (("install ok installed", "unknown ok not-installed"), "unattended-upgrades not installed"),
])
def test_updates_are_judged_by_apt_config_and_the_timers(drift, words):
    out = ctfleet_audit.ctfleet_apt_updates(_APT_OK.replace(*drift) if drift[0] else _APT_OK)
    assert out["observed"] is (words is None), out["evidence"]
    assert (words or "Unattended-Upgrade \"1\"") in out["evidence"]


_LOG_OK = ("### virt\nmachine\n### rules\nauditctl -l: 8 rules\n### auditd\nactive\n### rsyslog\nactive\n"
           "### plugin\n/etc/audit/plugins.d/syslog.conf:9:active = yes\n/etc/audit/plugins.d/syslog.conf:11:args = LOG_INFO LOG_LOCAL6\n"
           "### forward\n/etc/rsyslog.d/60-ctfleet-forward.conf:3:auth,authpriv.*;local6.* action(type=\"omfwd\" target=\"10.4.0.9\"\n"
           "### journald\n### journald_files\n\n### probe\nlocal=yes wait=3 collector=yes")


@pytest.mark.parametrize("drift, words", [
    (("", ""), None),
    (("args = LOG_INFO LOG_LOCAL6", "args = LOG_INFO"), "does not select user (the facility of audit events, "
                                                        "/etc/audit/plugins.d/syslog.conf:11 args = LOG_INFO)"),
    (("### journald\n### journald_files\n", "### journald\nForwardToSyslog=no\n### journald_files\n/etc/systemd/journald.conf\n"),
     "ForwardToSyslog=no (/etc/systemd/journald.conf)"),
    (("collector=yes", "collector=no"), "did not arrive at the collector 10.4.0.9:514"),
    (("target=\"10.4.0.9\"", "target=\"10.4.0.1\""), "no rsyslog rule forwards to the collector 10.4.0.9:514"),
    (("### auditd\nactive", "### auditd\ninactive"), "auditd inactive"),
])
def test_log_forwarding_is_judged_link_by_link(drift, words):
    out = ctfleet_audit.ctfleet_log_forwarding(_LOG_OK.replace(*drift) if drift[0] else _LOG_OK, "10.4.0.9:514")
    assert out["observed"] is (words is None), out["evidence"]
    assert (words or "probe event reached rsyslog and the collector") in out["evidence"]
    container = ctfleet_audit.ctfleet_log_forwarding(_LOG_OK.replace("machine", "container").replace("### auditd\nactive", "### auditd\ninactive"),
                                                      "10.4.0.9:514")
    assert container["observed"] is None and "a container cannot run it" in container["evidence"]


def test_file_modes_allow_stricter_and_name_what_is_wider():
    specs = [{"path": "/etc/shadow", "mode": "0640", "owner": "root", "group": "root|shadow"}]
    assert ctfleet_audit.ctfleet_file_modes("/etc/shadow 600 root shadow", specs)["observed"] is True
    wide = ctfleet_audit.ctfleet_file_modes("/etc/shadow 644 root shadow\n/etc/x 600 root root", specs)
    assert wide["observed"] is False and wide["evidence"] == "/etc/shadow mode 0644 root:shadow (want at most 0640, owner root, group root|shadow)"
    assert ctfleet_audit.ctfleet_file_modes("", specs, "stat: cannot statx")["observed"] is None


def test_new_catalogue_controls_reach_the_failing_controls_series(project):
    """An audit row for a control added to the catalogue (SYS-13) lands in the series the NOC's
    failing-controls table and the report read, with the catalogue's severity."""
    from datetime import datetime, timezone

    from ctfleet.core.compliance import ControlResult, Source
    from ctfleet.monitors.exporter import build_snapshot

    ct = next(c for c in project.registry.cts.values() if c.lot == 3)
    server = next(d for d in project.registry.devices_of(ct.code) if d.role.value == "server")
    row = ControlResult(ct=ct.code, device=server.hostname, control="SYS-13", status="fail", source=Source.AUDIT,
                        evidence="/etc/shadow mode 0644 root:shadow (want at most 0640, owner root, group root|shadow)",
                        observed=False, expected=True, observed_at=datetime.now(timezone.utc))
    snap = build_snapshot(project.registry.scoped(ct.region_code), project.norms, None, stored=[row])
    failing = {(s.labels["control"], s.labels["severity"]) for m in snap.metrics if m.name == "ctfleet_ct_control_failing"
               for s in m.samples if s.labels.get("ct") == ct.code and s.value > 0}
    assert ("SYS-13", "high") in failing, failing


def test_every_package_the_roles_install_is_fetched_once_by_the_site_cache():
    """The site cache fetches every package the site's hosts install before any other host of
    the site installs one (playbooks/vars/site_packages.yml, plus the SRV-1 services' packages);
    a package added to a role but not to that list would be fetched cold by several hosts at
    once, crossing the uplink more than once. Names from variables are resolved from the OS
    variables of the baseline (every supported OS) and the services of SRV-1."""
    root = Path(__file__).resolve().parent.parent / "playbooks"
    lists = yaml.safe_load((root / "vars" / "site_packages.yml").read_text())["ctfleet_site_packages"]
    prefetch = {p for names in lists.values() for p in names}
    os_vars = {}
    for f in sorted((root / "roles" / "baseline" / "vars").glob("os_*.yml")):
        for k, v in (yaml.safe_load(f.read_text()) or {}).items():
            os_vars.setdefault(k, set()).update(v if isinstance(v, list) else [v])
    services = yaml.safe_load((root / "roles" / "reference_server" / "vars" / "services.yml").read_text())["reference_server_services"]
    installed, by_service = set(), 0
    for role in ROLES:
        for path in sorted((root / "roles" / role / "tasks").rglob("*.yml")):
            if path.name == "package_proxy.yml":
                continue  # the site cache itself (apt-cacher-ng), installed before the prefetch
            for task in yaml.safe_load(path.read_text()) or []:
                apt = task.get("ansible.builtin.apt") if isinstance(task, dict) else None
                if not (apt and apt.get("state", "present") == "present"):
                    continue
                name = apt["name"]
                if isinstance(name, str) and "reference_server_services" in name:
                    by_service += 1  # SRV-1: the prefetch adds the services' packages
                    continue
                if isinstance(name, str) and name.startswith("{{"):
                    var = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", name)
                    assert var and var.group(1) in os_vars, (path, name)
                    installed.update(os_vars[var.group(1)])
                else:
                    installed.update(name if isinstance(name, list) else [name])
    assert len(installed) >= 8 and by_service == 1, (installed, by_service)  # this test reads the right files
    assert installed <= prefetch, sorted(installed - prefetch)
    assert all(s["packages"] for s in services.values())
    site = yaml.safe_load((root / "site.yml").read_text())
    assert {"vars/site_packages.yml", "roles/reference_server/vars/services.yml"} <= set(site[0]["vars_files"])
    assert "site_packages" not in str(site[1].get("vars_files"))  # the shared play runs after the prefetch
    servers = yaml.safe_load((root / "servers.yml").read_text())
    assert {"vars/site_packages.yml", "roles/reference_server/vars/services.yml"} <= set(servers[0]["vars_files"])
