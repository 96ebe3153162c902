"""The fast lane (core.fast_answers) answers byte for byte as the general path does."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mldht.core.bencode import bencode
from mldht.core.compact import Addr, NodeInfo
from mldht.core.node import NodeConfig, NodeState

OWN = b"\x11" * 20
SOURCES: list[Addr] = [
    ("1.2.3.4", 6881),
    ("5.6.7.8", 1000),
    ("127.0.0.5", 7000),
    ("10.0.0.7", 7001),
    ("2a00:1450:4001::5", 6881),
    ("::ffff:9.9.9.9", 6882),
]


def _node(lane: bool, limits: dict[str, int]) -> tuple[NodeState, list[bool]]:
    rng = random.Random(7)
    config = NodeConfig(rate_limit=0, send_rate=0)
    for name, value in limits.items():
        setattr(config, name, value)
    node = NodeState(OWN, rng, 0.0, config)
    for i in range(60):
        node.routing.node_responded(NodeInfo(rng.randbytes(20), (f"8.8.{i}.1", 6881)), 0.0)
    node.routing.node_responded(NodeInfo(b"\x42" * 20, SOURCES[1]), 0.0)  # a known querier
    for i in range(30):  # peers of one info-hash, from several /24s
        node.peer_store.announce(b"\x33" * 20, (f"20.0.{i}.9", 5000 + i), 0.0)
    node.peer_store.announce(b"\x34" * 20, ("30.0.0.1", 4000), 0.0)
    node.peer_store.announce(b"\x35" * 20, ("9.9.9.9", 999), 0.0)  # a querier as a peer
    taken: list[bool] = []
    fast = node._fast

    def lane_or_not(d: Any, addr: Addr, now: float) -> bool:
        taken.append(fast(d, addr, now) if lane else False)
        return taken[-1]

    node._fast = lane_or_not
    return node, taken


def _queries(rng: random.Random) -> list[bytes]:
    out = []
    for n in range(300):
        sid = b"\x42" * 20 if n % 7 == 0 else (OWN if n % 29 == 0 else rng.randbytes(20))
        a: dict[bytes, Any] = {b"id": sid}
        kind = (b"ping", b"find_node", b"get_peers")[n % 3]
        if kind == b"find_node":
            a[b"target"] = rng.randbytes(20)
        elif kind == b"get_peers":
            a[b"info_hash"] = (b"\x33" * 20, b"\x34" * 20, rng.randbytes(20))[n % 5 % 3]
        if n % 11 == 0:
            a[b"want"] = [b"n4", b"n6"]
        if n % 13 == 0 and kind == b"get_peers":
            a[b"noseed"] = 1
        d: dict[bytes, Any] = {b"a": a, b"q": kind, b"t": rng.randbytes(n % 70), b"y": b"q"}
        if n % 4 == 0:
            d[b"v"] = b"LT\x01\x02"
        if n % 17 == 0:
            d[b"ro"] = 1
        if n % 19 == 0:
            a[b"target"] = b"short"  # a wrong key for a ping or get_peers: ignored
        out.append(bencode(d))
    return out


@pytest.mark.parametrize(
    "limits",
    [{}, {"max_infohashes": 2}, {"max_peers_per_source": 1}, {"max_peers_per_infohash": 30}],
)
def test_the_fast_lane_answers_as_the_general_path(limits: dict[str, int]) -> None:
    """Tokens withheld as can_accept says too: a full store, a source at its quota, a
    full info-hash."""
    queries = _queries(random.Random(3))
    results = []
    for lane in (True, False):
        node, taken = _node(lane, limits)
        sent = []
        for n, data in enumerate(queries):
            node.receive_datagram(data, SOURCES[n % len(SOURCES)], 10.0 + n)
            sent.append(node.datagrams_to_send())
        results.append((sent, dict(node.stats), dict(node.queries_in), taken))
    (fast_sent, fast_stats, fast_in, fast_taken), (slow_sent, slow_stats, slow_in, _) = results
    assert fast_sent == slow_sent
    assert fast_stats == slow_stats and fast_in == slow_in
    assert 150 < sum(fast_taken) < len(queries), "most, not all, went the fast lane"
    assert any(b"6:valuesl" in d for batch in fast_sent for d, _ in batch)
    assert any(b"5:token" in d for batch in fast_sent for d, _ in batch)
    withheld = [
        n
        for n, batch in enumerate(fast_sent)
        if b"9:get_peers" in queries[n] and batch and b"5:token" not in batch[-1][0]
    ]
    assert bool(withheld) == bool(limits), "get_peers answers without a token"
    assert fast_stats["internal_errors"] == 0
