"""Lookup rules with a few hand-placed nodes (mldht.core.lookup): not waiting for stalled
queries, IP diversity (one node per public /24, /64), the resend at the soft deadline and
each termination rule."""

from __future__ import annotations

import pytest

from mldht.core.compact import NodeInfo
from mldht.core.ids import id_from_int, id_to_int
from mldht.core.lookup import Lookup

ZERO = bytes(20)


def node(i: int, port: int = 6881) -> NodeInfo:
    """A node whose XOR distance to ZERO is ``i``."""
    return NodeInfo(id_from_int(i), (f"10.0.{i // 256 % 256}.{i % 256}", port))


def test_fast_mode_does_not_wait_for_stalled_and_soft_timeout_adapts() -> None:
    """wait_for_stalled=False: a silent node closer than the k-th answer holds the lookup
    only until its soft deadline, which a shorter set_soft_timeout() brings forward."""
    from mldht.core.compact import NodeInfo as _NodeInfo
    from mldht.core.lookup import Lookup as _Lookup

    target = bytes(20)
    nodes = [_NodeInfo(bytes([0] * 19 + [i + 1]), (f"10.0.0.{i + 1}", 1)) for i in range(9)]
    for fast in (False, True):
        lk = _Lookup(target, k=8, alpha=9, soft_timeout=1.0, wait_for_stalled=not fast)
        lk.add_candidates(nodes)
        assert lk.next_queries(0.0) == nodes[:8]  # only the k closest can matter
        for n in nodes[1:8]:  # the closest one (nodes[0]) stays silent
            lk.on_response(n, 0.05)
        assert not lk.done
        lk.set_soft_timeout(0.2)  # RTTs measured: 0.2 s from when it was sent
        assert lk.next_deadline() == 0.2
        assert lk.next_queries(0.2) == [nodes[8]]  # the stalled query freed its slot
        lk.on_response(nodes[8], 0.25)
        assert lk.done is fast
        lk.on_failure(nodes[0], 5.0)  # the hard timeout
        assert lk.done
        assert [r.node for r in lk.closest()] == nodes[1:]


# ------------------------------------------------------- IP diversity and termination


def _pub(i: int, ip: str | None = None, port: int = 6881) -> NodeInfo:
    """A node at XOR distance ``i`` from ZERO on a public address (its own /24 unless
    ``ip`` is given)."""
    return NodeInfo(id_from_int(i), (ip or f"20.{i // 256 % 256}.{i % 256}.1", port))


def test_one_node_per_public_subnet_against_a_port_flooder() -> None:
    # 40 honest nodes known; one attacker entry near the target answers with 8 made-up
    # ids on its own IP (ports 2000-2007): it keeps one place, the rest go to honest nodes.
    lookup = Lookup(ZERO, k=8, alpha=8)
    honest = [_pub(1000 + 10 * i) for i in range(40)]
    attacker = _pub(5, ip="66.6.6.6")
    lookup.add_candidates([*honest, attacker])
    first = lookup.next_queries(0.0)
    assert attacker in first
    fakes = [_pub(1 + i, ip="66.6.6.6", port=2000 + i) for i in range(4)]
    fakes += [_pub(6 + i, ip="66.6.6.7", port=2004 + i) for i in range(4)]  # same /24
    lookup.on_response(attacker, 0.1, fakes)
    for n in first:
        lookup.on_response(n, 0.1)
    for _ in range(20):
        for n in lookup.next_queries(0.2):
            assert n.addr[0] != "66.6.6.6" or n == attacker
            lookup.on_response(n, 0.2)
    closest = lookup.closest()
    subnets = [r.node.addr[0].rsplit(".", 1)[0] for r in closest]
    assert len(set(subnets)) == len(subnets) == 8
    assert lookup.done


def test_closer_node_of_a_subnet_replaces_an_unqueried_one_but_not_a_queried_one() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1)
    far = _pub(50, ip="30.0.0.1")
    lookup.add_candidates([far])
    near = _pub(10, ip="30.0.0.2")
    lookup.add_candidates([near])
    assert lookup.candidate_count == 1
    assert lookup.next_queries(0.0) == [near]
    # near is in flight now: a still closer one of its /24 is not taken
    lookup.add_candidates([_pub(3, ip="30.0.0.3")])
    assert lookup.candidate_count == 0


def test_local_addresses_are_exempt_from_subnet_diversity() -> None:
    lookup = Lookup(ZERO, k=4, alpha=4)
    lookup.add_candidates([NodeInfo(id_from_int(i + 1), ("10.0.0.1", 7000 + i)) for i in range(4)])
    assert lookup.candidate_count == 4
    off = Lookup(ZERO, k=4, alpha=4, diverse=False)
    off.add_candidates([_pub(i + 1, ip="30.0.0.1", port=7000 + i) for i in range(4)])
    assert off.candidate_count == 4


def test_done_when_k_answered_and_nothing_closer_is_pending() -> None:
    lookup = Lookup(ZERO, k=2, alpha=4, wait_for_stalled=False)
    a, b, c = node(1), node(2), node(9)
    lookup.add_candidates([a, b, c])
    assert lookup.next_queries(0.0) == [a, b]  # c cannot beat two closer in flight
    lookup.on_response(b, 0.1)
    assert not lookup.done  # a, closer than the 2nd answer, is pending
    lookup.on_response(a, 0.1)
    assert lookup.done


def test_retry_resends_once_and_a_retried_query_holds_the_lookup_one_more_soft_timeout() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, soft_timeout=1.0, wait_for_stalled=False, retry=True)
    a, b = node(1), node(2)
    lookup.add_candidates([a, b])
    assert lookup.next_queries(0.0) == [a]
    # soft deadline: a is resent and frees its slot, b is asked
    assert lookup.next_queries(1.0) == [a, b]
    assert lookup.resent_count == 1 and lookup.queried_count == 3
    lookup.on_response(b, 1.1)
    assert not lookup.done  # retried a is closer than the answer: awaited until 2.0
    assert lookup.next_deadline() == pytest.approx(2.0)
    lookup.handle_timer(2.0)
    assert lookup.done and lookup.stalled_count == 1
    assert lookup.next_queries(2.0) == []


def test_retry_wait_sets_how_long_a_resent_query_holds_the_lookup() -> None:
    lookup = Lookup(
        ZERO, k=1, alpha=1, soft_timeout=1.0, wait_for_stalled=False, retry=True, retry_wait=0.5
    )
    a, b = node(1), node(2)
    lookup.add_candidates([a, b])
    lookup.next_queries(0.0)
    assert lookup.next_queries(1.0) == [a, b]
    lookup.on_response(b, 1.1)
    assert not lookup.done
    assert lookup.next_deadline() == pytest.approx(1.5)
    lookup.set_soft_timeout(0.8)  # a shorter soft timeout: both deadlines shrink
    assert lookup.next_deadline() == pytest.approx(1.2)
    lookup.handle_timer(1.21)
    assert lookup.done and lookup.stalled_count == 1


def test_late_answer_to_a_resent_query_counts() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, soft_timeout=1.0, wait_for_stalled=False, retry=True)
    a = node(1)
    lookup.add_candidates([a])
    lookup.next_queries(0.0)
    assert lookup.next_queries(1.0) == [a]
    lookup.on_response(a, 1.2)
    assert lookup.done and [r.node for r in lookup.closest()] == [a]


def test_stalled_queries_do_not_hold_a_lookup_with_fewer_than_k_answers() -> None:
    # A small network: fewer than k live nodes. Once one answered, the dead ones' hard
    # timeouts are not waited for (the 5 s iter_peers on a 30-node loopback net).
    lookup = Lookup(ZERO, k=8, alpha=8, soft_timeout=0.5, wait_for_stalled=False)
    live, dead = node(5), [node(1), node(2)]
    lookup.add_candidates([*dead, live])
    lookup.next_queries(0.0)
    lookup.on_response(live, 0.1)
    assert not lookup.done  # the dead ones are still young
    lookup.handle_timer(0.5)
    assert lookup.done


def test_stalled_queries_hold_a_lookup_that_heard_nothing() -> None:
    lookup = Lookup(ZERO, k=8, alpha=8, soft_timeout=0.5, wait_for_stalled=False)
    lookup.add_candidates([node(1), node(2)])
    lookup.next_queries(0.0)
    lookup.handle_timer(1.0)
    assert not lookup.done and lookup.stalled_count == 2
    lookup.on_failure(node(1), 5.0)
    lookup.on_failure(node(2), 5.0)
    assert lookup.done


def test_exhaustive_mode_waits_for_stalled_queries() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, soft_timeout=1.0, wait_for_stalled=True)
    a, b = node(1), node(2)
    lookup.add_candidates([a, b])
    lookup.next_queries(0.0)
    assert lookup.next_queries(1.0) == [b]
    lookup.on_response(b, 1.1)
    assert not lookup.done  # stalled a is closer: waited for until it answers or fails
    lookup.on_failure(a, 5.0)
    assert lookup.done


def test_done_small_case_only_improving_candidates_queried() -> None:
    lookup = Lookup(ZERO, k=2, alpha=4)
    lookup.add_candidates([node(1), node(2), node(3)])
    # 3 cannot beat 1 and 2 if they answer: it is held back
    assert [id_to_int(n.id) for n in lookup.next_queries(0.0)] == [1, 2]
    lookup.on_response(node(1), 0.1)
    assert not lookup.done
    lookup.on_response(node(2), 0.1)
    assert lookup.done
    assert [id_to_int(r.node.id) for r in lookup.closest()] == [1, 2]
    assert lookup.queried_count == 2


def test_done_waits_for_replacement_after_failure() -> None:
    lookup = Lookup(ZERO, k=2, alpha=4)
    lookup.add_candidates([node(1), node(2), node(3)])
    lookup.next_queries(0.0)
    lookup.on_failure(node(1), 0.1)
    assert [id_to_int(n.id) for n in lookup.next_queries(0.1)] == [3]
    lookup.on_response(node(2), 0.2)
    assert not lookup.done
    lookup.on_response(node(3), 0.3)
    assert lookup.done
    assert [id_to_int(r.node.id) for r in lookup.closest()] == [2, 3]


def test_done_reopens_when_a_reply_brings_a_closer_node() -> None:
    lookup = Lookup(ZERO, k=1, alpha=2)
    lookup.add_candidates([node(8), node(9)])
    # with k=1, 9 cannot beat 8 while 8 is being asked
    (a,) = lookup.next_queries(0.0)
    assert id_to_int(a.id) == 8
    lookup.on_response(a, 0.1, [node(2)])
    assert not lookup.done  # 2 is a candidate closer than the bar
    assert [id_to_int(n.id) for n in lookup.next_queries(0.2)] == [2]
    assert not lookup.done  # 2 is in flight and closer than the bar
    lookup.on_response(node(2), 0.3)
    assert lookup.done
    assert [id_to_int(r.node.id) for r in lookup.closest()] == [2]
    assert lookup.queried_count == 2  # 9 was never worth asking


def test_done_after_closer_candidate_fails() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, soft_timeout=1.0)
    lookup.add_candidates([node(5)])
    lookup.next_queries(0.0)
    lookup.handle_timer(1.0)  # 5 stalls
    lookup.on_response(node(5), 1.1, [node(3)])  # a late answer, bringing 3
    lookup.add_candidates([node(9)])  # farther than the bar 5: dropped
    assert lookup.candidate_count == 1
    (n3,) = lookup.next_queries(1.1)
    assert not lookup.done
    lookup.on_failure(n3, 6.0)
    assert lookup.done
    assert [id_to_int(r.node.id) for r in lookup.closest()] == [5]


def test_done_ignores_farther_in_flight_queries() -> None:
    lookup = Lookup(ZERO, k=1, alpha=2, soft_timeout=1.0)
    lookup.add_candidates([node(5), node(9)])
    assert [id_to_int(n.id) for n in lookup.next_queries(0.0)] == [5]
    # once 5 stalls it may be dead, so 9 becomes worth asking
    assert [id_to_int(n.id) for n in lookup.next_queries(1.0)] == [9]
    lookup.on_response(node(5), 1.2)
    assert lookup.done  # 9 is still in flight, but farther than the answer from 5
    assert lookup.active_count == 1


def test_done_with_fewer_than_k_nodes_in_existence() -> None:
    lookup = Lookup(ZERO, k=8, alpha=4)
    lookup.add_candidates([node(1), node(2), node(3)])
    batch = lookup.next_queries(0.0)
    for n in batch[:2]:
        lookup.on_response(n, 0.1)
    assert not lookup.done
    lookup.on_failure(batch[2], 5.0)
    assert lookup.done
    assert len(lookup.closest()) == 2
    assert len(lookup.closest(1)) == 1


def test_a_node_with_its_own_timeout_stalls_and_is_awaited_by_its_own_clock() -> None:
    # a: 0.2 s of its own; b: longer than the lookup's soft timeout (capped); c: unknown.
    own = {node(1): 0.2, node(2): 5.0}
    lookup = Lookup(
        ZERO,
        k=3,
        alpha=3,
        soft_timeout=1.0,
        wait_for_stalled=False,
        retry=True,
        retry_wait=0.5,
        timeout_of=own.get,
    )
    a, b, c = node(1), node(2), node(3)
    lookup.add_candidates([a, b, c])
    assert lookup.next_queries(0.0) == [a, b, c]
    assert lookup.next_deadline() == pytest.approx(0.2)
    assert lookup.next_queries(0.2) == [a]  # resent at its own soft deadline
    assert lookup.next_deadline() == pytest.approx(0.3)  # awaited half its own timeout more
    lookup.on_response(b, 0.25)
    lookup.on_response(c, 0.25)
    assert not lookup.done
    lookup.handle_timer(0.31)
    assert lookup.done and lookup.stalled_count == 1


def test_an_overtaken_query_frees_its_slot_with_far_frees_slot() -> None:
    """A query no longer among the k closest known nodes stops holding a slot (its
    answer still counts); without the rule it holds it until answered or timed out."""
    for frees in (False, True):
        lookup = Lookup(ZERO, k=2, alpha=2, far_frees_slot=frees)
        near, far = node(100), node(200)
        lookup.add_candidates([near, far])
        assert lookup.next_queries(0.0) == [near, far]
        closer = [node(1), node(2)]
        lookup.on_response(near, 0.1, closer)
        # known: 1, 2 (candidates), 100 (answered), 200 (in flight, now 4th)
        assert lookup.next_queries(0.1) == (closer if frees else closer[:1])
        assert lookup.active_count == (3 if frees else 2)
        lookup.on_response(far, 0.2)
        assert [r.node for r in lookup.all_responded()] == [near, far]


def test_an_overtaken_query_holds_its_slot_again_when_closer_ones_fail() -> None:
    lookup = Lookup(ZERO, k=1, alpha=1, far_frees_slot=True)
    far, near = node(200), node(5)
    lookup.add_candidates([far])
    assert lookup.next_queries(0.0) == [far]
    lookup.add_candidates([near])  # far is overtaken: its slot goes to near
    assert lookup.next_queries(0.0) == [near]
    lookup.on_failure(near, 0.5)
    lookup.add_candidates([node(300)])
    assert lookup.next_queries(0.5) == []  # far is among the k closest again
    lookup.on_response(far, 0.6)
    assert lookup.done


def _crowd_lookup(cap: int) -> tuple[Lookup, list[NodeInfo], list[NodeInfo]]:
    """Three nodes of one /16 (distinct /24s) nearest ZERO, three honest ones farther,
    each in its own /16; the three nearest asked first, and answered."""
    crowd = [_pub(1 + i, ip=f"66.6.{i}.1") for i in range(3)]
    honest = [_pub(10 * (i + 1), ip=f"{30 + i}.0.0.1") for i in range(3)]
    lookup = Lookup(ZERO, k=3, alpha=6, wait_for_stalled=False, group_cap=cap)
    lookup.add_candidates([*crowd, *honest])
    assert lookup.next_queries(0.0) == crowd  # a /16 is known once its nodes answer
    for n in crowd:
        lookup.on_response(n, 0.1, token=b"t")
    return lookup, crowd, honest


def test_group_cap_counts_few_answers_of_one_16_toward_the_closest_set() -> None:
    lookup, crowd, honest = _crowd_lookup(0)
    assert lookup.done and [r.node for r in lookup.storers(3)] == crowd
    lookup, crowd, honest = _crowd_lookup(1)
    assert not lookup.done  # only one of the crowd counts: two honest answers are due
    assert lookup.next_queries(0.1) == honest[:2]
    lookup.on_response(honest[0], 0.2, token=b"t")
    assert not lookup.done
    lookup.on_response(honest[1], 0.2, token=b"t")
    assert lookup.done
    # the closest set is still by distance; the stores reach every answer up to the 3rd
    # that counts, the crowd's included
    assert [r.node for r in lookup.closest()] == crowd
    assert [r.node for r in lookup.storers(3)] == [*crowd, *honest[:2]]


def test_group_cap_exempts_local_addresses_and_needs_diversity() -> None:
    local = [NodeInfo(id_from_int(i + 1), (f"10.0.{i}.1", 6881)) for i in range(3)]
    for lookup in (
        Lookup(ZERO, k=3, alpha=3, group_cap=1),
        Lookup(ZERO, k=3, alpha=3, group_cap=1, diverse=False),
    ):
        nodes = local if lookup.diverse else [_pub(1 + i, ip=f"66.6.{i}.1") for i in range(3)]
        lookup.add_candidates(nodes)
        for n in lookup.next_queries(0.0):
            lookup.on_response(n, 0.1)
        assert lookup.done


def test_settle_ends_the_wait_for_a_resent_query_once_the_closest_set_is_stable() -> None:
    """A retried query holds the lookup until its own retry wait is over, or with
    ``settle`` until the closest answers have not changed for that many soft timeouts."""
    for settle, end in ((0.0, 2.0), (0.5, 1.6)):
        lookup = Lookup(
            ZERO, k=1, alpha=1, soft_timeout=1.0, wait_for_stalled=False, retry=True, settle=settle
        )
        a, b = node(1), node(2)
        lookup.add_candidates([a, b])
        assert lookup.next_queries(0.0) == [a]
        assert lookup.next_queries(1.0) == [a, b]  # a resent, b asked
        lookup.on_response(b, 1.1)  # the closest set changes at 1.1
        assert not lookup.done
        assert lookup.next_deadline() == pytest.approx(end)
        lookup.handle_timer(end - 0.01)
        assert not lookup.done
        lookup.handle_timer(end)
        assert lookup.done


def test_an_overtaken_query_is_not_resent() -> None:
    lookup = Lookup(
        ZERO,
        k=1,
        alpha=1,
        soft_timeout=1.0,
        wait_for_stalled=False,
        retry=True,
        far_frees_slot=True,
    )
    far, near = node(100), node(5)
    lookup.add_candidates([far])
    assert lookup.next_queries(0.0) == [far]
    lookup.add_candidates([near])
    assert lookup.next_queries(0.5) == [near]
    assert lookup.next_queries(1.0) == []  # far's soft deadline: overtaken, not resent
    assert lookup.resent_count == 0 and lookup.stalled_count == 1
    assert lookup.next_queries(1.5) == [near]  # near's: resent
    assert lookup.resent_count == 1


def test_storers_pass_over_answers_without_a_token() -> None:
    """A node that withholds its token (a full store, BEP 33) hands its place in the
    store phase to the next closest answer that gave one."""
    nodes = [node(i + 1) for i in range(4)]
    lookup = Lookup(ZERO, k=4, alpha=4, wait_for_stalled=False)
    lookup.add_candidates(nodes)
    assert lookup.next_queries(0.0) == nodes
    lookup.on_response(nodes[0], 0.1)  # no token
    for n in nodes[1:]:
        lookup.on_response(n, 0.1, token=b"t")
    assert [r.node for r in lookup.storers(2)] == nodes[1:3]
    assert [r.node for r in lookup.storers(10)] == nodes[1:]


def test_storers_of_a_crowded_16_are_bounded() -> None:
    """Answers past a /16's cap go to the store phase too, but at most ``2 n`` in all: a
    crowd of made-up ids from many /24s of one /16 cannot draw a store per /24."""
    crowd = [_pub(1 + i, ip=f"66.6.{i}.1") for i in range(6)]
    lookup = Lookup(ZERO, k=6, alpha=6, wait_for_stalled=False, group_cap=1)
    lookup.add_candidates(crowd)
    assert lookup.next_queries(0.0) == crowd
    for n in crowd:
        lookup.on_response(n, 0.1, token=b"t")
    assert [r.node for r in lookup.storers(2)] == crowd[:4]
