"""ansible-pull proven (issue 17): a booted host set up by ``pull_setup.yml`` converges itself
from the region's git mirror on its timer while the commune's uplink is cut, queues its
audit, and the queue is delivered once the link is back.

Shares the session's booted fleet (tests/booted.py; converged by test_playbooks_hosts.py or
by the ``converged`` fixture). Link: fibre, emulated (scripts/testhosts link), then cut.

What it took (found by this test): the host's ansible-core is Debian 12's 2.14, which fails
on an ``import_tasks`` whose file is not found beside its parent import when an
``include_role`` is above it (ansible/ansible#83852): the sshd observation now lives beside
the audit files that import it; the pull service gives ansible-pull ``--inventory
localhost,`` (the checkout's ansible.cfg names the registry's dynamic inventory, which a
commune host cannot run); a cut link answers the hosts' connection attempts at once
(scripts/testhosts let the rejects' ICMP errors out, so git fails fast instead of waiting
out its SYN retries); 2.14 renders templated norms as strings ('4'), so the audit filter
judges on Python literals (SYS-5 was "unknown": 4 <= '4').
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from booted import request, ssh

from ctfleet.lab import testhosts as testfleet
from ctfleet.results import ResultsStore
from ctfleet.rollout.collect import collect_queued
from ctfleet.rollout.runner import run_rollout
from test_rollout_links import converged  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- pull mode, link cut and restored
def _snapshot_repo(dst: Path) -> Path:
    """The region's git mirror of the project: the working tree's playbooks as one commit."""
    repo = dst / "ctfleet.git"
    repo.mkdir(parents=True)
    shutil.copytree(ROOT / "playbooks", repo / "playbooks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "ansible.cfg", repo / "ansible.cfg")
    git = ["git", "-C", str(repo), "-c", "user.name=ctfleet", "-c", "user.email=ctfleet@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot for pull mode"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def _in_host(fleet, host: str, command: list[str]) -> str:
    """Look inside a host from this machine's side (its console, not the network): the link is cut."""
    init = (Path(fleet["env"]["CTFLEET_TESTHOSTS_DIR"]) / "hosts" / host / "init.pid").read_text().strip()
    return subprocess.run(["nsenter", "-t", init, "-m", "-p", "--", *command], capture_output=True, text=True, timeout=30).stdout


def _service(fleet, host: str) -> dict[str, str]:
    out = _in_host(fleet, host, ["systemctl", "show", "ctfleet-pull.service", "-p", "ActiveState,Result,ExecMainStatus,"
                                 "ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic"])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
def test_pull_mode_converges_on_its_timer_while_cut_and_delivers_when_the_link_returns(converged, tmp_path):  # noqa: F811
    fleet, env = converged, converged["env"]
    host, gw = "th01", fleet["status"]["gateway"]
    repo = _snapshot_repo(tmp_path / "mirror")
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={repo.parent}", f"--listen={gw}",
                               "--port=9418", str(repo)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = fleet["paths"]
    setup = dict(playbook="pull_setup.yml", hosts=(host,),
                 extravars={"ctfleet_pull_repository_url": f"git://{gw}:9418/ctfleet.git", "ctfleet_pull_mode": "rollout",
                            "ctfleet_pull_randomized_delay_s": 0})
    try:
        testfleet.set_link(testfleet.link_profile("fibre", min_mbps=2), env)
        first = run_rollout(request(fleet, **setup), paths)
        assert first.exit_code == 0, {h: s.first_error for h, s in first.state.hosts.items()}
        assert ssh(fleet, host, "test -f /var/lib/ctfleet/pull/playbooks/pull.yml && ansible-pull --version").returncode == 0
        # Drift the host by hand, then schedule its timer a little ahead and cut the link before it fires.
        drift = "sudo sed -i 's/^MaxAuthTries .*/MaxAuthTries 10/' /etc/ssh/sshd_config.d/00-ctfleet.conf && sudo systemctl reload ssh"
        assert ssh(fleet, host, drift).returncode == 0
        fire_at = time.time() + 60
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(fire_at))
        again = run_rollout(request(fleet, **{**setup, "extravars": {**setup["extravars"], "ctfleet_pull_on_calendar": when}}), paths)
        assert again.exit_code == 0, {h: s.first_error for h, s in again.state.hosts.items()}
        assert time.time() < fire_at - 5, "pull_setup took too long: the timer may have fired before the cut"
        started_before = _service(fleet, host).get("ExecMainStartTimestampMonotonic", "0")
        testfleet.cut(env)
        cut_at = time.time()
        assert ssh(fleet, host, "true").returncode != 0  # the region cannot reach the commune any more
        # The timer fires; ansible-pull cannot update its checkout, runs it (--force), converges, queues.
        deadline = time.time() + 600
        while time.time() < deadline:
            svc = _service(fleet, host)
            if (svc.get("ExecMainStartTimestampMonotonic", "0") != started_before and svc.get("ExecMainExitTimestampMonotonic", "0") != "0"
                    and svc.get("ActiveState") != "activating"):
                break
            time.sleep(5)
        assert svc.get("Result") == "success" and svc.get("ExecMainStatus") == "0", svc
        assert time.time() >= fire_at - 1 and time.time() > cut_at
        log = _in_host(fleet, host, ["journalctl", "-u", "ctfleet-pull.service", "--no-pager", "-o", "cat"])
        assert "Unable to update repository" in log, log[-3000:]  # the link really was down for this run
        assert re.search(r"changed=[1-9]", log), log[-3000:]  # it converged the drift
        queued = _in_host(fleet, host, ["ls", "/var/spool/ctfleet/audit"]).split()
        assert queued and all(q.endswith(".json") for q in queued), queued
        # Delivery while cut: nothing arrives, nothing is lost.
        base = request(fleet, playbook="collect_audits.yml", hosts=(host,))
        offline = collect_queued(base, paths)
        assert not offline["ok"] and offline["merged_files"] == 0, offline
        assert _in_host(fleet, host, ["ls", "/var/spool/ctfleet/audit"]).split() == queued
        testfleet.restore(env)
        delivered = collect_queued(base, paths)
        assert delivered["ok"] and delivered["merged_files"] == len(queued), delivered
        assert ssh(fleet, host, "sudo ls /var/spool/ctfleet/audit").stdout.split() == []
        rows = [r for r in ResultsStore(paths.results).iter_results() if r.device == host and r.control == "SYS-5"]
        assert rows and rows[-1].status.value == "pass", rows[-1:]
        assert "MaxAuthTries 4" in ssh(fleet, host, "sudo sshd -T | grep -i maxauthtries").stdout.replace("maxauthtries", "MaxAuthTries")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        testfleet.restore(env)
        testfleet.set_link(None, env)
