"""Admission: per-source budgets and bans, checked before a byte of a datagram is decoded.

Every datagram (query, reply or junk) first pays one token from its source's bucket
(``rate`` tokens a second, a burst of two seconds' worth). A source is a public IPv4
address (IPv4-mapped IPv6 ones included), or the /64 of a public IPv6 address (one host
owns a whole /64); loopback and private addresses count per ip:port, as in the routing
table, so that the nodes of a local network sharing one address have a budget each. A
datagram that then fails the cheap checks or the decoder costs its sender
:data:`MALFORMED_COST` tokens more: junk costs more than valid queries, so a source
sending junk runs dry sooner.

A source that keeps sending with an empty bucket is *banned* for ``ban_time`` seconds:
more than ``ban_threshold`` datagrams refused in one ``ban_window`` (libtorrent's dos
blocker does the same). A banned source's datagrams are dropped by one dict lookup.

Memory is bounded: at most ``max_sources`` buckets and ``max_bans`` bans, the least
recently seen evicted first (a flood of fresh addresses evicts idle buckets; it never
resets the budget of the sources that are busy).

:func:`cheap_reject` is the check before the decoder: size, shape and nesting depth,
all without building anything.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from typing import Final

from .bep42 import is_local_ip
from .bep44 import MAX_VALUE_DEPTH

__all__ = [
    "MALFORMED_COST",
    "MAX_DATAGRAM",
    "MAX_DEPTH",
    "Admission",
    "RateLimiter",
    "cheap_reject",
    "source_key",
]

MALFORMED_COST: Final = 8.0
"""Extra tokens a datagram costs its source when it turns out to be junk."""

MAX_DATAGRAM: Final = 2048
"""Largest datagram decoded. KRPC stays under ~1,300 bytes (a BEP 44 put of 1000 bytes
with its key, signature and salt); BEP 32 asks for replies under 1,024."""

MAX_DEPTH: Final = 2 + MAX_VALUE_DEPTH
"""Deepest container nesting accepted: the message dict > its ``a``/``r`` dict > a BEP 44
``v`` nested as deep as mldht itself may encode one (other keys nest at most one list)."""


_OPENER_BYTES: Final = 32
"""Bytes ``d`` and ``l`` a datagram may hold before its nesting is measured: a KRPC
message has about ten containers, plus the ones that random ids and tokens happen to
contain; a nesting attack needs one per level."""


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether the container nesting of ``data`` goes deeper than ``limit``.

    Walks the tokens (strings skipped by their length prefix): a few dozen steps for a
    KRPC message, and it stops at ``limit + 1`` openers for a nesting attack. Anything it
    cannot walk is left to the decoder (False).
    """
    depth = 0
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x64 or c == 0x6C:  # d, l
            depth += 1
            if depth > limit:
                return True
            i += 1
        elif c == 0x65:  # e
            depth -= 1
            i += 1
        elif c == 0x69:  # i...e
            end = data.find(b"e", i)
            if end < 0:
                return False
            i = end + 1
        elif 0x30 <= c <= 0x39:  # <length>:<bytes>
            colon = data.find(b":", i, i + 8)
            if colon < 0 or not data[i:colon].isdigit():
                return False
            i = colon + 1 + int(data[i:colon])
        else:
            return False
    return False


def cheap_reject(data: bytes) -> str | None:
    """The reason to drop ``data`` before decoding it, or None to decode it.

    ``"oversize"`` (longer than :data:`MAX_DATAGRAM`), ``"not_dict"`` (a KRPC message
    is a dictionary: the first byte is ``d``), ``"deep"`` (nested deeper than a KRPC
    message with a BEP 44 value can be).
    """
    n = len(data)
    if n > MAX_DATAGRAM:
        return "oversize"
    if not n or data[0] != 0x64:  # d
        return "not_dict"
    if data.count(b"l") + data.count(b"d") > _OPENER_BYTES and _depth_exceeds(data, MAX_DEPTH):
        return "deep"
    return None


def source_key(addr: tuple[str, int]) -> object:
    """The unit a budget is kept for: a public IPv4 address, the /64 of a public IPv6
    one (as text), or the ``(ip, port)`` address itself for a loopback or private one."""
    ip = addr[0]
    if is_local_ip(ip):
        return addr
    if ":" not in ip:
        return ip
    return _v6_key(ip)


@functools.lru_cache(maxsize=8192)
def _v6_key(ip: str) -> str:
    try:
        packed = ipaddress.IPv6Address(ip).packed
    except ValueError:
        return ip
    if packed[:12] == _V4_MAPPED:  # a dual-stack socket's IPv4 peer: its IPv4 address
        return str(ipaddress.IPv4Address(packed[12:]))
    return packed[:8].hex() + "::/64"


_V4_MAPPED = bytes(10) + b"\xff\xff"


class Admission:
    """Per-source token buckets and bans; see the module docstring.

    ``rate <= 0`` admits everything (no budget, no ban). :meth:`admit` is called for
    every datagram before it is decoded; :meth:`charge` when it turned out to be junk.
    """

    __slots__ = (
        "_buckets",
        "ban_threshold",
        "ban_time",
        "ban_window",
        "bans",
        "burst",
        "max_bans",
        "max_sources",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        *,
        ban_threshold: int = 1000,
        ban_window: float = 10.0,
        ban_time: float = 300.0,
        max_sources: int = 50_000,
        max_bans: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, 2.0 * rate)
        self.ban_threshold = ban_threshold
        self.ban_window = ban_window
        self.ban_time = ban_time
        self.max_sources = max_sources
        self.max_bans = max_bans
        # key -> [tokens, last refill, refused in window, window start]
        self._buckets: OrderedDict[object, list[float]] = OrderedDict()
        self.bans: OrderedDict[object, float] = OrderedDict()
        """Banned sources and when their ban ends."""

    def admit(self, addr: tuple[str, int], now: float) -> str | None:
        """Take one token for a datagram from ``addr``: None if admitted, else the reason
        it is dropped (``"banned"`` or ``"rate"``)."""
        if self.rate <= 0:
            return None
        key = source_key(addr)
        bans = self.bans
        if bans:
            until = bans.get(key)
            if until is not None:
                if now < until:
                    return "banned"
                del bans[key]
        buckets = self._buckets
        b = buckets.get(key)
        if b is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)  # the least recently seen source
            buckets[key] = [self.burst - 1.0, now, 0.0, now]
            return None
        buckets.move_to_end(key)
        tokens = b[0] + (now - b[1]) * self.rate
        b[0] = tokens if tokens < self.burst else self.burst
        b[1] = now
        if b[0] >= 1.0:
            b[0] -= 1.0
            return None
        if now - b[3] > self.ban_window:
            b[2] = 0.0
            b[3] = now
        b[2] += 1.0
        if b[2] > self.ban_threshold:
            self._ban(key, now)
            return "banned"
        return "rate"

    def charge(self, addr: tuple[str, int], cost: float, now: float) -> None:
        """Take ``cost`` more tokens from ``addr``'s bucket (it may go below zero)."""
        if self.rate <= 0:
            return
        b = self._buckets.get(source_key(addr))
        if b is not None:
            b[0] -= cost

    def is_banned(self, addr: tuple[str, int], now: float) -> bool:
        until = self.bans.get(source_key(addr))
        return until is not None and now < until

    def _ban(self, key: object, now: float) -> None:
        if len(self.bans) >= self.max_bans:
            self.bans.popitem(last=False)
        self.bans[key] = now + self.ban_time
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """Per-IP token buckets for one kind of event (e.g. queries a handler accepts).

    ``rate`` per second per IP, with a burst of 2 s worth (at least 1); ``rate <= 0``
    admits everything. Bounded: the least recently seen IP is evicted first.
    """

    __slots__ = ("_b", "burst", "dropped", "max_ips", "rate")

    def __init__(self, rate: float, max_ips: int = 50_000) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self.max_ips = max_ips
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.dropped = 0

    def allow(self, ip: str, now: float) -> bool:
        """Whether an event from ``ip`` at ``now`` is admitted (takes one token if so)."""
        if self.rate <= 0:
            return True
        b = self._b
        tokens, last = b.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            b[ip] = (tokens, now)
            self.dropped += 1
            return False
        if ip in b:
            b.move_to_end(ip)
        elif len(b) >= self.max_ips:
            b.popitem(last=False)
        b[ip] = (tokens - 1.0, now)
        return True
