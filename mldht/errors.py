"""The one exception hierarchy of mldht.

Local misuse (bad arguments from the caller) and remote misbehaviour (garbage or error
replies from the network) are different classes under one root, :class:`MldhtError`.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "KRPCError",
    "MldhtError",
    "QueryTimeout",
]


class MldhtError(Exception):
    """Root of every error mldht raises."""


class InvalidArgument(MldhtError, ValueError):
    """The caller passed something mldht cannot use (local misuse)."""


class DecodeError(MldhtError):
    """Bytes from the network are not valid bencode or not a valid KRPC message."""


class QueryTimeout(MldhtError, TimeoutError):
    """A remote node did not answer in time."""


class KRPCError(MldhtError):
    """A KRPC error: the wire code (201-204, 205-207, 301, 302) is data on the error."""

    GENERIC = 201
    SERVER = 202
    PROTOCOL = 203
    METHOD_UNKNOWN = 204
    MESSAGE_TOO_BIG = 205
    INVALID_SIGNATURE = 206
    SALT_TOO_BIG = 207
    CAS_MISMATCH = 301
    SEQ_TOO_LOW = 302

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(f"KRPC error {code}: {message}")
        self.code = code
        self.message = message
