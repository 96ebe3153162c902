"""Counters of a node that the core keeps for its metrics (read at scrape time).

Queries by method (:data:`QUERY_METHODS`), and how long the operations a node was asked
for took, one histogram per kind: :class:`OpTimes` is told when an operation starts (its
op id, kind and time) and when its terminal event leaves the node; the runtime exports
the histograms as ``mldht_lookup_duration_seconds{kind}`` (:mod:`mldht.runtime.metrics`).
Pure: times come in as arguments.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["DURATION_BOUNDS", "QUERY_METHODS", "Histogram", "OpTimes"]

QUERY_METHODS = (
    b"ping",
    b"find_node",
    b"get_peers",
    b"announce_peer",
    b"get",
    b"put",
    b"sample_infohashes",
)
"""The KRPC query methods a node answers and sends (others are refused undecoded)."""

DURATION_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the histogram buckets; a last one takes the rest."""


class Histogram:
    """Counts of observations per bucket (not cumulative), their sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` per bucket, ``inf`` last (Prometheus)."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class OpTimes:
    """Durations of operations by kind (``find_node``, ``get_peers``, ``announce``,
    ``get``, ``put``)."""

    def __init__(self) -> None:
        self.kinds: dict[str, Histogram] = {}
        self._open: dict[int, tuple[str, float]] = {}

    def started(self, op: int, kind: str, now: float) -> int:
        """Note that ``op`` started at ``now``; returns ``op``."""
        self._open[op] = (kind, now)
        return op

    def ended(self, op: int, now: float) -> None:
        """``op`` ended at ``now`` (ops not started here are ignored)."""
        opened = self._open.pop(op, None)
        if opened is None:
            return
        kind, start = opened
        hist = self.kinds.get(kind)
        if hist is None:
            hist = self.kinds[kind] = Histogram()
        hist.observe(max(0.0, now - start))

    @property
    def open(self) -> int:
        """Operations started and not ended yet."""
        return len(self._open)
