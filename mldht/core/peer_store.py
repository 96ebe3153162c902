"""Announced peers (BEP 5), scrape filters (BEP 33) and info-hash samples (BEP 51).

Storage layout (memory matters: a public node may hold a million peers). Per info-hash
and address family the peers live in one ``bytes`` object of fixed-size records::

    IPv4: ip (4) | port (2, big-endian) | stamp (4)     = 10 bytes
    IPv6: ip (16) | port (2, big-endian) | stamp (4)    = 22 bytes

``stamp = expiry << 1 | seed``, where ``expiry`` is a whole second on the store's own
clock (seconds since the first ``now`` it saw). The first bytes of a record are the
compact peer itself, so a ``values`` entry is a slice. Records are kept sorted by
expiry: the TTL is constant and the store's clock never goes backwards, so a new or
refreshed record is appended, and expired records always form a prefix that is cut in
one step. There is one record per IP (BEP 33): a repeat announce moves it to the end
with the new port, seed flag and expiry.

The arrays are immutable ``bytes``, rebuilt on each change: a ``bytes`` object is one
allocation with no spare capacity, about 70 bytes less per info-hash than a
``bytearray``, which matters because most info-hashes hold only a few peers. The copy
is cheap next to the rest of an announce (10 KB for 1000 IPv4 peers).

Abuse limits (a peer's IP is always the announcer's source IP, BEP 5). A *source* is the
announcer's /24 (IPv6: /64); local-network addresses (loopback, private) are exempt
from the quotas, each such IP counting alone, and bogon addresses (unspecified,
multicast, broadcast, reserved, and local ones when our node is public:
``local_network=False``) are never stored (:mod:`mldht.core.netaddr`):

* a source holds at most ``max_peers_per_source`` peer entries in the whole store and
  at most ``max_peers_per_source_per_infohash`` in one info-hash;
* every stored info-hash is charged to its *owner*, the source whose announce created
  it. When the store holds ``max_infohashes`` (after sweeping expired entries), an
  announce for a new info-hash from source S evicts one info-hash of the owner H that
  owns the most, provided H owns more than S would after the announce (more than
  ``owned(S) + 1``); otherwise it is refused (and :meth:`PeerStore.can_accept` tells the
  ``get_peers`` handler to withhold the token). The victim is, among H's eight oldest
  info-hashes, the least popular: the one announced from the fewest distinct sources
  (popularity counts distinct /24s, not announces), the oldest on a tie. So a flood
  from many addresses only ever pushes out the flooders' own info-hashes while any
  source owning fewer than the biggest owner (an honest announcer) still gets in: the
  store converges to an equal share per source (max-min fairness), and honest
  announces are never locked out by a full store.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError, InvalidArgument
from .compact import ip_from_bytes, ip_to_bytes
from .ids import ID_LEN
from .netaddr import LOCAL, PUBLIC, classify_packed, local_allowed, source_of_packed

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

    from .compact import Addr

__all__ = [
    "BLOOM_BITS",
    "BLOOM_BYTES",
    "DEFAULT_PEER_TTL",
    "DEFAULT_VALUES_BUDGET",
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

_REC4 = 10
_REC6 = 22
_STAMP_MAX = (1 << 31) - 1
_VICTIM_WINDOW = 8
"""How many of the biggest owner's oldest info-hashes eviction compares by popularity."""


# ---------------------------------------------------------------------------------------
# BEP 33 bloom filters


BLOOM_BYTES = 256
BLOOM_BITS = 8 * BLOOM_BYTES
_BLOOM_K = 2


def bloom_insert(bloom: bytearray, ip: str | bytes) -> None:
    """Add an IP (text or 4/16 packed bytes; never a port) to a 256-byte BEP 33 filter."""
    h = hashlib.sha1(ip_to_bytes(ip)).digest()
    # BEP 33: the two indices are bytes 0-1 and 2-3 read little-endian; bits LSB-first.
    i1 = (h[0] | h[1] << 8) % BLOOM_BITS
    i2 = (h[2] | h[3] << 8) % BLOOM_BITS
    bloom[i1 >> 3] |= 1 << (i1 & 7)
    bloom[i2 >> 3] |= 1 << (i2 & 7)


def scrape_bloom(ips: Iterable[str | bytes | Addr]) -> bytes:
    """The BEP 33 filter (256 bytes) of a set of IPs; an (ip, port) pair counts its IP."""
    bloom = bytearray(BLOOM_BYTES)
    for ip in ips:
        bloom_insert(bloom, ip[0] if isinstance(ip, tuple) else ip)
    return bytes(bloom)


def bloom_union(blooms: Iterable[bytes]) -> bytes:
    """OR filters together (BEP 33: how filters from several nodes combine)."""
    acc = 0
    for b in blooms:
        if len(b) != BLOOM_BYTES:
            raise DecodeError(f"BEP 33 filter must be {BLOOM_BYTES} bytes, got {len(b)}")
        acc |= int.from_bytes(b, "big")
    return acc.to_bytes(BLOOM_BYTES, "big")


def bloom_estimate(bloom: bytes) -> float:
    """Estimated number of distinct IPs in a BEP 33 filter.

    An all-zero filter gives 0.0 (the BEP formula would give 0.5); a full one gives
    ``math.inf``, meaning saturated (beyond about 8000). A filter that is not 256 bytes
    raises :class:`DecodeError` (filters come from the network).
    """
    if len(bloom) != BLOOM_BYTES:
        raise DecodeError(f"BEP 33 filter must be {BLOOM_BYTES} bytes, got {len(bloom)}")
    zeros = BLOOM_BITS - int.from_bytes(bloom, "big").bit_count()
    if zeros == BLOOM_BITS:
        return 0.0
    if zeros == 0:
        return math.inf
    return math.log(zeros / BLOOM_BITS) / (_BLOOM_K * math.log(1 - 1 / BLOOM_BITS))


# ---------------------------------------------------------------------------------------
# Helpers on record arrays


def _stamp_at(arr: bytes, index: int, size: int) -> int:
    off = index * size + size - 4
    return int.from_bytes(arr[off : off + 4], "big")


def _find_ip(arr: bytes, ip: bytes, size: int) -> int:
    """Byte offset of the record whose IP is ``ip``, or -1."""
    pos = arr.find(ip)
    while pos >= 0:
        if pos % size == 0:
            return pos
        # An unaligned hit (inside another record): resume at the next record start.
        pos = arr.find(ip, (pos // size + 1) * size)
    return -1


def _first_live(arr: bytes, size: int, now_rel: float) -> int:
    """Index of the first record whose expiry is after ``now_rel`` (records are sorted)."""
    lo, hi = 0, len(arr) // size
    while lo < hi:
        mid = (lo + hi) // 2
        if _stamp_at(arr, mid, size) >> 1 > now_rel:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _insert_sorted(arr: bytes, rec: bytes, size: int) -> bytes:
    """``arr`` with ``rec`` inserted after every record expiring no later than it."""
    stamp = int.from_bytes(rec[-4:], "big") >> 1
    n = len(arr) // size
    if not n or _stamp_at(arr, n - 1, size) >> 1 <= stamp:
        return arr + rec
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if _stamp_at(arr, mid, size) >> 1 <= stamp:
            lo = mid + 1
        else:
            hi = mid
    return arr[: lo * size] + rec + arr[lo * size :]


class _Owner:
    """A source (or local IP) and the info-hashes it created, oldest first."""

    __slots__ = ("infohashes", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.infohashes: dict[bytes, None] = {}


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
      entries are never returned, and are dropped when their info-hash is touched or by
      :meth:`expire`, which costs one check per stored info-hash.

    All times are the caller's ``now`` (seconds); a ``now`` earlier than one already seen
    is treated as that one. ``rng`` picks random subsets of peers.
    """

    __slots__ = (
        "_by_family",
        "_by_size",
        "_epoch",
        "_last_reclaim",
        "_last_rel",
        "_local_ok",
        "_max_owned",
        "_n_infohashes",
        "_n_peers",
        "_next_expiry",
        "_owned",
        "_owner",
        "_rng",
        "_src_peers",
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
        # peer entries per public source (/24 or /64 prefix)
        self._src_peers: dict[bytes, int] = {}
        # info-hash -> owner (the source, or a local IP, whose announce created it);
        # owner -> its info-hashes, oldest first; how many own n info-hashes (eviction)
        self._owner: dict[bytes, _Owner] = {}
        self._owned: dict[bytes, _Owner] = {}
        self._by_size: dict[int, dict[_Owner, None]] = {}
        self._max_owned = 0
        # a lower bound on every stored record's expiry (sweeps before it find nothing)
        self._next_expiry: float = math.inf
        # (IPv4 records, IPv6 records), each info-hash -> record array.
        self._by_family: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        self._epoch: float | None = None
        self._last_rel = 0.0
        self._last_reclaim = -math.inf
        self._n_infohashes = 0
        self._n_peers = 0

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
        return (len(a4) // _REC4 if a4 else 0) + (len(a6) // _REC6 if a6 else 0)

    def _trim(self, fam: int, infohash: bytes, arr: bytes, rel: float) -> bytes | None:
        """Drop the expired prefix of one array: the live array, or None if none is left."""
        size = _REC4 if fam == 0 else _REC6
        if _stamp_at(arr, 0, size) >> 1 > rel:
            return arr
        cut = _first_live(arr, size, rel)
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

    # -- per-source accounting ------------------------------------------------------------

    def _uncount(self, recs: bytes, size: int) -> None:
        """Records leave the store: take them off their sources' counts."""
        counts = self._src_peers
        for off in range(0, len(recs), size):
            src = source_of_packed(recs[off : off + size - 6])
            if src is not None:
                left = counts[src] - 1
                if left:
                    counts[src] = left
                else:
                    del counts[src]

    def _resize(self, owner: _Owner, old: int, new: int) -> None:
        by_size = self._by_size
        if old:
            group = by_size[old]
            del group[owner]
            if not group:
                del by_size[old]
        if new:
            by_size.setdefault(new, {})[owner] = None
            if new > self._max_owned:
                self._max_owned = new

    def _own(self, infohash: bytes, key: bytes) -> None:
        owner = self._owned.get(key)
        if owner is None:
            owner = self._owned[key] = _Owner(key)
        owned = owner.infohashes
        owned[infohash] = None
        self._owner[infohash] = owner
        self._resize(owner, len(owned) - 1, len(owned))

    def _disown(self, infohash: bytes) -> None:
        owner = self._owner.pop(infohash, None)
        if owner is None:
            return
        owned = owner.infohashes
        del owned[infohash]
        if not owned:
            del self._owned[owner.key]
        self._resize(owner, len(owned) + 1, len(owned))

    def _heaviest(self) -> _Owner | None:
        """The owner with the most info-hashes (the earliest to get there on a tie)."""
        while self._max_owned and self._max_owned not in self._by_size:
            self._max_owned -= 1
        if not self._max_owned:
            return None
        return next(iter(self._by_size[self._max_owned]))

    def _may_evict_for(self, key: bytes) -> _Owner | None:
        """The owner to evict from so that owner ``key`` gets a new info-hash, or None."""
        heaviest = self._heaviest()
        if heaviest is None or heaviest.key == key:
            return None
        mine = self._owned.get(key)
        if self._max_owned <= (len(mine.infohashes) if mine else 0) + 1:
            return None
        return heaviest

    def popularity(self, infohash: bytes) -> int:
        """Distinct sources (/24, /64; each local IP alone) announcing ``infohash``."""
        seen: set[bytes] = set()
        for fam, size in ((0, _REC4), (1, _REC6)):
            arr = self._by_family[fam].get(infohash)
            if arr:
                for off in range(0, len(arr), size):
                    raw = arr[off : off + size - 6]
                    seen.add(source_of_packed(raw) or raw)
        return len(seen)

    def _evict_from(self, owner: _Owner) -> None:
        """Drop the least popular of ``owner``'s oldest info-hashes, all its peers."""
        oldest = []
        for ih in owner.infohashes:
            oldest.append(ih)
            if len(oldest) >= _VICTIM_WINDOW:
                break
        victim = min(oldest, key=self.popularity)  # min keeps the oldest on a tie
        for fam, size in ((0, _REC4), (1, _REC6)):
            arr = self._by_family[fam].pop(victim, None)
            if arr is not None:
                self._n_peers -= len(arr) // size
                self._uncount(arr, size)
        self._n_infohashes -= 1
        self._disown(victim)

    def _source_full(
        self, infohash: bytes, packed: bytes, src: bytes, arr: bytes | None, rel: float
    ) -> bool:
        """Whether public source ``src`` may add no entry for ``infohash`` (its quotas).

        A source at its total quota may hold expired entries not yet dropped: the store
        is swept first, at most once per second of store time (as for a full store).
        """
        if self._src_peers.get(src, 0) >= self.max_peers_per_source:
            if rel - self._last_reclaim < 1.0:
                return True
            self._last_reclaim = rel
            self._expire(rel)
            if self._src_peers.get(src, 0) >= self.max_peers_per_source:
                return True
        if not arr:
            return False
        size = _REC4 if len(packed) == 4 else _REC6
        n = 0
        pos = arr.find(src)
        while pos >= 0:
            if pos % size == 0:
                n += 1
                if n >= self.max_peers_per_source_per_infohash:
                    return True
                pos = arr.find(src, pos + size)
            else:
                pos = arr.find(src, (pos // size + 1) * size)
        return False

    def _admissible(self, packed: bytes) -> bool:
        cls = classify_packed(packed)
        return cls == PUBLIC or (cls == LOCAL and self._local_ok)

    def _live(self, infohash: bytes, rel: float) -> list[tuple[bytes, int]]:
        """The non-empty, trimmed record arrays of an info-hash, with their record size."""
        out = []
        for fam in (0, 1):
            arr = self._by_family[fam].get(infohash)
            if arr is not None:
                arr = self._trim(fam, infohash, arr, rel)
                if arr is not None:
                    out.append((arr, _REC4 if fam == 0 else _REC6))
        return out

    def _put(
        self, infohash: bytes, packed: bytes, port: int, seed: bool, expiry: int, rel: float
    ) -> bool:
        fam = 0 if len(packed) == 4 else 1
        size = _REC4 if fam == 0 else _REC6
        if expiry < self._next_expiry:
            self._next_expiry = expiry
        rec = packed + port.to_bytes(2, "big") + ((expiry << 1) | seed).to_bytes(4, "big")
        table = self._by_family[fam]
        src = source_of_packed(packed)
        arr = table.get(infohash)
        if arr is not None:
            arr = self._trim(fam, infohash, arr, rel)
        if arr is not None:
            pos = _find_ip(arr, packed, size)
            if pos >= 0:  # BEP 33: one entry per IP; the repeat announce replaces it
                table[infohash] = _insert_sorted(arr[:pos] + arr[pos + size :], rec, size)
                return True
            if self._count(infohash) >= self.max_peers_per_infohash:
                return False
            if src is not None and self._source_full(infohash, packed, src, arr, rel):
                return False
            table[infohash] = _insert_sorted(arr, rec, size)
            self._add_count(src)
            return True
        if src is not None and self._source_full(infohash, packed, src, None, rel):
            return False
        other = self._by_family[1 - fam].get(infohash)
        if other is not None:
            other = self._trim(1 - fam, infohash, other, rel)
        if other is None:
            if not self._room_for_infohash(rel, src or packed, evict=True):
                return False
            self._n_infohashes += 1
            self._own(infohash, src or packed)
        elif self._count(infohash) >= self.max_peers_per_infohash:
            return False
        table[infohash] = rec
        self._add_count(src)
        return True

    def _add_count(self, src: bytes | None) -> None:
        self._n_peers += 1
        if src is not None:
            self._src_peers[src] = self._src_peers.get(src, 0) + 1

    def _room_for_infohash(self, rel: float, owner: bytes, *, evict: bool) -> bool:
        """Whether a new info-hash of ``owner`` fits; at the cap, sweep expired ones
        first, then (``evict``) make room by fair share (module docstring).

        The sweep costs one check per info-hash, so it runs at most once per second of
        store time: a flood of announces for new hashes cannot make every one pay it.
        """
        if self._n_infohashes < self.max_infohashes:
            return True
        if rel - self._last_reclaim >= 1.0:
            self._last_reclaim = rel
            self._expire(rel)
            if self._n_infohashes < self.max_infohashes:
                return True
        victim_owner = self._may_evict_for(owner)
        if victim_owner is None:
            return False
        if evict:
            self._evict_from(victim_owner)
        return True

    def _expire(self, rel: float) -> int:
        if rel < self._next_expiry:
            return 0  # no record expires before _next_expiry: nothing to sweep
        before = self._n_peers
        soonest = math.inf
        for fam in (0, 1):
            table = self._by_family[fam]
            size = _REC4 if fam == 0 else _REC6
            stale = []
            for ih, arr in table.items():
                first = _stamp_at(arr, 0, size) >> 1
                if first <= rel:
                    stale.append(ih)
                elif first < soonest:
                    soonest = first
            for ih in stale:
                left = self._trim(fam, ih, table[ih], rel)
                if left is not None:
                    soonest = min(soonest, _stamp_at(left, 0, size) >> 1)
        self._next_expiry = soonest
        return before - self._n_peers

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
            try:
                packed = ip_to_bytes(source, unmap=True)
            except ValueError:
                return False
            if not self._admissible(packed):
                return False
            rel = self._clock(now) if now is not None else self._last_rel
            fam = 0 if len(packed) == 4 else 1
            size = _REC4 if fam == 0 else _REC6
            arr = self._by_family[fam].get(infohash)
            if arr is not None:
                arr = self._trim(fam, infohash, arr, rel)
            if arr is not None and _find_ip(arr, packed, size) >= 0:
                return True
            src = source_of_packed(packed)
            if src is not None and self._source_full(infohash, packed, src, arr, rel):
                return False
            if self._live(infohash, rel):
                return self._count(infohash) < self.max_peers_per_infohash
            return self._room_for_infohash(rel, src or packed, evict=False)
        if now is not None:
            rel = self._clock(now)
            if self._live(infohash, rel):
                return self._count(infohash) < self.max_peers_per_infohash
            if self._n_infohashes < self.max_infohashes:
                return True
            return self._room_for_infohash(rel, b"", evict=False)
        if infohash in self._by_family[0] or infohash in self._by_family[1]:
            return self._count(infohash) < self.max_peers_per_infohash
        return self._n_infohashes < self.max_infohashes

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
            want = _REC4 if family == 4 else _REC6
            pools = [p for p in pools if p[1] == want]
        if max_count <= 0 or not pools:
            return []
        rng = rng or self._rng
        # Candidate records as (array, byte offset, record size).
        picks: list[tuple[bytes, int, int]]
        if noseed:
            cands = [
                (arr, off, size)
                for arr, size in pools
                for off in range(0, len(arr), size)
                if not arr[off + size - 1] & 1
            ]
            picks = rng.sample(cands, min(max_count, len(cands)))
        else:
            n4 = len(pools[0][0]) // pools[0][1]
            total = sum(len(arr) // size for arr, size in pools)
            picks = []
            for i in rng.sample(range(total), min(max_count, total)):
                arr, size = pools[0] if i < n4 else pools[1]
                j = i if i < n4 else i - n4
                picks.append((arr, j * size, size))
        out: list[bytes] = []
        budget = max_bytes
        for arr, off, size in picks:
            cost = size - 4 + (2 if size == _REC4 else 3)
            if cost <= budget:
                budget -= cost
                out.append(arr[off : off + size - 4])
        return out

    def get_peers(
        self,
        infohash: bytes,
        now: float,
        max_count: int = 50,
        *,
        noseed: bool = False,
        rng: random.Random | None = None,
        family: int | None = None,
        max_bytes: int = DEFAULT_VALUES_BUDGET,
    ) -> list[Addr]:
        """Like :meth:`get_values`, decoded to ``(ip, port)`` pairs."""
        values = self.get_values(
            infohash,
            now,
            max_count,
            noseed=noseed,
            rng=rng,
            family=family,
            max_bytes=max_bytes,
        )
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
        seeds = bytearray(BLOOM_BYTES)
        peers = bytearray(BLOOM_BYTES)
        for arr, size in pools:
            for off in range(0, len(arr), size):
                target = seeds if arr[off + size - 1] & 1 else peers
                bloom_insert(target, arr[off : off + size - 6])
        return bytes(seeds), bytes(peers)

    def expire(self, now: float) -> int:
        """Drop every expired peer; returns how many. One check per stored info-hash.

        Optional: expired peers are never returned anyway, and a full store sweeps
        itself before refusing a new info-hash. Calling it now and then frees memory.
        """
        return self._expire(self._clock(now))

    def __len__(self) -> int:
        """Number of info-hashes stored (expired ones count until dropped)."""
        return self._n_infohashes

    def __contains__(self, infohash: object) -> bool:
        return infohash in self._by_family[0] or infohash in self._by_family[1]

    def peer_count(self) -> int:
        """Number of peers stored, all info-hashes (expired ones count until dropped)."""
        return self._n_peers

    def infohashes(self) -> list[bytes]:
        """Every stored info-hash, once."""
        v4, v6 = self._by_family
        return list(v4) + [ih for ih in v6 if ih not in v4]

    def sample(self, rng: random.Random, n: int = 20) -> list[bytes]:
        """Up to ``n`` distinct stored info-hashes chosen at random (BEP 51 ``samples``).

        Costs O(number of info-hashes): the BEP 51 handler should reuse a sample until
        its ``interval`` elapses, as the BEP allows.
        """
        keys = list(self._by_family[0]) if not self._by_family[1] else self.infohashes()
        return rng.sample(keys, min(max(n, 0), len(keys)))

    def dump(self, now: float) -> list[list[Any]]:
        """JSON-able snapshot: ``[infohash hex, ip, port, seed, seconds left]`` per peer."""
        rel = self._clock(now)
        out: list[list[Any]] = []
        for fam in (0, 1):
            size = _REC4 if fam == 0 else _REC6
            for ih, arr in self._by_family[fam].items():
                hx = ih.hex()
                for off in range(0, len(arr), size):
                    stamp = int.from_bytes(arr[off + size - 4 : off + size], "big")
                    left = (stamp >> 1) - rel
                    if left > 0:
                        out.append(
                            [
                                hx,
                                ip_from_bytes(arr[off : off + size - 6]),
                                int.from_bytes(arr[off + size - 6 : off + size - 4], "big"),
                                bool(stamp & 1),
                                left,
                            ]
                        )
        return out

    snapshot = dump

    def load(self, entries: Iterable[Sequence[Any]], now: float) -> int:
        """Restore peers saved by :meth:`dump`; returns how many were stored.

        Malformed or expired entries are skipped, the time left is capped at
        ``peer_ttl``, and the size limits apply as for :meth:`announce`.
        """
        rel = self._clock(now)
        stored = 0
        for entry in entries:
            try:
                hx, ip, port, seed, left = entry
                infohash = bytes.fromhex(hx)
                packed = ip_to_bytes(ip, unmap=True) if isinstance(ip, str) else b""
                ok = (
                    len(infohash) == ID_LEN
                    and bool(packed)
                    and self._admissible(packed)
                    and type(port) is int
                    and 0 < port < 65536
                    and isinstance(seed, bool | int)
                    and isinstance(left, int | float)
                    and left > 0
                )
            except (ValueError, TypeError, InvalidArgument):
                continue
            if not ok:
                continue
            expiry = self._expiry(rel, min(float(left), self.peer_ttl))
            if expiry > rel and self._put(infohash, packed, port, bool(seed), expiry, rel):
                stored += 1
        return stored

    def export_chunks(
        self, now: float, peers_per_chunk: int = 2_000
    ) -> Iterable[list[tuple[bytes, bytes, int, bool, float]]]:
        """The live peers, a chunk at a time, for a save that must not stall the caller:
        ``(infohash, packed ip, port, seed, seconds left)`` entries (:meth:`load` takes
        them back with the IP as text).

        Works from a snapshot of the info-hashes taken when the first chunk is asked for,
        so the store may change between chunks: an info-hash dropped meanwhile is
        skipped, one added is not exported, and each info-hash is read whole as it is
        when its chunk is built. The seconds left are counted from ``now`` throughout.
        A chunk holds whole info-hashes (per family): ``peers_per_chunk`` peers or more,
        at most ``peers_per_chunk + max_peers_per_infohash``; the last may be smaller.
        """
        import struct

        rel = self._clock(now)
        keys = (list(self._by_family[0]), list(self._by_family[1]))
        chunk: list[tuple[bytes, bytes, int, bool, float]] = []
        for fam in (0, 1):
            table = self._by_family[fam]
            fmt = ">4sHI" if fam == 0 else ">16sHI"
            for ih in keys[fam]:
                arr = table.get(ih)
                if arr is None:
                    continue
                chunk.extend(
                    [
                        (ih, ip, port, bool(stamp & 1), (stamp >> 1) - rel)
                        for ip, port, stamp in struct.iter_unpack(fmt, arr)
                        if stamp >> 1 > rel
                    ]
                )
                if len(chunk) >= peers_per_chunk:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
