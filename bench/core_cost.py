"""What one datagram costs the pure core, for two checkouts side by side.

Prints one JSON object. For each ``--root`` (a checkout of mldht: this one by default;
e.g. an older revision exported with ``git archive REV | tar -x -C /tmp/base``), a child
process imports that checkout's core, feeds a NodeState a fixed stream of queries from
128 sources (ping / find_node / get_peers 40/40/20, as bench/throughput.py sends) and
drains its replies in batches of 64, and reports CPU nanoseconds per datagram. Roots take
turns for ``--rounds`` rounds; the medians and the ratio to the first root are printed,
so that two versions are compared in the same run (e.g. the cost of the metric counters:
``--root /tmp/base --root .``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import random, sys, time
from mldht.core.bencode import bencode
from mldht.core.compact import NodeInfo
from mldht.core.node import NodeConfig, NodeState

count, table = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(1)
node = NodeState(b"\x11" * 20, rng, 0.0, NodeConfig(rate_limit=0, send_rate=0))
for i in range(table):
    addr = (f"10.1.{i // 250}.{i % 250}", 6881)
    node.routing.node_responded(NodeInfo(rng.randbytes(20), addr), 0.0)
sources = [(f"127.66.{i // 200}.{i % 200 + 1}", 7000 + i) for i in range(128)]
ids = [rng.randbytes(20) for _ in sources]
datagrams = []
for n in range(count):
    i = n % len(sources)
    kind = rng.choices(("ping", "find_node", "get_peers"), (40, 40, 20))[0]
    a = {b"id": ids[i]}
    if kind == "find_node":
        a[b"target"] = rng.randbytes(20)
    elif kind == "get_peers":
        a[b"info_hash"] = rng.randbytes(20)
    t = n.to_bytes(4, "big")
    datagrams.append((bencode({b"a": a, b"q": kind.encode(), b"t": t, b"y": b"q"}), sources[i]))
receive, drain = node.receive_datagram, node.datagrams_to_send
start = time.process_time()
for j in range(0, count, 64):
    now = 1.0 + j * 1e-5
    for data, addr in datagrams[j : j + 64]:
        receive(data, addr, now)
    drain()
elapsed = time.process_time() - start
assert node.stats["internal_errors"] == 0
print(elapsed / count * 1e9)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", action="append", help="a checkout of mldht (repeatable)")
    ap.add_argument("--count", type=int, default=50_000, help="datagrams per measurement")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--table",
        type=int,
        default=0,
        help="nodes put in the routing table first (0: empty, as in bench/throughput.py)",
    )
    args = ap.parse_args()
    roots = [str(Path(r).resolve()) for r in (args.root or [str(ROOT)])]
    samples: dict[str, list[float]] = {r: [] for r in roots}
    for _ in range(args.rounds):
        for root in roots:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.count), str(args.table)],
                capture_output=True,
                text=True,
                cwd=root,
                env={"PYTHONPATH": root},
                timeout=600,
                check=True,
            )
            samples[root].append(float(out.stdout))
    first = statistics.median(samples[roots[0]])
    results = {
        root: {
            "ns_per_datagram_median": round(statistics.median(s), 1),
            "ratio_to_first": round(statistics.median(s) / first, 3),
            "samples": [round(x, 1) for x in s],
        }
        for root, s in samples.items()
    }
    params = {"count": args.count, "rounds": args.rounds, "table": args.table}
    print(json.dumps({"bench": "core_cost", "params": params, "results": results}))


if __name__ == "__main__":
    main()
