"""Fresh one-shot lookups in a loopback swarm with a fifth of its nodes dead: mldht
against libtorrent in the same run (issue 13).

Prints one JSON object. The swarm (``tests/interop/deadswarm.py``): ``--ours`` mldht
and ``--lts`` libtorrent nodes on loopback, ``--infohashes`` info-hashes announced by
mldht nodes, then ``--dead-ours`` + ``--dead-lts`` nodes killed (their addresses become
black holes that never answer). Each info-hash is then looked up, in turn, by

* ``mldht_cli``: a fresh ``python -m mldht get-peers --json`` process bootstrapping from
  one live mldht node, timed from spawn to exit (``*_exit_s``), with the peer found;
* ``mldht_lib``: a fresh read-only ``DHTNode`` in this process, from ``async with`` to
  the end of ``iter_peers`` (``*_end_s``) and to the first peer (``*_first_s``);
* ``libtorrent``: a fresh libtorrent session, from its creation to the first peer
  (libtorrent reports no end of a get_peers lookup), bootstrapping from the same node
  (``lookup_first_s``: from the get_peers call, once the node is in its table);
* ``libtorrent_cli``: the same in a fresh process (this script, ``--lt-oneshot``), timed
  from spawn to exit, to compare with ``mldht_cli``.

Goal: no lookup waits out a dead node's hard timeout; mldht's slowest at most twice
libtorrent's slowest in the same run (``goal_slowest_le_2x_libtorrent``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht import DHTNode  # noqa: E402
from mldht.core.config import NodeConfig  # noqa: E402
from mldht.runtime.node import format_addr  # noqa: E402
from tests.interop.conftest import next_addr  # noqa: E402
from tests.interop.deadswarm import build_dead_swarm  # noqa: E402
from tests.interop.lt import LtNode  # noqa: E402


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    lts: list[LtNode] = []

    def make_lt() -> LtNode:
        lt = LtNode(*next_addr())
        lts.append(lt)
        return lt

    out: dict[str, Any] = {}
    try:
        async with AsyncExitStack() as stack:
            t0 = time.monotonic()
            swarm = await build_dead_swarm(
                stack,
                make_lt,
                next_addr,
                ours=args.ours,
                lts=args.lts,
                dead_ours=args.dead_ours,
                dead_lts=args.dead_lts,
                infohashes=args.infohashes,
                seed=args.seed,
            )
            out["swarm_s"] = round(time.monotonic() - t0, 2)
            rows = []
            for i, ih in enumerate(swarm.infohashes):
                entry = swarm.ours[i % len(swarm.ours)].address
                want = swarm.peers[ih]
                rows.append(
                    {
                        "mldht_cli": await cli_lookup(ih, entry, want),
                        "mldht_lib": await lib_lookup(
                            ih, entry, want, swarm, args.soft_timeout_min
                        ),
                        "libtorrent": await anyio.to_thread.run_sync(
                            lt_lookup, ih, entry, want, lts
                        ),
                        "libtorrent_cli": await lt_process(ih, entry, want),
                    }
                )
            out["lookups"] = rows
    finally:
        for lt in lts:
            lt.close()
    return out


async def cli_lookup(ih: bytes, entry: tuple[str, int], want: tuple[str, int]) -> dict[str, Any]:
    bind = next_addr()
    cmd = [
        sys.executable, "-m", "mldht", "get-peers", "--json", "--timeout", "30",
        "--bind", format_addr(bind), "--bootstrap", format_addr(entry), ih.hex(),
    ]  # fmt: skip
    t = time.monotonic()
    with anyio.fail_after(60):
        done = await anyio.run_process(cmd, cwd=ROOT, check=False)
    took = time.monotonic() - t
    text = done.stdout.decode()
    found = f'"{want[0]}:{want[1]}"' in text or f"{want[0]}:{want[1]}" in text
    return {"exit_s": round(took, 3), "found": found, "returncode": done.returncode}


async def lib_lookup(
    ih: bytes, entry: tuple[str, int], want: tuple[str, int], swarm: Any, soft_min: float
) -> dict[str, Any]:
    t = time.monotonic()
    first = None
    found = False
    async with DHTNode(
        bind=next_addr(), bootstrap=[entry], read_only=True, soft_timeout_min=soft_min
    ) as node:
        with anyio.fail_after(60):
            async for peer in node.iter_peers(ih):
                if peer == want and first is None:
                    first = time.monotonic() - t
                    found = True
        end = time.monotonic() - t
        timeouts = node.stats["timeouts"]
        asked_dead = swarm.asked_dead(node.address)
    return {
        "first_s": None if first is None else round(first, 3),
        "end_s": round(end, 3),
        "found": found,
        "hard_timeouts_before_end": timeouts,
        "datagrams_to_dead": asked_dead,
    }


def lt_lookup(
    ih: bytes,
    entry: tuple[str, int],
    want: tuple[str, int],
    lts: list[LtNode],
    bind: tuple[str, int] | None = None,
) -> dict[str, Any]:
    t = time.monotonic()
    lt = LtNode(*(bind or next_addr()))
    lts.append(lt)
    try:
        lt.add_node(entry)
        # A get_peers issued before the entry is in its table goes nowhere and is never
        # retried: wait for the table (polled every 0.2 s, so this part is coarse).
        joined = lt.wait_for_node(entry, 10.0) is not None
        t_lookup = time.monotonic()
        peers = lt.get_peers(ih, 30.0)
        took = time.monotonic() - t
    finally:
        lt.close()
        lts.remove(lt)
    return {
        "first_s": round(took, 3),
        "lookup_first_s": round(t - t_lookup + took, 3),
        "joined": joined,
        "found": want in peers,
        "peers": peers,
    }


def lt_oneshot(bind: str, entry: str, ih: str) -> None:
    """A one-shot libtorrent searcher process: print the peers found, then exit."""
    host, port = bind.rsplit(":", 1)
    ehost, eport = entry.rsplit(":", 1)
    got = lt_lookup(bytes.fromhex(ih), (ehost, int(eport)), ("", 0), [], (host, int(port)))
    print(json.dumps(got))


async def lt_process(ih: bytes, entry: tuple[str, int], want: tuple[str, int]) -> dict[str, Any]:
    """A fresh libtorrent searcher process (``--lt-oneshot``), spawn to exit."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--lt-oneshot",
        format_addr(next_addr()), format_addr(entry), ih.hex(),
    ]  # fmt: skip
    t = time.monotonic()
    with anyio.fail_after(60):
        done = await anyio.run_process(cmd, cwd=ROOT, check=False)
    took = time.monotonic() - t
    peers = json.loads(done.stdout or b"{}").get("peers", [])
    return {"exit_s": round(took, 3), "found": list(want) in peers}


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--lt-oneshot":
        lt_oneshot(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", type=int, default=40)
    ap.add_argument("--lts", type=int, default=10)
    ap.add_argument("--dead-ours", type=int, default=7)
    ap.add_argument("--dead-lts", type=int, default=2)
    ap.add_argument("--infohashes", type=int, default=15)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--soft-timeout-min",
        type=float,
        default=NodeConfig().soft_timeout_min,
        help="NodeConfig.soft_timeout_min of the in-process searcher (mldht_lib)",
    )
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    res = anyio.run(run, args)
    rows = res["lookups"]

    def col(who: str, key: str) -> list[float]:
        return [r[who][key] for r in rows if r[who].get(key) is not None]

    cli, lib_end, lt_first = (
        col("mldht_cli", "exit_s"),
        col("mldht_lib", "end_s"),
        col("libtorrent", "first_s"),
    )
    lt_cli = col("libtorrent_cli", "exit_s")
    for r in rows:
        r["libtorrent"].pop("peers", None)
    dead = args.dead_ours + args.dead_lts
    result = {
        "bench": "lookup_dead",
        "params": {**vars(args), "dead_share": round(dead / (args.ours + args.lts), 3)},
        "swarm_s": res["swarm_s"],
        "mldht_cli_exit_s": summary(cli),
        "mldht_lib_end_s": summary(lib_end),
        "mldht_lib_first_s": summary(col("mldht_lib", "first_s")),
        "libtorrent_first_s": summary(lt_first),
        "found": {w: sum(r[w]["found"] for r in rows) for w in rows[0]} if rows else {},
        "lookups": len(rows),
        "libtorrent_lookup_first_s": summary(col("libtorrent", "lookup_first_s")),
        "libtorrent_cli_exit_s": summary(lt_cli),
        "lib_hard_timeouts_before_end": sum(
            r["mldht_lib"]["hard_timeouts_before_end"] for r in rows
        ),
        "lib_datagrams_to_dead": sum(r["mldht_lib"]["datagrams_to_dead"] for r in rows),
        "goal_slowest_le_2x_libtorrent": {
            "cli": bool(cli and lt_cli and max(cli) <= 2 * max(lt_cli)),
            "lib": bool(lib_end and lt_first and max(lib_end) <= 2 * max(lt_first)),
        },
        "rows": rows,
        "wall_s": round(time.monotonic() - t0, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
