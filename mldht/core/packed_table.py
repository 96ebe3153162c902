"""A hash table of fixed-size byte records with no Python object per record.

Used where a store may hold a million small entries (the peer store's single-peer
info-hashes and its per-source counters): a ``dict`` costs about 40 bytes per entry
before its key and value objects (50-60 bytes each), more than the data itself.

Records are ``key || value`` with fixed lengths. They live in *shards*, immutable
``bytes`` objects of concatenated records (one allocation each, rebuilt on change:
a shard holds about ``per_shard`` records, so a rebuild copies about a kilobyte), in
a list. A record's shard is chosen by the key's ``hash()`` (SipHash, keyed by the
interpreter's random seed, so a remote peer cannot aim many keys at one shard), with
*linear hashing*: the table grows one shard at a time, splitting one shard each time
the average passes ``per_shard`` records, so no insert ever rehashes the whole table.
Within a shard, a key is found with ``bytes.find`` (C speed) and an alignment check.

The placement, and so the iteration order, depends on the interpreter's hash seed:
it is stable within a process, not across processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import InvalidArgument

if TYPE_CHECKING:  # the core draws no randomness itself: an RNG is passed in
    import random

__all__ = ["PackedTable", "count_aligned", "find_aligned"]


def find_aligned(blob: bytes, needle: bytes, size: int, at: int = 0, start: int = 0) -> int:
    """Byte offset of the first record of ``blob`` (records of ``size`` bytes) whose bytes
    from ``at`` begin with ``needle``, searching records from offset ``start``; or -1."""
    pos = blob.find(needle, start + at)
    while pos >= 0:
        rel = (pos - at) % size
        if rel == 0:
            return pos - at
        # an unaligned hit (across fields or records): resume at the next record's field
        pos = blob.find(needle, pos - rel + size)
    return -1


def count_aligned(blob: bytes, needle: bytes, size: int, limit: int) -> int:
    """How many records of ``blob`` begin with ``needle`` (counting stops at ``limit``)."""
    n = 0
    pos = find_aligned(blob, needle, size)
    while pos >= 0 and n < limit:
        n += 1
        pos = find_aligned(blob, needle, size, start=pos + size)
    return n


class PackedTable:
    """Records of ``key_len + value_len`` bytes keyed by their first ``key_len`` bytes."""

    __slots__ = ("_level", "_n", "_per_shard", "_shards", "_split", "key_len", "size")

    def __init__(self, key_len: int, value_len: int, per_shard: int = 40) -> None:
        if key_len < 1 or value_len < 0 or per_shard < 1:
            raise InvalidArgument("bad packed table geometry")
        self.key_len = key_len
        self.size = key_len + value_len
        self._per_shard = per_shard
        self._shards: list[bytes] = [b""]
        self._level = 0  # 2**level shards before this round of splits
        self._split = 0  # shards below this index are already split this round
        self._n = 0

    def __len__(self) -> int:
        return self._n

    # -- placement ------------------------------------------------------------------------

    def index_of_hash(self, h: int) -> int:
        """The shard of a key whose ``hash()`` is ``h`` (low 31 bits suffice)."""
        i = h & ((1 << self._level) - 1)
        if i < self._split:
            i = h & ((2 << self._level) - 1)
        return i

    def _grow(self) -> None:
        """Split one shard (linear hashing): its records go to it and to a new shard."""
        shards, size, kl = self._shards, self.size, self.key_len
        old = shards[self._split]
        high = 1 << self._level
        mask = (2 << self._level) - 1
        keep: list[bytes] = []
        move: list[bytes] = []
        for off in range(0, len(old), size):
            rec = old[off : off + size]
            (move if hash(rec[:kl]) & mask != self._split else keep).append(rec)
        shards[self._split] = b"".join(keep)
        shards.append(b"".join(move))
        self._split += 1
        if self._split == high:
            self._level += 1
            self._split = 0

    # -- records --------------------------------------------------------------------------

    def locate(self, key: bytes) -> tuple[int, int]:
        """(shard index, byte offset of the key's record in it, or -1)."""
        h = hash(key)
        i = h & ((1 << self._level) - 1)
        if i < self._split:
            i = h & ((2 << self._level) - 1)
        shard, size = self._shards[i], self.size
        pos = shard.find(key)
        while pos > 0 and pos % size:  # an unaligned hit: resume at the next record
            pos = shard.find(key, pos - pos % size + size)
        return i, pos

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        i, off = self.locate(key)
        if off < 0:
            return None
        return self._shards[i][off + self.key_len : off + self.size]

    def value_at(self, i: int, off: int) -> bytes | None:
        """The value of the record :meth:`locate` found (None for -1)."""
        if off < 0:
            return None
        return self._shards[i][off + self.key_len : off + self.size]

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any value it had)."""
        i, off = self.locate(key)
        self.put_at(i, off, key, value)

    def put_at(self, i: int, off: int, key: bytes, value: bytes) -> None:
        """:meth:`put` where :meth:`locate` just found ``key`` (the table unchanged since)."""
        shard = self._shards[i]
        if off >= 0:
            self._shards[i] = shard[: off + self.key_len] + value + shard[off + self.size :]
            return
        self._shards[i] = shard + key + value
        self._n += 1
        if self._n > self._per_shard * len(self._shards):
            self._grow()

    def pop(self, key: bytes) -> bytes | None:
        """Remove ``key``'s record; returns its value, or None if there was none."""
        i, off = self.locate(key)
        return self.pop_at(i, off)

    def pop_at(self, i: int, off: int) -> bytes | None:
        """:meth:`pop` where :meth:`locate` just found the key."""
        if off < 0:
            return None
        shard = self._shards[i]
        self._shards[i] = shard[:off] + shard[off + self.size :]
        self._n -= 1
        return shard[off + self.key_len : off + self.size]

    # -- whole shards (sweeps, exports, lookups by another field) -------------------------

    def random_key(self, rng: random.Random) -> bytes | None:
        """One stored key drawn uniformly, or None (then draw again: about 1 in 4 draws
        hits a record). Rejection sampling over ``4 * per_shard`` slots a shard (a shard
        holding more, which linear hashing makes rare, has its surplus under-drawn)."""
        shard = self._shards[rng.randrange(len(self._shards))]
        off = rng.randrange(4 * self._per_shard) * self.size
        return shard[off : off + self.key_len] if off < len(shard) else None

    def shard_count(self) -> int:
        return len(self._shards)

    def shard(self, i: int) -> bytes:
        return self._shards[i]

    def replace_shard(self, i: int, records: bytes) -> None:
        """Put back shard ``i`` with some of its records removed (a sweep)."""
        self._n -= (len(self._shards[i]) - len(records)) // self.size
        self._shards[i] = records

    def shards(self) -> Iterator[bytes]:
        """Every shard as it is now (the list is copied: the table may change meanwhile)."""
        return iter(list(self._shards))
