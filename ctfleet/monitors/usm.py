"""Fast-path SNMPv3 with the User-based Security Model (RFC 3412, 3414, 3826).

The collector's default is SNMPv3 authPriv with HMAC-SHA-96 (usmHMACSHAAuthProtocol)
and AES-128-CFB (usmAesCfb128Protocol). Through pysnmp it cost 2.8 ms of CPU per device
here, and net-snmp's Python bindings 7.5 ms (they derive keys on every call), against a
goal of at least 1x snmp_exporter per core; see :mod:`ctfleet.monitors.ber` for the
measurements and why the hot path is the project's own. This module adds, on top of
that PDU codec, only what those polls need:

* message encode/decode (SNMPv3Message, HeaderData, UsmSecurityParameters, ScopedPDU);
* authentication with HMAC-SHA-96: outgoing digests written at the offset the encoder
  knows, incoming digests verified in constant time (``hmac.compare_digest``) before
  anything else in the message is trusted;
* privacy with AES-128-CFB over the ``cryptography`` package's AES (IV = engine boots,
  engine time and a per-message 64-bit salt, RFC 3826 3.1.2.1). The CFB chaining is
  written here (:func:`cfb_encrypt`, :func:`cfb_decrypt`, NIST SP 800-38A 6.3) on one
  AES-ECB context kept per key, because every message has a new IV and creating
  ``cryptography``'s CFB context per message costs ~20 µs (an OpenSSL cipher fetch and
  context), about a fifth of a v3 poll's CPU; the AES itself stays the library's;
* password-to-key (RFC 3414 A.2.2, the 1 MiB SHA-1 expansion) and key localisation
  with the engine ID, both memoised, because the expansion costs milliseconds and the
  same passwords and engines are polled every sweep;
* engine discovery: the probe (empty engine ID, reportable, noAuthNoPriv) and the
  parsing of the Report that answers it (usmStatsUnknownEngineIDs), and the
  resynchronisation on an authenticated usmStatsNotInTimeWindows report;
* the receiver-side timeliness checks of RFC 3414 3.2.7.

Anything else (other security models, other auth/priv protocols, unusual types) raises
:class:`~ctfleet.monitors.ber.Unsupported` and is left to pysnmp, the reference that the
tests check this module against. Security failures raise subclasses of
:class:`USMError`; malformed octets raise :class:`~ctfleet.monitors.ber.BERError`.
"""

from __future__ import annotations

import hmac
import itertools
import os
import time as _time
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import sha1
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # cryptography >= 43 moved CFB to the "decrepit" namespace
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[no-redef]

from ctfleet.monitors.ber import (
    GET_REQUEST,
    OCTET_STRING,
    PDU,
    REPORT,
    SEQUENCE,
    BERError,
    SNMPCodecError,
    Unsupported,
    _expect,
    _length_at,  # the straight-line readers' short / 1- / 2-octet length form
    _read_int,
    _read_octets,
    _tlv,
    decode_pdu,
    encode_integer,
    encode_octets,
    oid_to_str,
)

__all__ = [
    "USMError", "AuthenticationError", "DecryptionError", "NotInTimeWindow",
    "SecurityLevelError", "ReportReceived",
    "FLAG_AUTH", "FLAG_PRIV", "FLAG_REPORTABLE", "USM_SECURITY_MODEL", "MAX_MESSAGE_SIZE",
    "USM_STATS", "password_to_key_sha", "localize_key_sha", "localized_keys",
    "EngineState", "V3Message", "encode_scoped_pdu", "encode_v3_message",
    "decode_v3_message", "encode_discovery_probe", "parse_discovery_report",
    "report_reason", "UsmSession", "cfb_encrypt", "cfb_decrypt",
]


class USMError(SNMPCodecError):
    """A USM security check failed."""


class AuthenticationError(USMError):
    """The message's HMAC digest is missing, malformed or does not match (wrong auth
    password, or tampering)."""


class DecryptionError(USMError):
    """The encrypted scopedPDU could not be decrypted into a well-formed scopedPDU
    (wrong privacy password, or bad privacy parameters)."""


class NotInTimeWindow(USMError):
    """An authenticated message is outside the time window (RFC 3414 3.2.7)."""


class SecurityLevelError(USMError):
    """The message's security level is not the one required (e.g. a Response that is
    not authPriv), or the flags are an invalid combination."""


class ReportReceived(USMError):
    """The agent answered with a Report PDU; ``reason`` names the counter it carries
    (e.g. ``"usmStatsNotInTimeWindows"``), ``message`` is the decoded report."""

    def __init__(self, reason: str, message: "V3Message"):
        super().__init__(f"agent sent a report: {reason}")
        self.reason = reason
        self.message = message


FLAG_AUTH = 0x01
FLAG_PRIV = 0x02
FLAG_REPORTABLE = 0x04
USM_SECURITY_MODEL = 3
MAX_MESSAGE_SIZE = 65507  # what net-snmp and pysnmp advertise over UDP
_TIME_WINDOW = 150  # seconds, RFC 3414 2.2.3
_MAX_BOOTS = 0x7FFFFFFF
_AUTH_LEN = 12  # HMAC-SHA-96
_ZERO_AUTH = bytes(_AUTH_LEN)

USM_STATS = {
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0): "usmStatsUnsupportedSecLevels",
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0): "usmStatsNotInTimeWindows",
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0): "usmStatsUnknownUserNames",
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0): "usmStatsUnknownEngineIDs",
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0): "usmStatsWrongDigests",
    (1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0): "usmStatsDecryptionErrors",
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 1, 0): "snmpUnknownSecurityModels",
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 2, 0): "snmpInvalidMsgs",
    (1, 3, 6, 1, 6, 3, 11, 2, 1, 3, 0): "snmpUnknownPDUHandlers",
}


# ---------------------------------------------------------------- key derivation


def _as_bytes(v: bytes | str) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


@lru_cache(maxsize=256)
def password_to_key_sha(password: bytes | str) -> bytes:
    """Ku = SHA-1 over 1 MiB of the repeated password (RFC 3414 A.2.2). Memoised."""
    pw = _as_bytes(password)
    if len(pw) < 8:  # RFC 3414 11.2; net-snmp refuses shorter passphrases too
        raise ValueError("USM passwords must be at least 8 characters")
    n = 1048576
    return sha1((pw * (n // len(pw) + 1))[:n]).digest()


def localize_key_sha(ku: bytes, engine_id: bytes) -> bytes:
    """Kul = SHA-1(Ku || engineID || Ku) (RFC 3414 2.6)."""
    return sha1(ku + engine_id + ku).digest()


@lru_cache(maxsize=16384)
def localized_keys(auth_password: bytes | str, priv_password: bytes | str,
                   engine_id: bytes) -> tuple:
    """``(auth_key, priv_key)`` localized to ``engine_id`` for HMAC-SHA-96 (20 octets)
    and AES-128 (the first 16 octets of the SHA-localized privacy key, RFC 3826
    1.2). Cached per (passwords, engine ID)."""
    engine_id = bytes(engine_id)
    auth = localize_key_sha(password_to_key_sha(auth_password), engine_id)
    priv = localize_key_sha(password_to_key_sha(priv_password), engine_id)[:16]
    return auth, priv


# ----------------------------------------------------------------- engine state


@dataclass
class EngineState:
    """What the manager knows of an authoritative engine (RFC 3414 2.3): its ID, and
    its boots/time as last received, with the local monotonic clock at that moment."""

    engine_id: bytes
    boots: int = 0
    time: int = 0
    learned_at: float = field(default_factory=_time.monotonic)

    def now(self, at: float | None = None) -> int:
        """The engine's time now, extrapolated from the last received value."""
        t = _time.monotonic() if at is None else at
        return min(self.time + int(t - self.learned_at), _MAX_BOOTS)

    def receive(self, boots: int, engine_time: int, at: float | None = None) -> None:
        """RFC 3414 3.2.7 b: update from an authentic message, then check timeliness;
        raise :class:`NotInTimeWindow` if it is outside the window."""
        t = _time.monotonic() if at is None else at
        local_time = self.now(t)
        if boots > self.boots or (boots == self.boots and engine_time > local_time):
            self.boots, self.time, self.learned_at = boots, engine_time, t
            local_time = engine_time
        if (self.boots == _MAX_BOOTS or boots < self.boots
                or (boots == self.boots and engine_time < local_time - _TIME_WINDOW)):
            raise NotInTimeWindow(
                f"message boots/time {boots}/{engine_time} outside the window of engine "
                f"{self.engine_id.hex()} (boots {self.boots}, time ~{local_time})")


# ------------------------------------------------------------------ messages


class V3Message(NamedTuple):
    """A decoded (authenticated and decrypted, where the flags say so) SNMPv3 message."""

    msg_id: int
    max_size: int
    flags: int
    engine_id: bytes
    engine_boots: int
    engine_time: int
    user_name: bytes
    context_engine_id: bytes
    context_name: bytes
    pdu: PDU


_salt = itertools.count(int.from_bytes(os.urandom(8), "big"))


def _next_salt() -> bytes:
    return (next(_salt) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def _aes_cfb(key: bytes, boots: int, engine_time: int, salt: bytes):
    """``cryptography``'s own AES-CFB128 cipher for this IV (long payloads, and the
    reference :func:`cfb_encrypt`/:func:`cfb_decrypt` are tested against)."""
    iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
    return Cipher(algorithms.AES(key), CFB(iv))


_ECB: dict = {}  # AES key -> the update() of an AES-ECB encryptor kept for it
_CFB_LOOP_MAX = 256  # octets: longer plaintexts are encrypted by cryptography's CFB context


def _ecb(key: bytes):
    f = _ECB.get(key)
    if f is None:
        if len(_ECB) >= 65536:
            _ECB.clear()
        # ECB has no state between blocks: one context serves every message under this key
        f = _ECB[key] = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update
    return f


def cfb_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CFB128 decryption: plaintext block i = C_i XOR AES(C_{i-1}), C_0 = IV, so the
    whole key stream is one ECB pass over ``IV || C_1 .. C_{n-1}`` (no chaining)."""
    n = len(data)
    if not n:
        return b""
    stream = _ecb(key)(iv + data[:((n - 1) >> 4) << 4])
    return (int.from_bytes(stream[:n], "big") ^ int.from_bytes(data, "big")).to_bytes(n, "big")


def cfb_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CFB128 encryption: C_i = P_i XOR AES(C_{i-1}), one block at a time (requests
    are a few blocks; longer data goes through ``cryptography``'s CFB context)."""
    n = len(data)
    if n > _CFB_LOOP_MAX:
        enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
        return enc.update(data) + enc.finalize()
    update = _ecb(key)
    out = []
    prev = iv
    for i in range(0, n, 16):
        block = data[i:i + 16]
        m = len(block)
        stream = update(prev)
        prev = (int.from_bytes(block, "big") ^ int.from_bytes(stream[:m] if m < 16 else stream, "big")).to_bytes(m, "big")
        out.append(prev)
    return b"".join(out)


def encode_scoped_pdu(pdu: bytes, context_engine_id: bytes = b"",
                      context_name: bytes = b"") -> bytes:
    """ScopedPDU TLV around an encoded PDU (from :func:`ber.encode_pdu` or a
    ``RequestTemplate(..., community=None)``)."""
    return _tlv(SEQUENCE, encode_octets(context_engine_id) + encode_octets(context_name) + pdu)


def encode_v3_message(msg_id: int, scoped_pdu: bytes, *, engine_id: bytes, boots: int,
                      engine_time: int, user_name: bytes, auth_key: bytes | None = None,
                      priv_key: bytes | None = None, reportable: bool = True,
                      max_size: int = MAX_MESSAGE_SIZE, salt: bytes | None = None) -> bytes:
    """A complete SNMPv3/USM message. The security level follows the keys given:
    none -> noAuthNoPriv, ``auth_key`` -> authNoPriv, both -> authPriv (HMAC-SHA-96,
    AES-128-CFB). ``salt`` is for tests; by default each message gets a fresh one."""
    if not 0 <= msg_id <= 0x7FFFFFFF:
        raise ValueError(f"msgID {msg_id} outside 0..2147483647")
    if priv_key is not None and auth_key is None:
        raise ValueError("privacy requires authentication")
    flags = FLAG_REPORTABLE if reportable else 0
    if priv_key is not None:
        flags |= FLAG_PRIV
        if salt is None:
            salt = _next_salt()
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
        msg_data = encode_octets(cfb_encrypt(priv_key[:16], iv, scoped_pdu))
        priv_params = salt
    else:
        msg_data = scoped_pdu
        priv_params = b""
    if auth_key is not None:
        flags |= FLAG_AUTH
        auth_tlv = b"\x04\x0c" + _ZERO_AUTH
    else:
        auth_tlv = b"\x04\x00"
    header = _tlv(SEQUENCE, encode_integer(msg_id) + encode_integer(max_size)
                  + bytes((OCTET_STRING, 1, flags)) + b"\x02\x01\x03")
    usm_pre = (encode_octets(engine_id) + encode_integer(boots) + encode_integer(engine_time)
               + encode_octets(user_name))
    usm_content = usm_pre + auth_tlv + encode_octets(priv_params)
    usm = _tlv(SEQUENCE, usm_content)
    sec = _tlv(OCTET_STRING, usm)
    body = b"\x02\x01\x03" + header + sec + msg_data
    whole = _tlv(SEQUENCE, body)
    if auth_key is None:
        return whole
    # Offset of the 12 digest octets, from the lengths of what precedes them: message
    # header, msgVersion, msgGlobalData, the OCTET STRING and SEQUENCE headers of the
    # security parameters, the fields before msgAuthenticationParameters, its header.
    at = ((len(whole) - len(body)) + 3 + len(header) + (len(sec) - len(usm))
          + (len(usm) - len(usm_content)) + len(usm_pre) + 2)
    mac = hmac.digest(auth_key, whole, "sha1")[:_AUTH_LEN]  # OpenSSL's one-shot HMAC, no object
    return whole[:at] + mac + whole[at + _AUTH_LEN:]


def _fields(buf: bytes) -> tuple:
    """The message's framing, strictly checked (errors name the element and offset):
    ``(msg_id, max_size, flags, engine_id, boots, engine_time, user_name, astart,
    auth_params, priv_params, p, stop, dstart, dstop)``."""
    end = len(buf)
    start, stop = _expect(buf, 0, end, SEQUENCE, "SNMPv3 message")
    if stop != end:
        raise BERError(f"SNMPv3 message: {end - stop} trailing octets after the message")
    version, p = _read_int(buf, start, stop, "msgVersion")
    if version != 3:
        if version in (0, 1):
            raise Unsupported(f"SNMP version {version} message is not SNMPv3: use ber")
        raise BERError(f"msgVersion {version} is not 3")
    # HeaderData
    hstart, hstop = _expect(buf, p, stop, SEQUENCE, "msgGlobalData")
    msg_id, q = _read_int(buf, hstart, hstop, "msgID")
    max_size, q = _read_int(buf, q, hstop, "msgMaxSize")
    flags_raw, q = _read_octets(buf, q, hstop, "msgFlags")
    model, q = _read_int(buf, q, hstop, "msgSecurityModel")
    if q != hstop:
        raise BERError(f"msgGlobalData: {hstop - q} trailing octets")
    if msg_id < 0:
        raise BERError(f"msgID {msg_id} is negative")
    if max_size < 484:
        raise BERError(f"msgMaxSize {max_size} is below 484")
    if len(flags_raw) != 1:
        raise BERError(f"msgFlags has {len(flags_raw)} octets, expected 1")
    flags = flags_raw[0]
    if flags & FLAG_PRIV and not flags & FLAG_AUTH:
        raise SecurityLevelError("msgFlags: privacy without authentication is invalid")
    if model != USM_SECURITY_MODEL:
        raise Unsupported(f"security model {model} is not USM (3)")
    # msgSecurityParameters: an OCTET STRING holding UsmSecurityParameters
    sstart, p = _expect(buf, hstop, stop, OCTET_STRING, "msgSecurityParameters")
    ustart, ustop = _expect(buf, sstart, p, SEQUENCE, "UsmSecurityParameters")
    if ustop != p:
        raise BERError(f"msgSecurityParameters: {p - ustop} trailing octets")
    engine_id, q = _read_octets(buf, ustart, ustop, "msgAuthoritativeEngineID")
    boots, q = _read_int(buf, q, ustop, "msgAuthoritativeEngineBoots")
    engine_time, q = _read_int(buf, q, ustop, "msgAuthoritativeEngineTime")
    user_name, q = _read_octets(buf, q, ustop, "msgUserName")
    astart, q = _expect(buf, q, ustop, OCTET_STRING, "msgAuthenticationParameters")
    auth_params = buf[astart:q]
    priv_params, q = _read_octets(buf, q, ustop, "msgPrivacyParameters")
    if q != ustop:
        raise BERError(f"UsmSecurityParameters: {ustop - q} trailing octets")
    if boots < 0 or engine_time < 0:
        raise BERError("negative msgAuthoritativeEngineBoots/Time")
    if len(engine_id) > 32 or len(user_name) > 32:
        raise BERError("msgAuthoritativeEngineID/msgUserName longer than 32 octets")
    # msgData: plaintext ScopedPDU or encryptedPDU, ending the message
    if p >= stop:
        raise BERError("SNMPv3 message: msgData missing")
    if flags & FLAG_PRIV:
        dstart, dstop = _expect(buf, p, stop, OCTET_STRING, "encryptedPDU")
    else:
        dstart, dstop = _expect(buf, p, stop, SEQUENCE, "ScopedPDU")
    if dstop != stop:
        raise BERError(f"SNMPv3 message: {stop - dstop} trailing octets after msgData")
    return (msg_id, max_size, flags, engine_id, boots, engine_time, user_name, astart,
            auth_params, priv_params, p, stop, dstart, dstop)


def _int_at(buf: bytes, p: int, limit: int) -> tuple:
    """A non-negative Integer32 TLV at ``p`` ending by ``limit``: ``(value, next)``, or
    ``(-1, p)`` for anything else (the strict parser then decides)."""
    if buf[p] != 0x02:
        return -1, p
    n = buf[p + 1]
    q = p + 2 + n
    if not 1 <= n <= 5 or q > limit:
        return -1, p
    v = int.from_bytes(buf[p + 2:q], "big", signed=True)
    return (v, q) if 0 <= v <= 0x7FFFFFFF else (-1, p)


def _octets_at(buf: bytes, p: int, limit: int) -> int:
    """End of a short-form OCTET STRING TLV at ``p`` within ``limit``, or -1."""
    if buf[p] != 0x04:
        return -1
    q = p + 2 + buf[p + 1]
    return q if buf[p + 1] < 0x80 and q <= limit else -1


def _fields_fast(buf: bytes) -> tuple | None:
    """:func:`_fields` for the shape every agent sends (definite lengths of at most two
    octets, minimal integers, short strings), in straight-line code: the generic
    ``_expect`` per field was a tenth of a v3 poll's CPU. Whatever it does not accept
    (None) goes through :func:`_fields`, which gives the same result or the error, so
    the two never disagree on what is valid."""
    try:
        end = len(buf)
        if buf[0] != SEQUENCE:
            return None
        n, p = _length_at(buf, 1)
        stop = p + n
        if n < 0 or stop != end or buf[p:p + 3] != b"\x02\x01\x03" or buf[p + 3] != SEQUENCE:
            return None
        hstop = p + 5 + buf[p + 4]  # msgGlobalData
        if buf[p + 4] >= 0x80 or hstop > stop:
            return None
        msg_id, q = _int_at(buf, p + 5, hstop)
        max_size, q = _int_at(buf, q, hstop)
        if msg_id < 0 or max_size < 484 or buf[q:q + 2] != b"\x04\x01" or buf[q + 3:q + 6] != b"\x02\x01\x03" \
                or q + 6 != hstop:
            return None
        flags = buf[q + 2]
        if flags & FLAG_PRIV and not flags & FLAG_AUTH:
            return None
        if buf[hstop] != OCTET_STRING:  # msgSecurityParameters
            return None
        n, sstart = _length_at(buf, hstop + 1)
        p = sstart + n
        if n < 0 or p > stop or buf[sstart] != SEQUENCE:
            return None
        n, ustart = _length_at(buf, sstart + 1)
        if n < 0 or ustart + n != p:
            return None
        ustop = p
        q = _octets_at(buf, ustart, ustop)
        if q < 0 or q - ustart - 2 > 32:
            return None
        engine_id = buf[ustart + 2:q]
        boots, q = _int_at(buf, q, ustop)
        if boots < 0:
            return None
        engine_time, q = _int_at(buf, q, ustop)
        if engine_time < 0:
            return None
        r = _octets_at(buf, q, ustop)
        if r < 0 or r - q - 2 > 32:
            return None
        user_name = buf[q + 2:r]
        q = _octets_at(buf, r, ustop)
        if q < 0:
            return None
        astart = r + 2
        auth_params = buf[astart:q]
        r = _octets_at(buf, q, ustop)
        if r != ustop or p >= stop:
            return None
        priv_params = buf[q + 2:r]
        if buf[p] != (OCTET_STRING if flags & FLAG_PRIV else SEQUENCE):
            return None
        n, dstart = _length_at(buf, p + 1)
        if n < 0 or dstart + n != stop:
            return None
        return (msg_id, max_size, flags, engine_id, boots, engine_time, user_name, astart,
                auth_params, priv_params, p, stop, dstart, stop)
    except IndexError:
        return None


def decode_v3_message(data: bytes | bytearray | memoryview, auth_key: bytes | None = None,
                      priv_key: bytes | None = None) -> V3Message:
    """Decode an SNMPv3/USM message, verifying its digest with ``auth_key`` and
    decrypting it with ``priv_key`` when its flags say it is authenticated/encrypted.

    This checks the message itself only; :class:`UsmSession` adds the checks that need
    state (expected engine, user, security level, time window).
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    (msg_id, max_size, flags, engine_id, boots, engine_time, user_name, astart, auth_params,
     priv_params, p, stop, dstart, dstop) = _fields_fast(buf) or _fields(buf)

    if flags & FLAG_AUTH:
        if auth_key is None:
            raise AuthenticationError("message is authenticated but no auth key was given")
        if len(auth_params) != _AUTH_LEN:
            raise AuthenticationError(
                f"msgAuthenticationParameters has {len(auth_params)} octets, "
                f"HMAC-SHA-96 needs {_AUTH_LEN}")
        mac = hmac.digest(auth_key, buf[:astart] + _ZERO_AUTH + buf[astart + _AUTH_LEN:], "sha1")[:_AUTH_LEN]
        if not hmac.compare_digest(mac, auth_params):
            raise AuthenticationError(
                "HMAC-SHA-96 digest mismatch: wrong authentication password or "
                "tampered message")

    if flags & FLAG_PRIV:
        if priv_key is None:
            raise DecryptionError("message is encrypted but no privacy key was given")
        if len(priv_params) != 8:
            raise DecryptionError(
                f"msgPrivacyParameters has {len(priv_params)} octets, AES needs 8")
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + priv_params
        plain = cfb_decrypt(priv_key[:16], iv, buf[dstart:dstop])
        try:
            return _scoped(plain, msg_id, max_size, flags, engine_id, boots,
                           engine_time, user_name, lenient_tail=True)
        except BERError as e:
            raise DecryptionError(
                f"decrypted scopedPDU is malformed (wrong privacy password?): {e}") from None
    return _scoped(buf[p:stop], msg_id, max_size, flags, engine_id, boots, engine_time,
                   user_name, lenient_tail=False)


def _scoped(plain: bytes, msg_id, max_size, flags, engine_id, boots, engine_time,
            user_name, lenient_tail: bool) -> V3Message:
    end = len(plain)
    start, stop = _expect(plain, 0, end, SEQUENCE, "ScopedPDU")
    # Decrypted data may carry padding after the ScopedPDU (RFC 3414 8.3.2 allows it
    # for DES; the digest already authenticated it). Plaintext may not.
    if stop != end and not lenient_tail:
        raise BERError(f"ScopedPDU: {end - stop} trailing octets")
    ctx_engine, q = _read_octets(plain, start, stop, "contextEngineID")
    ctx_name, q = _read_octets(plain, q, stop, "contextName")
    pdu = decode_pdu(plain, q, stop)
    return V3Message(msg_id, max_size, flags, engine_id, boots, engine_time, user_name,
                     ctx_engine, ctx_name, pdu)


def report_reason(pdu: PDU) -> str:
    """The name of the counter a Report PDU carries (``"usmStatsUnknownEngineIDs"``
    ...), or its dotted OID when it is not a USM/MPD counter."""
    for oid, _tag, _value in pdu.varbinds:
        name = USM_STATS.get(oid)
        return name if name else oid_to_str(oid)
    return "empty report"


# --------------------------------------------------------------- discovery


def encode_discovery_probe(msg_id: int, request_id: int) -> bytes:
    """The engine-discovery request of RFC 3414 4: noAuthNoPriv, reportable, empty
    engine ID and user, a GetRequest with no varbinds."""
    pdu = _tlv(GET_REQUEST, encode_integer(request_id) + b"\x02\x01\x00\x02\x01\x00\x30\x00")
    return encode_v3_message(msg_id, encode_scoped_pdu(pdu), engine_id=b"", boots=0,
                             engine_time=0, user_name=b"")


def parse_discovery_report(data: bytes | V3Message) -> EngineState:
    """Learn the authoritative engine's ID, boots and time from the Report answering
    :func:`encode_discovery_probe`. Raises :class:`Unsupported` when the answer is not
    such a report (e.g. an authenticated message: let pysnmp handle it)."""
    msg = data if isinstance(data, V3Message) else decode_v3_message(data)
    if msg.pdu.pdu_type != REPORT:
        raise Unsupported(f"discovery answer is PDU type 0x{msg.pdu.pdu_type:02x}, not a Report")
    if not 5 <= len(msg.engine_id) <= 32:
        raise BERError(f"discovery report carries an engine ID of {len(msg.engine_id)} octets")
    return EngineState(msg.engine_id, msg.engine_boots, msg.engine_time)


# ------------------------------------------------------------------- session


class UsmSession:
    """One USM user talking authPriv (HMAC-SHA-96 / AES-128-CFB) to one agent.

    Typical use: ``probe = s.discovery_probe(mid, rid)`` then ``s.learn(reply)`` (or
    pass a known ``engine``); then for each poll ``s.encode_request(mid, pdu_bytes)``
    and ``s.decode_response(reply)``. ``decode_response`` raises
    :class:`ReportReceived` for Report PDUs, after resynchronising the engine clock
    when the report is an authenticated usmStatsNotInTimeWindows (so a retry succeeds).
    """

    __slots__ = ("user", "auth_password", "priv_password", "engine", "context_name",
                 "max_size", "_keys", "_consts")

    def __init__(self, user: bytes | str, auth_password: bytes | str,
                 priv_password: bytes | str, engine: EngineState | None = None,
                 context_name: bytes | str = b"", max_size: int = MAX_MESSAGE_SIZE):
        self.user = _as_bytes(user)
        self.auth_password = _as_bytes(auth_password)
        self.priv_password = _as_bytes(priv_password)
        self.engine = engine
        self.context_name = _as_bytes(context_name)
        self.max_size = max_size
        self._keys = None if engine is None else localized_keys(
            self.auth_password, self.priv_password, engine.engine_id)
        self._consts: tuple | None = None  # encode_request's constant parts, for one engine ID

    @property
    def keys(self) -> tuple:
        if self._keys is None:
            raise USMError("engine not discovered yet")
        return self._keys

    def discovery_probe(self, msg_id: int, request_id: int) -> bytes:
        return encode_discovery_probe(msg_id, request_id)

    def learn(self, data: bytes) -> EngineState:
        """Take the engine ID, boots and time from a discovery report."""
        self.engine = parse_discovery_report(data)
        self._keys = localized_keys(self.auth_password, self.priv_password,
                                    self.engine.engine_id)
        return self.engine

    def encode_request(self, msg_id: int, pdu: bytes) -> bytes:
        """An authPriv request carrying the encoded ``pdu``: the octets
        :func:`encode_v3_message` makes (the tests compare them), with what does not
        change between this session's requests (engine ID, user, context, msgMaxSize,
        flags) encoded once."""
        engine = self.engine
        if engine is None:
            raise USMError("engine not discovered yet")
        if not 0 <= msg_id <= 0x7FFFFFFF:
            raise ValueError(f"msgID {msg_id} outside 0..2147483647")
        auth_key, priv_key = self.keys
        c = self._consts
        if c is None or c[0] is not engine.engine_id:
            engine_octets = encode_octets(engine.engine_id)
            c = self._consts = (
                engine.engine_id, engine_octets + encode_octets(self.context_name),
                encode_integer(self.max_size) + bytes((OCTET_STRING, 1, FLAG_REPORTABLE | FLAG_AUTH | FLAG_PRIV))
                + b"\x02\x01\x03", engine_octets, encode_octets(self.user) + b"\x04\x0c" + _ZERO_AUTH + b"\x04\x08")
        boots, engine_time, salt = engine.boots, engine.now(), _next_salt()
        encrypted = cfb_encrypt(priv_key[:16], boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt,
                                _tlv(SEQUENCE, c[1] + pdu))
        header = _tlv(SEQUENCE, encode_integer(msg_id) + c[2])
        usm_pre = c[3] + encode_integer(boots) + encode_integer(engine_time)
        usm = _tlv(SEQUENCE, usm_pre + c[4] + salt)
        sec = _tlv(OCTET_STRING, usm)
        body = b"\x02\x01\x03" + header + sec + _tlv(OCTET_STRING, encrypted)
        whole = _tlv(SEQUENCE, body)
        # the digest's offset: the headers of the message, of msgSecurityParameters and of
        # UsmSecurityParameters, msgVersion, msgGlobalData, then the USM fields before it
        usm_content = len(usm_pre) + len(c[4]) + len(salt)
        in_usm = len(usm_pre) + len(c[4]) - _AUTH_LEN - 2  # c[4] ends with the digest and "04 08"
        at = (len(whole) - len(body)) + 3 + len(header) + (len(sec) - len(usm)) + (len(usm) - usm_content) + in_usm
        mac = hmac.digest(auth_key, whole, "sha1")[:_AUTH_LEN]
        return whole[:at] + mac + whole[at + _AUTH_LEN:]

    def decode_response(self, data: bytes) -> V3Message:
        """Decode and check a reply: authentic, decrypted, from the expected engine and
        user, in the time window, and authPriv unless it is a Report."""
        engine = self.engine
        if engine is None:
            raise USMError("engine not discovered yet")
        auth_key, priv_key = self.keys
        msg = decode_v3_message(data, auth_key, priv_key)
        authentic = bool(msg.flags & FLAG_AUTH)
        if authentic:
            if msg.engine_id != engine.engine_id:
                raise AuthenticationError(
                    f"reply from engine {msg.engine_id.hex()}, expected {engine.engine_id.hex()}")
            if msg.user_name != self.user:
                raise AuthenticationError(f"reply for user {msg.user_name!r}, expected {self.user!r}")
        if msg.pdu.pdu_type == REPORT:
            reason = report_reason(msg.pdu)
            if authentic and reason == "usmStatsNotInTimeWindows":
                # RFC 3414 3.2.7 a/b: an authentic report resets the clock.
                engine.boots, engine.time = msg.engine_boots, msg.engine_time
                engine.learned_at = _time.monotonic()
            raise ReportReceived(reason, msg)
        if msg.flags & (FLAG_AUTH | FLAG_PRIV) != FLAG_AUTH | FLAG_PRIV:
            raise SecurityLevelError(f"reply is not authPriv (msgFlags 0x{msg.flags:02x})")
        engine.receive(msg.engine_boots, msg.engine_time)
        return msg
