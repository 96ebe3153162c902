"""The pieces of the routing table: entries, their BEP 5 states, and buckets.

:class:`~mldht.core.routing.RoutingTable` holds a list of :class:`Bucket`; each holds
live :class:`RoutingEntry` objects and a replacement cache. :func:`collect` takes the
closest entries of one bucket (the table's :meth:`~RoutingTable.closest` walks the
buckets in distance order).
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from .compact import Addr, NodeInfo
from .ids import ID_BITS

__all__ = ["Bucket", "NodeStatus", "RoutingEntry", "collect", "entry_snapshot"]


class NodeStatus(enum.Enum):
    """The three node states of BEP 5, "Routing Table"."""

    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


@dataclass(slots=True, eq=False)
class RoutingEntry:
    """What the table knows about one node. Read-only for callers: the table updates it.

    Every entry has answered at least one of our queries (``last_response``): nodes that
    only queried us are never inserted (BEP 5, "Routing Table").
    """

    node: NodeInfo
    id_int: int
    """The id as an integer, precomputed for fast XOR distances."""
    first_seen: float
    last_response: float
    """When it last answered one of our queries."""
    last_query: float | None = None
    """When it last sent us a query, if ever since it entered the table."""
    fails: int = 0
    """Queries of ours it failed to answer since its last answer."""
    rtt: float | None = None
    """Smoothed round-trip time in seconds, if any was measured."""
    version: bytes | None = None
    """The KRPC ``v`` value it last sent, if any."""
    in_table: bool = False
    """True for a live entry, False while it waits in a replacement cache."""
    ping_pending: bool = False
    """Handed out by :meth:`RoutingTable.nodes_to_ping`, not yet reported back."""
    subnet: bytes | None = None
    """The /24 (IPv6: /64) of a public address, None for a local one (see netaddr)."""
    preferred: bool = False
    """Whether the table's ``prefer`` rule (BEP 42: the id matches the IP) holds, judged
    once when the entry is made (an entry's id and address never change)."""

    @property
    def id(self) -> bytes:
        return self.node.id

    @property
    def addr(self) -> Addr:
        return self.node.addr

    @property
    def last_seen(self) -> float:
        """The latest time it answered us or queried us."""
        if self.last_query is None or self.last_query < self.last_response:
            return self.last_response
        return self.last_query


class Bucket:
    """One k-bucket: its live entries, its replacement cache and its refresh clock."""

    __slots__ = (
        "_bad",
        "_invalid",
        "_sorted",
        "cache",
        "index",
        "last_changed",
        "limit",
        "live",
        "version",
    )

    def __init__(self, index: int, limit: int, last_changed: float | None) -> None:
        self.index = index
        self.limit = limit
        self.live: list[RoutingEntry] = []
        # oldest first: the newest candidate is appended and the oldest is dropped first
        self.cache: list[RoutingEntry] = []
        self.last_changed = last_changed
        self.version = 0  # bumped whenever ``live`` changes
        self._sorted: tuple[int, list[int], list[RoutingEntry]] | None = None
        self._invalid: tuple[int, int] = (-1, 0)
        self._bad: tuple[int, int] = (-1, 0)

    def invalid_count(self) -> int:
        """Live entries whose ``preferred`` is False, recounted only after a change (an
        entry's ``preferred`` never changes)."""
        version, count = self._invalid
        if version != self.version:
            count = sum(1 for e in self.live if not e.preferred)
            self._invalid = (self.version, count)
        return count

    def bad_count(self, max_fails: int) -> int:
        """Live entries with ``max_fails`` failures or more, recounted only after a change
        (the table bumps ``version`` when a live entry becomes bad or recovers)."""
        version, count = self._bad
        if version != self.version:
            count = sum(1 for e in self.live if e.fails >= max_fails)
            self._bad = (self.version, count)
        return count

    def by_id(self) -> tuple[list[int], list[RoutingEntry]]:
        """``live`` sorted by id (ints, entries), rebuilt only after a change."""
        cached = self._sorted
        if cached is None or cached[0] != self.version:
            entries = sorted(self.live, key=lambda e: e.id_int)
            cached = self._sorted = (self.version, [e.id_int for e in entries], entries)
        return cached[1], cached[2]


_NARROW_ABOVE = 24
"""Buckets bigger than this are narrowed by id before sorting (see _collect_narrowed)."""


def collect(bucket: Bucket, t: int, n: int, out: list[NodeInfo], max_fails: int) -> bool:
    """Append the non-bad entries of one tier to ``out``, closest first; True once full."""
    live = bucket.live
    if not live:
        return False
    need = n - len(out)
    if len(live) > _NARROW_ABOVE and _collect_narrowed(bucket, t, need, out, max_fails):
        return True
    by_distance = {e.id_int ^ t: e for e in live}
    for d in sorted(by_distance):
        entry = by_distance[d]
        if entry.fails < max_fails:
            out.append(entry.node)
            if len(out) >= n:
                return True
    return False


def _collect_narrowed(
    bucket: Bucket, t: int, need: int, out: list[NodeInfo], max_fails: int
) -> bool:
    """The fast path for big (far) buckets: sort only the smallest id block aligned
    around ``t`` that holds ``need`` entries. Every entry outside a block of size
    2^s around t is at XOR distance >= 2^s, every entry inside at < 2^s, so the
    block's entries come first. False (nothing appended) when bad entries leave the
    block short: the caller then sorts the whole bucket."""
    ids, entries = bucket.by_id()
    lo_s, hi_s = 0, ID_BITS  # a block of 2^hi_s holds everything
    while lo_s < hi_s:  # the smallest shift whose block holds at least `need`
        mid = (lo_s + hi_s) // 2
        base = (t >> mid) << mid
        if bisect_left(ids, base + (1 << mid)) - bisect_left(ids, base) >= need:
            hi_s = mid
        else:
            lo_s = mid + 1
    base = (t >> hi_s) << hi_s
    i, j = bisect_left(ids, base), bisect_left(ids, base + (1 << hi_s))
    block = sorted(entries[i:j], key=lambda e: e.id_int ^ t)
    good = [e.node for e in block if e.fails < max_fails]
    if len(good) < need:
        return False
    out.extend(good[:need])
    return True


def entry_snapshot(entry: RoutingEntry, status: NodeStatus) -> dict[str, Any]:
    """A JSON-able dump of one entry (:meth:`RoutingTable.snapshot`)."""
    return {
        "id": entry.node.id.hex(),
        "ip": entry.node.addr[0],
        "port": entry.node.addr[1],
        "state": status.value,
        "rtt": entry.rtt,
        "fails": entry.fails,
        "first_seen": entry.first_seen,
        "last_response": entry.last_response,
        "last_query": entry.last_query,
        "version": None if entry.version is None else entry.version.hex(),
    }
