"""mldht.crawl (tools/crawl.py, `mldht crawl`) and tools/swarm.py: crawl policy and swarm crawls."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import itertools
import json
import os
import random
import socket
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.bencode import bdecode, bencode
from mldht.runtime import DHTNode, format_addr

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load(name: str) -> ModuleType:
    """Import tools/<name>.py (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"mldht_tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crawl = importlib.import_module("mldht.crawl")  # tools/crawl.py runs it
swarm_mod = _load("swarm")

FAST: dict[str, Any] = {"query_timeout": 1.0, "soft_timeout": 0.3, "lookup_timeout": 10.0}


@pytest.fixture
def anyio_backend() -> str:
    # The crawls are long: run them once, on asyncio (test_node covers trio).
    return "asyncio"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


# ------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class FakeNode:
    id: bytes
    addr: tuple[str, int]


@dataclass(frozen=True)
class FakeReply:
    node_id: bytes | None
    samples: tuple[bytes, ...] = ()
    num: int = 0
    interval: int = 0
    nodes: tuple[FakeNode, ...] = ()
    version: bytes | None = None
    rtt: float | None = 0.01
    supported: bool = True


def ids_sorted(rng: random.Random, n: int) -> list[int]:
    return sorted({rng.getrandbits(160) for _ in range(n)})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**160 - 1), min_size=1, max_size=300, unique=True),
    st.integers(0, 2**160 - 1),
    st.integers(1, 12),
)
def test_k_closest_matches_brute_force(ids: list[int], target: int, k: int) -> None:
    ids.sort()
    assert crawl.k_closest(ids, target, k) == sorted(ids, key=lambda x: x ^ target)[:k]


def test_size_estimate_on_uniform_ids() -> None:
    rng = random.Random(7)
    for n in (300, 20_000):
        ids = ids_sorted(rng, n)
        targets = [(rng.getrandbits(160), ()) for _ in range(max(16, min(256, n // 8)))]
        est = crawl.estimate_size(ids, targets)
        assert est is not None
        assert est.stderr < 0.15 * n
        assert abs(est.size - n) <= 3 * est.stderr, (n, est)
        assert "k-closest" in est.method and "standard error" in est.method
    # the extra ids of a lookup count: the crawled set alone is too thin here
    ids = ids_sorted(rng, 2000)
    sparse = ids[::10]
    targets2: list[tuple[int, list[int]]] = []
    for _ in range(64):
        t = rng.getrandbits(160)
        targets2.append((t, crawl.k_closest(ids, t, 8)))
    with_lookups = crawl.estimate_size(sparse, targets2)
    alone = crawl.estimate_size(sparse, [(t, ()) for t, _ in targets2])
    assert with_lookups is not None and alone is not None
    assert abs(with_lookups.size - 2000) <= 3 * with_lookups.stderr
    assert alone.size < 400
    assert crawl.estimate_size(ids[:3], [(1, ()), (2, ())]) is None


def test_token_bucket() -> None:
    b = crawl.TokenBucket(10.0, 2.0, now=0.0)
    assert b.take(0.0) and b.take(0.0)
    assert not b.take(0.0)
    assert b.delay(0.0) == pytest.approx(0.1)
    assert b.take(0.1)
    b.charge(5)  # queries the node sent on its own
    assert b.delay(0.1) == pytest.approx(0.6)
    assert b.take(10.0) and b.take(10.0) and not b.take(10.0)  # never more than the burst
    with pytest.raises(ValueError):
        crawl.TokenBucket(0.0, 1.0, now=0.0)


def test_format_version() -> None:
    assert crawl.format_version(b"LT\x01\x02") == "LT-0102"
    assert crawl.format_version(b"UT") == "UT"
    assert crawl.format_version(b"\x00\x01\x02") == "000102"
    assert crawl.format_version(None) is None
    assert crawl.format_version(b"") is None


def make_crawl(**kw: Any) -> Any:
    return crawl.Crawl(random.Random(1), 0.0, **kw)


def test_crawl_resamples_only_after_the_interval_and_while_there_is_more() -> None:
    c = make_crawl(min_interval=2.0)
    me = FakeNode(b"\x10" * 20, ("10.0.0.1", 1000))
    other = FakeNode(b"\x20" * 20, ("10.0.0.2", 1000))
    c.discover(me.id, me.addr, 0.0)
    job = c.next_job(0.0)
    assert job.kind == "sample" and job.node.addr == me.addr
    assert len(job.target) == 20
    ihs = [bytes([i]) * 20 for i in range(1, 31)]
    c.on_sample(
        job,
        FakeReply(
            me.id, tuple(ihs[:20]), num=30, interval=60, nodes=(other,), version=b"LT\x01\x02"
        ),
        now=1.0,
    )
    rec = c.nodes[me.addr]
    assert rec.bep51 and rec.responded and rec.version == b"LT\x01\x02"
    assert len(c.infohashes) == 20 and c.bep51_nodes == 1
    # the new node comes next; the first is not asked again before 1 + 60
    job2 = c.next_job(1.0)
    assert job2.node.addr == other.addr
    c.on_sample(job2, FakeReply(other.id, tuple(ihs[10:25]), num=15, interval=60), now=1.5)
    assert c.infohashes[ihs[12]].sources == 2 and c.infohashes[ihs[0]].sources == 1
    # the sweep has ended: a probe of the empty upper half of the id space, once
    probe = c.next_job(1.5, idle=True)
    assert probe.kind == "probe" and probe.target[0] >= 0x80
    c.on_lookup(probe.target, (), 2.0, probe=True)
    assert c.lookup_results == []  # probes' targets are not uniform: no size estimate
    for t in (2.0, 30.0, 60.9):
        assert c.next_job(t, idle=True) is None
    assert not c.finished(30.0, deadline=100.0)  # a resample is due before the deadline
    assert c.finished(30.0, deadline=61.0)
    assert c.next_due() == pytest.approx(61.0)
    job3 = c.next_job(61.0)
    assert job3.kind == "sample" and job3.node.addr == me.addr
    c.on_sample(job3, FakeReply(me.id, tuple(ihs[10:30]), num=30, interval=60), now=61.2)
    # it has shown all 30 of its info-hashes: never asked again
    assert len(rec.seen) == 30
    assert c.next_job(1000.0) is None and c.finished(1000.0, deadline=2000.0)
    assert rec.samples_asked == 2 and rec.queries == 2
    # "other" showed all its 15: it was not scheduled again either
    assert c.nodes[other.addr].samples_asked == 1


def test_crawl_interval_zero_uses_the_floor() -> None:
    c = make_crawl(min_interval=5.0)
    n = FakeNode(b"\x01" * 20, ("10.0.0.1", 1))
    c.discover(n.id, n.addr, 0.0)
    job = c.next_job(0.0)
    c.on_sample(job, FakeReply(n.id, (b"\x05" * 20,), num=9, interval=0), now=0.5)
    assert c.next_job(5.4) is None
    assert c.next_job(5.5) is not None


def test_crawl_pings_once_when_a_sample_fails_and_counts_non_bep51() -> None:
    c = make_crawl()
    a = FakeNode(b"\x01" * 20, ("10.0.0.1", 1))
    b = FakeNode(b"\x02" * 20, ("10.0.0.2", 1))
    fwd = FakeNode(b"\x03" * 20, ("10.0.0.3", 1))
    for n in (a, b, fwd):
        c.discover(n.id, n.addr, 0.0)
    jobs = {j.node.addr: j for j in (c.next_job(0.0), c.next_job(0.0), c.next_job(0.0))}
    c.on_sample(jobs[a.addr], FakeReply(None), 1.0)
    c.on_sample(jobs[b.addr], None, 1.0)
    # libtorrent-style forward compatibility: nodes only, no samples/num/interval
    c.on_sample(
        jobs[fwd.addr],
        FakeReply(fwd.id, nodes=(FakeNode(b"\x04" * 20, ("10.0.0.4", 1)),), supported=False),
        1.0,
    )
    assert c.nodes[fwd.addr].responded and not c.nodes[fwd.addr].bep51
    assert ("10.0.0.4", 1) in c.nodes
    pings = [c.next_job(1.0), c.next_job(1.0)]
    assert {p.kind for p in pings} == {"ping"}
    by_addr = {p.node.addr: p for p in pings}
    c.on_ping(by_addr[a.addr], a.id, 2.0)
    c.on_ping(by_addr[b.addr], None, 2.0)
    assert c.nodes[a.addr].responded and not c.nodes[a.addr].bep51
    assert not c.nodes[b.addr].responded
    nxt = c.next_job(2.0)
    assert nxt.kind == "sample" and nxt.node.addr == ("10.0.0.4", 1)
    c.on_sample(nxt, FakeReply(None), 3.0)
    assert c.next_job(3.0).kind == "ping"
    assert c.next_job(3.0) is None  # each node: one sample, at most one ping
    assert c.responders == 2 and c.bep51_nodes == 0
    assert all(r.queries <= 2 for r in c.nodes.values())


def test_probes_target_the_regions_that_hide_nodes() -> None:
    rng = random.Random(5)
    everyone = ids_sorted(rng, 400)

    def alone_in(x: int) -> int:
        """Free bits of the largest id subtree holding x and no other node."""
        return min((x ^ y).bit_length() for y in everyone if y != x) - 1

    # the nodes a sweep misses: alone in a region where about 2 or more nodes would fit
    hidden = [x for x in everyone if 400 / 2 ** (160 - alone_in(x)) >= 2]
    assert len(hidden) >= 10
    c = make_crawl()
    for i, x in enumerate(everyone):
        if x not in hidden:
            c.discover(x.to_bytes(20, "big"), (f"10.1.{i // 200}.{i % 200 + 1}", 1), 0.0)
    regions = c.empty_regions(1.0)
    assert regions == sorted(regions, reverse=True)
    assert all(e >= 1.0 for e, _, _ in regions)

    def region_of(x: int, among: list[tuple[float, int, int]]) -> bool:
        return any(lo <= x < lo + (1 << free) for _, lo, free in among)

    assert all(region_of(h, regions) for h in hidden)
    # a round of probes: one lookup per 20 nodes, into the most promising regions
    while c.next_job(0.0) is not None:
        pass
    probes = []
    while (job := c.next_job(0.0, idle=True)) is not None:
        assert job.kind == "probe"
        probes.append(int.from_bytes(job.target, "big"))
    assert len(probes) == len(c.nodes) // 20 and c.probe_rounds == 1
    tops = regions[: len(probes)]
    assert all(region_of(t, tops) for t in probes)
    assert sum(region_of(h, tops) for h in hidden) >= len(probes) // 2
    # no new node found by the round: no second round, and the crawl is finished
    assert c.next_job(0.0, idle=True) is None and c.finished(0.0, deadline=1.0)


def test_crawl_bounds_and_filters() -> None:
    c = make_crawl(max_nodes=3, public_only=True, own_id=b"\xff" * 20)
    assert c.discover(b"\x01" * 20, ("192.168.1.1", 1), 0.0) is None  # private
    assert c.discover(b"\x01" * 20, ("8.8.8.8", 0), 0.0) is None  # port 0
    assert c.discover(b"\xff" * 20, ("8.8.8.8", 1), 0.0) is None  # ourselves
    for i in range(5):
        c.discover(bytes([i + 1]) * 20, (f"8.8.8.{i + 1}", 1), 0.0)
    assert len(c.nodes) == 3 and c.nodes_dropped == 2
    c2 = make_crawl()
    assert c2.discover(b"\x01" * 20, ("127.0.0.5", 1), 0.0) is not None


def test_crawl_sweeps_the_id_space_in_order_and_targets_gaps() -> None:
    c = make_crawl()
    rng = random.Random(3)
    ids = [rng.randbytes(20) for _ in range(50)]
    for i, node_id in enumerate(ids):
        c.discover(node_id, (f"10.0.{i}.1", 1), 0.0)
    order = []
    while (job := c.next_job(0.0)) is not None:
        order.append(job.node.id)
        # the target lies between the node and one of its neighbours in the known ids
        x = int.from_bytes(job.node.id, "big")
        t = int.from_bytes(job.target, "big")
        known = sorted(int.from_bytes(i, "big") for i in ids)
        pos = known.index(x)
        pred, succ = known[pos - 1], known[(pos + 1) % len(known)]
        assert (t - x) % 2**160 < (succ - x) % 2**160 or (x - t) % 2**160 < (x - pred) % 2**160
    assert order == sorted(ids)
    assert c.complete and c.queried == 50


def test_store_upserts_across_crawls(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    node = FakeNode(b"\x07" * 20, ("10.0.0.7", 7))
    ih = b"\x09" * 20
    for run_no, offset in enumerate((1000.0, 2000.0)):
        c = make_crawl()
        c.discover(node.id, node.addr, 0.0)
        job = c.next_job(0.0)
        reply = FakeReply(node.id, (ih,), num=1, interval=60, version=b"LT\x02\x00", rtt=0.0123)
        c.on_sample(job, reply if run_no == 0 else FakeReply(None), 5.0)
        store = crawl.Store(db, offset, 0.0)
        store.finish(c, [(1.0, 1, 1, 1, 1, 3)], {"run": run_no})
        store.close()
    con = sqlite3.connect(db)
    rows = list(con.execute("SELECT * FROM nodes"))
    assert rows == [(node.id.hex(), "10.0.0.7", 7, "LT-0200", 1, 1000.0, 2000.0, 12.3, 1, 1, 1, 60)]
    assert list(con.execute("SELECT * FROM infohashes")) == [(ih.hex(), 1005.0, 1, None)]
    assert [json.loads(r[0]) for r in con.execute("SELECT summary FROM crawls")] == [
        {"run": 0},
        {"run": 1},
    ]
    assert con.execute("SELECT COUNT(*) FROM timeline").fetchone()[0] == 2
    con.close()


def snapshot(**kw: Any) -> Any:
    values: dict[str, Any] = {
        "elapsed": 0.0,
        "duration": 60.0,
        "found": 10,
        "queried": 4,
        "responders": 3,
        "bep51": 2,
        "infohashes": 40,
        "queries": 12,
        "qps": 6.0,
        "in_flight": 1,
    }
    values.update(kw)
    return crawl.Snapshot(**values)


def test_progress_displays() -> None:
    out = io.StringIO()
    plain = crawl.PlainProgress(out, interval=5.0)
    for t in (0.0, 1.0, 4.9, 5.0, 7.0, 10.2):
        plain(snapshot(elapsed=t))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "nodes 10" in lines[0] and "infohashes 40" in lines[0] and "(6/s)" in lines[0]
    if importlib.util.find_spec("rich") is None:
        if in_ci():
            pytest.fail("rich missing under CI")
        return
    fancy_out = io.StringIO()
    fancy = crawl.RichProgress(fancy_out)
    fancy(snapshot(elapsed=1.0))
    fancy.close()
    assert "4/10 queried" in fancy_out.getvalue()


# ------------------------------------------------------------------ arguments


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        crawl.main(argv)
    code = exc.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "fast"], "--rate"),
        (["--duration", "-1"], "--duration"),
        (["--max-nodes", "0"], "--max-nodes"),
        (["--bootstrap", "nohost"], "--bootstrap"),
        (["--bootstrap", "example.org:99999"], "--bootstrap"),
        (["--bind", "[::1:5"], "--bind"),
        (["--progress", "fancy"], "--progress"),
        (["--db", "/nonexistent-dir/x.sqlite"], "--db"),
        (["--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and names in err, err


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(crawl, "have_matplotlib", lambda: False)
    code, err = run_main(["--plot", str(tmp_path / "x.png"), "--db", str(tmp_path / "c")], capsys)
    assert code == 2 and "--plot" in err and "matplotlib" in err and "plot" in err


def test_swarm_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--nodes", "0"], ["--prefix", "10.1"], ["--duration", "x"]):
        with pytest.raises(SystemExit) as exc:
            swarm_mod.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and argv[0] in err
    assert swarm_mod.swarm_host("127.77", 0) == "127.77.0.1"
    assert swarm_mod.swarm_host("127.77", 254) == "127.77.1.1"
    with pytest.raises(swarm_mod.SwarmError):
        swarm_mod.swarm_host("10.0", 1)
    with pytest.raises(swarm_mod.SwarmError):
        swarm_mod.Swarm(0)


# ------------------------------------------------------------------ on loopback


def crawl_args(bootstrap: tuple[str, int], db: Path, *extra: str) -> argparse.Namespace:
    args: argparse.Namespace = crawl.build_parser().parse_args(
        [
            "--bootstrap",
            format_addr(bootstrap),
            "--db",
            str(db),
            "--progress",
            "none",
            "--json",
            "--seed",
            "11",
            *extra,
        ]
    )
    return args


class QueryLog:
    """Every query a swarm node receives from one IP: (time, method, args, ro) per node."""

    def __init__(self, nodes: list[DHTNode], source_ip: str) -> None:
        self.by_node: dict[int, list[tuple[float, bytes, dict[bytes, Any], Any]]] = defaultdict(
            list
        )
        for i, node in enumerate(nodes):
            state = node.state
            wrapped = self._wrap(i, state.receive_datagram, source_ip)
            state.receive_datagram = wrapped  # type: ignore[method-assign,assignment]

    def _wrap(
        self, i: int, inner: Callable[[bytes, tuple[str, int], float], None], source_ip: str
    ) -> Callable[[bytes, tuple[str, int], float], None]:
        def receive(data: bytes, addr: tuple[str, int], now: float) -> None:
            if addr[0] == source_ip:
                msg = bdecode(data)
                assert isinstance(msg, dict)
                if msg.get(b"y") == b"q":
                    args = msg.get(b"a")
                    assert isinstance(args, dict)
                    self.by_node[i].append((now, msg[b"q"], args, msg.get(b"ro")))
            inner(data, addr, now)

        return receive

    def all(self) -> Iterator[tuple[float, bytes, dict[bytes, Any], Any]]:
        for queries in self.by_node.values():
            yield from queries


@pytest.mark.slow
async def test_crawl_maps_a_300_node_swarm_politely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    interval = 5
    rate = 400.0
    crawler_ip = "127.78.0.1"
    async with swarm_mod.Swarm(
        300, infohashes=1000, seed=5, prefix="127.81", sample_interval=interval, ready_timeout=90
    ) as swarm:
        assert all(n >= 1 for n in swarm.announced.values())
        log = QueryLog(swarm.nodes, crawler_ip)
        db = tmp_path / "out.sqlite"
        args = crawl_args(
            swarm.bootstrap_address,
            db,
            "--bind",
            f"{crawler_ip}:0",
            "--duration",
            "40",
            "--rate",
            str(rate),
            "--min-interval",
            "1",
        )
        started = anyio.current_time()
        assert await crawl.handle(args) == 0
        elapsed = anyio.current_time() - started
        summary = json.loads(capsys.readouterr().out)

        # the crawler is never in any swarm node's routing table (BEP 43 ro=1)
        queries = list(log.all())
        assert queries
        assert all(ro == 1 for *_, ro in queries)
        crawler_ids = {a[b"id"] for _, _, a, _ in queries}
        assert len(crawler_ids) == 1
        for node in swarm.nodes:
            assert not any(cid in node.state.routing for cid in crawler_ids)
            snap = node.routing_table_snapshot()
            for bucket in snap["buckets"]:
                for entry in bucket["nodes"] + bucket["replacements"]:
                    assert entry["ip"] != crawler_ip

        # politeness: samples no sooner than the interval; few queries per node
        per_node = []
        for i in range(len(swarm.nodes)):
            got = log.by_node.get(i, [])
            samples = [t for t, q, _, _ in got if q == b"sample_infohashes"]
            assert samples, f"node {i} never sampled"
            gaps = [b - a for a, b in itertools.pairwise(samples)]
            assert all(g >= interval for g in gaps), (i, gaps)
            assert len(samples) <= 1 + elapsed / interval
            per_node.append(len(got))
        # besides samples, the crawler node's find_node lookups (seeds, probes of empty
        # regions, its own bootstrap) start at the nodes of its small table, and every
        # lookup starts at the bootstrap node (node 0)
        assert max(per_node[1:]) <= 12, sorted(per_node)[-10:]
        assert per_node[0] <= 40, per_node[0]
        assert sum(per_node) / len(per_node) <= 3.5, sum(per_node) / len(per_node)
        # the rate: every query of the crawler's node counts, in any one-second window
        times = sorted(t for t, *_ in queries)
        assert len(times) / max(elapsed, 1.0) <= rate
        j = 0
        worst = 0
        for i, t in enumerate(times):
            while times[j] < t - 1.0:
                j += 1
            worst = max(worst, i - j + 1)
        assert worst <= 1.6 * rate, worst

        # completeness
        con = sqlite3.connect(db)
        ids = {r[0] for r in con.execute("SELECT id FROM nodes")}
        swarm_ids = {n.node_id.hex() for n in swarm.nodes}
        assert len(ids & swarm_ids) >= 0.99 * len(swarm_ids)
        assert ids <= swarm_ids
        rows = {
            r[0]: r[1:] for r in con.execute("SELECT infohash, sources, first_seen FROM infohashes")
        }
        assert set(rows) == {ih.hex() for ih in swarm.infohashes}
        for ih in swarm.infohashes:
            sources, first_seen = rows[ih.hex()]
            assert 1 <= sources <= len(swarm.holders(ih))
            assert abs(first_seen - time.time()) < 300
        by_addr = {
            (ip, port): (nid, version, bep51, rtt, responded)
            for nid, ip, port, version, bep51, rtt, responded in con.execute(
                "SELECT id, ip, port, version, bep51, rtt_ms, responded FROM nodes"
            )
        }
        for node in swarm.nodes:
            nid, version, bep51, rtt, responded = by_addr[node.address]
            assert nid == node.node_id.hex()
            assert (bep51, responded) == (1, 1) and version == "MD-0001"
            assert rtt is not None and 0 <= rtt < 5000
        first, last = con.execute("SELECT MIN(first_seen), MAX(last_seen) FROM nodes").fetchone()
        assert first <= last
        assert con.execute("SELECT COUNT(*) FROM timeline").fetchone()[0] >= 3
        assert json.loads(con.execute("SELECT summary FROM crawls").fetchone()[0]) == summary
        con.close()

        assert summary["responders"] >= 297 and summary["bep51_share"] == 1.0
        assert summary["infohashes"] == 1000 and summary["complete"]
        size = summary["network_size"]
        assert "k-closest" in size["method"]
        assert abs(size["estimate"] - 300) <= max(4 * size["stderr"], 60), size


async def test_crawl_peers_plot_and_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with swarm_mod.Swarm(
        24, infohashes=30, seed=2, prefix="127.79", sample_interval=3, **FAST
    ) as swarm:
        plot = tmp_path / "crawl.png"
        extra = ["--peers", "--duration", "30", "--rate", "300", "--min-interval", "1"]
        if crawl.have_matplotlib():
            extra += ["--plot", str(plot)]
        elif in_ci():
            pytest.fail("matplotlib missing under CI")
        args = crawl_args(swarm.bootstrap_address, tmp_path / "c.sqlite", *extra)
        assert await crawl.handle(args) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["nodes_found"] == 24 and summary["infohashes"] == 30
        con = sqlite3.connect(tmp_path / "c.sqlite")
        peers = dict(con.execute("SELECT infohash, peers FROM infohashes"))
        # each info-hash was announced once, by one node with one port
        assert peers == {ih.hex(): 1 for ih in swarm.infohashes}
        con.close()
        if crawl.have_matplotlib():
            assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # a stop (Ctrl-C) ends the crawl at once and keeps what it found
        stop = anyio.Event()
        args = crawl_args(
            swarm.bootstrap_address, tmp_path / "s.sqlite", "--duration", "60", "--rate", "20"
        )

        async def press_ctrl_c() -> None:
            await anyio.sleep(1.5)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(press_ctrl_c)
            t0 = anyio.current_time()
            assert await crawl.handle(args, stop) == 0
            assert anyio.current_time() - t0 < 10
        summary = json.loads(capsys.readouterr().out)
        assert summary["interrupted"]
        con = sqlite3.connect(tmp_path / "s.sqlite")
        (count,) = con.execute("SELECT COUNT(*) FROM nodes").fetchone()
        assert 0 < count <= summary["nodes_found"] < 24
        con.close()


async def test_crawl_of_nobody_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.79.200.1", 0))
        dead = s.getsockname()
    args = crawl_args(
        dead, tmp_path / "d.sqlite", "--duration", "4", "--query-timeout", "0.5", "--lookups", "0"
    )
    assert await crawl.handle(args) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["responders"] == 0 and summary["network_size"] is None


# ------------------------------------------------------------------ BEP 51 server


async def raw_query(sock: Any, dest: tuple[str, int], query: dict[bytes, Any]) -> dict[bytes, Any]:
    await sock.sendto(bencode(query), *dest)
    with anyio.fail_after(3):
        while True:
            data, _ = await sock.receive()
            msg = bdecode(data)
            assert isinstance(msg, dict)
            if msg.get(b"t") == query[b"t"]:
                return msg


async def test_bep51_server_answers_per_spec() -> None:
    async with swarm_mod.Swarm(
        6, infohashes=0, seed=4, prefix="127.80", sample_interval=1234, **FAST
    ) as swarm:
        holder, *others = swarm.nodes
        rng = random.Random(9)
        stored = {rng.randbytes(20) for _ in range(45)}
        sock = await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.80.9.1")
        async with sock:
            # an empty store still sends samples (as "0:"), num 0 and the interval
            target = rng.randbytes(20)
            q: dict[bytes, Any] = {
                b"t": b"s0",
                b"y": b"q",
                b"q": b"sample_infohashes",
                b"a": {b"id": b"\x33" * 20, b"target": target},
            }
            r = (await raw_query(sock, holder.address, q))[b"r"]
            assert r[b"samples"] == b"" and r[b"num"] == 0 and r[b"interval"] == 1234
            assert r[b"id"] == holder.node_id
            expect = holder.state.routing.closest(target, 8)
            assert r[b"nodes"] == b"".join(
                n.id + socket.inet_aton(n.addr[0]) + n.addr[1].to_bytes(2, "big") for n in expect
            )
            # want: only n6 asked: no IPv4 nodes
            q[b"t"] = b"s1"
            q[b"a"][b"want"] = [b"n6"]
            r = (await raw_query(sock, holder.address, q))[b"r"]
            assert b"nodes" not in r

            # 45 stored: at most 20 distinct samples, all stored; num counts all
            for i, ih in enumerate(sorted(stored)):
                holder.state.peer_store.announce(ih, ("127.80.9.9", 1000 + i), anyio.current_time())
            done = await others[0].sample_infohashes(holder.address, target)
            assert done.num == 45 and done.interval == 1234
            assert len(done.samples) == 20 == len(set(done.samples))
            assert set(done.samples) <= stored
            assert [n.id for n in done.nodes] == [
                n.id for n in holder.state.routing.closest(target, 8)
            ]


def test_mldht_crawl_subcommand(tmp_path: Path) -> None:
    """`mldht crawl` is the same crawler: bad input exits 2, an unreachable network 1."""
    import subprocess

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    base = [sys.executable, "-m", "mldht", "crawl"]
    bad = subprocess.run([*base, "--rate", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--rate" in bad.stderr and "Traceback" not in bad.stderr
    out = subprocess.run(
        [
            *base,
            "--bootstrap",
            dead,
            "--bind",
            "127.0.0.1:0",
            "--duration",
            "3",
            "--db",
            str(tmp_path / "c.sqlite"),
            "--progress",
            "none",
            "--query-timeout",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert (tmp_path / "c.sqlite").exists()
