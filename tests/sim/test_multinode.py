"""Multi-node behaviour on virtual time: items and peers across a simulated network.

Every random choice is seeded, so a failure replays exactly. These carry what used to be
tested only on real sockets and the wall clock.
"""

from __future__ import annotations

import random

from mldht.core import bep44
from mldht.core.bencode import bencode
from mldht.core.compact import Addr
from mldht.core.events import AnnounceDone, GetDone, LookupDone, PutDone
from mldht.core.ids import distance
from mldht.sim import Simulator

SEED32 = bytes(range(32))


def network(seed: int, size: int = 60, loss: float = 0.0) -> tuple[Simulator, list[Addr]]:
    """``size`` nodes joined by messages from one seed node (virtual time)."""
    sim = Simulator(seed=seed, median_rtt=0.08, loss=loss)
    first = sim.add_node()
    nodes = [first] + [sim.add_node() for _ in range(size - 1)]
    for n in nodes[1:]:
        sim.start(n, lambda st, now: st.bootstrap([first], now, as_nodes=True))
        sim.run(until=sim.now + 0.05)
    sim.run(until=sim.now + 60.0)
    return sim, nodes


def closest_states(sim: Simulator, target: bytes, k: int = 8) -> list[Addr]:
    live = [a for a, sn in sim.nodes.items() if sn.state is not None]
    return sorted(live, key=lambda a: distance(sim.state(a).node_id, target))[:k]


def test_bootstrap_fills_every_table() -> None:
    sim, nodes = network(seed=1)
    sizes = [len(sim.state(n).routing) for n in nodes]
    assert min(sizes) >= 20, sizes


def test_announce_then_get_peers_from_elsewhere() -> None:
    sim, nodes = network(seed=2)
    ih = random.Random(2).randbytes(20)
    done, _ = sim.run_op(nodes[5], lambda st, now: st.announce(ih, 6881, now))
    assert isinstance(done, AnnounceDone) and done.accepted >= 7
    holders = [a for a in nodes if ih in sim.state(a).peer_store]
    assert len(set(holders) & set(closest_states(sim, ih))) >= 7
    for searcher in (nodes[17], nodes[40]):
        found, took = sim.run_op(searcher, lambda st, now: st.get_peers(ih, now))
        assert isinstance(found, LookupDone)
        assert (nodes[5][0], 6881) in found.peers
        assert took < 5.0


def test_immutable_item_across_nodes() -> None:
    sim, nodes = network(seed=3)
    v = bencode(b"hello, simulated world")
    put, _ = sim.run_op(nodes[3], lambda st, now: st.put_immutable(v, now))
    assert isinstance(put, PutDone) and put.accepted >= 7
    assert put.target == bep44.immutable_target(v)
    got, _ = sim.run_op(nodes[30], lambda st, now: st.get_item(put.target, now, mutable=False))
    assert isinstance(got, GetDone) and got.item is not None and got.item.v == v


def test_mutable_item_seq_increases_and_newest_wins() -> None:
    sim, nodes = network(seed=4)
    kp = bep44.KeyPair.from_seed(SEED32)
    target = bep44.mutable_target(kp.public_key, b"salt")

    def put(value: bytes, at: Addr) -> PutDone:
        v = bencode(value)
        done, _ = sim.run_op(at, lambda st, now: st.put_mutable(v, now, keypair=kp, salt=b"salt"))
        assert isinstance(done, PutDone)
        return done

    first = put(b"one", nodes[2])
    assert (first.seq, first.target) == (1, target) and first.accepted >= 7
    second = put(b"two", nodes[9])  # another node: seq found on the network, plus one
    assert second.seq == 2 and second.accepted >= 7
    got, _ = sim.run_op(
        nodes[44], lambda st, now: st.get_item(target, now, salt=b"salt", mutable=True)
    )
    assert isinstance(got, GetDone) and got.item is not None
    assert (got.item.seq, got.item.v) == (2, bencode(b"two"))


def test_stale_seq_is_refused_with_302() -> None:
    sim, nodes = network(seed=5)
    kp = bep44.KeyPair.from_seed(SEED32)
    v = bencode(b"x")
    done, _ = sim.run_op(nodes[1], lambda st, now: st.put_mutable(v, now, keypair=kp, seq=5))
    assert isinstance(done, PutDone) and done.accepted >= 7
    stale, _ = sim.run_op(nodes[2], lambda st, now: st.put_mutable(v, now, keypair=kp, seq=3))
    assert isinstance(stale, PutDone) and stale.accepted == 0
    assert stale.errors and {code for code, _ in stale.errors} == {302}


def test_lookups_end_with_dead_nodes_and_loss() -> None:
    sim, nodes = network(seed=6, loss=0.02)
    rng = random.Random(6)
    ih = rng.randbytes(20)
    done, _ = sim.run_op(nodes[0], lambda st, now: st.announce(ih, 7000, now))
    assert isinstance(done, AnnounceDone) and done.accepted >= 6
    for victim in rng.sample(nodes[1:], 12):  # 20% of the network dies
        if victim not in closest_states(sim, ih, 4):
            sim.kill(victim)
    live = [n for n in nodes[1:] if sim.nodes[n].state is not None]
    for searcher in rng.sample(live, 5):
        found, took = sim.run_op(searcher, lambda st, now: st.get_peers(ih, now))
        assert isinstance(found, LookupDone) and (nodes[0][0], 7000) in found.peers
        assert took < 10.0
