"""How fast does tools/crawl.py map a loopback swarm, and with how many queries per node?

Prints one JSON object. A child process runs ``tools/swarm.py`` (``--nodes`` mldht nodes,
default 5,000, on 127.77.x.y); once it is ready, ``tools/crawl.py`` runs as its own
process against it (``--bootstrap`` the swarm's first node, ``--rate`` queries/s, default
1,000 as loopback allows, ``--duration`` bound). The crawler's SQLite timeline (one row a
second: nodes found, nodes that answered, queries sent) gives the time at which 99% of
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


def main(argv: list[str] | None = None) -> None:
    from mldht import argtypes

    ap = argtypes.Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--nodes",
        type=argtypes.positive_int,
        default=1000,
        help="swarm size (the goal is stated for 5000)",
    )
    ap.add_argument(
        "--rate", type=argtypes.positive_number, default=1000.0, help="crawler queries/s at most"
    )
    ap.add_argument(
        "--duration", type=argtypes.positive_seconds, default=120.0, help="crawl bound, seconds"
    )
    ap.add_argument(
        "--share", type=argtypes.positive_number, default=0.99, help="share of nodes to find"
    )
    ap.add_argument("--ready-timeout", type=argtypes.positive_seconds, default=900.0)
    ap.add_argument("--seed", type=argtypes.count, default=1)
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
    t0 = time.perf_counter()
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
        "wall_s": round(time.perf_counter() - t0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
