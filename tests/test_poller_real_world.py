"""What real agents and lossy links do to the poller (issue 15), one reproducing test per
defect, with hostile responders on loopback: a junk datagram before the valid reply, a
reply later than the timeout, a link losing one datagram in three, noSuchName to a GET,
genErr to GETBULK, SNMPv1 agents (a generated one and net-snmp's snmpd), interfaces
without 64-bit counters and their 32-bit wraps, the uplink from the registry against
the old unanchored heuristic, control characters and invalid UTF-8 in sysDescr."""

from __future__ import annotations

import random
import time

import pytest
from test_poller import V2C, TableAgent, UdpThread, default_row, run, snmpd, t  # noqa: F401 - snmpd is a fixture

from ctfleet.monitors import ber
from ctfleet.monitors.device_poll import WRAP32
from ctfleet.monitors.poller import (
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    SYS_DESCR,
    SYS_NAME,
    SYS_UPTIME,
    Poller,
    SnmpCreds,
    Target,
)
from ctfleet.monitors.sweep import Interface, choose_uplink, clean_text

V1 = SnmpCreds("v1", community=V2C.community)


@pytest.fixture
def responders():
    made: list = []
    yield made
    for r in made:
        r.close()


class Relay(UdpThread):
    """Sits in front of an agent (in-process): ``plan(request_bytes) -> list of (delay,
    reply or None)`` decides what the poller gets for each request it sends."""

    def __init__(self, agent: TableAgent, plan):
        self.agent = agent
        self.plan = plan
        super().__init__(self._relay, host="127.31.0.7")

    def _relay(self, data):
        [(_d, reply)] = self.agent.handle(data) or [(0, None)]
        return [(d, r) for d, r in self.plan(data, reply) if r is not None]


# ------------------------------------------------------- transport (net-snmp-like)


def test_junk_datagram_before_the_valid_reply_is_ignored(responders):
    """Issue: an unreadable datagram from the agent's address ended the poll as
    malformed though the valid reply came 10 ms later."""
    agent = TableAgent(4)
    relay = Relay(agent, lambda data, reply: [(0, b"\x30\x03\x02\x01\x01"), (0, b"\x00junk"), (0.01, reply)])
    responders += [agent, relay]

    async def go():
        async with Poller(timeout=1.0, retries=0) as p:
            return await p.poll(t("r-junk-first", relay.host, relay.port)), p.unmatched_datagrams
    poll, unmatched = run(go())
    assert poll.ok, poll
    assert len(poll.interfaces) == 4
    assert unmatched >= 2 * 2  # two junk datagrams per request (GET and GETBULK), all counted


def test_late_reply_to_the_first_attempt_is_accepted(responders):
    """Issue: each retry took a new request-id, so a reply 1.3 s late with a 1 s timeout
    was discarded and the device reported timeout. The request-id is now kept across
    retransmissions: the late reply to attempt 1 answers the request."""
    agent = TableAgent(3)
    answered: set = set()

    def plan(data, reply):
        rid = ber.decode_message(data).pdu.request_id
        if rid in answered:
            return []  # the retransmission is not answered: only the late first reply is
        answered.add(rid)
        return [(1.3, reply)]
    relay = Relay(agent, plan)
    responders += [agent, relay]

    async def go():
        async with Poller(timeout=1.0, retries=1) as p:
            return await p.poll(t("r-late", relay.host, relay.port))
    poll = run(go())
    assert poll.ok, poll
    assert relay.requests == 4  # GET and GETBULK, each sent twice with the same request-id
    assert len(answered) == 2


def test_lossy_link_one_in_three_lost_still_polls(responders):
    """Issue: with 1 datagram in 3 lost, only 9-11 of 30 polls succeeded with timeout
    0.5 s and 1 retry. Each direction here loses one datagram in three (seeded); a
    device that answered once gets its requests resent until its deadline, and a device
    whose first contact failed gets another pass in the sweep."""
    rng = random.Random(15)
    agent = TableAgent(8)

    def plan(data, reply):
        if rng.random() < 1 / 3:
            return []  # the request is lost
        if rng.random() < 1 / 3:
            return []  # the reply is lost
        return [(0.02, reply)]
    relay = Relay(agent, plan)
    responders += [agent, relay]
    targets = [t(f"r-lossy-{i:02d}", relay.host, relay.port) for i in range(30)]

    async def go():
        async with Poller(timeout=0.15, retries=1, concurrency=30) as p:
            t0 = time.monotonic()
            polls = await p.sweep(targets, interval=8.0)
            return polls, time.monotonic() - t0
    polls, elapsed = run(go())
    ok = [p for p in polls.values() if p.ok]
    assert len(ok) >= 28, {h: p.detail for h, p in polls.items() if not p.ok}
    assert elapsed < 8.0
    assert all(len(p.interfaces) == 8 for p in ok)


def test_a_failed_first_contact_is_tried_again_without_waiting_for_slow_devices(responders):
    """A device whose first contact got no answer is polled again as soon as its own try
    ends, not after a whole pass: here a slow device (each reply 0.5 s late, a walk of
    several requests) takes the sweep's whole time, and a device behind a link that lost
    its first two requests is answered at its second try, ~0.6 s in. With passes (the
    previous design) the second try waited for the slow device and never came."""
    slow_agent, lossy_agent = TableAgent(40), TableAgent(4)
    slow = Relay(slow_agent, lambda data, reply: [(0.5, reply)])
    sent = []

    def lose_first_two(data, reply):
        sent.append(time.monotonic())
        return [] if len(sent) <= 2 else [(0.01, reply)]
    lossy = Relay(lossy_agent, lose_first_two)
    responders += [slow_agent, lossy_agent, slow, lossy]

    async def go():
        async with Poller(timeout=0.3, retries=1, concurrency=8, max_rows=40) as p:
            t0 = time.monotonic()
            polls = await p.sweep([t("r-slow", slow.host, slow.port), t("r-lossy", lossy.host, lossy.port)], interval=2.0,
                                  budget=1.0)
            return polls, p.last_sweep, t0
    polls, stats, t0 = run(go())
    lossy_poll = polls["r-lossy"]
    assert lossy_poll.ok, lossy_poll
    assert "answered on pass 2 of the sweep" in lossy_poll.detail
    assert sent[2] - t0 < 1.0  # tried again at once (first contact: 2 x 0.3 s), not at the slow device's end
    assert not polls["r-slow"].ok or polls["r-slow"].elapsed_seconds > 1.0  # it did hold the sweep
    assert stats.passes == 2


# ------------------------------------------------------------- agent behaviour


def test_nosuchname_on_get_drops_that_oid_and_asks_again(responders):
    """Issue: noSuchName on a GET for one missing OID failed the device."""
    agent = TableAgent(3, get_nosuchname=True, scalars={SYS_DESCR: (ber.OCTET_STRING, b"old agent"),
                                                        SYS_UPTIME: (ber.TIME_TICKS, 500)})
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-nosuchname", agent.host, agent.port))
    poll = run(go())
    assert poll.ok, poll
    assert (poll.sys_name, poll.sys_descr, poll.uptime_seconds) == ("", "old agent", 5.0)
    assert "noSuchName" in poll.detail and "1.3.6.1.2.1.1.5.0" in poll.detail


def test_generr_on_getbulk_walks_with_getnext(responders):
    """Issue: a genErr on GETBULK gave 'unsupported' with no GETNEXT fallback."""
    agent = TableAgent(5, bulk_error=5)
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            first = await p.poll(t("r-nobulk", agent.host, agent.port))
            n = len(agent.pdu_types)
            second = await p.poll(t("r-nobulk", agent.host, agent.port))
            return first, second, agent.pdu_types[n:]
    first, second, later = run(go())
    assert first.ok and second.ok, (first, second)
    assert [i.index for i in first.interfaces] == [1, 2, 3, 4, 5]
    assert first.interfaces == second.interfaces
    assert "GETBULK answered genErr: walked with GETNEXT" in first.detail
    assert ber.GET_BULK_REQUEST not in later  # remembered: the next sweep goes straight to GETNEXT
    assert first.uplink_index == 5


def test_snmpv1_agent_is_polled_with_getnext(responders):
    """Issue: v1-only agents (old commune equipment, UPSes) looked dead. A v1 agent has
    no GETBULK and no Counter64; the end of the MIB is noSuchName."""
    agent = TableAgent(6, version=0, indexes=[1, 2, 3, 10, 11, 100])
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            v1 = await p.poll(t("ups-v1", agent.host, agent.port, V1))
            v2 = await p.poll(t("ups-as-v2c", agent.host, agent.port, V2C))
            return v1, v2
    v1, v2 = run(go())
    assert v1.ok and v1.version == "v1", v1
    assert v2.error == "timeout"  # the agent does not speak v2c: what the device looked like before
    assert [i.index for i in v1.interfaces] == [1, 2, 3, 10, 11, 100]  # non-contiguous, all there
    assert ber.GET_BULK_REQUEST not in agent.pdu_types
    i10 = v1.interfaces[3]
    assert (i10.counter_bits, i10.in_octets, i10.out_octets, i10.speed_mbps) == (32, 10_000, 20_000, 1000)
    assert v1.sys_name == "big-table-agent"


def test_snmpv1_against_real_snmpd(snmpd):  # noqa: F811 - the fixture
    host, port = snmpd

    async def go():
        async with Poller(timeout=1.0, retries=1) as p:
            return await p.poll(Target("snmpd-v1", host, V1, port))
    poll = run(go())
    assert poll.ok and poll.version == "v1", poll
    assert poll.sys_name == "ctfleet-test-agent" and poll.interfaces
    assert all(i.counter_bits == 32 for i in poll.interfaces)  # v1 cannot carry Counter64


def test_snmpv1_fails_the_snmpv3_control_like_v2c(project):
    from datetime import datetime, timezone

    from ctfleet.monitors.sweep import DevicePoll, Sweep, sweep_results

    reg = project.registry
    router = next(d for d in reg.devices.values() if d.role.value == "router")
    now = datetime.now(timezone.utc)
    for version, status in (("v1", "fail"), ("v2c", "fail"), ("v3-authpriv", "pass")):
        sweep = Sweep(started=now, ended=now, polls={router.hostname: DevicePoll(router.hostname, ok=True, version=version)})
        [r] = [r for r in sweep_results(sweep, reg, project.norms) if r.control == "RTR-2"]
        assert r.status.value == status, (version, r)


# ------------------------------------------------------- 32-bit counters, wraps


def _mixed_width_row(i: int, rows: int) -> dict:
    """As a Cisco IOS router with 64-bit counters on one interface only (issue 15)."""
    r = default_row(i, rows)
    if i != 2:
        del r[IF_HC_IN_OCTETS], r[IF_HC_OUT_OCTETS], r[IF_HIGH_SPEED]
    return r


def test_interfaces_without_64_bit_counters_use_32_bit_ones(responders):
    """Issue: on devices without ifHCInOctets in-octets were exported as 0 for ever."""
    agent = TableAgent(4, row=_mixed_width_row)
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("r-mixed", agent.host, agent.port))
    poll = run(go())
    assert poll.ok, poll
    got = {i.index: (i.counter_bits, i.in_octets, i.out_octets, i.speed_mbps) for i in poll.interfaces}
    assert got == {1: (32, 1000, 2000, 1000), 2: (64, 2000, 4000, 1000), 3: (32, 3000, 6000, 1000),
                   4: (32, 4000, 8000, 1000)}
    assert poll.uplink.counter_bits == 32 and poll.uplink.in_octets == 4000


def test_32_bit_wrap_rule_adds_2_32_and_a_reboot_resets():
    from ctfleet.monitors.device_poll import CounterWraps

    w = CounterWraps()
    seen = [w.extend(("r",), uptime, {1: (raw_in, raw_out)})[1]
            for raw_in, raw_out, uptime in ((4_294_960_000, 10, 1000), (5_000, 20, 7000), (9_000, 5, 13000),
                                             (7_000, 30, 19000), (100, 1, 50))]
    assert seen == [(4_294_960_000, 10), (WRAP32 + 5_000, 20), (WRAP32 + 9_000, WRAP32 + 5),
                    (2 * WRAP32 + 7_000, WRAP32 + 30), (100, 1)]  # wraps add up; sysUpTime going back resets


def test_32_bit_wrap_across_two_polls_of_one_agent(responders):
    def row(i, rows):
        r = _mixed_width_row(i, rows)
        r[ber.oid_from_str("1.3.6.1.2.1.2.2.1.10")] = (ber.COUNTER32, 4_294_967_000)
        return r
    agent = TableAgent(1, row=row)
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            a = await p.poll(t("r-wrap", agent.host, agent.port))
            agent.entries = [e if e[0][:10] != (1, 3, 6, 1, 2, 1, 2, 2, 1, 10) else (e[0], e[1], 1_000)
                             for e in agent.entries]
            b = await p.poll(t("r-wrap", agent.host, agent.port))
            return a, b
    a, b = run(go())
    assert a.interfaces[0].in_octets == 4_294_967_000
    assert b.interfaces[0].in_octets == WRAP32 + 1_000  # 1,296 octets later, not a reset to 1,000


# ------------------------------------------------------------------ the uplink


def _named(i, name, alias="", up=True):
    return Interface(i, name, True, up, 100, 0, 0, alias)


def test_uplink_heuristic_is_anchored():
    """Issue: 'wan' anywhere in the description took wuxianwangluo and sanxiao_lianwang
    (a down port) for the uplink."""
    ifs = (_named(1, "GigabitEthernet0/0/1", "wuxianwangluo"), _named(2, "GigabitEthernet0/0/2", "sanxiao_lianwang", up=False),
           _named(3, "Vlanif1", "lan"))
    assert choose_uplink(ifs) == (None, "no interface declared in the registry or named like an uplink")
    ifs2 = ifs + (_named(4, "GigabitEthernet0/0/9", "WAN to MARWAN"), _named(5, "Dialer0"))
    idx, why = choose_uplink(ifs2)
    assert idx == 4 and "ifAlias" in why
    assert choose_uplink(ifs + (_named(5, "Dialer0"),))[0] == 5
    assert choose_uplink((_named(6, "wlan0"), _named(7, "bridge-wan-test")))[0] is None


def test_uplink_declared_in_the_registry_wins():
    ifs = (_named(1, "GigabitEthernet0/0/0", "UPLINK fibre"), _named(2, "GigabitEthernet0/0/1", "to the town hall"),
           _named(3, "Cellular0/1/0"))
    assert choose_uplink(ifs, "index:2") == (2, "registry: index:2")
    assert choose_uplink(ifs, "name:gigabitethernet0/0/1") == (2, "registry: name:gigabitethernet0/0/1")
    assert choose_uplink(ifs, "description:town hall$") == (2, "registry: description:town hall$")
    idx, why = choose_uplink(ifs, "index:99")
    assert idx == 1 and why.startswith("registry's index:99 matches no interface; heuristic")


def test_declared_uplink_reaches_the_poll(responders):
    agent = TableAgent(5)  # its heuristic uplink would be 5 (alias UPLINK)
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(Target("r-declared", agent.host, V2C, agent.port, uplink="name:Gi0/3"))
    poll = run(go())
    assert poll.uplink_index == 3 and poll.uplink_reason == "registry: name:Gi0/3"


# ------------------------------------------------------------------ label text


def test_sysdescr_control_characters_and_invalid_utf8_are_cleaned(responders):
    """Issue: CR and LF from a sysDescr went unescaped into a label value; a non-UTF-8
    sysDescr became replacement characters."""
    agent = TableAgent(2, scalars={SYS_NAME: (ber.OCTET_STRING, b"sw\x00-1\r\n"),
                                   SYS_DESCR: (ber.OCTET_STRING, b"H3C Comware\r\nVersion 7.1\x07 r\xe9seau \xb5"),
                                   SYS_UPTIME: (ber.TIME_TICKS, 1)})
    responders.append(agent)

    async def go():
        async with Poller(timeout=0.5, retries=0) as p:
            return await p.poll(t("sw-text", agent.host, agent.port))
    poll = run(go())
    assert poll.ok, poll
    assert poll.sys_name == "sw -1"
    assert poll.sys_descr == "H3C Comware Version 7.1 réseau µ"
    assert "\ufffd" not in poll.sys_descr
    assert clean_text("ok") == "ok" and clean_text(None) == ""
