"""Key files for BEP 44 mutable items: the 32-byte Ed25519 seed, owner-only, atomic.

The file holds the seed as 64 hex digits and a newline. :func:`load_keypair` also
accepts a raw 32-byte file.
"""

from __future__ import annotations

import binascii
import os
from pathlib import Path

from ..core.bep44 import SEED_LEN, KeyPair
from ..errors import InvalidArgument
from .persist import atomic_write

__all__ = ["load_keypair", "save_keypair"]


def save_keypair(keypair: KeyPair, path: str | os.PathLike[str]) -> None:
    """Write ``keypair``'s seed to ``path`` with mode 0600, atomically
    (:func:`mldht.runtime.persist.atomic_write`: never world-readable, even briefly; a
    crash leaves either the old file or the new one, never a torn one)."""
    atomic_write(path, keypair.seed.hex().encode("ascii") + b"\n")


def load_keypair(path: str | os.PathLike[str]) -> KeyPair:
    """Read a key file written by :func:`save_keypair` (or a raw 32-byte seed).

    Raises :class:`InvalidArgument` if the file holds anything else, and ``OSError``
    if it cannot be read.
    """
    data = Path(path).read_bytes()
    if len(data) == SEED_LEN:
        return KeyPair.from_seed(data)
    text = data.strip()
    try:
        seed = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"{os.fspath(path)!r} is not a key file (64 hex digits or 32 raw bytes)"
        ) from None
    if len(seed) != SEED_LEN:
        raise InvalidArgument(
            f"{os.fspath(path)!r} is not a key file: the seed is {len(seed)} bytes, not 32"
        )
    return KeyPair.from_seed(seed)
