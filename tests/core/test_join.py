"""The core owns the join retry policy (mldht.core.maintenance.Bootstrapper)."""

from __future__ import annotations

import random

from mldht.core.compact import NodeInfo
from mldht.core.maintenance import BACKOFF_MIN
from mldht.core.node import NodeConfig, NodeState

ROUTER = ("10.0.0.9", 6881)


def make_node() -> NodeState:
    config = NodeConfig(maintenance_interval=1.0, lookup_timeout=3.0, query_timeout=1.0)
    return NodeState(b"\x01" * 20, random.Random(1), 0.0, config)


def run_until(node: NodeState, end: float, t: float) -> float:
    while t < end:
        t += 0.5
        node.handle_timer(t)
        node.datagrams_to_send()
    return t


def test_failed_rounds_are_counted_and_retried_with_backoff() -> None:
    node = make_node()
    boot = node.bootstrapper
    node.bootstrap([ROUTER], 0.0)
    t = run_until(node, 4.0, 0.0)
    assert boot.rounds == 1 and boot.failed_rounds == 1
    assert boot.retry_delay == BACKOFF_MIN and boot.next_retry is not None
    t = run_until(node, 30.0, t)
    assert boot.failed_rounds >= 3
    assert boot.retry_delay is not None and boot.retry_delay > BACKOFF_MIN


def test_one_shot_never_retries() -> None:
    node = make_node()
    node.bootstrap([ROUTER], 0.0, retry=False)
    run_until(node, 60.0, 0.0)
    boot = node.bootstrapper
    assert boot.rounds == 1 and boot.next_retry is None


def test_an_emptied_table_rejoins_from_the_routers() -> None:
    node = make_node()
    boot = node.bootstrapper
    node.bootstrap([ROUTER], 0.0)
    for i in range(node.config.k):
        node.routing.node_responded(NodeInfo(bytes([2 + i]) * 20, (f"10.0.1.{i}", 6881)), 0.1)
    t = run_until(node, 4.0, 0.0)
    assert boot.failed_rounds == 0 and boot.next_retry is None and boot.rejoins == 0
    for n in list(node.routing):
        node.routing.remove(n.id)
    assert len(node.routing) == 0
    t = run_until(node, t + 2.0, t)
    assert boot.rejoins == 1 and boot.rounds >= 1
