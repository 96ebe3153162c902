"""Outstanding queries: random transaction ids, deadlines, anti-spoofing matching."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import MldhtError
from .compact import Addr

if TYPE_CHECKING:  # an RNG is passed in; the core never draws randomness itself
    import random

__all__ = ["Pending", "Transactions"]


@dataclass(slots=True, eq=False)
class Pending:
    """One query in flight. ``context`` is the caller's (e.g. the lookup it belongs to)."""

    t: bytes
    addr: Addr
    method: bytes
    sent_at: float
    deadline: float
    node_id: bytes | None = None
    context: object = field(default=None, repr=False)


class Transactions:
    """Pending calls keyed by (transaction id, address).

    A reply is matched by ``t`` **and** the address the query went to (BEP 5, "KRPC Protocol"); a
    reply carrying a known ``t`` from another address is dropped and counted in
    :attr:`spoofed`.
    """

    def __init__(self, rng: random.Random, *, t_len: int = 2, max_pending: int = 4096) -> None:
        self._rng = rng
        self._t_len = t_len
        self._by_key: dict[tuple[bytes, Addr], Pending] = {}
        self._by_t: dict[bytes, int] = {}
        self._heap: list[tuple[float, int, Pending]] = []
        self._seq = 0
        self.max_pending = max_pending
        self.spoofed = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def new(
        self,
        addr: Addr,
        method: bytes,
        now: float,
        timeout: float,
        node_id: bytes | None = None,
        context: object = None,
    ) -> Pending:
        """Register a query to ``addr`` and return it with a fresh transaction id."""
        for _ in range(64):
            t = self._rng.getrandbits(8 * self._t_len).to_bytes(self._t_len, "big")
            if (t, addr) not in self._by_key:
                break
        else:  # pragma: no cover - 64 collisions in a row cannot happen with a sane table
            raise MldhtError("no free transaction id")
        p = Pending(t, addr, method, now, now + timeout, node_id, context)
        self._by_key[(t, addr)] = p
        self._by_t[t] = self._by_t.get(t, 0) + 1
        self._seq += 1
        heapq.heappush(self._heap, (p.deadline, self._seq, p))
        return p

    def match(self, t: bytes, addr: Addr) -> Pending | None:
        """Pop the pending query answered by a reply with ``t`` from ``addr``."""
        p = self._by_key.pop((t, addr), None)
        if p is None:
            if t in self._by_t:
                self.spoofed += 1
            return None
        self._forget_t(t)
        return p

    def _forget_t(self, t: bytes) -> None:
        n = self._by_t[t] - 1
        if n:
            self._by_t[t] = n
        else:
            del self._by_t[t]

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._by_key.get((heap[0][2].t, heap[0][2].addr)) is not heap[0][2]:
            heapq.heappop(heap)  # already answered
        return heap[0][0] if heap else None

    def expire(self, now: float, limit: int | None = None) -> list[Pending]:
        """Remove and return the queries whose deadline has passed (at most ``limit``,
        earliest first; the others stay, for the next call)."""
        out: list[Pending] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            _, _, p = heapq.heappop(heap)
            if self._by_key.get((p.t, p.addr)) is p:
                del self._by_key[(p.t, p.addr)]
                self._forget_t(p.t)
                out.append(p)
        return out

    @property
    def full(self) -> bool:
        return len(self._by_key) >= self.max_pending
