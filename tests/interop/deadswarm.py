"""A loopback swarm of mldht and libtorrent nodes of which a fifth then die.

Used by ``test_lookup_dead.py`` and ``bench/lookup_dead.py``. Dead nodes are black holes:
once a node has joined, announced and been learned by the others, it is closed and a
plain UDP socket is bound to its address that reads and never answers (as a vanished
host behind a NAT: no ICMP error, the query simply gets no answer). The socket counts
the datagrams it swallowed, so a test can see that the dead were asked.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from mldht import DHTNode
from mldht.core.compact import Addr

from .aio import call
from .lt import LtNode

__all__ = ["BlackHole", "DeadSwarm", "build_dead_swarm"]


class BlackHole:
    """A UDP socket on a dead node's address: reads datagrams, never answers."""

    def __init__(self, addr: Addr) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(addr)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.swallowed: dict[Addr, int] = {}

    def drain(self) -> dict[Addr, int]:
        """Read what arrived (bounded); returns the count per sender so far."""
        for _ in range(100_000):
            try:
                _, src = self.sock.recvfrom(2048)
            except BlockingIOError:
                break
            self.swallowed[src] = self.swallowed.get(src, 0) + 1
        return self.swallowed

    def close(self) -> None:
        self.sock.close()


@dataclass
class DeadSwarm:
    """The live nodes, the dead addresses (black holes) and the announced info-hashes."""

    ours: list[DHTNode]
    lts: list[LtNode]
    holes: list[BlackHole]
    infohashes: list[bytes]
    peers: dict[bytes, Addr] = field(default_factory=dict)

    @property
    def live_addresses(self) -> list[Addr]:
        return [n.address for n in self.ours] + [lt.addr for lt in self.lts]

    def asked_dead(self, searcher: Addr) -> int:
        """Datagrams ``searcher`` sent to dead addresses so far."""
        return sum(h.drain().get(searcher, 0) for h in self.holes)


async def build_dead_swarm(
    stack: AsyncExitStack,
    make_lt: Callable[[], LtNode],
    next_addr: Callable[[], Addr],
    *,
    ours: int = 24,
    lts: int = 6,
    dead_ours: int = 4,
    dead_lts: int = 2,
    infohashes: int = 8,
    seed: int = 13,
    tunables: dict[str, Any] | None = None,
) -> DeadSwarm:
    """Start ``ours`` mldht and ``lts`` libtorrent nodes on loopback, join them, announce
    ``infohashes`` info-hashes from live-to-be mldht nodes, then kill ``dead_ours`` mldht
    and ``dead_lts`` libtorrent nodes (their addresses become black holes). Everything is
    closed with ``stack``."""
    rng = random.Random(seed)
    opts = dict(tunables or {})
    nodes: list[DHTNode] = []
    # Each node runs in a task of its own until its stop event (it may die before the
    # others: cancel scopes entered one inside the other must close in reverse order).
    tg = await stack.enter_async_context(anyio.create_task_group())
    stops: list[anyio.Event] = []
    for i in range(ours):
        contacts = [n.address for n in rng.sample(nodes, min(3, len(nodes)))]
        stop = anyio.Event()
        stack.callback(stop.set)
        node = DHTNode(bind=next_addr(), bootstrap=contacts, **opts)
        nodes.append(await tg.start(_serve, node, stop))
        stops.append(stop)
        if i:
            await node.wait_ready(10)
    lt_nodes: list[LtNode] = []
    for _ in range(lts):
        lt = await call(make_lt)
        for n in rng.sample(nodes, 4):
            await call(lt.add_node, n.address)
        lt_nodes.append(lt)
    # Let every table fill: each node looks itself and a few random ids up.
    for node in nodes:
        await node.find_node(node.node_id)
    for node in nodes:
        await node.find_node(rng.randbytes(20))
    dead_our = rng.sample(range(ours), dead_ours)
    dead_lt = rng.sample(range(lts), dead_lts)
    live = [n for i, n in enumerate(nodes) if i not in dead_our]
    swarm = DeadSwarm(live, [lt for i, lt in enumerate(lt_nodes) if i not in dead_lt], [], [])
    for j in range(infohashes):
        ih = rng.randbytes(20)
        announcer = rng.choice(live)
        port = 20_000 + j
        await announcer.announce(ih, port)
        swarm.infohashes.append(ih)
        swarm.peers[ih] = (announcer.address[0], port)
    # Die: close the nodes, then black-hole their addresses.
    dead_addrs = [nodes[i].address for i in dead_our]
    for i in dead_our:
        stops[i].set()
    await anyio.sleep(0.2)
    for i in dead_lt:
        dead_addrs.append(lt_nodes[i].addr)
        await call(lt_nodes[i].close)
    for addr in dead_addrs:
        hole = await _black_hole(addr)
        stack.callback(hole.close)
        swarm.holes.append(hole)
    return swarm


async def _serve(
    node: DHTNode, stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[DHTNode]
) -> None:
    async with node:
        task_status.started(node)
        await stop.wait()


async def _black_hole(addr: Addr) -> BlackHole:
    """Bind a black hole on ``addr`` once the closed node's socket is gone (bounded)."""
    for _ in range(50):
        try:
            return BlackHole(addr)
        except OSError:  # libtorrent tears its session down in the background
            await anyio.sleep(0.1)
    return BlackHole(addr)
