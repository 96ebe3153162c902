"""The crawler at scale: shards (``--shard I/N``) and the PostgreSQL store, against a real
PostgreSQL server started in a temporary folder (tests/runtime/pgserver.py)."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from mldht import Testnet
from mldht.crawl import command
from mldht.crawl.planner import Crawl
from mldht.crawl.shard import Shard
from mldht.crawl.store import Store, open_store
from mldht.runtime import format_addr

from .pgserver import postgres_server

FAST: dict[str, Any] = {"query_timeout": 1.0, "soft_timeout": 0.3, "lookup_timeout": 10.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _fill(store: Any, run_no: int) -> None:
    """Two crawls of one node that answered the first time only (as test_crawl's)."""
    node_id, addr = b"\x07" * 20, ("10.0.0.7", 7)
    c = Crawl(random.Random(1), 0.0)
    c.discover(node_id, addr, 0.0)
    job = c.next_job(0.0)
    assert job is not None
    reply = SimpleNamespace(
        node_id=node_id,
        samples=(b"\x09" * 20,),
        num=1,
        interval=60,
        supported=True,
        nodes=(),
        version=b"LT\x02\x00",
        rtt=0.0123,
    )
    c.on_sample(job, reply if run_no == 0 else None, 5.0)
    store.finish(c, [(1.0, 1, 1, 1, 1, 3)], {"run": run_no})
    store.close()


def test_postgres_store_has_the_sqlite_tables_and_rows(postgres: str, tmp_path: Path) -> None:
    for run_no, offset in enumerate((1000.0, 2000.0)):
        _fill(Store(tmp_path / "c.sqlite", offset, 0.0), run_no)
        _fill(open_store(postgres, offset, 0.0), run_no)
    lite = sqlite3.connect(tmp_path / "c.sqlite")
    with _pg(postgres) as pg:
        for table in ("nodes", "infohashes", "crawls", "timeline"):
            lite_cols = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            pg_cols = [
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
            ]
            assert pg_cols == lite_cols, table
        for table in ("nodes", "infohashes"):
            want = sorted(lite.execute(f"SELECT * FROM {table}"))
            assert sorted(pg.execute(f"SELECT * FROM {table}")) == want
        summaries = [json.loads(r[0]) for r in pg.execute("SELECT summary FROM crawls")]
        assert sorted(s["run"] for s in summaries) == [0, 1]
        pg.execute("DROP TABLE nodes, infohashes, crawls, timeline")
    lite.close()


def test_a_bad_postgres_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    code = command.main(["--db", f"postgresql://nobody@127.0.0.1:{port}/x", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--db" in err and "cannot connect" in err, err


@pytest.mark.slow
async def test_two_shards_write_one_postgres_and_find_the_whole_swarm(
    postgres: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Done when (issue 17): two shards against one swarm, writing into one PostgreSQL at
    once, together find >= 99% of its nodes and info-hashes; neither samples the other's."""
    async with Testnet(
        150,
        infohashes=500,
        seed=8,
        prefix="127.84",
        sample_interval=3,
        alpha=4,
        lookup_k=8,
        store_k=8,
        **FAST,
    ) as net:
        swarm_ids = {n.node_id.hex() for n in net.nodes}
        sampled: dict[int, set[str]] = {1: set(), 2: set()}
        crawler_ips = {"127.85.0.1": 1, "127.85.0.2": 2}
        for node in net.nodes:

            def seen(data: bytes, addr: tuple[str, int], now: float, node: Any = node) -> None:
                part = crawler_ips.get(addr[0])
                if part is not None and b"sample_infohashes" in data:
                    sampled[part].add(node.node_id.hex())

            node.on_datagram = seen
        statuses: list[int] = []

        async def shard(ip: str, part: int) -> None:
            argv = ["--bootstrap", format_addr(net.bootstrap_address), "--bind", f"{ip}:0"]
            argv += ["--db", postgres, "--shard", f"{part}/2", "--progress", "none", "--json"]
            argv += ["--seed", str(part), "--duration", "40", "--rate", "300"]
            args = command.build_parser().parse_args([*argv, "--min-interval", "1"])
            statuses.append(await command.handle(args))

        async with anyio.create_task_group() as tg:
            for ip, part in crawler_ips.items():
                tg.start_soon(shard, ip, part)
        assert statuses == [0, 0]
        out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(s["shard"]["shard"] for s in out) == ["1/2", "2/2"]

        halves = {part: Shard(part, 2) for part in (1, 2)}
        for part, ids in sampled.items():
            # a shard samples only its half (its first contact aside)
            strays = {i for i in ids if not halves[part].contains(int(i, 16))}
            assert len(strays) <= 1, (part, strays)
        with _pg(postgres) as pg:
            found = {r[0] for r in pg.execute("SELECT id FROM nodes")}
            assert found <= swarm_ids
            assert len(found & swarm_ids) >= 0.99 * len(swarm_ids), len(found)
            hashes = {r[0] for r in pg.execute("SELECT infohash FROM infohashes")}
            want = {ih.hex() for ih in net.infohashes}
            assert len(hashes & want) >= 0.99 * len(want), len(hashes & want)
            rows = list(pg.execute("SELECT summary FROM crawls WHERE ended IS NOT NULL"))
            assert sorted(json.loads(r[0])["shard"]["shard"] for r in rows) == ["1/2", "2/2"]
            for summary in out:
                size = summary["network_size"]
                assert abs(size["estimate"] - 150) <= max(3 * size["stderr"], 40), size
