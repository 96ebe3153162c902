"""The one exception hierarchy of mldht.

Local misuse and remote misbehaviour are different classes under one root,
:class:`MldhtError` (as h11's LocalProtocolError and RemoteProtocolError):

* :class:`LocalError`: the caller asked for something mldht cannot do: a bad argument
  (:class:`InvalidArgument`), a node used outside its ``async with`` (:class:`NotRunning`).
  Fix the calling code.
* :class:`RemoteError`: the network did not give what was asked: garbage
  (:class:`DecodeError`), an error reply (:class:`KRPCError`, its wire code as data), no
  answer in time (:class:`QueryTimeout`), nobody to store an item (:class:`NotStored`).
  Retry, or tell the user.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "KRPCError",
    "LocalError",
    "MldhtError",
    "NotRunning",
    "NotStored",
    "QueryTimeout",
    "RemoteError",
]


class MldhtError(Exception):
    """Root of every error mldht raises."""


class LocalError(MldhtError):
    """Local misuse: the calling code asked for something mldht cannot do."""


class RemoteError(MldhtError):
    """Remote misbehaviour: the network did not give what was asked."""


class InvalidArgument(LocalError, ValueError):
    """The caller passed something mldht cannot use."""


class NotRunning(LocalError):
    """A node (or testnet) was used before ``async with`` entered it or after it closed."""


class DecodeError(RemoteError):
    """Bytes from the network are not valid bencode or not a valid KRPC message."""


class QueryTimeout(RemoteError, TimeoutError):
    """A remote node did not answer in time (or an operation passed its bound)."""


class NotStored(RemoteError):
    """No node stored an item or an announce (none found, or none answered)."""


class KRPCError(RemoteError):
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
