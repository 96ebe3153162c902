"""A timer event touches only the operations whose deadline passed (mldht.core.timers)."""

from __future__ import annotations

import random

import pytest

from mldht.core.compact import NodeInfo
from mldht.core.events import LookupDone
from mldht.core.ids import random_id
from mldht.core.node import TIMER_EXPIRED_BATCH, TIMER_OPS_BATCH, NodeState
from mldht.core.operations import LookupOp
from mldht.core.timers import RunningOps


class _Op:
    """A timed operation whose deadline the test sets; counts its timer calls."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.fired = 0

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.fired += 1
        self.deadline = None


def test_only_due_operations_run_and_each_once() -> None:
    running = RunningOps()
    ops = {i: _Op(float(i)) for i in range(1, 101)}
    for i, op in ops.items():
        running[i] = op
    assert running.next_deadline() == 1.0
    assert running.run_due(3.5) == 3
    assert [ops[i].fired for i in (1, 2, 3, 4)] == [1, 1, 1, 0]
    assert running.next_deadline() == 4.0
    assert running.run_due(3.9) == 0


def test_a_moved_deadline_is_followed_and_the_old_one_forgotten() -> None:
    running = RunningOps()
    op = _Op(10.0)
    running[1] = op
    op.deadline = 2.0  # earlier, e.g. a shorter soft timeout
    running.reschedule(1)
    assert running.next_deadline() == 2.0
    op.deadline = 5.0  # later, e.g. the query answered
    running.reschedule(1)
    assert running.next_deadline() == 5.0
    assert running.run_due(4.0) == 0
    assert running.run_due(10.0) == 1
    assert op.fired == 1
    assert running.next_deadline() is None


def test_an_ended_operation_is_never_run() -> None:
    running = RunningOps()
    a, b = _Op(1.0), _Op(1.0)
    running[1] = a
    running[2] = b
    running.pop(1)
    assert 1 not in running and len(running) == 1
    assert running.run_due(2.0) == 1
    assert (a.fired, b.fired) == (0, 1)


def test_the_heap_stays_bounded_under_rescheduling() -> None:
    running = RunningOps()
    op = _Op(0.0)
    running[1] = op
    for i in range(10_000):
        op.deadline = float(i)
        running.reschedule(1)
    assert len(running._heap) <= 2 * 1 + 64 + 1
    assert running.next_deadline() == 9999.0


def test_node_timer_touches_only_lookups_whose_deadline_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 lookups open, started two seconds apart: a timer event at the first one's soft
    deadline runs that lookup's timer only."""
    rng = random.Random(7)
    node = NodeState(random_id(rng), rng, 0.0)
    for i in range(40):
        node.routing.node_responded(NodeInfo(random_id(rng), (f"10.0.{i}.1", 6881)), 0.0)
    calls: list[int] = []
    real = LookupOp.handle_timer

    def counting(self: LookupOp, now: float) -> None:
        calls.append(self.op)
        real(self, now)

    monkeypatch.setattr(LookupOp, "handle_timer", counting)
    ops = [node.find_node(random_id(rng), 2.0 * i) for i in range(300)]
    node.datagrams_to_send()
    first = node.next_deadline()
    assert first == 1.0  # the first lookup's soft deadline (soft_timeout)
    node.handle_timer(first)
    assert calls == [ops[0]]
    # Every lookup still ends: at its own lookup deadline at the latest (60 s).
    now = first
    for _ in range(100_000):
        d = node.next_deadline()
        if d is None or now > 1000.0:
            break
        now = max(now, d)
        node.handle_timer(now)
        node.datagrams_to_send()
    done = set()
    while (ev := node.next_event()) is not None:
        if isinstance(ev, LookupDone):
            done.add(ev.op)
    assert done == set(ops)
    assert len(node._ctx.running) == 0


def test_run_due_with_a_limit_leaves_the_rest_due() -> None:
    running = RunningOps()
    ops = {i: _Op(1.0) for i in range(1, 51)}
    for i, op in ops.items():
        running[i] = op
    assert running.run_due(2.0, limit=16) == 16
    assert running.next_deadline() == 1.0  # still due: the next call takes them
    assert running.run_due(2.0, limit=16) == 16
    assert running.run_due(2.0) == 18
    assert all(op.fired == 1 for op in ops.values())
    assert running.next_deadline() is None


def test_a_timer_event_does_bounded_work_and_the_rest_stays_due() -> None:
    """400 lookups started at the same instant fall due together: one timer event runs
    at most TIMER_OPS_BATCH of them and expires at most TIMER_EXPIRED_BATCH queries;
    next_deadline() stays in the past until every one has run, and all lookups end."""
    rng = random.Random(11)
    node = NodeState(random_id(rng), rng, 0.0)
    for i in range(40):
        node.routing.node_responded(NodeInfo(random_id(rng), (f"10.0.{i}.1", 6881)), 0.0)
    ops = [node.find_node(random_id(rng), 0.0) for _ in range(400)]
    node.datagrams_to_send()  # nobody answers
    pending = len(node._ctx.tx._heap)
    now = 100.0  # every query and lookup deadline passed
    node.handle_timer(now)
    assert len(node._ctx.tx._heap) >= pending - TIMER_EXPIRED_BATCH
    deadline = node.next_deadline()
    assert deadline is not None and deadline <= now
    calls = 1
    while (d := node.next_deadline()) is not None and d <= now and calls < 10_000:
        node.handle_timer(now)
        node.datagrams_to_send()
        calls += 1
    assert calls > 400 // TIMER_OPS_BATCH
    done = {ev.op for ev in iter(node.next_event, None) if isinstance(ev, LookupDone)}
    assert done == set(ops)
