"""The operations with deadlines of a node, indexed by their next deadline.

A node may run thousands of lookups at once (a crawler, a busy client, a republisher);
a timer event must cost what is due, not what is open. :class:`RunningOps` keeps the
running operations by op id (as a dict would) and a heap of their next deadlines, so
that :meth:`RunningOps.due` touches only the operations whose deadline passed and
:meth:`RunningOps.next_deadline` is the heap's top.

An operation's next deadline changes only inside a call into it (its start, an answer,
an error, a timeout, its timer); whoever makes such a call then calls
:meth:`RunningOps.reschedule`. The heap is lazy: an entry whose deadline is no longer
the operation's scheduled one, or whose operation ended, is skipped when it surfaces,
and the heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Protocol

__all__ = ["RunningOps", "Timed"]


class Timed(Protocol):
    """An operation with deadlines of its own (a lookup), registered while it runs."""

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class RunningOps:
    """Running operations by op id, with their next deadlines in a heap."""

    __slots__ = ("_heap", "_ops", "_scheduled")

    def __init__(self) -> None:
        self._ops: dict[int, Timed] = {}
        self._scheduled: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    # ------------------------------------------------------------ mapping view

    def __setitem__(self, op: int, timed: Timed) -> None:
        self._ops[op] = timed
        self.reschedule(op)

    def __getitem__(self, op: int) -> Timed:
        return self._ops[op]

    def __contains__(self, op: object) -> bool:
        return op in self._ops

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ops)

    def values(self) -> list[Timed]:
        """The running operations (a copy: they may end while the caller iterates)."""
        return list(self._ops.values())

    def pop(self, op: int, default: Timed | None = None) -> Timed | None:
        """Unregister ``op`` (it ended); its heap entries go stale."""
        self._scheduled.pop(op, None)
        return self._ops.pop(op, default)

    # ---------------------------------------------------------------- deadlines

    def reschedule(self, op: int) -> None:
        """Index the current next deadline of operation ``op`` (after any call into it);
        nothing if it is not running or its deadline did not change."""
        timed = self._ops.get(op)
        if timed is None:
            return
        d = timed.next_deadline()
        if d is None:
            self._scheduled.pop(op, None)
            return
        if self._scheduled.get(op) == d:
            return
        self._scheduled[op] = d
        heapq.heappush(self._heap, (d, op))
        if len(self._heap) > 2 * len(self._scheduled) + 64:
            self._heap = [(d, o) for o, d in self._scheduled.items()]
            heapq.heapify(self._heap)

    def _settle(self) -> None:
        """Drop stale entries from the heap's top."""
        heap, scheduled = self._heap, self._scheduled
        while heap:
            d, op = heap[0]
            if scheduled.get(op) == d:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The earliest deadline of the running operations, or ``None``."""
        self._settle()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int | None = None) -> list[int]:
        """Take out of the index the operations whose deadline is ``now`` or earlier
        (each once, at most ``limit`` of them, earliest first); the caller runs their
        timer and reschedules them."""
        out: list[int] = []
        heap, scheduled = self._heap, self._scheduled
        while limit is None or len(out) < limit:
            self._settle()
            if not heap or heap[0][0] > now:
                return out
            _, op = heapq.heappop(heap)
            del scheduled[op]
            out.append(op)
        return out

    def run_due(self, now: float, limit: int | None = None) -> int:
        """Run the timer of each operation whose deadline passed (at most ``limit``,
        earliest first: the others stay due, for the next call), then index its next
        deadline; returns how many ran."""
        ops = self.due(now, limit)
        for op in ops:
            timed = self._ops.get(op)  # an earlier timer may have ended it
            if timed is not None:
                timed.handle_timer(now)
                self.reschedule(op)
        return len(ops)
