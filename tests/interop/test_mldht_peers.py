"""mldht between real clients (issue 3): libtorrent and bittorrent-dht accept our node,
find peers through it, and it finds theirs. Loopback only.

Each client is driven through its harness (tests/interop/lt.py, bdht.py) from a worker
thread while our node runs on the event loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from mldht import DHTNode
from mldht.core.compact import Addr

from .aio import call, wait_for
from .bdht import BdhtPeer
from .lt import LtNode

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
MakeBdht = Callable[..., BdhtPeer]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}


async def our_node(stack: AsyncExitStack, addr: Addr, bootstrap: list[Addr]) -> DHTNode:
    return await stack.enter_async_context(DHTNode(bind=addr, bootstrap=bootstrap, **FAST))


# ------------------------------------------------------------------------ libtorrent


async def test_libtorrent_bootstraps_from_us(make_lt: MakeLt, loopback: Callable[[], Addr]) -> None:
    async with AsyncExitStack() as stack:
        ours = await our_node(stack, loopback(), [])
        lt = await call(make_lt)
        await call(lt.add_node, ours.address)
        found = await call(lt.wait_for_node, ours.address, 15)
        assert found is not None and found.id == ours.node_id, "libtorrent took us in"
        # libtorrent queried us; we pinged it back and it is in our table too
        await wait_for(lambda: ours.knows(lt.node_id), 10, "libtorrent in our table")


async def _lt_network(
    stack: AsyncExitStack, make_lt: MakeLt, loopback: Callable[[], Addr]
) -> tuple[DHTNode, DHTNode, LtNode]:
    """Two of our nodes and a libtorrent node, all in each other's tables."""
    a = await our_node(stack, loopback(), [])
    b = await our_node(stack, loopback(), [a.address])
    lt = await call(make_lt)
    for n in (a, b):
        await call(lt.add_node, n.address)
    for n in (a, b):
        assert await call(lt.wait_for_node, n.address, 15) is not None
    await wait_for(lambda: all(n.knows(lt.node_id) for n in (a, b)), 15, "libtorrent in our tables")
    return a, b, lt


async def test_libtorrent_announces_we_find_it(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    infohash = random.Random("lt-announce").randbytes(20)
    async with AsyncExitStack() as stack:
        a, b, lt = await _lt_network(stack, make_lt, loopback)
        await call(lt.announce, infohash, 6891)
        want = (lt.addr[0], 6891)
        await wait_for(lambda: a.stats["stored_peers"] > 0, 30, "libtorrent's announce")
        peers = await b.get_peers(infohash)
        assert want in peers
        streamed = [p async for p in a.iter_peers(infohash)]
        assert want in streamed


async def test_we_announce_libtorrent_finds_us(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    infohash = random.Random("we-announce-lt").randbytes(20)
    async with AsyncExitStack() as stack:
        a, b, lt = await _lt_network(stack, make_lt, loopback)
        accepted = await a.announce(infohash, 7001)
        assert accepted >= 2  # b and libtorrent
        assert a.knows(lt.node_id)
        peers = await call(lt.get_peers, infohash, 15)
        assert (a.address[0], 7001) in peers
        # implied_port: libtorrent stores our UDP source port
        accepted = await b.announce(infohash)
        assert accepted >= 1
        peers = await wait_for(
            lambda: (b.address in (got := lt.get_peers(infohash, 10))) and got,
            30,
            "our implied-port announce in libtorrent's lookup",
        )
        assert b.address in peers


# -------------------------------------------------------------------- bittorrent-dht


async def test_bdht_bootstraps_from_us(make_bdht: MakeBdht, loopback: Callable[[], Addr]) -> None:
    async with AsyncExitStack() as stack:
        ours = await our_node(stack, loopback(), [])
        bd = await call(make_bdht, bootstrap=[ours.address])
        await call(bd.wait_ready, 15)
        found = await call(bd.wait_for_node, ours.address, 15)
        assert found is not None and found.id == ours.node_id, "bittorrent-dht took us in"
        await wait_for(lambda: ours.knows(bd.node_id), 10, "bdht in our table")
        # and our own lookups go through it
        assert await ours.ping(bd.addr) == bd.node_id


async def _bdht_network(
    stack: AsyncExitStack, make_bdht: MakeBdht, loopback: Callable[[], Addr]
) -> tuple[DHTNode, DHTNode, BdhtPeer]:
    a = await our_node(stack, loopback(), [])
    b = await our_node(stack, loopback(), [a.address])
    bd = await call(make_bdht, bootstrap=[a.address, b.address])
    await call(bd.wait_ready, 15)
    for n in (a, b):
        assert await call(bd.wait_for_node, n.address, 15) is not None
    await wait_for(lambda: all(n.knows(bd.node_id) for n in (a, b)), 15, "bdht in our tables")
    return a, b, bd


async def test_bdht_announces_we_find_it(make_bdht: MakeBdht, loopback: Callable[[], Addr]) -> None:
    infohash = random.Random("bdht-announce").randbytes(20)
    async with AsyncExitStack() as stack:
        _a, b, bd = await _bdht_network(stack, make_bdht, loopback)
        assert await call(bd.announce, infohash, 6892) >= 1
        peers = await b.get_peers(infohash)
        assert (bd.addr[0], 6892) in peers


async def test_we_announce_bdht_finds_us(make_bdht: MakeBdht, loopback: Callable[[], Addr]) -> None:
    infohash = random.Random("we-announce-bdht").randbytes(20)
    async with AsyncExitStack() as stack:
        a, b, bd = await _bdht_network(stack, make_bdht, loopback)
        assert await a.announce(infohash, 7002) >= 2
        assert await b.announce(infohash) >= 1  # implied_port
        peers = await call(bd.get_peers, infohash, 10)
        assert (a.address[0], 7002) in peers
        assert b.address in peers
