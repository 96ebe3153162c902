"""Node events from the core (NodeState.next_notice), seen through the simulator, and the
counters the metrics read (queries by method, bytes, lookup durations)."""

from __future__ import annotations

import random
from typing import Any

from mldht.core import bep44
from mldht.core.bencode import bencode
from mldht.core.compact import Addr, NodeInfo
from mldht.core.counters import Histogram
from mldht.core.events import (
    NOTICE_BACKLOG,
    AnnounceDone,
    ItemStored,
    NodeAdded,
    NodeEvent,
    NodeRemoved,
    PeerAnnounced,
    PutDone,
    Ready,
    Warning,
)
from mldht.core.node import NodeConfig, NodeState
from mldht.sim import Simulator

INFOHASH = bytes.fromhex("aa" * 20)


def _two_nodes() -> tuple[Simulator, Addr, Addr, dict[Addr, list[NodeEvent]]]:
    """A first node and one that joins through it, every node event recorded."""
    sim = Simulator(seed=3)
    seen: dict[Addr, list[NodeEvent]] = {}
    sim.on_notice = lambda addr, event, now: seen.setdefault(addr, []).append(event)
    first = sim.add_node()
    joiner = sim.add_node()
    sim.start(first, lambda st, now: st.bootstrap([], now, retry=False))
    sim.start(joiner, lambda st, now: st.bootstrap([first], now, as_nodes=True))
    sim.run(until=30.0)
    return sim, first, joiner, seen


def test_a_joining_node_is_seen_as_node_added_on_both_sides() -> None:
    sim, first, joiner, seen = _two_nodes()
    first_id = sim.state(first).node_id
    joiner_id = sim.state(joiner).node_id
    assert NodeAdded(NodeInfo(joiner_id, joiner)) in seen[first]
    assert NodeAdded(NodeInfo(first_id, first)) in seen[joiner]
    readies = [e for e in seen[joiner] if isinstance(e, Ready)]
    assert readies == [Ready(1)], "Ready once, when the first round ended with a node"


def test_an_announce_is_seen_as_peer_announced_by_the_storing_node() -> None:
    sim, first, joiner, seen = _two_nodes()
    done, _ = sim.run_op(joiner, lambda st, now: st.announce(INFOHASH, 6000, now))
    assert isinstance(done, AnnounceDone) and done.accepted == 1
    assert PeerAnnounced(INFOHASH, (joiner[0], 6000), joiner) in seen[first]
    assert not any(isinstance(e, PeerAnnounced) for e in seen[joiner])


def test_a_put_is_seen_as_item_stored() -> None:
    sim, first, joiner, seen = _two_nodes()
    keypair = bep44.KeyPair.from_seed(b"\x05" * 32)
    value = bencode(b"hello")

    def put(st: NodeState, now: float) -> int:
        return st.put_mutable(value, now, keypair=keypair, salt=b"s", seq=4)

    done, _ = sim.run_op(joiner, put)
    assert isinstance(done, PutDone) and done.accepted == 1
    stored = [e for e in seen[first] if isinstance(e, ItemStored)]
    target = bep44.mutable_target(keypair.public_key, b"s")
    assert stored == [ItemStored(target, joiner, keypair.public_key, b"s", 4)]


def test_lookup_durations_and_queries_by_method_are_counted() -> None:
    sim, first, joiner, _ = _two_nodes()
    sim.run_op(joiner, lambda st, now: st.get_peers(INFOHASH, now))
    sim.run_op(joiner, lambda st, now: st.announce(INFOHASH, None, now))
    joining, serving = sim.state(joiner), sim.state(first)
    times = joining.op_times
    assert set(times.kinds) == {"get_peers", "announce"}
    assert times.kinds["get_peers"].count == 1 and times.open == 0
    assert 0 < times.kinds["announce"].sum < 60
    assert serving.queries_in[b"announce_peer"] == 1
    assert serving.queries_in[b"get_peers"] >= 2
    assert joining.queries_out[b"announce_peer"] == 1
    assert sum(serving.queries_in.values()) == serving.stats["queries_in"]
    assert serving.stats["bytes_in"] > 0 and joining.stats["bytes_out"] > 0


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    hist = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 9.0):
        hist.observe(value)
    assert hist.cumulative() == [(1.0, 2), (2.0, 3), (float("inf"), 4)]
    assert (hist.count, hist.sum) == (4, 12.0)


def test_node_removed_when_a_node_leaves_the_table() -> None:
    node = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig())
    other = NodeInfo(b"\x22" * 20, ("10.0.0.2", 6881))
    node.routing.node_responded(other, 1.0)
    node.routing.remove(other.id)
    notices = []
    while (event := node.next_notice()) is not None:
        notices.append(event)
    assert notices == [NodeAdded(other), NodeRemoved(other)]


def test_the_core_backlog_is_bounded_and_counts_what_it_dropped() -> None:
    node = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig())
    other = NodeInfo(b"\x22" * 20, ("10.0.0.2", 6881))
    for _ in range(NOTICE_BACKLOG):  # nobody drains: 2 * NOTICE_BACKLOG notices
        node.routing.node_responded(other, 1.0)
        node.routing.remove(other.id)
    drained = []
    while (event := node.next_notice()) is not None:
        drained.append(event)
    assert len(drained) == NOTICE_BACKLOG
    assert node.notices_lost == NOTICE_BACKLOG
    assert drained[-1] == NodeRemoved(other), "the oldest went first"


def test_an_internal_error_is_a_warning() -> None:
    node = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    node._answer = {t: broken for t in node._answer}
    node._fast = broken  # the fast lane (core.fast_answers) answers a ping first
    ping = bencode({b"a": {b"id": b"\x22" * 20}, b"q": b"ping", b"t": b"aa", b"y": b"q"})
    node.receive_datagram(ping, ("10.0.0.9", 1), 1.0)
    notice = node.next_notice()
    assert isinstance(notice, Warning) and notice.kind == "internal_error"


def test_a_join_round_that_found_nobody_is_a_warning() -> None:
    sim = Simulator(seed=4)
    seen: list[NodeEvent] = []
    sim.on_notice = lambda addr, event, now: seen.append(event)
    dead = sim.add_node(dead=True)
    lonely = sim.add_node()
    sim.start(lonely, lambda st, now: st.bootstrap([dead], now, retry=False))
    sim.run(until=60.0)
    assert [e.kind for e in seen if isinstance(e, Warning)] == ["bootstrap_failed"]
    assert not any(isinstance(e, Ready) for e in seen)
