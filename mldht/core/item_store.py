"""BEP 44 item storage on the storing node: limits, ``seq`` / ``cas`` rules, expiry, eviction.

Pure: time comes in as ``now``, and persistence is work the store returns rather than
does. A persistent store queues every change as an :data:`ItemWrite` (save or delete);
the runtime takes them with :meth:`ItemStore.take_writes` and applies them to durable
storage (:class:`mldht.runtime.item_db.SQLiteItemBackend`) before it sends the replies of
the same batch, and at start hands the saved items to :meth:`ItemStore.load`.

``now`` is stored in the items (``last_put``) and so, for a persistent store, must be
wall-clock seconds (``time.time()``), not a monotonic clock that restarts with the process.

Memory: an item is one ``bytes`` object (for a mutable item ``sig ‖ k ‖ len(salt) ‖ salt ‖ v``,
for an immutable one just ``v``) in a small slotted record, plus its 20-byte target as the
dictionary key. :class:`StoredItem` objects are built only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ..errors import DecodeError, InvalidArgument, KRPCError
from .bencode import bdecode
from .bep44 import (
    MAX_SALT_LEN,
    MAX_SEQ,
    MAX_VALUE_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    immutable_target,
    mutable_target,
    verify,
)
from .ids import ID_BITS, ID_LEN, distance
from .netaddr import source_key

__all__ = ["DEFAULT_TTL", "ItemBackend", "ItemStore", "ItemWrite", "StoredItem"]

DEFAULT_TTL: Final = 7200.0
"""Items not put again for 2 h expire (BEP 44: MAY expire after 2 h)."""

_SIG_END: Final = SIGNATURE_LEN
_KEY_END: Final = SIGNATURE_LEN + PUBLIC_KEY_LEN
_SALT_START: Final = _KEY_END + 1  # one byte holds len(salt), which is at most 64


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One stored BEP 44 item. Immutable items have ``k``, ``seq`` and ``sig`` = None."""

    target: bytes
    v_bencoded: bytes
    k: bytes | None
    salt: bytes
    seq: int | None
    sig: bytes | None
    last_put: float
    put_count: int
    source: bytes | None = None
    """The /24 (IPv6: /64, packed prefix) whose put created it and is charged for it
    (None: a local or unknown putter): saved so that the quotas hold after a restart."""

    @property
    def is_mutable(self) -> bool:
        return self.k is not None


ItemWrite = tuple[bytes, StoredItem | None]
"""One change for durable storage: ``(target, item)`` saves (inserts or replaces) the item,
``(target, None)`` deletes it."""


class ItemBackend(Protocol):
    """Durable storage that the runtime keeps for an :class:`ItemStore`."""

    def apply(self, writes: Sequence[ItemWrite]) -> None:
        """Apply ``writes`` in order, as one transaction; returns once they are durable."""

    def load_all(self) -> list[StoredItem]:
        """Every item saved and not deleted."""


class _Record:
    """The in-memory form of an item; its target is the key it is stored under."""

    # No score slot: it is recomputed from the target when needed (16 bytes an item).
    __slots__ = ("blob", "last_put", "put_count", "seq", "source")

    def __init__(
        self,
        blob: bytes,
        seq: int | None,
        last_put: float,
        put_count: int,
        source: bytes | None = None,
    ) -> None:
        self.blob = blob
        self.seq = seq  # None for an immutable item
        self.last_put = last_put
        self.put_count = put_count
        # the /24 (/64) whose put created it, charged for it (None: local or unknown)
        self.source = source

    def value(self) -> bytes:
        if self.seq is None:
            return self.blob
        return self.blob[_SALT_START + self.blob[_KEY_END] :]


def _pack_mutable(k: bytes, salt: bytes, sig: bytes, v_bencoded: bytes) -> bytes:
    return b"".join((sig, k, bytes((len(salt),)), salt, v_bencoded))


def _unpack(target: bytes, rec: _Record) -> StoredItem:
    blob = rec.blob
    if rec.seq is None:
        return StoredItem(
            target, blob, None, b"", None, None, rec.last_put, rec.put_count, rec.source
        )
    salt_end = _SALT_START + blob[_KEY_END]
    return StoredItem(
        target,
        blob[salt_end:],
        blob[_SIG_END:_KEY_END],
        blob[_SALT_START:salt_end],
        rec.seq,
        blob[:_SIG_END],
        rec.last_put,
        rec.put_count,
        rec.source,
    )


def _check_value(v_bencoded: object) -> bytes:
    if not isinstance(v_bencoded, bytes):
        raise KRPCError(KRPCError.PROTOCOL, "v must be a bencoded value")
    # libtorrent answers both an empty and an over-long v with 205 (measured, libtorrent 2.1.1).
    if not 0 < len(v_bencoded) <= MAX_VALUE_LEN:
        raise KRPCError(KRPCError.MESSAGE_TOO_BIG, "message (v field) too big")
    try:
        bdecode(v_bencoded)  # strict: non-canonical bencoding MUST be rejected (BEP 44)
    except DecodeError:
        raise KRPCError(KRPCError.PROTOCOL, "v is not canonical bencode") from None
    return v_bencoded


class ItemStore:
    """The storing-node side of BEP 44 ``put`` / ``get`` (and expiry), bounded.

    Bounds: at most ``max_items`` items and ``max_bytes`` bytes of item data (target,
    ``v``, ``k``, salt and ``sig`` of every item). When a new item does not fit, the least
    useful items are evicted: lowest :meth:`usefulness` score, i.e. far from ``own_id``
    in XOR distance and put few times, and among equal scores the one put longest ago.
    An item is never let in by evicting something more useful than itself: a put that
    would need that is refused with 202 (Server Error) and stores nothing, so the putter
    learns it should look elsewhere rather than believe a store that did not happen.

    Per-source quota: the puts of one /24 (IPv6: /64) may create at most
    ``max_items_per_source`` items (the item is charged to the source whose put created
    it, until it expires or is evicted; later puts of it by anyone refresh it for free).
    A put beyond the quota is refused with 202 before anything is evicted. The caller
    passes the putter's IP as ``source``; local-network putters and ``source=None``
    are not counted.

    With ``persistent=True`` every change (an accepted put, an expiry, an eviction) is
    queued as an :data:`ItemWrite` for :meth:`take_writes`, in the order made. Any error
    is a :class:`KRPCError` carrying the wire code to reply with, and leaves the store
    without the item (and queues nothing for it).
    """

    def __init__(
        self,
        *,
        own_id: bytes,
        max_items: int = 10_000,
        max_bytes: int = 8 * 1024 * 1024,
        ttl: float = DEFAULT_TTL,
        persistent: bool = False,
        max_items_per_source: int = 100,
    ) -> None:
        if len(own_id) != ID_LEN:
            raise InvalidArgument("own_id must be 20 bytes")
        if max_items < 1:
            raise InvalidArgument("max_items must be at least 1")
        # One largest item: target, sig, k, a 64-byte salt with its length, 1000-byte v.
        if max_bytes < ID_LEN + _SALT_START + MAX_SALT_LEN + MAX_VALUE_LEN:
            raise InvalidArgument("max_bytes is too small to hold one item of the largest size")
        if not ttl > 0:
            raise InvalidArgument("ttl must be positive")
        if max_items_per_source < 1:
            raise InvalidArgument("max_items_per_source must be at least 1")
        self.max_items_per_source = max_items_per_source
        self._src_items: dict[bytes, int] = {}
        self._own_id = own_id
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._writes: list[ItemWrite] | None = [] if persistent else None
        # Ordered by last put (moved to the end on every put), so expiry pops from the front.
        self._items: dict[bytes, _Record] = {}
        # score -> targets with that score, oldest put first: the eviction order.
        self._by_score: dict[int, dict[bytes, None]] = {}
        self._bytes = 0

    # --- queries ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_used(self) -> int:
        """Bytes of item data held (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def own_id(self) -> bytes:
        return self._own_id

    def get(self, target: bytes, now: float) -> StoredItem | None:
        """The item stored under ``target``, or None if there is none or it has expired."""
        rec = self._items.get(target)
        if rec is None or now >= rec.last_put + self.ttl:
            return None
        return _unpack(target, rec)

    def __iter__(self) -> Iterator[StoredItem]:
        """Every item held (expired ones too, until :meth:`expire` runs), oldest put first."""
        for target, rec in list(self._items.items()):
            yield _unpack(target, rec)

    def usefulness(self, target: bytes, put_count: int) -> int:
        """Eviction score: higher is kept longer.

        Closeness counts leading bits shared with ``own_id`` (we are a storing node for
        targets near our id); popularity counts doublings of the number of puts, so an
        item put twice as often may be one bit farther away for the same score.
        """
        closeness = ID_BITS - distance(target, self._own_id).bit_length()
        return closeness + put_count.bit_length()

    # --- puts ------------------------------------------------------------------------

    def put_immutable(self, v_bencoded: bytes, now: float, *, source: str | None = None) -> bytes:
        """Store (or refresh) an immutable item; returns its target, SHA-1(v).

        ``source`` is the putter's IP, for the per-source quota (None: not counted).
        Raises :class:`KRPCError`: 205 (v empty or over 1000 bytes), 203 (v not canonical
        bencode), 202 (storage full of more useful items, or the putter's /24 or /64 at
        its quota).
        """
        v_bencoded = _check_value(v_bencoded)
        target = immutable_target(v_bencoded)
        old = self._live(target, now)
        if old is not None and old.seq is not None:
            # A SHA-1 collision between SHA-1(v) and SHA-1(k ‖ salt); refuse, keep ours.
            raise KRPCError(KRPCError.SEQ_TOO_LOW, "target holds a mutable item")
        put_count = 1 if old is None else old.put_count + 1
        self._store(target, v_bencoded, None, old, put_count, now, source)
        return target

    def put_mutable(
        self,
        k: bytes,
        salt: bytes,
        seq: int,
        sig: bytes,
        v_bencoded: bytes,
        cas: int | None,
        now: float,
        *,
        source: str | None = None,
    ) -> None:
        """Store, replace or refresh a mutable item under SHA-1(k ‖ salt) (BEP 44 "Mutable items").

        ``source`` is the putter's IP, for the per-source quota (None: not counted).

        Checks, in libtorrent's order: 203 (k, sig of the wrong length or type), 205 (v
        empty or over 1000 bytes), 203 (v not canonical bencode), 207 (salt over 64
        bytes), 203 (seq negative or over 2**63 - 1), 206 (bad signature, checked before
        the stored item is looked at), then against a stored item: 301 (``cas`` given
        and not the stored ``seq``; checked first, as libtorrent does), 302 (``seq`` below the
        stored one, or equal with a different value). An equal ``seq`` with the same
        value only refreshes the expiry timer. Finally 202 if there is no room or the
        putter's /24 (/64) is at its quota.
        """
        if not isinstance(k, bytes) or len(k) != PUBLIC_KEY_LEN:
            raise KRPCError(KRPCError.PROTOCOL, "k must be a 32-byte public key")
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_LEN:
            raise KRPCError(KRPCError.PROTOCOL, "sig must be a 64-byte signature")
        if not isinstance(salt, bytes):
            raise KRPCError(KRPCError.PROTOCOL, "salt must be a byte string")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise KRPCError(KRPCError.PROTOCOL, "seq must be an integer")
        if cas is not None and (not isinstance(cas, int) or isinstance(cas, bool)):
            raise KRPCError(KRPCError.PROTOCOL, "cas must be an integer")
        v_bencoded = _check_value(v_bencoded)
        if len(salt) > MAX_SALT_LEN:
            raise KRPCError(KRPCError.SALT_TOO_BIG, "salt too big")
        if not 0 <= seq <= MAX_SEQ:
            raise KRPCError(KRPCError.PROTOCOL, "seq out of range")
        # BEP 44: verify the signature before using the item in any way.
        if not verify(k, sig, v_bencoded, seq, salt):
            raise KRPCError(KRPCError.INVALID_SIGNATURE, "invalid signature")
        target = mutable_target(k, salt)
        old = self._live(target, now)
        if old is not None:
            if old.seq is None:
                raise KRPCError(KRPCError.SEQ_TOO_LOW, "target holds an immutable item")
            # If nothing is stored, cas is ignored (BEP 44 "cas").
            if cas is not None and cas != old.seq:
                raise KRPCError(KRPCError.CAS_MISMATCH, "CAS mismatch")
            if seq < old.seq:
                raise KRPCError(KRPCError.SEQ_TOO_LOW, "sequence number less than current")
            if seq == old.seq:
                if old.value() != v_bencoded:
                    # BEP 44: equal seq MUST be rejected; 302 is what the code says.
                    raise KRPCError(KRPCError.SEQ_TOO_LOW, "sequence number not newer")
                # Same item again: refresh the expiry, keep the stored signature.
                self._store(target, old.blob, old.seq, old, old.put_count + 1, now, source)
                return
        put_count = 1 if old is None else old.put_count + 1
        blob = _pack_mutable(k, salt, sig, v_bencoded)
        self._store(target, blob, seq, old, put_count, now, source)

    # --- housekeeping ----------------------------------------------------------------

    def expire(self, now: float, limit: int | None = None) -> int:
        """Drop items whose last put is ``ttl`` or more before ``now``; returns how many.
        With ``limit``, at most that many (the oldest): a caller that must not stall
        calls it again while it returns ``limit``.

        Callers pass a non-decreasing ``now``: the scan stops at the first live item in
        put order. (An item put "in the past" is still hidden by :meth:`get` once expired.)
        """
        expired: list[bytes] = []
        # One pass from the oldest put: the dict is kept in put order. (Calling
        # next(iter(...)) per item would rescan deleted slots each time: quadratic.)
        for target, rec in self._items.items():
            if now < rec.last_put + self.ttl or len(expired) == limit:
                break
            expired.append(target)
        for target in expired:
            self._drop(target)
        return len(expired)

    def take_writes(self) -> list[ItemWrite]:
        """The changes queued for durable storage since the last call (persistent only)."""
        writes = self._writes
        if not writes:
            return []
        self._writes = []
        return writes

    def load(self, items: Iterable[StoredItem], now: float) -> int:
        """Take the saved items (at start): expired, malformed or surplus ones are dropped,
        and their deletion queued. Returns the number of items loaded. Items already in
        memory are kept as they are. Each item is charged to its saved source again: a
        source over its quota keeps its oldest items (as if they were put again)."""
        loaded = 0
        for item in sorted(items, key=lambda it: it.last_put):
            if item.target in self._items:
                continue
            blob = self._blob_of(item)
            src = item.source if isinstance(item.source, bytes) else None
            if src is not None and len(src) not in (3, 8):
                blob = None  # not a /24 or /64 prefix: a damaged row
            elif src is not None and self._src_items.get(src, 0) >= self.max_items_per_source:
                blob = None
            rec = None
            if blob is not None and now < item.last_put + self.ttl:
                rec = _Record(blob, item.seq, item.last_put, item.put_count, src)
                try:
                    self._make_room(item.target, rec, None, now)
                except KRPCError:
                    rec = None
            if rec is None:
                self._queue(item.target, None)
                continue
            self._insert(item.target, rec)
            loaded += 1
        return loaded

    def set_own_id(self, own_id: bytes) -> None:
        """Our node id changed (BEP 42): rescore every item for eviction."""
        if len(own_id) != ID_LEN:
            raise InvalidArgument("own_id must be 20 bytes")
        self._own_id = own_id
        self._by_score.clear()
        for target, rec in self._items.items():
            self._by_score.setdefault(self.usefulness(target, rec.put_count), {})[target] = None

    # --- internals -------------------------------------------------------------------

    def _live(self, target: bytes, now: float) -> _Record | None:
        rec = self._items.get(target)
        if rec is not None and now >= rec.last_put + self.ttl:
            self._drop(target)
            return None
        return rec

    @staticmethod
    def _blob_of(item: StoredItem) -> bytes | None:
        """The packed form of a saved item, or None if the item is malformed."""
        v = item.v_bencoded
        if not 0 < len(v) <= MAX_VALUE_LEN or item.put_count < 1:
            return None
        if item.k is None:
            if item.seq is not None or item.sig is not None or item.salt:
                return None
            return v if immutable_target(v) == item.target else None
        if (
            item.sig is None
            or item.seq is None
            or not 0 <= item.seq <= MAX_SEQ
            or len(item.k) != PUBLIC_KEY_LEN
            or len(item.sig) != SIGNATURE_LEN
            or len(item.salt) > MAX_SALT_LEN
            or mutable_target(item.k, item.salt) != item.target
        ):
            return None
        return _pack_mutable(item.k, item.salt, item.sig, v)

    def _store(
        self,
        target: bytes,
        blob: bytes,
        seq: int | None,
        old: _Record | None,
        put_count: int,
        now: float,
        source: str | None = None,
    ) -> None:
        if old is not None:
            src = old.source  # the creator stays charged
        else:
            src = source_key(source) if source is not None else None
            if src is not None and self._src_items.get(src, 0) >= self.max_items_per_source:
                raise KRPCError(KRPCError.SERVER, "too many items from your network")
        rec = _Record(blob, seq, now, put_count, src)
        self._make_room(target, rec, old, now)
        if self._writes is not None:
            self._queue(target, _unpack(target, rec))
        if old is not None:
            self._remove(target)
        self._insert(target, rec)

    def _make_room(self, target: bytes, rec: _Record, old: _Record | None, now: float) -> None:
        """Evict what ``rec`` needs, or raise 202 having evicted nothing."""
        size = ID_LEN + len(rec.blob)
        rec_score = self.usefulness(target, rec.put_count)
        need_items = len(self._items) + (old is None) - self.max_items
        need_bytes = self._bytes + size - (ID_LEN + len(old.blob) if old else 0) - self.max_bytes
        if need_items <= 0 and need_bytes <= 0:
            return
        self.expire(now)
        need_items = len(self._items) + (old is None) - self.max_items
        need_bytes = self._bytes + size - (ID_LEN + len(old.blob) if old else 0) - self.max_bytes
        victims: list[bytes] = []
        for score in sorted(self._by_score):
            if need_items <= 0 and need_bytes <= 0:
                break
            if score > rec_score:
                break  # everything left is more useful than the newcomer
            for victim in self._by_score[score]:
                if need_items <= 0 and need_bytes <= 0:
                    break
                if victim == target:
                    continue
                victims.append(victim)
                need_items -= 1
                need_bytes -= ID_LEN + len(self._items[victim].blob)
        if need_items > 0 or need_bytes > 0:
            raise KRPCError(KRPCError.SERVER, "item storage is full")
        for victim in victims:
            self._drop(victim)

    def _queue(self, target: bytes, item: StoredItem | None) -> None:
        if self._writes is not None:
            self._writes.append((target, item))

    def _drop(self, target: bytes) -> None:
        self._queue(target, None)
        self._remove(target)

    def _insert(self, target: bytes, rec: _Record) -> None:
        self._items[target] = rec
        if rec.source is not None:
            self._src_items[rec.source] = self._src_items.get(rec.source, 0) + 1
        self._by_score.setdefault(self.usefulness(target, rec.put_count), {})[target] = None
        self._bytes += ID_LEN + len(rec.blob)

    def _remove(self, target: bytes) -> None:
        rec = self._items.pop(target)
        if rec.source is not None:
            left = self._src_items[rec.source] - 1
            if left:
                self._src_items[rec.source] = left
            else:
                del self._src_items[rec.source]
        score = self.usefulness(target, rec.put_count)
        bucket = self._by_score[score]
        del bucket[target]
        if not bucket:
            del self._by_score[score]
        self._bytes -= ID_LEN + len(rec.blob)
