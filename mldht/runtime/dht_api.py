"""The BEP 5 methods of :class:`~mldht.runtime.node.DHTNode` and what it shows of itself.

:class:`DHTAPI` is a mixin of :class:`DHTNode`, as :class:`~mldht.runtime.item_api.ItemAPI`
is for BEP 44: ``ping``, ``find_node``, ``get_peers`` / ``iter_peers``, ``announce`` and
``sample_infohashes`` run over the node's operation primitive (:meth:`DHTNode.operation`),
and the inspection methods (stored peers and items, the routing table, a dump) read the
core without touching the network. The I/O loop stays in :mod:`mldht.runtime.node`.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from ..core.compact import Addr, NodeInfo
from ..core.events import AnnounceDone, Event, Item, LookupDone, PingDone, SampleDone
from ..core.scrape import ScrapeDone, ScrapeResult
from ..errors import InvalidArgument, QueryTimeout
from . import bootstrap as _bootstrap
from .items import as_id, as_infohash, as_target
from .operation import Operation, PeerIterator

if TYPE_CHECKING:
    from ..core.config import NodeConfig
    from ..core.node import NodeState
    from ..core.routing import RoutingTable
    from .families import Family
    from .operation import StartOp

__all__ = ["DHTAPI", "format_addr"]


def format_addr(addr: Addr) -> str:
    """``HOST:PORT``, with IPv6 hosts in brackets (``[::1]:6881``)."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _now() -> float:
    return time.time()


class DHTAPI:
    """BEP 5 operations and inspection of :class:`~mldht.runtime.node.DHTNode`."""

    config: NodeConfig
    _fams: list[Family]

    # provided by DHTNode
    @property
    def _state(self) -> NodeState:
        raise NotImplementedError

    @property
    def address(self) -> Addr:
        raise NotImplementedError

    @property
    def stats(self) -> dict[str, int]:
        raise NotImplementedError

    async def _run(
        self,
        start: StartOp,
        *,
        lookup: bool = False,
        store: bool = False,
        at: Addr | None = None,
    ) -> Event:
        raise NotImplementedError

    def operation(
        self,
        start: StartOp,
        *,
        lookup: bool = False,
        store: bool = False,
        at: Addr | None = None,
    ) -> Operation:
        raise NotImplementedError

    def _socket_families(self) -> list[socket.AddressFamily]:
        raise NotImplementedError

    def _tables(self) -> list[RoutingTable]:
        """The routing table of each address family (the primary first)."""
        if not self._fams:
            return [self._state.routing]  # raises NotRunning before the start
        return [fam.state.routing for fam in self._fams]

    # ------------------------------------------------------------ inspection

    def stored_peers(self, info_hash: bytes | str) -> list[Addr]:
        """The peers of ``info_hash`` that other nodes announced to this node (no lookup;
        both families' on a dual-stack node, the primary's first)."""
        ih = as_infohash(info_hash)
        store = self._state.peer_store
        peers: list[Addr] = []
        for fam in self._fams or []:
            peers += store.get_peers(
                ih,
                _now(),
                self.config.max_peers_per_infohash,
                family=6 if fam.ipv6 else 4,
                max_bytes=1 << 30,
            )
        return peers

    def stored_item(self, target: bytes | str) -> Item | None:
        """The BEP 44 item this node's own store holds for ``target`` (no lookup)."""
        stored = self._state.items.get(as_target(target), _now())
        if stored is None:
            return None
        return Item(stored.target, stored.v_bencoded, stored.k, stored.salt, stored.seq, stored.sig)

    def routing_nodes(self) -> list[NodeInfo]:
        """The live nodes of the routing table (replacement caches not included; both
        tables of a dual-stack node)."""
        return [node for table in self._tables() for node in table]

    def knows(self, node_id: bytes) -> bool:
        """Whether a live entry of the routing table (either, dual-stack) has ``node_id``."""
        return any(bytes(node_id) in table for table in self._tables())

    def closest_nodes(self, target: bytes, count: int = 8) -> list[NodeInfo]:
        """The ``count`` nodes of our own table closest to ``target`` (no lookup; on a
        dual-stack node ``count`` of each family's, the primary's first)."""
        tid = as_id(target)
        return [node for table in self._tables() for node in table.closest(tid, count)]

    def routing_table_snapshot(self) -> dict[str, Any]:
        """The routing table as a JSON-able dict (buckets, nodes, replacements)."""
        return self._state.routing.snapshot(_now())

    def dump_state(self) -> dict[str, Any]:
        """A JSON-able dump of the node: id, address, table, store sizes, counters."""
        out = self._state.snapshot(_now())
        out["address"] = format_addr(self.address)
        out["read_only"] = self.config.read_only
        out["stats"] = dict(out.get("stats", {}), **self.stats)
        if len(self._fams) > 1:  # dual stack: each family's address, id and table
            out["families"] = [
                {
                    "family": fam.name,
                    "address": format_addr(fam.address),
                    "id": fam.state.node_id.hex(),
                    "external_ip": fam.state.external_ip,
                    "nodes": len(fam.state.routing),
                }
                for fam in self._fams
            ]
        return out

    # ------------------------------------------------------------ BEP 5

    async def _resolve(self, addr: Addr) -> Addr:
        """``addr`` as an address of a family the node is bound to (the primary's first)."""
        for family in self._socket_families():
            found = await _bootstrap.resolve(addr, family)
            if found:
                return found[0]
        if ":" in addr[0] and socket.AF_INET6 not in self._socket_families():
            raise InvalidArgument(f"cannot reach {format_addr(addr)}: no IPv6 address bound")
        raise InvalidArgument(f"cannot resolve {format_addr(addr)} to an address")

    async def ping(self, addr: Addr) -> bytes:
        """Ping ``addr`` (host, port); returns the remote node id.

        Raises :class:`QueryTimeout` when it does not answer in ``query_timeout``.
        """
        target = await self._resolve(addr)
        event = await self._run(lambda state, now: state.ping(target, now), at=target)
        assert isinstance(event, PingDone)
        if event.node_id is None:
            raise QueryTimeout(f"no answer from {format_addr(target)}")
        return event.node_id

    async def add_node(self, addr: Addr) -> bytes:
        """Ping ``addr``; it enters the routing table if it answers. Returns its id.

        Raises :class:`QueryTimeout` when it does not answer.
        """
        target = await self._resolve(addr)
        event = await self._run(lambda state, now: state.add_node(target, now), at=target)
        assert isinstance(event, PingDone)
        if event.node_id is None:
            raise QueryTimeout(f"no answer from {format_addr(target)}")
        return event.node_id

    async def find_node(self, target: bytes) -> list[NodeInfo]:
        """Iterative find_node: the closest nodes to ``target`` that answered (a
        dual-stack node looks in both families: both sets, by distance)."""
        tid = as_id(target)
        event = await self._run(lambda state, now: state.find_node(tid, now), lookup=True)
        assert isinstance(event, LookupDone)
        return list(event.nodes)

    async def get_peers(self, info_hash: bytes | str) -> list[Addr]:
        """Iterative get_peers: every peer found, as (ip, port), in the order found (a
        dual-stack node looks in both families and finds peers of both).

        ``info_hash`` is 20 bytes, or text: 40 hex digits, 32 base32 or a magnet URI.
        """
        return [peer async for peer in self.iter_peers(info_hash)]

    def iter_peers(self, info_hash: bytes | str) -> PeerIterator:
        """Stream the peers of ``info_hash`` as nodes return them (each once)::

        async for ip, port in node.iter_peers(info_hash): ...
        """
        return PeerIterator(self, as_infohash(info_hash))

    async def announce(
        self, info_hash: bytes | str, port: int | None = None, *, seed: bool = False
    ) -> int:
        """Announce that we are a peer of ``info_hash``; returns how many nodes accepted
        (a dual-stack node announces in both families: their sum).

        ``port=None`` sends ``implied_port=1``: the receivers use our UDP source port.
        ``seed=True`` announces a seed (BEP 33 ``seed=1``: counted in scrapes' seeds).
        """
        ih = as_infohash(info_hash)
        if port is not None and not 0 < port < 65536:
            raise InvalidArgument(f"port out of range (1-65535): {port}")
        event = await self._run(
            lambda state, now: state.announce(ih, port, now, seed=seed), lookup=True, store=True
        )
        assert isinstance(event, AnnounceDone)
        return event.accepted

    async def scrape(self, info_hash: bytes | str) -> ScrapeResult:
        """BEP 33 scrape: estimated seeds and peers of ``info_hash``.

        A get_peers lookup with ``scrape=1``; the seed and peer filters of every node that
        answered are merged (OR) and counted with BEP 33's estimate (exact for a few IPs
        unless two share a bit, within 10% up to 3,000 at three standard deviations;
        ``result.saturated`` when a filter is full, about 7,800 or more).
        ``result.nodes`` is how many nodes contributed: 0 means no node stores it.
        """
        ih = as_infohash(info_hash)
        event = await self._run(lambda state, now: state.scrape(ih, now), lookup=True)
        assert isinstance(event, ScrapeDone) and event.result is not None
        return event.result

    async def sample_infohashes(self, addr: Addr, target: bytes) -> SampleDone:
        """BEP 51 query to one node. ``node_id`` of the result is None if it did not answer."""
        return await self._ask_one(addr, target, sample=True)

    async def query_find_node(self, addr: Addr, target: bytes) -> SampleDone:
        """One find_node query to one node (not a lookup): its closest nodes to ``target``
        in ``nodes`` of the result (no samples); ``node_id`` None if it did not answer."""
        return await self._ask_one(addr, target, sample=False)

    async def _ask_one(self, addr: Addr, target: bytes, *, sample: bool) -> SampleDone:
        tid = as_id(target)
        dest = await self._resolve(addr)

        def start(state: NodeState, now: float) -> int:
            if sample:
                return state.sample_infohashes(dest, tid, now)
            return state.query_find_node(dest, tid, now)

        event = await self._run(start, at=dest)
        assert isinstance(event, SampleDone)
        return event
