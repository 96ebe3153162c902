"""The routing table: buckets, node states, replacement caches, refresh and closest()."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.compact import NodeInfo
from mldht.core.ids import ID_BITS, id_from_int, id_to_int
from mldht.core.routing import NodeStatus, RoutingTable
from mldht.errors import InvalidArgument

WINDOW = 15 * 60.0


def id_sharing(own: bytes, shared: int, rng: random.Random) -> bytes:
    """A random id sharing exactly ``shared`` leading bits with ``own``."""
    assert 0 <= shared < ID_BITS
    own_int = id_to_int(own)
    flip = 1 << (ID_BITS - 1 - shared)
    keep = ~((flip << 1) - 1) & ((1 << ID_BITS) - 1)  # bits above the flipped one
    low = rng.getrandbits(ID_BITS - 1 - shared) if shared < ID_BITS - 1 else 0
    return id_from_int((own_int & keep) | ((own_int & flip) ^ flip) | low)


def shared_bits(a: bytes, b: bytes) -> int:
    return ID_BITS - (id_to_int(a) ^ id_to_int(b)).bit_length()


class Nodes:
    """Makes nodes with distinct IPs (one per IP is a table rule)."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.count = 0

    def addr(self) -> tuple[str, int]:
        self.count += 1
        n = self.count
        # distinct /24s too: one node per /24 per bucket is a table rule
        return (f"45.{(n >> 8) & 255}.{n & 255}.{(n >> 16) + 1}", 6881)

    def sharing(self, own: bytes, shared: int) -> NodeInfo:
        return NodeInfo(id_sharing(own, shared, self.rng), self.addr())

    def random(self) -> NodeInfo:
        return NodeInfo(self.rng.randbytes(20), self.addr())


def make_table(seed: int = 7, **kwargs: Any) -> tuple[RoutingTable, Nodes]:
    rng = random.Random(seed)
    own = rng.randbytes(20)
    table = RoutingTable(own, random.Random(seed + 1), **kwargs)
    return table, Nodes(seed + 2)


def full_far_bucket(**kwargs: Any) -> tuple[RoutingTable, Nodes, list[NodeInfo]]:
    """A table (k = 8, BEP 5 sizes) whose bucket 0 is full and no longer the home bucket.

    The eight nodes of bucket 0 answered at t = 0, 1, …, 7.
    """
    table, nodes = make_table(far_bucket_sizes=(), **kwargs)
    far = [nodes.sharing(table.own_id, 0) for _ in range(8)]
    for t, node in enumerate(far):
        table.node_responded(node, float(t))
    table.node_responded(nodes.sharing(table.own_id, 5), 8.0)  # splits: bucket 0 is far now
    assert table.bucket_count >= 2
    assert all(n in table for n in (f.id for f in far))
    assert table.nodes_to_ping(8.0) == []
    return table, nodes, far


def check_invariants(table: RoutingTable, now: float) -> dict[str, object]:
    snap = table.snapshot(now)
    json.dumps(snap, allow_nan=False)  # JSON-able
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    assert len(buckets) == table.bucket_count
    seen_ips: set[str] = set()
    total = 0
    for i, bucket in enumerate(buckets):
        assert bucket["index"] == i
        assert bucket["home"] == (i == len(buckets) - 1)
        assert len(bucket["nodes"]) <= bucket["limit"]
        lo, hi = int(bucket["first"], 16), int(bucket["last"], 16)
        for entry in bucket["nodes"] + bucket["replacements"]:
            node_id = bytes.fromhex(entry["id"])
            assert lo <= id_to_int(node_id) <= hi
            shared = shared_bits(node_id, table.own_id)
            assert shared >= i if bucket["home"] else shared == i
            assert table.bucket_index(node_id) == i
            assert entry["ip"] not in seen_ips  # one entry per IP, caches included
            seen_ips.add(entry["ip"])
        total += len(bucket["nodes"])
    assert total == len(table) == snap["nodes"] == len(list(table))
    return snap


# ---------------------------------------------------------------------- construction


def test_rejects_bad_arguments() -> None:
    rng = random.Random(0)
    with pytest.raises(InvalidArgument):
        RoutingTable(b"short", rng)
    with pytest.raises(InvalidArgument):
        RoutingTable(bytes(20), rng, k=0)
    with pytest.raises(InvalidArgument):
        RoutingTable(bytes(20), rng, far_bucket_sizes=(16, 0))
    with pytest.raises(InvalidArgument):
        RoutingTable(bytes(20), rng, max_fails=0)
    table = RoutingTable(bytes(20), rng)
    with pytest.raises(InvalidArgument):
        table.bucket_range(1)


def test_own_id_is_never_added() -> None:
    table, nodes = make_table()
    me = NodeInfo(table.own_id, nodes.addr())
    table.node_responded(me, 0.0)
    assert len(table) == 0
    assert table.own_id not in table
    assert table.node_queried(me, 0.0) is False


def test_empty_table() -> None:
    table, _ = make_table()
    assert len(table) == 0
    assert list(table) == []
    assert table.closest(bytes(20)) == []
    assert table.buckets_to_refresh(1e6) == []
    assert table.next_refresh_deadline() is None
    assert table.nodes_to_ping(0.0) == []
    assert table.bucket_count == 1
    assert table.bucket_range(0) == (0, 1 << 160)
    assert 42 not in table


# ---------------------------------------------------------------------- splitting


def test_home_bucket_splits_and_far_buckets_do_not() -> None:
    table, nodes = make_table(far_bucket_sizes=())
    own = table.own_id
    far = [nodes.sharing(own, 0) for _ in range(8)]
    for node in far:
        table.node_responded(node, 0.0)
    assert table.bucket_count == 1  # a bucket holds k = 8 before it needs to split
    assert len(table) == 8

    ninth = nodes.sharing(own, 0)
    table.node_responded(ninth, 1.0)
    # the full bucket held our id, so it split; the ninth node then found bucket 0
    # (no longer ours) full of good nodes and waits in its replacement cache
    assert table.bucket_count == 2
    assert len(table) == 8
    assert ninth.id not in table
    assert table.replacement_count() == 1
    first_bit = id_to_int(own) >> 159
    assert table.bucket_range(0) == ((first_bit ^ 1) << 159, ((first_bit ^ 1) + 1) << 159)

    for _ in range(20):  # a far bucket never splits
        table.node_responded(nodes.sharing(own, 0), 2.0)
    assert table.bucket_count == 2
    assert len(table) == 8
    assert table.replacement_count() == 8  # bounded at k, newest kept

    near = [nodes.sharing(own, 1) for _ in range(8)]
    for node in near:
        table.node_responded(node, 3.0)
    assert table.bucket_count == 2 and len(table) == 16
    table.node_responded(nodes.sharing(own, 1), 4.0)
    # the home bucket (bucket 1) was full of nodes sharing exactly 1 bit: it splits, and
    # the newcomer finds the new bucket 1 full, so it waits in bucket 1's cache
    assert table.bucket_count == 3
    assert len(table) == 16
    deep = nodes.sharing(own, 30)
    table.node_responded(deep, 5.0)
    assert deep.id in table
    assert table.bucket_index(deep.id) == 2
    check_invariants(table, 5.0)


def test_split_redistributes_nodes_by_shared_prefix() -> None:
    table, nodes = make_table(far_bucket_sizes=())
    own = table.own_id
    # 8 nodes spread over prefixes 0..3 fill the single bucket; the next one forces splits
    spread = [nodes.sharing(own, s) for s in (0, 0, 1, 1, 2, 2, 3, 3)]
    for node in spread:
        table.node_responded(node, 0.0)
    assert table.bucket_count == 1
    table.node_responded(nodes.sharing(own, 3), 1.0)
    assert table.bucket_count == 2
    assert len(table) == 9  # after one split both halves have room
    snap = check_invariants(table, 1.0)
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    assert {n["id"] for n in buckets[0]["nodes"]} == {n.id.hex() for n in spread[:2]}
    assert len(buckets[1]["nodes"]) == 7


def test_split_stops_at_the_last_bit() -> None:
    table, nodes = make_table(k=1, far_bucket_sizes=(), replacement_size=2)
    own = table.own_id
    neighbour = NodeInfo(id_from_int(id_to_int(own) ^ 1), nodes.addr())  # shares 159 bits
    table.node_responded(neighbour, 0.0)
    for shared in range(159):
        table.node_responded(nodes.sharing(own, shared), 0.0)
    assert table.bucket_count == 160
    assert len(table) == 160
    check_invariants(table, 0.0)
    assert table.bucket_range(159)[0] <= id_to_int(own) < table.bucket_range(159)[1]


def test_far_bucket_sizes() -> None:
    table, nodes = make_table()
    for t in range(3000):
        table.node_responded(nodes.random(), float(t))
    snap = check_invariants(table, 3000.0)
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    sizes = [len(b["nodes"]) for b in buckets]
    limits = [b["limit"] for b in buckets]
    assert limits[:5] == [128, 64, 32, 16, 8]
    assert all(limit == 8 for limit in limits[4:])
    # with 3000 random ids, about 3000 / 2^(i+1) land in bucket i: the first buckets fill
    assert sizes[:5] == [128, 64, 32, 16, 8]
    assert all(len(b["replacements"]) == 8 for b in buckets[:5])


def test_far_bucket_sizes_are_configurable() -> None:
    table, nodes = make_table(k=4, far_bucket_sizes=(10,))
    for t in range(500):
        table.node_responded(nodes.random(), float(t))
    snap = check_invariants(table, 500.0)
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    assert [len(b["nodes"]) for b in buckets[:3]] == [10, 4, 4]


# ---------------------------------------------------------------------- node states


def test_states_follow_bep5_windows() -> None:
    table, nodes = make_table()
    node = nodes.random()
    table.node_responded(node, 100.0)
    assert table.state_of(node.id, 100.0 + WINDOW - 1) is NodeStatus.GOOD
    assert table.state_of(node.id, 100.0 + WINDOW) is NodeStatus.QUESTIONABLE
    # it answered us once, so a recent query from it makes it good again (BEP 5)
    assert table.node_queried(node, 2000.0) is False
    assert table.state_of(node.id, 2000.0 + WINDOW - 1) is NodeStatus.GOOD
    assert table.state_of(node.id, 2000.0 + WINDOW) is NodeStatus.QUESTIONABLE
    # one unanswered query: not confirmed any more; max_fails (2) in a row: bad
    table.node_failed(node, 2001.0)
    assert table.state_of(node.id, 2001.0) is NodeStatus.QUESTIONABLE
    table.node_failed(node, 2002.0)
    assert table.state_of(node.id, 2002.0) is NodeStatus.BAD
    assert table.good_nodes(2002.0) == []
    # an answer clears the failures
    table.node_responded(node, 2003.0)
    assert table.state_of(node.id, 2003.0) is NodeStatus.GOOD
    assert table.good_nodes(2003.0) == [node]
    assert table.state_of(nodes.random().id, 0.0) is None


def test_custom_state_constants() -> None:
    table, nodes = make_table(max_fails=3, good_window=60.0)
    node = nodes.random()
    table.node_responded(node, 0.0)
    assert table.state_of(node.id, 60.0) is NodeStatus.QUESTIONABLE
    for _ in range(2):
        table.node_failed(node, 1.0)
    assert table.state_of(node.id, 1.0) is NodeStatus.QUESTIONABLE
    table.node_failed(node, 1.0)
    assert table.state_of(node.id, 1.0) is NodeStatus.BAD


def test_rtt_and_version_are_recorded() -> None:
    table, nodes = make_table()
    node = nodes.random()
    table.node_responded(node, 0.0, rtt=0.2, version=b"LT\x01\x02")
    entry = table.get(node.id)
    assert entry is not None
    assert entry.rtt == pytest.approx(0.2)
    assert entry.version == b"LT\x01\x02"
    table.node_responded(node, 1.0, rtt=0.6)
    assert entry.rtt == pytest.approx(0.3)  # smoothed
    assert entry.version == b"LT\x01\x02"
    assert entry.first_seen == 0.0 and entry.last_response == 1.0
    assert entry.id == node.id and entry.addr == node.addr


# ---------------------------------------------------------------------- eviction


def test_questionable_node_is_pinged_then_replaced_when_it_fails() -> None:
    table, nodes, far = full_far_bucket()
    now = 8.0 + WINDOW  # every node of bucket 0 has gone questionable
    newcomer = nodes.sharing(table.own_id, 0)
    table.node_responded(newcomer, now)
    assert newcomer.id not in table  # waits in the replacement cache
    assert table.replacement_count() == 1
    assert table.nodes_to_ping(now) == [far[0]]  # the least recently seen
    assert table.nodes_to_ping(now) == []  # named once, and one ping per bucket at a time

    table.node_failed(far[0], now + 5)
    # BEP 5: a failed node gets a second ping before it is replaced
    assert far[0].id in table
    assert table.nodes_to_ping(now + 5) == [far[0]]
    table.node_failed(far[0], now + 10)
    assert far[0].id not in table
    assert newcomer.id in table
    assert table.replacement_count() == 0
    assert len(table) == 9
    entry = table.get(newcomer.id)
    assert entry is not None and entry.in_table
    snap = check_invariants(table, now + 10)
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    assert buckets[0]["last_changed"] == now + 10  # a node was replaced
    assert table.nodes_to_ping(now + 10) == []  # nobody waits any more


def test_questionable_node_that_answers_stays_and_the_next_one_is_pinged() -> None:
    table, nodes, far = full_far_bucket()
    now = 8.0 + WINDOW
    newcomer = nodes.sharing(table.own_id, 0)
    table.node_responded(newcomer, now)
    assert table.nodes_to_ping(now) == [far[0]]
    table.node_responded(far[0], now + 1)
    assert far[0].id in table
    assert table.state_of(far[0].id, now + 1) is NodeStatus.GOOD
    assert newcomer.id not in table and table.replacement_count() == 1
    # BEP 5: it answered, so move on to the next least recently seen questionable node
    assert table.nodes_to_ping(now + 1) == [far[1]]
    table.node_responded(far[1], now + 2)
    assert table.nodes_to_ping(now + 2) == [far[2]]


def test_no_ping_while_the_full_bucket_is_good() -> None:
    table, nodes, far = full_far_bucket()
    newcomer = nodes.sharing(table.own_id, 0)
    table.node_responded(newcomer, 100.0)
    assert newcomer.id not in table
    assert table.nodes_to_ping(100.0) == []  # all good: BEP 5 discards (we cache)
    # once the bucket goes stale, its refresh looks again for a questionable node
    later = 8.0 + WINDOW
    assert table.buckets_to_refresh(later)
    assert table.nodes_to_ping(later) == [far[0]]


def test_replacement_promoted_when_node_goes_bad_through_failures() -> None:
    table, nodes, far = full_far_bucket()
    waiting = [nodes.sharing(table.own_id, 0) for _ in range(3)]
    for t, node in enumerate(waiting):
        table.node_responded(node, 50.0 + t)
    assert table.replacement_count() == 3
    table.node_failed(far[4], 60.0)
    assert far[4].id in table
    table.node_failed(far[4], 61.0)
    assert far[4].id not in table
    assert waiting[2].id in table  # the newest replacement wins
    assert waiting[0].id not in table and waiting[1].id not in table
    assert table.replacement_count() == 2
    # a failure report must match the address too
    table.node_failed(NodeInfo(far[5].id, ("192.0.2.1", 1)), 62.0)
    table.node_failed(NodeInfo(far[5].id, ("192.0.2.1", 1)), 63.0)
    entry = table.get(far[5].id)
    assert entry is not None and entry.fails == 0


def test_bad_node_without_replacement_stays_until_a_newcomer_takes_its_place() -> None:
    table, nodes, far = full_far_bucket()
    for _ in range(2):
        table.node_failed(far[3], 20.0)
    assert far[3].id in table  # nothing to replace it with: kept, but bad
    assert table.state_of(far[3].id, 20.0) is NodeStatus.BAD
    assert far[3] not in table.closest(far[3].id, 50)
    newcomer = nodes.sharing(table.own_id, 0)
    table.node_responded(newcomer, 21.0)
    assert newcomer.id in table  # BEP 5: a bad node is replaced by the new one
    assert far[3].id not in table
    assert table.replacement_count() == 0


def test_prefer_hook_picks_preferred_replacements() -> None:
    preferred: set[bytes] = set()
    table, nodes, far = full_far_bucket(prefer=lambda n: n.id in preferred)
    waiting = [nodes.sharing(table.own_id, 0) for _ in range(3)]
    preferred.add(waiting[0].id)
    for t, node in enumerate(waiting):
        table.node_responded(node, 50.0 + t)
    for _ in range(2):
        table.node_failed(far[0], 60.0)
    assert waiting[0].id in table  # older, but preferred
    assert waiting[1].id not in table and waiting[2].id not in table


def test_prefer_hook_protects_preferred_cache_entries() -> None:
    table, nodes = make_table(
        far_bucket_sizes=(), replacement_size=2, prefer=lambda n: n.addr[1] != 7001
    )
    far = [nodes.sharing(table.own_id, 0) for _ in range(8)]
    for t, node in enumerate(far):
        table.node_responded(node, float(t))
    table.node_responded(nodes.sharing(table.own_id, 5), 8.0)  # splits: bucket 0 is far now
    good = [nodes.sharing(table.own_id, 0) for _ in range(2)]
    for node in good:
        table.node_responded(node, 30.0)  # the bucket is full of preferred nodes: cached
    assert table.replacement_count() == 2
    plain = NodeInfo(id_sharing(table.own_id, 0, nodes.rng), (nodes.addr()[0], 7001))
    table.node_responded(plain, 31.0)  # the cache is full of preferred nodes: not kept
    assert plain.id not in table
    assert table.replacement_count() == 2
    for _ in range(2):
        table.node_failed(far[0], 40.0)
    for _ in range(2):
        table.node_failed(far[1], 40.0)
    assert good[0].id in table and good[1].id in table
    assert table.replacement_count() == 0


def test_valid_newcomer_takes_an_invalid_entrys_place() -> None:
    """BEP 42: a preferred node entering a full bucket that cannot split replaces the least
    recently seen non-preferred entry, which waits in the replacement cache."""
    table, nodes, far = full_far_bucket(prefer=lambda n: n.addr[1] == 7000, replacement_size=2)
    good = [
        NodeInfo(id_sharing(table.own_id, 0, nodes.rng), (nodes.addr()[0], 7000)) for _ in range(2)
    ]
    for node in good:
        table.node_responded(node, 30.0)
    assert good[0].id in table and good[1].id in table
    assert far[0].id not in table and far[1].id not in table  # answered longest ago
    assert table.replacement_count() == 2  # far[0] and far[1] wait
    plain = nodes.sharing(table.own_id, 0)
    table.node_responded(plain, 31.0)  # newest wins among non-preferred cache entries
    assert table.replacement_count() == 2
    for _ in range(2):
        table.node_failed(good[0], 40.0)
    assert good[0].id not in table and plain.id in table
    check_invariants(table, 41.0)


def test_cached_node_answering_again_is_promoted_when_there_is_room() -> None:
    table, nodes, far = full_far_bucket()
    waiting = nodes.sharing(table.own_id, 0)
    table.node_responded(waiting, 30.0)
    assert table.remove(far[0].id) is True
    assert waiting.id in table  # promoted into the freed place
    assert table.remove(far[0].id) is False
    other = nodes.sharing(table.own_id, 0)
    table.node_responded(other, 31.0)
    assert other.id not in table
    for _ in range(2):
        table.node_failed(far[1], 32.0)
    assert other.id in table
    check_invariants(table, 32.0)


def test_remove_of_a_cached_node() -> None:
    table, nodes, _ = full_far_bucket()
    waiting = nodes.sharing(table.own_id, 0)
    table.node_responded(waiting, 30.0)
    assert table.replacement_count() == 1
    assert table.get(waiting.id) is None  # get() sees live entries only
    assert table.remove(waiting.id) is True
    assert table.replacement_count() == 0
    assert len(table) == 9


# ---------------------------------------------------------------------- identity rules


def test_one_entry_per_ip() -> None:
    table, nodes = make_table()
    a = NodeInfo(nodes.rng.randbytes(20), ("203.0.113.5", 1000))
    b = NodeInfo(nodes.rng.randbytes(20), ("203.0.113.5", 2000))
    table.node_responded(a, 0.0)
    table.node_responded(b, 1.0)
    assert a.id in table and b.id not in table
    assert table.node_queried(b, 2.0) is False  # it could not get in: no point pinging it
    for _ in range(2):
        table.node_failed(a, 3.0)
    # the entry holding the IP is bad: the other port may take over
    table.node_responded(b, 4.0)
    assert b.id in table and a.id not in table
    assert len(table) == 1


def test_one_entry_per_ip_covers_the_replacement_cache() -> None:
    table, nodes, _ = full_far_bucket()
    waiting = nodes.sharing(table.own_id, 0)
    table.node_responded(waiting, 30.0)
    same_ip = NodeInfo(id_sharing(table.own_id, 9, nodes.rng), (waiting.addr[0], 1234))
    table.node_responded(same_ip, 31.0)
    assert same_ip.id not in table


def test_same_ip_port_with_new_id_evicts_the_old_entry() -> None:
    table, nodes = make_table()
    addr = ("198.51.100.7", 6881)
    old = NodeInfo(nodes.rng.randbytes(20), addr)
    new = NodeInfo(nodes.rng.randbytes(20), addr)
    table.node_responded(old, 0.0)
    assert table.node_queried(new, 1.0) is True  # worth a ping: an answer replaces old
    table.node_responded(new, 1.0)
    assert new.id in table and old.id not in table
    assert len(table) == 1
    assert list(table) == [new]


def test_same_ip_port_with_new_id_frees_a_full_bucket_place() -> None:
    table, nodes, far = full_far_bucket()
    waiting = nodes.sharing(table.own_id, 0)
    table.node_responded(waiting, 30.0)
    # far[2] restarts with an id in another bucket: its place goes to the waiting node
    moved = NodeInfo(id_sharing(table.own_id, 7, nodes.rng), far[2].addr)
    table.node_responded(moved, 31.0)
    assert far[2].id not in table
    assert moved.id in table and waiting.id in table
    assert table.replacement_count() == 0
    check_invariants(table, 31.0)


def test_same_id_from_another_address_does_not_move_a_node() -> None:
    table, nodes = make_table()
    node = nodes.random()
    impostor = NodeInfo(node.id, ("192.0.2.99", 4444))
    table.node_responded(node, 0.0)
    table.node_responded(impostor, 1.0)
    entry = table.get(node.id)
    assert entry is not None and entry.addr == node.addr
    assert table.node_queried(impostor, 2.0) is False
    for _ in range(2):
        table.node_failed(node, 3.0)
    # the old entry is bad: the id may now move
    assert table.node_queried(impostor, 4.0) is True
    table.node_responded(impostor, 4.0)
    entry = table.get(node.id)
    assert entry is not None and entry.addr == impostor.addr
    assert entry.fails == 0
    assert len(table) == 1


def test_same_id_on_a_new_port_of_the_same_ip_moves_only_once_bad() -> None:
    table, nodes = make_table()
    node = nodes.random()
    rebound = NodeInfo(node.id, (node.addr[0], node.addr[1] + 1))
    table.node_responded(node, 0.0)
    table.node_responded(rebound, 1.0)
    entry = table.get(node.id)
    assert entry is not None and entry.addr == node.addr
    for _ in range(2):
        table.node_failed(node, 2.0)
    table.node_responded(rebound, 3.0)
    entry = table.get(node.id)
    assert entry is not None and entry.addr == rebound.addr
    assert len(table) == 1
    check_invariants(table, 3.0)


# ---------------------------------------------------------------------- queried-only nodes


def test_nodes_that_only_query_us_are_not_inserted() -> None:
    table, nodes = make_table(ping_interval=300.0)
    stranger = nodes.random()
    assert table.node_queried(stranger, 0.0) is True
    assert len(table) == 0 and stranger.id not in table
    assert table.node_queried(stranger, 10.0) is False  # asked to ping it a moment ago
    assert table.node_queried(stranger, 299.0) is False
    assert table.node_queried(stranger, 300.0) is True
    assert len(table) == 0
    table.node_responded(stranger, 301.0)  # the caller's ping was answered
    assert stranger.id in table
    assert table.node_queried(stranger, 302.0) is False  # known and good: nothing to do
    entry = table.get(stranger.id)
    assert entry is not None and entry.last_query == 302.0


def test_recent_ping_memory_is_bounded() -> None:
    table, nodes = make_table(recent_pings=2)
    a, b, c = nodes.random(), nodes.random(), nodes.random()
    assert table.node_queried(a, 0.0)
    assert table.node_queried(b, 0.0)
    assert table.node_queried(c, 0.0)  # pushes a out of the memory
    assert not table.node_queried(c, 1.0)
    assert table.node_queried(a, 1.0)


def test_queried_node_not_worth_pinging_when_its_bucket_and_cache_are_full() -> None:
    table, nodes, _ = full_far_bucket(replacement_size=1)
    table.node_responded(nodes.sharing(table.own_id, 0), 20.0)
    assert table.node_queried(nodes.sharing(table.own_id, 0), 21.0) is False
    # the home bucket can always split: a node for it is worth a ping
    assert table.node_queried(nodes.sharing(table.own_id, 40), 21.0) is True


def test_bad_node_querying_us_is_worth_a_ping() -> None:
    table, nodes = make_table()
    node = nodes.random()
    table.node_responded(node, 0.0)
    for _ in range(2):
        table.node_failed(node, 1.0)
    assert table.node_queried(node, 2.0) is True
    assert table.node_queried(node, 3.0) is False  # not twice within ping_interval


# ---------------------------------------------------------------------- refresh


def test_refresh_targets_land_in_stale_buckets_only() -> None:
    table, nodes = make_table(far_bucket_sizes=())
    own = table.own_id
    for shared in (0, 1, 2, 3):
        for _ in range(8):
            table.node_responded(nodes.sharing(own, shared), 0.0)
    table.node_responded(nodes.sharing(own, 4), 0.0)
    count = table.bucket_count
    assert count >= 4
    assert table.next_refresh_deadline() == WINDOW
    assert table.buckets_to_refresh(WINDOW - 1) == []

    fresh = next(iter(table))  # a node of bucket 0 answers later: bucket 0 is fresh
    assert table.bucket_index(fresh.id) == 0
    table.node_responded(fresh, 500.0)
    assert table.next_refresh_deadline() == WINDOW

    targets = table.buckets_to_refresh(WINDOW)
    indexes = [table.bucket_index(t) for t in targets]
    assert indexes == list(range(1, count))  # one target in each stale bucket's range
    for index, target in zip(indexes, targets, strict=True):
        lo, hi = table.bucket_range(index)
        assert lo <= id_to_int(target) < hi
    assert table.buckets_to_refresh(WINDOW) == []  # marked as refreshed
    assert table.next_refresh_deadline() == 500.0 + WINDOW
    targets = table.buckets_to_refresh(500.0 + WINDOW)
    assert [table.bucket_index(t) for t in targets] == [0]
    assert table.next_refresh_deadline() == 2 * WINDOW


def test_refresh_targets_are_random_and_seeded() -> None:
    def targets(seed: int) -> list[bytes]:
        table, nodes = make_table(seed=seed)
        for _ in range(200):
            table.node_responded(nodes.random(), 0.0)
        return table.buckets_to_refresh(WINDOW)

    first = targets(3)
    assert first == targets(3)
    assert len(set(first)) == len(first)


# ---------------------------------------------------------------------- closest


def brute_force(table: RoutingTable, target: bytes, n: int, now: float) -> list[NodeInfo]:
    usable = [node for node in table if table.state_of(node.id, now) is not NodeStatus.BAD]
    return sorted(usable, key=lambda node: id_to_int(node.id) ^ id_to_int(target))[:n]


def test_closest_orders_by_xor_distance_and_skips_bad_nodes() -> None:
    table, nodes = make_table()
    for _ in range(400):
        table.node_responded(nodes.random(), 0.0)
    target = nodes.rng.randbytes(20)
    result = table.closest(target, 20)
    distances = [id_to_int(n.id) ^ id_to_int(target) for n in result]
    assert distances == sorted(distances)
    assert len(result) == 20
    assert result == brute_force(table, target, 20, 0.0)
    for _ in range(2):
        table.node_failed(result[0], 1.0)  # bad: replaced, or kept but skipped
    assert result[0] not in table.closest(target, 20)
    assert table.closest(target, 20) == brute_force(table, target, 20, 1.0)
    assert table.closest(target, 0) == []
    assert len(table.closest(target, 10_000)) == len(brute_force(table, target, 10_000, 1.0))
    # an exact match comes first
    some = next(iter(table))
    assert table.closest(some.id, 1) == [some]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(0, 400),
    near_fraction=st.floats(0.0, 1.0),
    bad_fraction=st.floats(0.0, 0.3),
    k=st.integers(1, 8),
    far=st.sampled_from([(), (128, 64, 32, 16), (3,)]),
    n=st.integers(1, 40),
    target_kind=st.sampled_from(["random", "near", "own", "member"]),
)
def test_closest_matches_brute_force(
    seed: int,
    count: int,
    near_fraction: float,
    bad_fraction: float,
    k: int,
    far: tuple[int, ...],
    n: int,
    target_kind: str,
) -> None:
    rng = random.Random(seed)
    own = rng.randbytes(20)
    table = RoutingTable(own, random.Random(seed), k=k, far_bucket_sizes=far)
    nodes = Nodes(seed)
    for t in range(count):
        if rng.random() < near_fraction:  # cluster around our id: many buckets
            node = nodes.sharing(own, min(int(rng.expovariate(0.15)), ID_BITS - 1))
        else:
            node = nodes.random()
        table.node_responded(node, float(t))
    members = list(table)
    for node in members:
        if rng.random() < bad_fraction:
            table.node_failed(node, float(count))
            table.node_failed(node, float(count))
    if target_kind == "random" or not members:
        target = rng.randbytes(20)
    elif target_kind == "near":
        target = id_sharing(own, rng.randrange(ID_BITS), rng)
    elif target_kind == "own":
        target = own
    else:
        target = rng.choice(members).id
    check_invariants(table, float(count))
    assert table.closest(target, n) == brute_force(table, target, n, float(count))


def test_closest_rejects_a_target_of_the_wrong_length() -> None:
    table, _ = make_table()
    with pytest.raises(InvalidArgument):
        table.closest(b"\x00" * 19)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 600))
def test_random_event_sequences_keep_the_table_consistent(seed: int, steps: int) -> None:
    """Answers, failures, queries, pings, removals and restarts in random order."""
    rng = random.Random(seed)
    own = rng.randbytes(20)
    table = RoutingTable(
        own, random.Random(seed), k=rng.choice([1, 2, 8]), far_bucket_sizes=rng.choice([(), (4,)])
    )
    ips = [f"45.0.{i // 256}.{i % 256}" for i in range(60)]  # few IPs: many collisions
    known: list[NodeInfo] = []
    now = 0.0
    for _ in range(steps):
        now += rng.choice([0.0, 1.0, 60.0, 400.0])
        roll = rng.random()
        if roll < 0.4 or not known:
            if rng.random() < 0.5:
                node_id = id_sharing(own, min(int(rng.expovariate(0.3)), ID_BITS - 1), rng)
            else:
                node_id = rng.randbytes(20)
            if known and rng.random() < 0.1:
                node_id = rng.choice(known).id  # an id from another address
            node = NodeInfo(node_id, (rng.choice(ips), rng.choice([6881, 6882])))
            known.append(node)
            if rng.random() < 0.3:
                table.node_queried(node, now)
            else:
                table.node_responded(node, now, rtt=rng.random())
        elif roll < 0.65:
            table.node_failed(rng.choice(known), now)
        elif roll < 0.8:
            table.node_responded(rng.choice(known), now)
        elif roll < 0.85:
            table.remove(rng.choice(known).id)
        elif roll < 0.9:
            table.buckets_to_refresh(now)
        else:
            for node in table.nodes_to_ping(now):
                if rng.random() < 0.5:
                    table.node_failed(node, now)
                else:
                    table.node_responded(node, now)
    snap = check_invariants(table, now)
    buckets = snap["buckets"]
    assert isinstance(buckets, list)
    listed = {e["id"] for b in buckets for e in b["nodes"] + b["replacements"]}
    # the id and IP indexes name exactly the entries in buckets and caches
    table.check_indexes()
    assert len(listed) == len(table) + table.replacement_count()
    assert sum(len(b["replacements"]) for b in buckets) == table.replacement_count()
    for node in table:
        entry = table.get(node.id)
        assert entry is not None and entry.in_table and entry.node == node
    target = rng.randbytes(20)
    assert table.closest(target, 16) == brute_force(table, target, 16, now)


def test_one_per_ip_can_be_relaxed_to_one_per_address() -> None:
    rng = random.Random(3)
    strict = RoutingTable(b"\x00" * 20, rng)
    relaxed = RoutingTable(b"\x00" * 20, rng, one_per_ip=False)
    for port in range(1000, 1005):
        node = NodeInfo(rng.randbytes(20), ("2001:db8::1", port))
        strict.node_responded(node, 0.0)
        relaxed.node_responded(node, 0.0)
    assert len(strict) == 1 and len(relaxed) == 5


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fd00::5"])
def test_local_addresses_count_per_ip_and_port(ip: str) -> None:
    """A private network may run many nodes on one address: one entry per ip:port."""
    rng = random.Random(4)
    table = RoutingTable(b"\x00" * 20, rng)
    for port in range(7001, 7006):
        table.node_responded(NodeInfo(rng.randbytes(20), (ip, port)), 0.0)
    assert len(table) == 5
    # the same ip:port with a new id still replaces the old entry
    table.node_responded(NodeInfo(rng.randbytes(20), (ip, 7001)), 1.0)
    assert len(table) == 5


def test_public_addresses_count_once_per_ip() -> None:
    rng = random.Random(5)
    table = RoutingTable(b"\x00" * 20, rng)
    for port in range(7001, 7006):
        table.node_responded(NodeInfo(rng.randbytes(20), ("45.33.1.2", port)), 0.0)
    assert len(table) == 1


# ---------------------------------------------------------------------------- hardening


def test_one_node_per_slash24_per_bucket() -> None:
    table, nodes = make_table(far_bucket_sizes=(), k=2)
    rng = random.Random(3)
    for shared in (3, 4, 6):  # split the table: bucket 0 is a far bucket with room for 2
        table.node_responded(nodes.sharing(table.own_id, shared), 0.0)
    assert table.bucket_count > 1 and len(table) == 3
    first = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.1.2.3", 6881))
    same24 = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.1.2.4", 6881))
    table.node_responded(first, 1.0)
    table.node_responded(same24, 2.0)
    assert first.id in table and same24.id not in table
    assert not table.node_queried(same24, 3.0)
    # another bucket may hold one of that /24 too
    other_bucket = NodeInfo(id_sharing(table.own_id, 7, rng), ("45.1.2.5", 6881))
    table.node_responded(other_bucket, 4.0)
    assert other_bucket.id in table
    # ten addresses of one /24: one entry per bucket at most
    for i in range(10, 20):
        table.node_responded(NodeInfo(id_sharing(table.own_id, 0, rng), (f"45.1.2.{i}", 1)), 5.0)
    assert len(table) == 5
    # a bad holder gives way
    for _ in range(2):
        table.node_failed(first, 6.0)
    table.node_responded(same24, 7.0)
    assert same24.id in table and first.id not in table
    check_invariants(table, 8.0)


def test_slash64_rule_for_ipv6_and_local_exempt() -> None:
    table, _ = make_table(far_bucket_sizes=())
    rng = random.Random(4)
    a = NodeInfo(id_sharing(table.own_id, 0, rng), ("2001:db8:1:2::1", 6881))
    b = NodeInfo(id_sharing(table.own_id, 0, rng), ("2001:db8:1:2::2", 6881))
    c = NodeInfo(id_sharing(table.own_id, 0, rng), ("2001:db8:1:3::1", 6881))
    for n in (a, b, c):
        table.node_responded(n, 1.0)
    assert a.id in table and b.id not in table and c.id in table
    local = [NodeInfo(id_sharing(table.own_id, 0, rng), (f"10.0.0.{i}", 6881)) for i in (1, 2)]
    for n in local:
        table.node_responded(n, 2.0)
    assert all(n.id in table for n in local)
    # one_per_ip=False lifts both IP rules
    relaxed, _ = make_table(far_bucket_sizes=(), one_per_ip=False)
    for n in (a, b):
        relaxed.node_responded(NodeInfo(id_sharing(relaxed.own_id, 0, rng), n.addr), 1.0)
    assert len(relaxed) == 2


def test_invalid_id_never_displaces_a_valid_one() -> None:
    valid_ids: set[bytes] = set()
    table, _ = make_table(far_bucket_sizes=(), prefer=lambda n: n.id in valid_ids)
    rng = random.Random(5)
    good = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.9.9.9", 7000))
    valid_ids.add(good.id)
    table.node_responded(good, 1.0)
    # same ip:port, new invalid id: a restart would evict, but not a valid entry
    restarted = NodeInfo(id_sharing(table.own_id, 0, rng), good.addr)
    table.node_responded(restarted, 2.0)
    assert good.id in table and restarted.id not in table
    # same /24, invalid: turned away
    neighbour = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.9.9.10", 6881))
    table.node_responded(neighbour, 3.0)
    assert neighbour.id not in table
    assert not table.node_queried(neighbour, 3.0)


def test_valid_newcomer_replaces_invalid_in_same_slash24() -> None:
    table, _ = make_table(far_bucket_sizes=(), prefer=lambda n: n.addr[1] == 7000)
    rng = random.Random(6)
    invalid = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.9.9.9", 6881))
    valid = NodeInfo(id_sharing(table.own_id, 0, rng), ("45.9.9.10", 7000))
    table.node_responded(invalid, 1.0)
    assert table.node_queried(valid, 2.0)
    table.node_responded(valid, 2.0)
    assert valid.id in table and invalid.id not in table
    check_invariants(table, 3.0)


def test_enforce_node_id() -> None:
    from mldht.core import bep42

    rng = random.Random(70)
    table, _ = make_table(enforce_node_id=True)
    bogus = NodeInfo(rng.randbytes(20), ("45.3.3.3", 6881))
    assert not bep42.is_valid_node_id(bogus.id, bogus.addr[0])
    assert not table.node_queried(bogus, 1.0)
    table.node_responded(bogus, 1.0)
    assert bogus.id not in table
    valid = NodeInfo(bep42.generate_node_id("45.3.3.3", rng), ("45.3.3.3", 6881))
    table.node_responded(valid, 2.0)
    assert valid.id in table
    local = NodeInfo(rng.randbytes(20), ("192.168.1.1", 6881))  # exempt (BEP 42)
    table.node_responded(local, 3.0)
    assert local.id in table
    # off by default: the same bogus node enters a default table
    plain, _ = make_table()
    plain.node_responded(bogus, 1.0)
    assert bogus.id in plain


@pytest.mark.parametrize(
    "addr",
    [
        ("0.0.0.0", 6881),
        ("0.1.2.3", 6881),
        ("224.0.0.1", 6881),
        ("239.1.2.3", 6881),
        ("240.0.0.1", 6881),
        ("255.255.255.255", 6881),
        ("::", 6881),
        ("ff02::1", 6881),
        ("45.1.1.1", 0),
    ],
)
def test_bogons_never_enter(addr: tuple[str, int]) -> None:
    table, _ = make_table()
    node = NodeInfo(random.Random(1).randbytes(20), addr)
    assert not table.node_queried(node, 1.0)
    table.node_responded(node, 1.0)
    assert len(table) == 0


def test_local_addresses_follow_the_scope() -> None:
    rng = random.Random(8)
    nodes = [
        NodeInfo(rng.randbytes(20), addr)
        for addr in (("127.0.0.1", 7001), ("10.0.0.1", 6881), ("fe80::1", 6881), ("fd00::5", 1))
    ]
    for scope, admitted in ((None, 4), (True, 4), (False, 0)):
        table, _ = make_table(local_network=scope)
        for n in nodes:
            table.node_responded(n, 1.0)
        assert len(table) == admitted, scope
    public, _ = make_table(local_network=False)
    node = NodeInfo(rng.randbytes(20), ("45.1.1.1", 6881))
    public.node_responded(node, 1.0)
    assert node.id in public
