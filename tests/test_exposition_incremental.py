"""The exposition kept across sweeps (issue 15, "count the whole path to Prometheus"):
after random changes — polls, probes, results changing status or only time, results
going stale, batches appearing and going, waivers expiring, maintenance windows
opening, connectivity lost — the incremental text equals a render from nothing, byte for
byte, and what did not change is not recomputed (CT assessments, device blocks, store
batches read again)."""

from __future__ import annotations

import copy
import random
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.core.evaluate import expected_pairs
from ctfleet.core.maintenance import Maintenance, Window
from ctfleet.core.models import Role
from ctfleet.core.waivers import Waiver, Waivers
from ctfleet.monitors.exporter import CtfleetCollector, Exposition, build_snapshot, sweep_part
from ctfleet.monitors.stored import StoredBatches
from ctfleet.monitors.sweep import DevicePoll, Interface, Probe, Sweep, sweep_results
from ctfleet.results import ResultsStore

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def region12():
    from conftest import ROOT
    from ctfleet.project import load_project

    p = load_project(root=ROOT)
    registry = p.national.scoped("12")
    norms = copy.copy(p.norms)
    cts = sorted(registry.cts)
    # a waiver that expires during the test, and one that starts during it
    norms.waivers = Waivers([
        Waiver(cts[0], None, "WS-4", "test", "test", (T0 - timedelta(days=3)).date(), "T-1", (T0 + timedelta(days=1)).date(), "t"),
        Waiver(cts[1], None, "SRV-1", "test", "test", (T0 + timedelta(days=2)).date(), "T-2", (T0 + timedelta(days=30)).date(), "t"),
    ])
    ct2 = registry.cts[cts[2]]
    norms.maintenance = Maintenance([Window(ct2.code, None, T0 + timedelta(hours=30), T0 + timedelta(hours=40), "test", None, "t")])
    return registry, norms


def _sweep(registry, at: datetime, rnd: random.Random, base: dict | None = None) -> Sweep:
    """A sweep where most routers answer with moving counters, some fail, some change uplink state."""
    polls, probes = {}, {}
    routers = sorted((d for d in registry.devices.values() if d.role == Role.ROUTER), key=lambda d: d.hostname)
    for k, d in enumerate(routers):
        prev = (base or {}).get(d.hostname)
        roll = rnd.random()
        if prev is not None and roll < 0.3:  # unchanged: the same objects as last sweep
            polls[d.hostname], probes[d.hostname] = prev
            continue
        if prev is not None and roll < 0.85:  # observed again: counters and uptime moved, same states
            p, q = prev
            if p.ok:
                p = replace(p, uptime_seconds=p.uptime_seconds + 60,
                            interfaces=tuple(replace(i, in_octets=i.in_octets + 10**6) for i in p.interfaces))
            polls[d.hostname] = replace(p)
            if q is not None:
                probes[d.hostname] = replace(q)
            continue
        if rnd.random() < 0.1:
            polls[d.hostname] = DevicePoll(d.hostname, ok=False, error=rnd.choice(["timeout", "auth"]), detail="x", version="v2c")
        else:
            up = Interface(1, "Dialer0", True, rnd.random() > 0.15, rnd.choice([2, 8, 100]), rnd.randrange(10**9), rnd.randrange(10**9),
                           "UPLINK", rnd.choice([32, 64]))
            polls[d.hostname] = DevicePoll(d.hostname, ok=True, version=rnd.choice(["v3-authpriv", "v2c"]), sys_name=d.hostname,
                                           sys_descr=rnd.choice(["Cisco IOS XE", 'H3C "x"\\ y']), uptime_seconds=float(rnd.randrange(10**6)),
                                           interfaces=(up,), uplink_index=1, uplink_reason="registry: index:1")
        if rnd.random() < 0.9:
            rtt = rnd.choice([0.02, 0.65, 0.95])
            probes[d.hostname] = Probe(d.hostname, 5, (rtt,) * rnd.randint(0, 5), "snmp")
    return Sweep(started=at, ended=at + timedelta(seconds=3), interval_seconds=60, polls=polls, probes=probes, shard="region-12")


def _audits(registry, norms, at: datetime, rnd: random.Random, share: float) -> list[ControlResult]:
    out = []
    for ct in registry.cts.values():
        if rnd.random() > share:
            continue
        for device, control in expected_pairs(ct, registry, norms):
            if control in ("RTR-2", "LNK-1", "LNK-2", "LNK-3"):
                continue
            out.append(ControlResult(ct=ct.code, device=device, control=control,
                                     status=Status.FAIL if rnd.random() < 0.05 else Status.PASS,
                                     source=Source.ROUTER_AUDIT if control.startswith("RTR") else Source.AUDIT,
                                     evidence="test", observed_at=at - timedelta(minutes=rnd.randrange(0, 60))))
    return out


def _fresh(registry, norms, sweep, parts, now, total) -> bytes:
    return Exposition(registry, norms).update(sweep, parts, now=now, sweeps_total=total).text()


def test_incremental_equals_a_render_from_nothing_after_random_changes(region12):
    registry, norms = region12
    rnd = random.Random(15)
    exp = Exposition(registry, norms)
    audits = {"a": _audits(registry, norms, T0, rnd, 0.6)}
    versions = {"a": 0}
    sweep = None
    assessed = []
    now = T0
    for step in range(14):
        # sweeps every minute, with jumps of hours so results go stale, a waiver expires,
        # another comes into force and a maintenance window opens and closes
        now += timedelta(minutes=1) if step % 4 else timedelta(hours=rnd.choice([3, 12, 20]))
        base = {h: (p, sweep.probes.get(h)) for h, p in sweep.polls.items()} if sweep else None
        sweep = _sweep(registry, now - timedelta(seconds=5), rnd, base) if step != 5 else None
        if step % 3 == 2:  # an audit batch changes: some statuses flip, some only re-observed
            a = list(audits["a"])
            for n in rnd.sample(range(len(a)), 40):
                r = a[n]
                a[n] = r.model_copy(update={"observed_at": now - timedelta(seconds=30),
                                            "status": r.status if rnd.random() < 0.5 else
                                            (Status.FAIL if r.status == Status.PASS else Status.PASS)})
            audits["a"] = a
            versions["a"] += 1
        if step == 6:
            audits["b"] = _audits(registry, norms, now, rnd, 0.2)  # a new batch
            versions["b"] = 0
        if step == 10:
            audits.pop("b")  # and it goes
        parts = [((1, name), versions[name], (lambda rs=rs: rs)) for name, rs in sorted(audits.items())]
        if sweep is not None:
            results = list(sweep_results(sweep, registry, norms))
            parts.insert(0, sweep_part(sweep, registry, norms, results))
        got = exp.update(sweep, parts, now=now, sweeps_total=step)
        assessed.append(exp.stats["assessed"])
        want = _fresh(registry, norms, sweep, parts, now, step)
        assert got.text() == want, f"step {step}: incremental text differs from a render from nothing"
        reg = CollectorRegistry()
        reg.register(CtfleetCollector(got))
        assert generate_latest(reg) == CtfleetCollector(got).exposition()  # collect() serves the same samples
    # Only what changed was assessed again: a sweep a minute later re-assesses some CTs, not all.
    n = len(registry.cts)
    minute_steps = [assessed[s] for s in range(1, 14) if s % 4 and s not in (5, 6, 7)]
    assert assessed[0] == n
    assert max(minute_steps) < n and min(minute_steps) < n / 2, assessed


def test_unchanged_sweep_reassesses_and_rerenders_nothing(region12):
    registry, norms = region12
    rnd = random.Random(3)
    sweep = _sweep(registry, T0, rnd)
    results = list(sweep_results(sweep, registry, norms))
    audits = _audits(registry, norms, T0, rnd, 0.8)
    parts = [sweep_part(sweep, registry, norms, results), ((1, "audit"), 1, lambda: audits)]
    exp = Exposition(registry, norms)
    first = exp.update(sweep, parts, now=T0 + timedelta(seconds=10), sweeps_total=1)
    loaded = []
    parts[1] = ((1, "audit"), 1, lambda: loaded.append(1) or audits)
    again = exp.update(sweep, parts, now=T0 + timedelta(seconds=70), sweeps_total=2)
    assert exp.stats["assessed"] == 0 and exp.stats["devices_rendered"] == 0
    assert loaded == []  # a part whose version did not change is not loaded again
    assert again.text() != first.text()  # the result ages and the sweep counter moved
    assert again.text() == _fresh(registry, norms, sweep, parts, T0 + timedelta(seconds=70), 2)


def test_a_result_going_stale_reassesses_its_ct_at_that_time(region12):
    registry, norms = region12
    ct = sorted(registry.cts.values(), key=lambda c: c.code)[3]
    router = next(d for d in registry.devices_of(ct.code) if d.role == Role.ROUTER)
    r = ControlResult(ct=ct.code, device=router.hostname, control="RTR-1", status=Status.PASS, source=Source.ROUTER_AUDIT,
                      evidence="test", observed_at=T0)
    limit = norms.max_ages(ct).seconds("RTR-1", "router_audit")
    assert limit, "router audits have a maximum age in the baseline"
    exp = Exposition(registry, norms)
    parts = [((1, "audit"), 1, lambda: [r])]
    exp.update(None, parts, now=T0 + timedelta(seconds=limit))
    before = exp._cts[exp._ct_index[ct.code]].assessment
    exp.update(None, parts, now=T0 + timedelta(seconds=limit))
    assert exp.stats["assessed"] == 0
    snap = exp.update(None, parts, now=T0 + timedelta(seconds=limit, microseconds=1))
    after = exp._cts[exp._ct_index[ct.code]].assessment
    assert exp.stats["assessed"] == 1  # that CT only, just after its result's maximum age
    assert (before.compliance.passed, before.compliance.stale) == (1, 0)
    assert (after.compliance.passed, after.compliance.stale) == (0, 1)
    assert snap.text() == _fresh(registry, norms, None, parts, T0 + timedelta(seconds=limit, microseconds=1), 0)


def test_store_batches_are_read_again_only_when_they_change(tmp_path, region12):
    registry, norms = region12
    store = ResultsStore(tmp_path / "results")
    rnd = random.Random(5)
    audits = _audits(registry, norms, T0, rnd, 0.5)
    path = store.write_batch(Source.AUDIT, "simulated", audits)
    old = T0.timestamp() - 3600  # older than the racy window: its identity is trusted
    import os

    os.utime(path, (old, old))
    feed = StoredBatches(store)
    exp = Exposition(registry, norms)
    exp.update(None, feed.parts(), now=T0)
    assert feed.reads == 1
    sweep = _sweep(registry, T0, rnd)
    results = list(sweep_results(sweep, registry, norms))
    own = store.write_batch(Source.SNMP, "region-12", results)
    feed.remember(own, results)  # the collector's own batch: not read back
    snap = exp.update(sweep, feed.parts(), now=T0 + timedelta(seconds=60))
    assert feed.reads == 1 and exp.stats["parts_loaded"] == 1
    want = Exposition(registry, norms).update(sweep, [sweep_part(sweep, registry, norms), ((1, "all"), 1, lambda: list(store.iter_results()))],
                                              now=T0 + timedelta(seconds=60)).text()
    assert snap.text() == want
    # another writer replaces the audit batch: read again, once
    audits[0] = audits[0].model_copy(update={"status": Status.FAIL, "observed_at": T0 + timedelta(seconds=61)})
    store.write_batch(Source.AUDIT, "simulated", audits)
    exp.update(sweep, feed.parts(), now=T0 + timedelta(seconds=120))
    assert feed.reads == 2
    # just written (within the racy window): read again at the next sweep too, until older
    exp.update(sweep, feed.parts(), now=T0 + timedelta(seconds=180))
    assert feed.reads == 3
    # a batch removed is no longer counted
    path.unlink()
    snap = exp.update(sweep, feed.parts(), now=T0 + timedelta(seconds=240))
    assert snap.text() == Exposition(registry, norms).update(
        sweep, [sweep_part(sweep, registry, norms), ((1, "all"), 1, lambda: list(store.iter_results()))],
        now=T0 + timedelta(seconds=240)).text()


def test_promtool_accepts_the_incremental_exposition(region12):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup (Debian package prometheus)"
    registry, norms = region12
    rnd = random.Random(9)
    exp = Exposition(registry, norms)
    sweep = None
    for step in range(3):
        base = {h: (p, sweep.probes.get(h)) for h, p in sweep.polls.items()} if sweep else None
        sweep = _sweep(registry, T0 + timedelta(minutes=step), rnd, base)
        snap = exp.update(sweep, [sweep_part(sweep, registry, norms)], now=T0 + timedelta(minutes=step, seconds=5), sweeps_total=step)
    text = CtfleetCollector(snap).exposition()
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == b"" and run.stderr.strip() == b"", "promtool reported lint problems"


def test_build_snapshot_counts_no_registry_declarations(region12):
    """Declarations are not observations: a result with source registry changes nothing."""
    registry, norms = region12
    ct = sorted(registry.cts.values(), key=lambda c: c.code)[0]
    declared = ControlResult(ct=ct.code, control="LNK-5", status=Status.PASS, source=Source.REGISTRY, evidence="declared",
                             observed_at=T0)
    assert build_snapshot(registry, norms, None, [declared], now=T0).text() == build_snapshot(registry, norms, None, [], now=T0).text()


def _odd_polls(registry, rnd: random.Random):
    """Polls and probes with every branch of a device's series: failures, no uptime, no
    uplink, label values needing escapes or cleaning, counters past 2^32, empty rounds."""
    descrs = ['H3C "x"\\ y', b"Cisco IOS\r\nVersion 15.2\x00", b"caf\xe9", "é" * 200, ""]
    routers = sorted((d for d in registry.devices.values() if d.role == Role.ROUTER), key=lambda d: d.hostname)
    for d in routers[:60]:
        kind = rnd.random()
        if kind < 0.15:
            poll = DevicePoll(d.hostname, ok=False, error=rnd.choice(["timeout", "auth", None]), version="v2c")
        else:
            ifs = (Interface(1, rnd.choice(["Dialer0", 'we"ird\\0', b"eth\n0"]), True, rnd.random() < 0.5, rnd.choice([0, 2, 100, 10**5]),
                             rnd.choice([0, 1, 2**32 + 5, 10**15, 123456789]), rnd.randrange(10**12), "UPLINK", rnd.choice([0, 32, 64])),)
            poll = DevicePoll(d.hostname, ok=True, version=rnd.choice(["v3-authpriv", "v2c", None]), sys_name=rnd.choice([d.hostname, b"r\x00"]),
                              sys_descr=rnd.choice(descrs), uptime_seconds=rnd.choice([None, 0.0, 1.0, 86400.5, 1e7, 4.2e9]),
                              interfaces=ifs, uplink_index=rnd.choice([1, 1, 2]), uplink_reason=rnd.choice(["registry: index:1", "heuristic: x"]))
        probe = rnd.choice([None, Probe(d.hostname, 5, (), "icmp"), Probe(d.hostname, 5, (0.0123, 0.5, 1e-5), "snmp"),
                            Probe(d.hostname, 3, (12345678.9,), "icmp"), Probe(d.hostname, 0, (), "icmp")])
        yield d, poll if rnd.random() < 0.9 else None, probe


def test_device_lines_equal_the_samples_rendered_by_spec(region12):
    """The pre-rendered label prefixes of a device (only values formatted at each sweep,
    info lines only when their raw values change) give the text of device_samples through
    Spec, sweep after sweep on the same device."""
    from ctfleet.monitors.exporter import DEVICE_SPECS, Exposition as E, _DeviceText, device_samples

    registry, norms = region12
    exp = E(registry, norms)
    rnd = random.Random(21)
    states = {}
    for _ in range(4):
        for d, poll, probe in _odd_polls(registry, rnd):
            dl = exp._dev_lv[exp._dev_index[d.hostname]]
            state = states.setdefault(d.hostname, _DeviceText(dl))
            want = [spec.lines(s) for spec, s in zip(DEVICE_SPECS, device_samples(dl, poll, probe))]
            assert state.texts(poll, probe) == want, d.hostname


def test_value_format_is_float_to_go_string():
    from prometheus_client.utils import floatToGoString

    from ctfleet.monitors.exporter import _fmt

    values = [0, 1, 2, -1, 0.0, -0.0, 1.0, 0.1, 1e-05, 123456.7, 1234567.0, 12345678.9, 2**32 + 5, 10**15, 10**17, 1e22, -1e22,
              float("inf"), float("-inf"), float("nan"), 12500000.0, 999999.99, 86400.5, True, False, 1e7, 10000000.5,
              1e15 + 0.5, 2**53 + 1, -12345678.5, 1e-300, 1e300]
    for v in values:
        assert _fmt(v) == floatToGoString(v), v


def test_sweep_observations_are_the_sweep_results_without_evidence(region12):
    from ctfleet.monitors.sweep import sweep_observations

    registry, norms = region12
    rnd = random.Random(4)
    sweep = _sweep(registry, T0, rnd)
    sweep.polls.update({d.hostname: p for d, p, _ in _odd_polls(registry, rnd) if p is not None})
    sweep.probes.update({d.hostname: q for d, _, q in _odd_polls(registry, rnd) if q is not None})
    full = [(r.ct, r.device, r.control, r.status, r.source, r.observed_at) for r in sweep_results(sweep, registry, norms)]
    assert len(full) > 3 * len(sweep.polls) // 2
    assert [tuple(o) for o in sweep_observations(sweep, registry, norms)] == full
    assert {o.key for o in sweep_observations(sweep, registry, norms)} == {r.key for r in sweep_results(sweep, registry, norms)}


def test_devices_only_exposition_is_the_per_device_series_of_the_whole(region12):
    """per_ct=False (the bench's like-for-like figure): the per-device families and the
    collector's health of the whole exposition, nothing per CT, parsed by prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    registry, norms = region12
    rnd = random.Random(8)
    whole, devices = Exposition(registry, norms), Exposition(registry, norms, per_ct=False)
    sweep = None
    for step in range(3):
        base = {h: (p, sweep.probes.get(h)) for h, p in sweep.polls.items()} if sweep else None
        sweep = _sweep(registry, T0 + timedelta(minutes=step), rnd, base)
        now = T0 + timedelta(minutes=step, seconds=5)
        w = whole.update(sweep, [sweep_part(sweep, registry, norms)], now=now, sweeps_total=step)
        d = devices.update(sweep, [sweep_part(sweep, registry, norms)], now=now, sweeps_total=step)
    fams = {f.name: f for f in text_string_to_metric_families(w.text().decode())}
    got = {f.name: f for f in text_string_to_metric_families(d.text().decode())}
    assert got and not any(n.startswith("ctfleet_ct_") for n in got)
    assert "ctfleet_device_up" in got and "ctfleet_sweeps" in got
    for name, f in got.items():
        assert f.samples == fams[name].samples, name
    reg = CollectorRegistry()
    reg.register(CtfleetCollector(d))
    assert generate_latest(reg) == CtfleetCollector(d).exposition()
