"""The longest event-loop callback of a node holding 10^6 peers, running 200 lookups.

A loopback swarm (``--swarm`` nodes, a :class:`~mldht.Testnet` in a child process) is the
network. The node under test runs on plain asyncio in debug mode, which logs every
callback (one step of a task, a datagram batch, a timer) that holds the loop longer than
``slow_callback_duration`` (set to 5 ms): the benchmark counts those log records. The
node's store gets ``--peers`` peers (one per info-hash, the most entries), set to expire
a few seconds into the run, so the paced expiry sweep runs while it is measured, and a
maintenance round comes every second (its refresh lookups and pings too). Then
``--lookups`` get_peers lookups run at once, ``--rounds`` times. Also measured: the
longest :meth:`~mldht.core.node.NodeState.handle_timer` call, and the longest lag of a
probe task sleeping 2 ms (what any other task waits, at worst). Prints one JSON object.
Goal (issue 14): no callback over 5 ms.

    python bench/callbacks.py [--peers 1000000] [--lookups 200] [--swarm 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.node import NodeState  # noqa: E402
from mldht.runtime import DHTNode  # noqa: E402

SLOW = 0.005

SWARM = """
import sys, anyio
from mldht import Testnet
async def main(n):
    async with Testnet(n, infohashes=50) as net:
        print("%s %d" % net.bootstrap_address, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
anyio.run(main, int(sys.argv[1]))
"""


class SlowCallbacks(logging.Handler):
    """Collects asyncio's "Executing ... took N seconds" records."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.took: list[float] = []
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        m = re.search(r"took ([0-9.]+) seconds", msg)
        if m:
            self.took.append(float(m.group(1)))
            if len(self.samples) < 5:
                self.samples.append(msg[:300])


def fill(state: NodeState, peers: int, expire_in: float) -> None:
    """``peers`` peers, one per info-hash, each from its own /24, expiring
    ``expire_in`` seconds after the fill ends (the store's TTL is lowered meanwhile)."""
    store = state.peer_store
    ttl, store.peer_ttl = store.peer_ttl, expire_in + peers * 30e-6
    rng = random.Random(7)
    now = time.time()
    for i in range(peers):
        if i % 1000 == 0:
            now = time.time()
        ip = f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.7"
        store.announce(rng.randbytes(20), (ip, 1024 + i % 60000), now)
    store.peer_ttl = ttl


async def measure(args: argparse.Namespace, boot: tuple[str, int]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {}
    async with DHTNode(
        bind=("127.0.0.1", 0),
        bootstrap=[boot],
        rate_limit=0,
        send_rate=0,
        max_infohashes=args.peers + 10_000,
        maintenance_interval=1.0,
    ) as node:
        await asyncio.sleep(1.0)
        state = node._state  # benchmarks may use internals
        t0 = time.perf_counter()
        fill(state, args.peers, args.expire_in)  # (not measured: the loop is held here)
        out["fill_s"] = round(time.perf_counter() - t0, 1)
        out["stored_peers"] = state.peer_store.peer_count()

        timer_max = [0.0]
        inner = state.handle_timer

        def timed(now: float) -> None:
            t = time.perf_counter()
            inner(now)
            timer_max[0] = max(timer_max[0], time.perf_counter() - t)

        state.handle_timer = timed  # type: ignore[method-assign]
        maint_max = [0.0]
        maintenance = state._maintenance
        maint_inner = maintenance.handle_timer

        def timed_maintenance(now: float) -> None:
            t = time.perf_counter()
            maint_inner(now)
            maint_max[0] = max(maint_max[0], time.perf_counter() - t)

        maintenance.handle_timer = timed_maintenance  # type: ignore[method-assign]
        lags: list[float] = []
        done = False

        async def probe() -> None:
            while not done:
                t = time.perf_counter()
                await asyncio.sleep(0.002)
                lags.append(time.perf_counter() - t - 0.002)

        handler = SlowCallbacks()
        logging.getLogger("asyncio").addHandler(handler)
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW
        probe_task = asyncio.create_task(probe())
        rng = random.Random(9)
        t0 = time.perf_counter()
        found = 0
        for _ in range(args.rounds):
            results = await asyncio.gather(
                *(node.get_peers(rng.randbytes(20)) for _ in range(args.lookups)),
                return_exceptions=True,
            )
            found += sum(isinstance(r, list) for r in results)
        while state.peer_store.peer_count() and time.perf_counter() - t0 < 120:  # the sweep
            await asyncio.sleep(0.1)
        out["measured_s"] = round(time.perf_counter() - t0, 1)
        done = True
        await probe_task
        loop.set_debug(False)
        logging.getLogger("asyncio").removeHandler(handler)
        out["lookups_done"] = found
        out["peers_left"] = state.peer_store.peer_count()
        out["callbacks_over_5ms"] = len(handler.took)
        out["longest_callback_ms"] = round(max(handler.took, default=0.0) * 1000, 1)
        out["slow_samples"] = handler.samples
        out["longest_handle_timer_ms"] = round(timer_max[0] * 1000, 2)
        out["longest_maintenance_ms"] = round(maint_max[0] * 1000, 2)
        lags.sort()
        out["probe_lag_p99_ms"] = round(lags[int(len(lags) * 0.99)] * 1000, 2) if lags else None
        out["probe_lag_max_ms"] = round(lags[-1] * 1000, 2) if lags else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--swarm", type=int, default=100)
    ap.add_argument("--expire-in", type=float, default=8.0)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    swarm = subprocess.Popen(
        [sys.executable, "-c", SWARM, str(args.swarm)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert swarm.stdout is not None
        host, port = swarm.stdout.readline().split()
        result = asyncio.run(measure(args, (host, int(port))))
    finally:
        if swarm.stdin:
            swarm.stdin.close()
        try:
            swarm.wait(timeout=30)
        except subprocess.TimeoutExpired:
            swarm.kill()
            swarm.wait()
    result = {
        "bench": "callbacks",
        "peers": args.peers,
        "lookups": args.lookups,
        "swarm": args.swarm,
        **result,
        "goal_no_callback_over_5ms": result["callbacks_over_5ms"] == 0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
