"""The poller's fast path: one device's GET and interface walk over the narrow codec.

Per device: one GET (the spec's scalars), then the interface columns walked together,
all columns in each request, until every column leaves its subtree, bounded by
``max_rows`` (beyond it the walk stops: the poll is ``ok`` with the rows read and a
note saying so). OIDs must increase, or the reply is malformed. The first GETBULK asks
for the row count the device had last sweep plus one, so a walk is usually a single
request that decodes nothing past the table.

What real agents do, and what the fast path does about it (as net-snmp's tools do):

* ``noSuchName`` to a GET (SNMPv1 agents, and some v2c ones, for an object they lack):
  that OID is dropped and the GET asked again for the others.
* An error-status to a GETBULK (``genErr`` from agents that do not implement it,
  ``noSuchName``, ...): the walk goes on with GETNEXT (one row per request), and the
  agent is remembered as such for the next sweeps. ``tooBig`` first halves the
  repetitions.
* SNMPv1 (``SnmpCreds("v1")``): version-0 messages, GETNEXT walks; the end of the MIB is
  ``noSuchName`` at the varbind that ran off it, which ends that column.
* SNMPv3: engine discovery once per agent, cached across sweeps (and localized keys, in
  :mod:`usm`); a ``usmStatsNotInTimeWindows`` report resynchronises the clock and the
  request is retried once; ``usmStatsUnknownEngineIDs`` (the agent was replaced)
  rediscovers once.

Retransmissions: until the device has answered once in this poll, a request gets
``retries + 1`` attempts (so a dead address costs ``timeout x (retries + 1)``); once it
has answered, losses are the link's, and each request is resent every ``timeout``
until the device's deadline. A lossy satellite link thus completes a poll of several
requests where a fixed retry count per request would fail it.

Anything outside the codec raises :class:`~ctfleet.monitors.ber.Unsupported`, which
sends the device to :mod:`ctfleet.monitors.snmp_fallback`.
"""

from __future__ import annotations

import itertools
from typing import Callable

from ctfleet.monitors import ber, usm
from ctfleet.monitors.ber import (
    END_OF_MIB_VIEW,
    GET_BULK_REQUEST,
    GET_NEXT_REQUEST,
    GET_REQUEST,
    RESPONSE,
    BERError,
    RequestTemplate,
    decode_message,
    encode_pdu,
)
from ctfleet.monitors.snmp_targets import PollSpec, Target
from ctfleet.monitors.snmp_transport import PollFailure, UdpTransport

__all__ = ["FastPath", "AUTH_REPORTS", "status_name", "NO_SUCH_NAME", "TOO_BIG", "GEN_ERR"]

# Reports that mean "your credentials are wrong" (RFC 3414 3.2).
AUTH_REPORTS = frozenset(("usmStatsWrongDigests", "usmStatsUnknownUserNames",
                          "usmStatsUnsupportedSecLevels", "usmStatsDecryptionErrors"))
_ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr",
                 "noAccess", "wrongType", "wrongLength", "wrongEncoding", "wrongValue",
                 "noCreation", "inconsistentValue", "resourceUnavailable", "commitFailed",
                 "undoFailed", "authorizationError", "notWritable", "inconsistentName")
TOO_BIG, NO_SUCH_NAME, GEN_ERR = 1, 2, 5
_MAX_BULK_VARBINDS = 400  # per GETBULK response when sizing it from the last sweep


def status_name(n: int) -> str:
    return _ERROR_STATUS[n] if 0 <= n < len(_ERROR_STATUS) else str(n)


class _Conversation:
    """One device's poll: its deadline, and whether it has answered yet."""

    __slots__ = ("target", "deadline", "answered", "notes")

    def __init__(self, target: Target, deadline: float):
        self.target = target
        self.deadline = deadline
        self.answered = False
        self.notes: list[str] = []


class FastPath:
    """The fast path's state across sweeps (engines, sessions, templates, row hints,
    agents that refuse GETBULK) over one :class:`UdpTransport`."""

    def __init__(self, transport: UdpTransport, timeout: float, retries: int, max_rows: int):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.max_rows = max_rows
        self.engines: dict[tuple, usm.EngineState] = {}
        self.sessions: dict[tuple, usm.UsmSession] = {}
        self._templates: dict[tuple, tuple] = {}
        self.rows_hint: dict[tuple, int] = {}
        self.no_bulk: set[tuple] = set()

    # -- exchanges

    async def _exchange(self, conv: _Conversation, encode: Callable[[int], bytes], decode) -> object:
        t = conv.target
        attempts = None if conv.answered else self.retries + 1
        out = await self.transport.exchange(t.host, t.port, encode, decode, conv.deadline, self.timeout, attempts)
        conv.answered = True
        return out

    def template(self, community: bytes | None, pdu_type: int, oids: tuple, max_rep: int, version: int = 1) -> RequestTemplate:
        # Keyed by the identity of the (long-lived) OID tuple of a PollSpec: hashing a
        # tuple of OIDs on every request would cost more than the template saves.
        k = (community, pdu_type, id(oids), max_rep, version)
        t = self._templates.get(k)
        if t is None or t[0] is not oids:
            if len(self._templates) > 4096:
                self._templates.clear()
            t = self._templates[k] = (oids, RequestTemplate(pdu_type, oids, community, 0, max_rep, version))
        return t[1]

    def _community_requester(self, conv: _Conversation):
        creds = conv.target.creds
        community = creds.community.encode("utf-8")
        version = 0 if creds.version == "v1" else 1

        def decode(raw: bytes, rid: int):
            msg = decode_message(raw)
            pdu = msg.pdu
            if pdu.pdu_type != RESPONSE or pdu.request_id != rid:
                raise BERError(f"expected a Response to request {rid}, got PDU 0x{pdu.pdu_type:02x} id {pdu.request_id}")
            if msg.version != version or msg.community != community:
                raise BERError("reply carries another SNMP version or community")
            return pdu

        async def request(pdu_type: int, oids: tuple, max_rep: int = 0, fixed: bool = False):
            if fixed:
                enc = self.template(community, pdu_type, oids, max_rep, version).encode
            else:
                def enc(rid, _o=oids):
                    return ber.encode_message(community, encode_pdu(pdu_type, rid, _o, 0, max_rep), version)
            return await self._exchange(conv, enc, decode)
        return request

    async def discover(self, conv: _Conversation) -> usm.EngineState:
        t = conv.target
        engine = await self._exchange(conv, lambda r: usm.encode_discovery_probe(r, r),
                                      lambda raw, _rid: usm.parse_discovery_report(raw))
        self.engines[(t.host, t.port)] = engine
        return engine

    async def session(self, conv: _Conversation, rediscover: bool = False) -> usm.UsmSession:
        t = conv.target
        key = (t.host, t.port)
        c = t.creds
        s = self.sessions.get(key)
        if (not rediscover and s is not None and s.user == c.user.encode()
                and s.auth_password == c.auth_key.encode() and s.priv_password == c.priv_key.encode()):
            return s
        engine = None if rediscover else self.engines.get(key)
        if engine is None:
            engine = await self.discover(conv)
        s = usm.UsmSession(c.user, c.auth_key, c.priv_key, engine=engine)
        self.sessions[key] = s
        return s

    async def _v3_requester(self, conv: _Conversation):
        session = await self.session(conv)

        async def request(pdu_type: int, oids: tuple, max_rep: int = 0, fixed: bool = False):
            nonlocal session
            if fixed:
                make_pdu = self.template(None, pdu_type, oids, max_rep).encode
            else:
                def make_pdu(rid, _o=oids):
                    return encode_pdu(pdu_type, rid, _o, 0, max_rep)
            for again in (True, False):
                s = session

                def decode(raw: bytes, rid: int, _s=s):
                    msg = _s.decode_response(raw)
                    pdu = msg.pdu
                    if pdu.pdu_type != RESPONSE or pdu.request_id != rid:
                        raise BERError(f"expected a Response to request {rid}, got PDU 0x{pdu.pdu_type:02x} "
                                       f"id {pdu.request_id}")
                    return pdu
                try:
                    return await self._exchange(conv, lambda r, _s=s: _s.encode_request(r, make_pdu(r)), decode)
                except usm.ReportReceived as r:
                    if again and r.reason == "usmStatsNotInTimeWindows":
                        continue  # decode_response resynchronised the clock
                    if again and r.reason == "usmStatsUnknownEngineIDs":
                        session = await self.session(conv, rediscover=True)
                        continue
                    if r.reason in AUTH_REPORTS:
                        raise PollFailure("auth", f"agent report {r.reason} (check user and keys)") from None
                    raise PollFailure("unsupported", f"agent report {r.reason}") from None
                except usm.NotInTimeWindow as e:
                    if again:
                        session = await self.session(conv, rediscover=True)
                        continue
                    raise PollFailure("auth", str(e)) from None
                except usm.USMError as e:  # digest, decryption, security level
                    raise PollFailure("auth", str(e)) from None
            raise PollFailure("auth", "agent kept refusing the time window after resynchronisation")
        return request

    # -- one device

    async def poll(self, target: Target, spec: PollSpec, deadline: float) -> tuple:
        """(scalars, table, note): ``scalars[oid] = value``, ``table[column][ifIndex] = value``."""
        conv = _Conversation(target, deadline)
        if target.creds.version == "v3":
            request = await self._v3_requester(conv)
        else:
            request = self._community_requester(conv)
        scalars = await self._get(request, spec.get, conv) if spec.get else {}
        table, note = await self._walk(request, spec, conv)
        return scalars, table, "; ".join(conv.notes + ([note] if note else []))

    async def _get(self, request, oids: tuple, conv: _Conversation) -> dict:
        asked = list(oids)
        fixed = True
        while asked:
            pdu = await request(GET_REQUEST, oids if fixed else tuple(asked), 0, fixed)
            fixed = False
            if pdu.error_status == NO_SUCH_NAME and 1 <= pdu.error_index <= len(asked):
                # net-snmp drops the OID the agent does not have and asks again
                missing = asked.pop(pdu.error_index - 1)
                conv.notes.append(f"agent has no {ber.oid_to_str(missing)} (noSuchName)")
                continue
            if pdu.error_status:
                raise PollFailure("unsupported", f"GET answered error-status {status_name(pdu.error_status)}"
                                                 f" at index {pdu.error_index}")
            return {oid: value for oid, _tag, value in pdu.varbinds}
        return {}

    async def _walk(self, request, spec: PollSpec, conv: _Conversation) -> tuple:
        cols = spec.columns
        table: dict = {c: {} for c in cols}
        if not cols:
            return table, ""
        t = conv.target
        key = (t.host, t.port)
        v1 = t.creds.version == "v1"
        use_next = v1 or key in self.no_bulk
        last = list(cols)
        active = list(range(len(cols)))
        max_rows = self.max_rows
        first = True
        # The first GETBULK asks for as many rows as the device had last sweep, plus one
        # to see the end: usually one request, and no varbinds decoded past the table.
        hint = self.rows_hint.get(key)
        reps = spec.max_repetitions
        first_reps = reps
        if hint is not None and (hint + 1) * len(cols) <= _MAX_BULK_VARBINDS:
            first_reps = max(1, hint + 1)
        while active:
            oids = cols if first and len(active) == len(cols) else tuple(last[i] for i in active)
            if use_next:
                pdu = await request(GET_NEXT_REQUEST, oids, 0, oids is cols)
            else:
                pdu = await request(GET_BULK_REQUEST, oids, first_reps if first else reps, first and oids is cols)
            was_first, first = first, False
            if pdu.error_status:
                status = pdu.error_status
                if use_next:
                    if status == NO_SUCH_NAME and 1 <= pdu.error_index <= len(active):
                        # SNMPv1's end of the MIB view: that column is done, ask the others again
                        del active[pdu.error_index - 1]
                        continue
                    raise PollFailure("unsupported", f"GETNEXT answered error-status {status_name(status)}")
                asked = first_reps if was_first else reps
                if status == TOO_BIG and asked > 1:
                    reps = first_reps = max(1, asked // 2)  # same position, fewer rows
                    first = was_first
                    continue
                # genErr & co from agents without GETBULK: walk on with GETNEXT, from here
                use_next = True
                self.no_bulk.add(key)
                conv.notes.append(f"GETBULK answered {status_name(status)}: walked with GETNEXT")
                continue
            vbs = pdu.varbinds
            if not vbs:
                raise BERError("GETBULK response carries no varbinds")
            n = len(active)
            if use_next and len(vbs) != n:
                raise BERError(f"GETNEXT response carries {len(vbs)} varbinds for {n} requested")
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
        if len(self.rows_hint) > 200_000:
            self.rows_hint.clear()
        self.rows_hint[key] = max(len(x) for x in table.values())
        return table, ""
