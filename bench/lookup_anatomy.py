"""Where a simulated get_peers lookup's round trips go, and what oracles would achieve.

Prints one JSON object. Builds one network as ``bench/lookup_sim.py`` does (same flags,
same seed: the same network and, for the first run, the same targets and searchers) and
traces every lookup (the bench wraps :class:`mldht.core.lookup.Lookup`'s methods; the
library is unchanged). A round trip is a query out and its answer back; times are
divided by the median round trip between live nodes, as in lookup_sim.py. Per lookup:

* ``known8``: when the 8 nodes the lookup ended with had all been offered as candidates
  (the hops it took to find them);
* ``answered8``: when the last of them answered;
* ``end``: when the lookup ended; ``end - answered8`` is the wait for queries that could
  still have entered the closest set (dead or lossy nodes, slow answers);
* ``hops``: the longest referral chain (table -> answer -> answer ...) to a final node;
* ``dead_held``: dead nodes queried that were closer than the 8th final node.

Oracles, each on new targets (``run_lookups`` with another seed) of the same network:

* ``no_dead``: the lookup never hears of a dead node (filtered as candidates);
* ``complete_tables``: every answer lists the 8 nodes nearest the target of the whole
  network (dead ones included), as a node whose table held every node would;
* ``complete_live``: both: answers list the 8 nearest live nodes.

``slowest_of_true8_rtts``: the slowest round trip from the searcher to the true 8
closest live nodes: a lookup that knew them from the start would still take this long
to hear from all of them (one round trip to a first contact more if it must learn them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lookup_sim import (  # bench/ is sys.path[0] when run as a script
    K,
    Network,
    add_set_option,
    build,
    measured_median_rtt,
    percentile,
    run_lookups,
)

from mldht.core.compact import NodeInfo
from mldht.core.lookup import Lookup, Responded


class Trace:
    """What one lookup saw, on the simulator's clock."""

    def __init__(self, start: float, own_id: bytes) -> None:
        self.start = start
        self.own_id = own_id
        self.offered: dict[bytes, float] = {}
        self.source: dict[bytes, bytes | None] = {}
        self.answered: dict[bytes, float] = {}
        self.queried: set[bytes] = set()
        self.end: float | None = None
        self.final: list[NodeInfo] = []


@contextmanager
def traced(
    net: Network,
    traces: dict[bytes, Trace],
    rewrite: Callable[[bytes, list[NodeInfo]], list[NodeInfo]] | None = None,
    drop_dead: bool = False,
) -> Iterator[None]:
    """Wrap Lookup's methods to fill ``traces`` (by target); ``rewrite(target, nodes)``
    replaces each answer's nodes, ``drop_dead`` hides dead nodes from the lookup."""
    sim = net.sim
    dead = net.dead
    orig_init = Lookup.__init__
    orig_add = Lookup.add_candidates
    orig_next = Lookup.next_queries
    orig_resp = Lookup.on_response
    orig_closest = Lookup.closest

    def init(self: Lookup, target: bytes, **kw: Any) -> None:
        orig_init(self, target, **kw)
        traces[target] = Trace(sim.now, kw["own_id"])

    def add(self: Lookup, nodes: Iterable[NodeInfo], source: NodeInfo | None = None) -> None:
        nodes = list(nodes)
        if drop_dead:
            nodes = [n for n in nodes if n.addr not in dead]
        tr = traces[self.target]
        for n in nodes:
            if n.id not in tr.offered:
                tr.offered[n.id] = sim.now
                tr.source[n.id] = None if source is None else source.id
        orig_add(self, nodes, source)

    def next_q(self: Lookup, now: float) -> list[NodeInfo]:
        out = orig_next(self, now)
        traces[self.target].queried.update(n.id for n in out)
        return out

    def resp(
        self: Lookup,
        node: NodeInfo,
        now: float,
        nodes: Iterable[NodeInfo] = (),
        token: bytes | None = None,
        payload: object = None,
    ) -> None:
        tr = traces[self.target]
        tr.answered.setdefault(node.id, now)
        if rewrite is not None:
            nodes = rewrite(self.target, list(nodes))
        orig_resp(self, node, now, nodes, token, payload)

    def closest(self: Lookup, n: int | None = None) -> list[Responded]:
        out = orig_closest(self, n)
        tr = traces[self.target]
        if tr.end is None:
            tr.end = sim.now
            tr.final = [r.node for r in out[:K]]
        return out

    Lookup.__init__ = init  # type: ignore[method-assign]
    Lookup.add_candidates = add  # type: ignore[method-assign]
    Lookup.next_queries = next_q  # type: ignore[method-assign]
    Lookup.on_response = resp  # type: ignore[method-assign]
    Lookup.closest = closest  # type: ignore[method-assign]
    try:
        yield
    finally:
        Lookup.__init__ = orig_init  # type: ignore[method-assign]
        Lookup.add_candidates = orig_add  # type: ignore[method-assign]
        Lookup.next_queries = orig_next  # type: ignore[method-assign]
        Lookup.on_response = orig_resp  # type: ignore[method-assign]
        Lookup.closest = orig_closest  # type: ignore[method-assign]


def hops(tr: Trace, nid: bytes) -> int:
    """Referral chain length to ``nid`` (1: from the searcher's own table)."""
    count = 0
    cur: bytes | None = nid
    while cur is not None and count < 64:
        count += 1
        cur = tr.source.get(cur)
    return count


def summarize(
    net: Network, traces: dict[bytes, Trace], rtt: float, addr_of: dict[bytes, Any]
) -> dict[str, Any]:
    known8, answered8, end, tail, hop, dead_held = [], [], [], [], [], []
    slowest8: list[float] = []
    dead_ids = set(net.dead.values())
    nodes = net.sim.nodes
    for target, tr in traces.items():
        if tr.end is None or not tr.final:
            continue
        ids = [n.id for n in tr.final]
        t_known = max(tr.offered.get(i, tr.start) for i in ids) - tr.start
        t_ans = max(tr.answered.get(i, tr.start) for i in ids) - tr.start
        known8.append(t_known / rtt)
        answered8.append(t_ans / rtt)
        end.append((tr.end - tr.start) / rtt)
        tail.append((tr.end - tr.start - t_ans) / rtt)
        hop.append(max(hops(tr, i) for i in ids))
        best = net.true_closest(target, K, exclude=tr.own_id)
        own = nodes[addr_of[tr.own_id]].latency
        slowest8.append(max(own + nodes[b.addr].latency for b in best) / rtt)
        t = int.from_bytes(target, "big")
        bar = max(int.from_bytes(i, "big") ^ t for i in ids)
        dead_held.append(
            sum(1 for q in tr.queried if q in dead_ids and int.from_bytes(q, "big") ^ t < bar)
        )

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 2),
            "p95": round(percentile(values, 0.95), 2),
            "mean": round(statistics.fmean(values), 2),
        }

    return {
        "lookups": len(end),
        "known8_rtts": stats(known8),
        "answered8_rtts": stats(answered8),
        "end_rtts": stats(end),
        "end_after_answered8_rtts": stats(tail),
        "hops": stats([float(h) for h in hop]),
        "dead_held": stats([float(d) for d in dead_held]),
        "slowest_of_true8_rtts": stats(slowest8),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--median-rtt", type=float, default=0.08)
    ap.add_argument("--rtt-sigma", type=float, default=0.5)
    ap.add_argument("--dead-share", type=float, default=0.2)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--stagger", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--oracles", default="no_dead,complete_tables,complete_live")
    add_set_option(ap, "lookup_k=8")
    args = ap.parse_args(argv)
    # the attributes build() and run_lookups() read
    args.fill, args.far_buckets, args.table_rtts, args.contacts = "buckets", True, False, 40
    args.query_timeout = args.soft_timeout = None
    t0 = time.perf_counter()
    seed = args.seed * 1_000_003 + args.nodes  # as lookup_sim.one_network
    net, info = build(args.nodes, args, seed)
    addr_of = {net.sim.state(a).node_id: a for a in net.live}
    rtt = measured_median_rtt(net, __import__("random").Random(seed))
    order = sorted(zip(net.ints, net.infos, net.alive, strict=True), key=lambda m: m[0])

    def nearest(target: bytes, live_only: bool) -> list[NodeInfo]:
        t = int.from_bytes(target, "big")
        if live_only:
            return net.true_closest(target, K)
        pool = [info for _, info, alive in order]
        return sorted(pool, key=lambda n: int.from_bytes(n.id, "big") ^ t)[:K]

    cache: dict[tuple[bytes, bool], list[NodeInfo]] = {}

    def rewriter(live_only: bool) -> Callable[[bytes, list[NodeInfo]], list[NodeInfo]]:
        def rewrite(target: bytes, nodes: list[NodeInfo]) -> list[NodeInfo]:
            key = (target, live_only)
            if key not in cache:
                cache[key] = nearest(target, live_only)
            return cache[key]

        return rewrite

    runs: dict[str, Any] = {}
    Rewrite = Callable[[bytes, list[NodeInfo]], list[NodeInfo]] | None
    plan: list[tuple[str, Rewrite, bool]] = [("defaults", None, False)]
    for name in args.oracles.split(","):
        if name == "no_dead":
            plan.append((name, None, True))
        elif name == "complete_tables":
            plan.append((name, rewriter(False), False))
        elif name == "complete_live":
            plan.append((name, rewriter(True), True))
    for j, (name, rewrite, drop_dead) in enumerate(plan):
        traces: dict[bytes, Trace] = {}
        with traced(net, traces, rewrite, drop_dead):
            res = run_lookups(net, args, seed + j)
        runs[name] = {
            "closest8_rate": res["closest8_rate"],
            "queries_mean": res["queries_mean"],
            "peer_found_rate": res["peer_found_rate"],
            **summarize(net, traces, rtt, addr_of),
        }
    result = {
        "bench": "lookup_anatomy",
        "params": {k: dict(v) if k == "set" else v for k, v in vars(args).items()},
        "network": info,
        "median_rtt_s": round(rtt, 4),
        "runs": runs,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
