"""Crawl the mainline DHT politely: map its nodes and sample its info-hashes (BEP 51).

::

    python tools/crawl.py --bootstrap HOST:PORT --duration 60 --db out.sqlite [--plot out.png]

How it crawls:

* It runs a **read-only** node (BEP 43: ``ro=1`` in every query), so no node ever puts it
  in its routing table, and it answers nothing.
* It sweeps the id space with a cursor (after the8472/mldht's keyspace sampler): the next
  node queried is the first unqueried one at or after the cursor. Each query is a BEP 51
  ``sample_infohashes`` whose ``target`` lies in the wider of the two gaps between that
  node's id and its neighbours among the ids known: the node knows its own neighbourhood
  best, so its closest nodes to that target are the ones the crawl is missing. Every
  reply's ``nodes`` feed the sweep. A few ``find_node`` lookups to uniformly random
  targets seed it (and serve the size estimate). Once the sweep has ended, a few rounds of
  lookups probe the id regions where, at the density seen, nodes should be but none is
  known (a node alone in such a region is returned only for a target inside it).
* Each address is sampled once, plus: a ``ping`` when it did not answer the sample (to
  tell a silent non-BEP 51 node from a dead one); and another sample only once the
  ``interval`` it gave has passed (BEP 51: "indexers should not query this node again
  sooner"; never sooner than ``--min-interval`` either), only while it holds more
  info-hashes (``num``) than it has shown, and, after the second, only while its last two
  samples brought info-hashes new to the crawl (each info-hash sits on ~8 nodes).
* Every query it sends, its node's own included, goes through one token bucket
  (``--rate``); the requests in flight (``--concurrency``), the nodes kept
  (``--max-nodes``) and the info-hashes kept (``--max-infohashes``) are bounded.

It writes SQLite (``--db``): ``nodes`` (id, ip, port, version, bep51, first_seen,
last_seen, rtt_ms, ...), ``infohashes`` (infohash, first_seen, sources, peers),
``timeline`` and ``crawls``; times are Unix seconds. ``--peers`` runs get_peers for each
info-hash found and stores the peer count. At the end it prints a summary with an
estimate of the network's size; ``--plot`` draws the crawl (needs matplotlib, the
``plot`` extra). Ctrl-C stops it cleanly and keeps what it found.

Uses the public API of mldht only.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import heapq
import ipaddress
import itertools
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TextIO

import anyio
import anyio.abc

from mldht import MldhtError
from mldht.runtime import DHTNode, format_addr, run

__all__ = [
    "Crawl",
    "CrawlNode",
    "Crawler",
    "Job",
    "SizeEstimate",
    "TokenBucket",
    "add_arguments",
    "build_parser",
    "check_args",
    "estimate_size",
    "format_version",
    "handle",
    "k_closest",
    "main",
    "parse_hostport",
]

log = logging.getLogger("mldht.crawl")

Addr = tuple[str, int]

ID_BITS = 160
SPACE = 1 << ID_BITS
K = 8
"""Closest-set size (BEP 5), used by the size estimate."""

DEFAULT_RATE = 200.0
DEFAULT_DURATION = 300.0
DEFAULT_MAX_NODES = 100_000
DEFAULT_MAX_INFOHASHES = 1_000_000
DEFAULT_MIN_INTERVAL = 10.0
"""Floor on the wait before sampling a node again, for nodes that give ``interval`` 0."""
DEFAULT_QUERY_TIMEOUT = 5.0
DEFAULT_LOOKUPS = 8
PEER_LOOKUPS = 8
"""At most this many get_peers lookups (``--peers``) run at once."""
PROBE_ROUNDS = 3
"""Rounds of lookups into id regions that look empty, once the sweep has ended."""
PROBE_MIN_EXPECTED = 1.0
"""A region is probed when it should hold at least this many nodes (at the density seen)."""
PROBE_SHARE = 20
"""A probe round sends at most one lookup per this many nodes found (and at least 4)."""
FLUSH_INTERVAL = 10.0
"""Seconds between writes of what changed to the database while crawling."""


# ------------------------------------------------------------------- structural types


class NodeLike(Protocol):
    """What the crawl reads of a node in a reply (mldht's NodeInfo)."""

    @property
    def id(self) -> bytes: ...

    @property
    def addr(self) -> tuple[str, int]: ...


class SampleReply(Protocol):
    """What the crawl reads of a ``DHTNode.sample_infohashes`` result."""

    @property
    def node_id(self) -> bytes | None: ...

    @property
    def samples(self) -> Sequence[bytes]: ...

    @property
    def num(self) -> int: ...

    @property
    def interval(self) -> int: ...

    @property
    def supported(self) -> bool: ...

    @property
    def nodes(self) -> Sequence[NodeLike]: ...

    @property
    def version(self) -> bytes | None: ...

    @property
    def rtt(self) -> float | None: ...


# ------------------------------------------------------------------------ helpers


def format_version(v: bytes | None) -> str | None:
    """A client version ``v`` as text: ``LT-0102`` (2-letter client code, then hex).

    Versions that do not start with two printable letters are all hex.
    """
    if not v:
        return None
    head = v[:2]
    if len(head) == 2 and all(0x21 <= c < 0x7F for c in head):
        rest = v[2:].hex()
        return head.decode("ascii") + (f"-{rest}" if rest else "")
    return v.hex()


def _xor_closest_range(ids: Sequence[int], target: int, k: int) -> tuple[int, int]:
    """Index range of ``ids`` (sorted) holding the smallest id prefix around ``target``
    with at least ``k`` ids; the ``k`` XOR-closest ids all lie in it (they share the
    longest prefixes with the target, and a prefix is a contiguous range)."""
    for free in range(ID_BITS + 1):
        lo = (target >> free) << free
        i = bisect.bisect_left(ids, lo)
        j = bisect.bisect_left(ids, lo + (1 << free))
        if j - i >= k:
            return i, j
    return 0, len(ids)


def k_closest(ids: Sequence[int], target: int, k: int = K) -> list[int]:
    """The ``k`` ids of ``ids`` (sorted, distinct) closest to ``target`` by XOR, closest first."""
    i, j = _xor_closest_range(ids, target, k)
    return sorted(ids[i:j], key=lambda x: x ^ target)[:k]


@dataclass(frozen=True, slots=True)
class SizeEstimate:
    """An estimate of the number of nodes, with one standard error."""

    size: float
    stderr: float
    targets: int
    k: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": round(self.size),
            "stderr": round(self.stderr),
            "targets": self.targets,
            "k": self.k,
            "method": self.method,
        }


def estimate_size(
    ids: Sequence[int],
    targets: Iterable[tuple[int, Iterable[int]]],
    k: int = K,
    what: str = "the crawled set",
) -> SizeEstimate | None:
    """Network size from the XOR distances of the ``k`` closest ids to random targets.

    For N ids spread uniformly, the XOR distance of a uniform id to a fixed target is
    uniform, so the i-th closest normalised distance x_i = d_i / 2^160 is the i-th order
    statistic of N uniforms: E[x_i] = i / (N + 1). Per target, the least-squares slope
    s = sum(i x_i) / sum(i^2) estimates 1 / (N + 1) without bias; the mean slope over the
    targets gives N = 1 / mean(s) - 1, and its standard error comes from the spread of
    the slopes (delta method). This is the closest-set density estimate of the8472/mldht
    and pubky/mainline, fitted over all k ranks rather than the k-th one alone.

    ``ids`` is sorted and distinct; each target comes with extra ids known near it (a
    lookup's closest nodes), merged with ``ids``. None when fewer than two targets have
    ``k`` ids around them.
    """
    denom = sum(i * i for i in range(1, k + 1))
    slopes: list[float] = []
    for target, extra in targets:
        near = set(k_closest(ids, target, k))
        near.update(extra)
        dists = sorted(x ^ target for x in near)[:k]
        if len(dists) < k:
            continue
        slopes.append(sum(i * d / SPACE for i, d in enumerate(dists, 1)) / denom)
    if len(slopes) < 2:
        return None
    mean = sum(slopes) / len(slopes)
    if mean <= 0:
        return None
    var = sum((s - mean) ** 2 for s in slopes) / (len(slopes) - 1)
    stderr = math.sqrt(var / len(slopes)) / (mean * mean)
    return SizeEstimate(
        size=1.0 / mean - 1.0,
        stderr=stderr,
        targets=len(slopes),
        k=k,
        method=(
            f"k-closest XOR distances (k={k}) to {len(slopes)} random targets in {what}, "
            "least-squares fit d_i = i*2^160/(N+1); error bar: 1 standard error"
        ),
    )


# -------------------------------------------------------------------- rate limiting


class TokenBucket:
    """A token bucket over time given by the caller: ``rate`` tokens/s, at most ``burst``.

    ``charge`` may take the level below zero (queries already sent that were not asked
    for, such as a lookup's); ``delay`` says how long until one token is available.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._last = now

    def refill(self, now: float) -> None:
        if now > self._last:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
            self._last = now

    def charge(self, n: float) -> None:
        self.tokens -= n

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> bool:
        """Take one token if one is available."""
        if self.delay(now) > 0:
            return False
        self.tokens -= 1.0
        return True


# ---------------------------------------------------------------------- crawl state

FRONTIER, BUSY, WAITING, DONE, DEAD = range(5)


@dataclass(slots=True, eq=False)
class CrawlNode:
    """What the crawl knows about one address. Times are the crawl's clock (seconds)."""

    addr: Addr
    id: bytes | None
    first_seen: float
    last_seen: float
    version: bytes | None = None
    bep51: bool = False
    responded: bool = False
    rtt: float | None = None
    queries: int = 0
    """Queries the crawl sent it (samples and pings; not the node's own lookups)."""
    samples_asked: int = 0
    num: int | None = None
    interval: int | None = None
    sampled_at: float | None = None
    """When its last sample arrived; the next one is not asked before + interval."""
    state: int = FRONTIER
    pinged: bool = False
    last_fresh: int = 0
    """Info-hashes new to the crawl in its previous sample."""
    seen: set[bytes] = field(default_factory=set)
    """Distinct info-hashes it offered."""


@dataclass(slots=True, eq=False)
class InfoHash:
    first_seen: float
    sources: int = 0
    peers: int | None = None


@dataclass(slots=True, eq=False)
class Job:
    """One request the crawl wants sent: ``kind`` is sample, ping, lookup or peers."""

    kind: str
    node: CrawlNode | None = None
    target: bytes = b""


def _id_int(node_id: bytes) -> int:
    return int.from_bytes(node_id, "big")


def _id_bytes(value: int) -> bytes:
    return (value % SPACE).to_bytes(20, "big")


class Crawl:
    """The crawl's policy and memory, without I/O: which request to send next, and what
    each answer teaches. The caller passes the time (``now``, seconds) in.

    * ``rng``: chooses targets.
    * ``max_nodes``: addresses kept at most (later ones are counted, not kept).
    * ``max_infohashes``: info-hashes kept at most.
    * ``min_interval``: floor on the wait before sampling a node again.
    * ``public_only``: ignore addresses that are not globally routable (set when
      crawling the public DHT, where private and bogus addresses are noise).
    * ``peers``: also plan a get_peers lookup for each info-hash found.
    """

    def __init__(
        self,
        rng: random.Random,
        now: float,
        *,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_infohashes: int = DEFAULT_MAX_INFOHASHES,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        public_only: bool = False,
        peers: bool = False,
        own_id: bytes | None = None,
    ) -> None:
        self.rng = rng
        self.started = now
        self.max_nodes = max_nodes
        self.max_infohashes = max_infohashes
        self.min_interval = min_interval
        self.public_only = public_only
        self.want_peers = peers
        self.own_id = own_id
        self.nodes: dict[Addr, CrawlNode] = {}
        self.infohashes: dict[bytes, InfoHash] = {}
        self._ids: list[int] = []  # sorted distinct ids known (gap targets, estimate)
        self._id_count: Counter[int] = Counter()
        self._frontier: list[tuple[int, Addr]] = []  # unqueried, in id order
        self._cursor = 0
        self._first: deque[Addr] = deque()  # contacts without a known id
        self._pings: deque[Addr] = deque()
        self._lookups: deque[bytes] = deque()
        self._probes: deque[bytes] = deque()
        self._probed: set[tuple[int, int]] = set()
        self._found_at_probe = -1
        self.probe_rounds = 0
        self._peer_queue: deque[bytes] = deque()
        self._resample: list[tuple[float, int, Addr]] = []  # (due, tiebreak, addr)
        self._tiebreak = 0
        self._turn = 0
        self.lookup_results: list[tuple[int, list[int]]] = []
        self.peers_in_flight = 0
        self.sweeps = 0
        self.responders = 0
        self.bep51_nodes = 0
        self.queried = 0
        self.samples_received = 0
        self.nodes_dropped = 0
        self.infohashes_dropped = 0
        self.id_mismatches = 0
        self.dirty_nodes: set[Addr] = set()
        self.dirty_infohashes: set[bytes] = set()

    # ---------------------------------------------------------------- learning

    def addr_ok(self, addr: Addr) -> bool:
        ip, port = addr
        if not 0 < port < 65536:
            return False
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if parsed.is_unspecified or parsed.is_multicast:
            return False
        return parsed.is_global or not self.public_only

    def add_contact(self, addr: Addr) -> None:
        """A first contact (a bootstrap address): sampled first, its id learnt from it."""
        if addr not in self.nodes and self.addr_ok(addr):
            self.nodes[addr] = CrawlNode(addr, None, self.started, self.started)
            self._first.append(addr)

    def add_lookup(self, target: bytes) -> None:
        """Plan a find_node lookup to ``target`` (seeds the sweep and the size estimate)."""
        self._lookups.append(target)

    def discover(self, node_id: bytes, addr: Addr, now: float) -> CrawlNode | None:
        """A node was reported to us; returns its record (None if it was not kept)."""
        rec = self.nodes.get(addr)
        if rec is not None:
            rec.last_seen = max(rec.last_seen, now)
            if rec.id is None and rec.state == FRONTIER:
                self._set_id(rec, node_id)
            return rec
        if node_id == self.own_id or len(node_id) != 20 or not self.addr_ok(addr):
            return None
        if len(self.nodes) >= self.max_nodes:
            self.nodes_dropped += 1
            return None
        rec = CrawlNode(addr, None, now, now)
        self.nodes[addr] = rec
        self._set_id(rec, node_id)
        bisect.insort(self._frontier, (_id_int(node_id), addr))
        self.dirty_nodes.add(addr)
        return rec

    def _set_id(self, rec: CrawlNode, node_id: bytes) -> None:
        if rec.id == node_id:
            return
        if rec.id is not None:
            old = _id_int(rec.id)
            self._id_count[old] -= 1
            if self._id_count[old] <= 0:
                del self._id_count[old]
                i = bisect.bisect_left(self._ids, old)
                if i < len(self._ids) and self._ids[i] == old:
                    del self._ids[i]
        rec.id = node_id
        new = _id_int(node_id)
        if self._id_count[new] == 0:
            bisect.insort(self._ids, new)
        self._id_count[new] += 1

    def _answered(self, rec: CrawlNode, node_id: bytes, now: float) -> None:
        if rec.id is not None and rec.id != node_id:
            self.id_mismatches += 1  # others advertised another id for this address
        self._set_id(rec, node_id)
        if not rec.responded:
            rec.responded = True
            self.responders += 1
        rec.last_seen = now
        self.dirty_nodes.add(rec.addr)

    def on_sample(self, job: Job, reply: SampleReply | None, now: float) -> None:
        """The answer to a sample job (None or ``node_id`` None: no valid answer)."""
        rec = job.node
        assert rec is not None
        if reply is None or reply.node_id is None:
            if not rec.responded and not rec.pinged:
                # Silent to BEP 51 (jech/dht ignores unknown methods) or gone: ask once.
                rec.state = BUSY
                self._pings.append(rec.addr)
            else:
                rec.state = DONE
            return
        self._answered(rec, reply.node_id, now)
        if reply.rtt is not None:
            rec.rtt = reply.rtt
        if reply.version is not None:
            rec.version = reply.version
        # BEP 51: a reply with a samples key shows real support (even an empty store
        # sends it); one with only nodes is libtorrent-style forward compatibility.
        bep51 = reply.supported
        if bep51 and not rec.bep51:
            rec.bep51 = True
            self.bep51_nodes += 1
        rec.num = reply.num
        rec.interval = reply.interval
        rec.sampled_at = now
        self.samples_received += len(reply.samples)
        fresh = 0
        for ih in reply.samples:
            if len(ih) == 20 and ih not in rec.seen:
                rec.seen.add(ih)
                fresh += self._offered(ih, now)
        for n in reply.nodes:
            self.discover(n.id, n.addr, now)
        recent, rec.last_fresh = fresh + rec.last_fresh, fresh
        if rec.bep51 and reply.num > len(rec.seen) and (recent or rec.samples_asked < 2):
            # It holds more than it showed: worth a second sample, and more while its last
            # two still taught us something (two of nothing new say the rest of its store
            # is likely known from other nodes too: each info-hash sits on ~8 of them).
            # BEP 51: "indexers should not query this node again sooner" than interval.
            due = now + max(float(reply.interval), self.min_interval)
            self._tiebreak += 1
            heapq.heappush(self._resample, (due, self._tiebreak, rec.addr))
            rec.state = WAITING
        else:
            rec.state = DONE

    def _offered(self, ih: bytes, now: float) -> bool:
        """Count a node offering ``ih``; True if the crawl did not know it."""
        info = self.infohashes.get(ih)
        fresh = info is None
        if info is None:
            if len(self.infohashes) >= self.max_infohashes:
                self.infohashes_dropped += 1
                return False
            info = self.infohashes[ih] = InfoHash(now)
            if self.want_peers:
                self._peer_queue.append(ih)
        info.sources += 1
        self.dirty_infohashes.add(ih)
        return fresh

    def on_ping(self, job: Job, node_id: bytes | None, now: float) -> None:
        rec = job.node
        assert rec is not None
        if node_id is None:
            rec.state = DEAD
            return
        self._answered(rec, node_id, now)
        rec.state = DONE

    def on_lookup(
        self, target: bytes, nodes: Sequence[NodeLike], now: float, probe: bool = False
    ) -> None:
        """The closest nodes a find_node lookup found. Probes' targets were chosen in empty
        regions, so only the other lookups (uniform targets) feed the size estimate."""
        ids: list[int] = []
        for n in nodes:
            self.discover(n.id, n.addr, now)
            ids.append(_id_int(n.id))
        if not probe:
            self.lookup_results.append((_id_int(target), ids))

    def on_peers(self, ih: bytes, count: int | None) -> None:
        self.peers_in_flight -= 1
        info = self.infohashes.get(ih)
        if info is not None and count is not None:
            info.peers = count
            self.dirty_infohashes.add(ih)

    # ---------------------------------------------------------------- planning

    def target_for(self, rec: CrawlNode) -> bytes:
        """A target in the widest gap of known ids next to ``rec``'s id (random if none).

        The node's table is densest around its own id, so its closest nodes to a point
        in an adjacent gap are the nodes the crawl lacks there.
        """
        ids = self._ids
        if rec.id is None or len(ids) < 2:
            return _id_bytes(self.rng.getrandbits(ID_BITS))
        x = _id_int(rec.id)
        i = bisect.bisect_left(ids, x)
        succ = ids[(i + 1) % len(ids)] if i < len(ids) and ids[i] == x else ids[i % len(ids)]
        pred = ids[i - 1]
        after = (succ - x) % SPACE or SPACE
        before = (x - pred) % SPACE or SPACE
        if after >= before:
            return _id_bytes(x + self.rng.randrange(1, after) if after > 1 else x + 1)
        return _id_bytes(x - self.rng.randrange(1, before) if before > 1 else x - 1)

    def next_job(self, now: float, idle: bool = False) -> Job | None:
        """The next request to send, or None when there is nothing to do now.

        ``idle``: no request is in flight (the sweep may plan probes then).
        """
        self._turn += 1
        # get_peers lookups cost many queries each: give them a share of the turns, not
        # all of them, so mapping goes on.
        if self._turn % 4 == 0 and (job := self._peers_job()) is not None:
            return job
        while self._resample and self._resample[0][0] <= now:
            _, _, addr = heapq.heappop(self._resample)
            rec = self.nodes[addr]
            if rec.state == WAITING:
                return self._sample(rec)
        while self._pings:
            rec = self.nodes[self._pings.popleft()]
            rec.pinged = True
            rec.queries += 1
            self.dirty_nodes.add(rec.addr)
            return Job("ping", rec)
        while self._first:
            rec = self.nodes[self._first.popleft()]
            if rec.state == FRONTIER:
                self.queried += 1
                return self._sample(rec)
        if self._lookups:
            return Job("lookup", None, self._lookups.popleft())
        while self._frontier:
            i = bisect.bisect_left(self._frontier, (self._cursor,))
            if i == len(self._frontier):
                i = 0
                self.sweeps += 1
            key, addr = self._frontier.pop(i)
            self._cursor = key + 1
            rec = self.nodes[addr]
            if rec.state == FRONTIER:
                self.queried += 1
                return self._sample(rec)
        if idle and not self._probes:
            self._plan_probes()
        if self._probes:
            return Job("probe", None, self._probes.popleft())
        return self._peers_job()

    def empty_regions(self, min_expected: float) -> list[tuple[float, int, int]]:
        """Id regions next to known nodes where no node is known though, at the density
        seen, at least ``min_expected`` should be: (expected, first id, free bits), the
        most promising first.

        The regions are the sibling subtrees along each known id's path in the binary
        trie of ids. A node the sweep missed sits alone in such a subtree: the nodes that
        know it return it only for a target inside that subtree.
        """
        ids = self._ids
        n = len(ids)
        found: dict[tuple[int, int], float] = {}
        for x in ids:
            for depth in range(1, ID_BITS + 1):
                expected = n / (1 << depth)
                if expected < min_expected:
                    break
                free = ID_BITS - depth
                lo = ((x >> free) ^ 1) << free
                if (lo, free) in found or (lo, free) in self._probed:
                    continue
                if bisect.bisect_left(ids, lo + (1 << free)) == bisect.bisect_left(ids, lo):
                    found[(lo, free)] = expected
        return sorted(((e, lo, free) for (lo, free), e in found.items()), reverse=True)

    def _plan_probes(self) -> None:
        """Once the sweep has ended: lookups into the regions most likely to hide nodes.

        Another round follows only if the previous one found new nodes.
        """
        if (
            self.probe_rounds >= PROBE_ROUNDS
            or len(self.nodes) == self._found_at_probe
            or self.nodes_dropped
        ):
            return
        self.probe_rounds += 1
        self._found_at_probe = len(self.nodes)
        budget = max(4, len(self.nodes) // PROBE_SHARE)
        for _, lo, free in self.empty_regions(PROBE_MIN_EXPECTED)[:budget]:
            self._probed.add((lo, free))
            self._probes.append(_id_bytes(lo + self.rng.getrandbits(free)))

    def _sample(self, rec: CrawlNode) -> Job:
        rec.state = BUSY
        rec.queries += 1
        rec.samples_asked += 1
        self.dirty_nodes.add(rec.addr)
        return Job("sample", rec, self.target_for(rec))

    def _peers_job(self) -> Job | None:
        if not self._peer_queue or self.peers_in_flight >= PEER_LOOKUPS:
            return None
        self.peers_in_flight += 1
        return Job("peers", None, self._peer_queue.popleft())

    def next_due(self) -> float | None:
        """When the next planned sample falls due (None when none is planned)."""
        return self._resample[0][0] if self._resample else None

    def finished(self, now: float, deadline: float) -> bool:
        """Nothing left to do before ``deadline`` (assuming no request is in flight)."""
        if self._first or self._pings or self._lookups or self._frontier or self._peer_queue:
            return False
        if self._probes or self.peers_in_flight:
            return False
        if (
            self.probe_rounds < PROBE_ROUNDS
            and len(self.nodes) != self._found_at_probe
            and not self.nodes_dropped
        ):
            return False  # a probe round is still to be planned
        due = self.next_due()
        return due is None or due >= deadline

    @property
    def complete(self) -> bool:
        """Every node found was queried (nothing left in the sweep)."""
        return not self._frontier and not self._first

    @property
    def ids(self) -> list[int]:
        """Distinct known ids, sorted."""
        return self._ids

    def estimate(self, extra_targets: int) -> SizeEstimate | None:
        """The size estimate: the lookups' random targets, plus ``extra_targets`` random
        ones over the crawled set when the crawl is complete (see :func:`estimate_size`)."""
        targets: list[tuple[int, Iterable[int]]] = [(t, ids) for t, ids in self.lookup_results]
        rng = random.Random(self.rng.getrandbits(64))
        if self.complete:
            targets += [(rng.getrandbits(ID_BITS), ()) for _ in range(extra_targets)]
            what = "the crawled set (the sweep ended: every node found was queried)"
        else:
            what = "find_node lookups' closest nodes and the crawled set"
        return estimate_size(self._ids, targets, K, what)


# -------------------------------------------------------------------------- storage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT NOT NULL,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    version TEXT,
    bep51 INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    rtt_ms REAL,
    responded INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    num INTEGER,
    interval INTEGER,
    PRIMARY KEY (ip, port)
);
CREATE INDEX IF NOT EXISTS nodes_id ON nodes (id);
CREATE TABLE IF NOT EXISTS infohashes (
    infohash TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    sources INTEGER NOT NULL,
    peers INTEGER
);
CREATE TABLE IF NOT EXISTS crawls (
    started REAL PRIMARY KEY,
    ended REAL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS timeline (
    crawl REAL NOT NULL,
    t REAL NOT NULL,
    nodes INTEGER NOT NULL,
    responders INTEGER NOT NULL,
    bep51 INTEGER NOT NULL,
    infohashes INTEGER NOT NULL,
    queries INTEGER NOT NULL
);
"""

_UPSERT_NODE = """
INSERT INTO nodes (id, ip, port, version, bep51, first_seen, last_seen, rtt_ms, responded,
                   queries, num, interval)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ip, port) DO UPDATE SET
    id = excluded.id,
    version = COALESCE(excluded.version, nodes.version),
    bep51 = MAX(nodes.bep51, excluded.bep51),
    first_seen = MIN(nodes.first_seen, excluded.first_seen),
    last_seen = MAX(nodes.last_seen, excluded.last_seen),
    rtt_ms = COALESCE(excluded.rtt_ms, nodes.rtt_ms),
    responded = MAX(nodes.responded, excluded.responded),
    queries = excluded.queries,
    num = COALESCE(excluded.num, nodes.num),
    interval = COALESCE(excluded.interval, nodes.interval)
"""

_UPSERT_INFOHASH = """
INSERT INTO infohashes (infohash, first_seen, sources, peers) VALUES (?, ?, ?, ?)
ON CONFLICT (infohash) DO UPDATE SET
    first_seen = MIN(infohashes.first_seen, excluded.first_seen),
    sources = MAX(infohashes.sources, excluded.sources),
    peers = COALESCE(excluded.peers, infohashes.peers)
"""


class Store:
    """The crawl's SQLite database. Rows are upserted, so a database can hold several
    crawls: a node keeps its earliest first_seen and latest last_seen."""

    def __init__(self, path: str | os.PathLike[str], wall_offset: float, started: float) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(_SCHEMA)
        self._offset = wall_offset  # crawl clock -> Unix time
        self._started = wall_offset + started
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO crawls (started, ended, summary) VALUES (?, NULL, NULL)",
                (self._started,),
            )

    def flush(self, crawl: Crawl, timeline: Sequence[Sequence[float]] = ()) -> None:
        """Write the nodes and info-hashes that changed since the last flush."""
        off = self._offset
        rows = []
        for addr in crawl.dirty_nodes:
            rec = crawl.nodes.get(addr)
            if rec is None or rec.id is None:
                continue  # a contact that never answered: not known to be a node
            rows.append(
                (
                    rec.id.hex(),
                    addr[0],
                    addr[1],
                    format_version(rec.version),
                    int(rec.bep51),
                    off + rec.first_seen,
                    off + rec.last_seen,
                    None if rec.rtt is None else round(rec.rtt * 1000.0, 3),
                    int(rec.responded),
                    rec.queries,
                    rec.num,
                    rec.interval,
                )
            )
        ih_rows = []
        for ih in crawl.dirty_infohashes:
            info = crawl.infohashes.get(ih)
            if info is not None:
                ih_rows.append((ih.hex(), off + info.first_seen, info.sources, info.peers))
        with self.db:
            self.db.executemany(_UPSERT_NODE, rows)
            self.db.executemany(_UPSERT_INFOHASH, ih_rows)
            if timeline:
                self.db.execute("DELETE FROM timeline WHERE crawl = ?", (self._started,))
                self.db.executemany(
                    "INSERT INTO timeline VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(self._started, *row) for row in timeline],
                )
        crawl.dirty_nodes.clear()
        crawl.dirty_infohashes.clear()

    def finish(
        self, crawl: Crawl, timeline: Sequence[Sequence[float]], summary: dict[str, Any]
    ) -> None:
        self.flush(crawl, timeline)
        with self.db:
            self.db.execute(
                "UPDATE crawls SET ended = ?, summary = ? WHERE started = ?",
                (time.time(), json.dumps(summary), self._started),
            )

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- driver


@dataclass(slots=True)
class Snapshot:
    """Progress numbers at one moment."""

    elapsed: float
    duration: float
    found: int
    queried: int
    responders: int
    bep51: int
    infohashes: int
    queries: int
    qps: float
    in_flight: int


class Crawler:
    """Runs a :class:`Crawl` on a read-only :class:`~mldht.runtime.DHTNode`.

    ``rate`` bounds every query the node sends (its own lookups' included: the bucket
    is charged with what the node's ``queries_out`` counter shows); ``concurrency``
    bounds the requests in flight.
    """

    def __init__(
        self,
        node: DHTNode,
        crawl: Crawl,
        *,
        rate: float,
        concurrency: int,
        duration: float,
        store: Store | None = None,
        on_progress: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.node = node
        self.crawl = crawl
        self.rate = rate
        self.concurrency = max(1, concurrency)
        self.duration = duration
        self.store = store
        self.on_progress = on_progress
        self.in_flight = 0
        self.timeline: list[tuple[float, int, int, int, int, int]] = []
        self.interrupted = False
        self.started = 0.0
        self.ended = 0.0
        self._changed = anyio.Event()
        self._bucket: TokenBucket | None = None
        self._accounted = 0
        self._queries_base = 0

    @property
    def queries_sent(self) -> int:
        return self.node.stats.get("queries_out", 0) - self._queries_base

    def _notify(self) -> None:
        self._changed.set()

    async def _pace(self) -> None:
        """Wait for a token; charge first the queries the node sent beyond those paid for."""
        bucket = self._bucket
        assert bucket is not None
        while True:
            sent = self.node.stats.get("queries_out", 0)
            if sent > self._accounted:
                bucket.charge(sent - self._accounted)
                self._accounted = sent
            now = anyio.current_time()
            if bucket.take(now):
                self._accounted += 1  # the query about to be sent
                return
            await anyio.sleep(bucket.delay(now))

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Crawl until done, ``duration`` passes, or ``stop`` is set."""
        self.started = anyio.current_time()
        deadline = self.started + self.duration
        self._queries_base = self._accounted = self.node.stats.get("queries_out", 0)
        self._bucket = TokenBucket(self.rate, max(1.0, self.rate / 4), self.started)
        slots = anyio.Semaphore(self.concurrency)
        try:
            with anyio.move_on_after(self.duration):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._ticker)
                    if stop is not None:
                        tg.start_soon(self._watch_stop, stop, tg)
                    await self._dispatch(tg, slots, deadline)
                    tg.cancel_scope.cancel()
        finally:
            self.ended = anyio.current_time()
            self._tick()

    async def _watch_stop(self, stop: anyio.Event, tg: anyio.abc.TaskGroup) -> None:
        await stop.wait()
        self.interrupted = True
        tg.cancel_scope.cancel()

    async def _dispatch(
        self, tg: anyio.abc.TaskGroup, slots: anyio.Semaphore, deadline: float
    ) -> None:
        crawl = self.crawl
        while True:
            await slots.acquire()
            while True:
                # A fresh event before looking: a request ending from here on wakes us.
                changed = self._changed = anyio.Event()
                now = anyio.current_time()
                job = crawl.next_job(now, idle=self.in_flight == 0)
                if job is not None:
                    break
                if self.in_flight == 0 and crawl.finished(now, deadline):
                    slots.release()
                    return
                due = crawl.next_due()
                wait = 1.0 if due is None else min(1.0, max(0.0, due - now))
                with anyio.move_on_after(wait):
                    await changed.wait()
            await self._pace()
            self.in_flight += 1
            tg.start_soon(self._execute, job, slots)

    async def _execute(self, job: Job, slots: anyio.Semaphore) -> None:
        node = self.node
        crawl = self.crawl
        try:
            if job.kind == "sample":
                assert job.node is not None
                reply: SampleReply | None = None
                try:
                    reply = await node.sample_infohashes(job.node.addr, job.target)
                except MldhtError as exc:
                    log.debug("sample_infohashes to %s: %r", format_addr(job.node.addr), exc)
                crawl.on_sample(job, reply, anyio.current_time())
            elif job.kind == "ping":
                assert job.node is not None
                node_id: bytes | None = None
                with contextlib.suppress(MldhtError):
                    node_id = await node.ping(job.node.addr)
                crawl.on_ping(job, node_id, anyio.current_time())
            elif job.kind in ("lookup", "probe"):
                found: Sequence[NodeLike] = ()
                try:
                    found = await node.find_node(job.target)
                except MldhtError as exc:
                    log.debug("find_node %s: %r", job.target.hex(), exc)
                crawl.on_lookup(job.target, found, anyio.current_time(), probe=job.kind == "probe")
            else:
                count: int | None = None
                try:
                    count = len(await node.get_peers(job.target))
                except MldhtError as exc:
                    log.debug("get_peers %s: %r", job.target.hex(), exc)
                crawl.on_peers(job.target, count)
        finally:
            self.in_flight -= 1
            slots.release()
            self._notify()

    def snapshot(self) -> Snapshot:
        now = anyio.current_time()
        recent = [row for row in self.timeline if row[0] >= (now - self.started) - 5.0]
        qps = 0.0
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            qps = (recent[-1][5] - recent[0][5]) / (recent[-1][0] - recent[0][0])
        c = self.crawl
        return Snapshot(
            elapsed=now - self.started,
            duration=self.duration,
            found=len(c.nodes),
            queried=c.queried,
            responders=c.responders,
            bep51=c.bep51_nodes,
            infohashes=len(c.infohashes),
            queries=self.queries_sent,
            qps=qps,
            in_flight=self.in_flight,
        )

    def _tick(self) -> None:
        c = self.crawl
        now = anyio.current_time()
        self.timeline.append(
            (
                round(now - self.started, 3),
                len(c.nodes),
                c.responders,
                c.bep51_nodes,
                len(c.infohashes),
                self.queries_sent,
            )
        )
        if self.on_progress is not None:
            self.on_progress(self.snapshot())

    async def _ticker(self) -> None:
        last_flush = anyio.current_time()
        while True:
            await anyio.sleep(1.0)
            self._tick()
            if self.store is not None and anyio.current_time() - last_flush >= FLUSH_INTERVAL:
                last_flush = anyio.current_time()
                try:
                    self.store.flush(self.crawl, self.timeline)
                except sqlite3.Error as exc:
                    log.warning("could not write %s: %s", self.store.path, exc)


# ------------------------------------------------------------------------- progress


class PlainProgress:
    """One status line every ``interval`` seconds (for logs and pipes)."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self._next = 0.0

    def __call__(self, s: Snapshot) -> None:
        if s.elapsed + 1e-9 < self._next:
            return
        self._next = s.elapsed + self.interval
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stream.write(
                f"[{s.elapsed:6.0f}s] nodes {s.found} queried {s.queried} "
                f"responding {s.responders} bep51 {s.bep51} infohashes {s.infohashes} "
                f"queries {s.queries} ({s.qps:.0f}/s) in flight {s.in_flight}\n"
            )
            self.stream.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A live progress bar (rich) on a terminal: nodes queried out of found."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]crawl"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} queried"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._progress.add_task("crawl", total=1, line="")
        self._progress.start()

    def __call__(self, s: Snapshot) -> None:
        self._progress.update(
            self._task,
            completed=s.queried,
            total=max(s.found, 1),
            line=(f"resp {s.responders} bep51 {s.bep51} ih {s.infohashes} {s.qps:.0f} q/s"),
        )

    def close(self) -> None:
        self._progress.stop()


# ----------------------------------------------------------------------------- plot


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw_plot(path: str | os.PathLike[str], crawler: Crawler, summary: dict[str, Any]) -> None:
    """Draw the crawl to ``path`` (PNG): nodes over time, client versions, id coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crawl = crawler.crawl
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    rows = [(0.0, 0, 0, 0, 0, 0), *crawler.timeline]
    t = [row[0] for row in rows]
    styles = ((1, "nodes found", "-"), (2, "responding", "--"), (3, "BEP 51", ":"))
    for col, label, style in (*styles, (4, "info-hashes", "-")):
        ax.plot(t, [row[col] for row in rows], style, label=label)
    ax.set_xlabel("seconds")
    ax.set_title("crawl over time")
    rate = ax.twinx()
    qps = [0.0] + [
        (b[5] - a[5]) / (b[0] - a[0]) if b[0] > a[0] else 0.0 for a, b in itertools.pairwise(rows)
    ]
    rate.plot(t, qps, color="grey", lw=0.8, label="queries/s")
    rate.set_ylabel("queries/s")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = rate.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="center right")

    ax = axes[0][1]
    versions = Counter(
        format_version(r.version) or "none" for r in crawl.nodes.values() if r.responded
    )
    top = versions.most_common(15)
    ax.barh([name for name, _ in top][::-1], [n for _, n in top][::-1])
    ax.set_title("client versions (responding nodes)")
    ax.set_xlabel("nodes")

    ax = axes[1][0]
    bins = 64
    found = [0] * bins
    queried = [0] * bins
    for rec in crawl.nodes.values():
        if rec.id is None:
            continue
        b = rec.id[0] * bins // 256
        found[b] += 1
        if rec.responded:
            queried[b] += 1
    xs = [i / bins for i in range(bins)]
    ax.bar(xs, queried, width=1 / bins, align="edge", alpha=0.6, label="responding")
    ax.step([*xs, 1.0], [*found, found[-1]], where="post", color="k", lw=1, label="found")
    ax.axhline(sum(found) / bins, color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel("node id / 2^160")
    ax.set_title("id-space coverage")
    ax.legend()

    ax = axes[1][1]
    rtts = [r.rtt * 1000 for r in crawl.nodes.values() if r.rtt is not None]
    if rtts:
        ax.hist(rtts, bins=40)
    ax.set_xlabel("RTT (ms)")
    ax.set_title("response times")
    size = summary.get("network_size")
    note = f"size estimate {size['estimate']} ± {size['stderr']}" if size else "no size estimate"
    fig.suptitle(
        f"{summary['nodes_found']} nodes, {summary['responders']} responding, "
        f"{summary['infohashes']} info-hashes in {summary['duration_s']:.0f} s; {note}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- summary


def summarize(crawler: Crawler, estimate: SizeEstimate | None, db: str | None) -> dict[str, Any]:
    crawl = crawler.crawl
    duration = max(crawler.ended - crawler.started, 1e-9)
    clients = Counter(
        format_version(r.version) or "none" for r in crawl.nodes.values() if r.responded
    )
    return {
        "duration_s": round(duration, 2),
        "interrupted": crawler.interrupted,
        "complete": crawl.complete,
        "nodes_found": len(crawl.nodes),
        "nodes_queried": crawl.queried,
        "responders": crawl.responders,
        "bep51_nodes": crawl.bep51_nodes,
        "bep51_share": round(crawl.bep51_nodes / crawl.responders, 4) if crawl.responders else 0.0,
        "infohashes": len(crawl.infohashes),
        "samples_received": crawl.samples_received,
        "with_peers": sum(1 for i in crawl.infohashes.values() if i.peers),
        "queries_sent": crawler.queries_sent,
        "queries_per_s": round(crawler.queries_sent / duration, 1),
        "nodes_dropped": crawl.nodes_dropped,
        "infohashes_dropped": crawl.infohashes_dropped,
        "sweeps": crawl.sweeps,
        "clients": dict(clients.most_common(10)),
        "network_size": None if estimate is None else estimate.as_dict(),
        "db": db,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"crawled for {s['duration_s']:.1f} s"
        + (" (interrupted)" if s["interrupted"] else "")
        + ("; every node found was queried" if s["complete"] else ""),
        f"nodes found:  {s['nodes_found']} ({s['nodes_queried']} queried)",
        f"responding:   {s['responders']}",
        f"BEP 51:       {s['bep51_nodes']} ({100 * s['bep51_share']:.1f}% of responding)",
        f"info-hashes:  {s['infohashes']} (from {s['samples_received']} samples)",
        f"queries:      {s['queries_sent']} ({s['queries_per_s']:.1f}/s)",
    ]
    if s["with_peers"]:
        lines.append(f"with peers:   {s['with_peers']}")
    size = s["network_size"]
    if size is None:
        lines.append("network size: not enough nodes seen to estimate")
    else:
        lines.append(f"network size: ~{size['estimate']} ± {size['stderr']} ({size['method']})")
    if s["clients"]:
        lines.append(
            "clients:      " + ", ".join(f"{name} {n}" for name, n in s["clients"].items())
        )
    if s["db"]:
        lines.append(f"database:     {s['db']}")
    return "\n".join(lines)


# -------------------------------------------------------------------------- program

PROG = "crawl"


class _Parser(argparse.ArgumentParser):
    """Bad input gives one line naming it, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def parse_hostport(text: str, *, allow_port_zero: bool = False) -> Addr:
    """``HOST:PORT`` (IPv6 as ``[::1]:6881``); raises ``ArgumentTypeError`` naming the text."""
    m = re.fullmatch(r"\[([^\[\]]+)\]:([0-9]+)", text)
    if m is not None:
        host, port_text = m.groups()
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid IPv6 address in {text!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not _HOST.match(host) or not port_text.isdigit():
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return (host, port)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The crawler's options (for this program, or an ``mldht crawl`` subcommand)."""
    parser.add_argument(
        "--bootstrap",
        type=parse_hostport,
        action="append",
        metavar="HOST:PORT",
        help="first contact (repeatable); default: the public routers",
    )
    parser.add_argument(
        "--bind",
        type=lambda t: parse_hostport(t, allow_port_zero=True),
        default=("0.0.0.0", 0),
        metavar="HOST:PORT",
        help="UDP address of the crawler's node (default 0.0.0.0:0)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        default=DEFAULT_RATE,
        metavar="QPS",
        help=f"queries per second at most, all included (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"stop after this long (default {DEFAULT_DURATION:g}); it stops sooner when done",
    )
    parser.add_argument(
        "--max-nodes",
        type=_positive_int,
        default=DEFAULT_MAX_NODES,
        metavar="N",
        help=f"keep at most N nodes (default {DEFAULT_MAX_NODES})",
    )
    parser.add_argument(
        "--max-infohashes",
        type=_positive_int,
        default=DEFAULT_MAX_INFOHASHES,
        metavar="N",
        help=f"keep at most N info-hashes (default {DEFAULT_MAX_INFOHASHES})",
    )
    parser.add_argument(
        "--db",
        default="crawl.sqlite",
        metavar="FILE",
        help="SQLite database to write (default crawl.sqlite; rows are upserted)",
    )
    parser.add_argument(
        "--peers", action="store_true", help="also run get_peers for each info-hash found"
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the crawl to FILE.png (needs matplotlib)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="requests in flight at most (default: rate x query timeout, at most 1024)",
    )
    parser.add_argument(
        "--query-timeout",
        type=_positive_float,
        default=DEFAULT_QUERY_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for an answer (default {DEFAULT_QUERY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--min-interval",
        type=_non_negative_float,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help=(
            "never sample a node again sooner than this, even if its BEP 51 interval is "
            f"shorter (default {DEFAULT_MIN_INTERVAL:g})"
        ),
    )
    parser.add_argument(
        "--lookups",
        type=_count,
        default=DEFAULT_LOOKUPS,
        metavar="N",
        help=(
            "find_node lookups to random targets, to seed the sweep and the size estimate "
            f"(default {DEFAULT_LOOKUPS})"
        ),
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="progress display on stderr (default auto: rich on a terminal, else plain)",
    )
    parser.add_argument(
        "--status-interval",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between plain progress lines (default 5)",
    )
    parser.add_argument("--seed", type=_count, default=None, help="seed of the crawl's choices")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Map the mainline DHT politely (BEP 51, BEP 43).")
    add_arguments(parser)
    return parser


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with arguments argparse cannot check alone (None if nothing)."""
    if args.plot is not None:
        if not have_matplotlib():
            return (
                "--plot needs matplotlib, which is not installed "
                "(pip install 'mldht[plot]' or pip install matplotlib)"
            )
        parent = Path(args.plot).expanduser().resolve().parent
        if not parent.is_dir():
            return f"--plot: directory {str(parent)!r} does not exist"
    db_parent = Path(args.db).expanduser().resolve().parent
    if not db_parent.is_dir():
        return f"--db: directory {str(db_parent)!r} does not exist"
    if args.progress == "rich" and not _have_rich():
        return "--progress rich needs rich, which is not installed (pip install 'mldht[crawl]')"
    return None


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


async def _resolve_all(addrs: Sequence[Addr], family: socket.AddressFamily) -> list[Addr]:
    out: list[Addr] = []
    for host, port in addrs:
        try:
            infos = await anyio.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", host, exc)
            continue
        for *_, sockaddr in infos:
            found = (str(sockaddr[0]), int(sockaddr[1]))
            if found not in out:
                out.append(found)
    return out


def _is_public(addrs: Sequence[Addr]) -> bool:
    """True when every first contact is globally routable: crawl only such addresses."""
    if not addrs:
        return True
    for host, _ in addrs:
        try:
            if not ipaddress.ip_address(host).is_global:
                return False
        except ValueError:
            return False
    return True


async def handle(args: argparse.Namespace, stop: anyio.Event | None = None) -> int:
    """Run a crawl as the arguments say; the exit status (0 done, 1 nobody answered, 2 bad
    arguments). Prints progress on stderr and the summary on stdout."""
    problem = check_args(args)
    if problem is not None:
        sys.stderr.write(f"{PROG}: error: {problem}\n")
        return 2
    rng = random.Random(args.seed if args.seed is not None else os.urandom(16))
    wall_offset = time.time() - anyio.current_time()
    family = socket.AF_INET6 if ":" in args.bind[0] else socket.AF_INET
    routers: list[Addr] | None = args.bootstrap
    try:
        store = Store(args.db, wall_offset, anyio.current_time())
    except sqlite3.Error as exc:
        sys.stderr.write(f"{PROG}: error: --db: cannot open {args.db!r}: {exc}\n")
        return 2
    concurrency = args.concurrency or max(16, min(1024, math.ceil(args.rate * args.query_timeout)))
    progress: PlainProgress | RichProgress | None = None
    mode = args.progress
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() and _have_rich() else "plain"
    if mode == "rich":
        progress = RichProgress(sys.stderr)
    elif mode == "plain":
        progress = PlainProgress(sys.stderr, args.status_interval)
    crawler: Crawler | None = None
    try:
        async with DHTNode(
            bind=args.bind,
            bootstrap=routers,
            read_only=True,
            query_timeout=args.query_timeout,
            soft_timeout=min(1.0, args.query_timeout),
            lookup_timeout=max(10.0, 4 * args.query_timeout),
        ) as node:
            contacts = await _resolve_all(
                routers if routers is not None else _public_routers(), family
            )
            crawl = Crawl(
                rng,
                anyio.current_time(),
                max_nodes=args.max_nodes,
                max_infohashes=args.max_infohashes,
                min_interval=args.min_interval,
                public_only=_is_public(contacts),
                peers=args.peers,
                own_id=node.node_id,
            )
            for addr in contacts:
                crawl.add_contact(addr)
            for _ in range(args.lookups):
                crawl.add_lookup(_id_bytes(rng.getrandbits(ID_BITS)))
            crawler = Crawler(
                node,
                crawl,
                rate=args.rate,
                concurrency=concurrency,
                duration=args.duration,
                store=store,
                on_progress=progress,
            )
            await crawler.run(stop)
    except BaseException:
        # Cancelled from outside, or the node failed: still keep what was found.
        if crawler is not None:
            with contextlib.suppress(sqlite3.Error):
                store.flush(crawler.crawl, crawler.timeline)
        store.close()
        raise
    finally:
        if progress is not None:
            progress.close()
    estimate = crawl.estimate(extra_targets=max(16, min(256, len(crawl.ids) // K)))
    summary = summarize(crawler, estimate, str(args.db))
    try:
        store.finish(crawl, crawler.timeline, summary)
    finally:
        store.close()
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(summary) if args.json else format_summary(summary), flush=True)
    if args.plot is not None:
        try:
            draw_plot(args.plot, crawler, summary)
        except Exception as exc:  # a plotting problem must not hide the crawl's result
            sys.stderr.write(f"{PROG}: could not draw {args.plot}: {exc}\n")
            return 1
        if not args.json:
            print(f"plot:         {args.plot}", flush=True)
    return 0 if crawl.responders else 1


def _public_routers() -> list[Addr]:
    from mldht.runtime import PUBLIC_ROUTERS

    return list(PUBLIC_ROUTERS)


async def _main_async(args: argparse.Namespace) -> int:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()  # the crawl ends, and what it found is written
                    return

        tg.start_soon(on_signal)
        status = await handle(args, stop)
        tg.cancel_scope.cancel()
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the crawler program; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem is not None:
        parser.error(problem)
    from .cli import setup_logging

    setup_logging(args.verbose, PROG)
    try:
        return run(_main_async, args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"{PROG}: network error on {format_addr(args.bind)}: {exc}\n")
        return 1
    except MldhtError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
