"""Floods of the core stores: do honest announces and puts still land, and does memory
stay within the configured caps? Prints one JSON object.

* ``peers``: ``--infohashes`` (default 10^6) announces of distinct info-hashes into one
  ``PeerStore`` with the ``NodeConfig`` defaults, from ``--addresses`` (default 1,000)
  public addresses in distinct /24s (the hardest case for per-source quotas), round
  robin, one announce per millisecond of store time (all within one peer TTL). Honest
  announcers, each from a fresh /24, announce a new info-hash every 10,000 flood
  announces and 50 more after the flood; each asks ``can_accept(source=)`` first (the
  ``get_peers`` token) and is checked at the end (still stored?).
* ``items``: ``--items`` (default 10^5) distinct immutable items (about 200 bytes) into
  one ``ItemStore`` from the same number of addresses; honest puts from fresh addresses
  during and after it, of items whose target is near the store's id (items a node
  stores are the ones it is among the closest nodes for).
* ``node``: ``--node-announces`` (default 20,000) get_peers + announce_peer pairs through
  ``NodeState.receive_datagram`` (tokens, handlers and stores together), then honest
  ones from fresh addresses.

Memory is ``tracemalloc``'s current and peak bytes over each flood (the store and the
values it keeps; the benchmark's own lists are built before tracing starts).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.bencode import bdecode, bencode  # noqa: E402
from mldht.core.config import NodeConfig  # noqa: E402
from mldht.core.ids import ID_BITS, distance  # noqa: E402
from mldht.core.item_store import ItemStore  # noqa: E402
from mldht.core.node import NodeState  # noqa: E402
from mldht.core.peer_store import PeerStore  # noqa: E402
from mldht.errors import KRPCError  # noqa: E402


def flood_addr(i: int) -> str:
    return f"45.{i // 256 % 256}.{i % 256}.1"


def honest_addr(i: int) -> str:
    return f"46.{i // 256 % 256}.{i % 256}.9"


def bench_peers(n_infohashes: int, n_addresses: int, cfg: NodeConfig) -> dict[str, Any]:
    rng = random.Random(1)
    hashes = [rng.randbytes(20) for _ in range(n_infohashes)]
    addrs = [(flood_addr(i), 6881) for i in range(n_addresses)]
    honest_during = [(rng.randbytes(20), (honest_addr(i), 6881)) for i in range(100)]
    honest_after = [(rng.randbytes(20), (honest_addr(1000 + i), 6881)) for i in range(50)]
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    ps = PeerStore(
        random.Random(2),
        max_infohashes=cfg.max_infohashes,
        max_peers_per_infohash=cfg.max_peers_per_infohash,
        max_peers_per_source=cfg.max_peers_per_source,
        max_peers_per_source_per_infohash=cfg.max_peers_per_source_per_infohash,
        local_network=False,
    )
    accepted = 0
    honest_token = honest_ok = 0
    h = 0
    now = 0.0
    for n, ih in enumerate(hashes):
        now = n / 1000.0
        accepted += ps.announce(ih, addrs[n % n_addresses], now)
        if n % 10_000 == 0 and h < len(honest_during):
            ih_h, addr_h = honest_during[h]
            h += 1
            honest_token += ps.can_accept(ih_h, now, source=addr_h[0])
            honest_ok += ps.announce(ih_h, addr_h, now)
    for ih_h, addr_h in honest_after:
        now += 0.001
        honest_token += ps.can_accept(ih_h, now, source=addr_h[0])
        honest_ok += ps.announce(ih_h, addr_h, now)
    elapsed = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tried = honest_during[:h] + honest_after
    kept = sum(addr in ps.get_peers(ih, now, 500, max_bytes=1 << 20) for ih, addr in tried)
    return {
        "flood_announces": n_infohashes,
        "flood_addresses": n_addresses,
        "flood_accepted": accepted,
        "infohashes_stored": len(ps),
        "peers_stored": ps.peer_count(),
        "cap_infohashes": cfg.max_infohashes,
        "cap_peers_per_source": cfg.max_peers_per_source,
        "honest_announces": len(tried),
        "honest_given_token": honest_token,
        "honest_accepted": honest_ok,
        "honest_still_stored_at_end": kept,
        "memory_current_bytes": current,
        "memory_peak_bytes": peak,
        "bytes_per_stored_infohash": round(current / max(len(ps), 1), 1),
        "announces_per_s": round(n_infohashes / elapsed),
    }


def close_value(own: bytes, tag: int, bits: int) -> bytes:
    """A bencoded value whose SHA-1 target shares at least ``bits`` leading bits with own."""
    n = 0
    while True:
        v = f"h{tag}x{n}".encode()
        v = str(len(v)).encode() + b":" + v
        if ID_BITS - distance(hashlib.sha1(v).digest(), own).bit_length() >= bits:
            return v
        n += 1


def bench_items(n_items: int, n_addresses: int, cfg: NodeConfig) -> dict[str, Any]:
    rng = random.Random(3)
    own = rng.randbytes(20)
    pad = b"x" * 180
    values = []
    for n in range(n_items):
        s = b"%d:" % n + pad
        values.append(str(len(s)).encode() + b":" + s)
    honest_during = [close_value(own, i, 12) for i in range(20)]
    honest_after = [close_value(own, 100 + i, 12) for i in range(20)]
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    store = ItemStore(
        own_id=own,
        max_items=cfg.max_items,
        max_bytes=cfg.max_item_bytes,
        max_items_per_source=cfg.max_items_per_source,
    )
    accepted = 0
    honest_ok = 0
    h = 0
    step = max(n_items // len(honest_during), 1)
    for n, v in enumerate(values):
        now = n / 100.0
        try:
            store.put_immutable(v, now, source=flood_addr(n % n_addresses))
            accepted += 1
        except KRPCError:
            pass
        if n % step == 0 and h < len(honest_during):
            try:
                store.put_immutable(honest_during[h], now, source=honest_addr(h))
                honest_ok += 1
            except KRPCError:
                pass
            h += 1
    now = n_items / 100.0
    for i, v in enumerate(honest_after):
        try:
            store.put_immutable(v, now, source=honest_addr(500 + i))
            honest_ok += 1
        except KRPCError:
            pass
    elapsed = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tried = honest_during[:h] + honest_after
    kept = sum(store.get(hashlib.sha1(v).digest(), now) is not None for v in tried)
    return {
        "flood_puts": n_items,
        "flood_addresses": n_addresses,
        "flood_accepted": accepted,
        "items_stored": len(store),
        "item_bytes_stored": store.bytes_used,
        "cap_items": cfg.max_items,
        "cap_item_bytes": cfg.max_item_bytes,
        "cap_items_per_source": cfg.max_items_per_source,
        "honest_puts": len(tried),
        "honest_accepted": honest_ok,
        "honest_still_stored_at_end": kept,
        "memory_current_bytes": current,
        "memory_peak_bytes": peak,
        "memory_under_item_bytes_cap": peak < cfg.max_item_bytes,
        "puts_per_s": round(n_items / elapsed),
    }


def bench_node(n_announces: int, n_addresses: int, cfg: NodeConfig) -> dict[str, Any]:
    rng = random.Random(4)
    node = NodeState(rng.randbytes(20), random.Random(5), 0.0, cfg)
    qid = rng.randbytes(20)

    def announce(ih: bytes, addr: tuple[str, int], now: float) -> bool:
        q = {b"t": b"g", b"y": b"q", b"q": b"get_peers", b"a": {b"id": qid, b"info_hash": ih}}
        node.receive_datagram(bencode(q), addr, now)
        token = None
        for data, to in node.datagrams_to_send():
            msg = bdecode(data)
            if to == addr and msg.get(b"t") == b"g" and b"r" in msg:
                token = msg[b"r"].get(b"token")
        if token is None:
            return False
        a = {b"id": qid, b"info_hash": ih, b"port": 6881, b"token": token}
        q = {b"t": b"a", b"y": b"q", b"q": b"announce_peer", b"a": a}
        node.receive_datagram(bencode(q), addr, now)
        ok = any(b"r" in bdecode(d) for d, to in node.datagrams_to_send() if to == addr)
        return ok

    t0 = time.perf_counter()
    accepted = 0
    now = 0.0
    for n in range(n_announces):
        now = n / 100.0
        accepted += announce(rng.randbytes(20), (flood_addr(n % n_addresses), 6881), now)
    honest = [(rng.randbytes(20), (honest_addr(i), 6881)) for i in range(20)]
    honest_ok = sum(announce(ih, addr, now) for ih, addr in honest)
    kept = sum(addr in node.peer_store.get_peers(ih, now, 500) for ih, addr in honest)
    return {
        "flood_announces": n_announces,
        "flood_accepted": accepted,
        "infohashes_stored": len(node.peer_store),
        "honest_announces": len(honest),
        "honest_accepted": honest_ok,
        "honest_stored": kept,
        "pairs_per_s": round(n_announces / (time.perf_counter() - t0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--infohashes", type=int, default=10**6)
    ap.add_argument("--items", type=int, default=10**5)
    ap.add_argument("--addresses", type=int, default=1000)
    ap.add_argument("--node-announces", type=int, default=20_000)
    args = ap.parse_args()
    cfg = NodeConfig()
    out = {
        "bench": "stores",
        "python": platform.python_version(),
        "peers": bench_peers(args.infohashes, args.addresses, cfg),
        "items": bench_items(args.items, args.addresses, cfg),
        "node": bench_node(args.node_announces, args.addresses, cfg),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
