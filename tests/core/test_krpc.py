"""KRPC codec: BEP 5 example packets, round trips, malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core import krpc
from mldht.core.bencode import bdecode, bencode
from mldht.core.compact import (
    NodeInfo,
    decode_nodes,
    decode_peer,
    encode_nodes,
    encode_peer,
    ip_from_bytes,
    ip_to_bytes,
)
from mldht.errors import DecodeError, InvalidArgument

# The BEP 5 examples, as given in BEP 5.
BEP5_QUERIES = [
    b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
    b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
    b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
    b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
]


@pytest.mark.parametrize("packet", BEP5_QUERIES)
def test_bep5_queries_round_trip_byte_for_byte(packet: bytes) -> None:
    msg = krpc.decode_message(packet)
    assert isinstance(msg, krpc.Query)
    assert msg.t == b"aa"
    assert msg.body.id == b"abcdefghij0123456789"
    assert krpc.encode_query(msg.t, msg.body) == packet


def test_bep5_announce_fields() -> None:
    msg = krpc.decode_message(BEP5_QUERIES[3])
    assert isinstance(msg, krpc.Query)
    body = msg.body
    assert isinstance(body, krpc.AnnouncePeer)
    assert body.implied_port and body.port == 6881 and body.token == b"aoeusnth"
    assert body.info_hash == b"mnopqrstuvwxyz123456"


def test_bep5_responses_round_trip() -> None:
    ping_r = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
    msg = krpc.decode_message(ping_r)
    assert isinstance(msg, krpc.Response)
    body = krpc.decode_response(b"ping", msg)
    assert krpc.encode_response(msg.t, body) == ping_r

    gp = (
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth"
        b"6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re"
    )
    msg = krpc.decode_message(gp)
    assert isinstance(msg, krpc.Response)
    body = krpc.decode_response(b"get_peers", msg)
    assert isinstance(body, krpc.GetPeersResponse)
    assert body.token == b"aoeusnth"
    assert body.peers == (decode_peer(b"axje.u"), decode_peer(b"idhtnm"))
    assert krpc.encode_response(msg.t, body) == gp


def test_bep5_error_round_trip() -> None:
    raw = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"
    msg = krpc.decode_message(raw)
    assert isinstance(msg, krpc.Error)
    assert (msg.code, msg.message) == (201, b"A Generic Error Ocurred")
    assert krpc.encode_error(msg.t, msg.code, msg.message) == raw


def test_top_level_keys_v_ip_ro() -> None:
    raw = krpc.encode_query(b"xy", krpc.Ping(b"a" * 20), version=b"MD\x00\x01", read_only=True)
    assert b"2:roi1e" in raw
    msg = krpc.decode_message(raw)
    assert isinstance(msg, krpc.Query)
    assert msg.read_only and msg.version == b"MD\x00\x01"
    r = krpc.encode_response(b"xy", krpc.PingResponse(b"b" * 20), ip=("1.2.3.4", 6881))
    rmsg = krpc.decode_message(r)
    assert isinstance(rmsg, krpc.Response)
    assert rmsg.ip == ("1.2.3.4", 6881)
    r6 = krpc.encode_response(b"xy", krpc.PingResponse(b"b" * 20), ip=("2001:db8::1", 1))
    rmsg6 = krpc.decode_message(r6)
    assert isinstance(rmsg6, krpc.Response)
    assert rmsg6.ip == ("2001:db8::1", 1)


# ------------------------------------------------------------------ hypothesis round trips

ids = st.binary(min_size=20, max_size=20)
tids = st.binary(min_size=1, max_size=8)
ports = st.integers(1, 65535)
ipv4 = st.tuples(*(st.integers(0, 255) for _ in range(4))).map(lambda t: ".".join(map(str, t)))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: decode_peer(b + b"\x00\x01")[0])
addrs4 = st.tuples(ipv4, ports)
addrs6 = st.tuples(ipv6, ports)
nodes4 = st.lists(st.builds(NodeInfo, ids, addrs4), max_size=8).map(tuple)
nodes6 = st.lists(st.builds(NodeInfo, ids, addrs6), max_size=8).map(tuple)
want = st.none() | st.lists(st.sampled_from([b"n4", b"n6"]), max_size=2).map(tuple)
bvalues = st.recursive(
    st.binary(max_size=20) | st.integers(-(2**70), 2**70),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
seqs = st.integers(0, krpc.MAX_SEQ)

query_bodies = st.one_of(
    st.builds(krpc.Ping, ids),
    st.builds(krpc.FindNode, ids, ids, want),
    st.builds(krpc.GetPeers, ids, ids, want, st.booleans(), st.booleans()),
    st.builds(
        krpc.AnnouncePeer,
        ids,
        ids,
        ports,
        st.binary(min_size=1, max_size=20),
        st.booleans(),
        st.none() | st.booleans(),
    ),
    st.builds(krpc.Get, ids, ids, st.none() | seqs, want),
    st.builds(krpc.Put, ids, st.binary(min_size=1, max_size=20), bvalues.map(bencode)),
    st.builds(
        krpc.Put,
        ids,
        st.binary(min_size=1, max_size=20),
        bvalues.map(bencode),
        st.binary(min_size=32, max_size=32),
        seqs,
        st.binary(min_size=64, max_size=64),
        st.binary(max_size=64),
        st.none() | seqs,
    ),
    st.builds(krpc.SampleInfohashes, ids, ids, want),
)


@settings(max_examples=300, deadline=None)
@given(tids, query_bodies, st.none() | st.binary(min_size=4, max_size=4), st.booleans())
def test_query_round_trip(t: bytes, body: krpc.QueryBody, version: bytes | None, ro: bool) -> None:
    raw = krpc.encode_query(t, body, version=version, read_only=ro)
    msg = krpc.decode_message(raw)
    assert isinstance(msg, krpc.Query)
    assert msg == krpc.Query(t, body, version, ro)
    assert krpc.encode_query(t, msg.body, version=version, read_only=ro) == raw


response_cases = st.one_of(
    st.tuples(st.just(b"ping"), st.builds(krpc.PingResponse, ids)),
    st.tuples(st.just(b"announce_peer"), st.builds(krpc.AnnounceResponse, ids)),
    st.tuples(st.just(b"put"), st.builds(krpc.PutResponse, ids)),
    st.tuples(
        st.just(b"find_node"),
        st.builds(krpc.FindNodeResponse, ids, st.none() | nodes4, st.none() | nodes6),
    ),
    st.tuples(
        st.just(b"get_peers"),
        st.builds(
            krpc.GetPeersResponse,
            ids,
            st.none() | st.binary(min_size=1, max_size=20),
            st.none() | st.lists(addrs4 | addrs6, max_size=10).map(tuple),
            st.none() | nodes4,
            st.none() | nodes6,
            st.none() | st.binary(min_size=256, max_size=256),
            st.none() | st.binary(min_size=256, max_size=256),
        ),
    ),
    st.tuples(
        st.just(b"get"),
        st.builds(
            krpc.GetResponse,
            ids,
            st.none() | st.binary(min_size=1, max_size=20),
            st.none() | nodes4,
            st.none() | nodes6,
            st.none() | bvalues.map(bencode),
            st.none() | st.binary(min_size=32, max_size=32),
            st.none() | seqs,
            st.none() | st.binary(min_size=64, max_size=64),
        ),
    ),
    st.tuples(
        st.just(b"sample_infohashes"),
        st.builds(
            krpc.SampleInfohashesResponse,
            ids,
            st.integers(0, 21600),
            st.integers(0, 10**6),
            st.lists(ids, max_size=20).map(tuple),
            st.none() | nodes4,
            st.none() | nodes6,
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(tids, response_cases, st.none() | addrs4)
def test_response_round_trip(
    t: bytes, case: tuple[bytes, krpc.ResponseBody], ip: tuple[str, int] | None
) -> None:
    method, body = case
    raw = krpc.encode_response(t, body, ip=ip)
    msg = krpc.decode_message(raw)
    assert isinstance(msg, krpc.Response)
    assert msg.ip == ip
    decoded = krpc.decode_response(method, msg)
    assert decoded == body
    assert krpc.encode_response(t, decoded, ip=ip) == raw


@settings(max_examples=100, deadline=None)
@given(tids, st.integers(0, 999), st.binary(max_size=50))
def test_error_round_trip(t: bytes, code: int, message: bytes) -> None:
    raw = krpc.encode_error(t, code, message)
    msg = krpc.decode_message(raw)
    assert msg == krpc.Error(t, code, message)


# ------------------------------------------------------------------------ malformed


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"i1e",
        b"le",
        b"d1:t2:aae",  # no y
        b"d1:y1:qe",  # no t
        b"d1:t2:aa1:y1:xe",
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q",  # truncated
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qee",  # trailing
        b"d1:y1:q1:t2:aae",  # keys out of order
        b"d1:ti01e1:y1:qe",
        b"l" * 10000 + b"e" * 10000,  # deep nesting
        b"d1:t999999999999:",  # huge length
        b"d1:eli201ee1:t2:aa1:y1:ee",  # error without message
        b"d1:rd2:id3:abce1:t2:aa1:y1:re",  # short id in a response
    ],
)
def test_malformed_raises_only_malformed(raw: bytes) -> None:
    with pytest.raises(krpc.MalformedMessage):
        krpc.decode_message(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"d1:q4:ping1:t2:aa1:y1:qe", 203),  # no a
        (b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe", 203),  # 19-byte id
        (b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:aa1:y1:qe", 203),
        (b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe", 204),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e"
            b"5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            203,
        ),
    ],
)
def test_malformed_query_code_and_txid(raw: bytes, code: int) -> None:
    with pytest.raises(krpc.MalformedMessage) as info:
        krpc.decode_message(raw)
    assert info.value.t == b"aa" and info.value.is_query and info.value.code == code


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        msg = krpc.decode_message(raw)
    except krpc.MalformedMessage:
        return
    if isinstance(msg, krpc.Response):
        for method in (b"ping", b"find_node", b"get_peers", b"get", b"sample_infohashes"):
            with contextlib.suppress(DecodeError):
                krpc.decode_response(method, msg)


@settings(max_examples=300, deadline=None)
@given(tids, response_cases, st.data())
def test_truncated_messages(
    t: bytes, case: tuple[bytes, krpc.ResponseBody], data: st.DataObject
) -> None:
    raw = krpc.encode_response(t, case[1])
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(krpc.MalformedMessage):
        krpc.decode_message(raw[:cut])


def test_response_field_type_errors_are_decode_errors() -> None:
    bad = [
        {b"id": b"x" * 20, b"nodes": 5},
        {b"id": b"x" * 20, b"token": [1]},
        {b"id": b"x" * 20, b"seq": b"1"},
        {b"id": b"x" * 20, b"samples": 3},
    ]
    for r in bad:
        msg = krpc.decode_message(bencode({b"r": r, b"t": b"aa", b"y": b"r"}))
        assert isinstance(msg, krpc.Response)
        for method in (b"find_node", b"get_peers", b"get", b"sample_infohashes"):
            with contextlib.suppress(DecodeError):
                krpc.decode_response(method, msg)


def test_compact_formats() -> None:
    n4 = NodeInfo(b"i" * 20, ("1.2.3.4", 6881))
    n6 = NodeInfo(b"j" * 20, ("2001:db8::1", 6882))
    assert len(encode_nodes([n4])) == 26 and len(encode_nodes([n6])) == 38
    assert decode_nodes(encode_nodes([n4, n4])) == [n4, n4]
    assert decode_nodes(encode_nodes([n6]), ipv6=True) == [n6]
    assert len(encode_peer(("1.2.3.4", 1))) == 6 and len(encode_peer(("::1", 1))) == 18
    with pytest.raises(DecodeError):
        decode_nodes(b"x" * 25)
    with pytest.raises(DecodeError):
        decode_peer(b"\x01\x02\x03\x04\x00\x00")  # port 0
    with pytest.raises(DecodeError):
        decode_peer(b"12345")
    with pytest.raises(InvalidArgument):
        encode_peer(("1.2.3.4", 0))  # our own address: misuse, not bad network data
    with pytest.raises(InvalidArgument):
        encode_peer(("1.2.3.256", 1))
    with pytest.raises(InvalidArgument):
        ip_from_bytes(b"\x01\x02\x03")
    assert ip_to_bytes("::ffff:1.2.3.4") == bytes(10) + b"\xff\xff\x01\x02\x03\x04"
    assert ip_to_bytes("::ffff:1.2.3.4", unmap=True) == b"\x01\x02\x03\x04"
    assert ip_to_bytes(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    for ip in ("1.2.3.4", "2001:db8::1"):
        assert ip_from_bytes(ip_to_bytes(ip)) == ip
    # port-0 node records are skipped
    zero = b"z" * 20 + b"\x01\x02\x03\x04\x00\x00"
    assert decode_nodes(zero + encode_nodes([n4])) == [n4]


def test_bencode_strictness() -> None:
    bad_inputs = (
        b"i+1e",
        b"i03e",
        b"i-0e",
        b"03:abc",
        b"d1:bi1e1:ai2ee",
        b"d1:ai1e1:ai2ee",
        b"4:ab",
    )
    for bad in bad_inputs:
        with pytest.raises(DecodeError):
            bdecode(bad)
    assert bdecode(b"d1:ai1ee") == {b"a": 1}
    assert bencode({b"b": 1, b"a": b"x"}) == b"d1:a1:x1:bi1ee"


def test_sample_reply_without_samples_is_not_bep51_support() -> None:
    r = bencode({b"r": {b"id": b"x" * 20, b"nodes": b""}, b"t": b"aa", b"y": b"r"})
    msg = krpc.decode_message(r)
    assert isinstance(msg, krpc.Response)
    body = krpc.decode_response(b"sample_infohashes", msg)
    assert isinstance(body, krpc.SampleInfohashesResponse) and not body.supported
    empty = krpc.SampleInfohashesResponse(b"x" * 20, 0, 0)
    raw = krpc.encode_response(b"aa", empty)
    back = krpc.decode_message(raw)
    assert isinstance(back, krpc.Response)
    assert krpc.decode_response(b"sample_infohashes", back) == empty  # supported, empty


@pytest.mark.parametrize("version", [None, b"ML01"])
@pytest.mark.parametrize("ip", [None, ("1.2.3.4", 6881), ("2001:db8::1", 1)])
def test_frame_response_is_the_canonical_encoding(
    version: bytes | None, ip: tuple[str, int] | None
) -> None:
    r = {b"id": b"i" * 20, b"nodes": b"n" * 26, b"token": b"tok"}
    d: dict[bytes, object] = {b"t": b"tt", b"y": b"r", b"r": r}
    if version is not None:
        d[b"v"] = version
    if ip is not None:
        d[b"ip"] = encode_peer(ip)
    expect = bencode(d)
    assert krpc.frame_response(b"tt", bencode(r)[1:-1], version, ip) == expect
    body = krpc.FindNodeResponse(b"i" * 20)
    assert krpc.encode_response(b"tt", body, version=version, ip=ip) == bencode(
        {**d, b"r": {b"id": b"i" * 20}}
    )
