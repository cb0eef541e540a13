"""Differential tests of the fast-path SNMP codec (ctfleet.monitors.ber/usm) against
pysnmp 7, the reference implementation: what ours encodes, pysnmp decodes (and
usually encodes to the same octets); what pysnmp encodes, ours decodes to the same
values. SNMPv3 runs through pysnmp's own message-processing and USM code, acting as
the agent, offline (no sockets)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import pytest
from pyasn1.codec.ber import decoder as pyasn1_decoder
from pyasn1.codec.ber import encoder as pyasn1_encoder
from pyasn1.type import univ
from pysnmp.proto import api
from pysnmp.proto.secmod.rfc3414 import localkey
from pysnmp.proto.secmod.rfc3414.auth import hmacsha
from pysnmp.proto.secmod.rfc3826.priv import aes as pysnmp_aes

from ctfleet.monitors import ber, usm
from ctfleet.monitors.ber import BERError, Unsupported

v2c = api.v2c

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
IF_OPER = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_HC_IN = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)


# ------------------------------------------------------------------- helpers


def pyasn1_pads(value: int) -> bool:
    """pyasn1 encodes negative powers of two with a redundant 0xFF octet (-128 as
    ff 80 rather than 80, X.690 8.3.2); ours is minimal, so the octets differ there
    while both decoders agree on the value."""
    return value in (-(2**7), -(2**15), -(2**23), -(2**31))


def pysnmp_message(pdu, community=b"public"):
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return pyasn1_encoder.encode(msg)


def pysnmp_decode(data):
    msg, rest = pyasn1_decoder.decode(data, asn1Spec=v2c.Message())
    assert rest == b""
    return msg


def pysnmp_response(request_id, varbinds, error_status=0, error_index=0):
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_error_status(pdu, error_status)
    v2c.apiPDU.set_error_index(pdu, error_index)
    v2c.apiPDU.set_varbinds(pdu, varbinds)
    return pdu


def to_pysnmp_value(tag, value):
    """Our (tag, value) -> the pysnmp value object."""
    return {
        ber.INTEGER: lambda v: v2c.Integer(v),
        ber.OCTET_STRING: lambda v: v2c.OctetString(v),
        ber.NULL: lambda v: v2c.null,
        ber.OBJECT_IDENTIFIER: lambda v: v2c.ObjectIdentifier(v),
        ber.IP_ADDRESS: lambda v: v2c.IpAddress(v),
        ber.COUNTER32: lambda v: v2c.Counter32(v),
        ber.GAUGE32: lambda v: v2c.Gauge32(v),
        ber.TIME_TICKS: lambda v: v2c.TimeTicks(v),
        ber.COUNTER64: lambda v: v2c.Counter64(v),
        ber.NO_SUCH_OBJECT: lambda v: v2c.NoSuchObject(""),
        ber.NO_SUCH_INSTANCE: lambda v: v2c.NoSuchInstance(""),
        ber.END_OF_MIB_VIEW: lambda v: v2c.EndOfMibView(""),
    }[tag](value)


def from_pysnmp_value(obj):
    """A pysnmp value object -> our (tag, value)."""
    tag = obj.tagSet[0]
    t = (tag.tagClass | tag.tagFormat | tag.tagId)
    if t in (ber.OCTET_STRING, ber.IP_ADDRESS):
        return t, obj.asOctets()
    if t == ber.OBJECT_IDENTIFIER:
        return t, tuple(obj)
    if t == ber.NULL or t in ber.EXCEPTION_TAGS:
        return t, None
    return t, int(obj)


# Every value type of the fast path, with edge values.
TYPED_VALUES = [
    (ber.INTEGER, 0), (ber.INTEGER, 1), (ber.INTEGER, -1), (ber.INTEGER, 127),
    (ber.INTEGER, 128), (ber.INTEGER, -128), (ber.INTEGER, -129),
    (ber.INTEGER, 2**31 - 1), (ber.INTEGER, -(2**31)),
    (ber.OCTET_STRING, b""), (ber.OCTET_STRING, b"Cisco IOS XE 17.9"),
    (ber.OCTET_STRING, bytes(range(256))), (ber.OCTET_STRING, b"\x00\xff" * 200),
    (ber.OCTET_STRING, "Équipement région Drâa-Tafilalet".encode()),
    (ber.OCTET_STRING, b"x" * 65535),  # the SMI maximum, 3-octet long-form length
    (ber.NULL, None),
    (ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 9, 1, 1208)),
    (ber.OBJECT_IDENTIFIER, (0, 0)), (ber.OBJECT_IDENTIFIER, (2, 999, 3)),
    (ber.OBJECT_IDENTIFIER, (1, 3) + (2**32 - 1,) * 10),
    (ber.IP_ADDRESS, bytes((10, 0, 0, 1))), (ber.IP_ADDRESS, bytes((255, 255, 255, 255))),
    (ber.IP_ADDRESS, bytes(4)),
    (ber.COUNTER32, 0), (ber.COUNTER32, 2**31), (ber.COUNTER32, 2**32 - 1),
    (ber.GAUGE32, 10000), (ber.GAUGE32, 2**32 - 1),
    (ber.TIME_TICKS, 0), (ber.TIME_TICKS, 123456789), (ber.TIME_TICKS, 2**32 - 1),
    (ber.COUNTER64, 0), (ber.COUNTER64, 2**32), (ber.COUNTER64, 2**63),
    (ber.COUNTER64, 2**64 - 1), (ber.COUNTER64, 18_000_000_000_000_000_000),
    (ber.NO_SUCH_OBJECT, None), (ber.NO_SUCH_INSTANCE, None), (ber.END_OF_MIB_VIEW, None),
]
TYPED_IDS = [f"{ber._TYPE_NAMES[t]}-{i}" for i, (t, _v) in enumerate(TYPED_VALUES)]

OIDS = [
    SYS_UPTIME,
    (1, 3),
    (0, 39),
    (2, 25, 1),
    (1, 3, 6, 1, 4, 1, 2021, 10, 1, 3, 1),
    (1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 2**31),
    (1, 3, 6, 1, 4, 1) + (2**32 - 1, 0, 127, 128, 16383, 16384, 2**21, 2**28),
    (1, 3) + tuple(range(126)),  # 128 arcs, the SMI maximum
    (2, 2**32 - 1 - 80, 5),
]


# ------------------------------------------------------------------ OID text


def test_oid_text_round_trip():
    assert ber.oid_from_str("1.3.6.1.2.1.1.3.0") == SYS_UPTIME
    assert ber.oid_from_str(".1.3.6.1.2.1.1.3.0") == SYS_UPTIME
    assert ber.oid_to_str(SYS_UPTIME) == "1.3.6.1.2.1.1.3.0"
    for oid in OIDS:
        assert ber.oid_from_str(ber.oid_to_str(oid)) == oid


@pytest.mark.parametrize("text", ["", "1", "3.1", "1.40", "1.3.x", "1..3",
                                  "1.3.4294967296", "1.3.-1", ".".join(["1"] * 129)])
def test_oid_text_rejects_invalid(text):
    with pytest.raises(ValueError):
        ber.oid_from_str(text)


# -------------------------------------------------- requests: ours -> pysnmp


def _pysnmp_request(pdu_cls, api_pdu, request_id, oids, **bulk):
    pdu = pdu_cls()
    api_pdu.set_defaults(pdu)
    api_pdu.set_request_id(pdu, request_id)
    if bulk:
        api_pdu.set_non_repeaters(pdu, bulk["non_repeaters"])
        api_pdu.set_max_repetitions(pdu, bulk["max_repetitions"])
    api_pdu.set_varbinds(pdu, [(o, v2c.null) for o in oids])
    return pdu


@pytest.mark.parametrize("request_id", [0, 1, 127, 128, 0x800000, 2**31 - 1, -1, -(2**31)])
@pytest.mark.parametrize("community", [b"public", b"", b"c\x00mmunit\xff" * 20])
def test_get_request_matches_pysnmp(request_id, community):
    ours = ber.encode_get(community, request_id, [SYS_UPTIME, SYS_DESCR])
    ref = pysnmp_message(_pysnmp_request(v2c.GetRequestPDU, v2c.apiPDU, request_id,
                                         [SYS_UPTIME, SYS_DESCR]), community)
    assert (ours == ref) != pyasn1_pads(request_id)
    assert ber.decode_message(ref) == ber.decode_message(ours)
    msg = pysnmp_decode(ours)
    assert bytes(v2c.apiMessage.get_community(msg)) == community
    pdu = v2c.apiMessage.get_pdu(msg)
    assert isinstance(pdu, v2c.GetRequestPDU)
    assert int(v2c.apiPDU.get_request_id(pdu)) == request_id


@pytest.mark.parametrize("oid", OIDS, ids=[ber.oid_to_str(o)[:40] for o in OIDS])
def test_get_next_request_oids_match_pysnmp(oid):
    ours = ber.encode_get_next(b"public", 4242, [oid])
    ref = pysnmp_message(_pysnmp_request(v2c.GetNextRequestPDU, v2c.apiPDU, 4242, [oid]))
    assert ours == ref
    pdu = v2c.apiMessage.get_pdu(pysnmp_decode(ours))
    assert isinstance(pdu, v2c.GetNextRequestPDU)
    assert [tuple(o) for o, _v in v2c.apiPDU.get_varbinds(pdu)] == [oid]


@pytest.mark.parametrize("non_repeaters,max_repetitions", [(0, 8), (1, 10), (2, 0), (0, 2**31 - 1)])
def test_get_bulk_request_matches_pysnmp(non_repeaters, max_repetitions):
    oids = [SYS_UPTIME, IF_OPER, IF_HC_IN]
    ours = ber.encode_get_bulk(b"public", 77, oids, non_repeaters, max_repetitions)
    ref = pysnmp_message(_pysnmp_request(
        v2c.GetBulkRequestPDU, v2c.apiBulkPDU, 77, oids,
        non_repeaters=non_repeaters, max_repetitions=max_repetitions))
    assert ours == ref
    pdu = v2c.apiMessage.get_pdu(pysnmp_decode(ours))
    assert int(v2c.apiBulkPDU.get_non_repeaters(pdu)) == non_repeaters
    assert int(v2c.apiBulkPDU.get_max_repetitions(pdu)) == max_repetitions
    # and ours reads back what it wrote
    p = ber.decode_message(ours).pdu
    assert (p.pdu_type, p.non_repeaters, p.max_repetitions) == (
        ber.GET_BULK_REQUEST, non_repeaters, max_repetitions)
    assert [vb[0] for vb in p.varbinds] == oids


@pytest.mark.parametrize("request_id", [ber.REQUEST_ID_MIN, 0x01234567, 0x7FFFFFFE, ber.REQUEST_ID_MAX])
def test_request_template_patches_request_id(request_id):
    oids = [IF_OPER, IF_HC_IN]
    t = ber.RequestTemplate(ber.GET_BULK_REQUEST, oids, b"public", 0, 8)
    assert t.encode(request_id) == ber.encode_get_bulk(b"public", request_id, oids, 0, 8)
    t = ber.RequestTemplate(ber.GET_REQUEST, ["1.3.6.1.2.1.1.3.0", SYS_DESCR], "public")
    assert t.encode(request_id) == ber.encode_get(b"public", request_id, [SYS_UPTIME, SYS_DESCR])
    bare = ber.RequestTemplate(ber.GET_REQUEST, [SYS_UPTIME])
    assert bare.encode(request_id) == ber.encode_pdu(ber.GET_REQUEST, request_id, [SYS_UPTIME])
    pdu = v2c.apiMessage.get_pdu(pysnmp_decode(t.encode(request_id)))
    assert int(v2c.apiPDU.get_request_id(pdu)) == request_id


@pytest.mark.parametrize("request_id", [0, ber.REQUEST_ID_MIN - 1, 2**31, -5])
def test_request_template_rejects_ids_that_change_length(request_id):
    t = ber.RequestTemplate(ber.GET_REQUEST, [SYS_UPTIME], b"public")
    with pytest.raises(ValueError):
        t.encode(request_id)


# ------------------------------------------------- responses: pysnmp -> ours


@pytest.mark.parametrize("tag,value", TYPED_VALUES, ids=TYPED_IDS)
def test_decode_pysnmp_response_every_type(tag, value):
    oid = (1, 3, 6, 1, 4, 1, 99999, 1, 2**31 + 5)
    data = pysnmp_message(pysnmp_response(0x1234567, [(oid, to_pysnmp_value(tag, value))]))
    msg = ber.decode_message(data)
    assert msg.version == 1 and msg.community == b"public"
    assert msg.pdu.pdu_type == ber.RESPONSE
    assert msg.pdu.request_id == 0x1234567
    assert msg.pdu.varbinds == [(oid, tag, value)]
    # the reverse direction, and byte equality with pysnmp's encoder
    ours = ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, 0x1234567, [(oid, tag, value)]))
    assert (ours == data) != (tag == ber.INTEGER and pyasn1_pads(value))
    got = v2c.apiPDU.get_varbinds(v2c.apiMessage.get_pdu(pysnmp_decode(ours)))
    assert [(tuple(o), from_pysnmp_value(v)) for o, v in got] == [(oid, (tag, value))]


def test_decode_pysnmp_response_all_types_together_and_errors():
    varbinds = [((1, 3, 6, 1, 4, 1, 1, i), t, v) for i, (t, v) in enumerate(TYPED_VALUES)
                if not (t == ber.OCTET_STRING and len(v) > 1000)]
    data = pysnmp_message(
        pysnmp_response(-5, [(o, to_pysnmp_value(t, v)) for o, t, v in varbinds],
                        error_status=5, error_index=3),
        community=b"s3cr\xe9t")
    msg = ber.decode_message(data)
    assert msg.community == b"s3cr\xe9t"
    assert msg.pdu == ber.PDU(ber.RESPONSE, -5, 5, 3, varbinds)


def test_decode_typical_poll_responses():
    get = pysnmp_message(pysnmp_response(0x00ABCDEF, [
        (SYS_UPTIME, v2c.TimeTicks(8_640_000)),
        (SYS_DESCR, v2c.OctetString(b"Linux cr-rabat-01 5.10.0 #1 SMP x86_64")),
    ]))
    p = ber.decode_message(get).pdu
    assert p.varbinds == [(SYS_UPTIME, ber.TIME_TICKS, 8_640_000),
                          (SYS_DESCR, ber.OCTET_STRING, b"Linux cr-rabat-01 5.10.0 #1 SMP x86_64")]
    bulk_vbs = []
    for i in range(1, 9):
        bulk_vbs.append((IF_OPER + (i,), v2c.Integer(1 if i % 3 else 2)))
        bulk_vbs.append((IF_HC_IN + (i,), v2c.Counter64(i * 10**12)))
    p = ber.decode_message(pysnmp_message(pysnmp_response(1, bulk_vbs))).pdu
    assert len(p.varbinds) == 16
    assert p.varbinds[1] == (IF_HC_IN + (1,), ber.COUNTER64, 10**12)


def test_decode_accepts_bytearray_and_memoryview():
    data = pysnmp_message(pysnmp_response(9, [(SYS_UPTIME, v2c.TimeTicks(1))]))
    assert ber.decode_message(bytearray(data)) == ber.decode_message(memoryview(data))


def test_decode_non_minimal_but_valid_ber_from_other_encoders():
    # Long-form lengths where short form would do, and integers with a redundant
    # leading octet, are valid BER some agents send; pysnmp accepts them, so do we.
    vb = b"\x30\x81\x0e\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x02\x00\x05"
    body = b"\x02\x02\x00\x07\x02\x01\x00\x02\x01\x00\x30\x81" + bytes([len(vb)]) + vb
    pdu = b"\xa2\x82" + len(body).to_bytes(2, "big") + body
    body = b"\x02\x01\x01\x04\x06public" + pdu
    data = b"\x30\x81" + bytes([len(body)]) + body
    ref = v2c.apiPDU.get_varbinds(v2c.apiMessage.get_pdu(pysnmp_decode(data)))
    assert ber.decode_message(data).pdu.varbinds == [(SYS_UPTIME, ber.TIME_TICKS, 5)]
    assert int(ref[0][1]) == 5


# ------------------------------------------------------------ strictness


def _response(varbind_tlvs: bytes, request_id=b"\x02\x01\x01") -> bytes:
    vbl = bytes([0x30, len(varbind_tlvs)]) + varbind_tlvs
    pdu_body = request_id + b"\x02\x01\x00\x02\x01\x00" + vbl
    pdu = bytes([0xA2, len(pdu_body)]) + pdu_body
    body = b"\x02\x01\x01\x04\x06public" + pdu
    return bytes([0x30, len(body)]) + body


GOOD = _response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05")


def test_good_reference_message():
    assert ber.decode_message(GOOD).pdu.varbinds == [(SYS_UPTIME, ber.TIME_TICKS, 5)]


@pytest.mark.parametrize("data,fragment", [
    (b"", "truncated"),
    (GOOD[:-1], "exceeds"),
    (GOOD[:10], "exceeds"),
    (GOOD + b"\x00", "trailing"),
    (b"\x31" + GOOD[1:], "expected tag 0x30"),
    (b"\x30\x80" + GOOD[2:] + b"\x00\x00", "indefinite"),
    (b"\x30\x85\x00\x00\x00\x00\x10" + GOOD[2:], "oversized"),
    (b"\x30\x84\xff\xff\xff\xff" + GOOD[2:], "exceeds"),
    (GOOD.replace(b"\xa2", b"\xaf", 1), "unknown PDU tag"),
    (GOOD.replace(b"\x02\x01\x01\x04\x06", b"\x02\x01\x07\x04\x06", 1), "unknown SNMP version"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05",
               request_id=b"\x02\x00"), "no content"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x81\x43\x01\x05"), "truncated"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x80\x01\x03\x00\x43\x01\x05"), "non-minimal"),
    (_response(b"\x30\x0f\x06\x0a\x2b\x06\x01\x02\x01\x90\x80\x80\x80\x00\x43\x01\x05"), "32 bits"),
    (_response(b"\x30\x05\x06\x00\x43\x01\x05"), "no content"),
    (_response(b"\x30\x0d\x04\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05"), "expected OBJECT IDENTIFIER"),
    (_response(b"\x30\x0e\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05\x00"), "trailing"),
    (_response(b"\x30\x11\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x41\x05\x01\x00\x00\x00\x00"), "Counter32 value"),
    (_response(b"\x30\x10\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x41\x04\xff\xff\xff\xff"), "Counter32 value"),
    (_response(b"\x30\x16\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x46\x0a" + b"\x01" * 10), "Counter64 of 10"),
    (_response(b"\x30\x11\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x02\x05\x00\x80\x00\x00\x00"), "Integer32"),
    (_response(b"\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x02\x00"), "INTEGER of 0"),
    (_response(b"\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x41\x00"), "Counter32 of 0"),
    (_response(b"\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x46\x00"), "Counter64 of 0"),
    (_response(b"\x30\x0f\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x40\x03\x0a\x00\x01"), "IpAddress of 3"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x05\x01\x00"), "NULL at offset"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x80\x01\x00"), "noSuchObject at"),
    (_response(b"\x30\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x03\x01\x00"), "unknown tag 0x03"),
    (_response(b"\x31\x0d\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05"), "expected SEQUENCE"),
    (_response(b"\x30\x20\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x01\x05"), "exceeds"),
    (GOOD.replace(b"\x02\x01\x00\x02\x01\x00", b"\x02\x01\x13\x02\x01\x00", 1), "error-status 19"),
    (GOOD.replace(b"\x02\x01\x00\x02\x01\x00", b"\x02\x01\x00\x02\x01\xff", 1), "negative"),
])
def test_decoder_rejects_malformed(data, fragment):
    with pytest.raises(BERError, match=fragment):
        ber.decode_message(data)


@pytest.mark.parametrize("data,fragment", [
    (GOOD.replace(b"\x02\x01\x01\x04\x06", b"\x02\x01\x03\x04\x06", 1), "SNMPv3"),
    (GOOD.replace(b"\xa2", b"\xa4", 1), "Trap"),
    (_response(b"\x30\x0e\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x44\x02\x9f\x78"), "0x44"),
    (_response(b"\x30\x10\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x24\x04\x04\x02ab"), "0x24"),
])
def test_decoder_flags_unsupported_for_pysnmp_fallback(data, fragment):
    with pytest.raises(Unsupported, match=fragment):
        ber.decode_message(data)


def test_snmpv1_messages_round_trip_and_match_pysnmp():
    """SNMPv1 (version 0) GET/GETNEXT/Response share the v2 PDU layout: the codec reads
    and writes them, and pysnmp's v1 codec agrees both ways."""
    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api

    v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
    sent = ber.encode_message(b"public", ber.encode_pdu(ber.GET_NEXT_REQUEST, 0x01020304,
                                                        [ber.oid_from_str("1.3.6.1.2.1.2.2.1.10")]), version=0)
    msg, _ = decoder.decode(sent, asn1Spec=v1.Message())
    assert int(v1.apiMessage.get_version(msg) if hasattr(v1.apiMessage, "get_version") else msg[0]) == 0
    assert int(v1.apiPDU.get_request_id(v1.apiMessage.get_pdu(msg))) == 0x01020304
    # a v1 Response from pysnmp: noSuchName (2) at index 1, as v1 agents end a walk
    resp = v1.Message()
    v1.apiMessage.set_defaults(resp)
    v1.apiMessage.set_community(resp, "public")
    pdu = v1.GetResponsePDU()
    v1.apiPDU.set_defaults(pdu)
    v1.apiPDU.set_request_id(pdu, 77)
    v1.apiPDU.set_error_status(pdu, 2)
    v1.apiPDU.set_error_index(pdu, 1)
    v1.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 2, 1, 2, 2, 1, 10), v1.Null(""))])
    v1.apiMessage.set_pdu(resp, pdu)
    got = ber.decode_message(encoder.encode(resp))
    assert (got.version, got.community, got.pdu.request_id, got.pdu.error_status, got.pdu.error_index) == (
        0, b"public", 77, 2, 1)
    tpl = ber.RequestTemplate(ber.GET_REQUEST, ["1.3.6.1.2.1.1.3.0"], b"public", version=0)
    assert ber.decode_message(tpl.encode(0x00ABCDEF)).version == 0


def test_pysnmp_opaque_is_unsupported_not_malformed():
    data = pysnmp_message(pysnmp_response(1, [(SYS_UPTIME, v2c.Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00"))]))
    with pytest.raises(Unsupported):
        ber.decode_message(data)


def test_errors_are_value_errors_and_distinct():
    assert issubclass(BERError, ValueError)
    assert not issubclass(Unsupported, BERError)


@pytest.mark.parametrize("bad", [
    lambda: ber.encode_value(ber.INTEGER, 2**31),
    lambda: ber.encode_value(ber.COUNTER32, -1),
    lambda: ber.encode_value(ber.COUNTER64, 2**64),
    lambda: ber.encode_value(ber.IP_ADDRESS, b"\x01\x02\x03"),
    lambda: ber.encode_value(ber.NULL, 0),
    lambda: ber.encode_oid((1,)),
    lambda: ber.encode_oid((1, 40)),
    lambda: ber.encode_oid((3, 1)),
    lambda: ber.encode_oid((1, 3, 2**32)),
    lambda: ber.encode_pdu(ber.GET_REQUEST, 2**31, [SYS_UPTIME]),
])
def test_encoder_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        bad()


# -------------------------------------------------------- USM: key derivation

MAPLE_ENGINE = bytes.fromhex("000000000000000000000002")


def test_rfc3414_a32_sha_test_vector():
    ku = usm.password_to_key_sha("maplesyrup")
    assert ku.hex() == "9fb5cc0381497b3793528939ff788d5d79145211"  # RFC 3414 A.3.2
    kul = usm.localize_key_sha(ku, MAPLE_ENGINE)
    assert kul.hex() == "6695febc9288e36282235fc7151f128497b38f3f"
    auth, priv = usm.localized_keys("maplesyrup", b"maplesyrup", MAPLE_ENGINE)
    assert auth == kul and priv == kul[:16]


@pytest.mark.parametrize("password", ["maplesyrup", "authpassword1", "p" * 8, "é-très-long-" * 30])
@pytest.mark.parametrize("engine_id", [MAPLE_ENGINE, bytes.fromhex("80001f8880aabbccdd00112233"), b"\x80" + bytes(31)])
def test_key_derivation_matches_pysnmp(password, engine_id):
    ref_ku = localkey.hash_passphrase_sha(password.encode())
    assert usm.password_to_key_sha(password) == ref_ku.asOctets()
    ref_auth = hmacsha.HmacSha().localize_key(ref_ku, univ.OctetString(engine_id))
    ref_priv_ku = pysnmp_aes.Aes().hash_passphrase(hmacsha.HmacSha.SERVICE_ID, password.encode())
    ref_priv = pysnmp_aes.Aes().localize_key(hmacsha.HmacSha.SERVICE_ID, ref_priv_ku,
                                             univ.OctetString(engine_id))
    assert usm.localized_keys(password, password, engine_id) == (ref_auth.asOctets(), ref_priv.asOctets())


def test_localized_keys_are_cached():
    usm.localized_keys.cache_clear()
    usm.localized_keys("cachepassword", "cachepassword2", MAPLE_ENGINE)
    usm.localized_keys("cachepassword", "cachepassword2", MAPLE_ENGINE)
    info = usm.localized_keys.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_short_passwords_rejected():
    with pytest.raises(ValueError, match="8 characters"):
        usm.password_to_key_sha("short")


def test_aes_cfb_matches_pysnmp_encryption():
    _auth, priv = usm.localized_keys("privpassword1", "privpassword1", MAPLE_ENGINE)
    scoped = usm.encode_scoped_pdu(ber.encode_pdu(ber.GET_REQUEST, 5, [SYS_UPTIME]), MAPLE_ENGINE)
    salt = bytes.fromhex("0123456789abcdef")
    ours = usm.encode_v3_message(9, scoped, engine_id=MAPLE_ENGINE, boots=3, engine_time=1000,
                                 user_name=b"u", auth_key=_auth, priv_key=priv, salt=salt)
    ref = pysnmp_aes.Aes()
    ref.local_int = int.from_bytes(salt, "big")
    ct, ref_salt = ref.encrypt_data(univ.OctetString(priv), (3, 1000, None), scoped)
    assert ref_salt.asOctets() == salt
    assert ct.asOctets() in ours
    plain = ref.decrypt_data(univ.OctetString(priv), (3, 1000, univ.OctetString(salt)), ct)
    assert plain == scoped
    # pysnmp's HMAC-SHA-96 verifies our digest
    msg = usm.decode_v3_message(ours, _auth, priv)
    at = ours.index(b"\x04\x01u\x04\x0c") + 5  # msgUserName "u", then the digest
    digest = ours[at:at + 12]
    hmacsha.HmacSha().authenticate_incoming_message(univ.OctetString(_auth), univ.OctetString(digest), ours)
    assert msg.pdu.varbinds == [(SYS_UPTIME, ber.NULL, None)]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 70, 255, 256, 257, 600, 1500])
def test_cfb_on_a_kept_ecb_context_matches_cryptography_cfb(length):
    """usm's CFB chaining over one AES-ECB context per key (kept across messages) gives
    the octets of cryptography's own AES-CFB128, both ways, for every length class
    (empty, partial block, whole blocks, the per-block loop and the long path), with
    the same key reused under other IVs, and leading zero octets kept."""
    import os

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB
    key = os.urandom(16)
    for data in (os.urandom(length), bytes(length)):
        for _ in range(3):
            iv = os.urandom(16)
            enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
            ref = enc.update(data) + enc.finalize()
            assert usm.cfb_encrypt(key, iv, data) == ref
            assert usm.cfb_decrypt(key, iv, ref) == data
            assert len(usm.cfb_decrypt(key, iv, ref)) == length


@pytest.mark.parametrize("user,context,varbinds,boots,engine_time", [
    (b"ctfleet", b"", 1, 3, 1000),
    (b"u" * 32, b"ctx", 40, 0x7FFFFFFF, 0x7FFFFFFF),  # long-form lengths, 4-octet integers
    (b"x", b"", 0, 0, 0),
])
def test_session_encode_request_is_encode_v3_message(user, context, varbinds, boots, engine_time):
    """UsmSession.encode_request (constant parts encoded once per session) makes the same
    octets as encode_v3_message for the same boots, time and salt, and its digest is at the
    right place (the message decodes and authenticates), for two engines."""
    pdu = ber.encode_pdu(ber.GET_BULK_REQUEST, 12345678, [(SYS_UPTIME[:-1] + (i,), ber.NULL, None)
                                                         for i in range(varbinds)], 0, 10)
    for engine_id in (MAPLE_ENGINE, bytes.fromhex("80001f8880aabbccdd00000002")):
        s = usm.UsmSession(user, "authpassword1", "privpassword1",
                           engine=usm.EngineState(engine_id, boots, engine_time), context_name=context)
        auth, priv = s.keys
        for msg_id in (0, 77, 0x7FFFFFFF):
            ours = s.encode_request(msg_id, pdu)
            f = usm._fields(ours)
            assert (f[0], f[3], f[4], f[6]) == (msg_id, engine_id, boots, user)
            ref = usm.encode_v3_message(msg_id, usm.encode_scoped_pdu(pdu, engine_id, context), engine_id=engine_id,
                                        boots=f[4], engine_time=f[5], user_name=user, auth_key=auth, priv_key=priv,
                                        salt=f[9])
            assert ours == ref
            msg = usm.decode_v3_message(ours, auth, priv)
            assert (msg.context_name, msg.pdu.request_id) == (context, 12345678)
        with pytest.raises(ValueError, match="msgID"):
            s.encode_request(-1, pdu)


# ------------------------------------ SNMPv3 through pysnmp's own USM, offline

AGENT_ENGINE = bytes.fromhex("80001f8880c7f1ee7100000001")
USER, AUTH_PW, PRIV_PW = "ctfleet", "authpassword1", "privpassword1"
UDP = (1, 3, 6, 1, 6, 1, 1)
PEER = ("127.0.0.1", 161)


class _Agent:
    """pysnmp's v3 message processing and USM acting as the agent, with a transport
    stub that captures the reports it sends."""

    def __init__(self):
        from pysnmp.entity import config, engine

        self.engine = engine.SnmpEngine(snmpEngineID=univ.OctetString(AGENT_ENGINE))
        config.add_v3_user(self.engine, USER, config.USM_AUTH_HMAC96_SHA, AUTH_PW,
                           config.USM_PRIV_CFB128_AES, PRIV_PW)
        self.sent: list[bytes] = []
        agent = self

        class _Transport:
            def send_message(self, msg, domain, addr):
                agent.sent.append(bytes(msg))

            def get_timer_resolution(self):
                return 0.5

        self.engine.transport_dispatcher = _Transport()
        self.mp = self.engine.message_processing_subsystems[3]

    @property
    def boots_time(self):
        boots, etime = self.engine.get_mib_builder().import_symbols(
            "__SNMP-FRAMEWORK-MIB", "snmpEngineBoots", "snmpEngineTime")
        return int(boots.syntax), int(etime.syntax.clone())

    def receive(self, data):
        """Process a request; return pysnmp's data elements."""
        return self.mp.prepare_data_elements(self.engine, UDP, PEER, data)

    def respond(self, elements, varbinds, error_status=0, error_index=0):
        (mpm, sm, sec_name, sec_level, ctx_engine, ctx_name, pdu_version, pdu, _pdu_type,
         _handle, max_size, _status, state_ref) = elements
        rsp = v2c.apiPDU.get_response(pdu)
        v2c.apiPDU.set_error_status(rsp, error_status)
        v2c.apiPDU.set_error_index(rsp, error_index)
        v2c.apiPDU.set_varbinds(rsp, varbinds)
        _dom, _addr, whole = self.mp.prepare_response_message(
            self.engine, mpm, sm, sec_name, sec_level, ctx_engine, ctx_name, pdu_version,
            rsp, max_size, state_ref, {})
        return bytes(whole)


@pytest.fixture
def agent():
    return _Agent()


def _session(agent, auth=AUTH_PW, priv=PRIV_PW):
    boots, etime = agent.boots_time
    return usm.UsmSession(USER, auth, priv, engine=usm.EngineState(AGENT_ENGINE, boots, etime))


def test_v3_discovery_against_pysnmp(agent):
    s = usm.UsmSession(USER, AUTH_PW, PRIV_PW)
    probe = s.discovery_probe(msg_id=7, request_id=99)
    with pytest.raises(Exception):  # pysnmp signals "report sent" by raising
        agent.receive(probe)
    assert len(agent.sent) == 1
    msg = usm.decode_v3_message(agent.sent[0])
    assert msg.msg_id == 7 and msg.pdu.pdu_type == ber.REPORT
    assert usm.report_reason(msg.pdu) == "usmStatsUnknownEngineIDs"
    state = s.learn(agent.sent[0])
    assert (state.engine_id, state.boots) == (AGENT_ENGINE, agent.boots_time[0])
    assert s.keys == usm.localized_keys(AUTH_PW, PRIV_PW, AGENT_ENGINE)


@pytest.mark.parametrize("pdu_type,bulk", [(ber.GET_REQUEST, None), (ber.GET_NEXT_REQUEST, None),
                                          (ber.GET_BULK_REQUEST, (0, 8))])
def test_v3_authpriv_request_accepted_by_pysnmp(agent, pdu_type, bulk):
    s = _session(agent)
    oids = [SYS_UPTIME, IF_OPER, IF_HC_IN]
    nr, mr = bulk or (0, 0)
    t = ber.RequestTemplate(pdu_type, oids, None, nr, mr)
    elements = agent.receive(s.encode_request(1234, t.encode(0x0ABCDEF0)))
    sec_name, sec_level, ctx_engine, pdu = elements[2], elements[3], elements[4], elements[7]
    assert (bytes(sec_name), int(sec_level), bytes(ctx_engine)) == (USER.encode(), 3, AGENT_ENGINE)
    assert int(v2c.apiPDU.get_request_id(pdu)) == 0x0ABCDEF0
    assert [tuple(o) for o, _v in v2c.apiPDU.get_varbinds(pdu)] == oids
    assert pdu.tagSet[0].tagId == pdu_type & 0x1F


def test_v3_pysnmp_response_every_type_decoded(agent):
    s = _session(agent)
    elements = agent.receive(s.encode_request(55, ber.encode_pdu(ber.GET_REQUEST, 0x1000001, [SYS_UPTIME])))
    varbinds = [((1, 3, 6, 1, 4, 1, 1, i), t, v) for i, (t, v) in enumerate(TYPED_VALUES)
                if not (t == ber.OCTET_STRING and len(v) > 1000)]
    data = agent.respond(elements, [(o, to_pysnmp_value(t, v)) for o, t, v in varbinds],
                         error_status=2, error_index=1)
    msg = s.decode_response(data)
    assert msg.msg_id == 55 and msg.flags & 3 == 3
    assert (msg.engine_id, msg.user_name, msg.context_engine_id) == (AGENT_ENGINE, USER.encode(), AGENT_ENGINE)
    assert msg.pdu == ber.PDU(ber.RESPONSE, 0x1000001, 2, 1, varbinds)


def test_v3_response_with_wrong_keys_or_tampering_rejected(agent):
    s = _session(agent)
    elements = agent.receive(s.encode_request(56, ber.encode_pdu(ber.GET_REQUEST, 1, [SYS_UPTIME])))
    data = agent.respond(elements, [(SYS_UPTIME, v2c.TimeTicks(42))])
    assert s.decode_response(data).pdu.varbinds == [(SYS_UPTIME, ber.TIME_TICKS, 42)]
    with pytest.raises(usm.AuthenticationError, match="digest mismatch"):
        _session(agent, auth="wrongpassword").decode_response(data)
    with pytest.raises(usm.DecryptionError):
        _session(agent, priv="wrongprivpass").decode_response(data)
    for i in (len(data) - 1, len(data) // 2, 20):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(ber.SNMPCodecError):
            s.decode_response(bytes(tampered))
    # digest must be verified even when it is merely absent
    with pytest.raises(usm.AuthenticationError):
        usm.decode_v3_message(data)


def test_v3_wrong_password_gets_wrong_digest_report_from_pysnmp(agent):
    s = _session(agent, auth="notthepassword")
    with pytest.raises(Exception):
        agent.receive(s.encode_request(60, ber.encode_pdu(ber.GET_REQUEST, 1, [SYS_UPTIME])))
    with pytest.raises(usm.ReportReceived) as e:
        s.decode_response(agent.sent[-1])
    assert e.value.reason == "usmStatsWrongDigests"


def test_v3_not_in_time_window_report_resynchronises(agent):
    boots, etime = agent.boots_time
    s = usm.UsmSession(USER, AUTH_PW, PRIV_PW,
                       engine=usm.EngineState(AGENT_ENGINE, boots - 1 if boots > 0 else 0, etime + 10_000))
    with pytest.raises(Exception):
        agent.receive(s.encode_request(61, ber.encode_pdu(ber.GET_REQUEST, 1, [SYS_UPTIME])))
    with pytest.raises(usm.ReportReceived) as e:
        s.decode_response(agent.sent[-1])
    assert e.value.reason == "usmStatsNotInTimeWindows"
    assert e.value.message.flags & usm.FLAG_AUTH  # pysnmp authenticates this report
    assert s.engine.boots == boots
    # the retry is in the window now
    elements = agent.receive(s.encode_request(62, ber.encode_pdu(ber.GET_REQUEST, 2, [SYS_UPTIME])))
    assert s.decode_response(agent.respond(elements, [(SYS_UPTIME, v2c.TimeTicks(1))])).msg_id == 62


def test_v3_time_window_checks():
    st = usm.EngineState(AGENT_ENGINE, boots=5, time=1000, learned_at=100.0)
    st.receive(5, 1010, at=110.0)  # in window
    st.receive(5, 900, at=110.0)   # 110 s behind: still inside 150 s
    with pytest.raises(usm.NotInTimeWindow):
        st.receive(5, 800, at=110.0)
    with pytest.raises(usm.NotInTimeWindow):
        st.receive(4, 1010, at=110.0)
    st.receive(6, 3, at=111.0)  # reboot: boots moves forward
    assert (st.boots, st.time, st.now(121.0)) == (6, 3, 13)


def test_v3_session_requires_authpriv_responses(agent):
    s = _session(agent)
    auth, _priv = s.keys
    scoped = usm.encode_scoped_pdu(ber.encode_pdu(ber.RESPONSE, 1, [(SYS_UPTIME, ber.TIME_TICKS, 1)]), AGENT_ENGINE)
    for keys in ({}, {"auth_key": auth}):
        data = usm.encode_v3_message(1, scoped, engine_id=AGENT_ENGINE, boots=s.engine.boots,
                                     engine_time=s.engine.now(), user_name=USER.encode(), **keys)
        with pytest.raises(usm.SecurityLevelError):
            s.decode_response(data)


def test_v3_decoder_structure_errors():
    with pytest.raises(Unsupported):
        usm.decode_v3_message(GOOD)  # a v2c message
    s = usm.UsmSession(USER, AUTH_PW, PRIV_PW, engine=usm.EngineState(AGENT_ENGINE, 1, 1))
    data = s.encode_request(3, ber.encode_pdu(ber.GET_REQUEST, 1, [SYS_UPTIME]))
    with pytest.raises(BERError, match="trailing"):
        usm.decode_v3_message(data + b"\x00", *s.keys)
    with pytest.raises(BERError):
        usm.decode_v3_message(data[:-3], *s.keys)
    # a user-based security model other than USM -> fallback
    swapped = data.replace(b"\x04\x01\x07\x02\x01\x03", b"\x04\x01\x07\x02\x01\x02", 1)
    with pytest.raises(Unsupported, match="security model"):
        usm.decode_v3_message(swapped, *s.keys)


# ------------------------------------- net-snmp's command-line tools
# scripts/setup installs them (Debian package snmp); a missing tool is a failure, not a skip.


def needs_snmpget(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        assert shutil.which("snmpget"), "net-snmp tools missing: run scripts/setup (Debian package snmp)"
        return fn(*a, **kw)

    return wrapper


class _FakeAgent:
    """A loopback UDP agent built on the codec, so net-snmp's snmpget can exchange
    real datagrams with it: net-snmp encodes the requests ours decodes, and decodes
    the responses ours encodes (v2c, and v3 discovery + authPriv)."""

    ENGINE = bytes.fromhex("80001f8880c7f1ee7100000002")

    def __init__(self, varbinds_for):
        self.varbinds_for = varbinds_for
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list = []
        self.errors: list = []
        self.keys = usm.localized_keys(AUTH_PW, PRIV_PW, self.ENGINE)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            try:
                reply = self._handle(data)
            except Exception as e:  # reported by the test
                self.errors.append(e)
                continue
            self.sock.sendto(reply, peer)

    def _handle(self, data):
        try:
            msg = ber.decode_message(data)
        except Unsupported:  # an SNMPv3 message: ber hands it over to usm
            msg = usm.decode_v3_message(data, *self.keys)
            self.seen.append(msg)
            if not msg.engine_id:  # discovery
                pdu = ber.encode_pdu(ber.REPORT, msg.pdu.request_id, [
                    ((1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0), ber.COUNTER32, 1)])
                return usm.encode_v3_message(
                    msg.msg_id, usm.encode_scoped_pdu(pdu, self.ENGINE), engine_id=self.ENGINE,
                    boots=7, engine_time=1000, user_name=msg.user_name, reportable=False)
            pdu = ber.encode_pdu(ber.RESPONSE, msg.pdu.request_id, self.varbinds_for(msg.pdu))
            return usm.encode_v3_message(
                msg.msg_id, usm.encode_scoped_pdu(pdu, self.ENGINE), engine_id=self.ENGINE,
                boots=7, engine_time=1000, user_name=msg.user_name, auth_key=self.keys[0],
                priv_key=self.keys[1], reportable=False)
        self.seen.append(msg)
        return ber.encode_message(msg.community, ber.encode_pdu(
            ber.RESPONSE, msg.pdu.request_id, self.varbinds_for(msg.pdu)))

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


def _answer(pdu):
    table = {
        SYS_UPTIME: (ber.TIME_TICKS, 8_640_123),
        SYS_DESCR: (ber.OCTET_STRING, b"ctfleet fake agent"),
        (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1): (ber.COUNTER64, 2**64 - 2),
        (1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 0): (ber.IP_ADDRESS, bytes((10, 20, 30, 40))),
        (1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 1): (ber.INTEGER, -7),
        (1, 3, 6, 1, 2, 1, 1, 2, 0): (ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)),
    }
    return [(vb[0],) + table.get(vb[0], (ber.NO_SUCH_OBJECT, None)) for vb in pdu.varbinds]


@pytest.fixture
def fake_agent():
    a = _FakeAgent(_answer)
    yield a
    a.close()


def _snmpget(args, port):
    cmd = ["snmpget", "-On", "-r", "0", "-t", "3", "-M", "/nonexistent", "-m", ""] + args + [
        f"udp:127.0.0.1:{port}", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.1.0",
        "1.3.6.1.2.1.31.1.1.1.6.1", "1.3.6.1.2.1.4.20.1.1.0", "1.3.6.1.2.1.2.2.1.8.1",
        "1.3.6.1.2.1.1.2.0", "1.3.6.1.9.9.9.0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def _check_snmpget_output(out):
    assert ".1.3.6.1.2.1.1.3.0 = Timeticks: (8640123)" in out
    assert '.1.3.6.1.2.1.1.1.0 = STRING: "ctfleet fake agent"' in out
    assert ".1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 18446744073709551614" in out
    assert ".1.3.6.1.2.1.4.20.1.1.0 = IpAddress: 10.20.30.40" in out
    assert ".1.3.6.1.2.1.2.2.1.8.1 = INTEGER: -7" in out
    assert ".1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.8072.3.2.10" in out
    assert ".1.3.6.1.9.9.9.0 = No Such Object" in out


@needs_snmpget
def test_net_snmp_v2c_against_codec(fake_agent):
    r = _snmpget(["-v2c", "-c", "public"], fake_agent.port)
    assert not fake_agent.errors, fake_agent.errors
    assert r.returncode == 0, r.stderr
    _check_snmpget_output(r.stdout)
    (req,) = fake_agent.seen
    assert req.community == b"public" and req.pdu.pdu_type == ber.GET_REQUEST
    assert req.pdu.varbinds[0] == (SYS_UPTIME, ber.NULL, None)


@needs_snmpget
def test_net_snmp_v3_authpriv_against_codec(fake_agent):
    r = _snmpget(["-v3", "-l", "authPriv", "-u", USER, "-a", "SHA", "-A", AUTH_PW,
                  "-x", "AES", "-X", PRIV_PW], fake_agent.port)
    assert not fake_agent.errors, fake_agent.errors
    assert r.returncode == 0, r.stderr
    _check_snmpget_output(r.stdout)
    probe, request = fake_agent.seen
    assert probe.engine_id == b"" and probe.flags & 3 == 0
    assert request.flags & 3 == 3 and request.user_name == USER.encode()
    assert request.pdu.varbinds[0] == (SYS_UPTIME, ber.NULL, None)
