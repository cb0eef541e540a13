"""The booted test fleet shared by the booted-host test files (one fleet for the session).

tests/test_playbooks_hosts.py converges it and checks it; tests/test_rollout_links.py then
uses the same hosts (package proxy, waves, links, pull mode), so CI boots one fleet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ctfleet.lab import testhosts as testfleet
from ctfleet.rollout.config import RolloutPaths, RolloutRequest

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"th01": "workstation", "th02": "workstation", "th03": "workstation", "th04": "server"}
WORKSTATIONS = [h for h, r in ROLES.items() if r == "workstation"]
TIMINGS: dict[str, float] = {}


def _missing() -> list[str]:
    out = [] if os.geteuid() == 0 else ["root"]
    out += [c for c in ("debootstrap", "systemd-nspawn", "apt-cacher-ng", "nft", "ip", "ssh") if shutil.which(c) is None]
    return out


def require_booted_hosts() -> None:
    """Fail (in CI) or skip (elsewhere) when what booted hosts need is missing here."""
    missing = _missing()
    if missing:
        msg = f"booted test hosts need: {', '.join(missing)} (scripts/setup installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, project):
    require_booted_hosts()
    tmp = tmp_path_factory.mktemp("fleet")
    env = {"CTFLEET_TESTHOSTS_DIR": str(tmp / "state")}
    testfleet.down(env)  # a previous crashed run in the same state dir
    t0 = time.monotonic()
    try:
        testfleet.build(env)
        TIMINGS["build"] = time.monotonic() - t0
        status = testfleet.up(len(ROLES), env)
        TIMINGS["boot"] = time.monotonic() - t0 - TIMINGS["build"]
        ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
        inv = tmp / "inventory.json"
        site = next(iter(project.registry.sites_of(ct.code)), None)
        inv.write_text(json.dumps(testfleet.inventory(status, ct, project.norms, ROLES, site=site)))
        paths = RolloutPaths(root=ROOT, playbooks=ROOT / "playbooks", inventory=inv, runs=tmp / "runs", results=tmp / "results")
        yield {"status": status, "ct": ct, "paths": paths, "env": env, "tmp": tmp, "site": site, "converged": False}
    finally:
        testfleet.down(env)
        print(f"\n[hosts] timings: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")
        # Only this fleet's links: other fleets (other nets) may run on the same machine.
        net = os.environ.get("CTFLEET_TESTHOSTS_NET", "77")
        leftovers = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split()
        assert not [w for w in leftovers if w == f"ctfbr{net}" or (w.startswith("vb-th") and w.split("@")[0].endswith(f"-{net}"))], leftovers


def first_converge(fleet, run):
    """Run the fleet's first converge (``run()``) and keep both package caches' transfer logs as
    they stand right after it: the SDR cache's (on the bridge) and the site cache's (the
    reference server's), and the bytes the SDR cache sent on the wire, for the each-package-once
    check (later tests fetch more packages)."""
    with testfleet.SdrRetransmissions(fleet["status"]) as retrans:
        out = run()
        server = next(h for h, r in ROLES.items() if r == "server")
        t0 = time.monotonic()
        testfleet.wait_sdr_idle(fleet["status"])  # its log is complete once the site cache's connections closed
        TIMINGS["sdr_idle_wait"] = time.monotonic() - t0
    fleet["first_converge_logs"] = {
        "sdr": Path(fleet["status"]["proxy_log"]).read_text(encoding="utf-8"),
        "site": ssh(fleet, server, "sudo cat /var/log/apt-cacher-ng/apt-cacher.log").stdout,
    }
    fleet["first_converge_uplink"] = {**testfleet.sdr_bytes(fleet["env"]),  # counted on the wire
                                      "retrans": retrans.total, "connections": len(retrans.per_connection)}
    return out


def request(fleet, **kw) -> RolloutRequest:
    st = fleet["status"]
    base = dict(playbook="site.yml", ct=fleet["ct"].code, private_key=st["key"], control_path_dir=st["control_path_dir"],
                host_key_checking=False, wave="test")
    base.update(kw)
    if "hosts" in kw:
        base["ct"] = None
    return RolloutRequest(**base)


def ssh(fleet, host: str, command: str, user: str = "ctfadmin", opts: Sequence[str] = (),
        timeout: float = 60) -> subprocess.CompletedProcess:
    st = fleet["status"]
    argv = ["ssh", "-i", st["key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "ControlMaster=no", "-o", "ControlPath=none", *opts,
            f"{user}@{st['hosts'][host]['ip']}", command]
    for _ in range(20):  # sshd re-executes itself on reload: a moment of "Connection refused"
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if "Connection refused" not in p.stderr:
            return p
        time.sleep(0.5)
    return p


def timed(name: str, fn):
    t0 = time.monotonic()
    out = fn()
    TIMINGS[name] = time.monotonic() - t0
    return out


def job_events(outcome) -> list[dict]:
    """A run's ansible-runner job events (its artifacts), in order: bench/rollout_profile.py's reader."""
    assert outcome.artifacts is not None, "the run kept no artifacts"
    spec = importlib.util.spec_from_file_location("rollout_profile", ROOT / "bench" / "rollout_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    return profile.load(outcome.artifacts)


def remediation(outcome) -> tuple[dict[tuple[str, str], list[str]], list[tuple[str, str]]]:
    """A rollout's remediation: {(host, plan fact): the controls planned} from each role's plan
    (``<role>_to_remediate``), and the (host, task) of every control task that ran ("SYS-3 | PATCH | ...")."""
    plans, patched = {}, []
    for e in job_events(outcome):
        d = e.get("event_data", {})
        if e.get("event") not in ("runner_on_ok", "runner_on_failed"):
            continue
        for k, v in ((d.get("res") or {}).get("ansible_facts") or {}).items():
            if k.endswith("_to_remediate"):
                plans[(d.get("host", "?"), k)] = v
        if re.match(r"^[A-Z]{2,4}-\d+ \| PATCH \| ", d.get("task", "")):
            patched.append((d.get("host", "?"), d.get("task", "")))
    return plans, patched


def task_times(outcome, play_prefix: str) -> dict[str, list[str]]:
    """host -> creation times (ISO) of the tasks that ran on it (not skipped) in the plays whose
    name starts with ``play_prefix``."""
    out: dict[str, list[str]] = {}
    for e in job_events(outcome):
        d = e.get("event_data", {})
        if e.get("event") in ("runner_on_ok", "runner_on_failed") and str(d.get("play", "")).startswith(play_prefix):
            out.setdefault(d.get("host", "?"), []).append(e["created"])
    return out
