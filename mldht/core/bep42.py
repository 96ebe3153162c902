"""BEP 42: node ids tied to the external IP, id checks, and external-IP voting.

A compliant node id starts with 21 bits of CRC-32C computed over the node's masked
external IP (4 bytes for IPv4, the high 8 bytes for IPv6) and ends with the random
byte whose low 3 bits were mixed into that CRC (BEP 42 "Node ID restriction").
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from .compact import ip_to_bytes
from .ids import ID_LEN

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

    from .compact import Addr

__all__ = [
    "ExternalIPVoter",
    "crc32c",
    "generate_node_id",
    "is_exempt",
    "is_local_ip",
    "is_valid_node_id",
    "node_id_crc",
    "packed_ip",
]

# CRC-32C (Castagnoli), reflected polynomial. zlib.crc32 is CRC-32 (IEEE): wrong CRC here.
_CRC32C_POLY = 0x82F63B78


def _make_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``: init and final xor 0xFFFFFFFF.

    ``crc32c(b"123456789") == 0xE3069283``.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


# BEP 42 masks: IPv4 hashes 4 bytes, IPv6 the high 8 bytes (BEP 42).
_MASK_V4 = bytes.fromhex("030f3fff")
_MASK_V6 = bytes.fromhex("0103070f1f3f7fff")


def packed_ip(ip: str) -> bytes:
    """``ip_to_bytes(ip, unmap=True)``: an IPv4-mapped IPv6 address gives its 4 IPv4
    bytes. Raises :class:`InvalidArgument` (a ValueError) if ``ip`` is not an IP."""
    return ip_to_bytes(ip, unmap=True)


def node_id_crc(ip: str | bytes, rand: int) -> int:
    """The full CRC-32C of BEP 42 for an IP (text, or 4/16 packed bytes) and ``rand``.

    Only ``rand & 7`` enters the hash. Raises :class:`InvalidArgument` for a bad IP.
    """
    return _masked_crc(ip_to_bytes(ip, unmap=isinstance(ip, str)), rand & 7)


@functools.lru_cache(maxsize=16384)
def _masked_crc(raw: bytes, r: int) -> int:
    # Cached: the routing table checks the id of every node that queries or answers us.
    mask = _MASK_V4 if len(raw) == 4 else _MASK_V6
    x = bytearray(b & m for b, m in zip(raw, mask, strict=False))
    x[0] |= r << 5
    return crc32c(bytes(x))


def generate_node_id(ip: str, rng: random.Random, rand: int | None = None) -> bytes:
    """A random node id that complies with BEP 42 for the external IP ``ip``.

    ``rand`` (0..255) is the last byte of the id; drawn from ``rng`` when omitted.
    Raises :class:`InvalidArgument` for a bad IP or ``rand``.
    """
    if rand is None:
        rand = rng.getrandbits(8)
    elif not 0 <= rand <= 0xFF:
        raise InvalidArgument(f"rand must be a byte (0..255), got {rand}")
    crc = node_id_crc(ip, rand)
    head = bytes(
        [
            (crc >> 24) & 0xFF,
            (crc >> 16) & 0xFF,
            ((crc >> 8) & 0xF8) | rng.getrandbits(3),
        ]
    )
    middle = rng.getrandbits(8 * (ID_LEN - 4)).to_bytes(ID_LEN - 4, "big")
    return head + middle + bytes([rand])


def is_valid_node_id(node_id: bytes, ip: str, *, honor_exemptions: bool = True) -> bool:
    """Whether ``node_id`` complies with BEP 42 for the source IP ``ip``.

    With ``honor_exemptions`` (the default) an exempt, local-network IP always passes,
    as BEP 42 skips the check for those (BEP 42 "Exceptions"). A malformed id or IP never raises: it
    is remote data, so the answer is simply False.
    """
    if len(node_id) != ID_LEN:
        return False
    try:
        raw = packed_ip(ip)
    except InvalidArgument:
        return False
    if honor_exemptions and _is_exempt_packed(raw):
        return True
    crc = node_id_crc(raw, node_id[19])
    return (
        node_id[0] == (crc >> 24) & 0xFF
        and node_id[1] == (crc >> 16) & 0xFF
        and node_id[2] & 0xF8 == (crc >> 8) & 0xF8
    )


# IPv4 (checked by octets in _is_exempt_packed): BEP 42 lists 10/8, 172.16/12,
# 192.168/16, 169.254/16 and 127/8; libtorrent also exempts 100.64/10 (carrier-grade NAT).
_EXEMPT_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::1/128",  # loopback
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still exempted by libtorrent)
        "fc00::/7",  # unique local
    )
)


def _is_exempt_packed(raw: bytes) -> bool:
    if len(raw) == 4:
        a, b = raw[0], raw[1]
        return (
            a in (10, 127)
            or (a == 172 and 16 <= b <= 31)
            or (a == 192 and b == 168)
            or (a == 169 and b == 254)
            or (a == 100 and 64 <= b <= 127)
        )
    # Link- and site-local multicast: scope nibble 2 or 5 of ffXS::, as libtorrent does.
    if raw[0] == 0xFF and raw[1] & 0x0F in (0x02, 0x05):
        return True
    a6 = ipaddress.IPv6Address(raw)
    return any(a6 in net for net in _EXEMPT_V6)


def is_exempt(ip: str) -> bool:
    """Whether BEP 42 exempts ``ip`` (a local-network address) from node id checks.

    IPv4: 10/8, 172.16/12, 192.168/16, 169.254/16, 127/8 and 100.64/10. IPv6: loopback,
    link-local, site-local, fc00::/7 and link- or site-local multicast. An IPv4-mapped
    IPv6 address is judged as its IPv4 address. A string that is not an IP is not exempt.
    """
    try:
        raw = packed_ip(ip)
    except InvalidArgument:
        return False
    return _is_exempt_packed(raw)


@functools.lru_cache(maxsize=8192)
def is_local_ip(ip: str) -> bool:
    """:func:`is_exempt`, cached: loopback, private and link-local addresses.

    The routing table asks this of every node that answers; a flood of distinct
    addresses only churns the bounded cache.
    """
    return is_exempt(ip)


class ExternalIPVoter:
    """Learns the node's external IP from the BEP 42 ``ip`` key of responses.

    One reporter is not trustworthy (BEP 42 "Enforcement"), so reports are votes:

    * each voter *group* holds at most one vote, its latest; a group is the voter's
      /24 for IPv4 (``/64`` for IPv6), so one host or one small network cannot stuff
      the ballot;
    * a vote counts for ``window`` seconds after it was cast, and only the
      ``max_voters`` most recent groups are remembered;
    * reported IPs that are not addresses, or that are exempt (private, loopback, ...)
      when ``ignore_exempt`` is set, are ignored;
    * **rule**: the candidate with the most votes becomes the external IP when it has
      at least ``min_votes`` votes and strictly more votes than the current external IP
      (a tie keeps the current one).

    Use one voter per address family: an IPv4 and an IPv6 external address are
    separate facts.
    """

    __slots__ = (
        "_counts",
        "_current",
        "_votes",
        "ignore_exempt",
        "max_voters",
        "min_votes",
        "v4_prefix",
        "v6_prefix",
        "window",
    )

    def __init__(
        self,
        min_votes: int = 3,
        *,
        window: float = 3600.0,
        max_voters: int = 64,
        ignore_exempt: bool = True,
        v4_prefix: int = 24,
        v6_prefix: int = 64,
        current: str | None = None,
    ) -> None:
        if min_votes < 1:
            raise InvalidArgument(f"min_votes must be at least 1, got {min_votes}")
        if max_voters < min_votes:
            raise InvalidArgument("max_voters must be at least min_votes")
        if not 0 <= v4_prefix <= 32 or not 0 <= v6_prefix <= 128:
            raise InvalidArgument("voter prefix length out of range")
        self.min_votes = min_votes
        self.window = window
        self.max_voters = max_voters
        self.ignore_exempt = ignore_exempt
        self.v4_prefix = v4_prefix
        self.v6_prefix = v6_prefix
        # voter group -> (reported IP, time of the vote), oldest vote first
        self._votes: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._counts: Counter[str] = Counter()
        self._current: str | None = None
        if current is not None:
            self.set_current(current)

    @property
    def current(self) -> str | None:
        """The external IP decided so far, or None."""
        return self._current

    def set_current(self, ip: str | None) -> None:
        """Set the external IP (e.g. from configuration or persisted state)."""
        if ip is None:
            self._current = None
            return
        try:
            self._current = str(ipaddress.ip_address(ip))
        except ValueError:
            raise InvalidArgument(f"not an IP address: {ip!r}") from None

    def votes_for(self, ip: str) -> int:
        """Number of live votes for ``ip`` (as of the last call to :meth:`add_vote`)."""
        return self._counts.get(ip, 0)

    def _group(self, voter: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
        bits = self.v4_prefix if voter.version == 4 else self.v6_prefix
        width = voter.max_prefixlen
        value = int(voter) >> (width - bits) << (width - bits)
        return bytes([voter.version]) + value.to_bytes(width // 8, "big")

    def _drop_oldest(self) -> None:
        _, (ip, _) = self._votes.popitem(last=False)
        self._counts[ip] -= 1
        if not self._counts[ip]:
            del self._counts[ip]

    def add_vote(self, voter_ip: str, reported: str | Addr, now: float) -> str | None:
        """Record that ``voter_ip`` saw us as ``reported`` (an IP or an (ip, port) pair).

        Returns the new external IP when this vote changes it, else None. Malformed
        input is ignored (it comes from the network).
        """
        rep_text = reported if isinstance(reported, str) else reported[0]
        try:
            voter = ipaddress.ip_address(voter_ip)
            rep = ipaddress.ip_address(rep_text)
        except (ValueError, TypeError):
            return None
        if isinstance(rep, ipaddress.IPv6Address) and rep.ipv4_mapped is not None:
            rep = rep.ipv4_mapped
        if isinstance(voter, ipaddress.IPv6Address) and voter.ipv4_mapped is not None:
            voter = voter.ipv4_mapped
        rep_str = str(rep)
        if self.ignore_exempt and (_is_exempt_packed(rep.packed) or rep.is_unspecified):
            return None
        group = self._group(voter)
        old = self._votes.pop(group, None)
        if old is not None:
            self._counts[old[0]] -= 1
            if not self._counts[old[0]]:
                del self._counts[old[0]]
        self._votes[group] = (rep_str, now)
        self._counts[rep_str] += 1
        # Forget votes that are too old or beyond the remembered number of voters.
        while self._votes:
            _, (_, cast_at) = next(iter(self._votes.items()))
            if now - cast_at < self.window and len(self._votes) <= self.max_voters:
                break
            self._drop_oldest()
        leader, top = self._counts.most_common(1)[0] if self._counts else ("", 0)
        if leader == self._current or top < self.min_votes:
            return None
        current_votes = self._counts.get(self._current, 0) if self._current else 0
        if top <= current_votes:
            return None
        self._current = leader
        return leader
