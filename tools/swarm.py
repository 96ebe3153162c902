"""A local DHT swarm: N mldht nodes in one process, on distinct loopback addresses.

Each node gets its own 127.x.y.z address (every 127/8 address works on Linux loopback
without configuration), so per-IP rules (rate limits, one node per IP) behave as on a
real network. Node 0 starts alone; every later node bootstraps from a few nodes started
before it, chosen with a seeded RNG. Then M random info-hashes are announced from random
nodes, and the swarm serves until its run time ends.

As a program::

    python tools/swarm.py --nodes 300 --infohashes 1000 --duration 600

prints ``bootstrap HOST:PORT`` once the swarm is ready (point ``tools/crawl.py
--bootstrap`` at it), then serves for ``--duration`` seconds or until Ctrl-C.

As a library (tests, ``bench/``)::

    async with Swarm(300, infohashes=1000, seed=1) as swarm:
        print(swarm.bootstrap_address)

Uses the public API of mldht only.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import random
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, NoReturn

import anyio
import anyio.abc

from mldht import MldhtError
from mldht.runtime import DHTNode, format_addr, run

__all__ = ["Swarm", "SwarmError", "add_arguments", "main", "swarm_host"]

Addr = tuple[str, int]

DEFAULT_PREFIX = "127.77"
"""First two octets of the swarm's addresses (127.0.0.x is left to other tests)."""

DEFAULT_SAMPLE_INTERVAL = 10
"""The program's BEP 51 interval: short, so a crawl of a test swarm can sample twice."""

JOIN_CONTACTS = 3
"""How many earlier nodes each new node bootstraps from."""


class SwarmError(MldhtError):
    """The swarm could not be built (bad size, addresses, or a network that did not form)."""


def swarm_host(prefix: str, index: int) -> str:
    """The loopback address of node ``index``: ``PREFIX.(index // 254).(index % 254 + 1)``.

    The last octet avoids 0 and 255, so no address is a /24's network or broadcast one.
    """
    third, fourth = divmod(index, 254)
    if third > 255:
        raise SwarmError(f"too many nodes for prefix {prefix}: at most {256 * 254}")
    host = f"{prefix}.{third}.{fourth + 1}"
    if not ipaddress.IPv4Address(host).is_loopback:
        raise SwarmError(f"{host} is not a loopback address (the prefix must be 127.x)")
    return host


class Swarm:
    """``size`` DHT nodes in this process, joined into one network; an async context manager.

    * ``infohashes``: how many random info-hashes to announce (each from a random node,
      with a random port), after every node joined.
    * ``seed``: seeds the choice of bootstrap contacts, info-hashes and announcers (node
      ids come from each node's own RNG).
    * ``prefix``: the 127.x the addresses start with (see :func:`swarm_host`).
    * ``ready_timeout``: bound on forming the network and announcing, in seconds
      (default: 120, or 0.1 s per node for larger swarms).
    * ``tunables``: passed to every :class:`~mldht.runtime.DHTNode` (``sample_interval``,
      ``query_timeout``, ...).
    """

    def __init__(
        self,
        size: int,
        *,
        infohashes: int = 0,
        seed: int = 0,
        prefix: str = DEFAULT_PREFIX,
        ready_timeout: float | None = None,
        join_contacts: int = JOIN_CONTACTS,
        **tunables: Any,
    ) -> None:
        if size < 1:
            raise SwarmError(f"a swarm needs at least one node, got {size}")
        if infohashes < 0:
            raise SwarmError(f"infohashes must be >= 0, got {infohashes}")
        swarm_host(prefix, size - 1)  # checks the prefix and the size early
        self.size = size
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
        self._stack: AsyncExitStack | None = None
        self.ready_at: float | None = None
        """anyio time at which every node had joined (before the announces)."""

    @property
    def bootstrap_address(self) -> Addr:
        """The address of node 0, a good first contact for a crawler."""
        if not self.nodes:
            raise SwarmError("the swarm is not running")
        return self.nodes[0].address

    async def __aenter__(self) -> Swarm:
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
                raise SwarmError(
                    f"the swarm was not ready within {self.ready_timeout:g} s (still "
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

    async def _start(self, stack: AsyncExitStack, deadline: float) -> None:
        # Each node runs in a task of its own under one task group. Entered one inside the
        # other, the nodes' task groups nest N deep and anyio walks that chain at every
        # checkpoint: a 5,000-node swarm never formed (bench/crawl.py profile).
        tg = await stack.enter_async_context(anyio.create_task_group())
        stop = anyio.Event()
        stack.callback(stop.set)  # runs first on close: every node leaves its block
        for i in range(self.size):
            host = swarm_host(self.prefix, i)
            k = min(i, self.join_contacts)
            contacts = [n.address for n in self._rng.sample(self.nodes, k)] if k else []
            node = DHTNode(bind=(host, 0), bootstrap=contacts, **self.tunables)
            self.nodes.append(await tg.start(self._serve, node, stop))
        # A node is ready once one of its contacts answered its self-lookup.
        for i, node in enumerate(self.nodes[1:], 1):
            if not await node.wait_ready(max(0.0, deadline - anyio.current_time())):
                raise SwarmError(
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

    def holders(self, infohash: bytes) -> list[DHTNode]:
        """The swarm nodes that store peers of ``infohash``."""
        return [n for n in self.nodes if infohash in n.state.peer_store]

    def summary(self) -> dict[str, Any]:
        """JSON-able facts about the running swarm."""
        stored = [len(n.state.peer_store) for n in self.nodes]
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
            "routing_table_size_mean": sum(len(n.state.routing) for n in self.nodes)
            / len(self.nodes),
        }


# ------------------------------------------------------------------------ program


class _Parser(argparse.ArgumentParser):
    """Bad input gives one line naming it, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _prefix(text: str) -> str:
    parts = text.split(".")
    if len(parts) != 2 or parts[0] != "127" or not parts[1].isdigit() or int(parts[1]) > 255:
        raise argparse.ArgumentTypeError(f"expected 127.N (N in 0-255), got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The swarm's options, for this program or a ``swarm`` subcommand."""
    parser.add_argument(
        "--nodes", type=_positive_int, default=100, metavar="N", help="nodes (default 100)"
    )
    parser.add_argument(
        "--infohashes",
        type=_count,
        default=0,
        metavar="M",
        help="random info-hashes to announce (default 0)",
    )
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="serve this long once ready, then exit (default 600)",
    )
    parser.add_argument(
        "--seed", type=_count, default=0, help="seed of the swarm's random choices (default 0)"
    )
    parser.add_argument(
        "--prefix",
        type=_prefix,
        default=DEFAULT_PREFIX,
        help=f"addresses are PREFIX.x.y (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--sample-interval",
        type=_count,
        default=DEFAULT_SAMPLE_INTERVAL,
        metavar="SECONDS",
        help=(
            "BEP 51 interval the nodes give, after which a crawler may sample them again "
            f"(default {DEFAULT_SAMPLE_INTERVAL}; real nodes use 21600)"
        ),
    )
    parser.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="give up if the swarm is not formed by then (default: 120, or 0.1 s per node)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="swarm.py",
        description="Run a local DHT swarm of mldht nodes on loopback addresses.",
    )
    add_arguments(parser)
    return parser


def _print(line: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        print(line, flush=True)


async def serve(args: argparse.Namespace) -> int:
    """Build the swarm, print its bootstrap address, serve until the time or a signal."""
    tunables: dict[str, Any] = {"sample_interval": args.sample_interval}
    started = time.monotonic()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Swarm(
            args.nodes,
            infohashes=args.infohashes,
            seed=args.seed,
            prefix=args.prefix,
            ready_timeout=args.ready_timeout,
            **tunables,
        ) as swarm:
            boot = format_addr(swarm.bootstrap_address)
            info = swarm.summary()
            info["ready_after_s"] = round(time.monotonic() - started, 2)
            if args.json:
                _print(json.dumps({"event": "ready", **info}))
            else:
                _print(f"bootstrap {boot}")
                _print(
                    f"{info['nodes']} nodes, {info['infohashes']} info-hashes announced "
                    f"({info['announces_accepted']} stores), ready in {info['ready_after_s']} s"
                )
            with anyio.move_on_after(args.duration):
                async for _ in signals:
                    break
    _print(json.dumps({"event": "stopped"}) if args.json else "stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the swarm program; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(serve, args)
    except KeyboardInterrupt:
        return 130
    except (MldhtError, OSError) as exc:
        sys.stderr.write(f"swarm.py: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
