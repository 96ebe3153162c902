"""get_peers lookups in simulated networks of 10^3, 10^4 and 10^5 nodes (mldht.sim).

Prints one JSON object. For each network size:

* every node's routing table is filled directly, as a node that has been up for a while
  would have it: each bucket (by XOR prefix of our id) gets up to its size limit of
  random nodes of that prefix range (``--fill buckets``, the default), or
  :meth:`Simulator.populate`'s random contacts plus id neighbours (``--fill populate``);
* ``--dead-share`` of all addresses (default 20%) are dead: they appear in routing
  tables in that proportion but never answer;
* a round trip is a query out and its answer back; :class:`Simulator` gives round trips
  between two nodes a median near ``--median-rtt`` (per-node lognormal delays); the
  median round trip measured between random pairs of live nodes is reported as
  ``median_rtt_s``, and latencies in round trips (``*_rtts``) are divided by it;
* ``--loss`` of datagrams (default 1%) are dropped;
* ``--lookups`` get_peers lookups (default 200), each for a random info-hash whose peer
  was stored directly on the true 8 closest live nodes, from a random live node; lookups
  start ``--stagger`` seconds apart (no congestion is modelled, so they do not disturb
  each other) and are timed on the virtual clock from start to ``LookupDone``.

Success: ``peer_found_rate`` (the stored peer was returned) and ``closest8_rate`` (the
8 nodes the lookup ended with are exactly the true 8 closest live nodes).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mldht.core.compact import Addr, NodeInfo
from mldht.core.events import Event, LookupDone, PeersFound
from mldht.core.ids import ID_BITS, ID_LEN
from mldht.core.node import NodeConfig
from mldht.sim import Simulator

K = 8
FAR_SIZES = (128, 64, 32, 16)  # RoutingTable's defaults: libtorrent's larger far buckets


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Network:
    """A simulator plus the omniscient view the benchmark needs (sorted ids, dead set)."""

    def __init__(self, sim: Simulator, live: list[Addr], dead: dict[Addr, bytes]) -> None:
        self.sim = sim
        self.live = live
        self.dead = dead
        members: list[tuple[int, NodeInfo, bool]] = []
        for addr in live:
            nid = sim.state(addr).node_id
            members.append((int.from_bytes(nid, "big"), NodeInfo(nid, addr), True))
        for addr, nid in dead.items():
            members.append((int.from_bytes(nid, "big"), NodeInfo(nid, addr), False))
        members.sort(key=lambda m: m[0])
        self.ints = [m[0] for m in members]
        self.infos = [m[1] for m in members]
        self.alive = [m[2] for m in members]
        self.live_ints = [m[0] for m in members if m[2]]
        self.live_infos = [m[1] for m in members if m[2]]

    def true_closest(self, target: bytes, n: int, exclude: bytes | None = None) -> list[NodeInfo]:
        """The ``n`` live nodes closest to ``target`` by XOR (every node sharing a longer
        prefix with the target is closer than any sharing a shorter one)."""
        t = int.from_bytes(target, "big")
        ints = self.live_ints
        lo, hi = 0, len(ints)
        for p in range(1, ID_BITS + 1):
            shift = ID_BITS - p
            plo = (t >> shift) << shift
            a = bisect.bisect_left(ints, plo, lo, hi)
            b = bisect.bisect_left(ints, plo + (1 << shift), lo, hi)
            if b - a < n + 1:  # +1: room for an excluded node
                break
            lo, hi = a, b
        pool = [info for info in self.live_infos[lo:hi] if info.id != exclude]
        pool.sort(key=lambda info: int.from_bytes(info.id, "big") ^ t)
        return pool[:n]


def fill_buckets(
    net: Network, rng: random.Random, far_sizes: tuple[int, ...], rtts: bool = False
) -> int:
    """Give every live node, for each prefix depth d, up to that bucket's limit of random
    nodes (live or dead) whose ids share exactly d leading bits with its own id. With
    ``rtts`` each entry comes with its round trip measured (as a table that has pinged
    its entries has; the dead ones answered before they died).

    Returns the number of routing-table insertions offered.
    """
    ints, infos = net.ints, net.infos
    total = len(ints)
    offered = 0
    nodes = net.sim.nodes
    for addr in net.live:
        st = net.sim.state(addr)
        own_latency = nodes[addr].latency
        routing = st.routing
        own = int.from_bytes(st.node_id, "big")
        lo_all, hi_all = 0, total
        now = net.sim.now
        for depth in range(ID_BITS):
            shift = ID_BITS - 1 - depth
            # ids sharing >= depth bits with us: [lo_all, hi_all) in sorted order
            flip_lo = ((own >> shift) ^ 1) << shift
            a = bisect.bisect_left(ints, flip_lo, lo_all, hi_all)
            b = bisect.bisect_left(ints, flip_lo + (1 << shift), lo_all, hi_all)
            cap = far_sizes[depth] if depth < len(far_sizes) else K
            count = b - a
            if count:
                picks = range(a, b) if count <= cap else rng.sample(range(a, b), cap)
                for i in picks:
                    rtt = own_latency + nodes[infos[i].addr].latency if rtts else None
                    routing.node_responded(infos[i], now, rtt=rtt)
                offered += min(count, cap)
            # narrow to ids sharing >= depth + 1 bits: the half containing our own id
            own_lo = (own >> shift) << shift
            lo_all = bisect.bisect_left(ints, own_lo, lo_all, hi_all)
            hi_all = bisect.bisect_left(ints, own_lo + (1 << shift), lo_all, hi_all)
            if hi_all - lo_all <= 1:  # only ourselves left
                break
    return offered


def build(n: int, args: argparse.Namespace, seed: int) -> tuple[Network, dict[str, Any]]:
    t0 = time.perf_counter()
    config = NodeConfig()
    if args.query_timeout is not None:
        config.query_timeout = args.query_timeout
    if args.soft_timeout is not None:
        config.soft_timeout = args.soft_timeout
    for name, value in args.set:
        setattr(config, name, value)
    sim = Simulator(
        seed=seed,
        median_rtt=args.median_rtt,
        rtt_sigma=args.rtt_sigma,
        loss=args.loss,
        config=config,
    )
    rng = random.Random(seed ^ 0x5EED)
    live = [sim.add_node() for _ in range(n)]
    n_dead = round(n * args.dead_share / (1 - args.dead_share))
    dead: dict[Addr, bytes] = {}
    for _ in range(n_dead):
        addr = sim.add_node(dead=True)
        dead[addr] = rng.getrandbits(ID_BITS).to_bytes(ID_LEN, "big")
    net = Network(sim, live, dead)
    t1 = time.perf_counter()
    if args.fill == "buckets":
        fill_buckets(net, rng, FAR_SIZES if args.far_buckets else (), args.table_rtts)
    else:
        # populate() draws its own ids for dead addresses; that is fine: dead nodes
        # never answer and are never among the true closest.
        sim.populate(contacts=args.contacts, dead_share=args.dead_share)
    t2 = time.perf_counter()
    entries = 0
    dead_entries = 0
    for addr in live:
        for known in sim.state(addr).routing:
            entries += 1
            if known.addr in dead:
                dead_entries += 1
    info: dict[str, Any] = {
        "nodes": n,
        "dead_addresses": n_dead,
        "table_entries_mean": round(entries / n, 1),
        "table_dead_share": round(dead_entries / entries, 4) if entries else 0.0,
        "create_s": round(t1 - t0, 2),
        "fill_s": round(t2 - t1, 2),
    }
    return net, info


def measured_median_rtt(net: Network, rng: random.Random) -> float:
    """Median round trip (query out, answer back) between random pairs of live nodes, as
    the simulator computes it: each direction takes the mean of both ends' delays, so the
    round trip takes their sum."""
    nodes = net.sim.nodes
    samples = []
    for _ in range(20_000):
        a, b = rng.sample(net.live, 2)
        samples.append(nodes[a].latency + nodes[b].latency)
    return statistics.median(samples)


def run_lookups(net: Network, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """``args.lookups`` get_peers lookups, targets and searchers drawn from ``seed``."""
    sim = net.sim
    rng = random.Random(seed ^ 0x100C)
    plans = []
    for j in range(args.lookups):
        ih = rng.getrandbits(ID_BITS).to_bytes(ID_LEN, "big")
        holders = net.true_closest(ih, K)
        holder_ids = {h.id for h in holders}
        while True:
            searcher = rng.choice(net.live)
            if sim.state(searcher).node_id not in holder_ids:
                break
        expect = {h.id for h in net.true_closest(ih, K, exclude=sim.state(searcher).node_id)}
        peer = (f"192.0.2.{j % 250 + 1}", 10000 + j)
        for h in holders:
            sim.state(h.addr).peer_store.announce(ih, peer, sim.now)
        plans.append((ih, searcher, peer, expect))

    results: dict[tuple[Addr, int], dict[str, Any]] = {}
    pending = [0]

    def on_event(addr: Addr, ev: Event, now: float) -> None:
        if isinstance(ev, PeersFound):
            r = results.get((addr, ev.op))
            if r is not None and r["first_peer"] is None:
                r["first_peer"] = now - r["start"]
        elif isinstance(ev, LookupDone):
            r = results.get((addr, ev.op))
            if r is not None and r["done"] is None:
                r["done"] = now - r["start"]
                r["event"] = ev
                pending[0] -= 1

    sim.on_event = on_event
    t0 = time.perf_counter()
    delivered0, dropped0 = sim.delivered, sim.dropped
    start = sim.now
    records = []
    for j, (ih, searcher, peer, expect) in enumerate(plans):
        sim.run(until=start + j * args.stagger)
        rec: dict[str, Any] = {
            "start": sim.now,
            "first_peer": None,
            "done": None,
            "event": None,
            "peer": peer,
            "expect": expect,
        }

        def action(st: Any, now: float, ih: bytes = ih) -> int:
            op: int = st.get_peers(ih, now)
            return op

        pending[0] += 1
        op = sim.start(searcher, action)
        results[(searcher, op)] = rec
        records.append(rec)
    bound = sim.now + sim.config.lookup_timeout + 10.0
    sim.run(until=bound, stop=lambda: pending[0] == 0)
    sim.on_event = None
    wall = time.perf_counter() - t0

    lat = [r["done"] for r in records if r["done"] is not None]
    first = [r["first_peer"] for r in records if r["first_peer"] is not None]
    queried = [r["event"].queried for r in records if r["event"] is not None]
    found = 0
    exact = 0
    overlap = []
    for r in records:
        ev = r["event"]
        if ev is None:
            overlap.append(0)
            continue
        if r["peer"] in ev.peers:
            found += 1
        got = {n.id for n in ev.nodes}
        overlap.append(len(got & r["expect"]))
        if got == r["expect"]:
            exact += 1
    m = len(records)
    return {
        "lookups": m,
        "finished": len(lat),
        "latency_median_s": round(statistics.median(lat), 4) if lat else None,
        "latency_p95_s": round(percentile(lat, 0.95), 4) if lat else None,
        "first_peer_median_s": round(statistics.median(first), 4) if first else None,
        "first_peer_p95_s": round(percentile(first, 0.95), 4) if first else None,
        "queries_median": statistics.median(queried) if queried else None,
        "queries_mean": round(statistics.fmean(queried), 2) if queried else None,
        "queries_p95": round(percentile(queried, 0.95), 1) if queried else None,
        "peer_found_rate": round(found / m, 4),
        "closest8_rate": round(exact / m, 4),
        "closest8_overlap_mean": round(statistics.fmean(overlap), 3),
        "datagrams_delivered": sim.delivered - delivered0,
        "datagrams_dropped": sim.dropped - dropped0,
        "lookup_wall_s": round(wall, 2),
    }


def one_network(n: int, args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed * 1_000_003 + n
    gc_was = gc.isenabled()
    # Building 10^5 NodeStates creates tens of millions of long-lived objects; cyclic GC
    # passes over them would cost more than the building itself (measured: 2.3x).
    gc.disable()
    try:
        net, info = build(n, args, seed)
        gc.freeze()
    finally:
        if gc_was:
            gc.enable()
    rtt = measured_median_rtt(net, random.Random(seed))
    res = run_lookups(net, args, seed)
    out = dict(info)
    out["median_rtt_s"] = round(rtt, 4)
    out.update(in_rtts(res, rtt))
    if args.variant:
        # The same network with some config fields changed (all nodes share the
        # simulator's NodeConfig), without building it again. Each run draws new targets
        # and searchers: a searcher looking up the same target again would find its
        # closest nodes in its own table (measured at 10^4 nodes: 3.7 round trips instead
        # of 5.6 with k-sized buckets), which says nothing of a config. Tables and RTT
        # samples carry over from the runs before, as in a node that has been up a while.
        config = net.sim.config
        base = {name: getattr(config, name) for changes in args.variant for name, _ in changes}
        out["variants"] = []
        for j, changes in enumerate(args.variant, 1):
            for name, value in base.items():
                setattr(config, name, value)
            for name, value in changes:
                setattr(config, name, value)
            vres = in_rtts(run_lookups(net, args, seed + j), rtt)
            out["variants"].append({"config": dict(changes), **vres})
        for name, value in base.items():
            setattr(config, name, value)
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    gc.unfreeze()
    return out


def in_rtts(res: dict[str, Any], rtt: float) -> dict[str, Any]:
    """``res`` with its latencies also in measured round trips (``*_rtts``)."""
    out = dict(res)
    for key in ("latency_median", "latency_p95", "first_peer_median", "first_peer_p95"):
        if res[key + "_s"] is not None:
            out[key + "_rtts"] = round(res[key + "_s"] / rtt, 2)
    return out


def config_value(text: str) -> tuple[str, Any]:
    """``name=value`` for a NodeConfig field, the value parsed as the field's default."""
    name, _, raw = text.partition("=")
    if name not in NodeConfig.names():
        raise argparse.ArgumentTypeError(f"no NodeConfig field {name!r}")
    default = getattr(NodeConfig(), name)
    value: Any
    if isinstance(default, bool):
        value = raw.lower() in ("1", "true", "yes")
    elif isinstance(default, (int, float)):
        value = type(default)(raw)
    else:
        raise argparse.ArgumentTypeError(f"{name} cannot be set from the command line")
    return name, value


def add_set_option(ap: argparse.ArgumentParser, example: str) -> None:
    """``--set NAME=VALUE`` (repeatable): NodeConfig fields, collected in ``args.set``."""
    ap.add_argument(
        "--set",
        type=config_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"set a NodeConfig field (repeatable), e.g. --set {example}",
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="network sizes, comma-separated")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--median-rtt", type=float, default=0.08, help="seconds (default 0.08)")
    ap.add_argument("--rtt-sigma", type=float, default=0.5, help="lognormal sigma per node")
    ap.add_argument("--dead-share", type=float, default=0.2)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--stagger", type=float, default=0.05, help="seconds between lookup starts")
    ap.add_argument("--fill", choices=("buckets", "populate"), default="buckets")
    ap.add_argument(
        "--no-far-buckets",
        dest="far_buckets",
        action="store_false",
        help="fill the far buckets to k only (not to 128/64/32/16)",
    )
    ap.add_argument(
        "--table-rtts",
        action="store_true",
        help="filled entries come with their measured round trip (--fill buckets)",
    )
    ap.add_argument("--contacts", type=int, default=40, help="for --fill populate")
    ap.add_argument("--query-timeout", type=float, help="NodeConfig.query_timeout (s)")
    ap.add_argument("--soft-timeout", type=float, help="NodeConfig.soft_timeout (s)")
    ap.add_argument("--seed", type=int, default=1)
    add_set_option(ap, "soft_timeout_factor=3")
    ap.add_argument(
        "--variant",
        type=lambda text: [config_value(t) for t in text.split(",") if t],
        action="append",
        default=[],
        metavar="NAME=VALUE,...",
        help="after the main run, run lookups for new targets on the same network with "
        "these NodeConfig fields changed (repeatable; an empty string: the defaults again)",
    )
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    t0 = time.perf_counter()
    networks = [one_network(n, args) for n in sizes]
    goals: dict[str, Any] = {}
    big = next((r for r in networks if r["nodes"] >= 100_000), None)
    if big is not None and big["latency_median_s"] is not None:
        goals = {
            "median_le_3_rtts": big["latency_median_rtts"] <= 3.0,
            "p95_le_6_rtts": big["latency_p95_rtts"] <= 6.0,
            "closest8_ge_95pct": big["closest8_rate"] >= 0.95,
            "queries_le_30": big["queries_mean"] <= 30,
            "success_ge_99pct": big["peer_found_rate"] >= 0.99,
        }
    result = {
        "bench": "lookup_sim",
        "params": {
            "lookups": args.lookups,
            "median_rtt_target_s": args.median_rtt,
            "rtt_sigma": args.rtt_sigma,
            "dead_share": args.dead_share,
            "loss": args.loss,
            "fill": args.fill,
            "far_buckets": args.far_buckets,
            "table_rtts": args.table_rtts,
            "k": K,
            "alpha": NodeConfig().alpha,
            "soft_timeout_s": args.soft_timeout or NodeConfig().soft_timeout,
            "query_timeout_s": args.query_timeout or NodeConfig().query_timeout,
            "seed": args.seed,
            "config": dict(args.set),
        },
        "networks": networks,
        "goals_100k": goals,
        "wall_s": round(time.perf_counter() - t0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
