"""Reachability and latency, smokeping style: several packets per round to each site's router.

ICMP goes through icmplib (maintained, asyncio). It runs **unprivileged** where the kernel
allows ICMP datagram sockets for the collector's group —
``sysctl -w net.ipv4.ping_group_range="0 2147483647"`` (or the collector's gid range) on
the node, or the pod-level sysctl ``net.ipv4.ping_group_range`` in a Kubernetes
securityContext, which is a "safe" sysctl since Kubernetes 1.18 — so the regional cloud
runs the collector without privileged containers or CAP_NET_RAW. Where the range
excludes us and we are root, raw sockets are used instead; otherwise the probe reports
why, per round, and the sweep goes on.

Rounds are bounded: a global concurrency limit and a per-round deadline, so a satellite
site with 700 ms round trips or a dead router never makes a sweep overrun its interval.
"""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Iterable

from ctfleet.monitors.sweep import Probe

ProbeFn = Callable[[str], Awaitable[float | None]]  # one packet: RTT in seconds, None if lost


def icmp_mode() -> str:
    """'unprivileged' when ping_group_range admits our gid, 'privileged' as root, else 'unavailable'."""
    try:
        lo, hi = map(int, open("/proc/sys/net/ipv4/ping_group_range").read().split())
    except (OSError, ValueError):
        lo, hi = 1, 0
    if lo <= os.getgid() <= hi:
        return "unprivileged"
    return "privileged" if os.geteuid() == 0 else "unavailable"


async def icmp_round(addresses: Iterable[str], count: int = 5, interval: float = 0.2, timeout: float = 2.0,
                     concurrency: int = 200) -> dict[str, Probe]:
    """One ICMP round to every address (icmplib's async_multiping)."""
    from icmplib import async_multiping

    mode = icmp_mode()
    if mode == "unavailable":
        raise PermissionError("ICMP sockets are not allowed for this user: set net.ipv4.ping_group_range to include its gid")
    addrs = list(addresses)
    hosts = await async_multiping(addrs, count=count, interval=interval, timeout=timeout, concurrent_tasks=concurrency,
                                  privileged=(mode == "privileged"))
    out = {}
    for h in hosts:
        out[h.address] = Probe(h.address, sent=h.packets_sent, rtts=tuple(r / 1000 for r in h.rtts), method="icmp")
    return out


async def packet_round(targets: dict[str, str], one_packet: ProbeFn, count: int = 5, interval: float = 0.2,
                       concurrency: int = 200, deadline: float = 10.0, method: str = "snmp") -> dict[str, Probe]:
    """A round of ``count`` packets per target with any single-packet probe (e.g. an SNMP GET
    of sysUpTime through the link), for links where ICMP is filtered — and for the demo,
    whose emulated latency sits in front of the agents' UDP port.

    ``targets`` maps hostname -> address. Bounded by ``concurrency`` and ``deadline``.
    """
    sem = asyncio.Semaphore(concurrency)

    async def one_target(host: str, addr: str) -> Probe:
        rtts: list[float] = []
        async with sem:
            for i in range(count):
                rtt = await one_packet(addr)
                if rtt is not None:
                    rtts.append(rtt)
                if i + 1 < count:
                    await asyncio.sleep(interval)
        return Probe(host, sent=count, rtts=tuple(rtts), method=method)  # type: ignore[arg-type]

    tasks = {h: asyncio.ensure_future(one_target(h, a)) for h, a in targets.items()}
    done, pending = await asyncio.wait(tasks.values(), timeout=deadline)
    for t in pending:
        t.cancel()
    out = {}
    for h, t in tasks.items():
        if t in done and not t.cancelled() and t.exception() is None:
            out[h] = t.result()
        else:
            out[h] = Probe(h, sent=count, rtts=(), method=method)  # type: ignore[arg-type]
    return out


def udp_echo_probe(port: int, timeout: float = 2.0) -> ProbeFn:
    """One-packet probe over UDP echo (RFC 862 style) on ``port``: RTT or None.

    For the demo, whose emulated link latency and loss sit in front of the devices' UDP
    ports (loopback ICMP would answer in microseconds); also usable where a site's router
    runs a UDP echo / TWAMP-light responder and ICMP is filtered.
    """
    class _Echo(asyncio.DatagramProtocol):
        def __init__(self, nonce: bytes, fut: asyncio.Future):
            self.nonce, self.fut = nonce, fut

        def datagram_received(self, data, addr):
            if data == self.nonce and not self.fut.done():
                self.fut.set_result(True)

        def error_received(self, exc):
            if not self.fut.done():
                self.fut.set_result(False)

    async def one(addr: str) -> float | None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        nonce = os.urandom(16)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Echo(nonce, fut), remote_addr=(addr, port))
        try:
            t0 = loop.time()
            transport.sendto(nonce)
            ok = await asyncio.wait_for(fut, timeout)
            return loop.time() - t0 if ok else None
        except asyncio.TimeoutError:
            return None
        finally:
            transport.close()

    return one
