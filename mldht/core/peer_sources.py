"""Per-source accounting of the peer store: quotas and fair-share ownership.

Abuse limits (a peer's IP is always the announcer's source IP, BEP 5). A *source* is the
announcer's /24 (IPv6: /64); local-network addresses (loopback, private) are exempt
from the quotas, each such IP counting alone, and bogon addresses (unspecified,
multicast, broadcast, reserved, and local ones when our node is public:
``local_network=False``) are never stored (:mod:`mldht.core.netaddr`).

* a source holds at most ``max_peers_per_source`` peer entries in the whole store and
  at most ``max_peers_per_source_per_infohash`` in one info-hash;
* every stored info-hash is charged to its *owner*, the source whose announce created
  it. When the store holds ``max_infohashes`` (after sweeping expired entries), an
  announce for a new info-hash from source S evicts one info-hash of the owner H that
  owns the most, provided H owns more than S would after the announce (more than
  ``owned(S) + 1``); otherwise it is refused (and ``PeerStore.can_accept`` tells the
  ``get_peers`` handler to withhold the token). The victim is, among H's eight oldest
  info-hashes, the least popular: the one announced from the fewest distinct sources
  (popularity counts distinct /24s, not announces), the oldest on a tie. So a flood
  from many addresses only ever pushes out the flooders' own info-hashes while any
  source owning fewer than the biggest owner (an honest announcer) still gets in: the
  store converges to an equal share per source (max-min fairness), and honest
  announces are never locked out by a full store.

For each source the :class:`SourceBook` keeps how many peer entries it holds (public
sources only) and which info-hashes it owns, oldest first.

Memory is what shapes it: a million announcers of one info-hash each would cost more
in ``dict`` entries than in peers. So the counters live in a :class:`PackedTable`
(16 bytes per source), and a source owning a single info-hash that the store keeps as a
single IPv4 peer does not list it: its record holds the low bits of the info-hash's
``hash()`` (its shard in the store's single-peer table), and the store finds it there
by the source's address the day the source creates a second one. Sources owning more
(or owning an info-hash kept in the general tables) list their info-hashes as packed
20-byte strings, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable

from .ids import ID_LEN
from .packed_table import PackedTable, find_aligned

__all__ = ["SourceBook"]

_HAS_LOC = 1 << 31


def _table_key(raw: bytes) -> bytes:
    """A source's fixed 8-byte key: /24 and local IPv4 left-padded with zeros (their
    first byte is never zero), a /64 as is (never a zero first byte either: public),
    a local IPv6 address hashed into a key that starts with 0xff (never a public /64)."""
    n = len(raw)
    if n <= 8:
        return bytes(8 - n) + raw
    return b"\xff" + (hash(raw) & ((1 << 56) - 1)).to_bytes(7, "big")


class SourceBook:
    """Peer counts and owned info-hashes per source (module docstring)."""

    __slots__ = ("_by_size", "_lists", "_max_owned", "_table")

    def __init__(self) -> None:
        # table key -> peers (4 bytes) | owned-single locator (4 bytes, _HAS_LOC set)
        self._table = PackedTable(8, 8)
        # owner (raw key) -> its info-hashes, 20 bytes each, oldest first
        self._lists: dict[bytes, bytes] = {}
        # how many owners list n info-hashes, to find the biggest owner at once
        self._by_size: dict[int, dict[bytes, None]] = {}
        self._max_owned = 0

    def __len__(self) -> int:
        """Sources with a record (peers counted, or an info-hash owned)."""
        return len(self._table)

    # -- the packed record ----------------------------------------------------------------

    def _get(self, raw: bytes) -> tuple[int, int]:
        v = self._table.get(_table_key(raw))
        if v is None:
            return 0, 0
        return int.from_bytes(v[:4], "big"), int.from_bytes(v[4:], "big")

    def _set(self, raw: bytes, peers: int, loc: int) -> None:
        key = _table_key(raw)
        self._set_at(*self._table.locate(key), key, peers, loc)

    def _set_at(self, i: int, off: int, key: bytes, peers: int, loc: int) -> None:
        if peers or loc:
            self._table.put_at(i, off, key, peers.to_bytes(4, "big") + loc.to_bytes(4, "big"))
        else:
            self._table.pop_at(i, off)

    # -- peer quotas (public sources) -----------------------------------------------------

    def peers(self, src: bytes) -> int:
        """Peer entries stored from source ``src``."""
        return self._get(src)[0]

    def add_peers(self, src: bytes, delta: int) -> None:
        key = _table_key(src)
        i, off = self._table.locate(key)
        v = self._table.value_at(i, off)
        peers = int.from_bytes(v[:4], "big") + delta if v else delta
        self._set_at(i, off, key, peers, int.from_bytes(v[4:], "big") if v else 0)

    # -- ownership ------------------------------------------------------------------------

    def own_single(
        self,
        infohash: bytes,
        owner: bytes,
        counted: bool,
        single_hash: int,
        resolve: Callable[[int, bytes], bytes],
    ) -> None:
        """:meth:`own` for a single-peer info-hash whose peer is from ``owner`` (one more
        peer for it when ``counted``: a public source): one look-up in the common case."""
        key = _table_key(owner)
        i, off = self._table.locate(key)
        v = self._table.value_at(i, off)
        peers = (int.from_bytes(v[:4], "big") if v else 0) + counted
        if not (v and v[4:] != bytes(4)) and owner not in self._lists:
            self._set_at(i, off, key, peers, _HAS_LOC | (single_hash & (_HAS_LOC - 1)))
            return
        self._set_at(i, off, key, peers, int.from_bytes(v[4:], "big") if v else 0)
        self.own(infohash, owner, single_hash, resolve)

    def owned(self, owner: bytes) -> int:
        """How many info-hashes ``owner`` owns."""
        listed = self._lists.get(owner)
        if listed is not None:
            return len(listed) // ID_LEN
        return 1 if self._get(owner)[1] else 0

    def own(
        self,
        infohash: bytes,
        owner: bytes,
        single_hash: int | None,
        resolve: Callable[[int, bytes], bytes],
    ) -> None:
        """``owner`` created ``infohash``: kept as a single IPv4 peer whose ``hash()`` is
        ``single_hash``, or in the general tables (None). ``resolve(locator, owner)``
        finds the single-peer info-hash an unlisted owner already owns."""
        listed = self._lists.get(owner)
        if listed is None:
            peers, loc = self._get(owner)
            if not loc and single_hash is not None:
                self._set(owner, peers, _HAS_LOC | (single_hash & (_HAS_LOC - 1)))
                return
            listed = resolve(loc & (_HAS_LOC - 1), owner) if loc else b""
            if loc:
                self._set(owner, peers, 0)
        self._relist(owner, listed + infohash)

    def list_owned(self, owner: bytes, infohash: bytes) -> None:
        """``infohash``, the single-peer one ``owner`` owns unlisted, leaves the
        single-peer table: list it (it keeps its age: the owner owns nothing else)."""
        if owner not in self._lists:
            peers, _ = self._get(owner)
            self._set(owner, peers, 0)
            self._relist(owner, infohash)

    def drop_single(self, infohash: bytes, owner: bytes, counted: bool) -> None:
        """A single-peer info-hash whose peer is from ``owner`` left the store: its peer
        (``counted``: a public source's) and its ownership, in one look-up."""
        key = _table_key(owner)
        i, off = self._table.locate(key)
        v = self._table.value_at(i, off)
        peers = (int.from_bytes(v[:4], "big") if v else 0) - counted
        listed = self._lists.get(owner)
        loc = int.from_bytes(v[4:], "big") if v and listed is not None else 0
        self._set_at(i, off, key, peers, loc)
        if listed is not None:
            off = find_aligned(listed, infohash, ID_LEN)
            if off >= 0:
                self._relist(owner, listed[:off] + listed[off + ID_LEN :])

    def disown(self, infohash: bytes, owner: bytes) -> None:
        """``infohash`` left the store."""
        listed = self._lists.get(owner)
        if listed is None:
            peers, _ = self._get(owner)
            self._set(owner, peers, 0)
            return
        off = find_aligned(listed, infohash, ID_LEN)
        if off >= 0:
            self._relist(owner, listed[:off] + listed[off + ID_LEN :])

    def _relist(self, owner: bytes, listed: bytes) -> None:
        old = self._lists.get(owner)
        by_size = self._by_size
        if old is not None:
            group = by_size[len(old) // ID_LEN]
            del group[owner]
            if not group:
                del by_size[len(old) // ID_LEN]
        if not listed:
            self._lists.pop(owner, None)
            return
        self._lists[owner] = listed
        n = len(listed) // ID_LEN
        by_size.setdefault(n, {})[owner] = None
        if n > self._max_owned:
            self._max_owned = n

    def oldest(self, owner: bytes, n: int) -> list[bytes]:
        """The ``n`` oldest info-hashes listed for ``owner``."""
        listed = self._lists.get(owner, b"")[: n * ID_LEN]
        return [listed[i : i + ID_LEN] for i in range(0, len(listed), ID_LEN)]

    def heaviest(self) -> bytes | None:
        """The owner listing the most info-hashes (the earliest to get there on a tie);
        None when nobody owns more than one (unlisted owners own at most one)."""
        while self._max_owned and self._max_owned not in self._by_size:
            self._max_owned -= 1
        if self._max_owned < 2:
            return None
        return next(iter(self._by_size[self._max_owned]))

    def may_evict_for(self, owner: bytes) -> bytes | None:
        """The owner to evict from so that ``owner`` gets a new info-hash, or None: the
        biggest owner, provided it owns more than ``owner`` would after (max-min fair)."""
        heaviest = self.heaviest()
        if heaviest is None or heaviest == owner:
            return None
        if self._max_owned <= self.owned(owner) + 1:
            return None
        return heaviest
