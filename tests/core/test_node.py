"""NodeState as a server: every query of the real-client corpus, handlers, hostile input."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core import bep44, krpc
from mldht.core.bencode import bdecode, bencode
from mldht.core.compact import NodeInfo, decode_nodes
from mldht.core.counters import QUERY_METHODS
from mldht.core.events import LookupDone, PeersFound, PingDone, PutDone
from mldht.core.node import NodeConfig, NodeState

# Real datagrams sent by libtorrent, bittorrent-dht, aria2 and Transmission (index.json
# says what each is; README.md lists their quirks).
CORPUS = Path(__file__).resolve().parents[1] / "data" / "krpc"

ME = ("127.0.0.1", 6881)
CLIENT = ("127.0.0.2", 7000)


def _index() -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text())["files"]
    return files


def make_node(**cfg: Any) -> NodeState:
    return NodeState(b"\x11" * 20, random.Random(7), 0.0, NodeConfig(**cfg))


def ask(node: NodeState, raw: bytes, addr: tuple[str, int] = CLIENT, now: float = 1.0) -> Any:
    """Send one datagram; return the single decoded reply to ``addr`` (or None)."""
    node.receive_datagram(raw, addr, now)
    assert node.stats["internal_errors"] == 0
    out = [bdecode(d) for d, a in node.datagrams_to_send() if a == addr]
    replies = [m for m in out if m.get(b"y") in (b"r", b"e")]
    assert len(replies) <= 1
    return replies[0] if replies else None


def q(method: bytes, a: dict[bytes, Any], t: bytes = b"tt") -> bytes:
    return bencode({b"a": a, b"q": method, b"t": t, b"y": b"q"})


def test_corpus_is_there() -> None:
    assert len(_index()) == 175


@pytest.mark.parametrize("entry", _index(), ids=lambda e: e["path"])
def test_corpus_datagram_decodes(entry: dict[str, Any]) -> None:
    raw = (CORPUS / entry["path"]).read_bytes()
    msg = krpc.decode_message(raw)
    assert {"q": krpc.Query, "r": krpc.Response, "e": krpc.Error}[entry["y"]] is type(msg)
    if isinstance(msg, krpc.Response) and entry["method"] != "vote":
        body = krpc.decode_response(entry["method"].encode(), msg)
        if entry["method"] in ("find_node", "get_peers") and b"nodes" in msg.r:
            assert isinstance(body, krpc.FindNodeResponse | krpc.GetPeersResponse)
            assert body.nodes is not None


QUERIES = [e for e in _index() if e["y"] == "q"]


@pytest.mark.parametrize("entry", QUERIES, ids=lambda e: e["path"])
def test_corpus_query_gets_a_correct_answer(entry: dict[str, Any]) -> None:
    raw = (CORPUS / entry["path"]).read_bytes()
    query = bdecode(raw)
    node = make_node()
    # give the node some neighbours so find_node & co. have nodes to return
    for i in range(20):
        node.routing.node_responded(
            NodeInfo(random.Random(i).randbytes(20), (f"127.0.1.{i + 1}", 6881)), 0.0
        )
    src = tuple(entry["from"].rsplit(":", 1))
    addr = (str(src[0]), int(src[1]))
    reply = ask(node, raw, addr)  # a read-only (ro=1) sender is answered too (BEP 43)
    assert reply is not None, "every query of a real client gets an answer"
    assert reply[b"t"] == query[b"t"]
    assert reply[b"v"] == b"MD\x00\x01"
    method = query[b"q"]
    a = query[b"a"]
    if method in (b"announce_peer", b"put"):
        # their tokens were issued by another node, to another node
        assert reply[b"y"] == b"e" and reply[b"e"][0] == 203
        return
    assert reply[b"y"] == b"r"
    r = reply[b"r"]
    assert r[b"id"] == node.node_id
    assert reply[b"ip"] == bytes(map(int, addr[0].split("."))) + addr[1].to_bytes(2, "big")
    if method == b"find_node":
        assert len(decode_nodes(r[b"nodes"])) == 8
    elif method == b"get_peers":
        assert len(r[b"token"]) >= 4 and len(decode_nodes(r[b"nodes"])) == 8
        assert node.tokens.verify(r[b"token"], addr[0], a[b"info_hash"], 1.0)
    elif method == b"get":
        assert len(r[b"token"]) >= 4 and b"nodes" in r
    elif method == b"sample_infohashes":
        assert r[b"samples"] == b"" and r[b"num"] == 0 and r[b"interval"] == 21600
        assert len(decode_nodes(r[b"nodes"])) == 8


def test_announce_with_token_then_get_peers() -> None:
    node = make_node()
    ih = b"I" * 20
    r = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih}))
    token = r[b"r"][b"token"]
    assert b"values" not in r[b"r"]
    ok = ask(
        node,
        q(b"announce_peer", {b"id": b"c" * 20, b"info_hash": ih, b"port": 51413, b"token": token}),
    )
    assert ok[b"y"] == b"r"
    # implied_port: the UDP source port is stored, not the port argument
    other = ("127.0.0.3", 7001)
    t2 = ask(node, q(b"get_peers", {b"id": b"d" * 20, b"info_hash": ih}), other)[b"r"][b"token"]
    ok2 = ask(
        node,
        q(
            b"announce_peer",
            {b"id": b"d" * 20, b"info_hash": ih, b"port": 1, b"implied_port": 1, b"token": t2},
        ),
        other,
    )
    assert ok2[b"y"] == b"r"
    r = ask(node, q(b"get_peers", {b"id": b"e" * 20, b"info_hash": ih}), ("127.0.0.4", 1))
    values = {bytes(v) for v in r[b"r"][b"values"]}
    assert values == {
        bytes([127, 0, 0, 2]) + (51413).to_bytes(2, "big"),
        bytes([127, 0, 0, 3]) + (7001).to_bytes(2, "big"),
    }


def test_own_lookup_includes_the_peers_we_store() -> None:
    """A node asked to get_peers for an infohash it stores peers of returns them first."""
    node = make_node()
    ih = b"J" * 20
    token = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih}))[b"r"][b"token"]
    announce = {b"id": b"c" * 20, b"info_hash": ih, b"port": 51413, b"token": token}
    assert ask(node, q(b"announce_peer", announce))[b"y"] == b"r"
    op = node.get_peers(ih, 2.0)
    found = node.next_event()
    assert isinstance(found, PeersFound) and found.op == op
    assert found.peers == (("127.0.0.2", 51413),)
    done = node.next_event()  # no node to ask: the lookup ends at once, peer included
    assert isinstance(done, LookupDone) and done.peers == (("127.0.0.2", 51413),)


def test_announce_bad_token_and_foreign_ip() -> None:
    node = make_node()
    ih = b"I" * 20
    token = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih}))[b"r"][b"token"]
    a = {b"id": b"c" * 20, b"info_hash": ih, b"port": 1, b"token": token}
    # token issued to CLIENT's IP, used from another IP
    r = ask(node, q(b"announce_peer", a), ("127.0.0.9", 7000))
    assert r[b"y"] == b"e" and r[b"e"][0] == 203
    bad = {**a, b"token": b"nope"}
    assert ask(node, q(b"announce_peer", bad))[b"e"][0] == 203
    assert len(node.peer_store) == 0
    # the same token for another infohash is refused too
    other = {**a, b"info_hash": b"J" * 20}
    assert ask(node, q(b"announce_peer", other))[b"e"][0] == 203


def test_token_withheld_when_store_full() -> None:
    node = make_node(max_infohashes=1)
    t = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": b"A" * 20}))[b"r"][b"token"]
    ask(
        node,
        q(b"announce_peer", {b"id": b"c" * 20, b"info_hash": b"A" * 20, b"port": 9, b"token": t}),
    )
    r = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": b"B" * 20}))
    assert b"token" not in r[b"r"]


def test_unknown_method_204_and_malformed_203() -> None:
    node = make_node()
    r = ask(node, q(b"vote", {b"id": b"c" * 20}))
    assert r[b"e"][0] == 204 and r[b"t"] == b"tt"
    r = ask(node, bencode({b"q": b"ping", b"t": b"xy", b"y": b"q"}))
    assert r[b"e"][0] == 203 and r[b"t"] == b"xy"
    # no readable t: silently dropped
    assert ask(node, b"d1:y1:qe") is None
    assert ask(node, b"garbage") is None


def _mutable_put(
    kp: bep44.KeyPair,
    token: bytes,
    v: Any,
    seq: int,
    salt: bytes = b"",
    cas: int | None = None,
    sig: bytes | None = None,
) -> bytes:
    vb = bencode(v)
    a = {
        b"id": b"c" * 20,
        b"token": token,
        b"k": kp.public_key,
        b"seq": seq,
        b"sig": sig or kp.sign_item(vb, seq, salt),
        b"v": v,
    }
    if salt:
        a[b"salt"] = salt
    if cas is not None:
        a[b"cas"] = cas
    return q(b"put", a)


def test_bep44_server_paths() -> None:
    node = make_node()
    kp = bep44.KeyPair.from_seed(b"\x01" * 32)
    salt = b"s"
    target = bep44.mutable_target(kp.public_key, salt)
    token = ask(node, q(b"get", {b"id": b"c" * 20, b"target": target}))[b"r"][b"token"]
    assert ask(node, _mutable_put(kp, token, b"one", 1, salt))[b"y"] == b"r"
    r = ask(node, q(b"get", {b"id": b"c" * 20, b"target": target}))[b"r"]
    assert (r[b"v"], r[b"seq"], r[b"k"]) == (b"one", 1, kp.public_key)
    assert bep44.verify(kp.public_key, r[b"sig"], bencode(r[b"v"]), r[b"seq"], salt)
    # seq-only reply when the asker is up to date
    r = ask(node, q(b"get", {b"id": b"c" * 20, b"target": target, b"seq": 1}))[b"r"]
    assert r[b"seq"] == 1 and b"v" not in r and b"sig" not in r
    codes = {
        205: _mutable_put(kp, token, b"x" * 1000, 2, salt),
        206: _mutable_put(kp, token, b"two", 2, salt, sig=b"\x00" * 64),
        207: _mutable_put(kp, token, b"two", 2, b"s" * 65),
        301: _mutable_put(kp, token, b"two", 2, salt, cas=5),
        302: _mutable_put(kp, token, b"zero", 0, salt),
        203: _mutable_put(kp, b"badtoken", b"two", 2, salt),
    }
    for code, raw in codes.items():
        reply = ask(node, raw)
        assert reply[b"y"] == b"e" and reply[b"e"][0] == code, code
    r = ask(node, q(b"get", {b"id": b"c" * 20, b"target": target}))[b"r"]
    assert (r[b"v"], r[b"seq"]) == (b"one", 1), "nothing stored on error"
    assert ask(node, _mutable_put(kp, token, b"two", 2, salt, cas=1))[b"y"] == b"r"
    # immutable
    v = b"12:Hello World!"
    imm = bep44.immutable_target(v)
    assert imm.hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    tok = ask(node, q(b"get", {b"id": b"c" * 20, b"target": imm}))[b"r"][b"token"]
    assert (
        ask(node, q(b"put", {b"id": b"c" * 20, b"token": tok, b"v": b"Hello World!"}))[b"y"] == b"r"
    )
    assert ask(node, q(b"get", {b"id": b"c" * 20, b"target": imm}))[b"r"][b"v"] == b"Hello World!"


def test_read_only_node_answers_nothing_and_marks_queries() -> None:
    node = make_node(read_only=True)
    assert ask(node, q(b"ping", {b"id": b"c" * 20})) is None
    node.ping(CLIENT, 1.0)
    sent = node.datagrams_to_send()
    assert sent and bdecode(sent[0][0])[b"ro"] == 1


def test_ro_sender_never_enters_table() -> None:
    node = make_node()
    raw = bencode({b"a": {b"id": b"c" * 20}, b"q": b"ping", b"ro": 1, b"t": b"aa", b"y": b"q"})
    assert ask(node, raw)[b"y"] == b"r"
    assert len(node.routing) == 0
    # and no ping was sent to it to try to insert it
    assert node.datagrams_to_send() == []


def test_querier_is_pinged_and_inserted_only_when_it_answers() -> None:
    node = make_node()
    node.receive_datagram(q(b"ping", {b"id": b"c" * 20}), CLIENT, 1.0)
    out = [bdecode(d) for d, _ in node.datagrams_to_send()]
    pings = [m for m in out if m[b"y"] == b"q"]
    assert len(pings) == 1 and len(node.routing) == 0
    reply = bencode({b"r": {b"id": b"c" * 20}, b"t": pings[0][b"t"], b"y": b"r"})
    node.receive_datagram(reply, CLIENT, 1.5)
    assert len(node.routing) == 1


def test_response_from_wrong_address_is_dropped_and_counted() -> None:
    node = make_node()
    op = node.ping(CLIENT, 1.0)
    t = bdecode(node.datagrams_to_send()[0][0])[b"t"]
    reply = bencode({b"r": {b"id": b"c" * 20}, b"t": t, b"y": b"r"})
    node.receive_datagram(reply, ("127.0.0.66", 7000), 1.1)
    assert node.next_event() is None
    assert node.snapshot(1.1)["stats"]["spoofed"] == 1
    node.receive_datagram(reply, CLIENT, 1.2)
    assert node.next_event() == PingDone(op, CLIENT, b"c" * 20, None)


def test_ping_timeout_event() -> None:
    node = make_node(query_timeout=2.0)
    op = node.ping(CLIENT, 0.0)
    deadline = node.next_deadline()
    assert deadline is not None and deadline <= 2.0
    node.handle_timer(2.0)
    assert node.next_event() == PingDone(op, CLIENT, None)


def test_rate_limit_per_ip() -> None:
    node = make_node(rate_limit=10.0)
    answered = sum(
        ask(node, q(b"ping", {b"id": b"c" * 20}, t=i.to_bytes(2, "big")), now=5.0) is not None
        for i in range(100)
    )
    assert answered == 20  # burst of 2 s worth
    assert ask(node, q(b"ping", {b"id": b"c" * 20}), ("127.0.0.5", 1), now=5.0) is not None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises_out_of_receive(raw: bytes) -> None:
    node = make_node()
    node.receive_datagram(raw, CLIENT, 1.0)
    assert node.stats["internal_errors"] == 0
    for data, _ in node.datagrams_to_send():
        msg = bdecode(data)
        assert msg[b"y"] == b"e"


hostile_values = st.recursive(
    st.binary(max_size=30) | st.integers(-(2**80), 2**80),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.binary(max_size=12), c, max_size=5),
    max_leaves=12,
)
arg_keys = st.sampled_from(
    [
        b"id",
        b"target",
        b"info_hash",
        b"port",
        b"token",
        b"implied_port",
        b"want",
        b"v",
        b"k",
        b"seq",
        b"sig",
        b"salt",
        b"cas",
        b"noseed",
        b"scrape",
    ]
)
methods = st.sampled_from([*QUERY_METHODS, b"vote"])


@settings(max_examples=400, deadline=None)
@given(methods, st.dictionaries(arg_keys, hostile_values | st.binary(min_size=20, max_size=20)))
def test_wrong_types_get_203_or_an_answer(method: bytes, a: dict[bytes, Any]) -> None:
    node = make_node()
    reply = ask(node, q(method, a))
    assert reply is not None and reply[b"t"] == b"tt"
    if reply[b"y"] == b"e":
        assert reply[b"e"][0] in (203, 204, 205, 206, 207, 301, 302)


def _announce_from(node: NodeState, ih: bytes, addr: tuple[str, int], seed: bool = False) -> None:
    tok = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih}), addr)[b"r"][b"token"]
    a = {b"id": b"c" * 20, b"info_hash": ih, b"port": 6881, b"token": tok, b"seed": int(seed)}
    assert ask(node, q(b"announce_peer", a), addr)[b"y"] == b"r"


def test_bep33_scrape_returns_filters_instead_of_values() -> None:
    from mldht.core.peer_store import bloom_estimate

    node = make_node()
    ih = b"S" * 20
    for i in range(3):
        _announce_from(node, ih, (f"127.0.2.{i + 1}", 7000), seed=i == 0)
    r = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih, b"scrape": 1}))[b"r"]
    assert len(r[b"BFsd"]) == 256 and len(r[b"BFpe"]) == 256 and b"values" not in r
    assert round(bloom_estimate(r[b"BFsd"])) == 1 and round(bloom_estimate(r[b"BFpe"])) == 2


def test_bep51_samples_bounded_and_reused_until_interval() -> None:
    node = make_node(sample_interval=60)
    for i in range(30):
        _announce_from(node, bytes([i]) * 20, CLIENT)
    sq = q(b"sample_infohashes", {b"id": b"c" * 20, b"target": b"t" * 20})
    r1 = ask(node, sq, now=2.0)[b"r"]
    assert r1[b"num"] == 30 and r1[b"interval"] == 60
    assert len(r1[b"samples"]) == 20 * 20
    assert ask(node, sq, now=30.0)[b"r"][b"samples"] == r1[b"samples"]
    later = [ask(node, sq, now=62.0 + i * 61)[b"r"][b"samples"] for i in range(3)]
    assert any(s != r1[b"samples"] for s in later)


def test_bep42_vote_regenerates_the_node_id() -> None:
    from mldht.core import bep42
    from mldht.core.events import ExternalAddressChanged

    node = make_node()
    old = node.node_id
    external = ("203.0.113.7", 6881)

    def answered_ping(voter: tuple[str, int], reported: tuple[str, int]) -> None:
        node.ping(voter, 1.0)
        t = bdecode(node.datagrams_to_send()[0][0])[b"t"]
        reply = krpc.encode_response(t, krpc.PingResponse(voter[0].encode()[:1] * 20), ip=reported)
        node.receive_datagram(reply, voter, 1.1)

    answered_ping(("198.51.100.1", 1), external)
    answered_ping(("198.51.100.2", 1), external)  # same /24: one vote
    assert node.node_id == old
    answered_ping(("192.0.2.1", 1), ("10.0.0.1", 6881))  # private reports are ignored
    answered_ping(("192.0.2.2", 1), external)
    assert node.node_id == old, "two distinct voters are not enough"
    answered_ping(("100.1.2.3", 1), external)
    assert node.node_id != old
    assert bep42.is_valid_node_id(node.node_id, external[0], honor_exemptions=False)
    notices = []
    while (ev := node.next_notice()) is not None:
        notices.append(ev)
    assert ExternalAddressChanged(external[0], node.node_id) in notices
    assert node.external_ip == external[0]


def test_ipv6_node_answers_with_nodes6_and_18_byte_values() -> None:
    node = make_node(ipv6=True)
    for i in range(10):
        node.routing.node_responded(
            NodeInfo(random.Random(i).randbytes(20), (f"2001:db8:{i + 1:x}::1", 6881)), 0.0
        )
    asker = ("2001:db8::ff", 7000)
    r = ask(node, q(b"find_node", {b"id": b"c" * 20, b"target": b"t" * 20}), asker)[b"r"]
    assert b"nodes" not in r and len(decode_nodes(r[b"nodes6"], ipv6=True)) == 8
    # BEP 32 want: asking for n4 from an IPv6 node gets an (empty) nodes, n6 gets nodes6
    r = ask(
        node,
        q(b"find_node", {b"id": b"c" * 20, b"target": b"t" * 20, b"want": [b"n4", b"n6"]}),
        asker,
    )[b"r"]
    assert r[b"nodes"] == b"" and len(r[b"nodes6"]) == 8 * 38
    ih = b"6" * 20
    tok = ask(node, q(b"get_peers", {b"id": b"c" * 20, b"info_hash": ih}), asker)[b"r"][b"token"]
    a = {b"id": b"c" * 20, b"info_hash": ih, b"port": 1, b"implied_port": 1, b"token": tok}
    assert ask(node, q(b"announce_peer", a), asker)[b"y"] == b"r"
    r = ask(node, q(b"get_peers", {b"id": b"d" * 20, b"info_hash": ih}), ("2001:db8::fe", 1))
    assert [len(v) for v in r[b"r"][b"values"]] == [18]


def _pump(nodes: dict[tuple[str, int], NodeState], now: float) -> None:
    """Deliver datagrams between in-memory NodeStates until none is left."""
    moved = True
    while moved:
        moved = False
        for source, node in nodes.items():
            for data, dest in node.datagrams_to_send():
                moved = True
                if dest in nodes:
                    nodes[dest].receive_datagram(data, source, now)


@pytest.mark.parametrize(
    "answered_first",
    [
        pytest.param(True, id="answered"),
        pytest.param(False, id="not_yet"),
    ],
)
def test_core_store_to_a_named_bootstrap_node(answered_first: bool) -> None:
    """A user-named bootstrap node (``as_nodes=True``) that answers a lookup joins its
    closest set and gets the put, even when the lookup began before it first answered."""
    a_addr, b_addr = ("127.0.0.1", 1001), ("127.0.0.2", 1002)
    a = NodeState(b"\x01" * 20, random.Random(1), 0.0, NodeConfig())
    b = NodeState(b"\x02" * 20, random.Random(2), 0.0, NodeConfig())
    nodes = {a_addr: a, b_addr: b}
    b.bootstrap([a_addr], 0.0, as_nodes=True)
    if answered_first:
        _pump(nodes, 0.1)
    b.put_immutable(bencode(b"x"), 0.2)
    _pump(nodes, 0.3)
    b.handle_timer(100.0)
    _pump(nodes, 100.0)
    done = [e for e in iter(b.next_event, None) if isinstance(e, PutDone)]
    assert len(done) == 1 and done[0].accepted == 1
    assert len(a.items) == 1


def test_hardening_settings_reach_the_table_and_stores() -> None:
    """NodeConfig's hardening fields are wired: a public node turns loopback contacts and
    BEP 42-invalid ids away, and the store quotas follow the config."""
    node = make_node(local_network=False, enforce_node_id=True, max_peers_per_source=1)
    node.routing.node_responded(NodeInfo(b"\x22" * 20, ("127.0.0.9", 7000)), 0.0)
    node.routing.node_responded(NodeInfo(b"\x23" * 20, ("45.77.1.2", 7000)), 0.0)  # invalid id
    assert len(node.routing) == 0
    ih1, ih2 = b"\x31" * 20, b"\x32" * 20
    assert node.peer_store.announce(ih1, ("45.9.9.1", 1000), 1.0)
    assert not node.peer_store.announce(ih2, ("45.9.9.2", 1000), 1.0)  # same /24: quota 1


def test_store_phase_waits_for_a_storer_slower_than_the_soft_timeout() -> None:
    """A storer that answers after the store phase's soft deadline (two soft timeouts)
    is still waited for while fewer than half accepted: the put is reported stored."""
    a_addr, b_addr = ("127.0.0.1", 1001), ("127.0.0.2", 1002)
    a = NodeState(b"\x01" * 20, random.Random(1), 0.0, NodeConfig())
    b = NodeState(b"\x02" * 20, random.Random(2), 0.0, NodeConfig())
    nodes = {a_addr: a, b_addr: b}
    b.bootstrap([a_addr], 0.0, as_nodes=True)
    _pump(nodes, 0.1)
    b.put_immutable(bencode(b"slow"), 0.2)
    # Deliver the get lookup, and hold a's answer to the put.
    held: list[tuple[bytes, tuple[str, int]]] = []
    for _ in range(20):
        moved = False
        for data, _dest in b.datagrams_to_send():
            moved = True
            a.receive_datagram(data, b_addr, 0.25)
        for data, dest in a.datagrams_to_send():
            moved = True
            if b"2:ip" in data and held == [] and a.items and dest == b_addr:
                held.append((data, dest))  # the answer to the put
            else:
                b.receive_datagram(data, a_addr, 0.25)
        if not moved:
            break
    assert held and len(a.items) == 1
    b.handle_timer(1.5)  # long past two soft timeouts (the soft timeout is at most 1 s)
    assert not [e for e in iter(b.next_event, None) if isinstance(e, PutDone)]
    b.receive_datagram(held[0][0], a_addr, 1.6)  # the slow answer
    done = [e for e in iter(b.next_event, None) if isinstance(e, PutDone)]
    assert len(done) == 1 and done[0].accepted == 1
