"""What one datagram costs the pure core, for two checkouts side by side.

Prints one JSON object. For each ``--root`` (a checkout of mldht: this one by default;
e.g. an older revision exported with ``git archive REV | tar -x -C /tmp/base``), a child
process imports that checkout's core, feeds a NodeState a fixed stream of queries from
128 sources (ping / find_node / get_peers 40/40/20 by default, as bench/throughput.py
sends; ``--known``: the sources in the routing table, as the bench's node has them after
its warm-up) and drains its replies in batches of 64, and reports CPU nanoseconds per
datagram, or with ``--callgrind`` the instructions per datagram (valgrind: free of the
noise of a shared machine). Roots take
turns for ``--rounds`` rounds; the medians and the ratio to the first root are printed,
so that two versions are compared in the same run (e.g. the cost of the metric counters:
``--root /tmp/base --root .``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

count, generated, table, known = (int(x) for x in sys.argv[1:5])
weights = [int(x) for x in sys.argv[5].split(",")]
rng = random.Random(1)
node = NodeState(b"\x11" * 20, rng, 0.0, NodeConfig(rate_limit=0, send_rate=0))
for i in range(table):
    addr = (f"10.1.{i // 250}.{i % 250}", 6881)
    node.routing.node_responded(NodeInfo(rng.randbytes(20), addr), 0.0)
sources = [(f"127.66.{i // 200}.{i % 200 + 1}", 7000 + i) for i in range(128)]
ids = [rng.randbytes(20) for _ in sources]
if known:  # the queriers in the table, as bench/throughput.py's node has them after warm-up
    for nid, addr in zip(ids, sources):
        node.routing.node_responded(NodeInfo(nid, addr), 0.0)

def make(n):
    out = []
    for k in range(n):
        i = k % len(sources)
        kind = rng.choices(("ping", "find_node", "get_peers"), weights)[0]
        a = {b"id": ids[i]}
        if kind == "find_node":
            a[b"target"] = rng.randbytes(20)
        elif kind == "get_peers":
            a[b"info_hash"] = rng.randbytes(20)
        t = k.to_bytes(4, "big")
        out.append((bencode({b"a": a, b"q": kind.encode(), b"t": t, b"y": b"q"}), sources[i]))
    return out

receive, drain = node.receive_datagram, node.datagrams_to_send

def run(datagrams, start):
    for j in range(0, len(datagrams), 64):
        now = start + j * 1e-5
        for data, addr in datagrams[j : j + 64]:
            receive(data, addr, now)
        drain()

run(make(2000), 1.0)  # warm-up (the snapshot of the table, caches)
datagrams = make(generated)[:count]
start = time.process_time()
run(datagrams, 2.0)
elapsed = time.process_time() - start
assert node.stats["internal_errors"] == 0
print(elapsed / max(count, 1) * 1e9)
"""


def _child(root: str, args: argparse.Namespace, count: int, callgrind: bool) -> float:
    """One child run: CPU ns per datagram, or (callgrind) the instructions it executed."""
    argv = [sys.executable, "-c", CHILD, str(count), str(args.count), str(args.table)]
    argv += [str(int(args.known)), args.mix]
    if callgrind:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": root, "PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "")},
        timeout=3600,
        check=True,
    )
    if not callgrind:
        return float(out.stdout)
    collected = re.search(r"Collected : ([\d,]+)", out.stderr)
    assert collected is not None, out.stderr[-500:]
    return float(collected.group(1).replace(",", ""))


def _sample(root: str, args: argparse.Namespace) -> float:
    if not args.callgrind:
        return _child(root, args, args.count, False)
    # instructions of count datagrams: the difference of a run that handles them and one
    # that only builds them (start-up, imports and the warm-up cancel out), after a run
    # that compiles the modules (the first import of changed code writes its bytecode)
    _child(root, args, 0, False)
    return (_child(root, args, args.count, True) - _child(root, args, 0, True)) / args.count


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
    ap.add_argument(
        "--known",
        action="store_true",
        help="put the 128 queriers in the routing table first (as bench/throughput.py's "
        "node has them after its warm-up)",
    )
    ap.add_argument("--mix", default="40,40,20", help="ping,find_node,get_peers weights")
    ap.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions under valgrind (noise-free; slow: use --count 10000 "
        "--rounds 1) instead of CPU time",
    )
    args = ap.parse_args()
    roots = [str(Path(r).resolve()) for r in (args.root or [str(ROOT)])]
    samples: dict[str, list[float]] = {r: [] for r in roots}
    for _ in range(args.rounds):
        for root in roots:
            samples[root].append(_sample(root, args))
    first = statistics.median(samples[roots[0]])
    unit = "instructions_per_datagram" if args.callgrind else "ns_per_datagram"
    results = {
        root: {
            f"{unit}_median": round(statistics.median(s), 1),
            "ratio_to_first": round(statistics.median(s) / first, 3),
            "samples": [round(x, 1) for x in s],
        }
        for root, s in samples.items()
    }
    params = {
        "count": args.count,
        "rounds": args.rounds,
        "table": args.table,
        "known": args.known,
        "mix": args.mix,
        "callgrind": args.callgrind,
    }
    print(json.dumps({"bench": "core_cost", "params": params, "results": results}))


if __name__ == "__main__":
    main()
