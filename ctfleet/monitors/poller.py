"""The asyncio SNMP poller: one UDP socket, many devices, every wait bounded.

Why two implementations
-----------------------
The hot path is the project's own narrow codec (:mod:`ctfleet.monitors.ber` for v2c,
:mod:`ctfleet.monitors.usm` for SNMPv3 USM with HMAC-SHA-96/AES-128-CFB): measured here,
pysnmp 7 costs about 1.8 ms of CPU per device (v2c) and 2.8 ms (v3 authPriv), ten times
Prometheus's snmp_exporter, while the narrow codec is what lets one core poll a country
(see those modules' docstrings). It is deliberately narrow, so it raises
:class:`~ctfleet.monitors.ber.Unsupported` for anything outside the PDUs and types it
knows (Opaque values, other security models, an odd discovery answer ...). pysnmp 7 stays
the reference implementation the codec is tested against, and is the **fallback**: on
``Unsupported`` the device is polled again, in full, through pysnmp's asyncio hlapi
(``get_cmd`` + ``bulk_walk_cmd``), under the same deadline. pysnmp is never awaited
without one (pysnmp issue #218: its ``bulk_cmd`` can hang forever when datagrams drop).

How it works
------------
* **One UDP socket** per address family (an ``asyncio.DatagramProtocol``); requests are
  demultiplexed by request-id (v2c) or msgID (v3, the same number), read from the first
  octets of a reply without decoding it; a reply is accepted only from the address the
  request went to. A datagram whose id cannot be read is handed to the request
  outstanding for its source address, whose decoder then reports it as malformed.
* ``IP_RECVERR`` makes the kernel queue ICMP port-unreachable errors on the socket;
  they are read from the error queue and fail the request sent to that address with
  ``ConnectionRefusedError`` (error ``refused``). The kernel rate-limits ICMP, so a dead
  address may equally end as ``timeout``.
* Every request has a timeout and ``retries`` retransmissions (a new id each time);
  every device has a hard deadline; a global semaphore bounds the devices in flight.
  :meth:`Poller.sweep` derives the deadlines from the sweep interval, cancels any
  straggler at the sweep deadline and reports it as ``timeout``: a sweep always ends
  within its interval.
* Per device: one GET (sysName, sysDescr, sysUpTime), then GETBULK walks of the
  interface columns, all columns in each request, until every column leaves its subtree,
  bounded by ``max_rows`` (beyond it the walk stops: the poll is ``ok`` with the rows
  read and a ``detail`` saying so). OIDs must increase, or the reply is malformed. The
  first GETBULK asks for the row count the device had last sweep plus one, so a walk is
  usually a single request that decodes nothing past the table.
* SNMPv3: engine discovery once per agent, cached across sweeps (and localized keys,
  in :mod:`usm`); a ``usmStatsNotInTimeWindows`` report resynchronises the clock and the
  request is retried once; ``usmStatsUnknownEngineIDs`` (the agent was replaced)
  rediscovers once.

Error reasons (``DevicePoll.error``): ``timeout`` (no answer in time, or the deadline),
``auth`` (wrong digest, unknown user, decryption failure, wrong security level),
``malformed`` (the reply is not well-formed BER, truncated, OIDs not increasing),
``unsupported`` (outside the fast path and pysnmp failed too, or an agent error-status),
``refused`` (ICMP port unreachable).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Literal, Sequence

from ctfleet.monitors import ber, usm
from ctfleet.monitors.ber import (
    END_OF_MIB_VIEW,
    GET_BULK_REQUEST,
    GET_REQUEST,
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    RESPONSE,
    BERError,
    RequestTemplate,
    Unsupported,
    decode_message,
    encode_pdu,
    oid_from_str,
)
from ctfleet.monitors.sweep import DevicePoll, Interface, find_uplink

__all__ = [
    "SYS_NAME", "SYS_DESCR", "SYS_UPTIME", "IF_DESCR", "IF_ADMIN_STATUS", "IF_OPER_STATUS",
    "IF_NAME", "IF_HC_IN_OCTETS", "IF_HC_OUT_OCTETS", "IF_HIGH_SPEED", "IF_ALIAS",
    "IF_COLUMNS", "SnmpCreds", "Target", "PollSpec", "FULL_SPEC", "BENCH_SPEC", "Poller",
    "select_targets", "shard_of", "parse_shard",
]

SYS_DESCR = oid_from_str("1.3.6.1.2.1.1.1.0")
SYS_UPTIME = oid_from_str("1.3.6.1.2.1.1.3.0")
SYS_NAME = oid_from_str("1.3.6.1.2.1.1.5.0")
IF_DESCR = oid_from_str("1.3.6.1.2.1.2.2.1.2")
IF_ADMIN_STATUS = oid_from_str("1.3.6.1.2.1.2.2.1.7")
IF_OPER_STATUS = oid_from_str("1.3.6.1.2.1.2.2.1.8")
IF_NAME = oid_from_str("1.3.6.1.2.1.31.1.1.1.1")
IF_HC_IN_OCTETS = oid_from_str("1.3.6.1.2.1.31.1.1.1.6")
IF_HC_OUT_OCTETS = oid_from_str("1.3.6.1.2.1.31.1.1.1.10")
IF_HIGH_SPEED = oid_from_str("1.3.6.1.2.1.31.1.1.1.15")
IF_ALIAS = oid_from_str("1.3.6.1.2.1.31.1.1.1.18")
_PROBE_OIDS = (SYS_UPTIME,)
_MAX_BULK_VARBINDS = 400  # per GETBULK response when sizing it from the last sweep
IF_COLUMNS = (IF_DESCR, IF_ADMIN_STATUS, IF_OPER_STATUS, IF_NAME, IF_HC_IN_OCTETS,
              IF_HC_OUT_OCTETS, IF_HIGH_SPEED, IF_ALIAS)

# Reports that mean "your credentials are wrong" (RFC 3414 3.2).
AUTH_REPORTS = frozenset(("usmStatsWrongDigests", "usmStatsUnknownUserNames",
                          "usmStatsUnsupportedSecLevels", "usmStatsDecryptionErrors"))
_ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr",
                 "noAccess", "wrongType", "wrongLength", "wrongEncoding", "wrongValue",
                 "noCreation", "inconsistentValue", "resourceUnavailable", "commitFailed",
                 "undoFailed", "authorizationError", "notWritable", "inconsistentName")
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


# --------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SnmpCreds:
    """The secrets to talk to one device. ``auth_key``/``priv_key`` are the USM
    passwords (HMAC-SHA-96 / AES-128), as in the simulated fleet's secret files."""

    version: Literal["v2c", "v3"]
    community: str = ""
    user: str = ""
    auth_key: str = ""
    priv_key: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"SnmpCreds(version={self.version!r}, user={self.user!r}, community=***, auth_key=***, priv_key=***)"

    __str__ = __repr__

    @classmethod
    def from_secret(cls, version: str, text: str) -> "SnmpCreds":
        """From the value behind a credentials reference: a JSON object with ``user``,
        ``auth_key``, ``priv_key`` and/or ``community`` (the simulated fleet's format),
        or, for v2c only, the bare community string."""
        if version not in ("v2c", "v3"):
            raise ValueError(f"SNMP version {version!r} is not polled (v2c or v3)")
        text = text.strip()
        data: Any = None
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                raise ValueError("SNMP credentials look like JSON but do not parse (value not shown)") from None
        if isinstance(data, dict):
            creds = cls(version, community=str(data.get("community") or ""), user=str(data.get("user") or ""),
                        auth_key=str(data.get("auth_key") or data.get("auth_password") or ""),
                        priv_key=str(data.get("priv_key") or data.get("priv_password") or ""))
        elif version == "v2c":
            creds = cls("v2c", community=text)
        else:
            raise ValueError("SNMPv3 credentials must be a JSON object with user, auth_key and priv_key")
        if version == "v2c" and not creds.community:
            raise ValueError("SNMPv2c credentials carry no community")
        if version == "v3" and not (creds.user and len(creds.auth_key) >= 8 and len(creds.priv_key) >= 8):
            raise ValueError("SNMPv3 credentials need user, auth_key and priv_key (passwords of 8+ characters)")
        return creds


@dataclass(frozen=True)
class Target:
    hostname: str
    host: str  # IP address (no name resolution on the hot path)
    creds: SnmpCreds
    port: int = 161


@dataclass(frozen=True)
class PollSpec:
    """What to ask each device: scalars in one GET, then columns walked together."""

    get: tuple = (SYS_NAME, SYS_DESCR, SYS_UPTIME)
    columns: tuple = IF_COLUMNS
    max_repetitions: int = 10


FULL_SPEC = PollSpec()
# The benchmark's load, as in the measurements: GET sysUpTime+sysDescr, GETBULK
# ifOperStatus+ifHCInOctets.
BENCH_SPEC = PollSpec(get=(SYS_UPTIME, SYS_DESCR), columns=(IF_OPER_STATUS, IF_HC_IN_OCTETS),
                      max_repetitions=10)


# --------------------------------------------------------------------- sharding


def parse_shard(shard: str) -> tuple:
    """``"all"`` -> ("all",); ``"region:NN"`` -> ("region", "NN"); ``"hash:i/n"`` ->
    ("hash", i, n). Raises ValueError naming the valid forms."""
    valid = 'valid: "all", "region:NN" (HCP region code) or "hash:i/n" (0 <= i < n)'
    s = shard.strip()
    if s == "all":
        return ("all",)
    kind, _, rest = s.partition(":")
    if kind == "region" and len(rest) == 2 and rest.isdigit():
        return ("region", rest)
    if kind == "hash":
        i, _, n = rest.partition("/")
        if i.isdigit() and n.isdigit() and 0 <= int(i) < int(n):
            return ("hash", int(i), int(n))
    raise ValueError(f"bad shard {shard!r}; {valid}")


def shard_of(site_code: str, n: int) -> int:
    """The hash shard (of ``n``) a site belongs to: CRC-32 of its code, stable across
    processes and Python versions (unlike ``hash()``)."""
    return zlib.crc32(site_code.encode("utf-8")) % n


def select_targets(registry, shard: str = "all") -> list:
    """Devices this collector polls: routers, and servers that expose SNMP, with a
    management address, limited to the shard. Sorted by hostname."""
    spec = parse_shard(shard)
    out = []
    for d in registry.devices.values():
        role = getattr(d.role, "value", d.role)
        if role not in ("router", "server") or d.snmp_version == "none" or d.mgmt_address is None:
            continue
        if spec[0] == "region":
            site = registry.sites.get(d.site_code)
            ct = registry.cts.get(site.ct_code) if site else None
            if ct is None or ct.region_code != spec[1]:
                continue
        elif spec[0] == "hash" and shard_of(d.site_code, spec[2]) != spec[1]:
            continue
        out.append(d)
    out.sort(key=lambda d: d.hostname)
    return out


# --------------------------------------------------------------------- internals


class _Fail(Exception):
    """A device-level failure with its DevicePoll error reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _peek_id(data: bytes) -> int | None:
    """The request-id (v2c) or msgID (v3) of a reply, read without decoding the rest;
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
        if version == 1:  # community OCTET STRING, then the PDU header
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


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, poller: "Poller"):
        self.poller = poller
        self.sock: socket.socket | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        p = self.poller
        rid = _peek_id(data)
        entry = p._pending.get(rid) if rid is not None else None
        if entry is None:
            if rid is not None:
                return  # late reply to an abandoned attempt, or not ours
            rid = p._outstanding.get((addr[0], addr[1]))
            entry = p._pending.get(rid) if rid is not None else None
            if entry is None:
                return
        fut, host, port = entry
        if host != addr[0] or port != addr[1]:
            return  # a reply must come from where the request went
        if not fut.done():
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # With IP_RECVERR the kernel queues ICMP errors; read them all (else the socket
        # stays readable) and fail the request outstanding to each offending address.
        sock = self.sock
        if sock is None:
            return
        p = self.poller
        for _ in range(4096):
            try:
                _data, anc, _flags, addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not addr:
                continue
            rid = p._outstanding.get((addr[0], addr[1]))
            entry = p._pending.get(rid) if rid is not None else None
            if entry is None or entry[0].done():
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
            entry[0].set_exception(err)


# --------------------------------------------------------------------- poller


@dataclass
class SweepStats:
    started: float = 0.0
    ended: float = 0.0
    cancelled: int = 0
    fallbacks: int = 0


class Poller:
    """Polls devices over one socket. Use as ``async with Poller(...) as p:``.

    ``timeout``: seconds per request attempt; ``retries``: retransmissions after the
    first attempt; ``concurrency``: devices in flight at once; ``device_timeout``: hard
    per-device budget (default: the sweep's deadline only); ``max_rows``: interface
    rows read before a walk stops; ``fallback``: poll through pysnmp on
    ``Unsupported``.
    """

    def __init__(self, *, timeout: float = 1.0, retries: int = 1, concurrency: int = 256,
                 device_timeout: float | None = None, max_rows: int = 10_000,
                 spec: PollSpec = FULL_SPEC, fallback: bool = True,
                 bind: str = "0.0.0.0", rcvbuf: int = 8 << 20):
        if timeout <= 0 or retries < 0 or concurrency < 1 or max_rows < 1:
            raise ValueError("timeout > 0, retries >= 0, concurrency >= 1, max_rows >= 1")
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self.device_timeout = device_timeout
        self.max_rows = max_rows
        self.spec = spec
        self.fallback = fallback
        self.bind = bind
        self.rcvbuf = rcvbuf
        self._pending: dict[int, tuple] = {}
        self._outstanding: dict[tuple, int] = {}
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._ids = itertools.count(REQUEST_ID_MIN + int.from_bytes(os.urandom(3), "big"))
        self._engines: dict[tuple, usm.EngineState] = {}
        self._sessions: dict[tuple, usm.UsmSession] = {}
        self._templates: dict[tuple, tuple] = {}
        self._rows_hint: dict[tuple, int] = {}
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_sweep = SweepStats()

    # -- lifecycle

    async def start(self) -> "Poller":
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self.concurrency)
        await self._transport_for(self.bind)
        return self

    async def close(self) -> None:
        for t in self._transports.values():
            t.close()
        self._transports.clear()
        for fut, _h, _p in list(self._pending.values()):
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        self._outstanding.clear()

    async def __aenter__(self) -> "Poller":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

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

    def _next_id(self) -> int:
        rid = next(self._ids)
        if rid > REQUEST_ID_MAX:
            self._ids = itertools.count(REQUEST_ID_MIN)
            rid = next(self._ids)
        return rid

    # -- one request/response exchange, with timeout, retries and the device deadline

    async def _exchange(self, host: str, port: int, encode: Callable[[int], bytes],
                        deadline: float, retries: int | None = None) -> tuple:
        loop = self._loop
        transport = self._transports.get(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if transport is None:
            transport = await self._transport_for(host)
        key = (host, port)
        pending = self._pending
        attempts = (self.retries if retries is None else retries) + 1
        for _attempt in range(attempts):
            now = loop.time()
            remaining = deadline - now
            if remaining <= 0:
                break
            rid = self._next_id()
            data = encode(rid)
            fut = loop.create_future()
            pending[rid] = (fut, host, port)
            self._outstanding[key] = rid
            handle = loop.call_at(now + (self.timeout if self.timeout < remaining else remaining), _expire, fut)
            try:
                self._send(transport, data, key)
                return rid, await fut
            except TimeoutError:
                continue
            finally:
                handle.cancel()
                del pending[rid]
                if self._outstanding.get(key) == rid:
                    del self._outstanding[key]
        if loop.time() >= deadline:
            raise _Fail("timeout", f"no answer from {host}:{port} before the device deadline")
        raise _Fail("timeout", f"no answer from {host}:{port} after {attempts} attempt(s) of {self.timeout:g} s")

    # -- protocol-specific request functions: (pdu_type, oids, max_rep, template?) -> PDU

    def _template(self, community: bytes | None, pdu_type: int, oids: tuple, max_rep: int) -> RequestTemplate:
        # Keyed by the identity of the (long-lived) OID tuple of a PollSpec: hashing a
        # tuple of OIDs on every request would cost more than the template saves.
        k = (community, pdu_type, id(oids), max_rep)
        t = self._templates.get(k)
        if t is None or t[0] is not oids:
            if len(self._templates) > 4096:
                self._templates.clear()
            t = self._templates[k] = (oids, RequestTemplate(pdu_type, oids, community, 0, max_rep))
        return t[1]

    def _v2c_requester(self, target: Target, deadline: float):
        community = target.creds.community.encode("utf-8")
        host, port = target.host, target.port

        async def request(pdu_type: int, oids: tuple, max_rep: int = 0, fixed: bool = False):
            if fixed:
                enc = self._template(community, pdu_type, oids, max_rep).encode
            else:
                def enc(rid, _o=oids):
                    return ber.encode_message(community, encode_pdu(pdu_type, rid, _o, 0, max_rep))
            rid, data = await self._exchange(host, port, enc, deadline)
            msg = decode_message(data)
            pdu = msg.pdu
            if pdu.pdu_type != RESPONSE or pdu.request_id != rid:
                raise BERError(f"expected a Response to request {rid}, got PDU 0x{pdu.pdu_type:02x} id {pdu.request_id}")
            if msg.community != community:
                raise _Fail("auth", "reply carries another community")
            return pdu
        return request

    async def _discover(self, target: Target, deadline: float) -> usm.EngineState:
        rid, data = await self._exchange(target.host, target.port,
                                         lambda r: usm.encode_discovery_probe(r, r), deadline)
        engine = usm.parse_discovery_report(data)  # BERError / Unsupported propagate
        self._engines[(target.host, target.port)] = engine
        return engine

    async def _session(self, target: Target, deadline: float, rediscover: bool = False) -> usm.UsmSession:
        key = (target.host, target.port)
        c = target.creds
        s = self._sessions.get(key)
        if (not rediscover and s is not None and s.user == c.user.encode()
                and s.auth_password == c.auth_key.encode() and s.priv_password == c.priv_key.encode()):
            return s
        engine = None if rediscover else self._engines.get(key)
        if engine is None:
            engine = await self._discover(target, deadline)
        s = usm.UsmSession(c.user, c.auth_key, c.priv_key, engine=engine)
        self._sessions[key] = s
        return s

    async def _v3_requester(self, target: Target, deadline: float):
        session = await self._session(target, deadline)
        host, port = target.host, target.port

        async def request(pdu_type: int, oids: tuple, max_rep: int = 0, fixed: bool = False):
            nonlocal session
            if fixed:
                tpl = self._template(None, pdu_type, oids, max_rep)
                make_pdu = tpl.encode
            else:
                def make_pdu(rid, _o=oids):
                    return encode_pdu(pdu_type, rid, _o, 0, max_rep)
            for again in (True, False):
                s = session
                rid, data = await self._exchange(host, port, lambda r: s.encode_request(r, make_pdu(r)), deadline)
                try:
                    msg = s.decode_response(data)
                except usm.ReportReceived as r:
                    if again and r.reason == "usmStatsNotInTimeWindows":
                        continue  # decode_response resynchronised the clock
                    if again and r.reason == "usmStatsUnknownEngineIDs":
                        session = await self._session(target, deadline, rediscover=True)
                        continue
                    if r.reason in AUTH_REPORTS:
                        raise _Fail("auth", f"agent report {r.reason} (check user and keys)") from None
                    raise _Fail("unsupported", f"agent report {r.reason}") from None
                except usm.NotInTimeWindow as e:
                    if again:
                        session = await self._session(target, deadline, rediscover=True)
                        continue
                    raise _Fail("auth", str(e)) from None
                except usm.USMError as e:  # digest, decryption, security level
                    raise _Fail("auth", str(e)) from None
                pdu = msg.pdu
                if pdu.pdu_type != RESPONSE or pdu.request_id != rid:
                    raise BERError(f"expected a Response to request {rid}, got PDU 0x{pdu.pdu_type:02x} id {pdu.request_id}")
                return pdu
            raise _Fail("auth", "agent kept refusing the time window after resynchronisation")
        return request

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
        version = "v3-authpriv" if target.creds.version == "v3" else "v2c"

        def fail(reason: str, detail: str) -> DevicePoll:
            return DevicePoll(target.hostname, ok=False, version=version, error=reason,  # type: ignore[arg-type]
                              detail=detail, elapsed_seconds=loop.time() - t0)
        try:
            try:
                scalars, table, note = await self._poll_fast(target, spec, deadline)
            except Unsupported as e:
                if not self.fallback:
                    return fail("unsupported", f"outside the fast path: {e}")
                self.last_sweep.fallbacks += 1
                try:
                    scalars, table, note = await self._poll_pysnmp(target, spec, deadline)
                except _Fail as f:
                    return fail(f.reason, f"{f.detail} (pysnmp fallback after: {e})")
                note = f"polled through pysnmp: fast path said {e}" + (f"; {note}" if note else "")
        except _Fail as f:
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
        return _build_poll(target.hostname, version, scalars, table, spec, note, loop.time() - t0)

    async def _poll_fast(self, target: Target, spec: PollSpec, deadline: float) -> tuple:
        if target.creds.version == "v3":
            request = await self._v3_requester(target, deadline)
        else:
            request = self._v2c_requester(target, deadline)
        scalars: dict = {}
        if spec.get:
            pdu = await request(GET_REQUEST, spec.get, 0, True)
            if pdu.error_status:
                raise _Fail("unsupported", f"GET answered error-status {_status_name(pdu.error_status)}")
            for oid, _tag, value in pdu.varbinds:
                scalars[oid] = value
        table, note = await self._walk(request, spec, deadline, (target.host, target.port))
        return scalars, table, note

    async def _walk(self, request, spec: PollSpec, deadline: float, key: tuple = ()) -> tuple:
        cols = spec.columns
        table: dict = {c: {} for c in cols}
        if not cols:
            return table, ""
        last = list(cols)
        active = list(range(len(cols)))
        max_rows = self.max_rows
        first = True
        # The first GETBULK asks for as many rows as the device had last sweep, plus one
        # to see the end: usually one request, and no varbinds decoded past the table.
        hint = self._rows_hint.get(key)
        first_reps = spec.max_repetitions
        if hint is not None and (hint + 1) * len(cols) <= _MAX_BULK_VARBINDS:
            first_reps = max(1, hint + 1)
        while active:
            oids = cols if first else tuple(last[i] for i in active)
            pdu = await request(GET_BULK_REQUEST, oids, first_reps if first else spec.max_repetitions, first)
            first = False
            if pdu.error_status:
                raise _Fail("unsupported", f"GETBULK answered error-status {_status_name(pdu.error_status)}")
            vbs = pdu.varbinds
            if not vbs:
                raise BERError("GETBULK response carries no varbinds")
            n = len(active)
            done = set()
            advanced = False
            for k, (oid, tag, value) in enumerate(vbs):
                ci = active[k % n]
                if ci in done:
                    continue
                col = cols[ci]
                lc = len(col)
                if tag == END_OF_MIB_VIEW or oid[:lc] != col:
                    done.add(ci)
                    continue
                if oid <= last[ci]:
                    raise BERError(f"OID not increasing in the walk of {ber.oid_to_str(col)}: "
                                   f"{ber.oid_to_str(oid)} after {ber.oid_to_str(last[ci])}")
                last[ci] = oid
                table[col][oid[lc] if len(oid) == lc + 1 else oid[lc:]] = value
                advanced = True
            if not advanced and not done:
                raise BERError("GETBULK response did not advance any column")
            active = [ci for ci in active if ci not in done]
            if active and any(len(table[cols[ci]]) >= max_rows for ci in active):
                for c in cols:
                    if len(table[c]) > max_rows:
                        table[c] = dict(itertools.islice(table[c].items(), max_rows))
                return table, (f"interface table reached max_rows={max_rows} before its end: "
                               f"walk stopped, first {max_rows} rows kept")
        if key:
            if len(self._rows_hint) > 200_000:
                self._rows_hint.clear()
            self._rows_hint[key] = max(len(t) for t in table.values())
        return table, ""

    async def _poll_pysnmp(self, target: Target, spec: PollSpec, deadline: float) -> tuple:
        """The same poll through pysnmp 7 (reference implementation), bounded by the deadline."""
        from pysnmp.hlapi.v3arch.asyncio import (
            CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget,
            UsmUserData, bulk_walk_cmd, get_cmd, usmAesCfb128Protocol, usmHMACSHAAuthProtocol)

        c = target.creds
        if c.version == "v3":
            auth: Any = UsmUserData(c.user, c.auth_key, c.priv_key, authProtocol=usmHMACSHAAuthProtocol,
                                    privProtocol=usmAesCfb128Protocol)
        else:
            auth = CommunityData(c.community, mpModel=1)
        loop = asyncio.get_running_loop()
        engine = SnmpEngine()
        scalars: dict = {}
        table: dict = {col: {} for col in spec.columns}
        note = ""
        try:
            async with asyncio.timeout_at(deadline):
                transport = await UdpTransportTarget.create((target.host, target.port), timeout=self.timeout,
                                                            retries=self.retries)
                if spec.get:
                    err, status, _idx, binds = await get_cmd(engine, auth, transport, ContextData(),
                                                             *[ObjectType(ObjectIdentity(o)) for o in spec.get])
                    _pysnmp_check(err, status)
                    for name, value in binds:
                        scalars[tuple(name)] = _from_pysnmp(value)
                for col in spec.columns:
                    rows = table[col]
                    async for err, status, _idx, binds in bulk_walk_cmd(
                            engine, auth, transport, ContextData(), 0, spec.max_repetitions,
                            ObjectType(ObjectIdentity(col)), lexicographicMode=False):
                        _pysnmp_check(err, status)
                        for name, value in binds:
                            oid = tuple(name)
                            if oid[:len(col)] != col:
                                break
                            rows[oid[len(col)] if len(oid) == len(col) + 1 else oid[len(col):]] = _from_pysnmp(value)
                        if len(rows) >= self.max_rows:
                            note = f"interface table longer than max_rows={self.max_rows}: walk stopped"
                            break
        except TimeoutError:
            raise _Fail("timeout", f"pysnmp poll of {target.host}:{target.port} passed the device deadline") from None
        finally:
            try:
                engine.close_dispatcher()
            except Exception:  # noqa: BLE001
                pass
        del loop
        return scalars, table, note

    # -- many devices

    async def sweep(self, targets: Sequence[Target], interval: float = 60.0, budget: float = 0.85,
                    deadline: float | None = None) -> dict[str, DevicePoll]:
        """Poll every target once; returns hostname -> DevicePoll for all of them.

        Ends by ``deadline`` (loop time), default ``budget`` x ``interval`` from now,
        whatever the agents do: each device's own deadline is the sweep's (or
        ``device_timeout`` from its start when shorter), and anything still running
        then is cancelled and reported as ``timeout``."""
        loop = self._loop or asyncio.get_running_loop()
        t0 = loop.time()
        if deadline is None:
            deadline = t0 + interval * budget
        stats = self.last_sweep = SweepStats(started=time.time())
        sem = self._sem or asyncio.Semaphore(self.concurrency)

        async def one(t: Target) -> DevicePoll:
            async with sem:
                if loop.time() >= deadline:
                    return DevicePoll(t.hostname, ok=False, error="timeout",
                                      version="v3-authpriv" if t.creds.version == "v3" else "v2c",
                                      detail="not polled: the sweep deadline came first (concurrency bound)")
                return await self.poll(t, deadline)

        tasks = {t.hostname: loop.create_task(one(t)) for t in targets}
        out: dict[str, DevicePoll] = {}
        if tasks:
            _done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time()) + 0.05)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
            stats.cancelled = len(pending)
            for t in targets:
                task = tasks[t.hostname]
                if task.done() and not task.cancelled() and task.exception() is None:
                    out[t.hostname] = task.result()
                else:
                    out[t.hostname] = DevicePoll(
                        t.hostname, ok=False, error="timeout",
                        version="v3-authpriv" if t.creds.version == "v3" else "v2c",
                        detail="cancelled at the sweep deadline", elapsed_seconds=loop.time() - t0)
        stats.ended = time.time()
        return out

    # -- one-packet probe for probe.packet_round

    async def probe(self, target: Target, timeout: float | None = None) -> float | None:
        """One GET of sysUpTime, no retry: the round-trip time in seconds, or None when
        lost or refused. SNMPv3 engine discovery (once, cached) is not timed."""
        loop = self._loop or asyncio.get_running_loop()
        to = timeout or self.timeout
        try:
            if target.creds.version == "v3":
                s = await self._session(target, loop.time() + to)
                tpl = self._template(None, GET_REQUEST, _PROBE_OIDS, 0)

                def enc(rid):
                    return s.encode_request(rid, tpl.encode(rid))
            else:
                enc = self._template(target.creds.community.encode("utf-8"), GET_REQUEST, _PROBE_OIDS, 0).encode
            t0 = time.perf_counter()
            _rid, data = await self._exchange(target.host, target.port, enc, loop.time() + to, retries=0)
            rtt = time.perf_counter() - t0
            if target.creds.version == "v3":
                s.decode_response(data)
            else:
                decode_message(data)
            return rtt
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


# --------------------------------------------------------------------- building


def _status_name(n: int) -> str:
    return _ERROR_STATUS[n] if 0 <= n < len(_ERROR_STATUS) else str(n)


def _pysnmp_check(err, status) -> None:
    if err:
        text = str(err)
        low = text.lower()
        if "timeout" in low or "no snmp response" in low:
            raise _Fail("timeout", f"pysnmp: {text}")
        if any(w in low for w in ("digest", "unknown user", "decrypt", "security level", "authoriz")):
            raise _Fail("auth", f"pysnmp: {text}")
        raise _Fail("unsupported", f"pysnmp: {text}")
    if status:
        raise _Fail("unsupported", f"pysnmp: agent error-status {status.prettyPrint() if hasattr(status, 'prettyPrint') else status}")


def _from_pysnmp(value) -> Any:
    """A pysnmp value -> the fast path's plain value (int, bytes, OID tuple or None)."""
    name = type(value).__name__
    if name in ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null"):
        return None
    if name == "ObjectIdentifier" or name == "ObjectName":
        return tuple(value)
    if hasattr(value, "asOctets"):
        return value.asOctets()
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value).encode()


def _text(v) -> str:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return "" if v is None else str(v)


_NO_ROWS: dict = {}
_NAME_COLUMNS = (IF_NAME, IF_DESCR, IF_ALIAS)
_new_object = object.__new__
_set_attr = object.__setattr__


def _interface(index: int, name: str, admin_up: bool, oper_up: bool, speed_mbps: int, in_octets: int,
               out_octets: int, alias: str) -> Interface:
    """``Interface(...)`` without the frozen dataclass's eight ``object.__setattr__``
    calls: the same object (fields, eq, hash), built in one step. This is the hottest
    allocation of a sweep (one per row of every device)."""
    i = _new_object(Interface)
    _set_attr(i, "__dict__", {"index": index, "name": name, "admin_up": admin_up, "oper_up": oper_up,
                              "speed_mbps": speed_mbps, "in_octets": in_octets, "out_octets": out_octets,
                              "alias": alias})
    return i


def _build_poll(hostname: str, version: str, scalars: dict, table: dict, spec: PollSpec, note: str,
                elapsed: float) -> DevicePoll:
    """A DevicePoll from the walked columns (``table[column][ifIndex] = value``; rows
    whose index is not a single sub-identifier are ignored)."""
    get = table.get
    descrs, admins, opers = get(IF_DESCR, _NO_ROWS), get(IF_ADMIN_STATUS, _NO_ROWS), get(IF_OPER_STATUS, _NO_ROWS)
    names, ins, outs = get(IF_NAME, _NO_ROWS), get(IF_HC_IN_OCTETS, _NO_ROWS), get(IF_HC_OUT_OCTETS, _NO_ROWS)
    speeds, aliases = get(IF_HIGH_SPEED, _NO_ROWS), get(IF_ALIAS, _NO_ROWS)
    indexes: set = set()
    for values in table.values():
        indexes.update(values)
    interfaces = []
    append = interfaces.append
    for idx in sorted(k for k in indexes if k.__class__ is int):
        name = names.get(idx) or descrs.get(idx)
        alias = aliases.get(idx)
        speed, hin, hout = speeds.get(idx, 0), ins.get(idx, 0), outs.get(idx, 0)
        append(_interface(
            idx,
            "" if name is None else _text(name),
            admins.get(idx) == 1,
            opers.get(idx) == 1,
            speed if speed.__class__ is int else 0,
            hin if hin.__class__ is int else 0,
            hout if hout.__class__ is int else 0,
            "" if alias is None else _text(alias)))
    ifs = tuple(interfaces)
    uptime = scalars.get(SYS_UPTIME)
    named = any(c in table for c in _NAME_COLUMNS)
    return DevicePoll(
        hostname, ok=True, version=version,  # type: ignore[arg-type]
        sys_name=_text(scalars.get(SYS_NAME)), sys_descr=_text(scalars.get(SYS_DESCR)),
        uptime_seconds=uptime / 100.0 if isinstance(uptime, int) else None,
        interfaces=ifs, uplink_index=find_uplink(ifs) if named else None, detail=note, elapsed_seconds=elapsed)
