"""BEP 33 scrape filters: 256-byte bloom filters of the IPs of seeds and of peers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import DecodeError
from .compact import ip_to_bytes

if TYPE_CHECKING:
    from .compact import Addr

__all__ = [
    "BLOOM_BITS",
    "BLOOM_BYTES",
    "bloom_contains",
    "bloom_estimate",
    "bloom_indices",
    "bloom_insert",
    "bloom_union",
    "scrape_bloom",
]


BLOOM_BYTES = 256
BLOOM_BITS = 8 * BLOOM_BYTES
_BLOOM_K = 2


def bloom_indices(ip: str | bytes) -> tuple[int, int]:
    """The two bit indices of an IP (text or 4/16 packed bytes) in a BEP 33 filter."""
    h = hashlib.sha1(ip_to_bytes(ip)).digest()
    # BEP 33: the two indices are bytes 0-1 and 2-3 read little-endian.
    return (h[0] | h[1] << 8) % BLOOM_BITS, (h[2] | h[3] << 8) % BLOOM_BITS


def bloom_insert(bloom: bytearray, ip: str | bytes) -> None:
    """Add an IP (text or 4/16 packed bytes; never a port) to a 256-byte BEP 33 filter."""
    for i in bloom_indices(ip):
        bloom[i >> 3] |= 1 << (i & 7)  # bits LSB-first within each byte


def bloom_contains(bloom: bytes, ip: str | bytes) -> bool:
    """Whether a BEP 33 filter may hold an IP (false positives possible, no false negatives)."""
    return all(bloom[i >> 3] >> (i & 7) & 1 for i in bloom_indices(ip))


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
