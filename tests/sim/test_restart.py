"""Restart from saved state, on virtual time: a node saves its good nodes and stored peers,
goes down, comes back as a new NodeState with the same id that loads them, rejoins from the
saved nodes and still answers get_peers for what it stored."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from mldht.core.compact import Addr, NodeInfo
from mldht.core.events import AnnounceDone, LookupDone
from mldht.core.ids import distance
from mldht.core.node import NodeState
from mldht.sim import Simulator


def pinger(addr: Addr) -> Callable[[NodeState, float], int]:
    return lambda st, now: st.add_node(addr, now)


def test_node_restarts_from_saved_nodes_and_peers() -> None:
    sim = Simulator(seed=21, median_rtt=0.08)
    nodes = [sim.add_node() for _ in range(120)]
    sim.populate(contacts=30)
    sim.run(until=10.0)
    ih = random.Random(21).randbytes(20)
    announcer = nodes[0]
    done, _ = sim.run_op(announcer, lambda st, now: st.announce(ih, 6881, now))
    assert isinstance(done, AnnounceDone) and done.accepted >= 7
    holders = [a for a in nodes if ih in sim.state(a).peer_store and a != announcer]
    victim = min(holders, key=lambda a: distance(sim.state(a).node_id, ih))

    # save what a runtime would write to state.json (through JSON, as on disk)
    old = sim.state(victim)
    node_id = old.node_id
    saved = json.loads(
        json.dumps(
            {
                "nodes": [[n.id.hex(), n.addr[0], n.addr[1]] for n in old.good_nodes(sim.now)],
                "peers": old.peer_store.dump(sim.now),
            }
        )
    )
    assert len(saved["nodes"]) >= 20
    assert [p[0] for p in saved["peers"]] == [ih.hex()]

    sim.kill(victim)
    sim.run(until=sim.now + 120.0)  # down for two minutes; the others go on

    new = NodeState(node_id, random.Random(7), sim.now, sim.config)
    assert new.peer_store.load(saved["peers"], sim.now) == 1
    contacts = [NodeInfo(bytes.fromhex(h), (ip, port)) for h, ip, port in saved["nodes"]]
    sim.nodes[victim].state = new
    for c in contacts:  # ping each saved node: those that answer are back in the table
        sim.start(victim, pinger(c.addr))
    sim.start(victim, lambda st, now: st.bootstrap([c.addr for c in contacts], now, as_nodes=True))
    sim.run(until=sim.now + 30.0)

    assert sim.state(victim) is new and new.node_id == node_id
    assert len(new.routing) >= 20
    knowing = [a for a in nodes if a != victim and node_id in sim.state(a).routing]
    assert len(knowing) >= 8, "the others took it back into their tables"

    # only the restarted node still holds the peer: a lookup from afar must reach it
    for a in holders:
        if a != victim:
            sim.kill(a)
    searcher = max(
        (a for a in nodes if sim.nodes[a].state is not None and a not in (victim, announcer)),
        key=lambda a: distance(sim.state(a).node_id, ih),
    )
    found, took = sim.run_op(searcher, lambda st, now: st.get_peers(ih, now), timeout=90)
    assert isinstance(found, LookupDone)
    assert (announcer[0], 6881) in found.peers
    assert took < 30.0
