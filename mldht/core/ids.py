"""Node ids, info-hashes and XOR distance (BEP 5)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ..errors import InvalidArgument

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

__all__ = [
    "ID_BITS",
    "ID_LEN",
    "distance",
    "id_from_int",
    "id_to_int",
    "parse_infohash",
    "random_id",
    "random_id_in_range",
]

ID_LEN = 20
ID_BITS = 160


def id_to_int(node_id: bytes) -> int:
    """The id as an unsigned big-endian integer."""
    return int.from_bytes(node_id, "big")


def id_from_int(value: int) -> bytes:
    return value.to_bytes(ID_LEN, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two 20-byte ids, read as an unsigned integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def random_id(rng: random.Random) -> bytes:
    return rng.getrandbits(ID_BITS).to_bytes(ID_LEN, "big")


def random_id_in_range(rng: random.Random, lo: int, hi: int) -> bytes:
    """A random id in ``[lo, hi)``."""
    return id_from_int(rng.randrange(lo, hi))


_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_B32 = re.compile(r"^[A-Za-z2-7]{32}$")


def parse_infohash(text: str) -> bytes:
    """Parse an info-hash given as 40 hex digits, 32 base32 characters or a magnet URI.

    Raises :class:`InvalidArgument` naming what is wrong.
    """
    text = text.strip()
    if text.lower().startswith("magnet:"):
        query = parse_qs(urlsplit(text).query)
        for xt in query.get("xt", []):
            if xt.lower().startswith("urn:btih:"):
                return parse_infohash(xt[len("urn:btih:") :])
        raise InvalidArgument(f"magnet URI has no xt=urn:btih: info-hash: {text!r}")
    if _HEX40.match(text):
        return binascii.unhexlify(text)
    if _B32.match(text):
        return base64.b32decode(text.upper())
    raise InvalidArgument(
        f"not an info-hash (40 hex digits, 32 base32 characters or a magnet URI): {text!r}"
    )
