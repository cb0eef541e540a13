"""The asyncio SNMP poller against real agents: net-snmp's snmpd (v2c and a real SNMPv3
authPriv user), a dead address, a slow relay, malformed and truncated replies, a
thousands-row interface table, the pysnmp fallback, and a sweep mixing all of them that
must end within its interval. In CI (CI=true) a missing snmpd is a failure, not a skip."""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
import socket
import threading
import time

import pytest

from ctfleet.monitors import ber, poller
from ctfleet.monitors.poller import (
    BENCH_SPEC,
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OPER_STATUS,
    IF_OUT_OCTETS,
    IF_SPEED,
    SYS_DESCR,
    SYS_NAME,
    SYS_UPTIME,
    Poller,
    SnmpCreds,
    Target,
    parse_shard,
    select_targets,
    shard_of,
)
from ctfleet.monitors.probe import packet_round
from ctfleet.lab.procs.service import Service

USER, AUTH_PW, PRIV_PW, COMMUNITY = "ctfpoll", "poller-auth-pw-1", "poller-priv-pw-1", "ctf-ro-test"
V2C = SnmpCreds("v2c", community=COMMUNITY)
V3 = SnmpCreds("v3", user=USER, auth_key=AUTH_PW, priv_key=PRIV_PW)


def run(coro):
    return poller.run(coro)  # on uvloop, as the collector runs the poller


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ real snmpd


def _snmpd_binary() -> str:
    path = shutil.which("snmpd") or ("/usr/sbin/snmpd" if os.path.exists("/usr/sbin/snmpd") else None)
    if path is None:
        msg = "snmpd not found: install the Debian package snmpd (scripts/setup does)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _answers(host: str, port: int) -> bool:
    req = ber.encode_get(COMMUNITY, 0x01020304, [SYS_UPTIME])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(req, (host, port))
        try:
            data, _ = s.recvfrom(65535)
        except OSError:
            return False
    return ber.decode_message(data).pdu.request_id == 0x01020304


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory):
    """A real net-snmp snmpd on 127.31.0.1 with a v2c community and an SHA/AES user:
    the simulated fleet's SnmpdAgent when it is there, else started here."""
    binary = _snmpd_binary()
    d = tmp_path_factory.mktemp("snmpd")
    host = "127.31.0.1"
    port = free_udp_port(host)
    try:
        from ctfleet.lab.simfleet.snmpd import SnmpdAgent
        from ctfleet.lab.simfleet.data import SnmpCredentials
    except ImportError:
        SnmpdAgent = None
    if SnmpdAgent is not None:
        creds = SnmpCredentials(ref="test", user=USER, auth_key=AUTH_PW, priv_key=PRIV_PW, community=COMMUNITY)
        agent = SnmpdAgent([host], d / "agent", port=port, credentials=creds, sys_name="ctfleet-test-agent",
                           snmpd=binary)
        agent.start()
        try:
            yield host, port
        finally:
            agent.stop()
        return
    conf = d / "snmpd.conf"
    conf.write_text(
        f"agentaddress udp:{host}:{port}\n"
        f"rocommunity {COMMUNITY} 127.0.0.0/8\n"
        f'createUser {USER} SHA "{AUTH_PW}" AES "{PRIV_PW}"\n'
        f"rouser {USER} priv\n"
        "sysName ctfleet-test-agent\n")
    conf.chmod(0o600)
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(d / "persist"), MIBS="")
    svc = Service("snmpd", [binary, "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux"], d / "snmpd.log", env=env)
    svc.start(lambda: _answers(host, port), timeout=20)
    try:
        yield host, port
    finally:
        svc.stop()


# ------------------------------------------------------------- fake responders


class UdpThread:
    """A UDP responder on loopback in a thread: ``handle(data) -> list of (delay, bytes)``."""

    def __init__(self, handle, host: str = "127.31.0.2"):
        self.handle = handle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()
        self.requests = 0
        self.errors: list = []
        self._stop = threading.Event()
        self._timers: list = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.requests += 1
            try:
                replies = self.handle(data)
            except Exception as e:  # reported by the tests
                self.errors.append(e)
                continue
            for delay, reply in replies:
                if delay:
                    t = threading.Timer(delay, self._send, (reply, peer))
                    t.daemon = True
                    self._timers.append(t)
                    t.start()
                else:
                    self._send(reply, peer)

    def _send(self, reply, peer):
        if not self._stop.is_set():
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        for t in self._timers:
            t.cancel()
        self._thread.join(2)
        self.sock.close()


class SlowRelay(UdpThread):
    """Forwards requests to a real agent and delays its replies by ``delay`` seconds."""

    def __init__(self, upstream: tuple, delay: float):
        self.upstream = upstream
        self.delay = delay
        super().__init__(self._relay)

    def _relay(self, data):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(data, self.upstream)
            reply, _ = s.recvfrom(65535)
        return [(self.delay, reply)]


def default_row(i: int, rows: int) -> dict:
    """One generated interface row: every column of IF_COLUMNS (oid -> (tag, value))."""
    up = i % 7 != 0
    return {IF_DESCR: (ber.OCTET_STRING, f"GigabitEthernet0/{i}".encode()), IF_SPEED: (ber.GAUGE32, 1_000_000_000),
            IF_ADMIN_STATUS: (ber.INTEGER, 1), IF_OPER_STATUS: (ber.INTEGER, 1 if up else 2),
            IF_IN_OCTETS: (ber.COUNTER32, i * 1000), IF_OUT_OCTETS: (ber.COUNTER32, i * 2000),
            IF_NAME: (ber.OCTET_STRING, f"Gi0/{i}".encode()),
            IF_HC_IN_OCTETS: (ber.COUNTER64, i * 1000), IF_HC_OUT_OCTETS: (ber.COUNTER64, i * 2000),
            IF_HIGH_SPEED: (ber.GAUGE32, 1000),
            IF_ALIAS: (ber.OCTET_STRING, b"UPLINK fibre" if i == rows else b"")}


class TableAgent:
    """A v2c (or v1) agent built on the codec that serves a generated interface table of
    ``rows`` rows and the system group; GET, GETNEXT and GETBULK, like an agent would.
    ``descr_tag`` lets sysDescr be sent with another type (e.g. Opaque, outside the fast
    path); ``mangle`` post-processes each reply; ``row(i, rows)`` makes each row's
    columns (default :func:`default_row`); ``indexes`` the ifIndex values (default
    1..rows); ``version`` 0 makes an SNMPv1 agent (no GETBULK, no Counter64, noSuchName
    for what it lacks and at the end of the MIB); ``bulk_error`` an agent that answers
    GETBULK with that error-status; ``get_nosuchname`` a v2c agent answering noSuchName
    to a GET of an object it lacks; ``scalars`` overrides the system group."""

    def __init__(self, rows: int, descr_tag: int = ber.OCTET_STRING, mangle=None, row=default_row,
                 indexes=None, version: int = 1, bulk_error: int = 0, get_nosuchname: bool = False,
                 scalars: dict | None = None):
        self.descr_tag = descr_tag
        self.mangle = mangle
        self.version = version
        self.bulk_error = bulk_error
        self.get_nosuchname = get_nosuchname
        self.pdu_types: list = []
        self.scalars = {SYS_NAME: (ber.OCTET_STRING, b"big-table-agent"),
                        SYS_DESCR: (ber.OCTET_STRING, b"generated ifTable"),
                        SYS_UPTIME: (ber.TIME_TICKS, 123456)}
        if scalars is not None:
            self.scalars = scalars
        entries = []
        for i in (indexes if indexes is not None else range(1, rows + 1)):
            for col, (tag, value) in row(i, rows).items():
                if version == 0 and tag == ber.COUNTER64:
                    continue  # RFC 3584 2.4: a v1 agent skips Counter64 objects
                entries.append((col + (i,), tag, value))
        entries.append(((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19, 1), ber.INTEGER, 0))  # ifCounterDiscontinuityTime
        entries.sort()
        self.entries = entries
        self.keys = [e[0] for e in entries]
        self.server = UdpThread(self.handle)
        self.host, self.port = self.server.host, self.server.port

    def _next(self, oid):
        i = bisect.bisect_right(self.keys, oid)
        if i >= len(self.entries):
            return (oid, ber.END_OF_MIB_VIEW, None)
        return self.entries[i]

    def handle(self, data):
        msg = ber.decode_message(data)
        if msg.version != self.version:
            return []  # an agent drops messages of a version it does not speak
        pdu = msg.pdu
        self.pdu_types.append(pdu.pdu_type)
        out = []
        status = index = 0
        if pdu.pdu_type == ber.GET_REQUEST:
            for k, (oid, _t, _v) in enumerate(pdu.varbinds, 1):
                tag, value = self.scalars.get(oid, (ber.NO_SUCH_OBJECT, None))
                if tag == ber.NO_SUCH_OBJECT and (self.version == 0 or self.get_nosuchname) and not status:
                    status, index = 2, k  # noSuchName
                out.append((oid, tag, value))
        elif pdu.pdu_type == ber.GET_NEXT_REQUEST:
            out = [self._next(oid) for oid, _t, _v in pdu.varbinds]
            if self.version == 0:
                for k, vb in enumerate(out, 1):
                    if vb[1] == ber.END_OF_MIB_VIEW:
                        status, index = 2, k
                        break
        elif pdu.pdu_type == ber.GET_BULK_REQUEST:
            if self.version == 0:
                return []
            if self.bulk_error:
                status, index = self.bulk_error, 0
                out = [(oid, ber.NULL, None) for oid, _t, _v in pdu.varbinds]
            else:
                cur = [oid for oid, _t, _v in pdu.varbinds]
                for _ in range(max(1, pdu.max_repetitions)):
                    row = [self._next(o) for o in cur]
                    out += row
                    cur = [vb[0] for vb in row]
                    if len(out) > 1200:
                        break
        if status:  # an error response echoes the request's varbinds
            out = [(oid, ber.NULL, None) for oid, _t, _v in pdu.varbinds]
        raw = []
        for oid, tag, value in out:
            if oid == SYS_DESCR and tag == ber.OCTET_STRING and self.descr_tag != ber.OCTET_STRING:
                body = ber.encode_oid(oid) + bytes((self.descr_tag, len(value))) + value
            else:
                body = ber.encode_oid(oid) + ber.encode_value(tag, value)
            raw.append(ber._tlv(ber.SEQUENCE, body))
        pdu_bytes = ber._tlv(ber.RESPONSE, ber.encode_integer(pdu.request_id) + ber.encode_integer(status)
                             + ber.encode_integer(index) + ber._tlv(ber.SEQUENCE, b"".join(raw)))
        reply = ber.encode_message(msg.community, pdu_bytes, self.version)
        return [(0, self.mangle(reply) if self.mangle else reply)]

    def close(self):
        self.server.close()


@pytest.fixture
def responders():
    made: list = []
    yield made
    for r in made:
        r.close()


def t(hostname, host, port, creds=V2C):
    return Target(hostname, host, creds, port)


# ---------------------------------------------------------------------- tests


def test_v2c_poll_against_snmpd(snmpd):
    host, port = snmpd

    async def go():
        async with Poller(timeout=1.0, retries=1) as p:
            return await p.poll(t("r-v2c", host, port))
    poll = run(go())
    assert poll.ok, poll
    assert poll.version == "v2c"
    assert poll.sys_name == "ctfleet-test-agent"
    assert poll.sys_descr  # net-snmp's: the kernel's uname
    assert poll.uptime_seconds is not None and poll.uptime_seconds >= 0
    assert poll.interfaces, "snmpd reports at least the loopback interface"
    lo = [i for i in poll.interfaces if i.name == "lo"]
    assert lo and lo[0].admin_up and lo[0].oper_up and lo[0].in_octets >= 0
    assert [i.index for i in poll.interfaces] == sorted(i.index for i in poll.interfaces)


def test_v3_authpriv_against_snmpd_real_user(snmpd):
    host, port = snmpd

    async def go():
        async with Poller(timeout=1.0, retries=1) as p:
            first = await p.poll(t("r-v3", host, port, V3))
            engine = p.fast.engines[(host, port)]
            second = await p.poll(t("r-v3", host, port, V3))
            assert p.fast.engines[(host, port)] is engine  # discovery cached per agent
            # an engine clock far off: the agent's authenticated notInTimeWindows
            # report resynchronises it and the request is retried once
            engine.time += 5000
            third = await p.poll(t("r-v3", host, port, V3))
            return first, second, third, engine
    first, second, third, engine = run(go())
    for poll in (first, second, third):
        assert poll.ok, poll
        assert poll.version == "v3-authpriv"
        assert poll.sys_name == "ctfleet-test-agent"
        assert poll.interfaces
    assert engine.engine_id.startswith(b"\x80\x00\x1f\x88")  # net-snmp's enterprise number
    assert engine.time < 5000


@pytest.mark.parametrize("creds,reason", [
    (SnmpCreds("v3", user=USER, auth_key="wrong-auth-pw", priv_key=PRIV_PW), "auth"),
    (SnmpCreds("v3", user="nobody", auth_key=AUTH_PW, priv_key=PRIV_PW), "auth"),
], ids=["wrong-auth-key", "unknown-user"])
def test_v3_wrong_credentials_give_auth(snmpd, creds, reason):
    host, port = snmpd

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-bad", host, port, creds))
    poll = run(go())
    assert not poll.ok and poll.error == reason, poll
    assert "usmStats" in poll.detail
    assert poll.elapsed_seconds < 0.5  # a report, not a timeout


def test_v2c_wrong_community_times_out_clearly(snmpd):
    host, port = snmpd

    async def go():
        async with Poller(timeout=0.2, retries=1) as p:
            return await p.poll(t("r-comm", host, port, SnmpCreds("v2c", community="not-this-one")))
    poll = run(go())
    assert not poll.ok and poll.error == "timeout"
    assert "2 attempt(s)" in poll.detail


def test_dead_address_is_refused_or_timeout():
    host = "127.31.0.3"
    port = free_udp_port(host)  # nothing listens there

    async def go():
        async with Poller(timeout=0.3, retries=1) as p:
            return await p.poll(t("r-dead", host, port))
    poll = run(go())
    assert not poll.ok and poll.error in ("refused", "timeout"), poll
    assert f"{host}:{port}" in poll.detail
    assert poll.elapsed_seconds < 1.0


def test_slow_agent_times_out(snmpd, responders):
    relay = SlowRelay(snmpd, delay=1.5)
    responders.append(relay)

    async def go():
        async with Poller(timeout=0.3, retries=1) as p:
            return await p.poll(t("r-slow", relay.host, relay.port))
    poll = run(go())
    assert not poll.ok and poll.error == "timeout", poll
    assert 0.5 < poll.elapsed_seconds < 1.2
    assert relay.requests == 2  # one retry


def test_slow_agent_within_timeout_answers(snmpd, responders):
    relay = SlowRelay(snmpd, delay=0.05)
    responders.append(relay)

    async def go():
        async with Poller(timeout=1.0, retries=0) as p:
            return await p.poll(t("r-sat", relay.host, relay.port))
    poll = run(go())
    assert poll.ok and poll.sys_name == "ctfleet-test-agent"


def _garbage(_data):
    return [(0, b"\x30\x82\xff\xff\x02\x01\x01garbage")]


def _wrong_tag(data):
    msg = ber.decode_message(data)
    reply = ber.encode_message(msg.community, ber.encode_pdu(ber.RESPONSE, msg.pdu.request_id,
                                                             [(SYS_UPTIME, ber.TIME_TICKS, 1)]))
    return [(0, reply.replace(b"\x43\x01\x01", b"\x9f\x01\x01"))]  # an unknown value tag


def test_malformed_reply_to_the_request_gives_malformed(responders):
    """A reply carrying the request's id that does not decode: malformed (after the
    request waited its time for a valid one)."""
    srv = UdpThread(_wrong_tag)
    responders.append(srv)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-bad-ber", srv.host, srv.port))
    poll = run(go())
    assert not poll.ok and poll.error == "malformed", poll
    assert "unknown tag" in poll.detail


def test_unreadable_datagrams_only_are_a_timeout_that_says_so(responders):
    """Datagrams that match no request are ignored (net-snmp does): nothing valid ever
    comes, so the device timed out, and the detail counts what was ignored."""
    srv = UdpThread(_garbage)
    responders.append(srv)

    async def go():
        async with Poller(timeout=0.3, retries=1) as p:
            poll = await p.poll(t("r-junk", srv.host, srv.port))
            return poll, p.unmatched_datagrams
    poll, unmatched = run(go())
    assert not poll.ok and poll.error == "timeout", poll
    assert unmatched == 2 and "2 datagram(s) from it matched no request and were ignored" in poll.detail


def test_truncated_replies_give_malformed(snmpd, responders):
    class Truncating(SlowRelay):
        def _relay(self, data):
            [(d, reply)] = super()._relay(data)
            return [(d, reply[: len(reply) - 7])]
    relay = Truncating(snmpd, delay=0)
    responders.append(relay)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-trunc", relay.host, relay.port))
    poll = run(go())
    assert not poll.ok and poll.error == "malformed", poll
    assert "exceeds" in poll.detail or "truncated" in poll.detail


def test_non_increasing_oids_give_malformed(responders):
    agent = TableAgent(5)
    agent.keys = agent.keys[:3]  # the agent "loops": every GETNEXT/GETBULK goes back to the start
    agent.entries = agent.entries[:3]
    orig = agent._next
    agent._next = lambda oid: orig(()) if oid >= agent.keys[-1] else orig(oid)
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-loop", agent.host, agent.port))
    poll = run(go())
    assert not poll.ok and poll.error == "malformed", poll
    assert "not increasing" in poll.detail


def test_thousands_of_rows_walked_completely(responders):
    agent = TableAgent(3000)
    responders.append(agent)

    async def go():
        async with Poller(timeout=1.0, retries=1, max_rows=10_000) as p:
            return await p.poll(t("r-big", agent.host, agent.port))
    poll = run(go())
    assert poll.ok, poll
    assert len(poll.interfaces) == 3000 and poll.detail == ""
    assert [i.index for i in poll.interfaces] == list(range(1, 3001))
    i7 = poll.interfaces[6]
    assert (i7.name, i7.oper_up, i7.admin_up, i7.in_octets, i7.out_octets, i7.speed_mbps) == (
        "Gi0/7", False, True, 7000, 14000, 1000)
    assert poll.uplink_index == 3000  # its ifAlias says UPLINK
    assert poll.uplink.alias == "UPLINK fibre"


def test_thousands_of_rows_stopped_at_bound(responders):
    agent = TableAgent(3000)
    responders.append(agent)

    async def go():
        async with Poller(timeout=1.0, retries=1, max_rows=1000) as p:
            return await p.poll(t("r-big", agent.host, agent.port))
    poll = run(go())
    assert poll.ok, poll
    assert len(poll.interfaces) == 1000
    assert "max_rows=1000" in poll.detail and "stopped" in poll.detail
    assert agent.server.requests < 1000 // 10 + 10  # it did stop asking


def test_unsupported_type_falls_back_to_pysnmp(responders):
    agent = TableAgent(4, descr_tag=0x44)  # sysDescr as Opaque: outside the fast path
    responders.append(agent)

    async def go():
        async with Poller(timeout=1.0, retries=1) as p:
            poll = await p.poll(t("r-opaque", agent.host, agent.port))
            return poll, p.last_sweep.fallbacks
    poll, fallbacks = run(go())
    assert poll.ok, poll
    assert fallbacks == 1 and "pysnmp" in poll.detail
    assert poll.sys_name == "big-table-agent"
    assert len(poll.interfaces) == 4 and poll.interfaces[3].alias == "UPLINK fibre"


def test_unsupported_without_fallback_is_reported(responders):
    agent = TableAgent(2, descr_tag=0x44)
    responders.append(agent)

    async def go():
        async with Poller(timeout=1.0, retries=0, fallback=False) as p:
            return await p.poll(t("r-opaque", agent.host, agent.port))
    poll = run(go())
    assert not poll.ok and poll.error == "unsupported" and "0x44" in poll.detail


def test_mixed_sweep_ends_within_interval_and_reports_each_device(snmpd, responders):
    host, port = snmpd
    slow = SlowRelay(snmpd, delay=5.0)
    garbage = UdpThread(_garbage)
    big = TableAgent(2000)
    responders += [slow, garbage, big]
    dead_host = "127.31.0.4"
    targets = [
        t("ok-v2c", host, port), t("ok-v3", host, port, V3),
        t("bad-auth", host, port, SnmpCreds("v3", user=USER, auth_key="wrong-auth-pw", priv_key=PRIV_PW)),
        t("dead", dead_host, free_udp_port(dead_host)), t("slow", slow.host, slow.port),
        t("garbage", garbage.host, garbage.port), t("big", big.host, big.port),
    ]
    interval = 3.0

    async def go():
        # a long per-request timeout and many retries: only the sweep deadline bounds the slow one
        async with Poller(timeout=2.0, retries=5, concurrency=3) as p:
            t0 = time.monotonic()
            polls = await p.sweep(targets, interval=interval)
            return polls, time.monotonic() - t0
    polls, elapsed = run(go())
    assert elapsed < interval, elapsed
    assert set(polls) == {x.hostname for x in targets}
    status = {h: (p.ok, p.error) for h, p in polls.items()}
    assert status["ok-v2c"] == (True, None) and status["ok-v3"] == (True, None)
    assert status["bad-auth"] == (False, "auth")
    assert status["dead"][1] in ("refused", "timeout")
    assert status["slow"] == (False, "timeout")
    assert status["garbage"] == (False, "timeout") and "ignored" in polls["garbage"].detail
    assert status["big"] == (True, None) and len(polls["big"].interfaces) == 2000
    for p in polls.values():
        assert p.ok or p.detail


def test_sweep_deadline_cancels_and_marks_stragglers(snmpd, responders):
    slow = SlowRelay(snmpd, delay=10.0)
    responders.append(slow)
    targets = [t(f"slow-{i}", slow.host, slow.port) for i in range(5)]

    async def go():
        async with Poller(timeout=30.0, retries=3, concurrency=2) as p:
            t0 = time.monotonic()
            polls = await p.sweep(targets, interval=1.0)
            return polls, time.monotonic() - t0
    polls, elapsed = run(go())
    assert elapsed < 1.0
    assert all(p.error == "timeout" and not p.ok for p in polls.values())
    assert any("deadline" in p.detail for p in polls.values())
    # two in flight (concurrency 2) end at the deadline; the three behind them are not polled, in target order
    not_polled = [h for h, p in polls.items() if p.detail.startswith("not polled: the sweep deadline came first")]
    assert not_polled == ["slow-2", "slow-3", "slow-4"], polls
    assert all("before the device deadline" in polls[f"slow-{i}"].detail for i in (0, 1)), polls


def test_snmp_probe_rounds(snmpd):
    host, port = snmpd
    dead_host = "127.31.0.5"
    targets = [t("up-v2c", host, port), t("up-v3", host, port, V3), t("down", dead_host, free_udp_port(dead_host))]

    async def go():
        async with Poller(timeout=0.3, retries=0) as p:
            fn = p.probe_fn(targets)
            return await packet_round({x.hostname: x.hostname for x in targets}, fn, count=3, interval=0.01,
                                      deadline=5.0)
    probes = run(go())
    for h in ("up-v2c", "up-v3"):
        assert probes[h].sent == 3 and len(probes[h].rtts) == 3 and probes[h].loss_ratio == 0
        assert 0 < probes[h].rtt_mean < 0.3
    assert probes["down"].loss_ratio == 1.0 and probes["down"].rtt_mean is None


def test_bench_spec_polls_only_its_oids(snmpd):
    host, port = snmpd

    async def go():
        async with Poller(timeout=1.0, retries=1, spec=BENCH_SPEC) as p:
            return await p.poll(t("bench", host, port, V3))
    poll = run(go())
    assert poll.ok and poll.sys_name == "" and poll.sys_descr and poll.uptime_seconds is not None
    assert poll.interfaces and all(i.name == "" for i in poll.interfaces)
    assert BENCH_SPEC.columns == (IF_OPER_STATUS, IF_HC_IN_OCTETS)


# ------------------------------------------------------------ creds and shards


def test_credentials_from_secret_never_show_values():
    c = SnmpCreds.from_secret("v3", '{"user": "u1", "auth_key": "aaaaaaaa1", "priv_key": "pppppppp1", "community": "c"}')
    assert (c.user, c.auth_key, c.priv_key) == ("u1", "aaaaaaaa1", "pppppppp1")
    assert "aaaa" not in repr(c) and "pppp" not in str(c)
    assert SnmpCreds.from_secret("v2c", "public-ro\n").community == "public-ro"
    with pytest.raises(ValueError):
        SnmpCreds.from_secret("v3", "just-a-string")
    with pytest.raises(ValueError):
        SnmpCreds.from_secret("v3", '{"user": "u", "auth_key": "short", "priv_key": "pppppppp1"}')
    with pytest.raises(ValueError, match="not shown"):
        SnmpCreds.from_secret("v2c", "{not json secret")


def test_shard_parsing():
    assert parse_shard("all") == ("all",)
    assert parse_shard("region:04") == ("region", "04")
    assert parse_shard("hash:2/5") == ("hash", 2, 5)
    for bad in ("region:4", "hash:5/5", "hash:a/b", "everything", "region:"):
        with pytest.raises(ValueError, match="valid"):
            parse_shard(bad)
    assert shard_of("S-01", 4) == shard_of("S-01", 4)  # stable (CRC-32, not hash())


@pytest.fixture(scope="module")
def registry():
    from ctfleet.project import load_project
    return load_project().registry


def test_select_targets_by_shard(registry):
    everything = select_targets(registry, "all")
    assert everything and all(d.snmp_version != "none" and d.mgmt_address is not None for d in everything)
    assert all(d.role.value in ("router", "server") for d in everything)
    parts = [select_targets(registry, f"hash:{i}/4") for i in range(4)]
    names = [d.hostname for part in parts for d in part]
    assert sorted(names) == sorted(d.hostname for d in everything)  # a partition
    assert all(len(p) > len(everything) // 10 for p in parts)  # roughly balanced
    for part_i, part in enumerate(parts):  # by CT: every site of a CT in the same shard
        assert all(shard_of(registry.sites[d.site_code].ct_code, 4) == part_i for d in part)
    r01 = select_targets(registry, "region:01")
    assert r01 and all(registry.cts[registry.sites[d.site_code].ct_code].region_code == "01" for d in r01)
    assert select_targets(registry, "region:99") == []


def test_poller_rejects_bad_settings():
    with pytest.raises(ValueError):
        Poller(timeout=0)
    with pytest.raises(ValueError):
        Poller(concurrency=0)



# ------------------------------------------------------------------ collector


def test_collector_sweep_against_snmpd(snmpd, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from ctfleet.monitors.collector import Collector, CollectorConfig
    from ctfleet.project import load_project
    from ctfleet.results import ResultsStore

    host, port = snmpd
    project = load_project()
    cfg = CollectorConfig(shard="hash:0/64", interval_seconds=5,
                          probe={"method": "snmp", "count": 2, "interval_seconds": 0.0},
                          snmp={"timeout_seconds": 0.3, "retries": 0})
    dead = "127.31.0.6"
    dead_port = free_udp_port(dead)

    def address(d):  # every 4th router is dead; the others are answered by the one snmpd
        return (dead, dead_port) if int(str(d.mgmt_address).rsplit(".", 1)[1]) % 4 == 0 else (host, port)

    store = ResultsStore(tmp_path / "results")
    c = Collector(cfg, project.registry, project.norms, store,
                  credentials=lambda d: V3 if d.snmp_version == "v3" else V2C, address=address)
    assert c.devices and len(c.registry.cts) < len(project.registry.cts)

    async def go():
        try:
            return await c.run_once()
        finally:
            await c.close()
    sweep = run(go())
    assert set(sweep.polls) == {d.hostname for d in c.devices}
    expected_dead = {d.hostname for d in c.devices if address(d)[0] == dead}
    assert expected_dead and all(not sweep.polls[h].ok and sweep.polls[h].error in ("refused", "timeout")
                                 for h in expected_dead)
    assert all(p.ok for h, p in sweep.polls.items() if h not in expected_dead)
    assert sweep.duration_seconds < cfg.interval_seconds
    assert set(sweep.probes) == {d.hostname for d in c.devices if d.role.value == "router"}
    assert all(sweep.probes[h].loss_ratio == 1.0 for h in expected_dead)
    batch = tmp_path / "results" / "snmp" / "hash-0-of-64.jsonl"
    lines = batch.read_text().splitlines()
    assert any('"RTR-2"' in ln for ln in lines) and any('"LNK-3"' in ln for ln in lines)
    reg = CollectorRegistry()
    reg.register(c.exporter)
    text = generate_latest(reg).decode()
    assert 'ctfleet_sweeps_total{shard="hash-0-of-64"} 1.0' in text
    assert "ctfleet_device_up{" in text and 'reason="' in text
    ok = sum(1 for p in sweep.polls.values() if p.ok)
    assert f'ctfleet_sweep_devices{{result="ok",shard="hash-0-of-64"}} {float(ok)}' in text

    # without a results store the exposition judges the sweep itself (no pydantic results built):
    # the same compliance lines as the stored results give, for the same sweep
    bare = Collector(cfg, project.registry, project.norms, None,
                     credentials=lambda d: V3 if d.snmp_version == "v3" else V2C, address=address)
    now = sweep.ended
    snap = bare.exposition.update(sweep, bare._parts(sweep, None), sweeps_total=1, now=now)
    stored = c.exposition.update(sweep, c._parts(sweep), sweeps_total=1, now=now)
    lines = [ln for ln in snap.text().decode().splitlines() if ln.startswith("ctfleet_ct_")]
    assert lines and lines == [ln for ln in stored.text().decode().splitlines() if ln.startswith("ctfleet_ct_")]


def test_icmp_refused_and_late_reply_on_uvloop():
    """The poller runs on uvloop (as the collector runs it): ICMP port-unreachable errors
    queued by IP_RECVERR reach the request outstanding to that address (loopback does
    not rate-limit ICMP, so every one is ``refused``), without a busy loop on the error
    queue, and the loop really is uvloop's, with the raised GC thresholds."""
    import gc
    import resource

    import uvloop

    host = "127.31.0.7"
    ports = [free_udp_port(host) for _ in range(4)]  # nothing listens there

    async def go():
        loop = asyncio.get_running_loop()
        async with Poller(timeout=0.5, retries=1) as p:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            polls = await p.sweep([t(f"r-ref{i}", host, port) for i, port in enumerate(ports)], interval=5.0)
            await asyncio.sleep(0.3)  # an error queue left unread would spin the loop here
            r1 = resource.getrusage(resource.RUSAGE_SELF)
        return type(loop), polls, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), gc.get_threshold()
    before = gc.get_threshold()
    loop_type, polls, cpu, threshold = run(go())
    assert issubclass(loop_type, uvloop.Loop)
    assert threshold == poller.GC_THRESHOLD != before and gc.get_threshold() == before  # raised while running only
    assert {p.error for p in polls.values()} == {"refused"}, polls
    assert all(p.elapsed_seconds < 0.4 for p in polls.values())  # the ICMP error, not the timeout
    assert cpu < 0.25, cpu


def test_collector_main_polls_on_uvloop(tmp_path, monkeypatch, capsys):
    """``python -m ctfleet.monitors.collector --once`` sweeps on uvloop's event loop."""
    import uvloop

    from ctfleet.monitors import collector

    conf = tmp_path / "collector.yml"
    conf.write_text("shard: 'hash:0/512'\ninterval_seconds: 5\nlisten: 127.0.0.1:9\nprobe: {method: none}\n"
                    f"snmp: {{timeout_seconds: 0.2, retries: 0, port: {free_udp_port('127.0.0.1')}}}\n"
                    f"results_dir: {tmp_path / 'results'}\n")
    for r in range(1, 13):
        monkeypatch.setenv(f"CTFLEET_SNMP_{r:02d}", '{"user": "u", "auth_key": "aaaaaaaa1", "priv_key": "pppppppp1", '
                                                   '"community": "c"}')
    loops = []
    real = collector.Collector.run_once

    async def recording(self, *a, **kw):
        loops.append(type(asyncio.get_running_loop()))
        return await real(self, *a, **kw)
    monkeypatch.setattr(collector.Collector, "run_once", recording)
    assert collector.main(["--config", str(conf), "--once"]) == 0
    assert loops and all(issubclass(lt, uvloop.Loop) for lt in loops)
    assert "devices," in capsys.readouterr().out


def test_collector_config_is_strict(tmp_path):
    from ctfleet.core.errors import InputError
    from ctfleet.monitors.collector import load_config

    good = tmp_path / "c.yml"
    good.write_text("shard: region:01\ninterval_seconds: 30\nprobe: {method: snmp}\n")
    cfg = load_config(good)
    assert (cfg.shard, cfg.interval_seconds, cfg.probe.method) == ("region:01", 30, "snmp")
    for text, needle in (("shard: all\nintervall: 5\n", "intervall"),
                         ("shard: hash:3/2\n", "shard"),
                         ("probe: {method: smoke}\n", "probe.method"),
                         ("listen: localhost\n", "listen")):
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(InputError) as e:
            load_config(bad)
        assert needle in str(e.value)


def _http_get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


def test_collector_main_dry_run_serve_and_sighup(tmp_path):
    import signal
    import subprocess
    import sys

    from ctfleet.lab.procs.service import free_port

    port = free_port()
    conf = tmp_path / "collector.yml"

    def write(shard):
        conf.write_text(f"shard: '{shard}'\ninterval_seconds: 1\nlisten: 127.0.0.1:{port}\n"
                        f"probe: {{method: none}}\nsnmp: {{timeout_seconds: 0.2, retries: 0, port: 16999}}\n"
                        f"results_dir: {tmp_path / 'results'}\n")
    write("hash:0/512")
    secret = '{"user": "u", "auth_key": "aaaaaaaa1", "priv_key": "pppppppp1", "community": "c"}'
    env = dict(os.environ, **{f"CTFLEET_SNMP_{r:02d}": secret for r in range(1, 13)})
    cmd = [sys.executable, "-m", "ctfleet.monitors.collector", "--config", str(conf)]
    dry = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "ok:" in dry.stdout and "hash:0/512" in dry.stdout
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        def wait_for(needle, timeout=20.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                assert proc.poll() is None, proc.stderr.read()
                try:
                    if needle in _http_get(f"http://127.0.0.1:{port}/metrics"):
                        return
                except OSError:
                    pass
                time.sleep(0.2)
            raise AssertionError(f"{needle!r} never served")
        wait_for('ctfleet_sweeps_total{shard="hash-0-of-512"}')
        write("hash:1/512")
        proc.send_signal(signal.SIGHUP)
        wait_for('ctfleet_sweeps_total{shard="hash-1-of-512"}')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "reloaded" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
