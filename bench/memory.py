"""Memory per stored peer, per stored BEP 44 item and per routing-table entry.

Prints one JSON object. Each figure is measured in a fresh child process, twice: with
``tracemalloc`` (bytes the Python allocator handed out and still holds: exact, no noise)
and by resident set size (what the OS sees, allocator overhead included; a separate
child without tracemalloc). Values are created inside the measured loop and dropped by
the benchmark, as a node receives them from the network, so the store's own copy is
what is counted.

* ``peers``: ``--peers`` (default 10^6) announces into one ``PeerStore``, spread over
  info-hashes at 1, 10 and 500 peers each (each peer a distinct random IPv4 address);
* ``items``: ``--items`` (default 10^5) immutable items of exactly 1,000 bencoded bytes in
  one ``ItemStore`` (``--mutable-items``, default 10^4, signed mutable items too);
* ``routing``: ``--tables`` (default 100) full ``RoutingTable`` s (k = 8, far buckets
  128/64/32/16), each bucket filled with ids crafted for it; bytes per live entry;
* ``node_state``: an empty ``NodeState`` (what each simulated node costs before it
  learns anything).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.compact import NodeInfo  # noqa: E402
from mldht.core.ids import ID_BITS, id_from_int  # noqa: E402
from mldht.core.item_store import ItemStore  # noqa: E402
from mldht.core.node import NodeState  # noqa: E402
from mldht.core.peer_store import PeerStore  # noqa: E402
from mldht.core.routing import RoutingTable  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


class Meter:
    """Bytes allocated between start() and stop(), by tracemalloc or by RSS."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.base = 0

    def _now(self) -> int:
        gc.collect()
        if self.method == "tracemalloc":
            return tracemalloc.get_traced_memory()[0]
        return rss_bytes()

    def start(self) -> None:
        if self.method == "tracemalloc":
            tracemalloc.start()
        self.base = self._now()

    def stop(self) -> int:
        used = self._now() - self.base
        if self.method == "tracemalloc":
            tracemalloc.stop()
        return used


def measure_peers(meter: Meter, peers: int, per_infohash: int) -> dict[str, Any]:
    rng = random.Random(1)
    n_ih = peers // per_infohash
    store = PeerStore(rng, max_infohashes=n_ih + 1, max_peers_per_infohash=per_infohash + 1)
    meter.start()
    stored = 0
    for _ in range(n_ih):
        ih = rng.randbytes(20)
        for _ in range(per_infohash):
            a, b, c, d = (
                rng.randrange(1, 224),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            )
            ip = f"{a}.{b}.{c}.{d}"
            stored += store.announce(ih, (ip, rng.randrange(1, 65536)), 0.0)
    used = meter.stop()
    count = store.peer_count()
    return {
        "peers": count,
        "infohashes": len(store),
        "peers_per_infohash": per_infohash,
        "bytes_total": used,
        "bytes_per_peer": round(used / count, 1),
    }


def measure_items(meter: Meter, items: int, mutable: bool) -> dict[str, Any]:
    rng = random.Random(2)
    own = rng.randbytes(20)
    store = ItemStore(own_id=own, max_items=items + 1, max_bytes=items * 1200 + 10**6)
    keypair = None
    if mutable:
        from mldht.core.bep44 import KeyPair

        keypair = KeyPair.from_seed(rng.randbytes(32))
    meter.start()
    for i in range(items):
        # exactly 1,000 bencoded bytes: "995:" + 995 bytes (a fresh object, as if decoded)
        v = b"995:" + rng.randbytes(995)
        if keypair is None:
            store.put_immutable(v, 0.0)
        else:
            salt = i.to_bytes(4, "big")  # one key, distinct targets through the salt
            sig = keypair.sign_item(v, 1, salt)
            store.put_mutable(keypair.public_key, salt, 1, sig, v, None, 0.0)
    used = meter.stop()
    count = len(store)
    return {
        "items": count,
        "mutable": mutable,
        "value_bytes": 1000,
        "bytes_total": used,
        "bytes_per_item": round(used / count, 1),
    }


def _id_in_bucket(rng: random.Random, own: int, shared: int) -> bytes:
    """A random id sharing exactly ``shared`` leading bits with ``own``."""
    flip = 1 << (ID_BITS - 1 - shared)
    low = rng.getrandbits(ID_BITS - 1 - shared) if shared < ID_BITS - 1 else 0
    high = (own >> (ID_BITS - shared)) << (ID_BITS - shared) if shared else 0
    return id_from_int(high | ((own & flip) ^ flip) | low)


def measure_routing(meter: Meter, tables: int) -> dict[str, Any]:
    rng = random.Random(3)
    keep: list[RoutingTable] = []
    meter.start()
    n = 0
    for _ in range(tables):
        own = rng.getrandbits(ID_BITS)
        table = RoutingTable(id_from_int(own), rng)
        # fill buckets from the farthest inward; 150 levels are as deep as ids go in
        # practice, each level gets as many nodes as its bucket takes
        for shared in range(150):
            limit = (128, 64, 32, 16)[shared] if shared < 4 else 8
            for _ in range(limit):
                ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
                n += 1
                table.node_responded(NodeInfo(_id_in_bucket(rng, own, shared), (ip, 6881)), 0.0)
        keep.append(table)
    used = meter.stop()
    entries = sum(len(t) for t in keep)
    return {
        "tables": tables,
        "entries": entries,
        "entries_per_table": entries // tables,
        "bytes_total": used,
        "bytes_per_entry": round(used / entries, 1),
    }


def measure_node_state(meter: Meter, count: int) -> dict[str, Any]:
    rng = random.Random(4)
    keep = []
    meter.start()
    for _ in range(count):
        keep.append(NodeState(rng.randbytes(20), random.Random(rng.getrandbits(64)), 0.0))
    used = meter.stop()
    return {"node_states": count, "bytes_per_node_state": round(used / count, 1)}


def child(args: argparse.Namespace) -> None:
    meter = Meter(args.method)
    kind = args.child
    if kind.startswith("peers:"):
        out = measure_peers(meter, args.peers, int(kind.split(":")[1]))
    elif kind == "items":
        out = measure_items(meter, args.items, mutable=False)
    elif kind == "mutable_items":
        out = measure_items(meter, args.mutable_items, mutable=True)
    elif kind == "routing":
        out = measure_routing(meter, args.tables)
    else:
        out = measure_node_state(meter, 1000)
    print(json.dumps(out))


def start_child(kind: str, method: str, args: argparse.Namespace) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--method", method]
    cmd += ["--peers", str(args.peers), "--items", str(args.items)]
    cmd += ["--mutable-items", str(args.mutable_items), "--tables", str(args.tables)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish_child(proc: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"measuring child failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="tracemalloc", help=argparse.SUPPRESS)
    ap.add_argument("--peers", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--mutable-items", type=int, default=10_000)
    ap.add_argument("--tables", type=int, default=100)
    ap.add_argument("--peer-spreads", default="1,10,500", help="peers per info-hash to try")
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    t0 = time.perf_counter()
    kinds = [f"peers:{s}" for s in args.peer_spreads.split(",") if s]
    kinds += ["items", "mutable_items", "routing", "node_state"]
    results: dict[str, Any] = {}
    for kind in kinds:
        # Both children at once (one a core): memory figures do not depend on timing.
        exact_proc = start_child(kind, "tracemalloc", args)
        rss_proc = start_child(kind, "rss", args)
        exact = finish_child(exact_proc)
        rss = finish_child(rss_proc)
        per = next(k for k in exact if k.startswith("bytes_per_"))
        exact[per + "_rss"] = rss[per]
        results[kind.replace(":", "_per_ih_")] = exact
    goals: dict[str, Any] = {}
    for key, res in results.items():
        if key.startswith("peers_per_ih_"):
            limit = 60 if res["peers_per_infohash"] == 1 else 100  # issue 14: 60 at one
            goals[f"peer_le_{limit}_bytes_at_{res['peers_per_infohash']}_per_infohash"] = (
                res["bytes_per_peer"] <= limit
            )
    for key in ("items", "mutable_items"):
        if key in results:
            goals[f"{key}_le_1300_bytes"] = results[key]["bytes_per_item"] <= 1300
    out = {
        "bench": "memory",
        "results": results,
        "goals": goals,
        "wall_s": round(time.perf_counter() - t0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
