"""The crawler's sans-IO planner (mldht.crawl.planner.Crawl) over a simulated network:
its jobs run as sample_infohashes / ping / find_node operations of one simulated node,
a few at a time, the way mldht.crawl.driver runs them over a DHTNode."""

from __future__ import annotations

import random
from collections.abc import Callable

from mldht.core.compact import Addr
from mldht.core.events import AnnounceDone, Event, LookupDone, PingDone, SampleDone
from mldht.core.node import NodeState
from mldht.crawl.planner import Crawl, Job
from mldht.sim import Simulator

IN_FLIGHT = 8


def action(job: Job) -> Callable[[NodeState, float], int]:
    if job.kind == "sample":
        assert job.node is not None
        addr = job.node.addr
        return lambda st, now: st.sample_infohashes(addr, job.target, now)
    if job.kind == "home":
        assert job.node is not None
        addr = job.node.addr
        return lambda st, now: st.query_find_node(addr, job.target, now)
    if job.kind == "ping":
        assert job.node is not None
        addr = job.node.addr
        return lambda st, now: st.ping(addr, now)
    assert job.kind in ("lookup", "probe")
    return lambda st, now: st.find_node(job.target, now)


def announce(ih: bytes) -> Callable[[NodeState, float], int]:
    return lambda st, now: st.announce(ih, 6881, now)


def crawl(sim: Simulator, me: Addr, contact: Addr, seed: int) -> Crawl:
    """Drive the planner to the end: at most IN_FLIGHT jobs at once, each answered by the
    terminal event of its operation on the crawling node."""
    plan = Crawl(random.Random(seed), sim.now, own_id=sim.state(me).node_id)
    plan.add_contact(contact)
    plan.add_random_lookups(4)
    running: dict[int, Job] = {}
    ended: list[tuple[Job, SampleDone | PingDone | LookupDone]] = []

    def on_event(addr: Addr, ev: Event, now: float) -> None:
        job = running.pop(getattr(ev, "op", -1), None) if addr == me else None
        if job is not None and isinstance(ev, SampleDone | PingDone | LookupDone):
            ended.append((job, ev))

    sim.on_event = on_event
    deadline = sim.now + 3600.0
    while sim.now < deadline:
        for job, ev in ended:
            if isinstance(ev, SampleDone):
                plan.on_sample(job, ev, sim.now)
            elif isinstance(ev, PingDone):
                plan.on_ping(job, ev.node_id, sim.now)
            else:
                plan.on_lookup(job.target, ev.nodes, sim.now, probe=job.kind == "probe")
        ended.clear()
        while len(running) < IN_FLIGHT:
            nxt = plan.next_job(sim.now, idle=not running)
            if nxt is None:
                break
            running[sim.start(me, action(nxt))] = nxt
        if not running and plan.finished(sim.now, deadline):
            break
        due = plan.next_due()
        sim.run(until=sim.now + 1.0 if due is None else due, stop=lambda: bool(ended))
    sim.on_event = None
    return plan


def test_crawl_plan_finds_the_simulated_network() -> None:
    sim = Simulator(seed=31, median_rtt=0.08, loss=0.01)
    nodes = [sim.add_node() for _ in range(300)]
    dead = [sim.add_node(dead=True) for _ in range(15)]
    sim.populate(contacts=30, dead_share=0.05)
    sim.run(until=10.0)
    rng = random.Random(31)
    announced = {rng.randbytes(20) for _ in range(12)}
    for i, ih in enumerate(sorted(announced)):
        done, _ = sim.run_op(nodes[10 + i], announce(ih))
        assert isinstance(done, AnnounceDone) and done.accepted >= 6
    me = sim.add_node()
    sim.run_op(me, lambda st, now: st.bootstrap([nodes[0]], now, as_nodes=True))

    plan = crawl(sim, me, nodes[0], seed=31)

    live = set(nodes)
    found = {addr for addr, rec in plan.nodes.items() if rec.responded} & live
    assert len(found) >= 0.95 * len(live), f"found {len(found)} of {len(live)}"
    assert announced <= set(plan.infohashes)
    assert plan.bep51_nodes >= 0.95 * len(live)
    assert all(not plan.nodes[a].responded for a in dead if a in plan.nodes)
    # each address: one sample, a few more only while it holds unseen info-hashes, and a
    # ping when it was silent; the crawl as a whole stays near one query per node
    queries = [rec.queries for rec in plan.nodes.values()]
    assert max(queries) <= 4
    assert sum(queries) <= 1.5 * len(plan.nodes)


def test_query_find_node_asks_one_node_for_its_closest() -> None:
    """The crawler's home job: one find_node query to one node (no lookup), answered with
    that node's closest nodes to the target and no samples; None from a dead address."""
    sim = Simulator(seed=7)
    nodes = [sim.add_node() for _ in range(60)]
    dead = sim.add_node(dead=True)
    sim.populate(contacts=20)
    me = sim.add_node()
    target = random.Random(7).randbytes(20)
    done, _ = sim.run_op(me, lambda st, now: st.query_find_node(nodes[3], target, now))
    assert isinstance(done, SampleDone) and done.node_id == sim.state(nodes[3]).node_id
    assert done.samples == () and not done.supported
    expected = [n.id for n in sim.state(nodes[3]).routing.closest(target, 8)]
    assert [n.id for n in done.nodes] == expected and len(expected) == 8
    assert sim.state(me).queries_out.get(b"find_node") == 1  # one query, not a lookup
    gone, _ = sim.run_op(me, lambda st, now: st.query_find_node(dead, target, now))
    assert isinstance(gone, SampleDone) and gone.node_id is None and gone.nodes == ()
