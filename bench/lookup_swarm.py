"""Wall time of get_peers in a loopback swarm of 1,000 mldht nodes.

Prints one JSON object. A child process runs :class:`mldht.Testnet`:
``--nodes`` (default 1,000) DHTNodes on their own 127.77.x.y addresses, joined into one
network, with ``--infohashes`` (default 200) random info-hashes announced from random
nodes. This process runs one more DHTNode (on 127.78.0.1, asyncio with uvloop), joins the
swarm through its first node, lets its table fill for ``--settle`` seconds, then looks up
each announced info-hash once (``--lookups``, default 200), one after the other, timing
``get_peers`` from the call to its end (``DHTNode.iter_peers`` exhausted) and to the first
peer. Two processes, so the swarm and the searching node each have a core.
"""

from __future__ import annotations

import argparse
import json
import platform
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def child(args: argparse.Namespace) -> None:
    """Run the swarm; print its bootstrap address and info-hashes; serve until stdin closes."""
    import anyio

    from mldht.runtime.node import format_addr, run
    from mldht.testnet import Testnet

    async def main() -> None:
        started = time.monotonic()
        async with Testnet(
            args.nodes, infohashes=args.infohashes, seed=args.seed, ready_timeout=args.ready_timeout
        ) as swarm:
            info = swarm.summary()
            info["ready_after_s"] = round(time.monotonic() - started, 2)
            info["infohashes"] = [ih.hex() for ih in swarm.infohashes]
            info["bootstrap"] = format_addr(swarm.bootstrap_address)
            print(json.dumps(info), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)

    run(main)


async def search(
    args: argparse.Namespace, boot: tuple[str, int], ihs: list[bytes]
) -> dict[str, Any]:
    import anyio

    from mldht.runtime.node import DHTNode

    done: list[float] = []
    first: list[float] = []
    found = 0
    async with DHTNode(bind=("127.78.0.1", 0), bootstrap=[boot]) as node:
        await node.wait_ready(30.0)
        await anyio.sleep(args.settle)
        table = node.stats["nodes"]
        q0 = node.stats["queries_out"]
        for ih in ihs[: args.lookups]:
            t0 = time.perf_counter()
            t_first = None
            n = 0
            async for _peer in node.iter_peers(ih):
                if t_first is None:
                    t_first = time.perf_counter() - t0
                n += 1
            done.append(time.perf_counter() - t0)
            if t_first is not None:
                first.append(t_first)
                found += 1
        queries = node.stats["queries_out"] - q0
    return {
        "lookups": len(done),
        "found_rate": round(found / len(done), 4) if done else None,
        "median_ms": round(statistics.median(done) * 1000, 2) if done else None,
        "p95_ms": round(percentile(done, 0.95) * 1000, 2) if done else None,
        "first_peer_median_ms": round(statistics.median(first) * 1000, 2) if first else None,
        "first_peer_p95_ms": round(percentile(first, 0.95) * 1000, 2) if first else None,
        "searcher_table_size": table,
        "queries_per_lookup": round(queries / len(done), 1) if done else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--infohashes", type=int, default=200)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after joining")
    ap.add_argument("--ready-timeout", type=float, default=400.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    from mldht.runtime.node import run

    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child"]
    cmd += ["--nodes", str(args.nodes), "--infohashes", str(args.infohashes)]
    cmd += ["--seed", str(args.seed), "--ready-timeout", str(args.ready_timeout)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(args.ready_timeout + 30):
            raise RuntimeError("the swarm did not get ready in time")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the swarm process exited")
        info = json.loads(line)
        host, _, port = info["bootstrap"].rpartition(":")
        ihs = [bytes.fromhex(h) for h in info.pop("infohashes")]
        res = run(search, args, (host, int(port)), ihs)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    out = {
        "bench": "lookup_swarm",
        "params": {"nodes": args.nodes, "infohashes": args.infohashes, "settle_s": args.settle},
        "swarm": info,
        "get_peers": res,
        "goals": {"median_le_50ms": res["median_ms"] is not None and res["median_ms"] <= 50},
        "wall_s": round(time.perf_counter() - t0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
