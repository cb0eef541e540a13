"""The asyncio SNMP poller: one UDP socket, many devices, every wait bounded.

The parts, each in a module named for what it is:

* :mod:`~ctfleet.monitors.snmp_targets` — what is asked (OIDs, :class:`PollSpec`), of
  which devices (:class:`Target`, :func:`select_targets` by the one sharding rule of
  :mod:`ctfleet.core.sharding`), with which secrets (:class:`SnmpCreds`);
* :mod:`~ctfleet.monitors.snmp_transport` — the socket, request-ids kept across
  retransmissions, late replies accepted, unmatched datagrams ignored and counted, ICMP
  errors (net-snmp's request handling);
* :mod:`~ctfleet.monitors.snmp_fastpath` — one device's GET and walk over the narrow
  codec (:mod:`ber` for v1/v2c, :mod:`usm` for SNMPv3 authPriv): noSuchName, GETBULK
  refused -> GETNEXT, SNMPv1;
* :mod:`~ctfleet.monitors.snmp_fallback` — the same poll through pysnmp 7 on
  ``Unsupported``;
* :mod:`~ctfleet.monitors.device_poll` — walked columns -> :class:`DevicePoll`
  (32-bit counters and their wraps, the uplink from the registry or the heuristic,
  clean label text).

Why two implementations: measured here, pysnmp 7 costs about 1.8 ms of CPU per device
(v2c) and 2.8 ms (v3 authPriv), ten times Prometheus's snmp_exporter, while the narrow
codec is what lets one core poll a country (see :mod:`ber`'s docstring); pysnmp stays
the reference the codec is tested against, and the fallback.

This module holds :class:`Poller`: every device has a hard deadline; a global semaphore
bounds the devices in flight; :meth:`Poller.sweep` derives the deadlines from the sweep
interval, gives the devices that never answered (dead, or behind a lossy link) further
tries (``passes``) while the sweep's time allows, each queued again as soon as its own
try ends, cancels any straggler at the sweep deadline and
reports it as ``timeout``: a sweep always ends within its interval.

Error reasons (``DevicePoll.error``): ``timeout`` (no answer in time, or the deadline),
``auth`` (wrong digest, unknown user, decryption failure, wrong security level),
``malformed`` (a reply to the request that is not well-formed BER, truncated, OIDs not
increasing), ``unsupported`` (outside the fast path and pysnmp failed too, or an agent
error-status), ``refused`` (ICMP port unreachable).

Event loop: the collector and the bench run the poller on uvloop (:func:`run`,
:func:`new_event_loop`), libuv's loop for asyncio: its futures, timer handles and UDP
reads cost a fraction of the pure-Python selector loop's, which was a quarter of the
poll's CPU per device (bench/README.md). The poller itself is plain asyncio and works on
either loop; the tests run it on uvloop, as deployed. :func:`run` also raises the
garbage collector's thresholds (:data:`GC_THRESHOLD`) while the loop runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Sequence

import uvloop

from ctfleet.core.sharding import parse_shard, shard_of
from ctfleet.monitors.ber import GET_REQUEST, RESPONSE, BERError, Unsupported, decode_message
from ctfleet.monitors.device_poll import CounterWraps, build_poll
from ctfleet.monitors.snmp_fallback import poll_with_pysnmp
from ctfleet.monitors.snmp_fastpath import AUTH_REPORTS, FastPath
from ctfleet.monitors.snmp_targets import (
    BENCH_SPEC,
    FULL_SPEC,
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_COLUMNS,
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
    PollSpec,
    SnmpCreds,
    Target,
    select_targets,
    version_label,
)
from ctfleet.monitors.snmp_transport import PollFailure, UdpTransport
from ctfleet.monitors.sweep import DevicePoll

__all__ = [
    "SYS_NAME", "SYS_DESCR", "SYS_UPTIME", "IF_DESCR", "IF_SPEED", "IF_ADMIN_STATUS", "IF_OPER_STATUS",
    "IF_IN_OCTETS", "IF_OUT_OCTETS", "IF_NAME", "IF_HC_IN_OCTETS", "IF_HC_OUT_OCTETS", "IF_HIGH_SPEED",
    "IF_ALIAS", "IF_COLUMNS", "SnmpCreds", "Target", "PollSpec", "FULL_SPEC", "BENCH_SPEC", "Poller",
    "select_targets", "shard_of", "parse_shard", "AUTH_REPORTS", "SweepStats", "run", "new_event_loop", "GC_THRESHOLD",
]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop the collector polls on: uvloop's."""
    return uvloop.new_event_loop()


# The cyclic garbage collector's thresholds while the poller runs (default (700, 10, 10)).
# A sweep allocates a few dozen containers per device (varbind tuples, rows, results),
# nearly all freed by reference counting or kept as results; at the default the collector
# ran ~45 times per 1,000 devices, measured at 25-30% of the poll's CPU (bench/README.md).
GC_THRESHOLD = (20_000, 20, 20)


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` on :func:`new_event_loop` (Python 3.11's ``asyncio.run``
    takes no loop factory; ``asyncio.Runner`` does the same shutdown of async generators
    and the default executor), with the garbage collector's thresholds at
    :data:`GC_THRESHOLD` meanwhile (restored after)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*before)

_PROBE_OIDS = (SYS_UPTIME,)


@dataclass
class SweepStats:
    started: float = 0.0
    ended: float = 0.0
    cancelled: int = 0
    fallbacks: int = 0
    passes: int = 0  # passes over the devices that had not answered (1 = no second pass)


class Poller:
    """Polls devices over one socket. Use as ``async with Poller(...) as p:``.

    ``timeout``: seconds per request attempt; ``retries``: retransmissions after the
    first attempt of a device's first request (once a device has answered, requests are
    resent every ``timeout`` until its deadline); ``concurrency``: devices in flight at
    once; ``device_timeout``: hard per-device budget (default: the sweep's deadline
    only); ``max_rows``: interface rows read before a walk stops; ``fallback``: poll
    through pysnmp on ``Unsupported``; ``passes``: how many times a sweep polls a device
    that timed out without answering, while its deadline allows.
    """

    def __init__(self, *, timeout: float = 1.0, retries: int = 1, concurrency: int = 256,
                 device_timeout: float | None = None, max_rows: int = 10_000,
                 spec: PollSpec = FULL_SPEC, fallback: bool = True,
                 bind: str = "0.0.0.0", rcvbuf: int = 8 << 20, passes: int = 3):
        if timeout <= 0 or retries < 0 or concurrency < 1 or max_rows < 1 or passes < 1:
            raise ValueError("timeout > 0, retries >= 0, concurrency >= 1, max_rows >= 1, passes >= 1")
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self.device_timeout = device_timeout
        self.max_rows = max_rows
        self.spec = spec
        self.fallback = fallback
        self.passes = passes
        self.transport = UdpTransport(bind, rcvbuf)
        self.fast = FastPath(self.transport, timeout, retries, max_rows)
        self.wraps = CounterWraps()
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_sweep = SweepStats()

    @property
    def unmatched_datagrams(self) -> int:
        """Datagrams received that matched no outstanding request (ignored), since start."""
        return self.transport.unmatched

    # -- lifecycle

    async def start(self) -> "Poller":
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self.concurrency)
        await self.transport.start()
        return self

    async def close(self) -> None:
        self.transport.close()

    async def __aenter__(self) -> "Poller":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- one device

    async def poll(self, target: Target, deadline: float | None = None, spec: PollSpec | None = None) -> DevicePoll:
        """Poll one device; never raises (except cancellation): failures are in the
        returned :class:`DevicePoll`."""
        loop = self._loop or asyncio.get_running_loop()
        t0 = loop.time()
        if deadline is None:
            deadline = t0 + (self.device_timeout or self.timeout * (self.retries + 1) * 8)
        elif self.device_timeout:
            deadline = min(deadline, t0 + self.device_timeout)
        spec = spec or self.spec
        version = version_label(target.creds.version)

        def fail(reason: str, detail: str) -> DevicePoll:
            return DevicePoll(target.hostname, ok=False, version=version, error=reason,  # type: ignore[arg-type]
                              detail=detail, elapsed_seconds=loop.time() - t0)
        try:
            try:
                scalars, table, note = await self.fast.poll(target, spec, deadline)
            except Unsupported as e:
                if not self.fallback:
                    return fail("unsupported", f"outside the fast path: {e}")
                self.last_sweep.fallbacks += 1
                try:
                    scalars, table, note = await poll_with_pysnmp(target, spec, deadline, self.timeout, self.retries,
                                                                  self.max_rows)
                except PollFailure as f:
                    return fail(f.reason, f"{f.detail} (pysnmp fallback after: {e})")
                note = f"polled through pysnmp: fast path said {e}" + (f"; {note}" if note else "")
        except PollFailure as f:
            return fail(f.reason, f.detail)
        except BERError as e:
            return fail("malformed", str(e))
        except ConnectionRefusedError as e:
            return fail("refused", f"{e}: nothing listens on {target.host}:{target.port}")
        except Unsupported as e:
            return fail("unsupported", str(e))
        except OSError as e:
            return fail("refused" if isinstance(e, ConnectionError) else "timeout", f"socket error: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug or odd agent must not stop the sweep
            return fail("unsupported", f"unexpected {type(e).__name__}: {e}")
        return build_poll(target.hostname, version, scalars, table, note, loop.time() - t0, target.uplink,
                          self.wraps, (target.hostname, target.host, target.port))

    # -- many devices

    async def sweep(self, targets: Sequence[Target], interval: float = 60.0, budget: float = 0.85,
                    deadline: float | None = None) -> dict[str, DevicePoll]:
        """Poll every target once; returns hostname -> DevicePoll for all of them.

        Ends by ``deadline`` (loop time), default ``budget`` x ``interval`` from now,
        whatever the agents do: each device's own deadline is the sweep's (or
        ``device_timeout`` from its start when shorter), and anything still running
        then is cancelled and reported as ``timeout``. A device that timed out without
        a single answer is queued again (up to ``passes`` tries in all) as soon as its
        try ends, while the time left allows another first contact: a lossy link gets
        further chances, after the devices queued before it, without waiting for the
        slowest device of the sweep."""
        loop = self._loop or asyncio.get_running_loop()
        t0 = loop.time()
        if deadline is None:
            deadline = t0 + interval * budget
        stats = self.last_sweep = SweepStats(started=time.time())
        sem = self._sem or asyncio.Semaphore(self.concurrency)
        first_contact = self.timeout * (self.retries + 1)

        out: dict[str, DevicePoll] = {}
        attempt: dict[str, int] = {}
        queue: deque[Target] = deque(targets)

        def again(t: Target, p: DevicePoll) -> bool:
            """Poll ``t`` once more, after every device queued now: it timed out without a
            single answer, it has had fewer than ``passes`` tries, and a first contact fits."""
            # "no answer ... after N attempt(s)": the first contact's tries ran out; a device that
            # answered once is resent to until the deadline ("before the device deadline")
            return (not p.ok and p.error == "timeout" and "deadline" not in p.detail and "cancelled" not in p.detail
                    and attempt[t.hostname] < self.passes and deadline - loop.time() >= first_contact)

        async def worker() -> None:
            # A pool of ``concurrency`` workers takes the devices in order (one Task per
            # worker, not per device: a Task, and a waiter on the semaphore, per device
            # cost more CPU than many a poll; asyncio.Semaphore's acquire also scans its
            # waiters). The semaphore still bounds the devices in flight across sweeps.
            # A device whose first contact failed goes back to the end of the queue as soon
            # as its own try ends (not after a whole pass: one slow device no longer holds
            # the others' second chance back; on a lossy satellite link this is the
            # difference between two and three tries in the sweep's time).
            while queue:
                t = queue.popleft()
                n = attempt[t.hostname] = attempt.get(t.hostname, 0) + 1
                stats.passes = max(stats.passes, n)
                async with sem:
                    if loop.time() >= deadline:
                        out[t.hostname] = DevicePoll(
                            t.hostname, ok=False, error="timeout", version=version_label(t.creds.version),  # type: ignore[arg-type]
                            detail="not polled: the sweep deadline came first (concurrency bound)")
                        continue
                    try:
                        p = await self.poll(t, deadline)
                    except Exception:  # noqa: BLE001 - poll() raises none; if it did, that device is lost, not the rest
                        continue
                if n > 1:
                    p = _with_detail(p, f"answered on pass {n} of the sweep" if p.ok else f"{n} passes")
                out[t.hostname] = p
                if again(t, p):
                    queue.append(t)

        if targets:
            workers = [loop.create_task(worker()) for _ in range(min(self.concurrency, len(targets)))]
            _done, pending = await asyncio.wait(workers, timeout=max(0.0, deadline - loop.time()) + 0.05)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for t in targets:
            if t.hostname not in out:
                stats.cancelled += 1
                out[t.hostname] = DevicePoll(
                    t.hostname, ok=False, error="timeout", version=version_label(t.creds.version),  # type: ignore[arg-type]
                    detail="cancelled at the sweep deadline", elapsed_seconds=loop.time() - t0)
        stats.ended = time.time()
        return out

    # -- one-packet probe for probe.packet_round

    async def probe(self, target: Target, timeout: float | None = None) -> float | None:
        """One GET of sysUpTime, no retry: the round-trip time in seconds, or None when
        lost or refused. SNMPv3 engine discovery (once, cached) is not timed."""
        from ctfleet.monitors.snmp_fastpath import _Conversation

        loop = self._loop or asyncio.get_running_loop()
        to = timeout or self.timeout
        c = target.creds
        try:
            if c.version == "v3":
                s = await self.fast.session(_Conversation(target, loop.time() + to))
                tpl = self.fast.template(None, GET_REQUEST, _PROBE_OIDS, 0)

                def enc(rid):
                    return s.encode_request(rid, tpl.encode(rid))

                def dec(raw, rid):
                    return s.decode_response(raw)
            else:
                enc = self.fast.template(c.community.encode("utf-8"), GET_REQUEST, _PROBE_OIDS, 0,
                                         0 if c.version == "v1" else 1).encode

                def dec(raw, rid):
                    msg = decode_message(raw)
                    if msg.pdu.pdu_type != RESPONSE or msg.pdu.request_id != rid:
                        raise BERError("not the response to the probe")
                    return msg
            t0 = time.perf_counter()
            await self.transport.exchange(target.host, target.port, enc, dec, loop.time() + to, to, 1)
            return time.perf_counter() - t0
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a lost or bad packet is a lost packet
            return None

    def probe_fn(self, targets: Iterable[Target], timeout: float | None = None) -> Callable[[str], Awaitable[float | None]]:
        """A ``one_packet`` function for :func:`ctfleet.monitors.probe.packet_round`,
        keyed by hostname: ``packet_round({h: h for h in ...}, poller.probe_fn(targets))``."""
        by_host = {t.hostname: t for t in targets}

        async def one(hostname: str) -> float | None:
            t = by_host.get(hostname)
            return None if t is None else await self.probe(t, timeout)
        return one


def _with_detail(p: DevicePoll, extra: str) -> DevicePoll:
    from dataclasses import replace

    return replace(p, detail=f"{p.detail}; {extra}" if p.detail else extra)
