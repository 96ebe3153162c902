"""Address classification for admission: bogons, local-network addresses and the
/24 (IPv6: /64) *source* an address belongs to.

These run for every node of every reply (``nodes`` / ``nodes6``), every answering node
and every announce, so they are cached per address text in bounded LRU caches (a flood
of distinct addresses only churns them, as :func:`mldht.core.bep42.is_local_ip` does).

Classes (:func:`classify`):

* ``BOGON``: never a reachable DHT node or peer: not an address at all, unspecified
  (``0.0.0.0/8``, ``::``), multicast (``224/4``, ``ff00::/8``), reserved (``240/4``,
  which holds the broadcast address ``255.255.255.255``);
* ``LOCAL``: loopback (``127/8``, ``::1``) and private ranges: ``10/8``, ``172.16/12``,
  ``192.168/16``, ``100.64/10`` (carrier-grade NAT), ``169.254/16``, ``fc00::/7``,
  ``fe80::/10`` and the deprecated site-local ``fec0::/10``. These are usable only when
  our own node is on a local network; whether it is is the node's *address scope*
  (``NodeConfig.local_network``: True local, False public, None unknown);
* ``PUBLIC``: everything else.

An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is judged as its IPv4 address.
"""

from __future__ import annotations

import functools
from typing import Final

from .bep42 import packed_ip

__all__ = [
    "BOGON",
    "LOCAL",
    "PUBLIC",
    "classify",
    "classify_packed",
    "is_acceptable",
    "local_allowed",
    "source_key",
    "source_of_packed",
]

PUBLIC: Final = 0
LOCAL: Final = 1
BOGON: Final = 2


def _classify_packed(raw: bytes) -> int:
    if len(raw) == 4:
        a, b = raw[0], raw[1]
        if a == 0 or a >= 224:  # this-network, multicast, reserved and broadcast
            return BOGON
        if (
            a in (10, 127)
            or (a == 172 and 16 <= b <= 31)
            or (a == 192 and b == 168)
            or (a == 169 and b == 254)
            or (a == 100 and 64 <= b <= 127)
        ):
            return LOCAL
        return PUBLIC
    a = raw[0]
    if a == 0xFF:  # multicast
        return BOGON
    if a == 0 and not any(raw[:15]):
        return LOCAL if raw[15] == 1 else (BOGON if raw[15] == 0 else PUBLIC)
    if a & 0xFE == 0xFC:  # fc00::/7 unique local
        return LOCAL
    if a == 0xFE and raw[1] & 0x80:  # fe80::/10 link-local, fec0::/10 site-local
        return LOCAL
    return PUBLIC


@functools.lru_cache(maxsize=16384)
def classify(ip: str) -> int:
    """``PUBLIC``, ``LOCAL`` or ``BOGON`` for an IP in text form (not an IP: ``BOGON``)."""
    try:
        raw = packed_ip(ip)
    except ValueError:
        return BOGON
    return _classify_packed(raw)


def local_allowed(local_network: bool | None) -> bool:
    """Whether local-network addresses are acceptable for a node of this address scope.

    ``None`` (scope unknown) allows them, so that a node whose runtime does not say where
    it is bound keeps working on loopback and private test networks; a public node
    (``False``) turns them away.
    """
    return local_network is not False


def is_acceptable(addr: tuple[str, int], local_ok: bool = True) -> bool:
    """Whether ``addr`` may enter the routing table, a lookup or the peer store.

    False for port 0 (or out of range), bogons, and local-network addresses unless
    ``local_ok`` (see :func:`local_allowed`).
    """
    ip, port = addr
    if not 0 < port < 65536:
        return False
    cls = classify(ip)
    return cls == PUBLIC or (cls == LOCAL and local_ok)


@functools.lru_cache(maxsize=16384)
def source_key(ip: str) -> bytes | None:
    """The admission source of a public address: its /24 (IPv4, 3 bytes) or /64 (IPv6,
    8 bytes) prefix. None for local-network addresses, bogons and non-addresses: quotas
    and per-subnet rules apply to public addresses only (as BEP 42 exempts local ones).
    """
    try:
        raw = packed_ip(ip)
    except ValueError:
        return None
    if _classify_packed(raw) != PUBLIC:
        return None
    return raw[:3] if len(raw) == 4 else raw[:8]


def source_of_packed(raw: bytes) -> bytes | None:
    """:func:`source_key` of a packed (4 or 16 byte, unmapped) address."""
    if _classify_packed(raw) != PUBLIC:
        return None
    return raw[:3] if len(raw) == 4 else raw[:8]


def classify_packed(raw: bytes) -> int:
    """:func:`classify` of a packed (4 or 16 byte, unmapped) address."""
    return _classify_packed(raw)
