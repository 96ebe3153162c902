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

Answers are kept too: the target space is cut into 2^16 *cells* (by the target's first
two bytes). A computed answer holds for every target sharing the first ``d`` bits with
this one, where ``d`` is one more than the longest prefix the target shares with its
neighbours in the sorted ids and than any two adjacent entries of its block share (then
the bisection, the block and the XOR order of the block's entries are decided by those
``d`` bits alone); when ``d <= 16`` the answer is stored in all the cells of that prefix,
and the next target there costs two indexings (a sort of the block's 10-20 160-bit ints
cost ~30k instructions). Targets in a cell holding an entry's id, or near our own id
where the table is dense, are answered by computing, every time.

Bad entries (``max_fails`` queries unanswered) are left out of the snapshot, as
:meth:`RoutingTable.closest` leaves them out; an entry going bad or good again moves
:attr:`RoutingTable.changes` too.
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_left

from .compact import NodeInfo, encode_nodes, encode_peer
from .routing import RoutingTable

__all__ = ["Nearest"]

CELL_BITS = 16
"""Bits of a target that select its answer cell (2^16 cells: a 128 KiB array)."""
CELLS_AFTER = 1024
"""Questions a snapshot answers before it keeps answers: only a busy node pays for the
cells (a simulator runs 10^5 nodes in one process, each answering a few)."""
REBUILD_AFTER = 128
"""Questions a changed table must go unchanged for before the snapshot is rebuilt."""
_NO_RUN = 161
"""A level above any id's (160 bits): no run of n entries straddles this gap."""


class Nearest:
    """Closest-node answers from a sorted snapshot of one routing table (see module)."""

    __slots__ = (
        "_adjacent",
        "_answers",
        "_asked",
        "_cells",
        "_changes",
        "_compact",
        "_gap_level",
        "_ids",
        "_key",
        "_n",
        "_nodes",
        "_routing",
        "_seen",
        "_waited",
    )

    def __init__(self) -> None:
        self._key: tuple[RoutingTable, int, int] | None = None
        self._routing: RoutingTable | None = None
        self._changes = -1
        self._n = 0
        self._cells: array[int] | None = None
        """Per cell, the index of its kept answer in ``_answers`` (0: none yet)."""
        self._answers: list[bytes] = []
        self._asked = 0
        self._adjacent: list[int] = []
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
        # the bits adjacent entries share (their common prefix), for the cells' depth
        self._adjacent = [160 - (a ^ b).bit_length() for a, b in itertools.pairwise(ids)]
        self._cells = None
        self._answers = []
        self._asked = 0
        self._key = (routing, routing.changes, n)
        self._routing, self._changes, self._n = routing, routing.changes, n

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

    def _closest(self, t: int, n: int) -> tuple[list[int], int]:
        """The keys (ids as integers) of the ``n`` closest good entries to ``t``, closest
        first (the snapshot is current), and the prefix length that decides them: every
        target sharing that many leading bits with ``t`` has the same answer."""
        ids = self._ids
        size = len(ids)
        p = bisect_left(ids, t)
        # the bits t shares with its neighbours: the bisection is decided by one more
        depth = max(
            160 - (ids[p - 1] ^ t).bit_length() if p else 0,
            160 - (ids[p] ^ t).bit_length() if p < size else 0,
        )
        i, j = 0, size
        if size > n:
            # The smallest aligned block around t holding n entries: the best of the
            # runs that straddle t (prepared), the run just right of t and the run just
            # left of it (in a sorted list, the highest bit in which a and c differ is
            # the higher of a, b's and b, c's for any a < b < c).
            s = self._gap_level[p]
            if p + n <= size:
                s = min(s, (ids[p + n - 1] ^ t).bit_length())
            if p >= n:
                s = min(s, (ids[p - n] ^ t).bit_length())
            base = (t >> s) << s
            i = bisect_left(ids, base)
            j = bisect_left(ids, base + (1 << s), i)
        if j - i > 1:  # their XOR order is decided by the bits after the ones they share
            depth = max(depth, max(self._adjacent[i : j - 1]))
        return sorted(ids[i:j], key=t.__xor__)[:n], depth + 1

    def compact(self, routing: RoutingTable, target: bytes, n: int) -> bytes:
        """The compact node string (BEP 5 ``nodes`` / BEP 32 ``nodes6``) of the ``n``
        closest good nodes of ``routing`` to ``target``, closest first."""
        if routing is self._routing and routing.changes == self._changes and n == self._n:
            cells = self._cells
            if cells is not None:
                kept = cells[target[0] << 8 | target[1]]
                if kept:
                    return self._answers[kept]
            else:
                self._asked += 1
                if self._asked >= CELLS_AFTER:
                    self._cells = array("H", bytes(2 << CELL_BITS))
                    self._answers = [b""]
        elif not self._current(routing, n):
            return encode_nodes(routing.closest(target, n))
        t = int.from_bytes(target, "big")
        order, depth = self._closest(t, n)
        nodes = b"".join(map(self._compact.__getitem__, order))
        cells, answers = self._cells, self._answers
        if cells is not None and depth <= CELL_BITS and len(answers) < 0xFFFF:
            # the same answer for the 2^(16 - depth) cells of t's prefix
            first = (t >> (160 - depth)) << (CELL_BITS - depth)
            count = 1 << (CELL_BITS - depth)
            cells[first : first + count] = array("H", [len(answers)]) * count
            answers.append(nodes)
        return nodes

    def nodes(self, routing: RoutingTable, target: bytes, n: int) -> tuple[NodeInfo, ...]:
        """The same nodes as :class:`NodeInfo` objects."""
        if not self._current(routing, n):
            return tuple(routing.closest(target, n))
        order, _ = self._closest(int.from_bytes(target, "big"), n)
        return tuple(map(self._nodes.__getitem__, order))
