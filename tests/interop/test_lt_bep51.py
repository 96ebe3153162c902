"""BEP 51 with libtorrent (issue 5): it answers our ``sample_infohashes``, we answer its
``dht_sample_infohashes``, and the crawler maps it. Loopback only."""

from __future__ import annotations

import importlib
import importlib.util
import json
import random
import sqlite3
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mldht import DHTNode
from mldht.core.compact import Addr
from mldht.runtime import format_addr

from .aio import call, wait_for
from .lt import LtNode

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}
TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load_crawl() -> ModuleType:
    return importlib.import_module("mldht.crawl")


async def neighbours(
    stack: AsyncExitStack, make_lt: MakeLt, loopback: Callable[[], Addr], **tunables: Any
) -> tuple[DHTNode, LtNode]:
    """One of our nodes and a libtorrent node, each in the other's routing table."""
    ours = await stack.enter_async_context(
        DHTNode(bind=loopback(), bootstrap=[], **FAST, **tunables)
    )
    lt = await call(make_lt)
    await call(lt.add_node, ours.address)
    assert await call(lt.wait_for_node, ours.address, 15) is not None
    await wait_for(lambda: ours.knows(lt.node_id), 15, "libtorrent in our table")
    return ours, lt


async def test_libtorrent_answers_our_sample_infohashes(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    rng = random.Random(51)
    infohashes = [rng.randbytes(20) for _ in range(3)]
    async with AsyncExitStack() as stack:
        ours, lt = await neighbours(stack, make_lt, loopback)
        # libtorrent stores what we announce to it (it is the closest node we know)
        for ih in infohashes:
            assert await ours.announce(ih, 6881) >= 1
        target = rng.randbytes(20)
        done = await ours.sample_infohashes(lt.addr, target)
        assert done.node_id == lt.node_id
        assert done.version is not None and done.version[:2] == b"LT"
        assert set(done.samples) == set(infohashes)
        assert done.num == len(infohashes)
        assert done.interval == 0  # loopback_settings: dht_sample_infohashes_interval 0
        assert all(n.id != lt.node_id for n in done.nodes)
        assert ours.node_id in {n.id for n in done.nodes}


async def test_we_answer_libtorrents_sample_infohashes(
    make_lt: MakeLt, loopback: Callable[[], Addr]
) -> None:
    rng = random.Random(52)
    interval = 777
    async with AsyncExitStack() as stack:
        ours, lt = await neighbours(stack, make_lt, loopback, sample_interval=interval)
        # a second node of ours announces to the first, which then holds the info-hashes
        other = await stack.enter_async_context(DHTNode(bind=loopback(), bootstrap=[], **FAST))
        await other.add_node(ours.address)
        stored = [rng.randbytes(20) for _ in range(25)]
        for ih in stored:
            await other.announce(ih, 7000)
        await wait_for(lambda: all(ours.stored_peers(ih) for ih in stored), 15, "our node to store")
        target = rng.randbytes(20)
        reply = await call(lt.sample_infohashes, ours.address, target, 10.0)
        assert reply is not None, "libtorrent got no sample_infohashes reply from us"
        assert reply.endpoint == ours.address
        assert reply.interval == interval
        assert reply.num_infohashes == len(stored)
        assert len(reply.samples) == 20 == len(set(reply.samples))  # BEP 51: at most 20
        assert set(reply.samples) <= set(stored)
        expect = [n.id for n in ours.closest_nodes(target, 8)]
        assert [n.id for n in reply.nodes] == expect
        assert lt.node_id in expect


async def test_crawler_maps_a_libtorrent_node(
    make_lt: MakeLt,
    loopback: Callable[[], Addr],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    crawl = _load_crawl()
    rng = random.Random(53)
    async with AsyncExitStack() as stack:
        ours, lt = await neighbours(stack, make_lt, loopback)
        ih = rng.randbytes(20)
        assert await ours.announce(ih, 6881) >= 1
        db = tmp_path / "lt.sqlite"
        bind = loopback()
        args = crawl.build_parser().parse_args(
            [
                "--bootstrap",
                format_addr(ours.address),
                "--bind",
                format_addr(bind),
                "--db",
                str(db),
                "--duration",
                "20",
                "--query-timeout",
                "2",
                "--lookups",
                "2",
                "--progress",
                "none",
                "--json",
            ]
        )
        assert await crawl.handle(args) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["responders"] == 2 and summary["bep51_nodes"] == 2
        con = sqlite3.connect(db)
        rows = {
            nid: (version, bep51, responded)
            for nid, version, bep51, responded in con.execute(
                "SELECT id, version, bep51, responded FROM nodes"
            )
        }
        assert rows[lt.node_id.hex()][0].startswith("LT-")
        assert rows[lt.node_id.hex()][1:] == (1, 1)
        assert rows[ours.node_id.hex()] == ("MD-0001", 1, 1)
        sources = dict(con.execute("SELECT infohash, sources FROM infohashes"))
        assert sources.get(ih.hex(), 0) >= 1
        con.close()
        # read-only (BEP 43): libtorrent never took the crawler in
        table = await call(lt.routing_table)
        assert all(n.addr[0] != bind[0] for n in table)
