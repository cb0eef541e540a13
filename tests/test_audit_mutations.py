"""Audits proven by breaking what they check, on real booted hosts (as promtool tests prove
alert rules): a workstation and a reference server are converged by ``site.yml``, then drifted
by hand the way a careless local admin would, several drifts at a time on distinct controls.
For each round:

- the audit must report every drifted control as ``fail``, with evidence naming the cause
  (the file and line, the nft rule handle, the unit, the account), and nothing else;
- the same run must leave the host as it found it: checksums of /etc, unit states, the nft
  ruleset and ``sshd -T`` are identical before and after the audit (the drift stays);
- for the firewall, a probe from outside the host (this machine, on the bridge) agrees with
  the audit: the port the drift opened answers, and is dropped again after the restore.

Every family has at least two drifts with different mechanisms reaching the same insecure
effect: SSH, firewall, accounts and privileges, updates, time, logging, file permissions,
backup, the monitoring agent and unneeded network services. The hosts are shared by every round (one converge for the
module) and restored after each round.

The log collector on the bridge is a minimal TCP syslog receiver in this module (as the
SNTP responder of scripts/testhosts is for time): it only records what arrives, so the
SYS-10 probe event is followed end to end. Audit time per host on the converged hosts is
measured and printed (``[audit-mutations] timings``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

import booted
from booted import require_booted_hosts
from ctfleet.lab import testhosts as testfleet
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Tuning
from ctfleet.rollout.runner import run_rollout

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.component]

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"th01": "workstation", "th02": "server"}
COLLECTOR_PORT = 5514
TIMINGS: dict[str, float] = {}


# ---------------------------------------------------------------------- the collector
class _Syslog(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, log: Path):
        self.log = log
        self.lock = threading.Lock()
        super().__init__(addr, _SyslogHandler)


class _SyslogHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            with self.server.lock, self.server.log.open("ab") as f:
                f.write(line if line.endswith(b"\n") else line + b"\n")


# Run on the controller by the SYS-10 audit with the probe id appended: exit 0 once it arrived.
PROBE = ("import sys, time, pathlib\n"
         "log, nonce = pathlib.Path(sys.argv[1]), sys.argv[2].encode()\n"
         "for _ in range(40):\n"
         "    if log.exists() and nonce in log.read_bytes(): sys.exit(0)\n"
         "    time.sleep(0.1)\n"
         "sys.exit(1)\n")


# ---------------------------------------------------------------------- the fleet
@pytest.fixture(scope="module")
def fleet(tmp_path_factory, project):
    require_booted_hosts()
    tmp = tmp_path_factory.mktemp("mutations")
    env = {"CTFLEET_TESTHOSTS_DIR": str(tmp / "state")}
    testfleet.down(env)
    collector = None
    try:
        t0 = time.monotonic()
        testfleet.build(env)
        status = testfleet.up(len(ROLES), env)
        TIMINGS["boot"] = time.monotonic() - t0
        collector = _Syslog((status["gateway"], COLLECTOR_PORT), tmp / "collector.log")
        threading.Thread(target=collector.serve_forever, daemon=True).start()
        yield _prepare(status, tmp, project, env)
    finally:
        if collector is not None:
            collector.shutdown()
            collector.server_close()
        testfleet.down(env)
        print(f"\n[audit-mutations] timings: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


def _prepare(status: dict, tmp: Path, project, env: dict) -> dict:
    ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
    gw = status["gateway"]
    extra = {"baseline_log_collector": f"{gw}:{COLLECTOR_PORT}",
             "baseline_log_probe_command": [sys.executable, "-c", PROBE, str(tmp / "collector.log")]}
    inv = tmp / "inventory.json"
    inv.write_text(json.dumps(testfleet.inventory(status, ct, project.norms, ROLES, extra_vars=extra)))
    paths = RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=tmp / "runs", results=tmp / "results")
    return {"status": status, "ct": ct, "paths": paths, "env": env, "collector_log": tmp / "collector.log"}


def request(fleet, **kw) -> RolloutRequest:
    st = fleet["status"]
    base = dict(playbook="site.yml", ct=fleet["ct"].code, private_key=st["key"], control_path_dir=st["control_path_dir"],
                host_key_checking=False, wave="test", tuning=Tuning(ssh_timeout_s=90))  # 2 shared cores: sudo may be slow
    base.update(kw)
    return RolloutRequest(**base)


def ssh(fleet, host: str, command: str) -> subprocess.CompletedProcess:
    return booted.ssh(fleet, host, command, timeout=120)  # the snapshot reads all of /etc on 2 shared cores


# What a failed drift or restore leaves in the log: a unit that would not (re)start says why
# only in its status and the journal, and the run's hosts are gone when the log is read.
DIAGNOSE = ("systemctl --failed --no-legend --plain --no-pager; "
            "for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do systemctl status -l --no-pager \"$u\"; done; "
            "journalctl -n 40 --no-pager -o short-monotonic")


# systemd 252 inside these containers sometimes cannot start a unit it has just stopped: the
# spawned process fails to attach to the unit's new cgroup ("Failed to attach to cgroup
# /system.slice/chrony.service: No such file or directory", status 219/CGROUP, before the service's
# own code runs; a known container race, systemd/systemd#20939). Seen once in CI on a drift's
# `systemctl restart chrony`. A start or restart in a drift or restore is tried again once on exactly
# that status, and says so on stderr; any other failure fails as before.
CGROUP_RACE_RETRY = r"""
systemctl() {
  command systemctl "$@" && return 0
  local rc=$?
  if [ $# -eq 2 ] && { [ "$1" = start ] || [ "$1" = restart ]; } \
     && command systemctl show -p ExecStartPre -p ExecStart "$2" | grep 'status=219[^0-9]' >/dev/null; then
    echo "ctfleet-test: $2 failed at step CGROUP (systemd's container race); trying again once" >&2
    sleep 1
    command systemctl "$@"
    return
  fi
  return $rc
}
"""


def root(fleet, host: str, script: str) -> str:
    p = ssh(fleet, host, "sudo bash -euo pipefail -c " + _quote(CGROUP_RACE_RETRY + script))
    if p.returncode != 0:
        why = ssh(fleet, host, "sudo bash -c " + _quote(DIAGNOSE))
        pytest.fail(f"{host}: {script}\n{p.stdout}\n{p.stderr}\n--- {host}: failed units and the journal's end\n{why.stdout}{why.stderr}")
    for line in p.stderr.splitlines():  # a retry on the cgroup race shows in the run's warnings summary
        if line.startswith("ctfleet-test: "):
            warnings.warn(f"{host}: {line}", stacklevel=2)
    return p.stdout


@pytest.mark.parametrize("status, tries, rc", [(219, 2, 0), (1, 1, 3), (2190, 1, 3)])
def test_only_the_cgroup_race_is_tried_again(tmp_path, status, tries, rc):
    """The retry, against a stand-in systemctl whose first start fails with the given status."""
    fake = tmp_path / "systemctl"
    fake.write_text(f"""#!/bin/bash
case "$1" in
  show) echo "ExecStart={{ path=/usr/sbin/chronyd ; code=exited ; status={status} }}";;
  restart) echo x >> {tmp_path}/tries; [ $(wc -l < {tmp_path}/tries) -ge 2 ] || exit 3;;
esac
""")
    fake.chmod(0o755)
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", CGROUP_RACE_RETRY + "systemctl restart chrony"],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert (p.returncode, len((tmp_path / "tries").read_text().splitlines())) == (rc, tries), p.stderr
    assert ("failed at step CGROUP" in p.stderr) == (status == 219)


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def probe(ip: str, port: int) -> str:
    """A TCP connection from outside the host: open, refused (reached, nothing listens) or dropped."""
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


# What the audit must not change, read the same way before and after it.
SNAPSHOT = r"""
find /etc -xdev -type f ! -path '/etc/ansible/facts.d/*' -print0 | sort -z | xargs -0 sha256sum
echo '### units'
systemctl list-unit-files --no-legend --plain --type=service,timer,socket | awk '{print $1, $2}'
for u in ssh nftables chrony rsyslog auditd smbd prometheus-node-exporter apt-daily.timer apt-daily-upgrade.timer \
         ctfleet-backup.timer systemd-journald; do echo "$u $(systemctl is-active "$u" 2>/dev/null | head -n 1)"; done
echo '### ruleset'
nft list ruleset
echo '### sshd'
for a in 127.0.0.1 10.0.0.1 203.0.113.10; do sshd -T -C "user=root,host=$a,addr=$a" | sort; done
"""


def snapshot(fleet, host: str) -> str:
    return root(fleet, host, SNAPSHOT)


# ---------------------------------------------------------------------- drifts
@dataclass(frozen=True)
class Drift:
    name: str
    host: str
    control: str  # the control the audit must report as failing
    apply: str  # as root on the host
    restore: str
    evidence: str  # a regex the control's evidence must match: it names the cause
    also: tuple[str, ...] = ()  # other controls the same drift breaks (an accept-all rule: SYS-8 and SRV-2)
    probe_port: int | None = None  # TCP port this drift opens: probed from outside before/after the restore


# Round 1 and round 2 each put at most one drift per control on a host: several families at
# once, one audit per round. The two rounds use different mechanisms for the same effect.
ROUND_1 = [
    # SSH: a Match block for the management network, and an option on sshd's command line.
    Drift("ssh-match-address-root", "th01", "SYS-3",
          "printf 'Match Address 10.0.0.0/8\\n    PermitRootLogin yes\\n' > /etc/ssh/sshd_config.d/50-lan.conf",
          "rm -f /etc/ssh/sshd_config.d/50-lan.conf",
          r"permitrootlogin yes for user=root,host=10\.0\.0\.1.*50-lan\.conf:2 'PermitRootLogin yes' \(in 'Match Address 10\.0\.0\.0/8",
          also=("SYS-14",)),  # a drop-in written with the default umask is readable by all: SYS-14 sees it too
    Drift("ssh-cmdline-password", "th02", "SYS-4",
          "cp -a /etc/default/ssh /root/ssh.default && echo 'SSHD_OPTS=\"-o PasswordAuthentication=yes\"' >> /etc/default/ssh"
          " && systemctl restart ssh",
          "cp -a /root/ssh.default /etc/default/ssh && systemctl restart ssh",
          r"passwordauthentication yes.*sshd command line \(unit ExecStart\) '-o PasswordAuthentication=yes'"),
    Drift("ssh-match-user-tries", "th02", "SYS-5",
          "cp -a /etc/ssh/sshd_config /root/sshd_config && printf 'Match User ctfadmin\\n    MaxAuthTries 10\\n' >> /etc/ssh/sshd_config",
          "cp -a /root/sshd_config /etc/ssh/sshd_config",
          r"maxauthtries 10 for user=ctfadmin.*/etc/ssh/sshd_config:\d+ 'MaxAuthTries 10' \(in 'Match User ctfadmin"),
    # Firewall: an accept-all rule inserted before the drop; one port opened by an extra rule.
    Drift("fw-insert-accept-all", "th02", "SYS-8", "nft insert rule inet ctfleet input accept", "nft -f /etc/nftables.conf",
          r"inet ctfleet input handle \d+: 'accept' opens tcp every port", also=("SRV-2",), probe_port=139),
    Drift("fw-extra-port", "th01", "WS-1",
          "nft add rule inet ctfleet input tcp dport 8081 accept && systemd-run --unit=h18-listener -q python3 -m http.server 8081",
          "nft -f /etc/nftables.conf && systemctl stop h18-listener",
          r"inet ctfleet input handle \d+: 'tcp dport 8081 accept' opens tcp 8081", probe_port=8081),
    # Accounts and privileges: the sudo group, a sudoers drop-in; a second uid 0; an empty password.
    Drift("sudo-group-member", "th01", "SYS-6", "useradd -m stagiaire && usermod -aG sudo stagiaire", "userdel -r stagiaire 2>/dev/null",
          r"stagiaire may run \(ALL : ALL\) ALL \(granted by /etc/sudoers:\d+ '%sudo"),
    Drift("sudoers-drop-in", "th02", "SYS-6",
          "useradd -m prestataire && echo 'prestataire ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/50-prestataire"
          " && chmod 440 /etc/sudoers.d/50-prestataire",
          "rm -f /etc/sudoers.d/50-prestataire && userdel -r prestataire 2>/dev/null",
          r"prestataire may run \(ALL\) NOPASSWD: ALL \(granted by /etc/sudoers\.d/50-prestataire:1"),
    Drift("uid0-maintenance-account", "th01", "SYS-11", "useradd -o -u 0 -g 0 -M -s /bin/bash maint", "sed -i '/^maint:/d' /etc/passwd /etc/shadow",
          r"accounts with uid 0 besides root: /etc/passwd:\d+: maint"),
    Drift("empty-password", "th02", "SYS-12", "useradd -m guichet && passwd -d guichet", "userdel -r guichet 2>/dev/null",
          r"empty password field .*/etc/shadow:\d+: guichet", also=()),
    # Updates: periodic runs switched off in another apt.conf.d file; the upgrade timer disabled.
    Drift("apt-periodic-disabled", "th01", "SYS-1", "echo 'APT::Periodic::Enable \"0\";' > /etc/apt/apt.conf.d/99local",
          "rm -f /etc/apt/apt.conf.d/99local", r"APT::Periodic::Enable \"0\" \(/etc/apt/apt\.conf\.d/99local:1\)"),
    Drift("apt-upgrade-timer-disabled", "th02", "SYS-1", "systemctl disable --now apt-daily-upgrade.timer",
          "systemctl enable --now apt-daily-upgrade.timer", r"apt-daily-upgrade\.timer disabled/inactive"),
    # Services: an mDNS responder installed by hand, enabled and running (a unit file of its own).
    Drift("avahi-service-running", "th01", "SYS-17",
          "printf '[Unit]\\nDescription=mDNS responder (drift)\\n[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\n"
          "WantedBy=multi-user.target\\n' > /etc/systemd/system/avahi-daemon.service && systemctl daemon-reload"
          " && systemctl enable --now -q avahi-daemon.service",
          "systemctl disable --now -q avahi-daemon.service; rm -f /etc/systemd/system/avahi-daemon.service && systemctl daemon-reload",
          r"avahi-daemon\.service enabled and active \(/etc/systemd/system/avahi-daemon\.service\)"),
    # Time: chrony stopped; chrony following its own clock (reports leap status Normal).
    Drift("chrony-stopped", "th01", "SYS-9", "systemctl stop chrony",
          # restored only once chrony follows its server again: the next round's audit must see the norm
          "systemctl start chrony && chronyc -n waitsync 20 0 0 1 >/dev/null",
          r"chronyc -n tracking failed \(rc \d+\): .*506 Cannot talk to daemon.*systemctl is-active chrony: inactive"),
    Drift("chrony-local-clock", "th02", "SYS-9",
          "cp -a /etc/chrony/chrony.conf /root/chrony.conf && sed -i 's/^server .*/server 192.0.2.123 iburst/' /etc/chrony/chrony.conf"
          " && echo 'local stratum 3' >> /etc/chrony/chrony.conf && systemctl restart chrony",
          "cp -a /root/chrony.conf /etc/chrony/chrony.conf && systemctl restart chrony && chronyc -n waitsync 20 0 0 1 >/dev/null",
          r"leap status Normal, reference 7F7F0101 \(\) which is not one of the regional NTP servers"),
    # Logging: journald no longer passes events to rsyslog; audit events under a facility not forwarded.
    Drift("journald-no-forward", "th01", "SYS-10",
          "mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nForwardToSyslog=no\\n' > /etc/systemd/journald.conf.d/90-local.conf"
          " && systemctl restart systemd-journald",
          "rm -f /etc/systemd/journald.conf.d/90-local.conf && systemctl restart systemd-journald",
          r"journald does not pass events to rsyslog: ForwardToSyslog=no \(/etc/systemd/journald\.conf\.d/90-local\.conf\).*"
          r"did not reach rsyslog"),
    Drift("audisp-user-facility", "th02", "SYS-10",
          "cp -a /etc/audit/plugins.d/syslog.conf /root/syslog.conf && sed -i 's/^args = .*/args = LOG_INFO/' /etc/audit/plugins.d/syslog.conf",
          "cp -a /root/syslog.conf /etc/audit/plugins.d/syslog.conf",
          r"does not select user \(the facility of audit events, /etc/audit/plugins\.d/syslog\.conf:\d+ args = LOG_INFO\)"),
    # File permissions: the shadow file readable by all; a private host key readable by all.
    Drift("shadow-world-readable", "th01", "SYS-13", "chmod 644 /etc/shadow", "chmod 640 /etc/shadow",
          r"/etc/shadow mode 0644 root:shadow \(want at most 0640"),
    Drift("host-key-readable", "th02", "SYS-14", "chmod 644 /etc/ssh/ssh_host_ed25519_key", "chmod 600 /etc/ssh/ssh_host_ed25519_key",
          r"/etc/ssh/ssh_host_ed25519_key mode 0644 root:root \(want at most 0600"),
    # Backup (SRV-3 judges the local repository itself, SRV-5 the off-site one; SRV-5 is off in
    # this two-host fleet, tests/test_backups_hosts.py proves it): the repository deleted to
    # free space. The timer switched off stops a service of the configuration type (SRV-1);
    # SRV-3 only sees it once a backup is missed. Monitoring agent: node_exporter stopped.
    Drift("backup-repository-deleted", "th02", "SRV-3", "mv /var/backups/ctfleet/restic /root/restic.moved",
          "mv /root/restic.moved /var/backups/ctfleet/restic",
          r"no successful backup: .*/var/backups/ctfleet/restic"),
    Drift("backup-timer-disabled", "th02", "SRV-1", "systemctl disable --now ctfleet-backup.timer",
          "systemctl enable --now ctfleet-backup.timer",
          # backup_agent required but not among the running services (the lot's other services vary)
          r"running: (?:(?!backup_agent)[^;])*; required: [^;]*\bbackup_agent\b"),
    Drift("node-exporter-stopped", "th02", "SRV-6", "systemctl stop prometheus-node-exporter", "systemctl start prometheus-node-exporter",
          r"node_exporter on :9100 answering False", also=("SRV-1",)),
]

ROUND_2 = [
    # SSH: a Match Group block enabling keyboard-interactive (PAM passwords) for admins.
    Drift("ssh-match-group-kbd", "th01", "SYS-4",
          "printf 'Match Group sudo\\n    KbdInteractiveAuthentication yes\\n' > /etc/ssh/sshd_config.d/50-admins.conf",
          "rm -f /etc/ssh/sshd_config.d/50-admins.conf",
          r"kbdinteractiveauthentication yes.*for user=ctfadmin.*50-admins\.conf:2 'KbdInteractiveAuthentication yes' \(in 'Match Group sudo", also=("SYS-14",)),
    Drift("ssh-cmdline-root", "th02", "SYS-3",
          "cp -a /etc/default/ssh /root/ssh.default && echo 'SSHD_OPTS=\"-o PermitRootLogin=yes\"' >> /etc/default/ssh && systemctl restart ssh",
          "cp -a /root/ssh.default /etc/default/ssh && systemctl restart ssh",
          r"permitrootlogin yes for user=root.*sshd command line \(unit ExecStart\) '-o PermitRootLogin=yes'"),
    # Firewall: the input policy turned to accept; the ruleset flushed (service stopped).
    Drift("fw-policy-accept", "th01", "SYS-8", "nft 'chain inet ctfleet input { policy accept; }'", "nft -f /etc/nftables.conf",
          r"inet ctfleet input \(policy accept\).*inet ctfleet input handle -: 'policy accept' opens tcp every port", also=("WS-1",)),
    Drift("fw-flushed", "th02", "SRV-2", "systemctl stop nftables", "systemctl start nftables",
          r"input hook chains none \(nothing filters inbound traffic\)", also=("SYS-8",), probe_port=139),
    # Updates: the security origin removed from unattended-upgrades.
    Drift("apt-no-security-origin", "th01", "SYS-1",
          "printf '#clear Unattended-Upgrade::Origins-Pattern;\\nUnattended-Upgrade::Origins-Pattern { \"origin=Debian,codename=${distro_codename}-updates\"; };\\n'"
          " > /etc/apt/apt.conf.d/99origins",
          "rm -f /etc/apt/apt.conf.d/99origins",
          r"no security origin in Unattended-Upgrade::Origins-Pattern .*/etc/apt/apt\.conf\.d/99origins:\d+"),
    # Logging: the forwarding rule removed; the journal back to memory only.
    Drift("rsyslog-forward-removed", "th02", "SYS-10",
          "mv /etc/rsyslog.d/60-ctfleet-forward.conf /root/ && systemctl restart rsyslog",
          "mv /root/60-ctfleet-forward.conf /etc/rsyslog.d/ && systemctl restart rsyslog",
          r"no rsyslog rule forwards to the collector .*probe event did not arrive at the collector"),
    Drift("journal-volatile", "th01", "SYS-16",
          # mkdir: a round must not need what an earlier round's drift created (round 1 makes this directory)
          "mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nStorage=volatile\\n' > /etc/systemd/journald.conf.d/90-volatile.conf"
          " && systemctl restart systemd-journald",
          "rm -f /etc/systemd/journald.conf.d/90-volatile.conf && systemctl restart systemd-journald && journalctl --flush",
          r"journald Storage=volatile \(.*90-volatile\.conf"),
    # Privileges: a sudoers rule for a whole group the user is in.
    Drift("sudoers-group-rule", "th01", "SYS-6",
          "useradd -m -G users agent && echo '%users ALL=(ALL) ALL' > /etc/sudoers.d/50-users && chmod 440 /etc/sudoers.d/50-users",
          "rm -f /etc/sudoers.d/50-users && userdel -r agent 2>/dev/null",
          r"agent may run \(ALL\) ALL \(granted by /etc/sudoers\.d/50-users:1 '%users"),
    # File permissions: a world-writable directory without the sticky bit; a world-writable sshd drop-in.
    Drift("world-writable-dir", "th02", "SYS-15", "mkdir -p /srv/echange && chmod 777 /srv/echange", "rmdir /srv/echange",
          r"world-writable directory without sticky bit \(mode 777\) /srv/echange"),
    Drift("sshd-config-readable", "th01", "SYS-14", "chmod 666 /etc/ssh/sshd_config.d/00-ctfleet.conf",
          "chmod 600 /etc/ssh/sshd_config.d/00-ctfleet.conf",
          r"/etc/ssh/sshd_config\.d/00-ctfleet\.conf mode 0666 root:root", also=("SYS-15",)),
    # Backup: retention shortened; the repository's password file lost. Monitoring agent: textfile collector off.
    Drift("backup-retention-short", "th02", "SRV-4",
          "cp -a /etc/ctfleet/backup.env /root/backup.env && sed -i 's/^CTFLEET_KEEP_WITHIN=.*/CTFLEET_KEEP_WITHIN=7d/' /etc/ctfleet/backup.env",
          "cp -a /root/backup.env /etc/ctfleet/backup.env", r"keep within 7 days"),
    Drift("backup-password-lost", "th02", "SRV-3", "mv /etc/ctfleet/backup.pass /root/backup.pass",
          "mv /root/backup.pass /etc/ctfleet/backup.pass", r"no successful backup: .*/etc/ctfleet/backup\.pass"),
    # Services: RPC by socket activation: nothing runs until a client connects, the port listens all along
    # (the service itself is static and inactive: only the socket is enabled).
    Drift("rpcbind-socket-enabled", "th02", "SYS-17",
          "printf '[Unit]\\nDescription=RPC bind (drift)\\n[Service]\\nExecStart=/bin/sleep infinity\\n'"
          " > /etc/systemd/system/rpcbind.service"
          " && printf '[Unit]\\nDescription=RPC bind socket (drift)\\n[Socket]\\nListenStream=111\\n[Install]\\n"
          "WantedBy=sockets.target\\n' > /etc/systemd/system/rpcbind.socket && systemctl daemon-reload"
          " && systemctl enable --now -q rpcbind.socket",
          "systemctl disable --now -q rpcbind.socket; systemctl stop rpcbind.service;"
          " rm -f /etc/systemd/system/rpcbind.socket /etc/systemd/system/rpcbind.service && systemctl daemon-reload",
          r"rpcbind\.socket enabled and active \(/etc/systemd/system/rpcbind\.socket\)"),
    Drift("node-exporter-no-textfile", "th02", "SRV-6",
          "cp -a /etc/default/prometheus-node-exporter /root/pne && echo 'ARGS=\"--no-collector.textfile\"' > /etc/default/prometheus-node-exporter"
          " && systemctl restart prometheus-node-exporter",
          "cp -a /root/pne /etc/default/prometheus-node-exporter && systemctl restart prometheus-node-exporter",
          r"textfile collector healthy False"),
]


def _evidence(result, host: str, control: str) -> str:
    return result.state.hosts[host].results("audit").get(control, {}).get("evidence", "")


# ---------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def converged(fleet):
    t0 = time.monotonic()
    out = run_rollout(request(fleet, allow_disruptive=True), fleet["paths"])
    TIMINGS["converge"] = time.monotonic() - t0
    assert out.exit_code == 0, {h: s.first_error for h, s in out.state.hosts.items()}
    for name, h in out.state.hosts.items():
        assert h.failing_controls("after") == [], (name, {c: r for c, r in h.results("after").items() if r["status"] == "fail"})
    return fleet


def test_a_converged_host_passes_every_audit_with_evidence_in_under_30_s(converged):
    fleet = converged
    per_host = {}
    for host in ROLES:  # one host at a time: the time a technician waits per host
        t0 = time.monotonic()
        out = run_rollout(request(fleet, ct=None, hosts=(host,), audit=True), fleet["paths"])
        per_host[host] = time.monotonic() - t0
        assert out.exit_code == 0
        results = out.state.hosts[host].results("audit")
        assert out.state.hosts[host].failing_controls("audit") == [], results
        empty = [c for c, r in results.items() if not str(r.get("evidence", "")).strip()]
        assert empty == [], f"{host}: empty evidence for {empty}"
        assert results["SYS-3"]["status"] == "pass" and "contexts" in results["SYS-3"]["evidence"]
        assert "probe event reached rsyslog and the collector" in results["SYS-10"]["evidence"], results["SYS-10"]
        # Unknown, and saying why: auditd in a container, no unattended-upgrades run yet on a new
        # host, no disk of its own (container), no configuration type declared by the registry.
        unknown = {c for c, r in results.items() if r["status"] == "unknown"}
        assert {"SYS-2", "SYS-10"} <= unknown <= {"SYS-2", "SYS-10", "WS-4", "EQP-4"}, (unknown, results)
        assert "a container cannot run it" in results["SYS-10"]["evidence"]
    TIMINGS.update({f"audit_{h}": t for h, t in per_host.items()})
    # The budget is 30 s per host on a runner of its own (2 cores). On a machine shared with
    # other work, wall time stretches with the run queue: the budget scales with the load per
    # core over the audit (recorded beside the times, so a reader sees which case held).
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    TIMINGS["load_per_core"] = load
    assert max(per_host.values()) < 30 * max(1.0, load), (per_host, f"load per core {load:.1f}")


@pytest.mark.parametrize("round_name", ["round_1", "round_2"])
def test_every_drift_is_caught_with_its_cause_and_the_audit_changes_nothing(converged, round_name):
    fleet = converged
    drifts = {"round_1": ROUND_1, "round_2": ROUND_2}[round_name]
    ips = {h: fleet["status"]["hosts"][h]["ip"] for h in ROLES}
    for d in drifts:  # the probes first: the port is closed while the host is at the norm
        if d.probe_port:
            assert probe(ips[d.host], d.probe_port) == "dropped", d.name
    applied = []
    try:
        for d in drifts:
            applied.append(d)  # before: a drift that failed half-way is restored too
            root(fleet, d.host, d.apply)
        for d in drifts:
            if d.probe_port:
                assert probe(ips[d.host], d.probe_port) == "open", f"{d.name}: the drift should open port {d.probe_port}"
        before = {h: snapshot(fleet, h) for h in ROLES}
        t0 = time.monotonic()
        out = run_rollout(request(fleet, audit=True), fleet["paths"])
        TIMINGS[f"audit_{round_name}"] = time.monotonic() - t0
        after = {h: snapshot(fleet, h) for h in ROLES}
        for h in ROLES:  # read-only: the audit changed nothing, the drift is still there
            assert after[h] == before[h], f"{h}: the audit changed the host:\n" + _diff(before[h], after[h])
        assert out.exit_code == 0 and {n: s.final_counts()["changed"] for n, s in out.state.hosts.items()} == {h: 0 for h in ROLES}
        missed, vague = [], []
        for d in drifts:
            r = out.state.hosts[d.host].results("audit").get(d.control, {})
            if r.get("status") != "fail":
                missed.append((d.name, d.control, r.get("status"), r.get("evidence")))
            elif not re.search(d.evidence, r.get("evidence", ""), re.DOTALL):
                vague.append((d.name, d.control, r.get("evidence")))
        assert missed == [], f"drifts the audit did not catch: {missed}"
        assert vague == [], f"evidence that does not name the cause: {vague}"
        for h in ROLES:  # nothing else fails: each failure is explained by a drift
            expected = {c for d in drifts if d.host == h for c in (d.control, *d.also)}
            assert set(out.state.hosts[h].failing_controls("audit")) == expected, (h, {
                c: r["evidence"] for c, r in out.state.hosts[h].results("audit").items() if r["status"] == "fail"})
    finally:  # every drift is restored even if one restore fails, so the next round starts at the norm
        unrestored = []
        for d in reversed(applied):
            try:
                root(fleet, d.host, d.restore)
            except pytest.fail.Exception as e:
                unrestored.append(f"{d.name}: {e}")
        if unrestored:
            pytest.fail("drifts not restored:\n" + "\n\n".join(unrestored))
    for d in drifts:
        if d.probe_port:
            assert probe(ips[d.host], d.probe_port) == "dropped", f"{d.name}: restored, the port is closed again"


def test_a_new_inbound_rule_is_seen_by_the_audit_and_by_a_probe_from_outside(converged):
    """The semantic reading of the ruleset and what the wire says agree, port by port."""
    fleet = converged
    ip = fleet["status"]["hosts"]["th02"]["ip"]
    assert {p: probe(ip, p) for p in (22, 445, 9100, 139)} == {22: "open", 445: "open", 9100: "open", 139: "dropped"}


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm=""))[:40])
