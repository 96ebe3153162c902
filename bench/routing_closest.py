"""How long does RoutingTable.closest() take with 2,000 live entries?

Prints one JSON object: microseconds per call for random targets (mostly answered from the
far buckets) and for targets near our own id (answered from the deep buckets).

The table uses k = 16 so that 2,000 nodes fit (with k = 8 a full table holds about 1,500):
every bucket from the farthest inward is filled with ids crafted to land in it.
"""

from __future__ import annotations

import json
import platform
import random
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mldht.core.compact import NodeInfo
from mldht.core.ids import ID_BITS, id_from_int
from mldht.core.routing import RoutingTable

ENTRIES = 2000
CALLS = 20000


def id_in_bucket(rng: random.Random, own: int, shared: int) -> bytes:
    """A random id sharing exactly ``shared`` leading bits with ``own``."""
    flip = 1 << (ID_BITS - 1 - shared)
    low = rng.getrandbits(ID_BITS - 1 - shared) if shared < ID_BITS - 1 else 0
    high = (own >> (ID_BITS - shared)) << (ID_BITS - shared) if shared else 0
    own_bit = own & flip
    return id_from_int(high | (own_bit ^ flip) | low)


def build(rng: random.Random) -> RoutingTable:
    own = rng.getrandbits(ID_BITS)
    table = RoutingTable(id_from_int(own), rng, k=16)
    n = 0
    shared = 0
    while len(table) < ENTRIES:
        node_id = id_in_bucket(rng, own, shared)
        ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        table.node_responded(NodeInfo(node_id, (ip, 6881)), 0.0)
        n += 1
        if n % 400 == 0:
            shared += 1
    return table


def per_call_us(table: RoutingTable, targets: list[bytes]) -> float:
    it = iter(targets * (CALLS // len(targets) + 1))
    closest = table.closest
    best = min(
        timeit.repeat(lambda: closest(next(it)), number=CALLS // 5, repeat=5),
    )
    return best / (CALLS // 5) * 1e6


def main() -> None:
    rng = random.Random(20240601)
    table = build(rng)
    own = int.from_bytes(table.own_id, "big")
    random_targets = [rng.randbytes(20) for _ in range(1000)]
    near_targets = [id_from_int(own ^ rng.getrandbits(ID_BITS - 24)) for _ in range(1000)]
    result = {
        "bench": "routing_closest",
        "entries": len(table),
        "buckets": table.bucket_count,
        "k": table.k,
        "n": 8,
        "random_target_us_per_call": round(per_call_us(table, random_targets), 2),
        "near_own_id_us_per_call": round(per_call_us(table, near_targets), 2),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
