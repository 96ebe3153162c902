"""mldht: a BitTorrent mainline DHT node (BEP 5, 42, 43, 44, 46, 51) on anyio."""

from __future__ import annotations

from .errors import DecodeError as DecodeError
from .errors import InvalidArgument as InvalidArgument
from .errors import KRPCError as KRPCError
from .errors import MldhtError as MldhtError
from .errors import QueryTimeout as QueryTimeout

__version__ = "0.1.0"

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "KRPCError",
    "MldhtError",
    "QueryTimeout",
]
