"""Tests for the iterative lookup state machine (mldht.core.lookup).

Multi-node behaviour runs on a small deterministic fake network: node id -> a Kademlia-like
routing table, some nodes dead, some slow, on virtual time driven by an event heap.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.compact import Addr, NodeInfo
from mldht.core.ids import ID_BITS, distance, id_from_int, id_to_int, random_id
from mldht.core.lookup import Lookup
from mldht.errors import InvalidArgument

ZERO = bytes(20)


def node(i: int, port: int = 6881) -> NodeInfo:
    """A node whose XOR distance to ZERO is ``i``."""
    return NodeInfo(id_from_int(i), (f"10.0.{i // 256 % 256}.{i % 256}", port))


def router_addr(i: int) -> Addr:
    return (f"192.0.2.{i}", 6881)


# --------------------------------------------------------------------- fake network


@dataclass
class FakeNet:
    """A network of ``n`` nodes with Kademlia routing tables (up to 8 per bucket)."""

    n: int
    seed: int
    dead_fraction: float = 0.1
    slow_fraction: float = 0.1
    stale_fraction: float = 0.25
    nodes: dict[bytes, NodeInfo] = field(default_factory=dict)
    by_addr: dict[Addr, NodeInfo] = field(default_factory=dict)
    tables: dict[bytes, list[NodeInfo]] = field(default_factory=dict)
    believed: dict[bytes, list[NodeInfo]] = field(default_factory=dict)
    dead: set[bytes] = field(default_factory=set)
    latency: dict[bytes, float] = field(default_factory=dict)
    routers: dict[Addr, list[NodeInfo]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        while len(self.nodes) < self.n:
            nid = random_id(rng)
            i = len(self.nodes)
            self.nodes[nid] = NodeInfo(nid, (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 6881))
        self.by_addr = {n.addr: n for n in self.nodes.values()}
        for nid in self.nodes:
            r = rng.random()
            if r < self.dead_fraction:
                self.dead.add(nid)
            elif r < self.dead_fraction + self.slow_fraction:
                self.latency[nid] = rng.uniform(1.2, 3.0)  # beyond the 1 s soft timeout
            else:
                self.latency[nid] = rng.uniform(0.02, 0.4)
        ints = sorted(id_to_int(x) for x in self.nodes)
        for nid in self.nodes:
            self.tables[nid] = table = self._table(nid, ints, rng)
            # BEP 5 nodes return the closest *good* nodes they know; most have noticed a
            # dead contact, but a quarter of the dead entries are still believed good.
            self.believed[nid] = [
                n for n in table if n.id not in self.dead or rng.random() < self.stale_fraction
            ]
        everyone = list(self.nodes.values())
        for j in range(2):
            # A router knows a large random sample of the network (dead nodes included).
            self.routers[router_addr(j + 1)] = rng.sample(everyone, min(300, self.n))

    def _table(self, nid: bytes, ints: list[int], rng: random.Random) -> list[NodeInfo]:
        x = id_to_int(nid)
        out: list[NodeInfo] = []
        for shared in range(ID_BITS):
            # Nodes sharing exactly ``shared`` leading bits with x: one contiguous range.
            shift = ID_BITS - shared - 1
            lo = ((x >> shift) ^ 1) << shift
            i, j = bisect.bisect_left(ints, lo), bisect.bisect_left(ints, lo + (1 << shift))
            bucket = ints[i:j]
            picked = bucket if len(bucket) <= 8 else rng.sample(bucket, 8)
            out.extend(self.nodes[id_from_int(v)] for v in picked)
            mine_lo = (x >> shift) << shift
            a = bisect.bisect_left(ints, mine_lo)
            b = bisect.bisect_left(ints, mine_lo + (1 << shift))
            if b - a <= 1:  # only x itself shares more bits: the table is complete
                break
        return out

    def answer(self, addr: Addr, target: bytes) -> tuple[NodeInfo, list[NodeInfo]] | None:
        """A find_node reply from ``addr``: (responder, 8 closest it knows) or None if dead."""
        if addr in self.routers:
            known = self.routers[addr]
            responder = NodeInfo(b"R" * 20, addr)
        else:
            responder = self.by_addr[addr]
            if responder.id in self.dead:
                return None
            known = self.believed[responder.id]
        return responder, sorted(known, key=lambda n: distance(n.id, target))[:8]

    def delay(self, addr: Addr) -> float:
        return 0.1 if addr in self.routers else self.latency[self.by_addr[addr].id]

    def true_closest(self, target: bytes, k: int, exclude: bytes | None = None) -> list[bytes]:
        live = [x for x in self.nodes if x not in self.dead and x != exclude]
        return sorted(live, key=lambda x: distance(x, target))[:k]


@dataclass
class RunStats:
    sent: list[Addr]
    finish_time: float
    max_active: int
    late_replies: int


def drive(
    net: FakeNet, lookup: Lookup, *, hard_timeout: float = 5.0, max_steps: int = 100_000
) -> RunStats:
    """Run ``lookup`` on ``net`` in virtual time until done; check invariants on the way."""
    now = 0.0
    seq = 0
    events: list[tuple[float, int, Addr]] = []
    sent: list[Addr] = []
    sent_at: dict[Addr, float] = {}
    resolved: set[Addr] = set()
    max_active = 0
    late = 0
    for _ in range(max_steps):
        for n in lookup.next_queries(now):
            assert n.addr not in sent_at, f"{n.addr} queried twice"
            sent.append(n.addr)
            sent_at[n.addr] = now
            reply = net.answer(n.addr, lookup.target)
            when = now + (hard_timeout if reply is None else net.delay(n.addr))
            heapq.heappush(events, (when, seq, n.addr))
            seq += 1
        # alpha, counted by the harness itself: unresolved queries younger than soft_timeout
        active = sum(
            1 for a, t in sent_at.items() if a not in resolved and now < t + lookup.soft_timeout
        )
        assert active <= lookup.alpha
        max_active = max(max_active, active)
        if lookup.done:
            return RunStats(sent, now, max_active, late)
        wake = [
            t for t in (events[0][0] if events else None, lookup.next_deadline()) if t is not None
        ]
        assert wake, "not done, yet nothing in flight and nothing to query"
        now = min(wake)
        while events and events[0][0] <= now:
            _, _, addr = heapq.heappop(events)
            resolved.add(addr)
            reply = net.answer(addr, lookup.target)
            if reply is None:
                lookup.on_failure(NodeInfo(b"", addr), now)
            else:
                responder, nodes = reply
                if now - sent_at[addr] > lookup.soft_timeout:
                    late += 1
                lookup.on_response(responder, now, nodes, token=b"t" + responder.id[:4])
        lookup.handle_timer(now)
    raise AssertionError("lookup did not finish")


@pytest.fixture(scope="module")
def net() -> FakeNet:
    return FakeNet(n=2000, seed=20240501)


# ------------------------------------------------------------------ convergence


def test_converges_to_true_k_closest_in_2000_node_network(net: FakeNet) -> None:
    rng = random.Random(7)
    live = [x for x in net.nodes if x not in net.dead]
    queries: list[int] = []
    late_total = 0
    for _ in range(150):
        target = random_id(rng)
        me = rng.choice(live)
        seeds = sorted(net.tables[me], key=lambda n: distance(n.id, target))[:8]
        lookup = Lookup(target, own_id=me)
        lookup.add_candidates(seeds)
        stats = drive(net, lookup)
        got = [r.node.id for r in lookup.closest()]
        assert got == net.true_closest(target, 8, exclude=me)
        assert [r.node.id for r in lookup.closest()] == sorted(
            got, key=lambda x: distance(x, target)
        )
        assert me not in {net.by_addr[a].id for a in stats.sent}
        assert stats.max_active <= 4
        assert lookup.queried_count == len(stats.sent)
        queries.append(lookup.queried_count)
        late_total += stats.late_replies
    # Measured with this seed: mean 14.1 queries per lookup, max 23 (2,000 nodes, 10% dead,
    # 10% slower than the soft timeout, k=8, alpha=4).
    mean = sum(queries) / len(queries)
    assert mean < 20
    assert max(queries) < 40
    assert late_total > 0  # slow nodes were stalled and their late replies were used


def test_rtt_token_and_payload_are_recorded(net: FakeNet) -> None:
    target = random_id(random.Random(3))
    me = next(x for x in net.nodes if x not in net.dead)
    lookup = Lookup(target, own_id=me)
    lookup.add_candidates(net.tables[me])
    drive(net, lookup)
    for r in lookup.closest():
        assert r.token == b"t" + r.node.id[:4]
        assert r.rtt == pytest.approx(net.latency[r.node.id])
        assert r.payload is None


# ------------------------------------------------------------- alpha and addresses


@pytest.mark.parametrize("alpha", [1, 2, 3, 5])
def test_alpha_respected(net: FakeNet, alpha: int) -> None:
    rng = random.Random(alpha)
    for _ in range(10):
        target = random_id(rng)
        me = rng.choice(list(net.nodes))
        lookup = Lookup(target, alpha=alpha, own_id=me)
        lookup.add_candidates(net.tables[me])
        stats = drive(net, lookup)
        assert stats.max_active == alpha  # the limit is reached, never passed


def test_next_queries_never_exceeds_free_slots() -> None:
    lookup = Lookup(ZERO, k=8, alpha=3)
    lookup.add_candidates(node(i) for i in range(1, 30))
    first = lookup.next_queries(0.0)
    assert [n.id for n in first] == [node(i).id for i in (1, 2, 3)]
    assert lookup.next_queries(0.5) == []
    lookup.on_response(first[0], 0.6)
    assert [n.id for n in lookup.next_queries(0.6)] == [node(4).id]
    assert lookup.active_count == 3


def test_address_never_queried_twice_with_conflicting_contacts() -> None:
    # Every reply re-advertises queried addresses under new ids, queried ids under new
    # addresses and exact duplicates: none may be queried a second time.
    lookup = Lookup(ZERO, k=4, alpha=2)
    lookup.add_candidates([node(i) for i in range(1, 40, 3)])
    asked: list[Addr] = []
    asked_ids: list[bytes] = []
    now = 0.0
    while not lookup.done:
        batch = lookup.next_queries(now)
        assert batch
        for n in batch:
            asked.append(n.addr)
            asked_ids.append(n.id)
        for n in batch:
            i = id_to_int(n.id)
            echoes = [
                NodeInfo(id_from_int(i // 2 + 1000), n.addr),  # same address, new id
                NodeInfo(n.id, ("172.16.0.1", 1000 + i)),  # same id, new address
                n,  # itself
                node(i + 1),
                node(max(1, i - 1)),
            ]
            lookup.on_response(n, now + 0.1, echoes)
        now += 0.2
    assert len(asked) == len(set(asked))
    assert len(asked_ids) == len(set(asked_ids))
    assert lookup.queried_count == len(asked)


def test_own_id_bad_ids_and_bad_ports_are_skipped() -> None:
    me = node(1)
    lookup = Lookup(ZERO, own_id=me.id)
    lookup.add_candidates(
        [
            me,
            NodeInfo(b"short", ("10.9.9.9", 1)),
            NodeInfo(id_from_int(5), ("10.9.9.8", 0)),
            node(2),
        ]
    )
    assert [n.id for n in lookup.next_queries(0.0)] == [node(2).id]
    assert lookup.candidate_count == 0


@pytest.mark.parametrize(
    "addr",
    [
        ("0.0.0.0", 6881),
        ("224.0.0.1", 6881),
        ("255.255.255.255", 6881),
        ("240.1.2.3", 6881),
        ("::", 6881),
        ("ff02::1", 6881),
        ("45.1.2.3", 0),
    ],
)
def test_bogon_candidates_are_dropped(addr: Addr) -> None:
    lookup = Lookup(ZERO)
    lookup.add_candidates([NodeInfo(id_from_int(3), addr), node(2)])
    assert [n.id for n in lookup.next_queries(0.0)] == [node(2).id]


def test_local_candidates_follow_the_scope() -> None:
    local = [
        NodeInfo(id_from_int(3), ("127.0.0.1", 7000)),
        NodeInfo(id_from_int(4), ("192.168.1.9", 6881)),
        NodeInfo(id_from_int(5), ("fd00::1", 6881)),
    ]
    public = NodeInfo(id_from_int(6), ("45.1.2.3", 6881))
    for scope, want in ((None, 4), (True, 4), (False, 1)):
        lookup = Lookup(ZERO, local_network=scope)
        lookup.add_candidates([*local, public])
        assert len(lookup.next_queries(0.0)) == want, scope


def test_candidates_bounded_to_max_candidates_closest() -> None:
    lookup = Lookup(ZERO, k=8, alpha=4, max_candidates=50)
    rng = random.Random(11)
    ids = rng.sample(range(1, 100_000), 500)
    lookup.add_candidates(node(i, port=1 + i % 60000) for i in ids[:250])
    lookup.add_candidates(node(i, port=1 + i % 60000) for i in ids[250:])
    assert lookup.candidate_count == 50
    first = lookup.next_queries(0.0)
    assert [id_to_int(n.id) for n in first] == sorted(ids)[:4]


def test_candidates_beyond_full_closest_set_are_dropped() -> None:
    lookup = Lookup(ZERO, k=2, alpha=2)
    lookup.add_candidates([node(10), node(20)])
    a, b = lookup.next_queries(0.0)
    lookup.on_response(a, 0.1, [node(30), node(15)])
    lookup.on_response(b, 0.1, [node(40)])
    # bar is now 20: 30 and 40 can never matter; 15 still can.
    assert lookup.candidate_count == 1
    assert [n.id for n in lookup.next_queries(0.2)] == [node(15).id]


# ------------------------------------------------------------------ soft timeout


def test_soft_timeout_frees_slot_and_late_reply_counts() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, soft_timeout=1.0)
    lookup.add_candidates([node(1), node(2)])
    assert lookup.next_deadline() is None
    assert [n.id for n in lookup.next_queries(0.0)] == [node(1).id]
    assert lookup.next_deadline() == 1.0
    assert lookup.next_queries(0.5) == []  # the one slot is taken
    lookup.handle_timer(0.99)
    assert lookup.active_count == 1
    lookup.handle_timer(1.0)
    assert (lookup.active_count, lookup.stalled_count) == (0, 1)
    assert lookup.next_deadline() is None
    assert [n.id for n in lookup.next_queries(1.0)] == [node(2).id]
    assert lookup.next_deadline() == 2.0
    lookup.on_response(node(2), 1.2)
    # node 1 is stalled but closer than the only answer: not done yet
    assert not lookup.done
    lookup.on_response(node(1), 1.5, token=b"tok")
    assert lookup.done
    (best,) = lookup.closest()
    assert best.node == node(1)
    assert best.token == b"tok"
    assert best.rtt == 1.5
    assert (lookup.queried_count, lookup.responded_count, lookup.failed_count) == (2, 2, 0)


def test_next_queries_applies_soft_deadline_itself() -> None:
    lookup = Lookup(ZERO, k=4, alpha=1, soft_timeout=2.0)
    lookup.add_candidates([node(1), node(2), node(3)])
    assert len(lookup.next_queries(0.0)) == 1
    assert lookup.next_queries(1.9) == []
    assert [n.id for n in lookup.next_queries(2.0)] == [node(2).id]  # no handle_timer call
    assert lookup.stalled_count == 1


def test_late_reply_after_hard_failure_is_ignored() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1)
    lookup.add_candidates([node(1)])
    lookup.next_queries(0.0)
    lookup.on_failure(node(1), 5.0)
    lookup.on_response(node(1), 6.0, [node(2)])
    assert lookup.closest() == []
    assert (lookup.responded_count, lookup.failed_count, lookup.candidate_count) == (0, 1, 0)
    assert lookup.done


def test_unsolicited_and_duplicate_replies_are_ignored() -> None:
    lookup = Lookup(ZERO, k=2, alpha=1)
    lookup.add_candidates([node(1), node(2)])
    lookup.on_response(node(2), 0.0, [node(3)])  # never queried
    assert lookup.candidate_count == 2
    (n1,) = lookup.next_queries(0.0)
    lookup.on_response(n1, 0.1)
    lookup.on_response(n1, 0.2, [node(3)])
    assert lookup.responded_count == 1
    assert lookup.candidate_count == 1


def test_reply_with_another_id_does_not_join_closest_set() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1)
    lookup.add_candidates([node(50)])
    (n,) = lookup.next_queries(0.0)
    impostor = NodeInfo(id_from_int(1), n.addr)  # claims to be right at the target
    lookup.on_response(impostor, 0.1, [node(60)])
    assert lookup.closest() == []
    assert lookup.failed_count == 1
    assert [x.id for x in lookup.next_queries(0.1)] == [node(60).id]


# ------------------------------------------------------------------ termination


@pytest.mark.parametrize("count", [1, 7, 50, 200])
def test_terminates_when_every_node_is_silent(count: int) -> None:
    net = FakeNet(n=count, seed=count, dead_fraction=1.0, slow_fraction=0.0)
    lookup = Lookup(random_id(random.Random(1)), k=8, alpha=4, soft_timeout=1.0)
    lookup.add_candidates(net.nodes.values())
    stats = drive(net, lookup, hard_timeout=5.0)
    assert lookup.done
    assert lookup.closest() == []
    assert lookup.queried_count == lookup.failed_count == count
    # One batch of alpha per soft timeout, then the last batch's hard timeout.
    assert stats.finish_time <= (math.ceil(count / 4) - 1) * 1.0 + 5.0


def test_empty_lookup_is_done() -> None:
    lookup = Lookup(ZERO)
    assert lookup.done
    assert lookup.next_queries(0.0) == []


# ------------------------------------------------------------------ routers


def test_routers_not_queried_while_candidates_suffice(net: FakeNet) -> None:
    rng = random.Random(5)
    for _ in range(10):
        target = random_id(rng)
        me = rng.choice(list(net.nodes))
        lookup = Lookup(target, own_id=me)
        for addr in net.routers:
            lookup.add_router(addr)
        lookup.add_candidates(sorted(net.tables[me], key=lambda n: distance(n.id, target))[:8])
        stats = drive(net, lookup)
        assert not set(stats.sent) & set(net.routers)


def test_bootstrap_from_routers_only(net: FakeNet) -> None:
    rng = random.Random(6)
    for _ in range(20):
        target = random_id(rng)
        lookup = Lookup(target)
        for addr in net.routers:
            lookup.add_router(addr)
            assert lookup.is_router(addr)
        stats = drive(net, lookup)
        assert set(stats.sent[:2]) == set(net.routers)  # used as a start...
        assert not set(stats.sent[2:]) & set(net.routers)  # ...and only then
        assert [r.node.id for r in lookup.closest()] == net.true_closest(target, 8)
        assert all(not lookup.is_router(r.node.addr) for r in lookup.all_responded())
        assert all(r.node.id != b"R" * 20 for r in lookup.all_responded())


def test_router_only_when_no_candidate_left() -> None:
    lookup = Lookup(ZERO, k=8, alpha=1)
    lookup.add_router(router_addr(1))
    lookup.add_candidates([node(5)])
    assert [n.id for n in lookup.next_queries(0.0)] == [node(5).id]
    lookup.on_failure(node(5), 5.0)
    assert not lookup.done  # the router is still left
    (r,) = lookup.next_queries(5.0)
    assert r.addr == router_addr(1)
    lookup.on_response(NodeInfo(id_from_int(3), r.addr), 5.1, [node(9), node(3, port=7)])
    # the router's own id is not chased at another address; node 9 is
    assert [n.id for n in lookup.next_queries(5.1)] == [node(9).id]
    lookup.on_response(node(9), 5.2)
    assert lookup.done
    assert [x.node for x in lookup.closest()] == [node(9)]
    assert lookup.responded_count == 2


def test_router_fills_free_slots_only_after_real_candidates() -> None:
    lookup = Lookup(ZERO, k=8, alpha=4)
    lookup.add_router(router_addr(1))
    lookup.add_candidates([node(1), node(2)])
    batch = lookup.next_queries(0.0)
    assert [n.addr for n in batch] == [node(1).addr, node(2).addr, router_addr(1)]


def test_in_flight_router_not_waited_for_once_closest_set_is_full() -> None:
    lookup = Lookup(ZERO, k=2, alpha=4)
    lookup.add_router(router_addr(1))
    lookup.add_candidates([node(1)])
    assert [n.addr for n in lookup.next_queries(0.0)] == [node(1).addr, router_addr(1)]
    lookup.add_candidates([node(2)])
    assert [n.addr for n in lookup.next_queries(0.0)] == [node(2).addr]
    lookup.on_response(node(1), 0.1)
    assert not lookup.done
    lookup.on_response(node(2), 0.1)
    assert lookup.done  # the router can never join the closest set
    assert lookup.active_count == 1


def test_router_address_advertised_as_node_becomes_candidate() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1)
    lookup.add_router(node(4).addr)
    lookup.add_candidates([node(4)])
    assert not lookup.is_router(node(4).addr)
    (n,) = lookup.next_queries(0.0)
    lookup.on_response(n, 0.1)
    assert [r.node for r in lookup.closest()] == [node(4)]
    assert lookup.done


# ------------------------------------------------------------------ exact done semantics


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidArgument):
        Lookup(b"short")
    with pytest.raises(InvalidArgument):
        Lookup(ZERO, k=0)
    with pytest.raises(InvalidArgument):
        Lookup(ZERO, alpha=0)
    with pytest.raises(InvalidArgument):
        Lookup(ZERO, soft_timeout=0.0)
    with pytest.raises(InvalidArgument):
        Lookup(ZERO, k=8, max_candidates=7)


# ------------------------------------------------- random interleavings vs. a model


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.sampled_from([1, 2, 3, 8]),
    alpha=st.sampled_from([1, 2, 4]),
    data=st.data(),
)
def test_random_interleavings_match_reference_model(
    seed: int, k: int, alpha: int, data: st.DataObject
) -> None:
    """Drive a lookup by random replies, failures and clock ticks; after every step
    compare ``done``, ``closest`` and each query choice with a brute-force model."""
    rng = random.Random(seed)
    size = 30
    ids = [random_id(rng) for _ in range(size)]
    nodes = [NodeInfo(x, (f"10.1.0.{i}", 6881)) for i, x in enumerate(ids)]
    neighbours = {n.addr: rng.sample(nodes, rng.randint(0, 6)) for n in nodes}
    target = random_id(rng)
    lookup = Lookup(target, k=k, alpha=alpha, soft_timeout=1.0)

    def d(n: NodeInfo) -> int:
        return distance(n.id, target)

    known: set[NodeInfo] = set()
    sent_at: dict[NodeInfo, float] = {}
    responded: set[NodeInfo] = set()
    failed: set[NodeInfo] = set()
    now = 0.0

    def offer(ns: list[NodeInfo]) -> None:
        lookup.add_candidates(ns)
        known.update(ns)

    def in_flight() -> list[NodeInfo]:
        return sorted(set(sent_at) - responded - failed, key=d)

    def model_done() -> bool:
        r = sorted(d(n) for n in responded)
        if len(r) >= k and all(d(n) > r[k - 1] for n in known - responded - failed):
            return True
        return not (known - set(sent_at)) and not in_flight()

    offer(rng.sample(nodes, rng.randint(0, 8)))
    for _ in range(80):
        assert lookup.done == model_done()
        want = sorted(responded, key=d)[:k]
        assert [r.node for r in lookup.closest()] == want
        if lookup.done:
            break
        active = [n for n in in_flight() if now < sent_at[n] + 1.0]
        batch = lookup.next_queries(now)
        assert len(active) + len(batch) <= alpha
        for n in batch:
            assert n in known and n not in sent_at
            bar = [d(x) for x in list(responded) + active if d(x) < d(n)]
            assert len(bar) < k  # it could still enter the closest set
            active.append(n)
            sent_at[n] = now
        flying = in_flight()
        if not flying:
            assert batch or lookup.done, "stuck: nothing in flight and nothing sent"
            continue
        op = data.draw(st.sampled_from(["respond", "fail", "tick"]))
        if op == "tick":
            now += data.draw(st.sampled_from([0.25, 0.5, 1.0]))
            lookup.handle_timer(now)
            continue
        n = flying[data.draw(st.integers(0, len(flying) - 1))]
        now += 0.01
        if op == "respond":
            responded.add(n)
            lookup.on_response(n, now, neighbours[n.addr])
            known.update(neighbours[n.addr])
        else:
            failed.add(n)
            lookup.on_failure(n, now)
        assert lookup.queried_count == len(sent_at)
        assert lookup.responded_count == len(responded)
        assert lookup.failed_count == len(failed)
