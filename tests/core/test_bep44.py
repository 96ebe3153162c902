"""BEP 44 targets, signed buffers and signatures; BEP 46 helpers (BEP 44, BEP 46)."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core import bep44
from mldht.core.bencode import bdecode, bencode
from mldht.core.bep44 import (
    KeyPair,
    btpk_magnet,
    expanded_public_key,
    expanded_secret_from_seed,
    expanded_sign,
    immutable_target,
    infohash_from_torrent_item,
    mutable_target,
    parse_btpk_magnet,
    signed_buffer,
    torrent_item_value,
    verify,
)
from mldht.errors import DecodeError, InvalidArgument

# --- the BEP 44 vectors -----------------------------------------------------------------

VALUE = b"12:Hello World!"
PUBLIC_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
EXPANDED_SECRET = bytes.fromhex(
    "e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74d"
    "b7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d"
)
SIG1 = bytes.fromhex(
    "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
    "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
)
SIG2 = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)

VECTORS = [
    # (salt, buffer, target, signature)
    (
        b"",
        b"3:seqi1e1:v12:Hello World!",
        "4a533d47ec9c7d95b1ad75f576cffc641853b750",
        SIG1,
    ),
    (
        b"foobar",
        b"4:salt6:foobar3:seqi1e1:v12:Hello World!",
        "411eba73b6f087ca51a3795d9c8c938d365e32c1",
        SIG2,
    ),
]


def test_value_is_the_bencoded_string() -> None:
    assert bdecode(VALUE) == b"Hello World!"
    assert bencode(b"Hello World!") == VALUE


@pytest.mark.parametrize(("salt", "buffer", "target", "sig"), VECTORS)
def test_mutable_vectors(salt: bytes, buffer: bytes, target: str, sig: bytes) -> None:
    assert signed_buffer(VALUE, 1, salt) == buffer
    assert mutable_target(PUBLIC_KEY, salt).hex() == target
    assert verify(PUBLIC_KEY, sig, VALUE, 1, salt)
    # Reproduced byte for byte by the expanded-key signer.
    assert expanded_sign(EXPANDED_SECRET, buffer) == sig


def test_immutable_vector() -> None:
    assert immutable_target(VALUE).hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"


def test_expanded_public_key_of_vector() -> None:
    assert expanded_public_key(EXPANDED_SECRET) == PUBLIC_KEY


def test_base_point_encoding() -> None:
    # a = 1 (not clamped, but the signer takes any scalar) gives B, encoded as y = 4/5.
    one = (1).to_bytes(32, "little") + bytes(32)
    assert expanded_public_key(one) == bytes.fromhex("58" + "66" * 31)


def test_signed_buffer_has_no_length_prefix_and_empty_salt_is_absent() -> None:
    # BEP 44 vectors: no extra length prefix before v.
    assert signed_buffer(b"i7e", 0) == b"3:seqi0e1:vi7e"
    assert signed_buffer(b"le", 12, b"") == signed_buffer(b"le", 12)
    assert signed_buffer(b"le", 3, b"\x00") == b"4:salt1:\x003:seqi3e1:vle"
    assert mutable_target(PUBLIC_KEY) == hashlib.sha1(PUBLIC_KEY).digest()


def test_mutable_target_rejects_bad_key() -> None:
    with pytest.raises(InvalidArgument):
        mutable_target(PUBLIC_KEY[:31])


# --- BEP 46 vectors ------------------------------------------------------------------

BEP46_KEY = bytes.fromhex("8543d3e6115f0f98c944077a4493dcd543e49c739fd998550a1f614ab36ed63e")


def test_bep46_target_vectors() -> None:
    assert mutable_target(BEP46_KEY).hex() == "cc3f9d90b572172053626f9980ce261a850d050b"
    salt = bytes.fromhex("6e")
    assert mutable_target(BEP46_KEY, salt).hex() == "59ee7c2cb9b4f7eb1986ee2d18fd2fdb8a56554f"


def test_torrent_item_value() -> None:
    ih = bytes(range(20))
    value = torrent_item_value(ih)
    assert value == {b"ih": ih}
    assert bencode(value) == b"d2:ih20:" + ih + b"e"
    assert infohash_from_torrent_item(bdecode(bencode(value))) == ih
    with pytest.raises(InvalidArgument):
        torrent_item_value(ih[:19])
    for bad in (b"x", {b"ih": b"short"}, {b"xx": ih}, [ih]):
        with pytest.raises(DecodeError):
            infohash_from_torrent_item(bad)


def test_parse_btpk_magnet() -> None:
    uri = f"magnet:?xs=urn:btpk:{BEP46_KEY.hex()}&s=6e"
    assert parse_btpk_magnet(uri) == (BEP46_KEY, b"n")
    assert parse_btpk_magnet(f"magnet:?xs=urn:btpk:{BEP46_KEY.hex()}") == (BEP46_KEY, b"")
    upper = f"MAGNET:?xs=URN:BTPK:{BEP46_KEY.hex().upper()}&dn=x&s=6E"
    assert parse_btpk_magnet(upper) == (BEP46_KEY, b"n")
    # Round trip through the builder.
    assert parse_btpk_magnet(btpk_magnet(BEP46_KEY, b"salt")) == (BEP46_KEY, b"salt")
    assert btpk_magnet(BEP46_KEY) == f"magnet:?xs=urn:btpk:{BEP46_KEY.hex()}"


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://example.com/?xs=urn:btpk:" + "00" * 32,
        "magnet:?xt=urn:btpk:" + "00" * 32,  # BEP 46 uses xs, not xt
        "magnet:?xs=urn:btih:" + "00" * 20,
        "magnet:?xs=urn:btpk:" + "00" * 31,
        "magnet:?xs=urn:btpk:" + "zz" * 32,
        "magnet:?xs=urn:btpk:" + "00" * 32 + "&s=abc",
        "magnet:?xs=urn:btpk:" + "00" * 32 + "&s=" + "00" * 65,
        "magnet:?xs=urn:btpk:" + "00" * 32 + "&s=01&s=02",
        "magnet:?xs=urn:btpk:" + "00" * 32 + "&xs=urn:btpk:" + "11" * 32,
    ],
)
def test_parse_btpk_magnet_rejects(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_btpk_magnet(uri)


def test_parse_btpk_magnet_rejects_non_string() -> None:
    with pytest.raises(InvalidArgument):
        parse_btpk_magnet(b"magnet:?xs=urn:btpk:" + b"00" * 32)  # type: ignore[arg-type]


# --- key pairs ---------------------------------------------------------------------------


def test_keypair_round_trip() -> None:
    rng = random.Random(44)
    kp = KeyPair.from_seed(rng.randbytes(32))
    sig = kp.sign_item(b"d1:ai1ee", 5, b"salty")
    assert len(sig) == 64 and len(kp.public_key) == 32
    assert verify(kp.public_key, sig, b"d1:ai1ee", 5, b"salty")
    assert kp.sign(signed_buffer(b"d1:ai1ee", 5, b"salty")) == sig
    assert kp.target(b"salty") == mutable_target(kp.public_key, b"salty")
    assert KeyPair.from_seed(kp.seed) == kp
    assert kp.seed.hex() not in repr(kp)
    assert kp.public_key.hex() in repr(kp)


def test_keypair_matches_rfc8032() -> None:
    seed = bytes(range(32))
    kp = KeyPair.from_seed(seed)
    ref = Ed25519PrivateKey.from_private_bytes(seed)
    assert kp.public_key == ref.public_key().public_bytes_raw()
    assert kp.sign(b"msg") == ref.sign(b"msg")


def test_keypair_generate_is_fresh() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.seed != b.seed and len(a.seed) == 32
    assert verify(a.public_key, a.sign_item(b"i1e", 1), b"i1e", 1)


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_keypair_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(InvalidArgument):
        KeyPair(seed)  # type: ignore[arg-type]


def test_expanded_secret_format() -> None:
    seed = bytes(32)
    secret = expanded_secret_from_seed(seed)
    digest = hashlib.sha512(seed).digest()
    assert len(secret) == 64
    assert secret[32:] == digest[32:]  # the nonce prefix is untouched
    assert secret[0] & 7 == 0 and secret[31] & 0xC0 == 0x40  # clamped
    assert secret[1:31] == digest[1:31]
    assert KeyPair.from_seed(seed).expanded_secret == secret
    with pytest.raises(InvalidArgument):
        expanded_secret_from_seed(bytes(31))
    with pytest.raises(InvalidArgument):
        expanded_sign(bytes(63), b"")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=200))
def test_expanded_sign_equals_rfc8032(seed: bytes, message: bytes) -> None:
    kp = KeyPair.from_seed(seed)
    secret = expanded_secret_from_seed(seed)
    assert expanded_public_key(secret) == kp.public_key
    assert expanded_sign(secret, message) == kp.sign(message)


# --- verify rejects anything tampered ----------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes((data[index] ^ 1,)) + data[index + 1 :]


def test_verify_rejects_tampering() -> None:
    salt = b"foobar"
    assert verify(PUBLIC_KEY, SIG2, VALUE, 1, salt)
    assert not verify(PUBLIC_KEY, SIG2, VALUE, 2, salt)  # seq
    assert not verify(PUBLIC_KEY, SIG2, VALUE, 1, b"foobaz")  # salt
    assert not verify(PUBLIC_KEY, SIG2, VALUE, 1, b"")  # salt dropped
    assert not verify(PUBLIC_KEY, SIG2, b"12:Hello world!", 1, salt)  # value
    for i in (0, 31, 32, 63):
        assert not verify(PUBLIC_KEY, _flip(SIG2, i), VALUE, 1, salt)  # signature
    assert not verify(_flip(PUBLIC_KEY, 5), SIG2, VALUE, 1, salt)  # key
    assert not verify(PUBLIC_KEY, SIG1, VALUE, 1, salt)  # another item's signature


@pytest.mark.parametrize(
    ("key", "sig", "value", "seq", "salt"),
    [
        (PUBLIC_KEY[:31], SIG1, VALUE, 1, b""),
        (PUBLIC_KEY + b"\x00", SIG1, VALUE, 1, b""),
        (PUBLIC_KEY, SIG1[:63], VALUE, 1, b""),
        (PUBLIC_KEY, SIG1 + b"\x00", VALUE, 1, b""),
        (b"", b"", b"", 0, b""),
        (b"\xff" * 32, SIG1, VALUE, 1, b""),  # not a valid point encoding
        (PUBLIC_KEY, b"\xff" * 64, VALUE, 1, b""),  # S >= L
        (PUBLIC_KEY, SIG1, VALUE, "1", b""),
        (PUBLIC_KEY, SIG1, "12:Hello World!", 1, b""),
        (PUBLIC_KEY.hex(), SIG1, VALUE, 1, b""),
        (None, None, None, None, None),
    ],
)
def test_verify_never_raises_on_garbage(
    key: object, sig: object, value: object, seq: object, salt: object
) -> None:
    assert verify(key, sig, value, seq, salt) is False  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(key=st.binary(max_size=40), sig=st.binary(max_size=70), seq=st.integers())
def test_verify_fuzz(key: bytes, sig: bytes, seq: int) -> None:
    assert verify(key, sig, VALUE, seq) is False


def test_all_names_exist() -> None:
    for name in bep44.__all__:
        assert hasattr(bep44, name), name
