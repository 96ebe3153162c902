"""One shard of the id space: ``--shard I/N`` crawls the I-th of N equal id ranges (pure).

Shard I of N (counted from 1, as ``split -n``, Jest and Playwright count) holds the ids
``[(I-1) * 2^160 / N, I * 2^160 / N)``: N crawlers, each given a different I, cover the
id space once between them and never sample the same node.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import InvalidArgument
from .estimate import ID_BITS, SPACE

__all__ = ["WHOLE", "Shard", "parse_shard"]


@dataclass(frozen=True, slots=True)
class Shard:
    """The ids in ``[lo, hi)``: part ``index`` (from 1) of ``count`` equal parts."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise InvalidArgument(f"shard {self.index}/{self.count}: I must be 1..N")

    @property
    def lo(self) -> int:
        return (self.index - 1) * SPACE // self.count

    @property
    def hi(self) -> int:
        return self.index * SPACE // self.count

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def contains(self, node_id: int) -> bool:
        return self.lo <= node_id < self.hi

    def random_id(self, rng: random.Random) -> int:
        """A uniform id in the shard."""
        if self.whole:
            return rng.getrandbits(ID_BITS)
        return self.lo + rng.randrange(self.size)

    def overlap(self, lo: int, size: int) -> tuple[int, int]:
        """The part of ``[lo, lo + size)`` inside the shard, as ``(start, end)``
        (``start >= end``: none)."""
        return max(lo, self.lo), min(lo + size, self.hi)

    def as_dict(self) -> dict[str, str]:
        """The shard for a summary: ``I/N`` and its first and last id (hex)."""
        return {
            "shard": self.label,
            "first_id": self.lo.to_bytes(20, "big").hex(),
            "last_id": (self.hi - 1).to_bytes(20, "big").hex(),
        }


WHOLE = Shard()


def parse_shard(text: str) -> Shard:
    """``I/N`` (1 <= I <= N <= 2^16) as a :class:`Shard`; InvalidArgument otherwise."""
    head, sep, tail = text.partition("/")
    if not (sep and head.isdigit() and tail.isdigit()):
        raise InvalidArgument(f"expected I/N (for example 1/4), got {text!r}")
    index, count = int(head), int(tail)
    if not 1 <= count <= 1 << 16:
        raise InvalidArgument(f"N must be 1..65536, got {text!r}")
    if not 1 <= index <= count:
        raise InvalidArgument(f"I must be 1..N, got {text!r}")
    return Shard(index, count)
