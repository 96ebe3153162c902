"""BEP 44 values, keys and salts as the client API takes them, and the node's own key pair.

:class:`~mldht.runtime.node.DHTNode` stores Python values as bencoded BEP 44 items. This
module is the mapping between the two and the bookkeeping around it:

* :func:`encode_value` / :func:`decode_value`: a Python value to the exact bencoded bytes
  that are hashed, signed and sent, and back. Bencode has byte strings but no text type,
  so a ``str`` is stored as its UTF-8 bytes and **comes back as** ``bytes``; ints, lists
  and dicts come back as ``int``, ``list`` and ``dict`` with ``bytes`` keys.
* :func:`kv_salt`: the salt of the key/value API's items (``node.set`` / ``node.get``).
* :func:`load_or_create_keypair`: the node's own key pair, kept in the state directory.

What a node republishes is kept by the core (:mod:`mldht.core.republish`).
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import os
from pathlib import Path
from typing import Any, Final

from ..core.bencode import BValue, bdecode, bencode
from ..core.bep44 import MAX_SALT_LEN, MAX_VALUE_DEPTH, MAX_VALUE_LEN, PUBLIC_KEY_LEN, KeyPair
from ..core.ids import ID_LEN, parse_infohash
from ..errors import InvalidArgument
from .keys import load_keypair, save_keypair

__all__ = [
    "IDENTITY_FILE",
    "as_id",
    "as_infohash",
    "as_public_key",
    "as_salt",
    "as_target",
    "decode_value",
    "encode_value",
    "kv_salt",
    "load_or_create_keypair",
]

IDENTITY_FILE: Final = "identity.key"
"""The node's own key pair in its state directory (the key/value API signs with it)."""

_MAX_DEPTH: Final = MAX_VALUE_DEPTH  # what other mldht nodes accept in a put; stops cycles


def _to_bvalue(value: object, depth: int) -> BValue:
    if depth > _MAX_DEPTH:
        raise InvalidArgument("value is nested too deeply (or contains itself)")
    if isinstance(value, bool):
        # bencode has no booleans: True would come back as 1. Say so rather than guess.
        raise InvalidArgument("bencode has no booleans; store an int (0 or 1)")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument("text value is not valid Unicode (lone surrogate)") from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_to_bvalue(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out: dict[bytes, Any] = {}
        for key, v in value.items():
            raw = _to_bvalue(key, depth + 1) if isinstance(key, str | bytes) else None
            if not isinstance(raw, bytes):
                raise InvalidArgument(f"dict keys must be str or bytes, got {type(key).__name__}")
            if raw in out:
                raise InvalidArgument(f"dict key {raw!r} appears twice (as str and as bytes)")
            out[raw] = _to_bvalue(v, depth + 1)
        return out
    raise InvalidArgument(
        f"cannot store a {type(value).__name__}: values are str, bytes, int, list or dict"
    )


def encode_value(value: object) -> bytes:
    """The bencoded form of ``value``: what is hashed, signed and stored (BEP 44).

    ``str`` is stored as its UTF-8 bytes; ``bytes``, ``int``, ``list`` (or ``tuple``) and
    ``dict`` (``str`` or ``bytes`` keys) as themselves. Raises :class:`InvalidArgument`
    for other types and for values whose encoding is empty or over 1000 bytes.
    """
    data = bencode(_to_bvalue(value, 0))
    if len(data) > MAX_VALUE_LEN:
        raise InvalidArgument(
            f"value is {len(data)} bytes bencoded; BEP 44 items hold at most {MAX_VALUE_LEN}"
        )
    return data


def decode_value(v_bencoded: bytes) -> BValue:
    """A stored value back as Python: byte strings are ``bytes`` (a stored ``str`` too)."""
    value: BValue = bdecode(v_bencoded)
    return value


def as_salt(salt: str | bytes) -> bytes:
    """A BEP 44 salt: bytes as given, ``str`` as UTF-8; at most 64 bytes."""
    raw = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if len(raw) > MAX_SALT_LEN:
        raise InvalidArgument(f"salt is {len(raw)} bytes; BEP 44 allows at most {MAX_SALT_LEN}")
    return raw


def kv_salt(key: str | bytes) -> bytes:
    """The salt of the key/value item named ``key``.

    The key's bytes (UTF-8 for ``str``) when they fit a salt (64 bytes, BEP 44), else
    their SHA-1 (20 bytes). An empty key is refused: its item would be the key pair's
    unsalted one, which BEP 46 and ``put_mutable`` use.
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not raw:
        raise InvalidArgument("a key must not be empty")
    return raw if len(raw) <= MAX_SALT_LEN else hashlib.sha1(raw).digest()


def _from_hex(text: str, size: int, what: str) -> bytes:
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{what} is not hex: {text!r}") from None
    if len(raw) != size:
        raise InvalidArgument(f"{what} must be {2 * size} hex digits, got {text!r}")
    return raw


def as_public_key(key: bytes | str) -> bytes:
    """An Ed25519 public key: 32 bytes, or 64 hex digits."""
    if isinstance(key, str):
        return _from_hex(key, PUBLIC_KEY_LEN, "public key")
    if len(key) != PUBLIC_KEY_LEN:
        raise InvalidArgument(f"a public key is {PUBLIC_KEY_LEN} bytes, got {len(key)}")
    return bytes(key)


def as_target(target: bytes | str) -> bytes:
    """A 20-byte item target, or 40 hex digits."""
    if isinstance(target, str):
        return _from_hex(target, 20, "target")
    if len(target) != 20:
        raise InvalidArgument(f"a target is 20 bytes, got {len(target)}")
    return bytes(target)


def as_infohash(value: bytes | str) -> bytes:
    """A 20-byte info-hash: bytes, or text (40 hex digits, 32 base32 or a magnet URI)."""
    if isinstance(value, str):
        return parse_infohash(value)
    if len(value) != ID_LEN:
        raise InvalidArgument(f"an info-hash is {ID_LEN} bytes, got {len(value)}")
    return bytes(value)


def as_id(value: bytes, what: str = "target") -> bytes:
    """A 20-byte id or target given as bytes."""
    if len(value) != ID_LEN:
        raise InvalidArgument(f"{what} must be {ID_LEN} bytes, got {len(value)}")
    return bytes(value)


def load_or_create_keypair(path: str | os.PathLike[str]) -> tuple[KeyPair, bool]:
    """The key pair in ``path``, created (mode 0600) if the file does not exist.

    Returns ``(keypair, created)``. Two processes creating the same file at once agree
    on one key pair: the new file is linked into place only if none exists yet. Raises
    :class:`InvalidArgument` naming the file and the reason when it holds no key pair or
    cannot be read or created.
    """
    target = Path(path)
    try:
        return _load(target), False
    except (FileNotFoundError, NotADirectoryError):
        pass  # (a path under a regular file: creating it says why it cannot be)
    try:
        return _create(target)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot create key file {str(target)!r}: {exc.strerror or exc}"
        ) from exc


def _load(target: Path) -> KeyPair:
    """:func:`load_keypair`; an unreadable file (not a missing one) as InvalidArgument."""
    try:
        return load_keypair(target)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InvalidArgument(f"cannot read key file {str(target)!r}: {reason}") from exc


def _create(target: Path) -> tuple[KeyPair, bool]:
    parent = target.parent
    if parent.exists() and not parent.is_dir():  # mkdir would only say "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
    parent.mkdir(parents=True, exist_ok=True)
    keypair = KeyPair.generate()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.new")
    save_keypair(keypair, tmp)
    try:
        os.link(tmp, target)  # fails if another process created the file meanwhile
    except FileExistsError:
        return _load(target), False
    except OSError:
        # A filesystem without hard links: an exclusive check, then the rename.
        if target.exists():
            return _load(target), False
        os.replace(tmp, target)
        return keypair, True
    finally:
        tmp.unlink(missing_ok=True)
    return keypair, True
