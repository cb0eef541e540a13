"""The simulated SNMP fleet against real tools: snmpsim agents behind the relay, a real
net-snmp snmpd, and net-snmp's own snmpget/snmpbulkwalk as the client.

In CI a missing snmpsim, snmpd or snmp client is a failure, not a skip (the collectors'
tests are only as good as these agents)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ctfleet.lab.simfleet._proc import processes_mentioning
from ctfleet.lab.simfleet.data import (
    IF_DESCR,
    IF_HC_IN,
    IF_HIGH_SPEED,
    SYS_NAME,
    build_profiles,
    make_credentials,
    snmprec_records,
)
from ctfleet.lab.simfleet.relay import community, snmp_version
from ctfleet.lab.simfleet.run import SimFleet, SimFleetError, free_port
from ctfleet.lab.simfleet.snmpd import SnmpdAgent

pytestmark = pytest.mark.component

SNMPD = "/usr/sbin/snmpd"


def _require_tools() -> None:
    missing = [t for t in ("snmpget", "snmpbulkwalk") if shutil.which(t) is None]
    if not Path(SNMPD).exists():
        missing.append(SNMPD)
    for mod in ("snmpsim", "pysmi"):
        if importlib.util.find_spec(mod) is None:
            missing.append(f"python module {mod}")
    if missing:
        pytest.fail("missing components (apt: snmp snmpd; pip: snmpsim pysmi): " + ", ".join(missing))


@pytest.fixture(scope="module")
def profiles(project):
    return build_profiles(project.registry, project.profile.fleet.seed)


def _pick(profiles, **want):
    def ok(p):
        return all((getattr(p, k) if k != "link" else p.link.type) == v for k, v in want.items())

    found = [p for p in profiles if ok(p)]
    assert found, f"no simulated device with {want}"
    return min(found, key=lambda p: (p.link.rtt_ms, p.hostname))


@pytest.fixture(scope="module")
def cast(profiles):
    """A small fleet with one device of each kind the tests need, plus region 12."""
    picks = {
        "v2c": _pick(profiles, snmp_version="v2c", fault="ok", link="fibre"),
        "v3": _pick(profiles, snmp_version="v3", fault="ok", link="fibre"),
        "vsat": _pick(profiles, snmp_version="v2c", fault="ok", link="vsat"),
        "dead": _pick(profiles, fault="dead", link="fibre"),
        "nolink": _pick(profiles, fault="dead", link="none"),
        "slow": dataclasses.replace(_pick(profiles, snmp_version="v2c", fault="slow"), slow_delay_s=2.5),
        "truncated": _pick(profiles, fault="truncated"),
        "uplink_down": _pick(profiles, fault="ok", snmp_version="v3",
                             uplink_utilisation=0.0, link="adsl"),
    }
    chosen = {p.hostname: p for p in picks.values()}
    for p in profiles:
        if p.region == "12" and len(chosen) < 28:
            chosen.setdefault(p.hostname, p)
    return picks, list(chosen.values())


@pytest.fixture(scope="module")
def fleet(cast, tmp_path_factory):
    _require_tools()
    picks, devices = cast
    workdir = tmp_path_factory.mktemp("simfleet")
    port = free_port(picks["v3"].address)
    with SimFleet(devices, workdir, port=port, processes=2, secret_seed=b"test-simfleet") as f:
        yield f
    assert processes_mentioning(str(workdir)) == []


@pytest.fixture(scope="module")
def client_env(tmp_path_factory):
    # net-snmp clients write engine-ID caches to SNMP_PERSISTENT_DIR: keep them out of /var/lib.
    return dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp_path_factory.mktemp("snmp-client")), MIBS="")


def _auth_args(fleet, host: str, **override) -> list[str]:
    p, c = fleet.profiles[host], fleet.credentials_for(host)
    if p.snmp_version == "v2c":
        return ["-v2c", "-c", override.get("community", c.community)]
    return ["-v3", "-l", "authPriv", "-u", c.user, "-a", "SHA", "-A", override.get("auth_key", c.auth_key),
            "-x", "AES", "-X", c.priv_key]


def snmp(fleet, env, host: str, *oids: str, tool: str = "snmpget", timeout: float = 2.0, **override):
    h, port = fleet.endpoint(host)
    argv = [tool, "-On", "-Oe", "-t", str(timeout), "-r", "0", *_auth_args(fleet, host, **override), f"{h}:{port}", *oids]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout * 3 + 30)
    return r, time.monotonic() - t0


def _values(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        if " = " in line:
            oid, val = line.split(" = ", 1)
            out[oid.lstrip(".")] = val.split(": ", 1)[-1].strip('"')
    return out


# ----------------------------------------------------------------------------- pure


def test_profiles_are_deterministic_and_sane(project, profiles):
    again = build_profiles(project.registry, project.profile.fleet.seed)
    assert again == profiles
    other = build_profiles(project.registry, project.profile.fleet.seed + 1, limit=200)
    assert [p.fault for p in other] != [p.fault for p in profiles[:200]]
    # the same device gets the same profile when only its region is simulated
    region = build_profiles(project.registry, project.profile.fleet.seed, region="12")
    assert all(p == next(q for q in profiles if q.hostname == p.hostname) for p in region)

    from ctfleet.monitors.sweep import Interface as PolledInterface
    from ctfleet.monitors.sweep import find_uplink

    for p in profiles:
        site = project.registry.sites[p.site_code]
        assert 3 <= len(p.interfaces) <= 8
        assert p.uplink.speed_mbps == round(site.uplink.bandwidth_mbps)
        polled = tuple(PolledInterface(i.index, i.name, i.admin_up, i.oper_up, i.speed_mbps, 0, 0, i.alias)
                       for i in p.interfaces)
        assert find_uplink(polled) == p.uplink_index, p.hostname  # the collector finds the uplink
        if p.link.type == "none":
            assert p.fault == "dead"
        rows = snmprec_records(p)
        keys = [tuple(int(x) for x in oid.split(".")) for oid, _, _ in rows]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert {t.split(":")[0].rstrip("x") for _, t, _ in rows} <= {"2", "4", "6", "64", "65", "66", "67", "70"}
        assert (SYS_NAME, "4", p.hostname) in rows

    n = len(profiles)
    faults = Counter(p.fault for p in profiles)
    assert 0.02 * n < faults["dead"] < 0.10 * n and 0.01 * n < faults["slow"] < 0.06 * n
    assert sum(not p.uplink.oper_up for p in profiles if p.fault == "ok") > 0
    rtt = {t: [p.link.rtt_ms for p in profiles if p.link.type == t] for t in ("fibre", "adsl", "4g", "vsat")}
    assert max(rtt["fibre"]) <= 20 and min(rtt["vsat"]) >= 600 and max(rtt["vsat"]) <= 750
    assert all(p.link.loss == 0 for p in profiles if p.link.type == "fibre")
    assert max(p.link.loss for p in profiles if p.link.type == "vsat") <= 0.03
    assert Counter(p.sys_descr.split()[0] for p in profiles).keys() >= {"Cisco", "Linux", "RouterOS"}


def test_secrets_come_from_a_secret_seed_not_the_fleet_seed():
    a = make_credentials(["env:X"], b"one")["env:X"]
    assert a == make_credentials(["env:X"], b"one")["env:X"]
    assert a.auth_key != make_credentials(["env:X"], b"two")["env:X"].auth_key
    assert make_credentials(["env:X"])["env:X"].auth_key != make_credentials(["env:X"])["env:X"].auth_key
    assert a.auth_key not in repr(a) and a.priv_key not in repr(a)


def test_relay_reads_version_and_community():
    from ctfleet.monitors.ber import encode_get

    msg = encode_get(b"secret-community", 7, ["1.3.6.1.2.1.1.5.0"])
    assert snmp_version(msg) == 1 and community(msg) == b"secret-community"
    assert snmp_version(b"\x30") is None and snmp_version(b"garbage") is None and community(b"\x30\x00") is None


# ----------------------------------------------------------------------------- agents


def test_secret_files_are_private(fleet):
    secrets = fleet.workdir / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for f in secrets.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    any_key = next(iter(fleet.credentials.values())).auth_key
    for f in fleet.workdir.rglob("*"):
        if f.is_file() and secrets not in f.parents:
            assert any_key not in f.read_text(errors="replace"), f"secret leaked into {f}"


def test_v2c_device_answers_sysname_and_uplink_speed(fleet, cast, client_env, project):
    p = cast[0]["v2c"]
    r, _ = snmp(fleet, client_env, p.hostname, SYS_NAME, f"{IF_HIGH_SPEED}.{p.uplink_index}")
    assert r.returncode == 0, r.stderr
    v = _values(r.stdout)
    assert v[SYS_NAME] == p.hostname
    assert int(v[f"{IF_HIGH_SPEED}.{p.uplink_index}"]) == round(project.registry.sites[p.site_code].uplink.bandwidth_mbps)
    # a wrong community is ignored, as by a real agent
    r, _ = snmp(fleet, client_env, p.hostname, SYS_NAME, timeout=0.5, community="public")
    assert r.returncode != 0 and "Timeout" in r.stderr


def test_v3_authpriv_right_keys_answer_wrong_key_refused(fleet, cast, client_env):
    p = cast[0]["v3"]
    r, _ = snmp(fleet, client_env, p.hostname, SYS_NAME)
    assert r.returncode == 0, r.stderr
    assert _values(r.stdout)[SYS_NAME] == p.hostname
    r, _ = snmp(fleet, client_env, p.hostname, SYS_NAME, auth_key="not-the-key-0000")
    assert r.returncode != 0 and not r.stdout.strip()
    assert "Authentication failure" in r.stderr  # an error report, not data and not a timeout


def test_interface_table_walk_and_counters_grow(fleet, cast, client_env):
    p = cast[0]["v3"]
    r, _ = snmp(fleet, client_env, p.hostname, IF_DESCR, tool="snmpbulkwalk")
    assert r.returncode == 0, r.stderr
    assert list(_values(r.stdout).values()) == [i.descr for i in p.interfaces]
    oid = f"{IF_HC_IN}.{p.uplink_index}"
    r1, _ = snmp(fleet, client_env, p.hostname, oid)
    time.sleep(1.0)
    r2, _ = snmp(fleet, client_env, p.hostname, oid)
    grew = int(_values(r2.stdout)[oid]) - int(_values(r1.stdout)[oid])
    assert grew > 0.5 * p.uplink.in_rate


def test_uplink_oper_down_device(fleet, cast, client_env):
    p = cast[0]["uplink_down"]
    assert not p.uplink.oper_up
    oid = f"1.3.6.1.2.1.2.2.1.8.{p.uplink_index}"
    r, _ = snmp(fleet, client_env, p.hostname, oid)
    assert r.returncode == 0, r.stderr
    assert _values(r.stdout)[oid] in ("2", "down(2)")


def test_dead_devices_time_out(fleet, cast, client_env):
    for kind in ("dead", "nolink"):
        r, took = snmp(fleet, client_env, cast[0][kind].hostname, SYS_NAME, timeout=0.5)
        assert r.returncode != 0 and "Timeout" in r.stderr, kind
        assert took >= 0.5


def test_link_latency_vsat_slow_fibre_fast(fleet, cast, client_env):
    vsat, fibre = cast[0]["vsat"], cast[0]["v2c"]
    r, took = snmp(fleet, client_env, vsat.hostname, SYS_NAME, timeout=3)
    if r.returncode != 0:  # VSAT loses a few percent: one retry
        r, took = snmp(fleet, client_env, vsat.hostname, SYS_NAME, timeout=3)
    assert r.returncode == 0, r.stderr
    assert took >= 0.5
    r, took = snmp(fleet, client_env, fibre.hostname, SYS_NAME)
    assert r.returncode == 0 and took < 0.2


def test_slow_device_answers_after_the_timeout(fleet, cast, client_env):
    p = cast[0]["slow"]
    r, _ = snmp(fleet, client_env, p.hostname, SYS_NAME, timeout=1)
    assert r.returncode != 0 and "Timeout" in r.stderr
    r, took = snmp(fleet, client_env, p.hostname, SYS_NAME, timeout=p.slow_delay_s + 2)
    assert r.returncode == 0, r.stderr
    assert took >= p.slow_delay_s


def test_truncated_device_gives_no_data(fleet, cast, client_env):
    r, _ = snmp(fleet, client_env, cast[0]["truncated"].hostname, SYS_NAME, timeout=1)
    assert r.returncode != 0 and SYS_NAME not in r.stdout


def test_relay_counts_what_it_did(fleet, cast, client_env):
    snmp(fleet, client_env, cast[0]["dead"].hostname, SYS_NAME, timeout=0.2)
    snmp(fleet, client_env, cast[0]["v2c"].hostname, SYS_NAME, timeout=0.2, community="public")
    snmp(fleet, client_env, cast[0]["v2c"].hostname, SYS_NAME)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = fleet.relay_stats()
        if st.get("dropped_dead", 0) > 0 and st.get("responses", 0) > 0:
            break
        time.sleep(0.5)
    assert st["devices"] == len(fleet.profiles)
    assert st["dropped_dead"] > 0 and st["dropped_not_configured"] > 0 and st["responses"] > 0


# ----------------------------------------------------------------------------- snmpd


@pytest.mark.parametrize("netns", [False, True], ids=["loopback", "netns"])
def test_snmpd_answers_v3_authpriv(tmp_path, client_env, netns):
    _require_tools()
    addrs = ["127.78.0.1", "127.78.0.2"]
    port = free_port(addrs[0])
    with SnmpdAgent(addrs, tmp_path / "snmpd", port=port, netns=netns, sys_name="snmpd-test") as agent:
        c = agent.credentials
        base = [*agent.exec_prefix, "snmpget", "-On", "-t", "1", "-r", "0", "-v3", "-l", "authPriv", "-u", c.user,
                "-a", "SHA", "-x", "AES", "-X", c.priv_key]
        r = subprocess.run([*base, "-A", c.auth_key, f"{addrs[1]}:{port}", SYS_NAME],
                           capture_output=True, text=True, env=client_env)
        assert r.returncode == 0, r.stderr
        assert _values(r.stdout)[SYS_NAME] == "snmpd-test"
        r = subprocess.run([*base, "-A", "wrong-key-00000", f"{addrs[1]}:{port}", SYS_NAME],
                           capture_output=True, text=True, env=client_env)
        assert r.returncode != 0 and "Authentication failure" in r.stderr
        if netns:  # a fixed interface table inside the namespace
            r = subprocess.run([*agent.exec_prefix, "snmpbulkwalk", "-On", "-v2c", "-c", c.community,
                                f"{addrs[0]}:{port}", IF_DESCR], capture_output=True, text=True, env=client_env)
            assert sorted(_values(r.stdout).values()) == ["br0", "lan0", "lo", "wan0"]
        pid, ns = agent.pid, agent.netns
    assert not Path(f"/proc/{pid}").exists()
    if ns:
        assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_snmpd_refuses_too_many_addresses(tmp_path):
    with pytest.raises(ValueError, match="at most"):
        SnmpdAgent([f"127.78.1.{i}" for i in range(1, 102)], tmp_path)


# ----------------------------------------------------------------------------- lifecycle


def test_nothing_left_running_after_an_error_inside_or_at_start(profiles, tmp_path):
    _require_tools()
    few = [p for p in profiles if p.region == "11"][:3]
    port = free_port(few[0].address)
    workdir = tmp_path / "w1"
    with pytest.raises(RuntimeError, match="boom"):
        with SimFleet(few, workdir, port=port) as f:
            assert f.pids()
            raise RuntimeError("boom")
    assert processes_mentioning(str(workdir)) == []

    # a management address already taken: a clear error, and nothing left behind
    workdir = tmp_path / "w2"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((few[1].address, port))
        with pytest.raises(SimFleetError, match=f"cannot bind {few[1].address}:{port}"):
            SimFleet(few, workdir, port=port, ready_timeout_s=20).start()
    assert processes_mentioning(str(workdir)) == []
