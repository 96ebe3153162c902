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

__all__ = ["load_keypair", "save_keypair"]


def save_keypair(keypair: KeyPair, path: str | os.PathLike[str]) -> None:
    """Write ``keypair``'s seed to ``path`` with mode 0600, atomically.

    The seed goes to a temporary file in the same directory, created 0600 from the start
    (never world-readable, even briefly), is flushed to disk, then renamed over ``path``:
    a crash leaves either the old file or the new one, never a torn one.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, keypair.seed.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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
