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


def test_refresh_lookups_after_a_self_lookup_are_paced() -> None:
    """The far-bucket lookups of a bootstrap start a few per maintenance step, not all in
    the callback that ended the self-lookup."""
    from mldht.core.maintenance import LOOKUPS_PER_STEP, STEP_INTERVAL

    node = make_node()
    boot = node.bootstrapper
    node.bootstrap([ROUTER], 0.0)
    t = 0.0
    while boot.rounds == 0 and t < 10.0:  # until the self-lookup fails
        t += 0.01
        node.handle_timer(t)
        node.datagrams_to_send()
    assert boot.rounds == 1 and len(boot.refreshes) >= 4 - LOOKUPS_PER_STEP
    sent = 0
    steps = 0
    while boot.refreshes and steps < 100:
        before = len(boot.refreshes)
        due = node.next_deadline()
        assert due is not None and due <= t + STEP_INTERVAL + 1e-9
        t = max(t, due)
        node.handle_timer(t)
        sent += len(node.datagrams_to_send())
        assert before - len(boot.refreshes) <= LOOKUPS_PER_STEP
        steps += 1
    assert not boot.refreshes and steps >= 1 and sent > 0
