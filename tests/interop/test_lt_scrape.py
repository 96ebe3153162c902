"""BEP 33 scrape between mldht and libtorrent 2.1 (loopback only).

* libtorrent's scrape answers read by our client: libtorrent nodes store announces (its
  own, seeds among them, and ours made with ``seed=True``); ``DHTNode.scrape`` and
  ``mldht scrape`` merge their ``BFsd`` / ``BFpe`` into exactly the filters of the
  announced IPs.
* the same over IPv6 loopback (``[::1]``): libtorrent's filters of 16-byte addresses;
* libtorrent's seed announces stored by our nodes: ``seed=1`` from libtorrent lands in our
  ``BFsd``, its plain announce in our ``BFpe``, read back by our client.

libtorrent cannot read our filters: its get_peers traversal (src/kademlia/get_peers.cpp)
never sends ``scrape=1`` (only ``noseed=1``, when it announces as a seed), nothing in it
parses ``BFsd`` / ``BFpe`` from a reply (only dht_storage.cpp writes them), and the
Python bindings do not expose ``dht_direct_request``, through which a raw query could be
sent. So the direction "our filters, libtorrent's client" has no client to test.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from mldht import DHTNode, ScrapeResult
from mldht.core.bep33 import scrape_bloom
from mldht.core.compact import Addr
from mldht.runtime import format_addr

from .aio import call, mldht_cli, wait_for
from .lt import LtNode

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}


async def _mesh(make_lt: MakeLt, addrs: list[Addr | None]) -> list[LtNode]:
    """libtorrent nodes on ``addrs`` (None: a fresh IPv4 loopback address), each in the
    others' routing tables."""
    lts: list[LtNode] = [await call(make_lt, addr) for addr in addrs]
    for a in lts:
        for b in lts:
            if a is not b:
                await call(a.add_node, b.addr)
    for a in lts:
        for b in lts:
            if a is not b:
                assert await call(a.wait_for_node, b.addr, 20) is not None
    return lts


async def _scrape_until(
    node: DHTNode, infohash: bytes, seeds: list[str], peers: list[str], what: str
) -> ScrapeResult:
    """Scrape until the merged filters are those of ``seeds`` and ``peers`` (bounded:
    libtorrent's announces have no completion alert)."""
    want = (scrape_bloom(seeds), scrape_bloom(peers))
    last: list[ScrapeResult] = []
    with anyio.move_on_after(60):
        while True:
            result = await node.scrape(infohash)
            last.append(result)
            if (result.bf_seeds, result.bf_peers) == want:
                return result
            await anyio.sleep(0.5)
    got = last[-1] if last else None
    raise AssertionError(f"{what}: last scrape {got and (got.seeds, got.peers, got.nodes)}")


async def test_libtorrent_answers_our_scrape(make_lt: MakeLt, loopback: Callable[[], Addr]) -> None:
    infohash = random.Random("lt-scrape").randbytes(20)
    lts = await _mesh(make_lt, [None] * 4)
    boot = [lts[0].addr]
    await call(lts[1].announce, infohash, 6881, seed=True)
    await call(lts[2].announce, infohash, 6882)
    await call(lts[3].announce, infohash, 6883, seed=True)
    async with AsyncExitStack() as stack:
        # read-only (BEP 43): libtorrent keeps them out of its table, so only libtorrent
        # nodes store, and every filter read comes from libtorrent
        a, b, scraper = [
            await stack.enter_async_context(
                DHTNode(bind=loopback(), bootstrap=boot, read_only=True, **FAST)
            )
            for _ in range(3)
        ]
        assert await a.announce(infohash, 7001, seed=True) >= 1
        assert await b.announce(infohash, 7002) >= 1
        seeds = [lts[1].addr[0], lts[3].addr[0], a.address[0]]
        peers = [lts[2].addr[0], b.address[0]]
        result = await _scrape_until(scraper, infohash, seeds, peers, "libtorrent's filters")
        assert (result.seeds, result.peers) == (3, 2) and result.nodes == 4
        host = loopback()[0]
        out = await mldht_cli(
            "scrape", infohash.hex(), "--json", "--timeout", "30",
            "--bind", f"{host}:0", "--bootstrap", format_addr(lts[0].addr),
        )  # fmt: skip
        assert json.loads(out) == {"seeds": 3, "peers": 2}


async def test_libtorrent_seed_announce_counted_by_our_nodes(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    """libtorrent announces to our nodes as a seed and as a peer; then it leaves, so that
    the scrape reads our nodes' filters only."""
    infohash = random.Random("lt-seed-to-us").randbytes(20)
    async with AsyncExitStack() as stack:
        x = await stack.enter_async_context(DHTNode(bind=loopback(), bootstrap=[], **FAST))
        y = await stack.enter_async_context(DHTNode(bind=loopback(), bootstrap=[x.address], **FAST))
        seeder, leecher = await call(make_lt), await call(make_lt)
        for lt in (seeder, leecher):
            for ours in (x, y):
                await call(lt.add_node, ours.address)
            for ours in (x, y):
                assert await call(lt.wait_for_node, ours.address, 20) is not None
        await call(seeder.announce, infohash, 6881, seed=True)
        await call(leecher.announce, infohash, 6882)
        await wait_for(
            lambda: all(len(n.stored_peers(infohash)) == 2 for n in (x, y)),
            30,
            "libtorrent's announces on both our nodes",
        )
        seeds, peers = [seeder.addr[0]], [leecher.addr[0]]
        await call(seeder.close)
        await call(leecher.close)
        scraper = await stack.enter_async_context(
            DHTNode(bind=loopback(), bootstrap=[x.address], read_only=True, **FAST)
        )
        result = await _scrape_until(scraper, infohash, seeds, peers, "our nodes' filters")
        assert (result.seeds, result.peers, result.nodes) == (1, 1, 2)


def _ipv6_loopback_port() -> int:
    """A UDP and TCP port free on ::1 (libtorrent listens on both); skips without IPv6."""
    for _ in range(50):
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
                udp.bind(("::1", 0))
                port: int = udp.getsockname()[1]
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp:
                    tcp.bind(("::1", port))
                    return port
        except OSError as exc:
            if exc.errno in (socket.EAI_FAMILY, 97, 99):  # no IPv6 on this host
                pytest.skip(f"no IPv6 loopback: {exc}")
    raise RuntimeError("no port free for both UDP and TCP on ::1")


async def test_libtorrent_answers_our_scrape_over_ipv6(make_lt: MakeLt) -> None:
    """libtorrent nodes on [::1] hold a seed announced from ::1; its BFsd (16-byte IPs
    hashed) read by our IPv6 node is the filter of ::1, counted as one seed."""
    infohash = random.Random("lt-scrape-v6").randbytes(20)
    lts = await _mesh(make_lt, [("::1", _ipv6_loopback_port()) for _ in range(3)])
    await call(lts[1].announce, infohash, 6881, seed=True)
    async with DHTNode(bind=("::1", 0), bootstrap=[lts[0].addr], read_only=True, **FAST) as us:
        result = await _scrape_until(us, infohash, ["::1"], [], "libtorrent's IPv6 filters")
    assert (result.seeds, result.peers) == (1, 0) and result.nodes >= 2
