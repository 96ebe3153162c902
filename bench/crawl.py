"""How fast does the crawler map a network, and with how many queries per node?

Prints one JSON object. Two modes:

* ``--mode sim`` (the default): the crawler's planner and pacer
  (:mod:`mldht.crawl.planner`, :mod:`mldht.crawl.pacing`, as ``mldht crawl`` runs them)
  drive a read-only node in a simulated network (:class:`mldht.sim.Simulator`, virtual
  clock) of ``--nodes`` live nodes (default 10^4; the README's figures are for 10^5, about
  20 minutes and 3 GB), ``--dead-share`` more addresses that never answer (10%, in the
  tables in that proportion), lognormal round trips (median ~80 ms) and ``--loss`` (1%).
  Each node's table holds 24 random nodes and its 16 id neighbours
  (:meth:`Simulator.populate`); ``--infohashes`` random info-hashes (default one per 5
  nodes) are stored on the 8 nodes closest to each. The crawl runs at ``--rate``
  queries/s of virtual time (``--concurrency`` in flight), optionally on one ``--shard
  I/N``. Reported: virtual time to 99% of the live nodes answering, queries per node by
  then, and what a crawl of ``--extrapolate`` nodes (default 20 million) would take on
  1..16 shards at that rate.
* ``--mode loopback``: a child process runs ``tools/swarm.py`` (``--nodes`` mldht
  nodes on 127.77.x.y); once it is ready, ``tools/crawl.py`` runs as its own process
  against it (``--bootstrap`` the swarm's first node, ``--rate`` queries/s, default
  1,000 as loopback allows, ``--duration`` bound). The crawler's SQLite timeline (one row
  a second: nodes found, nodes that answered, queries sent) gives the time at which 99% of
  the swarm's nodes had answered it, and the queries it had sent by then per swarm node.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, limit: float, bound: float) -> float:
    """Wait until the process used under ``limit`` of a core over 2 s (its nodes' join and
    refresh lookups are over); returns the seconds waited (at most ``bound``)."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        c0 = cpu_seconds(pid)
        time.sleep(2.0)
        if (cpu_seconds(pid) - c0) / 2.0 < limit:
            break
    return round(time.monotonic() - start, 1)


def first_time(rows: list[tuple[float, int, int, int]], column: int, goal: float) -> Any:
    """The first timeline row whose ``column`` reaches ``goal`` (None if none did)."""
    for row in rows:
        if row[column] >= goal:
            return row
    return None


def flat_swarm(args: argparse.Namespace) -> None:
    """``--swarm flat``: the swarm tools/swarm.py builds (node i joins through 3 random
    earlier nodes, addresses from ``swarm_host``), but each node runs in its own task of
    one task group instead of nesting every node's task group inside the previous one's
    (anyio's cancel-scope checks grow with that depth). Serves until killed."""
    import importlib
    import random

    import anyio

    from mldht.runtime.node import DHTNode, format_addr, run

    sys.path.insert(0, str(ROOT / "tools"))
    swarm_host = importlib.import_module("swarm").swarm_host

    async def serve() -> None:
        rng = random.Random(args.seed)
        nodes: list[DHTNode] = []
        forever = anyio.Event()
        started = time.monotonic()

        async def one(
            i: int,
            contacts: list[tuple[str, int]],
            *,
            task_status: anyio.abc.TaskStatus[DHTNode] = anyio.TASK_STATUS_IGNORED,
        ) -> None:
            async with DHTNode(bind=(swarm_host("127.77", i), 0), bootstrap=contacts) as node:
                task_status.started(node)
                await forever.wait()

        async with anyio.create_task_group() as tg:
            for i in range(args.nodes):
                k = min(i, 3)
                contacts = [n.address for n in rng.sample(nodes, k)] if k else []
                nodes.append(await tg.start(one, i, contacts))
            for node in nodes[1:]:
                if not await node.wait_ready(args.ready_timeout):
                    raise RuntimeError("a node did not join")
            info = {
                "bootstrap": format_addr(nodes[0].address),
                "nodes": len(nodes),
                "routing_table_size_mean": sum(n.stats["nodes"] for n in nodes) / len(nodes),
                "ready_after_s": round(time.monotonic() - started, 2),
            }
            print(json.dumps(info), flush=True)

    run(serve)


# ------------------------------------------------------------------ simulated network


def build_network(args: argparse.Namespace) -> tuple[Any, list[Any], dict[str, Any]]:
    """The simulated network: live nodes, dead addresses in the tables, info-hashes stored
    on the 8 closest live nodes of each. Returns (simulator, live addresses, facts)."""
    import random

    from mldht.core.config import NodeConfig
    from mldht.crawl.estimate import k_closest
    from mldht.sim import Simulator

    t0 = time.perf_counter()
    # The nodes' own maintenance (pings, bucket refreshes) is left out: at 10^5 nodes it
    # would be most of the simulation's work, and it does not change what a crawl sees.
    quiet = NodeConfig(maintenance_interval=1e9)
    sim = Simulator(seed=args.seed, loss=args.loss, config=quiet)
    live = [sim.add_node() for _ in range(args.nodes)]
    for _ in range(round(args.nodes * args.dead_share)):
        sim.add_node(dead=True)
    sim.populate(contacts=24, dead_share=args.dead_share)
    by_id = {int.from_bytes(sim.state(a).node_id, "big"): a for a in live}
    ids = sorted(by_id)
    rng = random.Random(args.seed ^ 0x5EED)
    for j in range(args.infohashes):
        ih = rng.getrandbits(160)
        peer = (f"192.0.2.{j % 250 + 1}", 10000 + j % 50000)
        for x in k_closest(ids, ih, 8):
            sim.state(by_id[x]).peer_store.announce(ih.to_bytes(20, "big"), peer, sim.now)
    facts = {
        "build_s": round(time.perf_counter() - t0, 1),
        "dead_addresses": len(sim.nodes) - len(live),
    }
    return sim, live, facts


def sim_crawl(sim: Any, live: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run the planner on a read-only node of ``sim``: the jobs it plans become the node's
    operations, their terminal events its input, all on the simulator's clock; every query
    the node sends is paced by the crawler's :class:`~mldht.crawl.pacing.Pacer`."""
    import random

    from mldht.core.config import NodeConfig
    from mldht.core.events import Event, LookupDone, PingDone, SampleDone, is_terminal
    from mldht.crawl.pacing import Pacer
    from mldht.crawl.planner import Crawl, Job
    from mldht.crawl.shard import parse_shard

    shard = parse_shard(args.shard)
    config = NodeConfig(
        read_only=True, alpha=4, lookup_k=8, soft_timeout=1.0, query_timeout=args.query_timeout
    )
    me = sim.add_node(config=config)
    st = sim.state(me)
    rng = random.Random(args.seed)
    # room for every address of the network (the crawler's default keeps 10^5; once it
    # drops one, it also stops probing)
    crawl = Crawl(rng, sim.now, own_id=st.node_id, shard=shard, max_nodes=2 * len(sim.nodes))
    crawl.add_contact(rng.choice(live))
    crawl.add_random_lookups(8)
    in_shard = [a for a in live if shard.contains(int.from_bytes(sim.state(a).node_id, "big"))]
    goal = args.share * len(in_shard)
    pending: dict[int, Job] = {}
    early: dict[int, Event] = {}

    def finish(job: Job, ev: Event, now: float) -> None:
        if isinstance(ev, SampleDone):
            crawl.on_sample(job, ev, now)
        elif isinstance(ev, PingDone):
            crawl.on_ping(job, ev.node_id, now)
        elif isinstance(ev, LookupDone):
            if job.kind == "peers":
                crawl.on_peers(job.target, len(ev.peers))
            else:
                crawl.on_lookup(job.target, ev.nodes, now, probe=job.kind == "probe")

    def on_event(addr: Any, ev: Event, now: float) -> None:
        if addr == me and is_terminal(ev):
            job = pending.pop(ev.op, None)
            if job is None:
                early[ev.op] = ev  # ended within its start (before its id was known)
            else:
                pacer.done(job.node is not None)
                finish(job, ev, now)

    def action(job: Job) -> Any:
        if job.kind == "sample":
            assert job.node is not None
            return lambda s, now: s.sample_infohashes(job.node.addr, job.target, now)
        if job.kind == "home":
            assert job.node is not None
            return lambda s, now: s.query_find_node(job.node.addr, job.target, now)
        if job.kind == "ping":
            assert job.node is not None
            return lambda s, now: s.ping(job.node.addr, now)
        return lambda s, now: s.find_node(job.target, now)

    sim.on_event = on_event
    start = sim.now
    deadline = start + args.duration
    base = st.stats["queries_out"]
    pacer = Pacer(args.rate, start, base)
    timeline: list[tuple[float, int, int, int]] = []
    next_tick = start
    hit: tuple[float, int, int, int] | None = None
    wall = time.perf_counter()
    while sim.now < deadline:
        if sim.now >= next_tick:
            sent = st.stats["queries_out"] - base
            row = (round(sim.now - start, 3), len(crawl.nodes), crawl.responders, sent)
            timeline.append(row)
            answered = sum(1 for r in crawl.nodes.values() if r.responded and crawl.keeps(r))
            if hit is None and answered >= goal:
                hit = (row[0], answered, len(crawl.nodes), sent)
                if args.stop_at_share:
                    break
            next_tick += 1.0
        job = crawl.next_job(sim.now, idle=not pending) if len(pending) < args.concurrency else None
        if job is None:
            if not pending and crawl.finished(sim.now, deadline):
                break
            due = crawl.next_due()
            until = min(next_tick, deadline, due if due is not None else deadline)
            mark = len(pending)
            sim.run(until=max(until, sim.now + 1e-6), stop=lambda m=mark: len(pending) < m)
            continue
        single = job.node is not None
        while (wait := pacer.delay(single, sim.now, st.stats["queries_out"])) > 0:
            sim.run(until=sim.now + wait)  # the crawler's driver sleeps as long
        op = sim.start(me, action(job))
        ev = early.pop(op, None)
        if ev is not None:
            pacer.done(single)
            finish(job, ev, sim.now)
        else:
            pending[op] = job
    sent = st.stats["queries_out"] - base
    answered = sum(1 for r in crawl.nodes.values() if r.responded and crawl.keeps(r))
    estimate = crawl.estimate(2048)
    return {
        "shard": shard.label,
        "live_nodes_in_shard": len(in_shard),
        "virtual_s": round(sim.now - start, 1),
        "time_to_share_answered_s": hit[0] if hit else None,
        "queries_per_node_at_share": round(hit[3] / len(in_shard), 3) if hit else None,
        "final_answered": answered,
        "final_answered_share": round(answered / max(1, len(in_shard)), 4),
        "final_found": len(crawl.nodes),
        "queries_sent": sent,
        "queries_per_node": round(sent / max(1, len(in_shard)), 3),
        "infohashes_found": len(crawl.infohashes),
        "home_asked": crawl.home_asked,
        "nodes_dropped": crawl.nodes_dropped,
        "probe_rounds": crawl.probe_rounds,
        "complete": crawl.complete,
        "network_size": None if estimate is None else estimate.as_dict(),
        "crawl_wall_s": round(time.perf_counter() - wall, 1),
        "datagrams_delivered": sim.delivered,
    }


def run_sim(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    sim, live, facts = build_network(args)
    result = sim_crawl(sim, live, args)
    q = result["queries_per_node_at_share"] or result["queries_per_node"]
    t99 = result["time_to_share_answered_s"]
    nodes = result["live_nodes_in_shard"]
    return {
        "bench": "crawl",
        "params": {
            "mode": "sim",
            "nodes": args.nodes,
            "dead_share": args.dead_share,
            "loss": args.loss,
            "infohashes": args.infohashes,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "share": args.share,
            "shard": args.shard,
            "query_timeout": args.query_timeout,
            "stop_at_share": args.stop_at_share,
            "seed": args.seed,
        },
        **facts,
        **result,
        # A node costs about q queries whatever the network's size, and the crawl's time
        # grows with the nodes per shard at a given rate: N nodes take about N q / (n rate)
        # seconds on n shards if the rate were all used (rate_bound), or this crawl's time
        # scaled by N / (n nodes) (scaled: the tail of lookups and timeouts included).
        "extrapolation": {
            "nodes": args.extrapolate,
            "queries_per_node": q,
            "rate_per_shard": args.rate,
            "rate_bound_hours_on_shards": {
                str(n): round(args.extrapolate * q / (n * args.rate) / 3600, 2)
                for n in (1, 2, 4, 8, 16)
            },
            "scaled_hours_on_shards": {
                str(n): round(t99 * args.extrapolate / (n * nodes) / 3600, 2)
                for n in (1, 2, 4, 8, 16)
            }
            if t99
            else None,
        },
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------ loopback swarm


def run_loopback(args: argparse.Namespace) -> dict[str, Any]:
    if args.swarm == "tools":
        swarm_cmd = [sys.executable, str(ROOT / "tools" / "swarm.py"), "--nodes", str(args.nodes)]
        swarm_cmd += ["--json", "--seed", str(args.seed)]
        swarm_cmd += ["--duration", str(args.ready_timeout + args.duration + 60)]
    else:
        swarm_cmd = [sys.executable, str(Path(__file__).resolve()), "--flat-swarm-child"]
        swarm_cmd += ["--nodes", str(args.nodes), "--seed", str(args.seed)]
        swarm_cmd += ["--ready-timeout", str(args.ready_timeout)]
    swarm = subprocess.Popen(
        swarm_cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    crawl_out: dict[str, Any] = {}
    quiet_s = None
    rows: list[tuple[float, int, int, int]] = []
    info: dict[str, Any] = {}
    try:
        assert swarm.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(swarm.stdout, selectors.EVENT_READ)
        if not sel.select(args.ready_timeout):
            raise RuntimeError(f"the swarm was not ready within {args.ready_timeout} s")
        line = swarm.stdout.readline()
        if not line:
            raise RuntimeError("the swarm process exited before it was ready")
        info = json.loads(line)
        # Crawl a settled swarm: right after "ready" its nodes are still running their
        # refresh lookups, and a process at 100% CPU answers the crawler late.
        quiet_s = wait_quiet(swarm.pid, 0.3, args.quiet_timeout)
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "crawl.sqlite"
            crawl_cmd = [sys.executable, str(ROOT / "tools" / "crawl.py")]
            crawl_cmd += ["--bootstrap", info["bootstrap"], "--bind", "127.79.0.1:0"]
            crawl_cmd += ["--rate", str(args.rate), "--duration", str(args.duration)]
            crawl_cmd += ["--db", str(db), "--json", "--progress", "none"]
            crawl_cmd += ["--seed", str(args.seed)]
            proc = subprocess.run(
                crawl_cmd,
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=args.duration + 120,
                check=False,
            )
            if proc.stdout.strip():
                crawl_out = json.loads(proc.stdout.strip().splitlines()[-1])
            con = sqlite3.connect(db)
            rows = [
                (float(t), int(n), int(r), int(q))
                for t, n, r, q in con.execute(
                    "SELECT t, nodes, responders, queries FROM timeline ORDER BY t"
                )
            ]
            con.close()
    finally:
        swarm.terminate()  # tools/swarm.py stops on SIGTERM once ready; flat: killed
        try:
            swarm.wait(30)
        except subprocess.TimeoutExpired:
            swarm.kill()
            swarm.wait(10)
    goal = args.share * args.nodes
    hit = first_time(rows, 2, goal)
    found = first_time(rows, 1, goal)
    t_share = hit[0] if hit else None
    q_share = hit[3] / args.nodes if hit else None
    out = {
        "bench": "crawl",
        "params": {
            "nodes": args.nodes,
            "rate": args.rate,
            "share": args.share,
            "swarm": args.swarm,
            "mode": "loopback",
        },
        "swarm_ready_s": info.get("ready_after_s"),
        "swarm_table_size_mean": info.get("routing_table_size_mean"),
        "swarm_quiet_after_s": quiet_s,
        "time_to_share_answered_s": t_share,
        "queries_per_node_at_share": round(q_share, 3) if q_share is not None else None,
        "time_to_share_found_s": found[0] if found else None,
        "final": rows[-1] if rows else None,
        "final_fields": ["t", "nodes_found", "answered", "queries"],
        "crawl_summary": {
            k: crawl_out.get(k)
            for k in (
                "duration_s",
                "complete",
                "nodes_found",
                "responders",
                "queries_sent",
                "queries_per_s",
                "network_size",
            )
        },
        "goals": {
            "share_le_60s": t_share is not None and t_share <= 60,
            "le_2_queries_per_node": q_share is not None and q_share <= 2,
        },
        "python": platform.python_version(),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    from mldht import argtypes

    ap = argtypes.Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("sim", "loopback"), default="sim")
    ap.add_argument(
        "--nodes",
        type=argtypes.positive_int,
        default=None,
        help="network size (default 10000 simulated, 1000 on loopback; the README's "
        "figures: 100000 simulated)",
    )
    ap.add_argument(
        "--rate", type=argtypes.positive_number, default=1000.0, help="crawler queries/s at most"
    )
    ap.add_argument(
        "--duration",
        type=argtypes.positive_seconds,
        default=None,
        help="crawl bound, seconds (default 3600 virtual, 120 on loopback)",
    )
    ap.add_argument(
        "--share", type=argtypes.positive_number, default=0.99, help="share of nodes to find"
    )
    ap.add_argument("--seed", type=argtypes.count, default=1)
    ap.add_argument("--dead-share", type=float, default=0.1, help="sim: dead addresses")
    ap.add_argument("--loss", type=float, default=0.01, help="sim: datagram loss")
    ap.add_argument("--infohashes", type=argtypes.count, default=None, help="sim: stored")
    ap.add_argument("--concurrency", type=argtypes.positive_int, default=1024, help="sim")
    ap.add_argument("--shard", default="1/1", help="sim: crawl one shard I/N")
    ap.add_argument(
        "--query-timeout",
        type=argtypes.positive_seconds,
        default=2.0,
        help="sim: the crawler's (dead addresses hold a request this long; fewer in flight "
        "make the simulation faster)",
    )
    ap.add_argument(
        "--stop-at-share",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sim: end the crawl once --share of the live nodes answered",
    )
    ap.add_argument(
        "--extrapolate", type=argtypes.positive_int, default=20_000_000, help="sim: nodes"
    )
    ap.add_argument("--ready-timeout", type=argtypes.positive_seconds, default=900.0)
    ap.add_argument(
        "--quiet-timeout",
        type=argtypes.positive_seconds,
        default=300.0,
        help="after the swarm is ready, wait at most this long for it to go idle",
    )
    ap.add_argument(
        "--swarm",
        choices=("tools", "flat"),
        default="tools",
        help="tools/swarm.py, or the same swarm with every node in its own task (flat)",
    )
    ap.add_argument("--flat-swarm-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flat_swarm_child:
        flat_swarm(args)
        return
    sim = args.mode == "sim"
    if args.nodes is None:
        args.nodes = 10_000 if sim else 1000
    if args.infohashes is None:
        args.infohashes = args.nodes // 5
    if args.duration is None:
        args.duration = 3600.0 if sim else 120.0
    t0 = time.perf_counter()
    out = run_sim(args) if sim else run_loopback(args)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
