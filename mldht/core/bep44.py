"""BEP 44 items (targets, the signed buffer, Ed25519) and BEP 46 helpers.

Verification and everyday signing use ``cryptography`` (RFC 8032 keys: a 32-byte seed).
:func:`expanded_sign` is a small pure-Python signer for the *expanded* 64-byte secrets
that the BEP 44 test vectors and libtorrent use (BEP 44 "Test vectors"); it is slow and exists for
byte-exact vectors and interop, not for production signing.

Saving and loading key files is I/O and so lives in :mod:`mldht.runtime.keys`.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import DecodeError, InvalidArgument

__all__ = [
    "MAX_SALT_LEN",
    "MAX_SEQ",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_LEN",
    "PUBLIC_KEY_LEN",
    "SEED_LEN",
    "SIGNATURE_LEN",
    "KeyPair",
    "btpk_magnet",
    "expanded_public_key",
    "expanded_secret_from_seed",
    "expanded_sign",
    "immutable_target",
    "infohash_from_torrent_item",
    "mutable_target",
    "parse_btpk_magnet",
    "signed_buffer",
    "torrent_item_value",
    "verify",
]

PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
SEED_LEN: Final = 32
EXPANDED_SECRET_LEN: Final = 64
MAX_VALUE_LEN: Final = 1000
"""Largest bencoded ``v`` accepted (BEP 44; libtorrent accepts 1-1000 bytes)."""

MAX_VALUE_DEPTH: Final = 32
"""Deepest container nesting of a value mldht encodes, and accepts inside a ``put`` (a
1000-byte value needs few levels; a nesting attack is cut short before the decoder)."""

MAX_SALT_LEN: Final = 64
MAX_SEQ: Final = 0x7FFFFFFFFFFFFFFF
"""``seq`` SHOULD fit a signed 64-bit integer (BEP 44)."""


# --- targets and the signed buffer (BEP 44) ----------------------------------------------


def immutable_target(v_bencoded: bytes) -> bytes:
    """Target of an immutable item: SHA-1 of the exact bencoded value."""
    return hashlib.sha1(v_bencoded).digest()


def mutable_target(public_key: bytes, salt: bytes = b"") -> bytes:
    """Target of a mutable item: SHA-1(k ‖ salt), both raw (neither is bencoded)."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise InvalidArgument(f"public key must be 32 bytes, got {len(public_key)}")
    return hashlib.sha1(public_key + salt).digest()


def signed_buffer(v_bencoded: bytes, seq: int, salt: bytes = b"") -> bytes:
    """The bytes a mutable item's signature covers (BEP 44 "Signature verification").

    A byte concatenation, not a bencoded dict, and with no extra length prefix before
    the value (the BEP 44 test vectors show ``…e1:v`` followed directly by ``v``).
    """
    head = b"4:salt" + str(len(salt)).encode() + b":" + salt if salt else b""
    return head + b"3:seqi" + str(int(seq)).encode() + b"e1:v" + v_bencoded


def verify(
    public_key: bytes, signature: bytes, v_bencoded: bytes, seq: int, salt: bytes = b""
) -> bool:
    """True if ``signature`` by ``public_key`` covers the item; never raises on garbage."""
    try:
        if (
            not isinstance(public_key, bytes)
            or not isinstance(signature, bytes)
            or not isinstance(v_bencoded, bytes)
            or not isinstance(salt, bytes)
            or not isinstance(seq, int)
            or len(public_key) != PUBLIC_KEY_LEN
            or len(signature) != SIGNATURE_LEN
        ):
            return False
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, signed_buffer(v_bencoded, seq, salt))
    except Exception:  # InvalidSignature, or a key that is not a curve point: all "no"
        return False
    return True


# --- key pairs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class KeyPair:
    """An Ed25519 key pair for mutable items, kept as its 32-byte RFC 8032 seed.

    The seed is left out of ``repr`` so that logging a key pair never leaks it. Files:
    :func:`mldht.runtime.keys.save_keypair` / :func:`mldht.runtime.keys.load_keypair`.
    """

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    _private: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_LEN:
            raise InvalidArgument("an Ed25519 seed must be 32 bytes")
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        object.__setattr__(self, "_private", private)
        object.__setattr__(self, "public_key", private.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key.hex()})"

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's CSPRNG (via ``cryptography``)."""
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """The key pair of a 32-byte seed (RFC 8032 private key)."""
        return cls(bytes(seed))

    @property
    def expanded_secret(self) -> bytes:
        """libtorrent's 64-byte secret key for this seed (see :func:`expanded_secret_from_seed`)."""
        return expanded_secret_from_seed(self.seed)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature (64 bytes) of ``message``."""
        return self._private.sign(message)

    def sign_item(self, v_bencoded: bytes, seq: int, salt: bytes = b"") -> bytes:
        """The ``sig`` of a mutable item: a signature of :func:`signed_buffer`."""
        return self.sign(signed_buffer(v_bencoded, seq, salt))

    def target(self, salt: bytes = b"") -> bytes:
        """The mutable-item target for this key and ``salt``."""
        return mutable_target(self.public_key, salt)


# --- expanded-key Ed25519 (BEP 44 "Test vectors"), pure Python ------------------------
#
# The BEP 44 vectors give orlp/ed25519's 64-byte expanded secret (clamped scalar ‖ nonce
# prefix), from which no RFC 8032 library can sign. Twisted Edwards curve
# -x² + y² = 1 + d·x²·y² over GF(2²⁵⁵ - 19), points in extended coordinates (X:Y:Z:T)
# with x = X/Z, y = Y/Z, x·y = T/Z. Not constant time: fine for vectors and tests.

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_D: Final = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]


def _recover_x(y: int, sign: int) -> int:
    u = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(u, (_P + 3) // 8, _P)  # a square root candidate, since p ≡ 5 (mod 8)
    if (x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - u) % _P != 0:
        raise InvalidArgument("not a curve point")
    if x & 1 != sign:
        x = _P - x
    return x


_BY: Final = 4 * pow(5, _P - 2, _P) % _P
_BX: Final = _recover_x(_BY, 0)
_BASE: Final[_Point] = (_BX, _BY, 1, _BX * _BY % _P)
_IDENTITY: Final[_Point] = (0, 1, 1, 0)


def _add(p: _Point, q: _Point) -> _Point:
    # The unified addition law for a = -1 (also correct for doubling).
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * _D * t1 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _scalar_mult(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _encode_point(point: _Point) -> bytes:
    x, y, z, _ = point
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def expanded_secret_from_seed(seed: bytes) -> bytes:
    """libtorrent's / orlp's 64-byte secret for a 32-byte seed.

    SHA-512 of the seed with the first half clamped into the scalar ``a`` (RFC 8032
    §5.1.5); the second half is the nonce prefix.
    """
    if len(seed) != SEED_LEN:
        raise InvalidArgument(f"an Ed25519 seed must be 32 bytes, got {len(seed)}")
    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 63
    digest[31] |= 64
    return bytes(digest)


def _check_expanded(secret: bytes) -> int:
    if len(secret) != EXPANDED_SECRET_LEN:
        raise InvalidArgument(f"an expanded secret must be 64 bytes, got {len(secret)}")
    return int.from_bytes(secret[:32], "little")


def expanded_public_key(expanded_secret64: bytes) -> bytes:
    """The public key ``a·B`` of an expanded secret."""
    return _encode_point(_scalar_mult(_check_expanded(expanded_secret64), _BASE))


def expanded_sign(expanded_secret64: bytes, message: bytes) -> bytes:
    """Sign with a 64-byte expanded secret (``a`` ‖ prefix), exactly as orlp/libtorrent do.

    ``r = SHA512(prefix ‖ M) mod L``, ``R = r·B``, ``S = (r + SHA512(R ‖ A ‖ M)·a) mod L``.
    """
    a = _check_expanded(expanded_secret64)
    public = _encode_point(_scalar_mult(a, _BASE))
    r = _hash_int(expanded_secret64[32:], message) % _L
    big_r = _encode_point(_scalar_mult(r, _BASE))
    s = (r + _hash_int(big_r, public, message) % _L * a) % _L
    return big_r + s.to_bytes(32, "little")


# --- BEP 46 ------------------------------------------------------------------------------


def torrent_item_value(infohash: bytes) -> dict[bytes, Any]:
    """The BEP 46 mutable-item value pointing at a torrent: ``{b"ih": infohash}``."""
    if not isinstance(infohash, bytes) or len(infohash) != 20:
        raise InvalidArgument("an info-hash must be 20 bytes")
    return {b"ih": infohash}


def infohash_from_torrent_item(value: object) -> bytes:
    """The info-hash in a decoded BEP 46 value; :class:`DecodeError` if it has none."""
    if isinstance(value, dict):
        ih = value.get(b"ih")
        if isinstance(ih, bytes) and len(ih) == 20:
            return ih
    raise DecodeError("not a BEP 46 torrent item (no 20-byte 'ih')")


def btpk_magnet(public_key: bytes, salt: bytes = b"") -> str:
    """The BEP 46 magnet link ``magnet:?xs=urn:btpk:<k hex>[&s=<salt hex>]``."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise InvalidArgument("public key must be 32 bytes")
    if len(salt) > MAX_SALT_LEN:
        raise InvalidArgument("salt must be at most 64 bytes")
    uri = "magnet:?xs=urn:btpk:" + public_key.hex()
    return uri + ("&s=" + salt.hex() if salt else "")


def parse_btpk_magnet(uri: str) -> tuple[bytes, bytes]:
    """``(public_key, salt)`` from a BEP 46 magnet link; :class:`InvalidArgument` if bad."""
    if not isinstance(uri, str):
        raise InvalidArgument("a magnet link must be a string")
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() != "magnet":
        raise InvalidArgument(f"not a magnet link: {uri!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    keys = [
        xs[len("urn:btpk:") :] for xs in query.get("xs", []) if xs.lower().startswith("urn:btpk:")
    ]
    if len(keys) != 1:
        raise InvalidArgument(f"magnet link needs exactly one xs=urn:btpk:<key>: {uri!r}")
    try:
        public_key = binascii.unhexlify(keys[0])
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"public key is not hex: {keys[0]!r}") from None
    if len(public_key) != PUBLIC_KEY_LEN:
        raise InvalidArgument(f"public key must be 64 hex digits: {keys[0]!r}")
    salts = query.get("s", [])
    if len(salts) > 1:
        raise InvalidArgument(f"magnet link has more than one s=: {uri!r}")
    try:
        salt = binascii.unhexlify(salts[0]) if salts else b""
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"salt is not hex: {salts[0]!r}") from None
    if len(salt) > MAX_SALT_LEN:
        raise InvalidArgument("salt must be at most 64 bytes")
    return public_key, salt
