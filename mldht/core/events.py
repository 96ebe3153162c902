"""Events that :class:`~mldht.core.node.NodeState` emits.

Two streams. **Operation events** (:data:`Event`, :meth:`NodeState.next_event`), ``op``
naming the operation: every operation started on a NodeState (``ping``, ``find_node``,
``get_peers``, ...) returns an integer op id; exactly one terminal event (``*Done``)
carrying that id is emitted when it ends, possibly preceded by progress events
(``PeersFound``). :func:`is_terminal` tells them apart (runtimes and the simulator use it
to know when an operation is over); ``RepublishStopped`` belongs to no operation.

**Node events** (:data:`NodeEvent`, :meth:`NodeState.next_notice`): what happens to the
node, for whoever watches it (``DHTNode.events()``, the simulator's ``on_notice``):
:class:`Ready`, :class:`NodeAdded`, :class:`NodeRemoved`, :class:`PeerAnnounced`,
:class:`ItemStored`, :class:`ExternalAddressChanged` and :class:`Warning`; a watcher that
fell behind gets :class:`EventsLost` in their place. The core keeps at most
:data:`NOTICE_BACKLOG` of them between two drains (the oldest go first, counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from .compact import Addr, NodeInfo

__all__ = [
    "NOTICE_BACKLOG",
    "TERMINAL_EVENTS",
    "AnnounceDone",
    "Event",
    "EventsLost",
    "ExternalAddressChanged",
    "GetDone",
    "Item",
    "ItemStored",
    "LookupDone",
    "NodeAdded",
    "NodeEvent",
    "NodeRemoved",
    "PeerAnnounced",
    "PeersFound",
    "PingDone",
    "PutDone",
    "Ready",
    "RepublishStopped",
    "SampleDone",
    "TerminalEvent",
    "Warning",
    "is_terminal",
]

NOTICE_BACKLOG = 4096
"""Node events the core keeps between two drains; older ones are dropped and counted."""


@dataclass(frozen=True, slots=True)
class PingDone:
    """``node_id`` is None when the node did not answer (timeout or error)."""

    op: int
    addr: Addr
    node_id: bytes | None
    version: bytes | None = None


@dataclass(frozen=True, slots=True)
class PeersFound:
    """Peers returned by one node during a get_peers lookup (new ones only)."""

    op: int
    info_hash: bytes
    peers: tuple[Addr, ...]


@dataclass(frozen=True, slots=True)
class LookupDone:
    """A find_node / get_peers lookup ended. ``nodes``: the closest nodes that answered."""

    op: int
    target: bytes
    nodes: tuple[NodeInfo, ...]
    peers: tuple[Addr, ...] = ()
    queried: int = 0


@dataclass(frozen=True, slots=True)
class AnnounceDone:
    """``accepted``: how many of the closest nodes accepted our announce_peer."""

    op: int
    info_hash: bytes
    accepted: int
    peers: tuple[Addr, ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    """A BEP 44 item as found on the network (``v`` is the exact bencoded value)."""

    target: bytes
    v: bytes
    k: bytes | None = None
    salt: bytes = b""
    seq: int | None = None
    sig: bytes | None = None


@dataclass(frozen=True, slots=True)
class GetDone:
    """A BEP 44 get lookup ended; ``item`` is the valid item found (highest seq), or None."""

    op: int
    target: bytes
    item: Item | None
    nodes: tuple[NodeInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class PutDone:
    """A BEP 44 put ended; ``errors`` are (code, message) error replies received."""

    op: int
    target: bytes
    accepted: int
    seq: int | None = None
    errors: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SampleDone:
    """A BEP 51 sample_infohashes query ended; ``node_id`` None means no valid answer."""

    op: int
    addr: Addr
    node_id: bytes | None
    samples: tuple[bytes, ...] = ()
    num: int = 0
    interval: int = 0
    nodes: tuple[NodeInfo, ...] = ()
    version: bytes | None = None
    rtt: float | None = None
    supported: bool = False
    """Whether the reply carried ``samples`` (real BEP 51 support)."""


@dataclass(frozen=True, slots=True)
class ExternalAddressChanged:
    """IP voting (BEP 42) settled on a new external IP; ``node_id`` is the id now in use
    (a new one when the old id was not BEP 42-valid for that IP)."""

    ip: str
    node_id: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """The node joined: a bootstrap round ended with ``nodes`` nodes in its routing table
    (once per node)."""

    nodes: int


@dataclass(frozen=True, slots=True)
class NodeAdded:
    """``node`` took a place in the routing table (it answered one of our queries)."""

    node: NodeInfo


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    """``node`` left the routing table (it went bad and was replaced, or was evicted)."""

    node: NodeInfo


@dataclass(frozen=True, slots=True)
class PeerAnnounced:
    """A node (``source``) announced ``peer`` for ``info_hash`` to us, and we stored it."""

    info_hash: bytes
    peer: Addr
    source: Addr


@dataclass(frozen=True, slots=True)
class ItemStored:
    """We accepted a BEP 44 put from ``source``: an immutable item (``public_key`` None)
    or a mutable one (its key, ``salt`` and ``seq``)."""

    target: bytes
    source: Addr
    public_key: bytes | None = None
    salt: bytes = b""
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Warning:  # the name (shadows the builtin only where imported bare)
    """Something the operator should know: ``kind`` is a stable short name
    (``internal_error``, ``bootstrap_failed``, ``storage_error``, ...), ``message`` says it
    in words."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class EventsLost:
    """In a watcher's stream: ``count`` events were dropped here because the watcher did
    not keep up (its buffer was full; the oldest went first)."""

    count: int


NodeEvent = (
    Ready
    | NodeAdded
    | NodeRemoved
    | PeerAnnounced
    | ItemStored
    | ExternalAddressChanged
    | Warning
    | EventsLost
)
"""What ``DHTNode.events()`` yields."""


@dataclass(frozen=True, slots=True)
class RepublishStopped:
    """The node stopped republishing the mutable item ``target`` (seq ``seq``): a re-put
    was refused as old and a get found ``newer_seq`` (someone with the key put it)."""

    target: bytes
    seq: int
    newer_seq: int


Event = (
    PingDone
    | PeersFound
    | LookupDone
    | AnnounceDone
    | GetDone
    | PutDone
    | SampleDone
    | RepublishStopped
)

TERMINAL_EVENTS: tuple[type[Event], ...] = (
    PingDone,
    LookupDone,
    AnnounceDone,
    GetDone,
    PutDone,
    SampleDone,
)
"""The event types that end an operation (each operation class names its own as
``terminal_event``, one of these)."""


TerminalEvent = PingDone | LookupDone | AnnounceDone | GetDone | PutDone | SampleDone


def is_terminal(event: Event | NodeEvent) -> TypeGuard[TerminalEvent]:
    """Whether ``event`` ends the operation ``event.op`` (no more events for that op).

    False for progress events (:class:`PeersFound`) and for events of no operation
    (:class:`RepublishStopped`).
    """
    return isinstance(event, TERMINAL_EVENTS)
