"""SYS-17's readers on recorded `systemctl show` output: the audit's and the remediation's shell,
as the role writes them (the unit list rendered as Ansible would), with `systemctl` replaced by
the recording. The booted-host mutation suite (tests/test_audit_mutations.py) runs them for real
with two drifts (a running service, an enabled socket)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "playbooks/roles/baseline/tasks"
UNITS = yaml.safe_load((ROOT / "playbooks/roles/baseline/meta/inputs.yml").read_text())["options"]["baseline_unneeded_units"]["default"]

# As systemd 252 (Debian 12) prints it: properties in its own order, a blank line between units,
# empty values for a unit that is not installed.
RECORDED = """\
Id=avahi-daemon.service
FragmentPath=/etc/systemd/system/avahi-daemon.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=avahi-daemon.socket
FragmentPath=
LoadState=not-found
ActiveState=inactive
UnitFileState=

Id=rpcbind.socket
FragmentPath=/lib/systemd/system/rpcbind.socket
LoadState=loaded
ActiveState=inactive
UnitFileState=enabled

Id=rsync.service
FragmentPath=/lib/systemd/system/rsync.service
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled

Id=dnsmasq.service
FragmentPath=/lib/systemd/system/dnsmasq.service
LoadState=loaded
ActiveState=activating
UnitFileState=disabled

Id=nfs-server.service
FragmentPath=/dev/null
LoadState=masked
ActiveState=inactive
UnitFileState=masked

Id=slapd.service
FragmentPath=/run/systemd/generator.late/slapd.service
LoadState=loaded
ActiveState=inactive
UnitFileState=generated
"""


def _shell(path: Path) -> str:
    task = yaml.safe_load(path.read_text())[0]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["quote"] = shlex.quote
    return env.from_string(task["ansible.builtin.shell"]).render(baseline_unneeded_units=UNITS)


def _run(script: str, recorded: str, tmp_path: Path) -> list[str]:
    rec = tmp_path / "systemctl-show.txt"
    rec.write_text(recorded)
    calls = tmp_path / "calls"
    fake = f'systemctl() {{ printf "%s\\n" "$*" >> {calls}; cat {rec}; }}\n'
    out = subprocess.run(["bash", "-c", fake + script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert calls.read_text().count("\n") == 1, "one systemctl call for every unit"
    for unit in UNITS:
        assert f" {unit}" in calls.read_text()
    return out.stdout.splitlines()


def test_audit_reports_enabled_or_running_units_with_their_state_and_file(tmp_path):
    lines = _run(_shell(TASKS / "audit/sys_17.yml"), RECORDED, tmp_path)
    assert lines == ["avahi-daemon.service|enabled|active|/etc/systemd/system/avahi-daemon.service",
                     "rpcbind.socket|enabled|inactive|/lib/systemd/system/rpcbind.socket",
                     "dnsmasq.service|disabled|activating|/lib/systemd/system/dnsmasq.service",
                     f"checked={len(UNITS)}"]


def test_audit_passes_a_host_where_every_listed_unit_is_absent_disabled_or_masked(tmp_path):
    clean = "\n\n".join(b for b in RECORDED.split("\n\n") if "rsync" in b or "nfs-server" in b or "not-found" in b or "slapd" in b)
    assert _run(_shell(TASKS / "audit/sys_17.yml"), clean, tmp_path) == [f"checked={len(UNITS)}"]


def test_remediation_targets_exactly_what_the_audit_fails(tmp_path):
    """Stop/disable/mask the units the audit names, and leave alone the absent, disabled, masked and generated ones."""
    lines = _run(_shell(TASKS / "remediate/sys_17.yml"), RECORDED, tmp_path)
    assert lines == ["avahi-daemon.service", "rpcbind.socket", "dnsmasq.service"]


@pytest.mark.parametrize("unit", ["ssh.service", "ssh.socket", "cups.service", "chrony.service", "nftables.service",
                                  "prometheus-node-exporter.service", "smbd.service", "apt-cacher-ng.service"])
def test_the_list_never_names_what_the_roles_need(unit):
    """Masking one of these would lock the operator out (ssh) or break a norm the roles enforce."""
    assert unit not in UNITS
