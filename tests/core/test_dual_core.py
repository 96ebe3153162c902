"""Two sibling NodeStates (one per address family, BEP 32): shared stores, ``want``
answered from the sibling's table (no sockets)."""

from __future__ import annotations

import random
from typing import Any

from mldht.core.bencode import bdecode, bencode
from mldht.core.compact import NodeInfo, decode_nodes
from mldht.core.node import NodeConfig, NodeState

ID = b"\x11" * 20
IH = b"\x22" * 20
C4 = ("127.0.0.2", 7000)
C6 = ("::1", 7001)


def pair(**cfg: Any) -> tuple[NodeState, NodeState]:
    rng = random.Random(5)
    v4 = NodeState(ID, rng, 0.0, NodeConfig(**cfg))
    v6 = NodeState(ID, rng, 0.0, NodeConfig(ipv6=True, **cfg), sibling=v4)
    return v4, v6


def ask(node: NodeState, method: bytes, args: dict[bytes, Any], addr: tuple[str, int]) -> Any:
    raw = bencode({b"a": args, b"q": method, b"t": b"tt", b"y": b"q"})
    node.receive_datagram(raw, addr, 1.0)
    assert node.stats["internal_errors"] == 0
    out = [bdecode(d) for d, a in node.datagrams_to_send() if a == addr]
    replies = [m for m in out if m[b"y"] == b"r"]  # (a new querier is pinged too)
    assert len(replies) == 1
    return replies[0][b"r"]


def test_want_is_answered_from_the_sibling_table() -> None:
    v4, v6 = pair()
    n4 = NodeInfo(b"\x33" * 20, ("127.0.0.5", 6881))
    n6 = NodeInfo(b"\x44" * 20, ("::1", 6882))
    v4.routing.node_responded(n4, 0.5)
    v6.routing.node_responded(n6, 0.5)
    target = b"\x40" * 20
    both = {b"id": b"c" * 20, b"target": target, b"want": [b"n4", b"n6"]}
    for node, addr in ((v4, C4), (v6, C6)):  # asked over either family
        r = ask(node, b"find_node", both, addr)
        assert decode_nodes(r[b"nodes"], ipv6=False) == [n4]
        assert decode_nodes(r[b"nodes6"], ipv6=True) == [n6]
    plain = ask(v4, b"find_node", {b"id": b"c" * 20, b"target": target}, C4)
    assert b"nodes6" not in plain and decode_nodes(plain[b"nodes"], ipv6=False) == [n4]
    only6 = ask(v4, b"get_peers", {b"id": b"c" * 20, b"info_hash": IH, b"want": [b"n6"]}, C4)
    assert b"nodes" not in only6 and decode_nodes(only6[b"nodes6"], ipv6=True) == [n6]


def test_stores_are_shared_and_values_follow_the_query_family() -> None:
    v4, v6 = pair()
    assert v4.peer_store is v6.peer_store and v4.items is v6.items and v4.tokens is v6.tokens
    for node, addr, port in ((v6, C6, 4242), (v4, C4, 4343)):
        token = ask(node, b"get_peers", {b"id": b"c" * 20, b"info_hash": IH}, addr)[b"token"]
        args = {b"id": b"c" * 20, b"info_hash": IH, b"port": port, b"token": token}
        ask(node, b"announce_peer", args, addr)
    # BEP 32: values of the query's family only, from the one store
    r4 = ask(v4, b"get_peers", {b"id": b"d" * 20, b"info_hash": IH}, ("127.0.0.3", 1))
    r6 = ask(v6, b"get_peers", {b"id": b"d" * 20, b"info_hash": IH}, ("::1", 2))
    assert len(r4[b"values"]) == 1 and len(r4[b"values"][0]) == 6
    assert len(r6[b"values"]) == 1 and len(r6[b"values"][0]) == 18
    assert v4.peer_store.peer_count() == 2


def test_one_send_budget_for_both_families() -> None:
    """``send_rate`` bounds the node, not each family: replies the IPv4 side sent use up
    the IPv6 side's budget too."""
    v4, v6 = pair(send_rate=400)
    ping = {b"id": b"c" * 20}
    raw = bencode({b"a": ping, b"q": b"ping", b"t": b"tt", b"y": b"q"})
    for i in range(20):  # ~50-byte replies: 400 bytes go in the first few
        v4.receive_datagram(raw, (f"127.0.0.{10 + i}", 7000), 1.0)
    v4.datagrams_to_send()
    assert v4.stats["send_budget_replies"] > 0
    v6.receive_datagram(raw, C6, 1.0)
    assert v6.stats["send_budget_replies"] == 1
    assert not [d for d, a in v6.datagrams_to_send() if a == C6]
