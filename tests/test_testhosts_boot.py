"""The test fleet's harness itself: a host that gives no SSH at boot is diagnosed and booted again
once, and a host that still gives none stops ``up``/``start`` with one clear error.

A CI run once failed with "th01: no SSH on 10.250.77.11 after 90s" and nothing else: the host's
console was not recorded. Here a real booted host is made to hang at boot (its ssh.service's
start sleeps), on a bridge of its own (net 79), so the session's fleet is not touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from booted import require_booted_hosts

from ctfleet.lab import testhosts as testfleet

pytestmark = [pytest.mark.hosts, pytest.mark.component]

NET = "79"


def test_a_host_that_hangs_at_boot_is_diagnosed_and_booted_again_once(tmp_path):
    require_booted_hosts()
    env = {"CTFLEET_TESTHOSTS_DIR": str(tmp_path / "state"), "CTFLEET_TESTHOSTS_NET": NET,
           "CTFLEET_TESTHOSTS_PROXY_PORT": "3179"}
    testfleet.down(env)
    try:
        testfleet.build(env)
        status = testfleet.up(1, env)
        ip = status["hosts"]["th01"]["ip"]
        host = Path(env["CTFLEET_TESTHOSTS_DIR"]) / "hosts" / "th01"
        console = host / "console.log"
        assert "Reached target" in console.read_text(), "the host's console is recorded"
        units = host / "root" / "etc" / "systemd" / "system"
        # The next boot's sshd start hangs, once: it leaves a mark in the host's own disk first.
        (units / "ssh.service.d").mkdir(parents=True)
        (units / "ssh.service.d" / "hang-once.conf").write_text(
            "[Service]\nExecStartPre=/bin/sh -c 'if [ ! -e /var/lib/hang-once ]; then "
            "touch /var/lib/hang-once; sync; exec sleep 600; fi'\n")
        testfleet.kill("th01", env)
        with pytest.warns(RuntimeWarning) as caught:
            testfleet.start("th01", {**env, "CTFLEET_TESTHOSTS_BOOT_TIMEOUT": "10"})
        said = "\n".join(str(w.message) for w in caught)
        assert f"WARNING: th01: no SSH on {ip} after 10s; booting it again once" in said, said
        # The diagnosis names the hanging start job, from inside the host.
        assert "ssh.service" in said and "start" in said, said
        assert (host / "root" / "var" / "lib" / "hang-once").exists()
        assert "---- boot again" in console.read_text()
        assert testfleet.status(env)["hosts"]["th01"]["running"] is True
        key = Path(env["CTFLEET_TESTHOSTS_DIR"]) / "admin_key"
        ssh = subprocess.run(["ssh", "-q", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                              "-o", "UserKnownHostsFile=/dev/null", f"ctfadmin@{ip}", "hostname"],
                             capture_output=True, text=True, timeout=30)
        assert ssh.stdout.strip() == "th01", ssh.stderr

        # A host that never gives SSH (its sshd masked): two boots, then one error that says so.
        os.symlink("/dev/null", units / "ssh.service")
        testfleet.kill("th01", env)
        with pytest.raises(RuntimeError) as failed:
            testfleet.start("th01", {**env, "CTFLEET_TESTHOSTS_BOOT_TIMEOUT": "5"})
        err = str(failed.value)
        assert f"th01: no SSH on {ip} after two boots of 5s each" in err, err
        assert "Traceback" not in err
    finally:
        testfleet.down(env)
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"ctfbr{NET}" not in links and f"-{NET}@" not in links, links
