"""The core's republish schedule (mldht.core.republish) on hand-driven time."""

from __future__ import annotations

import random

import pytest

from mldht.core import bep44
from mldht.core.bencode import bencode
from mldht.core.compact import NodeInfo
from mldht.core.krpc import Get, decode_message
from mldht.core.node import NodeConfig, NodeState
from mldht.core.republish import REPUBLISH_CONCURRENCY, WAIT_FOR_TABLE
from mldht.errors import InvalidArgument

KP = bep44.KeyPair.from_seed(bytes(range(32)))


def make_node(interval: float = 100.0) -> NodeState:
    config = NodeConfig(maintenance_interval=1000.0)
    return NodeState(b"\x01" * 20, random.Random(1), 0.0, config, republish_interval=interval)


def add_neighbour(node: NodeState, now: float) -> None:
    node.routing.node_responded(NodeInfo(b"\x02" * 20, ("10.0.0.2", 6881)), now)


def get_queries(node: NodeState) -> list[bytes]:
    out = []
    for data, _ in node.datagrams_to_send():
        msg = decode_message(data)
        if isinstance(getattr(msg, "body", None), Get):
            out.append(msg.body.target)  # type: ignore[union-attr]
    return out


def test_list_add_replace_remove() -> None:
    node = make_node()
    v = bencode(b"item")
    pub = node.add_publication(v, 10.0)
    assert pub.target == bep44.immutable_target(v) and pub.seq is None
    mpub = node.add_publication(v, 20.0, keypair=KP, salt=b"s", seq=3)
    assert mpub.target == KP.target(b"s")
    assert node.republishing == {pub.target, mpub.target}
    again = node.add_publication(bencode(b"other"), 30.0, keypair=KP, salt=b"s", seq=4)
    assert [p.seq for p in node.publications()] == [None, 4] and again.due == 30.0
    assert node.stop_republishing(pub.target)
    assert not node.stop_republishing(pub.target)
    assert node.republishing == {mpub.target}
    with pytest.raises(InvalidArgument):
        node.add_publication(v, 0.0, keypair=KP)  # a mutable item needs its seq
    with pytest.raises(InvalidArgument):
        NodeState(b"\x01" * 20, random.Random(1), 0.0, republish_interval=0)


def test_due_items_wait_for_a_table_then_are_reput_silently() -> None:
    node = make_node(interval=100.0)
    v = bencode(b"item")
    target = node.add_publication(v, 10.0).target
    assert node.next_deadline() == 10.0
    node.handle_timer(10.0)
    assert get_queries(node) == []  # nobody to put to yet: wait
    assert node.next_deadline() == 10.0 + WAIT_FOR_TABLE
    add_neighbour(node, 11.0)
    node.handle_timer(12.0)
    assert get_queries(node) == []  # still held
    node.handle_timer(10.0 + WAIT_FOR_TABLE)
    assert get_queries(node) == [target]  # the put's get lookup
    # the put ends (no answer: lookup and store timeouts) without any event
    end = 10.0 + WAIT_FOR_TABLE + 200.0
    t = 10.0 + WAIT_FOR_TABLE
    while t < end:
        t += 1.0
        node.handle_timer(t)
        node.datagrams_to_send()
    assert node.next_event() is None
    assert node.republisher.puts >= 1
    assert node.republishing == {target}  # a failed re-put keeps the item


def test_at_most_concurrency_reputs_at_once() -> None:
    node = make_node(interval=1000.0)
    add_neighbour(node, 0.0)
    n = REPUBLISH_CONCURRENCY + 3
    for i in range(n):
        node.add_publication(bencode(i), 5.0)
    node.handle_timer(5.0)
    assert len(get_queries(node)) == REPUBLISH_CONCURRENCY
    # the others wait for a running one to end, not for a deadline of their own
    assert node.republisher.next_deadline() is None
    t = 5.0
    while node.republisher.puts < n and t < 300.0:
        t += 1.0
        add_neighbour(node, t)  # it stays in the table although it never answers
        node.handle_timer(t)
        node.datagrams_to_send()
    assert node.republisher.puts == n
    # every item is due again one interval after its re-put started
    assert min(p.due for p in node.publications()) == 1005.0
    assert node.next_event() is None


def test_stopped_item_is_not_reput() -> None:
    node = make_node(interval=50.0)
    add_neighbour(node, 0.0)
    target = node.add_publication(bencode(b"x"), 5.0).target
    node.stop_republishing(target)
    assert node.republisher.next_deadline() is None
    node.handle_timer(5.0)
    assert get_queries(node) == []
