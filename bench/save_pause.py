"""How long a save of the state directory leaves the node unresponsive.

A DHTNode holding ``--peers`` stored peers (10^6 by default, put straight into the core's
peer store, each from a /24 of its own so that the per-source quotas admit them) is
pinged every 5 ms from another socket while it saves; the longest gap between two
answers during the save is the pause the network sees (target: <= 50 ms at 10^6).
Also measured: the save's duration, shutdown (the final save), start (until the node
answers) and the load of the saved peers (in steps, while it answers), the longest gap
during that load, the size of the files, and the CPU time of the core's steps on their
own (one exported chunk, one loaded chunk: what one loop callback costs). Prints one JSON object::

    python bench/save_pause.py [--peers N] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from mldht.core import krpc
from mldht.core.bencode import bencode
from mldht.runtime import DHTNode, run

HOST = "127.0.0.1"
PROBE_ID = bytes(20)


def fill(node: DHTNode, peers: int, per_infohash: int) -> None:
    store = node._state.peer_store  # benchmarks may use internals
    now = time.time()
    for i in range(peers):
        ih = (i // per_infohash).to_bytes(20, "big")
        ip = f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.7"
        store.announce(ih, (ip, 1024 + i % 60000), now, seed=i % 3 == 0)


def core_steps(node: DHTNode) -> dict[str, float]:
    """CPU time of the core's steps a save and a load are made of, on their own: building
    one exported chunk, and loading one chunk (into a fresh store, from the export). The
    gaps measured around the save and the load add the worker thread's share of the GIL
    and, on a loaded machine, the scheduler."""
    from mldht.core.peer_store import PeerStore
    from mldht.runtime.node import EXPORT_CHUNK, LOAD_CHUNK

    store = node._state.peer_store
    now = time.time()
    chunks, export_max = [], 0.0
    it = iter(store.export_chunks(now, EXPORT_CHUNK))
    while True:
        t = time.thread_time()
        chunk = next(it, None)
        export_max = max(export_max, time.thread_time() - t)
        if chunk is None:
            break
        chunks.append(chunk)
    entries = [e for c in chunks for e in c]
    fresh = PeerStore(random.Random(1), max_infohashes=store.max_infohashes)
    load_max = 0.0
    stored = 0
    t0 = time.thread_time()
    for i in range(0, len(entries), LOAD_CHUNK):
        t = time.thread_time()
        stored += fresh.load(entries[i : i + LOAD_CHUNK], now)
        load_max = max(load_max, time.thread_time() - t)
    load_cpu = time.thread_time() - t0
    return {
        "export_chunk_cpu_max_ms": round(export_max * 1000, 2),
        "load_chunk_cpu_max_ms": round(load_max * 1000, 2),
        "load_cpu_us_per_peer": round(load_cpu / max(len(entries), 1) * 1e6, 2),
        "load_stored": stored,
    }


async def pinged_while(node: DHTNode, action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(seconds ``action`` took, longest gap in seconds between answers meanwhile)."""
    replies: list[float] = []
    async with await anyio.create_udp_socket(
        family=socket.AF_INET, local_host=HOST, local_port=0
    ) as sock:
        stop = False

        async def pinger() -> None:
            for n in itertools.count():
                if stop:
                    return
                query = {b"a": {b"id": PROBE_ID}, b"q": b"ping", b"t": n.to_bytes(4, "big")}
                await sock.sendto(bencode({**query, b"y": b"q"}), *node.address)
                await anyio.sleep(0.005)

        async def receiver() -> None:
            while True:
                data, _ = await sock.receive()
                if isinstance(krpc.decode_message(data), krpc.Response):
                    replies.append(time.perf_counter())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            tg.start_soon(pinger)
            await anyio.sleep(0.1)
            start = time.perf_counter()
            await action()
            end = time.perf_counter()
            await anyio.sleep(0.05)
            stop = True
            tg.cancel_scope.cancel()
    # Answers around the action: a stall that straddles its start or end counts too.
    times = [start] + [r for r in replies if start < r < end] + [end]
    after = [r for r in replies if r >= end]
    times.append(after[0] if after else end)
    gap = max(b - a for a, b in itertools.pairwise(times))
    return end - start, gap


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "save_pause", "peers": args.peers, "backend": args.backend}
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        kw: dict[str, Any] = {"bootstrap": [], "state_dir": state_dir, "rate_limit": 0}
        kw.update(send_rate=0, max_infohashes=max(10_000, args.peers // args.per_infohash + 1))
        node = DHTNode(bind=(HOST, 0), **kw)
        await node.__aenter__()
        address = node.address
        t0 = time.perf_counter()
        fill(node, args.peers, args.per_infohash)
        out["fill_s"] = round(time.perf_counter() - t0, 2)
        out["stored_peers"] = node.stats["stored_peers"]
        out.update(core_steps(node))
        save_s, gap = await pinged_while(node, lambda: node._save(final=False))
        out["save_s"] = round(save_s, 3)
        out["save_max_unanswered_ms"] = round(gap * 1000, 1)
        t0 = time.perf_counter()
        await node.__aexit__(None, None, None)
        out["shutdown_s"] = round(time.perf_counter() - t0, 3)
        out["files_bytes"] = {
            p.name: p.stat().st_size for p in sorted(state_dir.iterdir()) if p.is_file()
        }
        out["file_modes"] = sorted({oct(p.stat().st_mode & 0o777) for p in state_dir.iterdir()})

        t0 = time.perf_counter()
        node = DHTNode(bind=address, **kw)
        await node.__aenter__()
        out["start_s"] = round(time.perf_counter() - t0, 3)
        _, gap = await pinged_while(node, node.wait_peers_loaded)
        out["load_peers_s"] = round(time.perf_counter() - t0, 3)
        out["load_max_unanswered_ms"] = round(gap * 1000, 1)
        out["reloaded_peers"] = node.stats["stored_peers"]
        await node.__aexit__(None, None, None)
    out["target_ok"] = out["save_max_unanswered_ms"] <= 50.0
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--per-infohash", type=int, default=200)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    a = parser.parse_args()
    print(json.dumps(run(main, a, backend=a.backend)))
