"""Peer records and the peer store's read side (values, scrape filters, saved entries).

A peer is a fixed-size record::

    IPv4: ip (4) | port (2, big-endian) | stamp (4)     = 10 bytes
    IPv6: ip (16) | port (2, big-endian) | stamp (4)    = 22 bytes

``stamp = expiry << 1 | seed``, where ``expiry`` is a whole second on the store's own
clock (seconds since the first ``now`` it saw). The first bytes of a record are the
compact peer itself, so a ``values`` entry is a slice. An info-hash's records of one
family are concatenated in one ``bytes``, sorted by expiry (see
:mod:`mldht.core.peer_store`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .bep33 import BLOOM_BYTES, bloom_insert
from .compact import ip_to_bytes
from .ids import ID_LEN

if TYPE_CHECKING:
    import random

    from .packed_table import PackedTable

__all__ = [
    "REC4",
    "REC6",
    "export_live",
    "first_live",
    "insert_sorted",
    "live_entries",
    "parse_saved",
    "pick_values",
    "sample_keys",
    "scrape_filters",
    "split_expired",
    "stamp_at",
]

REC4 = 10
REC6 = 22

_SINGLE = ID_LEN + REC4
_FORMATS = {REC4: struct.Struct(">4sHI"), REC6: struct.Struct(">16sHI")}
_SINGLE_FMT = struct.Struct(">20s4sHI")

Entry = tuple[bytes, bytes, int, bool, float]
"""A saved peer: (info-hash, packed ip, port, seed, seconds left)."""

Pools = list[tuple[bytes, int]]
"""An info-hash's live record arrays with their record size (IPv4 first)."""


def stamp_at(arr: bytes, index: int, size: int) -> int:
    off = index * size + size - 4
    return int.from_bytes(arr[off : off + 4], "big")


def first_live(arr: bytes, size: int, now_rel: float) -> int:
    """Index of the first record whose expiry is after ``now_rel`` (records are sorted)."""
    lo, hi = 0, len(arr) // size
    while lo < hi:
        mid = (lo + hi) // 2
        if stamp_at(arr, mid, size) >> 1 > now_rel:
            hi = mid
        else:
            lo = mid + 1
    return lo


def insert_sorted(arr: bytes, rec: bytes, size: int) -> bytes:
    """``arr`` with ``rec`` inserted after every record expiring no later than it."""
    stamp = int.from_bytes(rec[-4:], "big") >> 1
    n = len(arr) // size
    if not n or stamp_at(arr, n - 1, size) >> 1 <= stamp:
        return arr + rec
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if stamp_at(arr, mid, size) >> 1 <= stamp:
            lo = mid + 1
        else:
            hi = mid
    return arr[: lo * size] + rec + arr[lo * size :]


def pick_values(
    pools: Pools, max_count: int, rng: random.Random, noseed: bool, max_bytes: int
) -> list[bytes]:
    """A random subset of at most ``max_count`` compact peers of ``pools`` whose
    bencoded size stays within ``max_bytes`` (``noseed``: no seeds)."""
    if max_count <= 0 or not pools:
        return []
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
        cost = size - 4 + (2 if size == REC4 else 3)
        if cost <= budget:
            budget -= cost
            out.append(arr[off : off + size - 4])
    return out


def scrape_filters(pools: Pools) -> tuple[bytes, bytes]:
    """BEP 33 ``(BFsd, BFpe)``: the filters of the seeds' and the other peers' IPs."""
    seeds = bytearray(BLOOM_BYTES)
    peers = bytearray(BLOOM_BYTES)
    for arr, size in pools:
        for off in range(0, len(arr), size):
            target = seeds if arr[off + size - 1] & 1 else peers
            bloom_insert(target, arr[off : off + size - 6])
    return bytes(seeds), bytes(peers)


def parse_saved(entry: Sequence[Any]) -> tuple[bytes, bytes, int, bool, float] | None:
    """A saved entry ``(info-hash, ip, port, seed, seconds left)`` checked and
    normalized (20-byte info-hash, packed unmapped IP), or None if it is malformed or
    expired. The info-hash may be bytes or hex, the IP packed or text."""
    try:
        ih, ip, port, seed, left = entry
        infohash = ih if type(ih) is bytes else bytes.fromhex(ih)
        if type(ip) is bytes:
            packed = ip if len(ip) == 4 else ip_to_bytes(ip, unmap=True)
        else:
            packed = ip_to_bytes(ip, unmap=True) if isinstance(ip, str) else b""
        ok = (
            len(infohash) == ID_LEN
            and bool(packed)
            and type(port) is int
            and 0 < port < 65536
            and isinstance(seed, bool | int)
            and isinstance(left, int | float)
            and left > 0
        )
    except (ValueError, TypeError, InvalidArgument):
        return None
    return (infohash, packed, port, bool(seed), float(left)) if ok else None


def split_expired(shard: bytes, rel: float) -> tuple[bytes, list[bytes], float]:
    """A shard of ``info-hash | IPv4 record`` entries split at ``rel``: (the live ones,
    the expired ones, the soonest expiry of the live ones)."""
    soonest = math.inf
    gone: list[int] = []
    for off in range(_SINGLE - 4, len(shard), _SINGLE):
        exp = int.from_bytes(shard[off : off + 4], "big") >> 1
        if exp <= rel:
            gone.append(off + 4 - _SINGLE)
        elif exp < soonest:
            soonest = exp
    if not gone:
        return shard, [], soonest
    ends = zip([-_SINGLE, *gone], [*gone, None], strict=True)
    kept = b"".join([shard[a + _SINGLE : b] for a, b in ends])
    return kept, [shard[off : off + _SINGLE] for off in gone], soonest


def live_entries(infohash: bytes | None, arr: bytes, size: int, rel: float) -> list[Entry]:
    """The live peers of ``infohash``'s record array (records of ``size`` bytes), or
    (None) of a shard of ``info-hash | IPv4 record`` entries, as saved entries with the
    seconds left from ``rel``."""
    if infohash is None:
        return [
            (ih, ip, port, bool(stamp & 1), (stamp >> 1) - rel)
            for ih, ip, port, stamp in _SINGLE_FMT.iter_unpack(arr)
            if stamp >> 1 > rel
        ]
    return [
        (infohash, ip, port, bool(stamp & 1), (stamp >> 1) - rel)
        for ip, port, stamp in _FORMATS[size].iter_unpack(arr)
        if stamp >> 1 > rel
    ]


def export_live(
    shards: Iterable[bytes], tables: Sequence[dict[bytes, bytes]], rel: float, per_chunk: int
) -> Iterator[list[Entry]]:
    """:meth:`PeerStore.export_chunks`: the live records of the single-peer table's
    ``shards`` and of the general ``tables`` (IPv4, IPv6) at store time ``rel``, in
    chunks of whole info-hashes of about ``per_chunk`` peers."""
    keys = (list(tables[0]), list(tables[1]))
    shards = list(shards)
    chunk: list[Entry] = []
    for shard in shards:
        chunk.extend(live_entries(None, shard, ID_LEN + REC4, rel))
        if len(chunk) >= per_chunk:
            yield chunk
            chunk = []
    for fam in (0, 1):
        table = tables[fam]
        for ih in keys[fam]:
            arr = table.get(ih)
            if arr is None:
                continue
            chunk.extend(live_entries(ih, arr, REC4 if fam == 0 else REC6, rel))
            if len(chunk) >= per_chunk:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def sample_keys(
    single: PackedTable, tables: Sequence[dict[bytes, bytes]], rng: random.Random, n: int
) -> list[bytes]:
    """:meth:`PeerStore.sample` of a store holding many more than ``n`` info-hashes:
    draws from the single-peer table and the general ``tables``, at most 50 n draws."""
    v4, v6 = tables
    general = list(v4) + [ih for ih in v6 if ih not in v4]
    singles = len(single)
    out: dict[bytes, None] = {}
    for _ in range(50 * n):  # bounded: each draw succeeds about 1 in 4
        if len(out) >= n:
            break
        if rng.randrange(singles + len(general)) < singles:
            key = single.random_key(rng)
            if key is not None:
                out[key] = None
        else:
            out[rng.choice(general)] = None
    return list(out)
