"""Paced expiry of the peer store: a sweep done in bounded slices.

A whole sweep of a million peers takes about a second of Python; run in one callback it
would stall the node. :class:`Sweep` walks the store as a generator, and each
:meth:`Sweep.run` call advances it by about ``budget`` records, so a caller (the
maintenance round, a full store making room) pays a bounded cost per call. Records
stored meanwhile are either seen by the sweep or counted in :attr:`Sweep.next_expiry`
as they are stored (:meth:`Sweep.stored`), which a sweep that ends sets to the soonest
expiry it saw: while ``now`` is before it, there is nothing to sweep and a call is free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from .ids import ID_LEN
from .packed_table import PackedTable
from .peer_records import REC4, REC6, split_expired, stamp_at

__all__ = ["Sweep"]

_SINGLE = ID_LEN + REC4
_DROP_COST = 10


class Sweep:
    """The store's expiry sweep (module docstring).

    ``single``: the single-peer table; ``drop_single(infohash, record)`` accounts for an
    expired record removed from it. ``general``: the per-family tables;
    ``trim(family, infohash, array, rel)`` drops an array's expired prefix and returns
    what is left (None: nothing).
    """

    __slots__ = (
        "_drop_single",
        "_gen",
        "_general",
        "_pass_min",
        "_rel",
        "_single",
        "_trim",
        "next_expiry",
    )

    def __init__(
        self,
        single: PackedTable,
        drop_single: Callable[[bytes, bytes], None],
        general: tuple[dict[bytes, bytes], dict[bytes, bytes]],
        trim: Callable[[int, bytes, bytes, float], bytes | None],
    ) -> None:
        self._single = single
        self._drop_single = drop_single
        self._general = general
        self._trim = trim
        self._gen: Iterator[int] | None = None
        self._rel = 0.0
        self._pass_min = math.inf  # the soonest expiry stored during this sweep
        self.next_expiry = math.inf
        """A lower bound on every stored record's expiry."""

    @property
    def running(self) -> bool:
        """Whether a sweep is under way."""
        return self._gen is not None

    def stored(self, expiry: float) -> None:
        """A record expiring at ``expiry`` was stored."""
        if expiry < self.next_expiry:
            self.next_expiry = expiry
        if expiry < self._pass_min:
            self._pass_min = expiry

    def run(self, rel: float, budget: int) -> bool:
        """Advance by about ``budget`` records at store time ``rel``; True when a sweep
        ended in this call (or none was needed)."""
        if rel < self.next_expiry and self._gen is None:
            return True  # no record expires before next_expiry: nothing to sweep
        self._rel = rel
        done = 0
        for _ in range(2):  # finish the sweep under way, then at most one whole new one
            if self._gen is None:
                self._pass_min = math.inf
                self._gen = self._steps()
            for work in self._gen:
                done += work
                if done >= budget:
                    return False
            self._gen = None
            if self.next_expiry > rel:
                break
        return True

    def _steps(self) -> Iterator[int]:
        """One sweep of the whole store, yielding the work done at each step."""
        soonest = math.inf
        table = self._single
        i = 0
        while i < table.shard_count():
            shard = table.shard(i)
            kept, gone, first = split_expired(shard, self._rel)
            soonest = min(soonest, first)
            if gone:
                table.replace_shard(i, kept)
                for rec in gone:
                    self._drop_single(rec[:ID_LEN], rec[ID_LEN:])
            i += 1
            # a dropped peer costs about 10 looked at (its source's counters)
            yield len(shard) // _SINGLE + 1 + _DROP_COST * len(gone)
        for fam in (0, 1):
            general = self._general[fam]
            size = REC4 if fam == 0 else REC6
            for ih in list(general):
                arr = general.get(ih)
                if arr is not None:
                    left = self._trim(fam, ih, arr, self._rel)
                    live = 0 if left is None else len(left) // size
                    if left is not None:
                        soonest = min(soonest, stamp_at(left, 0, size) >> 1)
                    yield len(arr) // size + _DROP_COST * (len(arr) // size - live)
        self.next_expiry = min(soonest, self._pass_min)
