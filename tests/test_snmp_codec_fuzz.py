"""Property and fuzz tests of the fast-path SNMP codec: encode/decode round trips over
generated varbinds (checked against pysnmp too), and the decoders fed arbitrary,
truncated and mutated octets only ever return or raise the codec's own errors (never
IndexError, RecursionError, MemoryError, OverflowError, and never hang). Example
counts are bounded so the file runs in a few seconds."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as pyasn1_decoder
from pysnmp.proto import api

from ctfleet.monitors import ber, usm
from ctfleet.monitors.ber import BERError, SNMPCodecError, Unsupported

v2c = api.v2c

FAST = settings(max_examples=200, deadline=1000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=60, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

U32 = 2**32 - 1
subid = st.one_of(st.integers(0, 127), st.integers(0, U32))
oids = st.one_of(
    st.tuples(st.sampled_from([0, 1]), st.integers(0, 39)),
    st.tuples(st.just(2), st.integers(0, U32 - 80)),
).flatmap(lambda head: st.lists(subid, max_size=40).map(lambda rest: head + tuple(rest)))

values = st.one_of(
    st.tuples(st.just(ber.INTEGER), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(ber.OCTET_STRING), st.binary(max_size=300)),
    st.tuples(st.just(ber.NULL), st.none()),
    st.tuples(st.just(ber.OBJECT_IDENTIFIER), oids),
    st.tuples(st.just(ber.IP_ADDRESS), st.binary(min_size=4, max_size=4)),
    st.tuples(st.sampled_from([ber.COUNTER32, ber.GAUGE32, ber.TIME_TICKS]), st.integers(0, U32)),
    st.tuples(st.just(ber.COUNTER64), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from(sorted(ber.EXCEPTION_TAGS)), st.none()),
)
varbinds = st.lists(st.tuples(oids, values).map(lambda x: (x[0],) + x[1]), max_size=20)
pdu_types = st.sampled_from([ber.GET_REQUEST, ber.GET_NEXT_REQUEST, ber.RESPONSE,
                             ber.SET_REQUEST, ber.INFORM_REQUEST, ber.SNMPV2_TRAP, ber.REPORT])
int32 = st.integers(-(2**31), 2**31 - 1)

EXPECTED = (BERError, Unsupported)
ENGINE = bytes.fromhex("80001f8880c7f1ee7100000001")
KEYS = usm.localized_keys("authpassword1", "privpassword1", ENGINE)


def _decode_only_codec_errors(data: bytes) -> None:
    try:
        ber.decode_message(data)
    except EXPECTED:
        pass


@FAST
@given(community=st.binary(max_size=64), pdu_type=pdu_types, request_id=int32,
       es=st.integers(0, 18), ei=st.integers(0, 2**31 - 1), vbs=varbinds)
def test_round_trip(community, pdu_type, request_id, es, ei, vbs):
    data = ber.encode_message(community, ber.encode_pdu(pdu_type, request_id, vbs, es, ei))
    assert ber.decode_message(data) == ber.Message(
        1, community, ber.PDU(pdu_type, request_id, es, ei, vbs))


@SLOW
@given(request_id=int32, vbs=varbinds)
def test_round_trip_agrees_with_pysnmp(request_id, vbs):
    data = ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, request_id, vbs))
    msg, rest = pyasn1_decoder.decode(data, asn1Spec=v2c.Message())
    assert rest == b""
    pdu = v2c.apiMessage.get_pdu(msg)
    assert int(v2c.apiPDU.get_request_id(pdu)) == request_id
    got = v2c.apiPDU.get_varbinds(pdu)
    assert [tuple(o) for o, _v in got] == [vb[0] for vb in vbs]
    for (_oid, tag, value), (_o, ref) in zip(vbs, got):
        t = ref.tagSet[0]
        assert t.tagClass | t.tagFormat | t.tagId == tag
        if tag in (ber.OCTET_STRING, ber.IP_ADDRESS):
            assert ref.asOctets() == value
        elif tag == ber.OBJECT_IDENTIFIER:
            assert tuple(ref) == value
        elif value is not None:
            assert int(ref) == value


@SLOW
@given(oid=oids)
def test_oid_text_round_trip(oid):
    assert ber.oid_from_str(ber.oid_to_str(oid)) == oid


@SLOW
@given(request_id=st.integers(ber.REQUEST_ID_MIN, ber.REQUEST_ID_MAX),
       oid_list=st.lists(oids, min_size=1, max_size=10), mr=st.integers(0, 100))
def test_template_equals_direct_encoding(request_id, oid_list, mr):
    t = ber.RequestTemplate(ber.GET_BULK_REQUEST, oid_list, b"c", 0, mr)
    assert t.encode(request_id) == ber.encode_get_bulk(b"c", request_id, oid_list, 0, mr)


# ------------------------------------------------------------ robustness


@FAST
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(data):
    _decode_only_codec_errors(data)


@FAST
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_behind_a_plausible_header(data):
    # Random bodies behind real SEQUENCE/PDU headers reach the inner decoders.
    for prefix in (b"\x30", b"\x30\x82", b"\x30\x20\x02\x01\x01\x04\x00\xa2"):
        _decode_only_codec_errors(prefix + data)
    try:
        ber.decode_pdu(b"\xa2" + data)
    except EXPECTED:
        pass


@SLOW
@given(vbs=varbinds.filter(bool), request_id=int32)
def test_every_truncation_is_rejected(vbs, request_id):
    data = ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, request_id, vbs))
    for n in range(len(data)):
        with pytest.raises(BERError):
            ber.decode_message(data[:n])
    with pytest.raises(BERError):
        ber.decode_message(data + b"\x00")


@FAST
@given(vbs=varbinds, request_id=int32, data=st.data())
def test_mutations(vbs, request_id, data):
    msg = bytearray(ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, request_id, vbs)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, max(len(msg) - 1, 0)))
        if op == "flip" and msg:
            msg[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and msg:
            msg[i] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF]))
        elif op == "insert":
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif msg:
            del msg[i]
    _decode_only_codec_errors(bytes(msg))


def _length_offsets(data: bytes, pos: int = 0, end: int | None = None) -> list:
    """Offsets of the (short-form) length octets of every TLV, walking constructed
    ones: where a structure-aware fuzzer should aim."""
    end = len(data) if end is None else end
    out = []
    while pos < end:
        tag, n = data[pos], data[pos + 1]
        hdr = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[pos + 2:pos + 2 + k], "big")
            hdr += k
        else:
            out.append(pos + 1)
        if tag & 0x20:
            out += _length_offsets(data, pos + hdr, pos + hdr + n)
        pos += hdr + n
    return out


@FAST
@given(vbs=varbinds.filter(bool), data=st.data())
def test_length_mutations(vbs, data):
    msg = bytearray(ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, 1, vbs)))
    offsets = _length_offsets(bytes(msg))
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.sampled_from(offsets))
        msg[at] = data.draw(st.integers(0, min(msg[at] + 4, 0x7F)))
    _decode_only_codec_errors(bytes(msg))
    _decode_only_codec_errors(bytes(msg[:data.draw(st.integers(0, len(msg)))]))


@pytest.mark.parametrize("data", [
    b"\x30\x84\xff\xff\xff\xff",                    # 4 GiB claimed
    b"\x30\x84\x7f\xff\xff\xff" + b"\x00" * 10,
    b"\x30\x88" + b"\xff" * 8,                        # 8-octet length field
    b"\x30\x80" * 5000,                               # deep indefinite nesting
    b"\x30\x82\xff\xff" + b"\x30\x82\xff\xf0" * 1000,
    b"\x04\x00",
    b"\x30\x00",
    b"\x30",
])
def test_hostile_lengths_and_nesting(data):
    with pytest.raises(BERError):
        ber.decode_message(data)


def test_huge_oid_subidentifier_is_bounded():
    # 50,000 continuation octets: must fail fast, not build a 350,000-bit integer.
    oid = b"\x2b" + b"\xff" * 50000 + b"\x01"
    vb = b"\x06\x83" + len(oid).to_bytes(3, "big") + oid + b"\x05\x00"
    vb = b"\x30\x83" + len(vb).to_bytes(3, "big") + vb
    vbl = b"\x30\x83" + len(vb).to_bytes(3, "big") + vb
    body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl
    pdu = b"\xa2\x83" + len(body).to_bytes(3, "big") + body
    body = b"\x02\x01\x01\x04\x00" + pdu
    data = b"\x30\x83" + len(body).to_bytes(3, "big") + body
    t0 = time.perf_counter()
    with pytest.raises(BERError, match="longer than 128"):
        ber.decode_message(data)
    assert time.perf_counter() - t0 < 0.05
    # within the length bound, a sub-identifier overflowing 32 bits fails at once
    oid = b"\x2b" + b"\xff" * 600 + b"\x01"
    vb = b"\x06\x82" + len(oid).to_bytes(2, "big") + oid + b"\x05\x00"
    with pytest.raises(BERError, match="32 bits"):
        ber.decode_message(_wrap([b"\x30\x82" + len(vb).to_bytes(2, "big") + vb]))


def _wrap(varbind_tlvs, head=b"\x02\x01\x01\x02\x01\x00\x02\x01\x00",
          version=b"\x02\x01\x01", tag=0xA2) -> bytes:
    """A message with consistent lengths around arbitrary varbind TLVs."""
    pdu = ber._tlv(tag, head + ber._tlv(0x30, b"".join(varbind_tlvs)))
    return ber._tlv(0x30, version + b"\x04\x06public" + pdu)


# Random TLV trees with consistent lengths: they get past the outer framing and
# exercise every inner check (missing values, extra elements, wrong inner tags...).
_tags = st.sampled_from([0x02, 0x04, 0x05, 0x06, 0x30, 0x40, 0x41, 0x42, 0x43, 0x44,
                         0x46, 0x80, 0x81, 0x82, 0xA2, 0x24, 0x03, 0x1F])
_tlv = st.recursive(
    st.builds(lambda t, c: ber._tlv(t, c), _tags, st.binary(max_size=12)),
    lambda inner: st.builds(lambda t, kids: ber._tlv(t, b"".join(kids)),
                            st.sampled_from([0x30, 0xA2, 0x24]), st.lists(inner, max_size=3)),
    max_leaves=6,
)
_varbind_like = st.one_of(
    st.lists(_tlv, max_size=3).map(lambda kids: ber._tlv(0x30, b"".join(kids))),
    st.builds(lambda oid, kids: ber._tlv(0x30, ber.encode_oid(oid) + b"".join(kids)),
              oids, st.lists(_tlv, max_size=2)),
    _tlv,
)


@FAST
@given(vbs=st.lists(_varbind_like, max_size=4),
       head=st.lists(_tlv, max_size=4).map(b"".join),
       version=st.sampled_from([b"\x02\x01\x01"] * 8 + [b"\x02\x01\x00", b"\x02\x01\x03",
                                                          b"\x02\x00", b"\x04\x01\x01"]),
       tag=st.sampled_from([0xA2] * 6 + [0xA0, 0xA4, 0xA5, 0xA8, 0xA9, 0x30]),
       valid_head=st.integers(0, 3))
def test_structured_garbage(vbs, head, version, tag, valid_head):
    # Mostly valid framing, so most examples reach the varbind decoder.
    if valid_head:
        head = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00"
    _decode_only_codec_errors(_wrap(vbs, head, version, tag))
    try:
        usm.decode_v3_message(_wrap(vbs, head, version, tag), *KEYS)
    except SNMPCodecError:
        pass


def test_many_tiny_varbinds_decode_linearly():
    vbs = [((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, i), ber.INTEGER, 1) for i in range(4000)]
    data = ber.encode_message(b"public", ber.encode_pdu(ber.RESPONSE, 1, vbs))
    assert len(ber.decode_message(data).pdu.varbinds) == 4000


# ------------------------------------------------------------------- SNMPv3



def _v3(vbs, salt=b"\x00" * 8):
    scoped = usm.encode_scoped_pdu(ber.encode_pdu(ber.RESPONSE, 7, vbs), ENGINE)
    return usm.encode_v3_message(9, scoped, engine_id=ENGINE, boots=3, engine_time=1234,
                                 user_name=b"ctfleet", auth_key=KEYS[0], priv_key=KEYS[1],
                                 salt=salt)


@SLOW
@given(vbs=varbinds, salt=st.binary(min_size=8, max_size=8))
def test_v3_round_trip(vbs, salt):
    msg = usm.decode_v3_message(_v3(vbs, salt), *KEYS)
    assert (msg.msg_id, msg.engine_id, msg.engine_boots, msg.engine_time) == (9, ENGINE, 3, 1234)
    assert msg.pdu == ber.PDU(ber.RESPONSE, 7, 0, 0, vbs)


@FAST
@given(vbs=st.lists(st.tuples(oids, values).map(lambda x: (x[0],) + x[1]), max_size=3),
       data=st.data())
def test_v3_mutations_only_raise_codec_errors(vbs, data):
    msg = bytearray(_v3(vbs))
    i = data.draw(st.integers(0, len(msg) - 1))
    op = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if op == "flip":
        msg[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        del msg[i:]
    else:
        msg[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    try:
        usm.decode_v3_message(bytes(msg), *KEYS)
    except SNMPCodecError:
        pass
    else:
        # Anything accepted must have passed the digest: only bits outside the
        # authenticated whole message could change, and there are none.
        raise AssertionError("a mutated authenticated message was accepted")


@FAST
@given(data=st.binary(max_size=400))
def test_v3_arbitrary_bytes(data):
    for blob in (data, b"\x30\x81" + data[:1] + b"\x02\x01\x03" + data):
        try:
            usm.decode_v3_message(blob, *KEYS)
        except SNMPCodecError:
            pass


# Octets a "set" edit writes: tags and length forms the fast readers must decline or read right.
_V3_OCTETS = [0x00, 0x02, 0x04, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xFF]
_PDU_OCTETS = [0x00, 0x01, 0x02, 0x04, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xA2, 0xFF]
_MESSAGE_OCTETS = [0x00, 0x01, 0x02, 0x04, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xFF]


def _mutate(data, msg: bytearray, lo: int, hi: int, octets: list[int]) -> bytearray:
    """``msg`` after ``lo``..``hi`` random edits: a flipped bit, a truncation, 1-3 inserted
    octets, or an octet set to one of ``octets`` (for the fast-versus-strict reader tests)."""
    for _ in range(data.draw(st.integers(lo, hi))):
        if not msg:
            break
        i = data.draw(st.integers(0, len(msg) - 1))
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "set"]))
        if op == "flip":
            msg[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "truncate":
            del msg[i:]
        elif op == "insert":
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        else:
            msg[i] = data.draw(st.sampled_from(octets))
    return msg


def _strict_fields(blob: bytes):
    try:
        return usm._fields(blob)
    except SNMPCodecError as e:
        return type(e)


@FAST
@given(vbs=st.lists(st.tuples(oids, values).map(lambda x: (x[0],) + x[1]), max_size=3),
       data=st.data(), noauth=st.booleans())
def test_v3_fast_framing_agrees_with_the_strict_parser(vbs, data, noauth):
    """usm's straight-line framing parser either declines (None: the strict one decides)
    or returns exactly what the strict parser returns, on valid messages and on flipped,
    truncated, inserted and overwritten octets; on an unmutated message it never declines."""
    if noauth:
        scoped = usm.encode_scoped_pdu(ber.encode_pdu(ber.REPORT, 7, vbs), ENGINE)
        valid = usm.encode_v3_message(data.draw(st.integers(0, 0x7FFFFFFF)), scoped, engine_id=ENGINE,
                                      boots=data.draw(st.integers(0, 0x7FFFFFFF)), engine_time=0, user_name=b"")
    else:
        valid = _v3(vbs, data.draw(st.binary(min_size=8, max_size=8)))
    assert usm._fields_fast(valid) == usm._fields(valid)
    msg = bytearray(valid)
    msg = _mutate(data, msg, 1, 3, _V3_OCTETS)
    blob = bytes(msg)
    fast = usm._fields_fast(blob)
    assert fast is None or fast == _strict_fields(blob), (blob.hex(), fast)


def _strict_pdu(blob: bytes, pos: int, end: int):
    try:
        return ber._decode_pdu_strict(blob, pos, end)
    except SNMPCodecError as e:
        return type(e)


@FAST
@given(vbs=st.lists(st.tuples(oids, values).map(lambda x: (x[0],) + x[1]), max_size=4),
       tag=st.sampled_from([ber.RESPONSE, ber.GET_BULK_REQUEST, ber.REPORT, ber.GET_REQUEST]),
       rid=st.sampled_from([0, 1, -1, 127, 128, 0x7FFFFFFF, -0x80000000, 12345678]),
       f1=st.sampled_from([0, 2, 5, 18, 19, 127, 128, 300]), f2=st.sampled_from([0, 1, 127, 128]),
       tail=st.binary(max_size=3), data=st.data())
def test_pdu_fast_header_agrees_with_the_strict_reader(vbs, tag, rid, f1, f2, tail, data):
    """ber's straight-line PDU header reader either declines (None) or returns exactly what
    the strict reader returns, also for PDUs followed by other octets (decrypted padding)
    and after flipped, inserted, truncated or overwritten octets; it accepts every
    ordinary response it is given."""
    valid = ber.encode_pdu(tag, rid, vbs, f1, f2)
    if tag == ber.RESPONSE and 0 <= f1 <= 18 and f2 < 128 and 0 <= rid < 0x7FFFFFFF:
        assert ber._pdu_fast(valid, 0, len(valid)) == ber._decode_pdu_strict(valid, 0, len(valid))
    msg = bytearray(valid)
    msg = _mutate(data, msg, 0, 2, _PDU_OCTETS)
    blob = b"\x30" + bytes(msg) + tail  # the PDU at offset 1, other octets after its end
    end = 1 + len(msg)
    try:
        fast = ber._pdu_fast(blob, 1, end)
    except SNMPCodecError as e:  # from the varbind decoder, which the strict reader shares
        fast = type(e)
    assert fast is None or fast == _strict_pdu(blob, 1, end), (blob.hex(), fast)


def _outcome(f, *a):
    try:
        return f(*a)
    except SNMPCodecError as e:
        return type(e), str(e)


@FAST
@given(vbs=st.lists(st.tuples(oids, values).map(lambda x: (x[0],) + x[1]), max_size=3),
       version=st.sampled_from([0, 1]), community=st.binary(max_size=130), data=st.data())
def test_message_fast_path_agrees_with_the_strict_reader(vbs, version, community, data):
    """decode_message's shortcut for the usual message header gives what the strict reader
    gives (the same Message, or the same error and text), on valid and mutated messages."""
    msg = bytearray(ber.encode_message(community, ber.encode_pdu(ber.RESPONSE, 5, vbs), version))
    msg = _mutate(data, msg, 0, 2, _MESSAGE_OCTETS)
    blob = bytes(msg)
    strict = _outcome(ber._decode_message_strict, blob, len(blob)) if blob else None
    if blob:
        assert _outcome(ber.decode_message, blob) == strict
