"""The k closest good nodes to a target, ready to send: the hot part of find_node,
get_peers, get and sample_infohashes answers.

:meth:`RoutingTable.closest` walks the buckets and returns :class:`NodeInfo` objects that
a reply must then encode (together 15 us a query, half of a find_node's cost in the
core). :class:`Nearest` keeps one snapshot of the table's live entries sorted by id with
each one's compact encoding (26 or 38 bytes), rebuilt only when the set of live entries
changes (:attr:`RoutingTable.changes`) and then has stayed unchanged for
:data:`REBUILD_AFTER` questions: a rebuild of 250 entries costs about as much as 50
direct questions, so a table in flux (a node joining, a swarm bootstrapping) is asked
directly. A target's closest nodes by XOR distance then lie in the smallest id-aligned
block around it that holds ``n`` entries (every entry outside a block of 2^s ids around
the target is at least 2^s away, every entry inside less): three bisections, two bit
lengths, one small sort, and a join of prepared bytes.

Bad entries (``max_fails`` queries unanswered) are left out of the snapshot, as
:meth:`RoutingTable.closest` leaves them out; an entry going bad or good again moves
:attr:`RoutingTable.changes` too.
"""

from __future__ import annotations

from bisect import bisect_left

from .compact import NodeInfo, encode_nodes, encode_peer
from .routing import RoutingTable

__all__ = ["Nearest"]

REBUILD_AFTER = 128
"""Questions a changed table must go unchanged for before the snapshot is rebuilt."""
_NO_RUN = 161
"""A level above any id's (160 bits): no run of n entries straddles this gap."""


class Nearest:
    """Closest-node answers from a sorted snapshot of one routing table (see module)."""

    __slots__ = ("_compact", "_gap_level", "_ids", "_key", "_nodes", "_seen", "_waited")

    def __init__(self) -> None:
        self._key: tuple[RoutingTable, int, int] | None = None
        self._seen: tuple[RoutingTable, int, int] | None = None
        self._waited = 0
        self._ids: list[int] = []
        self._compact: dict[int, bytes] = {}
        self._nodes: dict[int, NodeInfo] = {}
        self._gap_level: list[int] = []

    def _snapshot(self, routing: RoutingTable, n: int) -> None:
        max_fails = routing.max_fails
        entries = [e for e in map(routing.get, (n.id for n in routing)) if e is not None]
        good = [e.node for e in entries if e.fails < max_fails]
        self._nodes = {int.from_bytes(n.id, "big"): n for n in good}
        self._compact = {k: n.id + encode_peer(n.addr) for k, n in self._nodes.items()}
        self._ids = ids = sorted(self._nodes)
        # A run of n entries ids[q : q + n] fits in an aligned block of 2^level ids,
        # level = the bit length of ids[q] ^ ids[q + n - 1]. For a target between
        # ids[p - 1] and ids[p], the runs that straddle it are q = p - n + 1 .. p - 1:
        # the smallest of their levels is kept per gap p.
        runs = [(ids[q] ^ ids[q + n - 1]).bit_length() for q in range(len(ids) - n + 1)]
        self._gap_level = [
            min(runs[max(0, p - n + 1) : p], default=_NO_RUN) for p in range(len(ids) + 1)
        ]
        self._key = (routing, routing.changes, n)

    def _current(self, routing: RoutingTable, n: int) -> bool:
        """Whether the snapshot answers for ``routing`` as it is now; rebuilt once the
        table has been left unchanged for :data:`REBUILD_AFTER` questions (a table that
        changes often is asked directly: a rebuild costs about 50 direct questions)."""
        key = (routing, routing.changes, n)
        if self._key == key:
            return True
        if self._seen != key:
            self._seen = key
            self._waited = 0
        self._waited += 1
        if self._waited < REBUILD_AFTER:
            return False
        self._snapshot(routing, n)
        return True

    def _closest(self, routing: RoutingTable, target: bytes, n: int) -> list[int]:
        """The keys (ids as integers) of the ``n`` closest good entries, closest first
        (the snapshot is current)."""
        ids = self._ids
        t = int.from_bytes(target, "big")
        size = len(ids)
        if size > n:
            # The smallest aligned block around t holding n entries: the best of the
            # runs that straddle t (prepared), the run just right of t and the run just
            # left of it (in a sorted list, the highest bit in which a and c differ is
            # the higher of a, b's and b, c's for any a < b < c).
            p = bisect_left(ids, t)
            s = self._gap_level[p]
            if p + n <= size:
                s = min(s, (ids[p + n - 1] ^ t).bit_length())
            if p >= n:
                s = min(s, (ids[p - n] ^ t).bit_length())
            base = (t >> s) << s
            i = bisect_left(ids, base)
            ids = ids[i : bisect_left(ids, base + (1 << s), i)]
        return sorted(ids, key=t.__xor__)[:n]

    def compact(self, routing: RoutingTable, target: bytes, n: int) -> bytes:
        """The compact node string (BEP 5 ``nodes`` / BEP 32 ``nodes6``) of the ``n``
        closest good nodes of ``routing`` to ``target``, closest first."""
        if not self._current(routing, n):
            return encode_nodes(routing.closest(target, n))
        order = self._closest(routing, target, n)
        return b"".join(map(self._compact.__getitem__, order))

    def nodes(self, routing: RoutingTable, target: bytes, n: int) -> tuple[NodeInfo, ...]:
        """The same nodes as :class:`NodeInfo` objects."""
        if not self._current(routing, n):
            return tuple(routing.closest(target, n))
        order = self._closest(routing, target, n)
        return tuple(map(self._nodes.__getitem__, order))
