"""Announced peers (BEP 5), scrape filters (BEP 33) and info-hash samples (BEP 51).

Storage layout (memory matters: a public node may hold a million peers, most info-hashes
with a single one). Peers are fixed-size records (:mod:`mldht.core.peer_records`), one
per IP (BEP 33: a repeat announce replaces it with the new port, seed flag and expiry).

* An info-hash holding one IPv4 peer lives in the *single-peer table*, a
  :class:`~mldht.core.packed_table.PackedTable` of ``info-hash | record`` (30 bytes,
  no Python object of its own). A second peer (or an IPv6 one) moves it to
* the *general tables*: per address family, info-hash -> one immutable ``bytes`` of
  records sorted by expiry. The TTL is constant and the store's clock never goes
  backwards, so a new or refreshed record is appended, and expired records always form
  a prefix that is cut in one step.

Abuse limits (per-source quotas, no bogons, fair-share eviction of a full store):
see :mod:`mldht.core.peer_sources`, where their counters live.

Expiry is lazy (an expired peer is never returned, and is dropped when its info-hash is
touched) and swept incrementally: :meth:`PeerStore.expire_some` does a bounded slice of
a sweep, so no single call walks a million peers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .bep33 import (
    BLOOM_BITS,
    BLOOM_BYTES,
    bloom_estimate,
    bloom_insert,
    bloom_union,
    scrape_bloom,
)
from .compact import ip_from_bytes, ip_to_bytes
from .ids import ID_LEN
from .netaddr import LOCAL, PUBLIC, classify_packed, local_allowed, source_of_packed
from .packed_table import PackedTable, count_aligned, find_aligned
from .peer_records import (
    REC4,
    REC6,
    export_live,
    first_live,
    insert_sorted,
    parse_saved,
    pick_values,
    sample_keys,
    scrape_filters,
    stamp_at,
)
from .peer_sources import SourceBook
from .peer_sweep import Sweep

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

    from .compact import Addr

__all__ = [
    "BLOOM_BITS",
    "BLOOM_BYTES",
    "DEFAULT_PEER_TTL",
    "DEFAULT_VALUES_BUDGET",
    "SWEEP_STEP",
    "PeerStore",
    "bloom_estimate",
    "bloom_insert",
    "bloom_union",
    "scrape_bloom",
]

DEFAULT_PEER_TTL = 1800.0
"""30 minutes: BEP 5 leaves it open; a re-announce refreshes it."""

DEFAULT_VALUES_BUDGET = 400
"""Bytes of bencoded ``values`` entries in one reply: 50 IPv4 peers (8 bytes each as
``6:...``) or 19 IPv6 peers (21 bytes each), which leaves room for the id, the token,
8 nodes and the envelope within the 1024-byte datagram limit (BEP 32)."""

SWEEP_STEP = 2_000
"""Work of one :meth:`PeerStore.expire_some` call by default: peers looked at, a peer
dropped counting 10 (its source's counters): about a millisecond."""

_SINGLE = ID_LEN + REC4
_SOURCES_KEPT = 4096  # querier addresses kept by PeerStore._source
_STAMP_MAX = (1 << 31) - 1
_VICTIM_WINDOW = 8
"""How many of the biggest owner's oldest info-hashes eviction compares by popularity."""


def _owner_of(packed: bytes) -> bytes:
    """The source key of an address: its /24 or /64, or itself when local."""
    return source_of_packed(packed) or packed


class PeerStore:
    """Peers announced to this node, per info-hash, with expiry and size limits.

    * one entry per IP per info-hash (BEP 33); a re-announce updates port and seed flag
      and refreshes the expiry (``peer_ttl``);
    * at most ``max_infohashes`` info-hashes and ``max_peers_per_infohash`` peers each
      (both families together). A full info-hash refuses new IPs, and :meth:`can_accept`
      tells the ``get_peers`` handler to withhold the token (libtorrent, BEP 33); a
      store full of info-hashes evicts by per-source fair share (module docstring);
    * per-source quotas ``max_peers_per_source`` and
      ``max_peers_per_source_per_infohash`` (a source is a public /24 or /64), and no
      bogon addresses (``local_network``: our own address scope, see netaddr);
    * expiry is exact to the second (an entry never outlives its TTL) and lazy: expired
      entries are never returned, and are dropped when their info-hash is touched, by
      :meth:`expire_some` (a bounded slice of a sweep) or :meth:`expire` (a whole one).

    All times are the caller's ``now`` (seconds); a ``now`` earlier than one already seen
    is treated as that one. ``rng`` picks random subsets of peers.
    """

    __slots__ = (
        "_book",
        "_by_family",
        "_epoch",
        "_last_reclaim",
        "_last_rel",
        "_local_ok",
        "_n_infohashes",
        "_n_peers",
        "_owner",
        "_rng",
        "_single",
        "_sources",
        "_sweep",
        "max_infohashes",
        "max_peers_per_infohash",
        "max_peers_per_source",
        "max_peers_per_source_per_infohash",
        "peer_ttl",
    )

    def __init__(
        self,
        rng: random.Random,
        *,
        max_infohashes: int = 10_000,
        max_peers_per_infohash: int = 1_000,
        peer_ttl: float = DEFAULT_PEER_TTL,
        max_peers_per_source: int = 200,
        max_peers_per_source_per_infohash: int = 16,
        local_network: bool | None = None,
    ) -> None:
        if (
            max_infohashes < 1
            or max_peers_per_infohash < 1
            or max_peers_per_source < 1
            or max_peers_per_source_per_infohash < 1
        ):
            raise InvalidArgument("store limits must be at least 1")
        if not 1.0 <= peer_ttl < 2**29:
            raise InvalidArgument(f"peer_ttl out of range: {peer_ttl}")
        self._rng = rng
        self.max_infohashes = max_infohashes
        self.max_peers_per_infohash = max_peers_per_infohash
        self.peer_ttl = float(peer_ttl)
        self.max_peers_per_source = max_peers_per_source
        self.max_peers_per_source_per_infohash = max_peers_per_source_per_infohash
        self._local_ok = local_allowed(local_network)
        self._book = SourceBook()
        # info-hashes with one IPv4 peer: info-hash -> record (owned by the peer's source)
        self._single = PackedTable(ID_LEN, REC4)
        # (IPv4 records, IPv6 records), each info-hash -> record array; the owners of
        # the info-hashes held there
        self._by_family: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        self._owner: dict[bytes, bytes] = {}
        # a lower bound on every stored record's expiry (sweeps before it find nothing)
        self._sweep = Sweep(self._single, self._drop_single, self._by_family, self._trim)
        self._epoch: float | None = None
        self._last_rel = 0.0
        self._last_reclaim = -math.inf
        self._n_infohashes = 0
        self._n_peers = 0
        self._sources: dict[str, tuple[bytes, bytes | None]] = {}

    # -- clock and bookkeeping ------------------------------------------------------------

    def _clock(self, now: float) -> float:
        """``now`` on the store's clock: seconds since its epoch, never decreasing."""
        if self._epoch is None:
            self._epoch = float(math.floor(now))
        rel = now - self._epoch
        if rel < self._last_rel:
            return self._last_rel
        self._last_rel = rel
        return rel

    def _expiry(self, rel: float, ttl: float) -> int:
        return min(math.floor(rel + ttl), _STAMP_MAX >> 1)

    def _count(self, infohash: bytes) -> int:
        a4 = self._by_family[0].get(infohash)
        a6 = self._by_family[1].get(infohash)
        if a4 is None and a6 is None:
            return 1 if self._single.get(infohash) is not None else 0
        return (len(a4) // REC4 if a4 else 0) + (len(a6) // REC6 if a6 else 0)

    def _general(self, infohash: bytes) -> bool:
        return infohash in self._by_family[0] or infohash in self._by_family[1]

    def _trim(self, fam: int, infohash: bytes, arr: bytes, rel: float) -> bytes | None:
        """Drop the expired prefix of one array: the live array, or None if none is left."""
        size = REC4 if fam == 0 else REC6
        if stamp_at(arr, 0, size) >> 1 > rel:
            return arr
        cut = first_live(arr, size, rel)
        self._n_peers -= cut
        self._uncount(arr[: cut * size], size)
        table = self._by_family[fam]
        if cut * size < len(arr):
            arr = table[infohash] = arr[cut * size :]
            return arr
        del table[infohash]
        if infohash not in self._by_family[1 - fam]:
            self._n_infohashes -= 1
            self._disown(infohash)
        return None

    def _disown(self, infohash: bytes) -> None:
        owner = self._owner.pop(infohash, None)
        if owner is not None:
            self._book.disown(infohash, owner)

    # -- the single-peer table ------------------------------------------------------------

    def _single_live(self, infohash: bytes, rel: float) -> bytes | None:
        """The record of a single-peer info-hash, dropping it if it expired."""
        rec = self._single.get(infohash)
        if rec is None or int.from_bytes(rec[6:], "big") >> 1 > rel:
            return rec
        self._single.pop(infohash)
        self._drop_single(infohash, rec)
        return None

    def _drop_single(self, infohash: bytes, rec: bytes) -> None:
        """Account for a record that left the single-peer table."""
        self._n_peers -= 1
        self._n_infohashes -= 1
        src = source_of_packed(rec[:4])
        self._book.drop_single(infohash, src or rec[:4], src is not None)

    def _resolve(self, loc: int, owner: bytes) -> bytes:
        """The single-peer info-hash an unlisted ``owner`` owns, in shard ``loc``."""
        table = self._single
        shard = table.shard(table.index_of_hash(loc))
        off = find_aligned(shard, owner, _SINGLE, at=ID_LEN)
        return shard[off : off + ID_LEN] if off >= 0 else b""

    def _promote(self, infohash: bytes, rec: bytes) -> None:
        """A single-peer info-hash gets a second peer: move it to the general tables."""
        self._single.pop(infohash)
        self._by_family[0][infohash] = rec
        owner = self._owner[infohash] = _owner_of(rec[:4])
        self._book.list_owned(owner, infohash)

    # -- per-source accounting ------------------------------------------------------------

    def _uncount(self, recs: bytes, size: int) -> None:
        """Records leave the store: take them off their sources' counts."""
        book = self._book
        for off in range(0, len(recs), size):
            src = source_of_packed(recs[off : off + size - 6])
            if src is not None:
                book.add_peers(src, -1)

    def _add_count(self, src: bytes | None) -> None:
        self._n_peers += 1
        if src is not None:
            self._book.add_peers(src, 1)

    def popularity(self, infohash: bytes) -> int:
        """Distinct sources (/24, /64; each local IP alone) announcing ``infohash``."""
        if not self._general(infohash):
            return 1 if self._single.get(infohash) is not None else 0
        seen: set[bytes] = set()
        for fam, size in ((0, REC4), (1, REC6)):
            arr = self._by_family[fam].get(infohash)
            if arr:
                for off in range(0, len(arr), size):
                    seen.add(_owner_of(arr[off : off + size - 6]))
        return len(seen)

    def _evict_from(self, owner: bytes) -> None:
        """Drop the least popular of ``owner``'s oldest info-hashes, all its peers."""
        oldest = self._book.oldest(owner, _VICTIM_WINDOW)
        self._drop_infohash(min(oldest, key=self.popularity))  # min keeps the oldest on a tie

    def _drop_infohash(self, infohash: bytes) -> None:
        rec = self._single.pop(infohash)
        if rec is not None:
            self._drop_single(infohash, rec)
            return
        for fam, size in ((0, REC4), (1, REC6)):
            arr = self._by_family[fam].pop(infohash, None)
            if arr is not None:
                self._n_peers -= len(arr) // size
                self._uncount(arr, size)
        self._n_infohashes -= 1
        self._disown(infohash)

    def _source_full(
        self, infohash: bytes, packed: bytes, src: bytes, arr: bytes | None, rel: float
    ) -> bool:
        """Whether public source ``src`` may add no entry for ``infohash`` (its quotas).

        A source at its total quota may hold expired entries not yet dropped: a slice of
        the sweep runs first, at most once per second of store time (as for a full store).
        """
        if self._book.peers(src) >= self.max_peers_per_source and (
            not self._reclaim(rel) or self._book.peers(src) >= self.max_peers_per_source
        ):
            return True
        if not arr:
            return False
        size = REC4 if len(packed) == 4 else REC6
        limit = self.max_peers_per_source_per_infohash
        return count_aligned(arr, src, size, limit) >= limit

    def _admissible(self, packed: bytes) -> bool:
        cls = classify_packed(packed)
        return cls == PUBLIC or (cls == LOCAL and self._local_ok)

    def _live(self, infohash: bytes, rel: float) -> list[tuple[bytes, int]]:
        """The non-empty, trimmed record arrays of an info-hash, with their record size."""
        if not self._general(infohash):
            rec = self._single_live(infohash, rel)
            return [] if rec is None else [(rec, REC4)]
        out = []
        for fam in (0, 1):
            arr = self._by_family[fam].get(infohash)
            if arr is not None:
                arr = self._trim(fam, infohash, arr, rel)
                if arr is not None:
                    out.append((arr, REC4 if fam == 0 else REC6))
        return out

    def _put(
        self, infohash: bytes, packed: bytes, port: int, seed: bool, expiry: int, rel: float
    ) -> bool:
        fam = 0 if len(packed) == 4 else 1
        size = REC4 if fam == 0 else REC6
        self._sweep.stored(expiry)
        rec = packed + port.to_bytes(2, "big") + ((expiry << 1) | seed).to_bytes(4, "big")
        src = source_of_packed(packed)
        if not self._general(infohash):
            single = self._single_live(infohash, rel)
            if single is None and fam == 0:
                return self._put_single(infohash, rec, src or packed, src, rel)
            if single is not None:
                if single[:4] == packed:  # BEP 33: the repeat announce replaces it
                    self._single.put(infohash, rec)
                    return True
                self._promote(infohash, single)
        table = self._by_family[fam]
        arr = table.get(infohash)
        if arr is not None:
            arr = self._trim(fam, infohash, arr, rel)
        if arr is not None:
            pos = find_aligned(arr, packed, size)
            if pos >= 0:  # BEP 33: one entry per IP; the repeat announce replaces it
                table[infohash] = insert_sorted(arr[:pos] + arr[pos + size :], rec, size)
                return True
            if self._count(infohash) >= self.max_peers_per_infohash:
                return False
            if src is not None and self._source_full(infohash, packed, src, arr, rel):
                return False
            table[infohash] = insert_sorted(arr, rec, size)
            self._add_count(src)
            return True
        if src is not None and self._source_full(infohash, packed, src, None, rel):
            return False
        other = self._by_family[1 - fam].get(infohash)
        if other is not None:
            other = self._trim(1 - fam, infohash, other, rel)
        if other is None:
            owner = src or packed
            if not self._room_for_infohash(rel, owner, evict=True):
                return False
            self._n_infohashes += 1
            self._owner[infohash] = owner
            self._book.own(infohash, owner, None, self._resolve)
        elif self._count(infohash) >= self.max_peers_per_infohash:
            return False
        table[infohash] = rec
        self._add_count(src)
        return True

    def _put_single(
        self, infohash: bytes, rec: bytes, owner: bytes, src: bytes | None, rel: float
    ) -> bool:
        """A new info-hash announced from an IPv4 address: a single-peer entry."""
        if src is not None and self._source_full(infohash, rec[:4], src, None, rel):
            return False
        if not self._room_for_infohash(rel, owner, evict=True):
            return False
        # owned before it is stored: the owner's earlier single is found by its address
        self._book.own_single(infohash, owner, src is not None, hash(infohash), self._resolve)
        self._single.put(infohash, rec)
        self._n_infohashes += 1
        self._n_peers += 1
        return True

    def _room_for_infohash(self, rel: float, owner: bytes, *, evict: bool) -> bool:
        """Whether a new info-hash of ``owner`` fits; at the cap, sweep a slice of the
        expired ones first, then (``evict``) make room by fair share (module docstring).
        """
        if self._n_infohashes < self.max_infohashes:
            return True
        if self._reclaim(rel) and self._n_infohashes < self.max_infohashes:
            return True
        victim_owner = self._book.may_evict_for(owner)
        if victim_owner is None:
            return False
        if evict:
            self._evict_from(victim_owner)
        return True

    def _reclaim(self, rel: float) -> bool:
        """A slice of the expiry sweep for a full store or source; at most once per second
        of store time, so a flood of announces cannot make every one pay for it."""
        if rel - self._last_reclaim < 1.0:
            return False
        self._last_reclaim = rel
        self._expire_some(rel, SWEEP_STEP)
        return True

    # -- expiry ---------------------------------------------------------------------------

    def _expire_some(self, rel: float, budget: int) -> int:
        """Advance the sweep by about ``budget`` records; the peers dropped."""
        before = self._n_peers
        self._sweep.run(rel, budget)
        return before - self._n_peers

    def expire_some(self, now: float, budget: int = SWEEP_STEP) -> int:
        """A slice of the expiry sweep: looks at about ``budget`` peers or info-hashes and
        returns how many peers it dropped. Call it often (the maintenance round does);
        each whole sweep starts over, and none runs while nothing can have expired."""
        return self._expire_some(self._clock(now), budget)

    @property
    def sweeping(self) -> bool:
        """Whether an expiry sweep is under way (:meth:`expire_some` has more to do)."""
        return self._sweep.running

    def expire(self, now: float) -> int:
        """Drop every expired peer; returns how many. Walks the whole store: a node calls
        :meth:`expire_some` instead (expired peers are never returned anyway)."""
        return self._expire_some(self._clock(now), _STAMP_MAX)

    # -- public API -----------------------------------------------------------------------

    def announce(self, infohash: bytes, addr: Addr, now: float, seed: bool = False) -> bool:
        """Store ``addr`` as a peer of ``infohash`` until ``now + peer_ttl``.

        Returns False, storing nothing, when the store or this info-hash is full; a
        re-announce from an IP already stored always succeeds. Raises
        :class:`InvalidArgument` for an info-hash that is not 20 bytes, an IP that is not
        an address, or a port outside 1..65535 (a handler answers those with 203).
        """
        infohash = bytes(infohash)
        if len(infohash) != ID_LEN:
            raise InvalidArgument(f"info-hash must be {ID_LEN} bytes, got {len(infohash)}")
        ip, port = addr
        if not 0 < port < 65536:
            raise InvalidArgument(f"port out of range: {port}")
        packed = ip_to_bytes(ip, unmap=True)
        if not self._admissible(packed):
            return False  # a bogon, or a local address while we are public
        rel = self._clock(now)
        return self._put(infohash, packed, port, bool(seed), self._expiry(rel, self.peer_ttl), rel)

    def can_accept(
        self, infohash: bytes, now: float | None = None, *, source: str | None = None
    ) -> bool:
        """Whether an announce for ``infohash`` would be stored.

        Without ``source``: whether one from a *new* IP would (with ``now``, expired
        entries are dropped first; a full store counts as full). With ``source``, the
        announcer's IP: whether its announce would be stored, quotas and fair-share
        eviction included (a re-announce of a stored IP always is). The ``get_peers``
        handler withholds the token when this is False (BEP 33).
        """
        infohash = bytes(infohash)
        if source is not None:
            packed = self._source(source)[0]
            if not packed:
                return False
            rel = self._clock(now) if now is not None else self._last_rel
            return self._accepts(infohash, packed, self._live(infohash, rel), rel)
        if now is not None:
            rel = self._clock(now)
            if self._live(infohash, rel):
                return self._count(infohash) < self.max_peers_per_infohash
            if self._n_infohashes < self.max_infohashes:
                return True
            return self._room_for_infohash(rel, b"", evict=False)
        if infohash in self:
            return self._count(infohash) < self.max_peers_per_infohash
        return self._n_infohashes < self.max_infohashes

    def _source(self, ip: str) -> tuple[bytes, bytes | None]:
        """``ip`` packed (unmapped) and its source (/24, /64; None when local), or
        ``(b"", None)`` when announces from it are not admissible; kept per ip."""
        known = self._sources.get(ip)
        if known is None:
            try:
                packed = ip_to_bytes(ip, unmap=True)
            except ValueError:
                packed = b""
            ok = packed and self._admissible(packed)
            known = (packed, source_of_packed(packed)) if ok else (b"", None)
            if len(self._sources) >= _SOURCES_KEPT:
                self._sources.clear()
            self._sources[ip] = known
        return known

    def _accepts(
        self, infohash: bytes, packed: bytes, live: list[tuple[bytes, int]], rel: float
    ) -> bool:
        """:meth:`can_accept` for an admissible source, ``live`` its info-hash's arrays."""
        size = REC4 if len(packed) == 4 else REC6
        arr = next((a for a, s in live if s == size), None)
        if arr is not None and find_aligned(arr, packed, size) >= 0:
            return True
        src = source_of_packed(packed)
        if src is not None and self._source_full(infohash, packed, src, arr, rel):
            return False
        if live:
            return self._count(infohash) < self.max_peers_per_infohash
        return self._room_for_infohash(rel, src or packed, evict=False)

    def for_reply(
        self, infohash: bytes, now: float, ip: str, family: int
    ) -> tuple[bytes | None, list[tuple[bytes, int]]]:
        """For a ``get_peers`` answer to ``ip``, the info-hash looked up once: ``ip``
        packed if :meth:`can_accept` holds for it (a token is due), else None; the live
        record arrays of ``family`` (4 or 6) and their record size (for pick_values)."""
        rel = self._clock(now)
        packed, src = self._sources.get(ip) or self._source(ip)
        if infohash not in self._by_family[0] and infohash not in self._by_family[1]:
            rec = self._single_live(infohash, rel)
            if rec is None:  # not stored (most asked are not): _accepts of no records
                if packed and (
                    self._n_infohashes >= self.max_infohashes
                    or (src is not None and self._book.peers(src) >= self.max_peers_per_source)
                ):
                    packed = packed if self._accepts(infohash, packed, [], rel) else b""
                return packed or None, []
            live = [(rec, REC4)]
        else:
            live = self._live(infohash, rel)
        ok = packed and self._accepts(infohash, packed, live, rel)
        want = REC4 if family == 4 else REC6
        return (packed if ok else None), [p for p in live if p[1] == want]

    def get_values(
        self,
        infohash: bytes,
        now: float,
        max_count: int = 50,
        *,
        noseed: bool = False,
        rng: random.Random | None = None,
        family: int | None = None,
        max_bytes: int = DEFAULT_VALUES_BUDGET,
    ) -> list[bytes]:
        """Compact peers (6 or 18 bytes each) for a ``get_peers`` reply's ``values``.

        A random subset (``rng``, else the store's) of at most ``max_count`` live peers,
        whose bencoded size (``6:`` + 6 or ``18:`` + 18 bytes each) stays within
        ``max_bytes``. ``family`` 4 or 6 restricts to one address family, as a reply
        should (BEP 32: values of the query's family). ``noseed`` leaves seeds out
        (BEP 33).
        """
        rel = self._clock(now)
        pools = self._live(bytes(infohash), rel)
        if family is not None:
            if family not in (4, 6):
                raise InvalidArgument(f"family must be 4, 6 or None, got {family}")
            want = REC4 if family == 4 else REC6
            pools = [p for p in pools if p[1] == want]
        if max_count <= 0 or not pools:
            return []
        return pick_values(pools, max_count, rng or self._rng, noseed, max_bytes)

    def get_peers(self, infohash: bytes, now: float, max_count: int = 50, **kw: Any) -> list[Addr]:
        """Like :meth:`get_values` (the same keyword arguments), decoded to (ip, port)."""
        values = self.get_values(infohash, now, max_count, **kw)
        return [(ip_from_bytes(v[:-2]), int.from_bytes(v[-2:], "big")) for v in values]

    def counts(self, infohash: bytes, now: float) -> tuple[int, int]:
        """(seeds, non-seeds) stored for ``infohash``."""
        seeds = total = 0
        for arr, size in self._live(bytes(infohash), self._clock(now)):
            total += len(arr) // size
            seeds += sum(arr[off] & 1 for off in range(size - 1, len(arr), size))
        return seeds, total - seeds

    def scrape(self, infohash: bytes, now: float) -> tuple[bytes, bytes] | None:
        """BEP 33 ``(BFsd, BFpe)`` filters for ``infohash``; None when it is not stored."""
        pools = self._live(bytes(infohash), self._clock(now))
        if not pools:
            return None
        return scrape_filters(pools)

    def __len__(self) -> int:
        """Number of info-hashes stored (expired ones count until dropped)."""
        return self._n_infohashes

    def __contains__(self, infohash: object) -> bool:
        if not isinstance(infohash, bytes):
            return False
        return self._general(infohash) or self._single.get(infohash) is not None

    def peer_count(self) -> int:
        """Number of peers stored, all info-hashes (expired ones count until dropped)."""
        return self._n_peers

    def infohashes(self) -> list[bytes]:
        """Every stored info-hash, once."""
        v4, v6 = self._by_family
        out = list(v4) + [ih for ih in v6 if ih not in v4]
        for shard in self._single.shards():
            out += [shard[off : off + ID_LEN] for off in range(0, len(shard), _SINGLE)]
        return out

    def sample(self, rng: random.Random, n: int = 20) -> list[bytes]:
        """Up to ``n`` distinct stored info-hashes chosen at random (BEP 51 ``samples``).

        Single-peer ones are drawn from their table, so a sample costs O(n + the others),
        not O(info-hashes) (listing a million took 242 ms of CPU).
        """
        n = min(max(n, 0), self._n_infohashes)
        if 8 * n >= self._n_infohashes:
            keys = self.infohashes()
            return rng.sample(keys, min(n, len(keys)))
        return sample_keys(self._single, self._by_family, rng, n)

    def dump(self, now: float) -> list[list[Any]]:
        """JSON-able snapshot: ``[infohash hex, ip, port, seed, seconds left]`` per peer."""
        return [
            [ih.hex(), ip_from_bytes(ip), port, seed, left]
            for chunk in self.export_chunks(now)
            for ih, ip, port, seed, left in chunk
        ]

    snapshot = dump

    def load(self, entries: Iterable[Sequence[Any]], now: float) -> int:
        """Restore peers saved by :meth:`dump` or :meth:`export_chunks` (the info-hash as
        20 bytes or hex, the IP packed or as text); returns how many were stored.

        Malformed or expired entries are skipped, the time left is capped at
        ``peer_ttl``, and the size limits apply as for :meth:`announce`.
        """
        rel = self._clock(now)
        stored = 0
        ttl = self.peer_ttl
        for entry in entries:
            parsed = parse_saved(entry)
            if parsed is None or not self._admissible(parsed[1]):
                continue
            infohash, packed, port, seed, left = parsed
            expiry = self._expiry(rel, min(left, ttl))
            if expiry > rel and self._put(infohash, packed, port, seed, expiry, rel):
                stored += 1
        return stored

    def export_chunks(
        self, now: float, peers_per_chunk: int = 2_000
    ) -> Iterable[list[tuple[bytes, bytes, int, bool, float]]]:
        """The live peers, a chunk at a time, for a save that must not stall the caller:
        ``(infohash, packed ip, port, seed, seconds left)`` entries (:meth:`load` takes
        them back).

        Works from a snapshot taken when the first chunk is asked for (of the general
        tables' info-hashes and of the single-peer table's shards, which are immutable),
        so the store may change between chunks: a general info-hash dropped meanwhile
        is skipped, one added is not exported, and each is read whole as it is when its
        chunk is built; single-peer info-hashes are exported as they were at the
        snapshot. The seconds left are counted from ``now`` throughout. A chunk holds
        whole info-hashes (per family): ``peers_per_chunk`` peers or more, at most
        ``peers_per_chunk + max_peers_per_infohash``; the last may be smaller.
        """
        rel = self._clock(now)
        return export_live(self._single.shards(), self._by_family, rel, peers_per_chunk)
