"""mldht: a BitTorrent mainline DHT node (BEP 5, 32, 33, 42, 43, 44, 46, 51) on anyio."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .core.bep44 import KeyPair as KeyPair
from .core.compact import NodeInfo as NodeInfo
from .core.events import EventsLost as EventsLost
from .core.events import ExternalAddressChanged as ExternalAddressChanged
from .core.events import Item as Item
from .core.events import ItemStored as ItemStored
from .core.events import NodeAdded as NodeAdded
from .core.events import NodeEvent as NodeEvent
from .core.events import NodeRemoved as NodeRemoved
from .core.events import PeerAnnounced as PeerAnnounced
from .core.events import Ready as Ready
from .core.events import SampleDone as SampleDone
from .core.events import Warning as Warning
from .core.node import NodeConfig as NodeConfig
from .core.scrape import ScrapeResult as ScrapeResult
from .core.tunables import Tunables as Tunables
from .errors import DecodeError as DecodeError
from .errors import InvalidArgument as InvalidArgument
from .errors import KRPCError as KRPCError
from .errors import LocalError as LocalError
from .errors import MldhtError as MldhtError
from .errors import NotRunning as NotRunning
from .errors import NotStored as NotStored
from .errors import QueryTimeout as QueryTimeout
from .errors import RemoteError as RemoteError

if TYPE_CHECKING:
    from .runtime import DHTNode as DHTNode
    from .runtime import PeerIterator as PeerIterator
    from .runtime import run as run
    from .testnet import Testnet as Testnet

_RUNTIME_NAMES = frozenset({"DHTNode", "PeerIterator", "run"})


def __getattr__(name: str) -> Any:
    # The runtime (anyio, sockets) loads on first use, so that `import mldht.core` or
    # `mldht.sim` stays pure and light.
    if name in _RUNTIME_NAMES:
        from . import runtime

        return getattr(runtime, name)
    if name == "Testnet":
        from .testnet import Testnet

        return Testnet
    raise AttributeError(f"module 'mldht' has no attribute {name!r}")


logging.getLogger("mldht").addHandler(logging.NullHandler())  # quiet unless configured

__version__ = "0.1.0"

__all__ = [
    "DHTNode",
    "DecodeError",
    "EventsLost",
    "ExternalAddressChanged",
    "InvalidArgument",
    "Item",
    "ItemStored",
    "KRPCError",
    "KeyPair",
    "LocalError",
    "MldhtError",
    "NodeAdded",
    "NodeConfig",
    "NodeEvent",
    "NodeInfo",
    "NodeRemoved",
    "NotRunning",
    "NotStored",
    "PeerAnnounced",
    "PeerIterator",
    "QueryTimeout",
    "Ready",
    "RemoteError",
    "SampleDone",
    "ScrapeResult",
    "Testnet",
    "Tunables",
    "Warning",
    "run",
]
