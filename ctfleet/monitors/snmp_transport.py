"""The poller's UDP transport: one socket per address family, requests matched to replies.

Request handling follows net-snmp's (``snmp_api.c``), which real agents and lossy links
are used to:

* **One request-id per request, kept across retransmissions**: a reply to the first
  attempt that arrives after the second was sent is still the answer (a satellite hop
  and a busy agent easily make a reply later than the timeout).
* **Datagrams that match no outstanding request are ignored and counted**
  (:attr:`UdpTransport.unmatched`): a junk packet, a duplicate, a reply to a request
  already answered, or one from an address the request did not go to. One bad datagram
  never fails a device; if nothing valid follows, the device ends as ``timeout`` and its
  detail says how many datagrams were ignored.
* A datagram that does carry an outstanding request-id but does not decode (truncated,
  bad BER) is kept as the request's error while the request goes on waiting; the
  device ends ``malformed`` only if no valid reply arrives in time.
* Retransmission every ``timeout`` while attempts remain and the device's deadline
  allows (:meth:`UdpTransport.exchange`; the fast path decides how many attempts a
  request gets, see :mod:`ctfleet.monitors.snmp_fastpath`).
* ``IP_RECVERR`` makes the kernel queue ICMP port-unreachable errors on the socket; they
  fail the request outstanding to that address with ``ConnectionRefusedError``
  (``refused``). The kernel rate-limits ICMP, so a dead address may equally end as
  ``timeout``.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import struct
from typing import Any, Callable

from ctfleet.monitors.ber import REQUEST_ID_MAX, REQUEST_ID_MIN, BERError

__all__ = ["PollFailure", "UdpTransport", "peek_request_id"]

_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class PollFailure(Exception):
    """A device-level failure with its DevicePoll error reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def peek_request_id(data: bytes) -> int | None:
    """The request-id (v1/v2c) or msgID (v3) of a reply, read without decoding the rest;
    None when the first octets are not those of an SNMP message."""
    try:
        n = len(data)
        if n < 12 or data[0] != 0x30:
            return None
        p = 2
        if data[1] & 0x80:
            p += data[1] & 0x7F
        if data[p] != 0x02 or data[p + 1] != 1:
            return None
        version = data[p + 2]
        p += 3
        if version in (0, 1):  # community OCTET STRING, then the PDU header
            if data[p] != 0x04:
                return None
            ln = data[p + 1]
            p += 2
            if ln & 0x80:
                k = ln & 0x7F
                ln = int.from_bytes(data[p:p + k], "big")
                p += k
            p += ln
            if not 0xA0 <= data[p] <= 0xA8:
                return None
            ln = data[p + 1]
            p += 2 + ((ln & 0x7F) if ln & 0x80 else 0)
        elif version == 3:  # msgGlobalData SEQUENCE, msgID first
            if data[p] != 0x30:
                return None
            ln = data[p + 1]
            p += 2 + ((ln & 0x7F) if ln & 0x80 else 0)
        else:
            return None
        if data[p] != 0x02:
            return None
        ln = data[p + 1]
        if not 1 <= ln <= 5 or p + 2 + ln > n:
            return None
        return int.from_bytes(data[p + 2:p + 2 + ln], "big", signed=True)
    except IndexError:
        return None


class _Request:
    """One outstanding request: where it went, the datagrams received for it."""

    __slots__ = ("host", "port", "fut", "inbox", "ignored")

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.fut: asyncio.Future | None = None
        self.inbox: list = []
        self.ignored = 0  # unmatched datagrams from its address while it waited


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, transport: "UdpTransport"):
        self.owner = transport
        self.sock: socket.socket | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        owner = self.owner
        rid = peek_request_id(data)
        req = owner._pending.get(rid) if rid is not None else None
        if req is None or req.host != addr[0] or req.port != addr[1]:
            owner.unmatched += 1  # junk, a duplicate, or not from where the request went
            other = owner._by_address.get((addr[0], addr[1]))
            if other is not None:
                other.ignored += 1
            return
        fut = req.fut
        if fut is not None and not fut.done():
            fut.set_result(data)
        else:
            req.inbox.append(data)

    def error_received(self, exc: Exception) -> None:
        # With IP_RECVERR the kernel queues ICMP errors; read them all (else the socket
        # stays readable) and fail the request outstanding to each offending address.
        sock = self.sock
        if sock is None:
            return
        owner = self.owner
        for _ in range(4096):
            try:
                _data, anc, _flags, addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not addr:
                continue
            req = owner._by_address.get((addr[0], addr[1]))
            if req is None or req.fut is None or req.fut.done():
                continue
            code = errno.ECONNREFUSED
            for _level, _type, cdata in anc:  # struct sock_extended_err: ee_errno first
                if len(cdata) >= 4:
                    code = struct.unpack_from("=I", cdata)[0]
                    break
            if code == errno.ECONNREFUSED:
                err: OSError = ConnectionRefusedError(f"ICMP port unreachable from {addr[0]}:{addr[1]}")
            else:
                err = OSError(code, f"{os.strerror(code)} (ICMP error for {addr[0]}:{addr[1]})")
            req.fut.set_exception(err)


class UdpTransport:
    """The sockets and the table of outstanding requests. ``unmatched`` counts datagrams
    that matched none (exported as ``ctfleet_snmp_unmatched_datagrams_total``)."""

    def __init__(self, bind: str = "0.0.0.0", rcvbuf: int = 8 << 20):
        self.bind = bind
        self.rcvbuf = rcvbuf
        self.unmatched = 0
        self._pending: dict[int, _Request] = {}
        self._by_address: dict[tuple, _Request] = {}
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._ids = itertools.count(REQUEST_ID_MIN + int.from_bytes(os.urandom(3), "big"))
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._transport_for(self.bind)

    def close(self) -> None:
        for t in self._transports.values():
            t.close()
        self._transports.clear()
        for req in list(self._pending.values()):
            if req.fut is not None and not req.fut.done():
                req.fut.cancel()
        self._pending.clear()
        self._by_address.clear()

    async def _transport_for(self, host: str) -> asyncio.DatagramTransport:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        t = self._transports.get(family)
        if t is not None:
            return t
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        except OSError:
            pass  # no ICMP errors: dead agents end as timeouts
        for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self.rcvbuf)
                break
            except OSError:
                continue
        if family == socket.AF_INET:
            bind = self.bind if ":" not in self.bind else "0.0.0.0"
        else:
            bind = self.bind if ":" in self.bind else "::"
        sock.bind((bind, 0))
        sock.setblocking(False)
        proto = _Protocol(self)
        proto.sock = sock
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: proto, sock=sock)
        self._transports[family] = transport
        return transport

    def _send(self, transport: asyncio.DatagramTransport, data: bytes, key: tuple) -> None:
        # Straight to the socket: with IP_RECVERR a pending ICMP error (from another
        # request's dead address) surfaces on the next send and would make the
        # transport drop *this* datagram silently. Attribute the error, then resend.
        proto: _Protocol = transport.get_protocol()  # type: ignore[assignment]
        sock = proto.sock
        for _ in range(8):
            try:
                sock.sendto(data, key)  # type: ignore[union-attr]
                return
            except (BlockingIOError, InterruptedError):
                break  # socket buffer full: let the transport queue it
            except OSError as e:
                proto.error_received(e)
        transport.sendto(data, key)

    def next_id(self) -> int:
        rid = next(self._ids)
        if rid > REQUEST_ID_MAX:
            self._ids = itertools.count(REQUEST_ID_MIN)
            rid = next(self._ids)
        return rid

    async def exchange(self, host: str, port: int, encode: Callable[[int], bytes], decode: Callable[[bytes, int], Any],
                       deadline: float, timeout: float, attempts: int | None) -> Any:
        """Send one request and return ``decode(reply, request_id)``.

        One request-id for every attempt; an attempt is resent after ``timeout``
        seconds without a valid reply, while ``attempts`` (None: no limit) and the
        ``deadline`` (loop time) allow. A reply to any attempt is accepted until the
        last attempt's wait ends. ``decode`` raising :class:`BERError` means "not a
        valid reply": the request keeps waiting, and the error is raised only if no
        valid reply comes. Other exceptions from ``decode`` propagate at once."""
        loop = self._loop or asyncio.get_running_loop()
        transport = self._transports.get(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if transport is None:
            transport = await self._transport_for(host)
        key = (host, port)
        rid = self.next_id()
        data = encode(rid)
        req = _Request(host, port)
        self._pending[rid] = req
        self._by_address[key] = req
        bad: BERError | None = None
        sent = 0
        try:
            while attempts is None or sent < attempts:
                now = loop.time()
                if now >= deadline:
                    break
                self._send(transport, data, key)
                sent += 1
                attempt_end = now + timeout if now + timeout < deadline else deadline
                while True:
                    if req.inbox:
                        raw = req.inbox.pop(0)
                    else:
                        fut = req.fut = loop.create_future()
                        handle = loop.call_at(attempt_end, _expire, fut)
                        try:
                            raw = await fut
                        except TimeoutError:
                            break
                        finally:
                            handle.cancel()
                            req.fut = None
                    try:
                        return decode(raw, rid)
                    except BERError as e:
                        bad = e  # keep waiting: a valid reply may still come
        finally:
            del self._pending[rid]
            if self._by_address.get(key) is req:
                del self._by_address[key]
        if bad is not None:
            raise bad
        ignored = f"; {req.ignored} datagram(s) from it matched no request and were ignored" if req.ignored else ""
        if loop.time() >= deadline:
            raise PollFailure("timeout", f"no answer from {host}:{port} before the device deadline "
                                         f"({sent} attempt(s) of {timeout:g} s){ignored}")
        raise PollFailure("timeout", f"no answer from {host}:{port} after {sent} attempt(s) of {timeout:g} s{ignored}")
