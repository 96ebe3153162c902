"""An eclipse attack on one target in a simulated network (mldht.sim), defences on and off.

Prints one JSON object. A network of ``--nodes`` honest nodes on public-looking addresses
(one /24 each) gets, for each of two targets (an info-hash and a mutable item's target),
``--sybils`` attacker nodes whose ids are the nearest to it, on a handful (``--subnets``)
of /24s. Every attacker plays eclipse: to find_node / get_peers / get it answers with its
own nodes nearest the target only (and a token), it accepts announce_peer and put and drops
them, and it never returns peers or items. Honest routing tables hold attacker nodes as
they would after the attackers joined (each honest node is offered ``--offered`` of them).

Each trial: a random honest node announces a peer of its own (a new port) on the info-hash
and puts the mutable item with a new seq; another random honest node then runs get_peers
and get. ``peer_found_rate``: the trial's peer was returned; ``item_found_rate``: the item
with the trial's seq was returned. ``defences_on`` runs with the lookup defences
(``NodeConfig.restrict_search_ips``: one node per /24 among a lookup's candidates and
closest set; ``store_k``: stores go to the 10 closest, not 8), ``defences_off`` without
(no subnet rule, stores to k = 8).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lookup_sim import add_set_option  # bench/ is sys.path[0] when run as a script

from mldht.core import bep44
from mldht.core.bencode import bencode
from mldht.core.compact import Addr, NodeInfo
from mldht.core.events import GetDone, LookupDone
from mldht.core.ids import ID_BITS, ID_LEN
from mldht.core.krpc import (
    AnnouncePeer,
    AnnounceResponse,
    FindNode,
    FindNodeResponse,
    Get,
    GetPeers,
    GetPeersResponse,
    GetResponse,
    Ping,
    PingResponse,
    Put,
    PutResponse,
    Query,
    ResponseBody,
    decode_message,
    encode_response,
)
from mldht.core.node import NodeConfig, NodeState
from mldht.errors import DecodeError
from mldht.sim import Simulator


class Eclipser(NodeState):
    """An attacker node: answers lookups with its own nodes only, drops every store."""

    def __init__(self, node_id: bytes, rng: random.Random, config: NodeConfig) -> None:
        super().__init__(node_id, rng, 0.0, config)
        self.sybils: list[NodeInfo] = []  # all attacker nodes (shared list)
        self._out: list[tuple[bytes, Addr]] = []

    def _own_nearest(self, target: bytes) -> tuple[NodeInfo, ...]:
        t = int.from_bytes(target, "big")
        return tuple(sorted(self.sybils, key=lambda n: int.from_bytes(n.id, "big") ^ t)[:8])

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            msg = decode_message(data)
        except DecodeError:
            return
        if not isinstance(msg, Query):
            return
        q = msg.body
        nid = self.node_id
        body: ResponseBody
        if isinstance(q, FindNode):
            body = FindNodeResponse(nid, self._own_nearest(q.target))
        elif isinstance(q, GetPeers):
            body = GetPeersResponse(nid, b"tok", nodes=self._own_nearest(q.info_hash))
        elif isinstance(q, Get):
            body = GetResponse(nid, b"tok", nodes=self._own_nearest(q.target))
        elif isinstance(q, AnnouncePeer):
            body = AnnounceResponse(nid)
        elif isinstance(q, Put):
            body = PutResponse(nid)
        elif isinstance(q, Ping):
            body = PingResponse(nid)
        else:
            return
        self._out.append((encode_response(msg.t, body, ip=addr), addr))

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


def near_ids(target: bytes, count: int, rng: random.Random) -> list[bytes]:
    """``count`` ids sharing the first 40 bits with ``target`` (nearer than any honest
    node of a network below 2^30 nodes)."""
    t = int.from_bytes(target, "big")
    keep = ID_BITS - 40
    return [
        ((t >> keep << keep) | rng.getrandbits(keep)).to_bytes(ID_LEN, "big") for _ in range(count)
    ]


def run(defences: bool, args: argparse.Namespace) -> dict[str, Any]:
    # Tables are filled directly and a run lasts minutes of virtual time: maintenance
    # (pings of questionable nodes, refreshes) would only cost time, so it is pushed back.
    config = NodeConfig(
        restrict_search_ips=defences,
        store_k=NodeConfig.store_k if defences else NodeConfig.k,
        maintenance_interval=3600.0,
    )
    for name, value in args.set:
        setattr(config, name, value)
    sim = Simulator(seed=args.seed, median_rtt=0.08, loss=args.loss, config=config, public=True)
    rng = random.Random(args.seed ^ 0x5B1)
    honest = [sim.add_node() for _ in range(args.nodes)]
    sim.populate(contacts=40)
    keypair = bep44.KeyPair.from_seed(rng.randbytes(32))
    info_hash = rng.randbytes(ID_LEN)
    item_target = bep44.mutable_target(keypair.public_key, b"")
    sybils: list[NodeInfo] = []
    attackers: list[Eclipser] = []
    for j, target in enumerate((info_hash, item_target)):
        for i, nid in enumerate(near_ids(target, args.sybils, rng)):
            subnet = i % args.subnets
            host = j * 100 + i // args.subnets + 1
            addr = (f"66.6.{subnet}.{host}", 6881)
            st = Eclipser(nid, random.Random(rng.getrandbits(64)), config)
            st.sybils = sybils
            sim.add_node(addr=addr, state=st)
            sybils.append(NodeInfo(nid, addr))
            attackers.append(st)
    for addr in honest:
        routing = sim.state(addr).routing
        for n in rng.sample(sybils, args.offered):
            routing.node_responded(n, sim.now)
    peer_found = item_found = 0
    queries: list[int] = []
    for trial in range(args.trials):
        announcer, searcher = rng.sample(honest, 2)
        port = 20000 + trial
        seq = trial + 1
        v = bencode(b"trial %d" % trial)

        def announce(st: NodeState, now: float, port: int = port) -> int:
            return st.announce(info_hash, port, now)

        def put(st: NodeState, now: float, v: bytes = v, seq: int = seq) -> int:
            return st.put_mutable(v, now, keypair=keypair, seq=seq)

        sim.run_op(announcer, announce)
        sim.run_op(announcer, put)
        ev, _ = sim.run_op(searcher, lambda st, now: st.get_peers(info_hash, now))
        if isinstance(ev, LookupDone):
            queries.append(ev.queried)
            want = (announcer[0], port)
            if want in ev.peers:
                peer_found += 1
        ev, _ = sim.run_op(searcher, lambda st, now: st.get_item(item_target, now))
        if isinstance(ev, GetDone) and ev.item is not None and ev.item.seq == seq:
            item_found += 1
    n = args.trials
    return {
        "restrict_search_ips": defences,
        "store_k": config.store_k,
        "trials": n,
        "peer_found_rate": round(peer_found / n, 4),
        "item_found_rate": round(item_found / n, 4),
        "get_peers_queries_mean": round(sum(queries) / len(queries), 1) if queries else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--sybils", type=int, default=200, help="attacker ids per target")
    ap.add_argument("--subnets", type=int, default=5, help="attacker /24s")
    ap.add_argument("--offered", type=int, default=16, help="attacker nodes offered per table")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    add_set_option(ap, "lookup_retry_wait=0.5")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {
        "bench": "sybil",
        "params": {k: dict(v) if k == "set" else v for k, v in vars(args).items()},
        "defences_on": run(True, args),
        "defences_off": run(False, args),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
