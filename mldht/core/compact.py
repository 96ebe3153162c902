"""Compact peer and node info (BEP 5, BEP 32): IPv4 and IPv6."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ..errors import DecodeError, InvalidArgument

__all__ = [
    "Addr",
    "NodeInfo",
    "decode_nodes",
    "decode_peer",
    "decode_peers",
    "encode_nodes",
    "encode_peer",
    "ip_from_bytes",
    "ip_to_bytes",
    "is_ipv6",
]

Addr = tuple[str, int]
"""A UDP/TCP address: (IP text, port). IPv6 text is in compressed form."""

NODE4_LEN = 26
NODE6_LEN = 38


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A DHT node: its 20-byte id and UDP address."""

    id: bytes
    addr: Addr


def is_ipv6(ip: str) -> bool:
    return ":" in ip


def ip_to_bytes(ip: str | bytes, *, unmap: bool = False) -> bytes:
    """Packed form of an IP address: 4 bytes (IPv4) or 16 (IPv6).

    ``ip`` is text, or already packed (4 or 16 bytes, returned as is). With ``unmap``, an
    IPv4-mapped IPv6 address (how a dual-stack socket reports IPv4 peers) gives its 4 IPv4
    bytes: one host, one identity (BEP 42 checks, tokens, the peer store). Anything else
    raises :class:`InvalidArgument` (a ValueError): addresses in text come from our own
    sockets, config and callers; network data arrives packed and is length-checked first.
    """
    if isinstance(ip, bytes):
        if len(ip) not in (4, 16):
            raise InvalidArgument(f"packed IP must be 4 or 16 bytes, got {len(ip)}")
        raw = ip
    else:
        raw = _pack_text(ip)
    if unmap and len(raw) == 16 and raw[:12] == _V4_MAPPED:
        return raw[12:]
    return raw


@lru_cache(maxsize=16384)
def _pack_text(ip: str) -> bytes:
    """Text to packed; cached, as the routing table, BEP 42 checks and the stores ask for
    the same few addresses again and again (a flood of new ones only churns the cache)."""
    if ":" not in ip:  # dotted quads: ipaddress is slow on the hot path
        parts = ip.split(".")
        if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
            try:
                return bytes([int(p) for p in parts])
            except ValueError:  # an octet over 255
                pass
        raise InvalidArgument(f"not an IP address: {ip!r}")
    try:
        return ipaddress.IPv6Address(ip).packed
    except ValueError:
        raise InvalidArgument(f"not an IP address: {ip!r}") from None


_V4_MAPPED = bytes(10) + b"\xff\xff"


def ip_from_bytes(raw: bytes) -> str:
    """Text form of a packed IPv4 (4 bytes) or IPv6 (16 bytes) address; another length
    raises :class:`InvalidArgument` (decoders check record lengths before calling this)."""
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    if len(raw) != 16:
        raise InvalidArgument(f"packed IP must be 4 or 16 bytes, got {len(raw)}")
    return str(ipaddress.IPv6Address(raw))


@lru_cache(maxsize=65536)  # replies repeat the same table nodes: half the core's time
def encode_peer(addr: Addr) -> bytes:
    """6 bytes (IPv4) or 18 bytes (IPv6): address then big-endian port."""
    ip, port = addr
    if not 0 < port < 65536:
        raise InvalidArgument(f"port out of range: {port}")
    return ip_to_bytes(ip) + port.to_bytes(2, "big")


def decode_peer(raw: bytes) -> Addr:
    """Decode 6 or 18 bytes; wrong length or port 0 raises :class:`DecodeError`."""
    if len(raw) not in (6, 18):
        raise DecodeError(f"compact peer must be 6 or 18 bytes, got {len(raw)}")
    port = int.from_bytes(raw[-2:], "big")
    if port == 0:
        raise DecodeError("compact peer with port 0")
    return (ip_from_bytes(raw[:-2]), port)


def decode_peers(values: Iterable[object]) -> list[Addr]:
    """Decode a ``values`` list, skipping entries that are not valid compact peers.

    Mixed 6- and 18-byte lists are accepted (BEP 32).
    """
    out: list[Addr] = []
    for raw in values:
        if isinstance(raw, bytes) and len(raw) in (6, 18):
            port = int.from_bytes(raw[-2:], "big")
            if port:
                out.append((ip_from_bytes(raw[:-2]), port))
    return out


def encode_nodes(nodes: Iterable[NodeInfo]) -> bytes:
    """Concatenate compact node infos (all nodes must be of one family)."""
    return b"".join(n.id + encode_peer(n.addr) for n in nodes)


def decode_nodes(raw: bytes, ipv6: bool = False) -> list[NodeInfo]:
    """Decode a ``nodes`` (26-byte records) or ``nodes6`` (38-byte records) string.

    A length that is not a multiple of the record size raises :class:`DecodeError`;
    records with port 0 are skipped (BEP 5, "Contact Encoding").
    """
    size = NODE6_LEN if ipv6 else NODE4_LEN
    if len(raw) % size:
        raise DecodeError(f"compact node string of {len(raw)} bytes is not a multiple of {size}")
    out: list[NodeInfo] = []
    for i in range(0, len(raw), size):
        rec = raw[i : i + size]
        port = int.from_bytes(rec[-2:], "big")
        if port == 0:
            continue
        out.append(NodeInfo(rec[:20], (ip_from_bytes(rec[20:-2]), port)))
    return out
