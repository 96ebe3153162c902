"""Dual stack (BEP 32): the address families of one :class:`~mldht.runtime.node.DHTNode`.

A node bound to an IPv4 and an IPv6 address runs one core node
(:class:`~mldht.core.node.NodeState`) per family, each with its own socket, routing table,
BEP 42 IP voting and timer, composed here as libtorrent composes one DHT node per listen
socket. The core nodes are siblings: they share the peer and item stores and the token
secret, and each answers ``want`` (``n4`` / ``n6``) for the other family from the other's
table (:mod:`mldht.core.handlers`). What this module adds on top:

* :func:`bind_list`: the addresses a node binds (one per family);
* :func:`merge_terminal` and :class:`MergedWaiter`: a lookup asked of a dual-stack node
  runs in both families and ends with one terminal event merging both (peers, nodes and
  stores from both; the item with the highest ``seq``);
* :func:`sync_ids`: one node id while BEP 42 allows it (see there).
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import anyio

from ..core import bep42
from ..core.compact import Addr, NodeInfo
from ..core.events import (
    AnnounceDone,
    Event,
    GetDone,
    LookupDone,
    PutDone,
    TerminalEvent,
    is_terminal,
)
from ..core.ids import distance
from ..core.node import NodeState
from ..core.scrape import ScrapeDone, merge_results
from ..errors import InvalidArgument
from .operation import _Waiter

__all__ = [
    "Family",
    "MergedWaiter",
    "bind_list",
    "is_ipv6",
    "merge_terminal",
    "routers_for",
    "sync_ids",
]


def is_ipv6(addr: Addr) -> bool:
    """Whether ``addr`` is an IPv6 address (names count as IPv4, as the CLI binds them)."""
    return ":" in addr[0]


def bind_list(bind: Addr | Sequence[Addr]) -> list[Addr]:
    """The addresses to bind: one (host, port), or a list of at most one per family.

    Raises :class:`InvalidArgument` for a bad port, an empty list or two addresses of
    one family.
    """
    if isinstance(bind, tuple) and len(bind) == 2 and isinstance(bind[0], str):
        binds: list[Addr] = [bind]
    else:
        binds = [(str(host), port) for host, port in bind]
    if not binds:
        raise InvalidArgument("bind: no address given")
    for _, port in binds:
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgument(f"bind port out of range: {port!r}")
    if len(binds) > 2 or len({is_ipv6(a) for a in binds}) != len(binds):
        raise InvalidArgument("bind: at most one address per family (one IPv4, one IPv6)")
    return binds


def routers_for(routers: Sequence[Addr], ipv6: bool) -> list[Addr]:
    """The routers one family joins from: names (resolved in that family) and address
    literals of that family. With none (and no saved node), the family waits to be
    contacted, as the first node of a network does."""
    out: list[Addr] = []
    for addr in routers:
        try:
            literal = ipaddress.ip_address(addr[0])
        except ValueError:
            out.append(addr)
            continue
        if (literal.version == 6) == ipv6:
            out.append(addr)
    return out


@dataclass(eq=False)
class Family:
    """One address family of a running node: its socket, core node and timer state."""

    state: NodeState
    sock: socket.socket
    address: Addr
    ipv6: bool
    rank: int
    """The family's place in the node (0: the primary, first bound)."""
    saved_nodes: tuple[NodeInfo, ...] = ()
    timer_wake: anyio.Event = field(default_factory=anyio.Event)
    timer_at: float = math.inf
    contacts: anyio.Event = field(default_factory=anyio.Event)
    """Set when this family's join handed its routers to the core (or its first round
    ended): lookups start from them."""
    notices_lost: int = 0

    @property
    def name(self) -> str:
        return "IPv6" if self.ipv6 else "IPv4"


def _peers(*lists: Sequence[Addr]) -> tuple[Addr, ...]:
    return tuple(dict.fromkeys(p for peers in lists for p in peers))


def _nodes(target: bytes, *lists: Sequence[NodeInfo]) -> tuple[NodeInfo, ...]:
    merged = {n.addr: n for nodes in lists for n in nodes}
    return tuple(sorted(merged.values(), key=lambda n: distance(n.id, target)))


def merge_terminal(first: TerminalEvent, other: TerminalEvent) -> TerminalEvent:
    """One terminal event for a lookup run in both families (``first``'s op id): peers
    and nodes of both (nodes by distance), stores counted in both, and of two items the
    one with the higher ``seq``. Events of other kinds: ``first``."""
    if isinstance(first, LookupDone) and isinstance(other, LookupDone):
        merged = replace(
            first,
            nodes=_nodes(first.target, first.nodes, other.nodes),
            peers=_peers(first.peers, other.peers),
            queried=first.queried + other.queried,
        )
        if isinstance(merged, ScrapeDone) and isinstance(other, ScrapeDone):
            return replace(merged, result=merge_results(merged.result, other.result))
        return merged
    if isinstance(first, AnnounceDone) and isinstance(other, AnnounceDone):
        return replace(
            first, accepted=first.accepted + other.accepted, peers=_peers(first.peers, other.peers)
        )
    if isinstance(first, GetDone) and isinstance(other, GetDone):
        item = first.item
        if other.item is not None and (item is None or (other.item.seq or 0) > (item.seq or 0)):
            item = other.item
        return replace(first, item=item, nodes=_nodes(first.target, first.nodes, other.nodes))
    if isinstance(first, PutDone) and isinstance(other, PutDone):
        seqs = [s for s in (first.seq, other.seq) if s is not None]
        return replace(
            first,
            accepted=first.accepted + other.accepted,
            seq=max(seqs) if seqs else None,
            errors=first.errors + other.errors,
        )
    return first


class MergedWaiter(_Waiter):
    """The waiter of one lookup started in several families: their progress events as
    they come, then one terminal event (:func:`merge_terminal`) once all have ended
    (``rank``: the family's place in the merge, the primary's first)."""

    __slots__ = ("_ends", "_expected")

    def __init__(self, expected: int) -> None:
        super().__init__()
        self._expected = expected
        self._ends: dict[int, TerminalEvent] = {}

    def push_from(self, rank: int, event: Event) -> None:
        if not is_terminal(event):
            self.push(event, False)
            return
        self._ends[rank] = event
        if len(self._ends) == self._expected:
            ends = [self._ends[r] for r in sorted(self._ends)]
            merged = ends[0]
            for end in ends[1:]:
                merged = merge_terminal(merged, end)
            self.push(merged, True)


def sync_ids(changed: NodeState, other: NodeState, now: float) -> bool:
    """Keep one node id for both families while BEP 42 allows it.

    Both families start with the same id. When IP voting makes one family regenerate its
    id for its external address (the core's BEP 42 vote), ``other`` takes the new id too
    unless its own external address is public and the new id is not valid for it: then
    the two ids differ, each valid for its own address, as libtorrent keeps one id per
    listen socket (an IPv4 and an IPv6 address share a valid id only by chance, 2^-21
    with BEP 42's 21-bit prefixes). Returns whether ``other``'s id changed.
    """
    new_id = changed.node_id
    if other.node_id == new_id:
        return False
    ip = other.external_ip
    if ip is not None and not bep42.is_exempt(ip) and not bep42.is_valid_node_id(new_id, ip):
        return False
    other.set_node_id(new_id, now)
    return True
