"""BEP 44 republishing by the core, over hours of virtual time with churn."""

from __future__ import annotations

import random
from functools import partial

from mldht.core import bep44
from mldht.core.bencode import bencode
from mldht.core.compact import Addr
from mldht.core.events import GetDone, PutDone, RepublishStopped
from mldht.core.node import NodeConfig, NodeState
from mldht.sim import Simulator

HOUR = 3600.0
KP = bep44.KeyPair.from_seed(bytes(range(32)))
CONFIG = NodeConfig(maintenance_interval=30.0)


def network(seed: int, size: int = 40) -> tuple[Simulator, list[Addr]]:
    sim = Simulator(seed=seed, config=CONFIG)
    first = sim.add_node()
    nodes = [first] + [sim.add_node() for _ in range(size - 1)]
    for n in nodes[1:]:
        sim.start(n, lambda st, now: st.bootstrap([first], now, as_nodes=True))
        sim.run(until=sim.now + 0.05)
    sim.run(until=sim.now + 60.0)
    return sim, nodes


def put_immutable(v: bytes, st: NodeState, now: float) -> int:
    return st.put_immutable(v, now)


def bootstrap(via: Addr, st: NodeState, now: float) -> int:
    return st.bootstrap([via], now, as_nodes=True)


def storers(sim: Simulator, target: bytes) -> set[Addr]:
    return {
        a
        for a, sn in sim.nodes.items()
        if sn.state is not None and sn.state.items.get(target, sim.now) is not None
    }


def test_republished_item_outlives_churn_and_expiry() -> None:
    sim, nodes = network(seed=11)
    rng = random.Random(11)
    publisher = nodes[3]
    kept, lost = bencode(b"republished"), bencode(b"put once")
    for v in (kept, lost):
        done, _ = sim.run_op(publisher, partial(put_immutable, v))
        assert isinstance(done, PutDone) and done.accepted >= 4
    sim.state(publisher).add_publication(kept, sim.now + HOUR)
    target, lost_target = bep44.immutable_target(kept), bep44.immutable_target(lost)
    original = storers(sim, target)
    live = [n for n in nodes if n != publisher]
    # Five hours: every half hour two of the nodes holding the item leave and three new
    # nodes join (bootstrapping from a live node).
    for _ in range(10):
        for gone in rng.sample(sorted(storers(sim, target) - {publisher}), 2):
            sim.kill(gone)
            live.remove(gone)
        for _ in range(3):
            new = sim.add_node()
            via = rng.choice(live)
            sim.start(new, partial(bootstrap, via))
            live.append(new)
        sim.run(until=sim.now + HOUR / 2)
    assert sim.state(publisher).republisher.puts >= 4
    now_holding = storers(sim, target)
    assert now_holding - original, "the re-puts reached nodes that joined later"
    searcher = live[-1]
    found, _ = sim.run_op(searcher, lambda st, now: st.get_item(target, now))
    assert isinstance(found, GetDone) and found.item is not None and found.item.v == kept
    # the item put once expired everywhere after 2 h
    assert not storers(sim, lost_target)
    missing, _ = sim.run_op(searcher, lambda st, now: st.get_item(lost_target, now))
    assert isinstance(missing, GetDone) and missing.item is None
    # the re-puts were the core's own: no event of theirs reached the node's queue
    assert not [e for e in sim.nodes[publisher].events if isinstance(e, PutDone)][2:]


def test_superseded_mutable_item_stops_being_republished() -> None:
    sim, nodes = network(seed=12, size=30)
    publisher, rival = nodes[3], nodes[9]
    v1, v2 = bencode(b"first"), bencode(b"second")
    put1 = lambda st, now: st.put_mutable(v1, now, keypair=KP, salt=b"s")  # noqa: E731
    done, _ = sim.run_op(publisher, put1)
    assert isinstance(done, PutDone) and done.seq == 1 and done.accepted >= 4
    state = sim.state(publisher)
    state.add_publication(v1, sim.now + HOUR, keypair=KP, salt=b"s", seq=1)
    target = KP.target(b"s")
    # a first re-put refreshes seq 1
    sim.run(until=sim.now + HOUR + 120.0)
    assert state.republisher.puts == 1 and state.republishing == {target}
    # someone else holding the key puts seq 2: the next re-put is refused (302), a get
    # finds seq 2, and the publisher stops
    done, _ = sim.run_op(rival, lambda st, now: st.put_mutable(v2, now, keypair=KP, salt=b"s"))
    assert isinstance(done, PutDone) and done.seq == 2
    sim.run(until=sim.now + HOUR + 120.0)
    assert state.republishing == frozenset()
    stopped = [e for e in sim.nodes[publisher].events if isinstance(e, RepublishStopped)]
    assert stopped == [RepublishStopped(target, 1, 2)]
    found, _ = sim.run_op(nodes[20], lambda st, now: st.get_item(target, now, salt=b"s"))
    assert isinstance(found, GetDone) and found.item is not None and found.item.seq == 2
