"""The crawler's pure parts (mldht.crawl.planner, mldht.crawl.estimate): the crawl policy,
the size estimate and the token bucket, with replies and time passed in by hand."""

from __future__ import annotations

import ast
import itertools
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.crawl import aim, estimate, pacing, planner, shard
from mldht.crawl.estimate import estimate_size, k_closest
from mldht.crawl.pacing import TokenBucket
from mldht.crawl.planner import Crawl, format_version
from mldht.crawl.shard import WHOLE, Shard, parse_shard
from mldht.errors import InvalidArgument

IMPURE = {"anyio", "socket", "sqlite3", "asyncio", "trio", "time", "threading"}


def test_planner_is_sans_io() -> None:
    """No event loop, socket, clock or database in the planner: time comes in as ``now``."""
    for module in (planner, aim, estimate, pacing, shard):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & IMPURE, (module.__name__, names)
    code = (
        "import sys; import mldht.crawl.planner; "
        "print(sorted({'anyio', 'socket', 'sqlite3', 'trio'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
    assert k_closest(ids, target, k) == sorted(ids, key=lambda x: x ^ target)[:k]


def test_size_estimate_on_uniform_ids() -> None:
    rng = random.Random(7)
    for n in (300, 20_000):
        ids = ids_sorted(rng, n)
        targets = [(rng.getrandbits(160), ()) for _ in range(max(16, min(256, n // 8)))]
        est = estimate_size(ids, targets)
        assert est is not None
        assert est.stderr < 0.15 * n
        assert abs(est.size - n) <= 3 * est.stderr, (n, est)
        assert "8-closest" in est.method and len(est.method) < 80
    # the extra ids of a lookup count: the crawled set alone is too thin here
    ids = ids_sorted(rng, 2000)
    sparse = ids[::10]
    targets2: list[tuple[int, list[int]]] = []
    for _ in range(64):
        t = rng.getrandbits(160)
        targets2.append((t, k_closest(ids, t, 8)))
    with_lookups = estimate_size(sparse, targets2)
    alone = estimate_size(sparse, [(t, ()) for t, _ in targets2])
    assert with_lookups is not None and alone is not None
    assert abs(with_lookups.size - 2000) <= 3 * with_lookups.stderr
    assert alone.size < 400
    assert estimate_size(ids[:3], [(1, ()), (2, ())]) is None


def test_size_estimate_of_a_small_crawled_network_is_unbiased() -> None:
    """A complete crawl of 50 nodes (issue 17: it said ~57 ± 3): the estimate over the
    crawled set uses enough targets that only the ids' own spacing is left, the mean over
    many networks is 50, and the error bar covers the truth as one standard error should."""
    rng = random.Random(17)
    sizes = []
    covered = 0
    runs = 120
    for _ in range(runs):
        ids = ids_sorted(rng, 50)
        est = estimate_size(ids, [(rng.getrandbits(160), ()) for _ in range(2048)])
        assert est is not None
        sizes.append(est.size)
        covered += abs(est.size - 50) <= est.stderr
    mean = sum(sizes) / runs
    assert abs(mean - 50) < 1.0, mean
    # one standard error covers about 68% of the runs or a little more (a cautious bar on
    # small networks), not the 25% it did before
    assert 0.6 * runs <= covered <= 0.92 * runs, covered
    spread = (sum((x - mean) ** 2 for x in sizes) / (runs - 1)) ** 0.5
    assert spread < 0.5 * 50**0.5, spread


def test_size_estimate_in_a_shard() -> None:
    """A shard knows only its own ids: targets whose closest ids may lie outside it are
    left out, so the estimate of the whole network from a third of it is unbiased."""
    rng = random.Random(3)
    n = 4000
    ids = ids_sorted(rng, n)
    part = Shard(2, 3)  # not a prefix: its edges cut closest sets
    inside = [x for x in ids if part.contains(x)]
    targets = [(part.random_id(rng), ()) for _ in range(1024)]
    est = estimate_size(inside, targets, bounds=(part.lo, part.hi))
    assert est is not None and est.targets < 1024
    assert abs(est.size - n) <= 3 * est.stderr, est


def test_token_bucket() -> None:
    b = TokenBucket(10.0, 2.0, now=0.0)
    assert b.take(0.0) and b.take(0.0)
    assert not b.take(0.0)
    assert b.delay(0.0) == pytest.approx(0.1)
    assert b.take(0.1)
    b.charge(5)  # queries the node sent on its own
    assert b.delay(0.1) == pytest.approx(0.6)
    assert b.take(10.0) and b.take(10.0) and not b.take(10.0)  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0, now=0.0)


def test_format_version() -> None:
    assert format_version(b"LT\x01\x02") == "LT-0102"
    assert format_version(b"UT") == "UT"
    assert format_version(b"\x00\x01\x02") == "000102"
    assert format_version(None) is None
    assert format_version(b"") is None


def make_crawl(**kw: Any) -> Any:
    return Crawl(random.Random(1), 0.0, **kw)


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
        return any(start <= x < end for _, start, end in among)

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


def test_a_node_sampled_far_from_home_is_asked_for_its_neighbourhood_once() -> None:
    """A node sampled while its region was unknown got a far target (its reply named a
    distant region): when the sweep ends it is asked once more, aimed near its own id, and
    what that finds is swept."""
    space = 2**160
    step = space // 100
    c = make_crawl()
    a_id = 40 * step + 7
    c.discover(a_id.to_bytes(20, "big"), ("10.0.0.1", 1), 0.0)
    c.discover((90 * step + 7).to_bytes(20, "big"), ("10.0.0.2", 1), 0.0)
    first = c.next_job(0.0)
    assert first.node.id == a_id.to_bytes(20, "big")
    assert abs(int.from_bytes(first.target, "big") - a_id) > 4 * step  # the gap was wide
    # its reply names the whole ring, evenly spaced: every other gap is one spacing
    others = tuple(
        FakeNode((i * step + 7).to_bytes(20, "big"), (f"10.1.{i}.1", 1))
        for i in range(100)
        if i not in (40, 90)
    )
    c.on_sample(first, FakeReply(first.node.id, nodes=others), 0.5)
    a = c.nodes[("10.0.0.1", 1)]
    while (job := c.next_job(1.0)) is not None:
        assert job.kind == "sample"
        c.on_sample(job, FakeReply(job.node.id), 1.0)
    home = c.next_job(1.0, idle=True)
    assert home.kind == "home" and home.node is a
    assert 0 < abs(int.from_bytes(home.target, "big") - a_id) <= step
    new = FakeNode((40 * step + step // 2).to_bytes(20, "big"), ("10.2.0.1", 1))
    c.on_sample(home, FakeReply(a.id, samples=(b"\x01" * 20,), num=1, nodes=(new,)), 1.5)
    # a home reply counts only for the nodes it names
    assert a.samples_asked == 1 and a.queries == 2 and c.home_asked == 1 and not c.infohashes
    job = c.next_job(2.0, idle=True)
    assert job.kind == "sample" and job.node.addr == new.addr  # swept in turn
    c.on_sample(job, FakeReply(new.id), 2.0)
    while (job := c.next_job(2.0, idle=True)) is not None:
        assert job.kind == "probe"  # no home job again: A was asked once, new one near
        c.on_lookup(job.target, (), 2.0, probe=True)
    assert c.finished(2.0, deadline=10.0)


def test_the_ends_of_a_wide_gap_are_asked_about_it_once() -> None:
    """A run of nodes no reply named leaves a gap far wider than the mean spacing between
    the ids known: the nodes at its two ends are asked (find_node) with a target in it."""
    space = 2**160
    step = space // 100
    c = make_crawl()
    known = [i for i in range(100) if not 30 < i < 40]  # 9 missing: a gap of 10 steps
    for i in known:
        c.discover((i * step + 5).to_bytes(20, "big"), (f"10.1.{i}.1", 1), 0.0)
    while (job := c.next_job(1.0)) is not None:
        assert job.kind == "sample"
        c.on_sample(job, FakeReply(job.node.id), 1.0)
    asked = []
    while (job := c.next_job(1.0, idle=True)) is not None:
        if job.kind == "probe":
            c.on_lookup(job.target, (), 2.0, probe=True)
            continue
        assert job.kind == "home"
        asked.append((job.node.addr, int.from_bytes(job.target, "big")))
        c.on_sample(job, FakeReply(job.node.id), 1.0)  # it names nobody new
    # (node 40 is also asked near its own id: its sample had aimed into the gap)
    assert {a for a, _ in asked} == {("10.1.30.1", 1), ("10.1.40.1", 1)} and len(asked) <= 3
    assert all(30 * step + 5 < t < 40 * step + 5 for _, t in asked)
    assert c.finished(2.0, deadline=10.0)


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


def test_shard_parsing_and_ranges() -> None:
    assert parse_shard("1/1") == WHOLE and WHOLE.whole and WHOLE.size == 2**160
    parts = [parse_shard(f"{i}/3") for i in (1, 2, 3)]
    assert parts[0].lo == 0 and parts[-1].hi == 2**160
    assert all(a.hi == b.lo for a, b in itertools.pairwise(parts))
    assert parts[1].as_dict()["shard"] == "2/3"
    for bad in ("0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "-1/2", "1/70000"):
        with pytest.raises(InvalidArgument):
            parse_shard(bad)


def test_a_shard_samples_and_looks_up_only_its_ids() -> None:
    part = Shard(2, 4)
    rng = random.Random(8)
    c = Crawl(random.Random(1), 0.0, shard=part)
    c.add_contact(("10.9.9.9", 1))
    c.add_random_lookups(50)
    everyone = ids_sorted(rng, 400)
    first = c.next_job(0.0)
    assert first is not None and first.kind == "sample"  # the contact, whatever its id
    nodes = tuple(
        FakeNode(x.to_bytes(20, "big"), (f"10.2.{i // 200}.{i % 200 + 1}", 1))
        for i, x in enumerate(everyone)
    )
    c.on_sample(first, FakeReply(b"\x00" * 20, nodes=nodes), 1.0)
    inside = [x for x in everyone if part.contains(x)]
    assert c.outside == len(everyone) - len(inside)
    assert c.ids == inside  # the contact's id (0) is outside: not among the shard's
    assert not c.keeps(c.nodes[("10.9.9.9", 1)])
    kinds = []
    while (job := c.next_job(1.0)) is not None:
        kinds.append(job.kind)
        assert part.contains(int.from_bytes(job.target, "big")), job
        if job.node is not None:
            assert c.keeps(job.node)
    assert kinds.count("lookup") == 50 and kinds.count("sample") == len(inside)
    for _, start, end in c.empty_regions(0.5):
        assert part.lo <= start < end <= part.hi


def test_pacer_charges_lookups_up_front_and_settles_with_the_counter() -> None:
    """At 20 q/s: samples one token each; a lookup waits for its charge (16 until two
    have run), runs alone, and what it sent beyond the charge delays the next job."""
    pacer = pacing.Pacer(20.0, 0.0, sent=100)
    sent = 100
    for _ in range(5):  # the burst: a quarter of a second's worth
        assert pacer.delay(True, 0.0, sent) == 0.0
        sent += 1
    assert pacer.delay(True, 0.0, sent) == pytest.approx(1 / 20)
    # a lookup waits for a full bucket (its 16 tokens are more than the burst of 5)
    wait = pacer.delay(False, 0.0, sent)
    assert wait == pytest.approx(5 / 20)
    assert pacer.delay(False, wait, sent) == 0.0 and pacer.lookups_running == 1
    # a second lookup may not run beside it at this rate, whatever the tokens
    assert pacer.delay(False, 100.0, sent) > 0 and pacer.lookups == 1
    pacer.done(False)
    # it sent 40 queries, 24 more than charged: the next sample waits for them
    sent += 40
    assert pacer.delay(True, wait, sent) == pytest.approx((24 + 11 + 1) / 20)
    # after two lookups the charge is what they sent on average
    assert pacer.lookup_cost(sent) == 16.0
    pacer.lookups = 2
    assert pacer.lookup_cost(sent) == pytest.approx((sent - 100 - 5) / 2)
