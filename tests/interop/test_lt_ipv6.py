"""libtorrent over the IPv6 loopback (BEP 32): our dual-stack nodes (127.0.N.1 and
[::1]) and a libtorrent session on [::1] find each other and each other's announces.

Only ::1 exists as an IPv6 loopback address here, so every IPv6 node is ::1 on its own
port: libtorrent's one-node-per-IP rules are off (``dht_restrict_routing_ips``,
``dht_restrict_search_ips``: :func:`~tests.interop.lt.loopback_settings`), and ours count
local addresses per ip:port.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from mldht import DHTNode
from mldht.core.compact import Addr
from mldht.runtime.udp import has_ipv6

from .aio import call, wait_for
from .conftest import in_ci
from .lt import LtNode

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}


@pytest.fixture(autouse=True)
def _needs_ipv6() -> None:
    """Skip where ::1 cannot be bound; fail under CI (its machines have ::1)."""
    if has_ipv6():
        return
    if in_ci():
        pytest.fail("this host cannot bind [::1], which CI machines have", pytrace=False)
    pytest.skip("this host cannot bind [::1]")


def free_port6(attempts: int = 50) -> int:
    """A port free on ::1 for UDP and TCP alike (libtorrent listens on both)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            udp.bind(("::1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("::1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP on ::1")


async def dual_node(
    stack: AsyncExitStack, loopback: Callable[[], Addr], bootstrap: list[Addr]
) -> DHTNode:
    """One of our nodes on a fresh 127.0.N.1 and on [::1]."""
    bind = [loopback(), ("::1", 0)]
    return await stack.enter_async_context(DHTNode(bind=bind, bootstrap=bootstrap, **FAST))


def v6(node: DHTNode) -> Addr:
    return node.addresses[1]


def knows_at(node: DHTNode, node_id: bytes, addr: Addr) -> bool:
    return any(n.id == node_id and n.addr == addr for n in node.routing_nodes())


async def test_libtorrent_on_ipv6_bootstraps_from_our_dual_node(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    async with AsyncExitStack() as stack:
        ours = await dual_node(stack, loopback, [])
        lt = await call(make_lt, ("::1", free_port6()))
        await call(lt.add_node, v6(ours))
        found = await call(lt.wait_for_node, v6(ours), 15)
        assert found is not None and found.id == ours.node_id, "libtorrent took us in over IPv6"
        await wait_for(
            lambda: knows_at(ours, lt.node_id, lt.addr), 10, "libtorrent in our IPv6 table"
        )
        assert ours.stats["nodes_ipv4"] == 0  # it came over IPv6 only


async def _network(
    stack: AsyncExitStack, make_lt: MakeLt, loopback: Callable[[], Addr]
) -> tuple[DHTNode, DHTNode, LtNode]:
    """Two dual nodes of ours and libtorrent on [::1], all in each other's IPv6 tables."""
    a = await dual_node(stack, loopback, [])
    b = await dual_node(stack, loopback, a.addresses)
    lt = await call(make_lt, ("::1", free_port6()))
    for n in (a, b):
        await call(lt.add_node, v6(n))
    for n in (a, b):
        assert await call(lt.wait_for_node, v6(n), 15) is not None
    await wait_for(
        lambda: all(knows_at(n, lt.node_id, lt.addr) for n in (a, b)),
        15,
        "libtorrent in our IPv6 tables",
    )
    return a, b, lt


async def test_libtorrent_announces_over_ipv6_we_find_it(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    infohash = random.Random("lt6-announce").randbytes(20)
    async with AsyncExitStack() as stack:
        a, b, lt = await _network(stack, make_lt, loopback)
        await call(lt.announce, infohash, 6891)
        want = ("::1", 6891)
        await wait_for(lambda: a.stats["stored_peers"] > 0, 30, "libtorrent's announce")
        assert want in a.stored_peers(infohash)
        # b's lookup runs in both families: the IPv6 one reaches libtorrent's storers
        assert want in await b.get_peers(infohash)


async def test_we_announce_over_ipv6_libtorrent_finds_us(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    infohash = random.Random("we-announce-lt6").randbytes(20)
    async with AsyncExitStack() as stack:
        a, _b, lt = await _network(stack, make_lt, loopback)
        accepted = await a.announce(infohash, 7001)
        assert accepted >= 3  # b on each family, and libtorrent
        peers = await call(lt.get_peers, infohash, 15)
        assert ("::1", 7001) in peers
