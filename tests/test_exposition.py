"""The exporter's own text rendering: byte for byte what prometheus-client's
``generate_latest`` renders from ``collect()``, label values from hostile agents
(CR, LF, quotes, backslashes, invalid UTF-8) that parse, and the new uplink, counter
width and unmatched-datagram series."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ctfleet.core.models import Role
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.sweep import DevicePoll, Interface, Probe, Sweep, clean_text


def _sweep(project, n: int = 60) -> tuple[Sweep, list]:
    reg = project.registry
    routers = [d for d in reg.devices.values() if d.role == Role.ROUTER][:n]
    t0 = datetime.now(timezone.utc)
    polls = {}
    for k, d in enumerate(routers):
        bits = 32 if k % 3 == 0 else 64
        ifs = (Interface(1, "Dialer0", True, k % 5 != 0, 8, 2**32 + k if bits == 32 else 10**12, 7, "", bits),
               Interface(2, "Gi0/1", True, True, 100, 1, 2, 'lan "office"\\'))
        descr = clean_text(b'H3C Comware\r\nV7 "x"\\ r\xe9seau\x00') if k % 2 else "Cisco IOS XE"
        polls[d.hostname] = (DevicePoll(d.hostname, ok=True, version="v1" if k % 7 == 0 else "v3-authpriv", sys_name=d.hostname,
                                        sys_descr=descr, uptime_seconds=100.0 + k, interfaces=ifs, uplink_index=1,
                                        uplink_reason="registry: index:1" if k % 2 else "heuristic: ifName Dialer0")
                             if k % 11 else DevicePoll(d.hostname, ok=False, error="timeout", detail="x", version="v2c"))
    probes = {d.hostname: Probe(d.hostname, 5, (0.01, 0.02), "snmp") for d in routers}
    sweep = Sweep(started=t0, ended=t0 + timedelta(seconds=2), polls=polls, probes=probes, shard="all",
                  unmatched_datagrams=17)
    return sweep, routers


def test_exposition_is_generate_latest_byte_for_byte(project):
    sweep, _ = _sweep(project)
    now = datetime.now(timezone.utc)
    snap = build_snapshot(project.registry, project.norms, sweep, sweeps_total=3, now=now)
    c = CtfleetCollector(snap)
    reg = CollectorRegistry()
    reg.register(c)
    ours = c.exposition()
    assert ours == generate_latest(reg)
    assert c.exposition() == ours  # rendered once, then cached with the snapshot
    again = CtfleetCollector(build_snapshot(project.registry, project.norms, sweep, sweeps_total=3, now=now))
    r2 = CollectorRegistry()
    r2.register(again)
    assert again.exposition() == generate_latest(r2)  # with the label cache warm


def test_hostile_label_values_parse_and_new_series_are_served(project):
    sweep, routers = _sweep(project)
    text = CtfleetCollector(build_snapshot(project.registry, project.norms, sweep, sweeps_total=1)).exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    descrs = {s.labels["sys_descr"] for s in families["ctfleet_device_snmp_info"].samples}
    assert 'H3C Comware V7 "x"\\ réseau' in descrs  # CR LF NUL gone, Latin-1 read, quotes and backslash escaped
    info = families["ctfleet_uplink_info"].samples
    assert {s.labels["chosen_by"] for s in info} == {"registry", "heuristic"}
    assert all(s.labels["interface"] == "Dialer0" and s.labels["if_index"] == "1" for s in info)
    bits = {s.labels["device"]: s.labels["octets_width"] for s in info}
    assert bits[routers[3].hostname] == "32" and bits[routers[1].hostname] == "64"
    rx = {s.labels["device"]: s.value for s in families["ctfleet_uplink_receive_bytes"].samples}
    assert rx[routers[3].hostname] == 2**32 + 3  # a 32-bit counter with one wrap added
    [unmatched] = families["ctfleet_snmp_unmatched_datagrams"].samples
    assert unmatched.value == 17
    versions = {s.labels["version"] for s in families["ctfleet_device_snmp_info"].samples}
    assert "v1" in versions
