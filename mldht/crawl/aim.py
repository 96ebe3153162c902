"""Where the crawl's queries aim, from the sorted ids it knows (pure: no I/O).

* :func:`gap_target`: a target in the wider of the two gaps between a node's id and its
  known neighbours (optionally at most ``reach`` from the id): the node knows its own
  neighbourhood best, so its closest nodes to that target are the ones the crawl lacks.
* :func:`wide_gaps`: pairs of consecutive known ids much farther apart than the mean
  spacing (a run of nodes that no reply named lies between them, likely).
* :func:`far_from_home`: whether a target lay so far from the node's id (more than
  ``reach``) that the node's reply told nothing of its own neighbourhood.
* :func:`empty_regions`: id regions where, at the density seen, nodes should be but none
  is known (the sibling subtrees along known ids' paths in the binary trie of ids).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Container, Sequence

from .estimate import ID_BITS, SPACE
from .shard import Shard

__all__ = ["adjacent_gaps", "empty_regions", "far_from_home", "gap_target", "wide_gaps"]


def adjacent_gaps(ids: Sequence[int], shard: Shard, x: int) -> tuple[int, int]:
    """(before, after): the distances from ``x`` (one of ``ids``, sorted, in ``shard``) to
    its known predecessor and successor; in a shard the gaps end at its edges."""
    i = bisect.bisect_left(ids, x)
    if shard.whole:
        succ, pred = ids[(i + 1) % len(ids)], ids[i - 1]
        return (x - pred) % SPACE or SPACE, (succ - x) % SPACE or SPACE
    after = (ids[i + 1] if i + 1 < len(ids) else shard.hi) - x
    before = x - (ids[i - 1] if i > 0 else shard.lo - 1)
    return before, after


def gap_target(
    ids: Sequence[int], shard: Shard, x: int, rng: random.Random, reach: int | None = None
) -> int:
    """A target in the wider gap next to ``x`` (uniform in it, or in its first ``reach``
    ids); ``x`` must be one of ``ids`` (sorted, at least two)."""
    before, after = adjacent_gaps(ids, shard, x)
    if reach is not None:
        before, after = min(before, reach), min(after, reach)
    if after >= before:
        return (x + rng.randrange(1, after)) % SPACE if after > 1 else x
    return (x - rng.randrange(1, before)) % SPACE if before > 1 else x


def wide_gaps(ids: Sequence[int], shard: Shard, width: float) -> list[tuple[int, int]]:
    """(a, b) for each two consecutive ``ids`` (sorted, in ``shard``) more than ``width``
    apart; around the ring in the whole id space (b < a then), not past a shard's edges."""
    pairs = list(itertools.pairwise(ids))
    if shard.whole and len(ids) > 1:
        pairs.append((ids[-1], ids[0]))
    return [(a, b) for a, b in pairs if (b - a) % SPACE > width]


def far_from_home(x: int, target: int, reach: float) -> bool:
    """The target lay more than ``reach`` ids from ``x`` (around the ring)."""
    d = abs(target - x)
    return min(d, SPACE - d) > reach


def empty_regions(
    ids: Sequence[int],
    shard: Shard,
    min_expected: float,
    probed: Container[tuple[int, int]] = (),
) -> list[tuple[float, int, int]]:
    """Id regions next to known nodes where no node is known though, at the density seen,
    at least ``min_expected`` should be: (expected, first id, end id), the most promising
    first; regions in ``probed`` are left out.

    The regions are the sibling subtrees along each known id's path in the binary trie of
    ids (their parts inside the shard). A node the sweep missed sits alone in such a
    subtree: the nodes that know it return it only for a target inside it.
    """
    density = len(ids) / shard.size
    found: dict[tuple[int, int], float] = {}
    for x in ids:
        for free in range(ID_BITS - 1, -1, -1):
            if density * (1 << free) < min_expected:
                break
            start, end = shard.overlap(((x >> free) ^ 1) << free, 1 << free)
            expected = density * (end - start)
            if expected < min_expected or (start, end) in found or (start, end) in probed:
                continue
            if bisect.bisect_left(ids, end) == bisect.bisect_left(ids, start):
                found[(start, end)] = expected
    return sorted(((e, lo, hi) for (lo, hi), e in found.items()), reverse=True)
