"""The simulated network: 500 nodes bootstrap from one seed and find an announced peer."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mldht.core.compact import Addr
from mldht.core.events import AnnounceDone, LookupDone
from mldht.core.ids import distance
from mldht.sim import Simulator


@dataclass
class Scenario:
    accepted: int
    results: list[tuple[tuple[Addr, ...], int, float]]
    table_sizes: list[int]
    announcer: Addr
    infohash: bytes
    sim: Simulator


def run_scenario(seed: int) -> Scenario:
    sim = Simulator(seed=seed, median_rtt=0.08, loss=0.01)
    seed_node = sim.add_node()
    nodes = [sim.add_node() for _ in range(500)]
    for n in nodes:
        sim.start(n, lambda st, now: st.bootstrap([seed_node], now))
        sim.run(until=sim.now + 0.05)  # joins spread over 25 s
    sim.run(until=120.0)
    rng = random.Random(seed)
    infohash = rng.randbytes(20)
    announcer = nodes[0]
    ev, _ = sim.run_op(announcer, lambda st, now: st.announce(infohash, 6881, now))
    assert isinstance(ev, AnnounceDone)
    results: list[tuple[tuple[Addr, ...], int, float]] = []
    for n in rng.sample(nodes[1:], 50):
        lookup, elapsed = sim.run_op(n, lambda st, now: st.get_peers(infohash, now), timeout=90)
        assert isinstance(lookup, LookupDone), "every lookup finishes within its bound"
        assert elapsed <= 60.0 + 5.0
        results.append((lookup.peers, lookup.queried, round(elapsed, 6)))
    return Scenario(
        accepted=ev.accepted,
        results=results,
        table_sizes=[len(sim.state(n).routing) for n in nodes],
        announcer=announcer,
        infohash=infohash,
        sim=sim,
    )


def test_500_nodes_converge_and_find_the_peer() -> None:
    out = run_scenario(seed=3)
    assert out.accepted >= 7  # 1% loss may eat one announce_peer
    announcer = out.announcer
    found = [(announcer[0], 6881) in peers for peers, _, _ in out.results]
    assert all(found), f"{found.count(False)} of 50 lookups missed the peer"
    assert min(out.table_sizes) >= 16
    # the peer is stored on the true 8 closest nodes of the network
    ih = out.infohash
    states = [sn.state for sn in out.sim.nodes.values() if sn.state is not None]
    closest = sorted(states, key=lambda s: distance(s.node_id, ih))[:8]
    assert sum(len(s.peer_store) == 1 for s in closest) >= 7
    queried = [q for _, q, _ in out.results]
    assert sum(queried) / len(queried) < 40


def test_same_seed_same_result() -> None:
    a = run_scenario(seed=11)
    b = run_scenario(seed=11)
    assert a.results == b.results and a.table_sizes == b.table_sizes
