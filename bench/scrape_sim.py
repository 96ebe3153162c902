"""BEP 33 scrape accuracy and cost in a simulated network (mldht.sim). Prints one JSON object.

A network of ``--nodes`` nodes (tables filled by :meth:`Simulator.populate`, ``--loss``
of datagrams dropped) holds swarms of several sizes: for each size, that many distinct
nodes announce one info-hash (a third of them with ``seed=True``), ``--stagger`` seconds
apart (a store fills, then withholds its token, as announces arrive over time). Then
``--scrapes`` scrapes, each from a random node outside the swarm, are compared with

* the truth (how many seeds and peers announced);
* the *ceiling*: BEP 33's estimate of the filter of every announced IP, i.e. what a
  perfect merge would report (the estimate's own error is in it, nothing else);
* get_peers lookups from as many other nodes outside the swarm (queries sent, virtual
  duration, distinct peers listed: a node lists at most ``max_values`` per answer).

Figures: median / min / max estimate, the share of scrapes equal to the ceiling, queries
and durations in round trips (the median RTT measured between random node pairs).
A store keeps at most ``max_peers_per_infohash`` (500) peers of one info-hash and then
withholds tokens (BEP 33), so a larger swarm is spread over more nodes than the 10
closest; scrape merges them all, as far as its lookup reaches.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mldht.core import bep42
from mldht.core.bep33 import scrape_bloom
from mldht.core.compact import Addr
from mldht.core.events import AnnounceDone, Event, LookupDone
from mldht.core.scrape import ScrapeDone, estimate_count
from mldht.sim import Simulator


def add_public_node(sim: Simulator, rng: random.Random) -> Addr:
    """A node on the next public-looking address with a BEP 42-valid id for it.

    With a random id, a node regenerates its id once IP voting tells it its address
    (BEP 42), and the nodes that stored an announce stop being the closest to it: in a
    populated network of 300, get_peers lookups stopped reaching the true 8 closest
    after three lookups had run.
    """
    n = len(sim.nodes) + 1
    ip = f"{11 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}.1"  # Simulator's public scheme
    return sim.add_node(addr=(ip, 6881), node_id=bep42.generate_node_id(ip, rng))


def _run_all(
    sim: Simulator, starts: list[tuple[Addr, Any]], bound: float, stagger: float = 0.0
) -> list[Event]:
    """Start every ``(addr, action)``, ``stagger`` seconds apart; run until all ended
    (bounded): terminal events in the order of ``starts``."""
    found: dict[tuple[Addr, int], Event] = {}

    def collect(addr: Addr, event: Event, now: float) -> None:
        if isinstance(event, LookupDone | AnnounceDone):
            found[(addr, event.op)] = event

    sim.on_event = collect
    ops = []
    for addr, action in starts:
        ops.append((addr, sim.start(addr, action)))
        if stagger:
            sim.run(until=sim.now + stagger)
    sim.run(until=sim.now + bound, stop=lambda: len(found) >= len(ops))
    sim.on_event = None
    return [found[key] for key in ops if key in found]


def _median_rtt(sim: Simulator, live: list[Addr], rng: random.Random) -> float:
    pairs = [rng.sample(live, 2) for _ in range(2000)]
    return statistics.median(sim.nodes[a].latency + sim.nodes[b].latency for a, b in pairs)


def swarm(
    sim: Simulator, live: list[Addr], size: int, scrapes: int, stagger: float, rng: random.Random
) -> dict[str, Any]:
    infohash = rng.randbytes(20)
    members = rng.sample(live, size)
    seeds = [a for i, a in enumerate(members) if i % 3 == 0]
    peers = [a for i, a in enumerate(members) if i % 3 != 0]

    def announce(seed: bool) -> Any:
        return lambda st, now: st.announce(infohash, 6881, now, seed=seed)

    t0 = sim.now
    ann = _run_all(sim, [(a, announce(a in seeds)) for a in members], 300.0, stagger)
    announced_s = sim.now - t0
    ceiling = (
        estimate_count(scrape_bloom([a[0] for a in seeds])),
        estimate_count(scrape_bloom([a[0] for a in peers])),
    )
    outside = [a for a in live if a not in set(members)]
    askers = rng.sample(outside, 2 * scrapes)  # distinct ones: a lookup teaches its asker
    rows = []
    for asker, other in zip(askers[:scrapes], askers[scrapes:], strict=True):
        t = sim.now
        (sc,) = _run_all(sim, [(asker, lambda st, now: st.scrape(infohash, now))], 120.0)
        sc_s = sim.now - t
        t = sim.now
        (gp,) = _run_all(sim, [(other, lambda st, now: st.get_peers(infohash, now))], 120.0)
        gp_s = sim.now - t
        assert isinstance(sc, ScrapeDone) and sc.result is not None and isinstance(gp, LookupDone)
        r = sc.result
        rows.append((r.seeds, r.peers, r.nodes, sc.queried, sc_s, gp.queried, gp_s, len(gp.peers)))

    def col(i: int) -> list[float]:
        return [float(row[i]) for row in rows]

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    rtt = _median_rtt(sim, live, rng)
    return {
        "swarm": size,
        "true_seeds": len(seeds),
        "true_peers": len(peers),
        "ceiling_seeds": ceiling[0],
        "ceiling_peers": ceiling[1],
        "announces_ended": len(ann),
        "announce_accepted_median": statistics.median(
            e.accepted for e in ann if isinstance(e, AnnounceDone)
        ),
        "announce_phase_s": round(announced_s, 2),
        "scrape_seeds": stats(col(0)),
        "scrape_peers": stats(col(1)),
        "at_ceiling_rate": sum(1 for row in rows if (row[0], row[1]) == ceiling) / len(rows),
        "nodes_merged": stats(col(2)),
        "scrape_queries_median": statistics.median(col(3)),
        "scrape_rtts_median": round(statistics.median(col(4)) / rtt, 2),
        "get_peers_queries_median": statistics.median(col(5)),
        "get_peers_rtts_median": round(statistics.median(col(6)) / rtt, 2),
        "get_peers_listed_median": statistics.median(col(7)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--swarms", default="1,10,100,400,1000", help="comma-separated sizes")
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument(
        "--stagger", type=float, default=0.05, help="seconds between two announces' starts"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.swarms.split(",")]
    if max(sizes) + 2 * args.scrapes > args.nodes:
        ap.error("argument --swarms: a swarm plus the scrapers must fit in --nodes")
    started = time.perf_counter()
    sim = Simulator(seed=args.seed, public=True, loss=args.loss)
    rng = random.Random(args.seed)
    live = [add_public_node(sim, rng) for _ in range(args.nodes)]
    sim.populate(contacts=40)
    results = []
    for size in sizes:
        results.append(swarm(sim, live, size, args.scrapes, args.stagger, rng))
        print(f"swarm {size}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "scrape_sim",
                "nodes": args.nodes,
                "loss": args.loss,
                "scrapes_per_swarm": args.scrapes,
                "stagger_s": args.stagger,
                "seed": args.seed,
                "swarms": results,
                "wall_s": round(time.perf_counter() - started, 1),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
