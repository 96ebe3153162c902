"""The crawl's estimate of the network's size, from XOR distances (pure: no I/O)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ID_BITS", "SPACE", "K", "SizeEstimate", "estimate_size", "k_closest"]

ID_BITS = 160
SPACE = 1 << ID_BITS
K = 8
"""Closest-set size (BEP 5), used by the size estimate."""


def _xor_closest_range(ids: Sequence[int], target: int, k: int) -> tuple[int, int]:
    """Index range of ``ids`` (sorted) holding the smallest id prefix around ``target``
    with at least ``k`` ids; the ``k`` XOR-closest ids all lie in it (they share the
    longest prefixes with the target, and a prefix is a contiguous range)."""
    for free in range(ID_BITS + 1):
        lo = (target >> free) << free
        i = bisect.bisect_left(ids, lo)
        j = bisect.bisect_left(ids, lo + (1 << free))
        if j - i >= k:
            return i, j
    return 0, len(ids)


def k_closest(ids: Sequence[int], target: int, k: int = K) -> list[int]:
    """The ``k`` ids of ``ids`` (sorted, distinct) closest to ``target`` by XOR, closest first."""
    i, j = _xor_closest_range(ids, target, k)
    return sorted(ids[i:j], key=lambda x: x ^ target)[:k]


@dataclass(frozen=True, slots=True)
class SizeEstimate:
    """An estimate of the number of nodes, with one standard error."""

    size: float
    stderr: float
    targets: int
    k: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": round(self.size),
            "stderr": round(self.stderr),
            "targets": self.targets,
            "k": self.k,
            "method": self.method,
        }


def estimate_size(
    ids: Sequence[int],
    targets: Iterable[tuple[int, Iterable[int]]],
    k: int = K,
    what: str = "the crawled set",
) -> SizeEstimate | None:
    """Network size from the XOR distances of the ``k`` closest ids to random targets.

    For N ids spread uniformly, the XOR distance of a uniform id to a fixed target is
    uniform, so the i-th closest normalised distance x_i = d_i / 2^160 is the i-th order
    statistic of N uniforms: E[x_i] = i / (N + 1). Per target, the least-squares slope
    s = sum(i x_i) / sum(i^2) estimates 1 / (N + 1) without bias; the mean slope over the
    targets gives N = 1 / mean(s) - 1, and its standard error comes from the spread of
    the slopes (delta method). This is the closest-set density estimate of the8472/mldht
    and pubky/mainline, fitted over all k ranks rather than the k-th one alone.

    ``ids`` is sorted and distinct; each target comes with extra ids known near it (a
    lookup's closest nodes), merged with ``ids``. None when fewer than two targets have
    ``k`` ids around them.
    """
    denom = sum(i * i for i in range(1, k + 1))
    slopes: list[float] = []
    for target, extra in targets:
        near = set(k_closest(ids, target, k))
        near.update(extra)
        dists = sorted(x ^ target for x in near)[:k]
        if len(dists) < k:
            continue
        slopes.append(sum(i * d / SPACE for i, d in enumerate(dists, 1)) / denom)
    if len(slopes) < 2:
        return None
    mean = sum(slopes) / len(slopes)
    if mean <= 0:
        return None
    var = sum((s - mean) ** 2 for s in slopes) / (len(slopes) - 1)
    stderr = math.sqrt(var / len(slopes)) / (mean * mean)
    return SizeEstimate(
        size=1.0 / mean - 1.0,
        stderr=stderr,
        targets=len(slopes),
        k=k,
        method=(
            f"k-closest XOR distances (k={k}) to {len(slopes)} random targets in {what}, "
            "least-squares fit d_i = i*2^160/(N+1); error bar: 1 standard error"
        ),
    )
