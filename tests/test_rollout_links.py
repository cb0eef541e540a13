"""Rollouts over commune links: waves per lot, the site's package cache and the emulated
uplink (pull mode with the link cut: tests/test_pull_mode.py).

The pure tests (waves file, link profiles) run everywhere. The booted-host tests (marker
``hosts``) share the session's fleet (tests/booted.py) after tests/test_playbooks_hosts.py
converged it; run alone, they converge it first.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from booted import ROLES, WORKSTATIONS, first_converge, request, ssh

from ctfleet.core.errors import CtfleetError
from ctfleet.lab import testhosts as testfleet
from ctfleet.rollout.config import RolloutPaths, RolloutRequest, Waves
from ctfleet.rollout.runner import load_waves, run_rollout

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- waves (pure)
def test_every_lot_starts_with_a_one_host_wave(root):
    waves = load_waves(RolloutPaths.of(root, root / "var" / "results"))
    assert isinstance(waves, Waves)
    for lot in (1, 2, 3):
        w = waves.get(f"lot_{lot}", "waves.yml")
        assert w.serial[0] == 1, f"lot_{lot}: a broken change must stop at one host"
        assert 0 <= w.max_fail_percentage < 50
    assert waves.get("lot_1", "").max_fail_percentage <= waves.get("lot_3", "").max_fail_percentage  # big communes: stricter


def _paths_with_waves(tmp_path, root, text: str) -> RolloutPaths:
    pb = tmp_path / "playbooks"
    shutil.copytree(root / "playbooks", pb, ignore=shutil.ignore_patterns("roles", "library"))
    (pb / "vars" / "waves.yml").write_text(text)
    return RolloutPaths(root=root, playbooks=pb, inventory=tmp_path / "inv.json", runs=tmp_path / "runs", results=tmp_path / "res")


def _never_run(**kw):
    raise AssertionError("a bad waves file must stop the rollout before Ansible starts")


def test_bad_waves_file_is_one_error_naming_file_line_and_key(tmp_path, root):
    paths = _paths_with_waves(tmp_path, root, "ctfleet_waves:\n  default: {serial: [1, '100%'], max_fail_percentage: 20}\n"
                                              "  lot_3: {serial: [0, '50%'], max_fail_percentage: 20}\n")
    with pytest.raises(CtfleetError) as e:
        run_rollout(RolloutRequest(playbook="site.yml", lot=3), paths, run_fn=_never_run)
    msg = str(e.value)
    assert "waves.yml:3" in msg and "lot_3.serial" in msg and "host count >= 1" in msg, msg


def test_unknown_wave_names_the_valid_ones(tmp_path, root):
    paths = _paths_with_waves(tmp_path, root, (root / "playbooks" / "vars" / "waves.yml").read_text())
    with pytest.raises(CtfleetError, match=r"no wave named 'lot_9'.*default, lot_1, lot_2, lot_3, test"):
        run_rollout(RolloutRequest(playbook="site.yml", ct="04.161.01.03", wave="lot_9"), paths, run_fn=_never_run)


def test_a_wave_that_fails_too_much_is_recorded_as_stopping_the_rollout(tmp_path, root):
    paths = RolloutPaths(root=root, playbooks=root / "playbooks", inventory=tmp_path / "inv.json", runs=tmp_path / "runs",
                         results=tmp_path / "res")
    events = [{"event": "playbook_on_play_start", "event_data": {"play": "Workstations"}},
              {"event": "runner_on_failed", "event_data": {"host": "th01", "task": "BASELINE | SAFETY | Assert a supported OS",
                                                            "res": {"msg": "th01 runs Debian 11.9"}}},
              {"event": "playbook_on_no_hosts_remaining", "event_data": {}},
              {"event": "playbook_on_stats", "event_data": {"failures": {"th01": 1}, "ok": {"th01": 3}}}]

    def run_fn(**kw):
        for e in events:
            kw["event_handler"](e)
        return SimpleNamespace(status="failed", rc=2, config=SimpleNamespace(artifact_dir=None))

    out = run_rollout(RolloutRequest(playbook="workstations.yml", lot=3), paths, run_fn=run_fn)
    assert out.stopped_by_wave and out.exit_code == 2 and out.wave.max_fail_percentage == 20
    assert json.loads(out.record.read_text())["stopped_by_wave"] is True


# ---------------------------------------------------------------------- link profiles (pure)
def test_link_profiles_follow_the_norms(project):
    ct = next(c for c in project.registry.cts.values() if c.lot == 3 and c.segment.value == "commune_under_15k")
    norms = {cid: r.value for cid, r in project.norms.resolve(ct).items()}
    profiles = {k: testfleet.link_profile(k, min_mbps=norms["LNK-1"]) for k in ("fibre", "adsl", "4g", "vsat")}
    for kind, p in profiles.items():
        assert p.mbit >= norms["LNK-1"] and p.rtt_ms <= norms["LNK-2"] and p.loss * 100 <= norms["LNK-3"], (kind, p)
    assert profiles["vsat"].rtt_ms > 500 and profiles["vsat"].loss > 0  # geostationary, lossy
    assert profiles["fibre"].rtt_ms < profiles["adsl"].rtt_ms < profiles["4g"].rtt_ms < profiles["vsat"].rtt_ms
    with pytest.raises(ValueError, match="expected one of fibre, adsl, 4g, vsat"):
        testfleet.link_profile("carrier-pigeon", min_mbps=2)


# ---------------------------------------------------------------------- booted hosts


@pytest.fixture(scope="module")
def converged(fleet):
    if not fleet["converged"]:
        out = first_converge(fleet, lambda: run_rollout(request(fleet, allow_disruptive=True), fleet["paths"]))
        assert out.exit_code == 0, {h: s.first_error for h, s in out.state.hosts.items()}
        fleet["converged"] = True
    return fleet


_acng_log = testfleet.acng_log


def test_the_retransmission_sampler_reads_the_kernels_connections():
    """SdrRetransmissions finds the server side of a loopback connection in ss(8)'s output and
    reads the bytes it retransmitted: the same figure the socket itself reports (TCP_INFO's
    tcpi_bytes_retrans). Even on loopback a first burst is often partly resent (a spurious
    retransmission), which is why the wire counts more than the log."""
    import socket
    import struct

    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as cli:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"x" * 100_000)
                with testfleet.SdrRetransmissions({"proxy": f"http://127.0.0.1:{port}"}, interval=0.05) as r:
                    time.sleep(0.3)
                info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
                peer = f"127.0.0.1:{cli.getsockname()[1]}"
    # struct tcp_info (linux/tcp.h): tcpi_bytes_acked at offset 120, tcpi_bytes_retrans at 208
    acked, retrans = struct.unpack_from("=Q", info, 120)[0], struct.unpack_from("=Q", info, 208)[0]
    assert acked == 100_000  # the offsets are right
    assert r.per_connection == {peer: retrans}, (r.per_connection, retrans)


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
def test_hosts_fetch_through_the_site_cache_which_fetches_through_the_sdr(converged):
    fleet = converged
    st = fleet["status"]
    server = next(h for h, r in ROLES.items() if r == "server")
    server_ip = st["hosts"][server]["ip"]
    for ws in WORKSTATIONS:
        conf = ssh(fleet, ws, "cat /etc/apt/apt.conf.d/01ctfleet-proxy").stdout
        assert f'"http://{server_ip}:3142"' in conf, (ws, conf)  # the site's reference server caches
    assert '"http://127.0.0.1:3142"' in ssh(fleet, server, "cat /etc/apt/apt.conf.d/01ctfleet-proxy").stdout
    assert f"Proxy: {st['proxy']}" in ssh(fleet, server, "cat /etc/apt-cacher-ng/zz_ctfleet.conf").stdout


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
def test_each_package_crossed_the_uplink_once_in_the_first_converge(converged):
    """The SDR cache (the region, on the bridge) sent each package file of the site's first
    converge once, to the site's cache only; the workstations got theirs over the LAN.

    Per file from the SDR cache's transfer log, in bytes (a second copy may be partial: a
    connection closed mid-response, then the whole file again); whether the log agrees with the
    bytes counted on the wire is the next test. Second copies came from pipelining (the hosts' apt to the site cache,
    the site cache to the SDR cache): the role switches it off (baseline, package_proxy.yml).
    """
    fleet = converged
    st = fleet["status"]
    server = next(h for h, r in ROLES.items() if r == "server")
    server_ip = st["hosts"][server]["ip"]
    logs = fleet["first_converge_logs"]
    sdr = [(c, n, p) for kind, c, n, p in _acng_log(logs["sdr"]) if kind == "O" and p.endswith(".deb")]
    assert sdr, "the SDR cache served no package"
    assert {c for c, _, _ in sdr} == {server_ip}, {c for c, _, _ in sdr}  # no workstation went around the site cache
    per_file = testfleet.packages_sent(logs["sdr"], Path(st["proxy_cache"]))
    assert all(size > 0 for _, size in per_file.values()), [p for p, (_, size) in per_file.items() if not size]
    twice = testfleet.sent_twice(per_file)
    lines = [line for line in logs["sdr"].splitlines() + ["site:"] + logs["site"].splitlines() if any(p in line for p in twice)]
    assert not twice, (twice, lines[-60:])  # path: (bytes sent, file size); the caches' log lines for them
    sent = set(per_file)
    # The site cache fetched each of them once (those it did not fetch: apt-cacher-ng itself and
    # its libraries, which the server's apt fetched from the SDR cache before its own cache ran).
    site = _acng_log(logs["site"])
    fetched = [p for kind, _, _, p in site if kind == "I" and p.endswith(".deb")]
    assert len(fetched) == len(set(fetched)) and set(fetched) <= sent, sorted(p for p in fetched if fetched.count(p) > 1 or p not in sent)
    assert len(sent - set(fetched)) <= 10, sorted(sent - set(fetched))
    ws_ips = {st["hosts"][w]["ip"] for w in WORKSTATIONS}
    for ws in ws_ips:  # each workstation got its packages from the site cache, over the LAN
        assert {p for kind, c, _, p in site if kind == "O" and c == ws and "/chrony_" in p}, ws
    files = sum(size for _, size in per_file.values())
    print(f"\n[hosts] first converge over the uplink: {len(sent)} package files, {files} bytes; the SDR cache "
          f"sent {fleet['first_converge_uplink']['payload']} bytes on the wire ({fleet['first_converge_uplink']['payload'] / files:.4f} per byte of package)")


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
@pytest.mark.xfail(strict=False, reason=(
    "issue 17, open: in 3 of about 19 booted first converges the SDR cache sent more bytes on the wire than its "
    "transfer log counts (130 kB; 505 kB in a CI run, 1.1% of 46 MB; once on 2026-12-02 afternoon), and 65 kB in "
    "another, inside the tolerance; the per-file log check passed each time and the logged total is the same in every "
    "run. Not the log read too early (an unbuffered log and a longer wait still failed once in 4 runs); not TCP "
    "retransmissions in the 65 kB run (sampled: 0 bytes; now subtracted, should they explain a run under load). "
    "Likely: a response the site cache cut and asked again on a new connection (seen with pipelining, issue 17's "
    "fix), unlogged by apt-cacher-ng."))
def test_the_wire_carries_what_the_sdr_cache_logged(converged):
    """What the SDR cache sent on the wire (nftables), less the TCP retransmissions of its
    connections (the kernel's bytes_retrans, sampled), is what its log says it sent: no unlogged
    (partial) second copy of a package."""
    fleet = converged
    logs = fleet["first_converge_logs"]
    # The wire: what the SDR cache sent to the site (nftables: IP bytes less 52 of headers per
    # packet, +-20 per connection), less its TCP retransmissions, is what its log says it sent (in
    # captures of this converge the distinct payload bytes equalled the logged total exactly;
    # retransmitted: 376 and 1448 bytes; one uncaptured run sent 130 kB more than it logged).
    logged = sum(n for kind, _, n, _ in _acng_log(logs["sdr"]) if kind == "O")
    uplink = fleet["first_converge_uplink"]
    wire = uplink["payload"] - uplink["retrans"]
    assert uplink["connections"] >= 1, uplink  # the sampler saw the SDR cache's connections
    assert logged - 4096 <= wire <= logged + max(65536, logged // 200), (wire, logged, uplink)


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
def test_a_wave_with_too_many_failures_stops_the_rollout(converged, tmp_path):
    """lot_3's waves (1 host, then 20, ...; 20% may fail): the first wave's host fails, the others are never touched."""
    fleet = converged
    broken = ("th01", "th02")  # an unsupported OS, as a technician meets it: the safety check refuses the host
    fake = "sudo cp /etc/os-release /root/os-release.ctfleet && sudo cp /etc/debian_version /root/debian_version.ctfleet && " \
           "sudo sed -i 's/^VERSION_ID=.*/VERSION_ID=\"11\"/' /etc/os-release && echo 11.9 | sudo tee /etc/debian_version"
    undo = "sudo cp /root/os-release.ctfleet /etc/os-release && sudo cp /root/debian_version.ctfleet /etc/debian_version"
    paths = fleet["paths"].model_copy(update={"runs": tmp_path / "runs"})  # no cached facts: each host is seen as it is now
    try:
        for h in broken:
            assert ssh(fleet, h, fake).returncode == 0
        out = run_rollout(request(fleet, playbook="workstations.yml", wave="lot_3"), paths)
    finally:
        for h in broken:
            ssh(fleet, h, undo)
    assert out.stopped_by_wave and out.exit_code == 2 and out.wave.serial[0] == 1
    assert out.failed_hosts == ["th01"], {n: (h.status, h.first_error) for n, h in out.state.hosts.items()}
    assert "Debian 11" in out.state.hosts["th01"].first_error
    assert set(out.state.hosts) == {"th01"}, sorted(out.state.hosts)  # th02, th03: never started


# ---------------------------------------------------------------------- the emulated uplink
def _ssh_seconds(fleet, host: str) -> float:
    t0 = time.monotonic()
    assert ssh(fleet, host, "true").returncode == 0
    return time.monotonic() - t0


@pytest.mark.hosts
@pytest.mark.slow
@pytest.mark.component
def test_the_uplink_adds_its_round_trip_and_counts_bytes(converged):
    fleet, env = converged, converged["env"]
    lan = _ssh_seconds(fleet, "th01")
    vsat = testfleet.link_profile("vsat", min_mbps=2)
    testfleet.set_link(vsat, env)
    try:
        slow = _ssh_seconds(fleet, "th01")
        stats = testfleet.link_stats(env)
    finally:
        testfleet.set_link(None, env)
    # An SSH login is several round trips (TCP, key exchange, auth, channel): each costs the RTT.
    assert slow >= lan + 4 * vsat.rtt_ms / 1000, (lan, slow)
    th01 = stats[fleet["status"]["hosts"]["th01"]["ip"]]
    assert th01["connections"] >= 1 and th01["down"] > 1000 and th01["up"] > 1000, th01
    assert _ssh_seconds(fleet, "th01") < lan + 1.0  # link off: a LAN again
