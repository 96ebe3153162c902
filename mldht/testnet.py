"""Testnet: a private DHT of N nodes on loopback, in this process, for tests and demos.

::

    async with mldht.Testnet(10) as net:
        async with mldht.DHTNode(bind=("127.0.0.1", 0), bootstrap=net.bootstrap) as node:
            await node.announce(info_hash, 6881)

By default each node gets its own loopback address (``127.77.0.1``, ``127.77.0.2``, ...:
on Linux every 127/8 address works without configuration), so per-IP rules (rate
limits, quotas) behave as between hosts. ``host="127.0.0.1"`` puts every node on one
address with its own port instead, as a private network on one machine does (the routing
table counts loopback and private addresses per ip:port, public ones per IP).

Node 0 starts alone; every later node bootstraps from a few nodes started before it
(chosen with a seeded RNG). The context manager returns once every node has joined; then
``infohashes`` random info-hashes are announced from random nodes. Uses the public API of
:class:`~mldht.runtime.DHTNode` only.
"""

from __future__ import annotations

import ipaddress
import random
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from .core.compact import Addr
from .errors import InvalidArgument, MldhtError, NotRunning
from .runtime import DHTNode, format_addr

__all__ = ["DEFAULT_PREFIX", "Testnet", "TestnetError", "loopback_host"]

DEFAULT_PREFIX = "127.77"
"""First two octets of the nodes' addresses (127.0.0.x is left to other programs)."""

JOIN_CONTACTS = 3
"""How many earlier nodes each new node bootstraps from."""

BOOTSTRAP_SIZE = 4
"""How many node addresses :attr:`Testnet.bootstrap` gives."""


class TestnetError(MldhtError):
    """The network did not form in time (or a node could not start)."""

    __test__ = False  # not a pytest test class, despite the name


def loopback_host(prefix: str, index: int) -> str:
    """The loopback address of node ``index``: ``PREFIX.(index // 254).(index % 254 + 1)``.

    The last octet avoids 0 and 255, so no address is a /24's network or broadcast one.
    """
    third, fourth = divmod(index, 254)
    if third > 255:
        raise InvalidArgument(f"too many nodes for prefix {prefix}: at most {256 * 254}")
    host = f"{prefix}.{third}.{fourth + 1}"
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidArgument(f"{host} is not a loopback address (the prefix must be 127.N)")
    return host


class Testnet:
    """``size`` DHT nodes joined into one network; an async context manager.

    * ``host``: bind every node to this address (each on its own port); ``None`` gives
      each node its own address under ``prefix`` (see :func:`loopback_host`).
    * ``infohashes``: how many random info-hashes to announce (each from a random node,
      with a random port) once every node joined; see :attr:`infohashes`.
    * ``seed``: seeds the choice of bootstrap contacts, info-hashes and announcers (node
      ids come from each node's own RNG).
    * ``ready_timeout``: bound on forming the network and announcing, in seconds
      (default: 120, or 0.1 s per node for larger networks).
    * ``tunables``: passed to every :class:`~mldht.runtime.DHTNode` (``query_timeout``,
      ``sample_interval``, ...).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        size: int,
        *,
        host: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        infohashes: int = 0,
        seed: int = 0,
        ready_timeout: float | None = None,
        join_contacts: int = JOIN_CONTACTS,
        **tunables: Any,
    ) -> None:
        if size < 1:
            raise InvalidArgument(f"a testnet needs at least one node, got {size}")
        if infohashes < 0:
            raise InvalidArgument(f"infohashes must be >= 0, got {infohashes}")
        if host is None:
            loopback_host(prefix, size - 1)  # checks the prefix and the size early
        self.size = size
        self.host = host
        self.prefix = prefix
        self.ready_timeout = max(120.0, 0.1 * size) if ready_timeout is None else ready_timeout
        self.join_contacts = max(1, join_contacts)
        self.tunables = tunables
        self._rng = random.Random(seed)
        self.infohashes: list[bytes] = [self._rng.randbytes(20) for _ in range(infohashes)]
        """The info-hashes announced (in the order drawn)."""
        self.announced: dict[bytes, int] = {}
        """How many nodes accepted each announce."""
        self.nodes: list[DHTNode] = []
        """The running nodes, in the order started."""
        self.ready_at: float | None = None
        """anyio time at which every node had joined (before the announces)."""
        self._stack: AsyncExitStack | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def addresses(self) -> list[Addr]:
        """The (host, port) of every node."""
        return [n.address for n in self.nodes]

    @property
    def bootstrap(self) -> list[Addr]:
        """Addresses of the first few nodes: a ``bootstrap=`` list for a new node."""
        if not self.nodes:
            raise NotRunning("the testnet is not running (use it with 'async with')")
        return self.addresses[:BOOTSTRAP_SIZE]

    @property
    def bootstrap_address(self) -> Addr:
        """The address of node 0, a good first contact for a crawler."""
        return self.bootstrap[0]

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Testnet:
        if self._stack is not None:
            raise NotRunning("a Testnet can be entered only once")
        self._stack = AsyncExitStack()
        # Nodes are entered outside any cancel scope (each holds a task group that
        # outlives this call); only the waits are bounded.
        deadline = anyio.current_time() + self.ready_timeout
        try:
            await self._start(self._stack, deadline)
            self.ready_at = anyio.current_time()
            with anyio.move_on_after(deadline - anyio.current_time()) as scope:
                await self._announce_all()
            if scope.cancelled_caught:
                raise TestnetError(
                    f"the testnet was not ready within {self.ready_timeout:g} s (still "
                    f"announcing {len(self.infohashes)} info-hashes)"
                )
        except BaseException:
            await self._stack.aclose()
            self.nodes.clear()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None
        # Closed without the body's exception: each DHTNode would wrap it in a task
        # group's ExceptionGroup, one level per node, and hide it.
        await self._stack.aclose()
        self.nodes.clear()
        return None

    async def _serve(
        self, node: DHTNode, stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[DHTNode]
    ) -> None:
        async with node:
            task_status.started(node)
            await stop.wait()

    def _host(self, index: int) -> str:
        return self.host if self.host is not None else loopback_host(self.prefix, index)

    async def _start(self, stack: AsyncExitStack, deadline: float) -> None:
        # Each node runs in a task of its own under one task group. Entered one inside the
        # other, the nodes' task groups nest N deep and anyio walks that chain at every
        # checkpoint: a 5,000-node network never formed.
        tg = await stack.enter_async_context(anyio.create_task_group())
        stop = anyio.Event()
        stack.callback(stop.set)  # runs first on close: every node leaves its block
        for i in range(self.size):
            k = min(i, self.join_contacts)
            contacts = [n.address for n in self._rng.sample(self.nodes, k)] if k else []
            node = DHTNode(bind=(self._host(i), 0), bootstrap=contacts, **self.tunables)
            self.nodes.append(await tg.start(self._serve, node, stop))
        # A node is ready once one of its contacts answered its self-lookup.
        for i, node in enumerate(self.nodes[1:], 1):
            if not await node.wait_ready(max(0.0, deadline - anyio.current_time())):
                raise TestnetError(
                    f"node {i} ({format_addr(node.address)}) did not join within "
                    f"{self.ready_timeout:g} s"
                )

    async def _announce_all(self) -> None:
        limit = anyio.CapacityLimiter(64)

        async def one(ih: bytes, node: DHTNode, port: int) -> None:
            async with limit:
                self.announced[ih] = await node.announce(ih, port)

        async with anyio.create_task_group() as tg:
            for ih in self.infohashes:
                tg.start_soon(
                    one, ih, self._rng.choice(self.nodes), self._rng.randrange(1024, 65536)
                )

    # ------------------------------------------------------------------ inspection

    async def wait_tables(self, size: int | None = None, timeout: float = 10.0) -> None:
        """Wait until every routing table holds ``size`` nodes (default: every other node,
        at most what one table can hold); raise :class:`TestnetError` after ``timeout``."""
        want = min(self.size - 1, 8 * 20) if size is None else size
        with anyio.move_on_after(timeout):
            while not all(n.stats["nodes"] >= want for n in self.nodes):
                await anyio.sleep(0.02)
        sizes = [n.stats["nodes"] for n in self.nodes]
        if min(sizes) < want:
            raise TestnetError(
                f"routing tables did not reach {want} nodes within {timeout:g} s "
                f"(smallest {min(sizes)})"
            )

    def holders(self, infohash: bytes) -> list[DHTNode]:
        """The nodes that store peers of ``infohash``."""
        return [n for n in self.nodes if n.stored_peers(infohash)]

    def summary(self) -> dict[str, Any]:
        """JSON-able facts about the running network."""
        stats = [n.stats for n in self.nodes]
        stored = [s["stored_infohashes"] for s in stats]
        return {
            "bootstrap": format_addr(self.bootstrap_address),
            "nodes": len(self.nodes),
            "infohashes": len(self.infohashes),
            "announces_accepted": sum(self.announced.values()),
            "stored_infohashes_per_node": {
                "min": min(stored),
                "mean": sum(stored) / len(stored),
                "max": max(stored),
            },
            "routing_table_size_mean": sum(s["nodes"] for s in stats) / len(stats),
        }
