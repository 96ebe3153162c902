"""The crawl's policy, sans-IO: which request to send next, and what each answer teaches.

No sockets, no event loop, no database: :class:`Crawl` takes replies and the time in
(``on_sample``, ``on_ping``, ``on_lookup``, ``on_peers``, each with ``now``) and gives
the requests to send out (:meth:`Crawl.next_job`). :mod:`mldht.crawl.driver` sends them
through a :class:`~mldht.runtime.DHTNode`; :mod:`mldht.crawl.store` writes what it learnt.

The policy:

* It sweeps the id space with a cursor (after the8472/mldht's keyspace sampler): the next
  node queried is the first unqueried one at or after the cursor. Each query is a BEP 51
  ``sample_infohashes`` whose ``target`` lies in the wider of the two gaps between that
  node's id and its neighbours among the ids known: the node knows its own neighbourhood
  best, so its closest nodes to that target are the ones the crawl is missing. Every
  reply's ``nodes`` feed the sweep. A few ``find_node`` lookups to uniformly random
  targets seed it (and serve the size estimate).
* Early in the sweep, when little of a node's region is known, its widest gap is wide and
  its sample's target lands far from it: its reply tells of a distant region, nothing of
  its own neighbourhood. When the sweep has ended, each node that answered a sample aimed
  more than :data:`HOME_REACH` mean spacings away is asked once more, with a target
  within that distance in its wider gap (a ``home`` job: one ``find_node`` query to that
  node, not a lookup), and the nodes this finds are swept in turn; this repeats while
  such nodes remain. (A node just past a large aligned block boundary of ids is among
  the closest nodes only of holders on its own side of it: if these were all asked far
  away early, nothing else returns it. Without this, 95.7% of a simulated 10^5-node
  network answered; with it, see the README.) In the same rounds, the two nodes at the
  ends of each gap between known ids wider than :data:`HOME_GAP` mean spacings (a run of
  nodes no reply named, likely) are asked by find_node with a target inside it, once per
  gap.
* Then a few rounds of lookups probe the id regions where, at the density seen, nodes
  should be but none is known (a node alone in such a region is returned only for a
  target inside it).
* Each address is sampled once, plus: a ``ping`` when it did not answer the sample (to
  tell a silent non-BEP 51 node from a dead one); the ``home`` find_node above; and
  another sample only once the ``interval`` it gave has passed (BEP 51: "indexers should
  not query this node again sooner"; never sooner than ``min_interval`` either), only
  while it holds more info-hashes (``num``) than it has shown, and, after the second,
  only while its last two samples brought info-hashes new to the crawl (each info-hash
  sits on ~8 nodes).
* :class:`~mldht.crawl.pacing.Pacer` paces the queries (elsewhere).
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .aim import empty_regions, far_from_home, gap_target, wide_gaps
from .estimate import SPACE, K, SizeEstimate, estimate_size
from .shard import WHOLE, Shard

__all__ = [
    "BUSY",
    "DEAD",
    "DONE",
    "FRONTIER",
    "WAITING",
    "Crawl",
    "CrawlNode",
    "InfoHash",
    "Job",
    "NodeLike",
    "SampleReply",
    "format_version",
]

Addr = tuple[str, int]

DEFAULT_MAX_NODES = 100_000
DEFAULT_MAX_INFOHASHES = 1_000_000
DEFAULT_MIN_INTERVAL = 10.0
"""Floor on the wait before sampling a node again, for nodes that give ``interval`` 0."""
PEER_LOOKUPS = 8
"""At most this many get_peers lookups (``--peers``) run at once."""
PROBE_ROUNDS = 3
"""Rounds of lookups into id regions that look empty, once the sweep has ended."""
PROBE_MIN_EXPECTED = 1.0
"""A region is probed when it should hold at least this many nodes (at the density seen)."""
PROBE_SHARE = 20
"""A probe round sends at most one lookup per this many nodes found (and at least 4)."""
HOME_GAP = 6.0
"""A gap between consecutive known ids wider than this many mean spacings (1 in e^6 of
gaps between uniform ids) is asked about of the nodes at its two ends."""
HOME_REACH = 4.0
"""A sample aimed farther than this many mean id spacings (at the density known when the
sweep ends) from the node's id told nothing of its neighbourhood: the node is asked again
(once), at most this far."""

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
    target: int | None = None
    """Where its first sample aimed."""
    asked_home: bool = False
    """It was asked again for its own neighbourhood (a ``home`` job)."""


@dataclass(slots=True, eq=False)
class InfoHash:
    first_seen: float
    sources: int = 0
    peers: int | None = None


@dataclass(slots=True, eq=False)
class Job:
    """One request the crawl wants sent: ``kind`` is sample, home (one find_node query to
    the node: its neighbours), ping, lookup, probe (a lookup) or peers."""

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
    * ``shard``: sample only the nodes whose ids lie in this part of the id space (the
      others are counted in ``outside``, not kept), look up only targets in it, and
      estimate the size of the whole network from it.
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
        shard: Shard = WHOLE,
    ) -> None:
        self.rng = rng
        self.shard = shard
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
        self._contacts: list[Addr] = []
        self._pings: deque[Addr] = deque()
        self._lookups: deque[bytes] = deque()
        self._probes: deque[bytes] = deque()
        self._home: deque[tuple[Addr, int | None]] = deque()  # (node, target or near)
        self._gaps_asked: set[tuple[int, int]] = set()
        self._home_due = False  # nodes sampled since the last home round was planned
        self.home_asked = 0
        """Nodes asked again for their neighbourhood (``home`` jobs)."""
        self._probed: set[tuple[int, int]] = set()
        self._found_at_probe = -1
        self.probe_rounds = 0
        self._peer_queue: deque[bytes] = deque()
        self._resample: list[tuple[float, int, Addr]] = []  # (due, tiebreak, addr)
        self._tiebreak = 0
        self._turn = 0
        self.lookup_results: list[tuple[int, list[int]]] = []
        self.peers_in_flight = 0
        self.peers_done = 0
        """get_peers lookups (``--peers``) ended, with an answer or not."""
        self.peers_failed = 0
        """... of which ended without an answer (their ``peers`` stays unknown)."""
        self.sweeps = 0
        self.responders = 0
        self.bep51_nodes = 0
        self.queried = 0
        self.samples_received = 0
        self.nodes_dropped = 0
        self.infohashes_dropped = 0
        self.id_mismatches = 0
        self.outside = 0
        """Nodes reported to the crawl whose ids lie outside its shard (not kept)."""
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
            self._contacts.append(addr)

    def _contacts_pending(self) -> bool:
        """A first contact's sample (or ping) is yet to be sent or to end."""
        return any(self.nodes[a].state in (FRONTIER, BUSY) for a in self._contacts)

    def add_lookup(self, target: bytes) -> None:
        """Plan a find_node lookup to ``target`` (seeds the sweep and the size estimate)."""
        self._lookups.append(target)

    def add_random_lookups(self, n: int) -> None:
        """Plan ``n`` find_node lookups to uniformly random targets (drawn from ``rng``)."""
        for _ in range(n):
            self.add_lookup(_id_bytes(self.shard.random_id(self.rng)))

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
        if not self.shard.contains(_id_int(node_id)):
            self.outside += 1
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

    def keeps(self, rec: CrawlNode) -> bool:
        """The node is one of the crawl's: its id is known and lies in the shard (a first
        contact outside it was only asked for its neighbours)."""
        return rec.id is not None and self.shard.contains(_id_int(rec.id))

    def _set_id(self, rec: CrawlNode, node_id: bytes) -> None:
        if rec.id == node_id:
            return
        if rec.id is not None and self.shard.contains(old := _id_int(rec.id)):
            self._id_count[old] -= 1
            if self._id_count[old] <= 0:
                del self._id_count[old]
                i = bisect.bisect_left(self._ids, old)
                if i < len(self._ids) and self._ids[i] == old:
                    del self._ids[i]
        rec.id = node_id
        new = _id_int(node_id)
        if not self.shard.contains(new):
            return  # the ids known are the shard's (targets, probes, estimate)
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
        """The answer to a sample or home job (None or ``node_id`` None: no valid
        answer). A home job's reply (a find_node's) counts only for the nodes it names."""
        rec = job.node
        assert rec is not None
        if job.kind == "home":
            for n in reply.nodes if reply is not None and reply.node_id is not None else ():
                self.discover(n.id, n.addr, now)
            return
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
        self.peers_done += 1
        self.peers_failed += count is None
        info = self.infohashes.get(ih)
        if info is not None and count is not None:
            info.peers = count
            self.dirty_infohashes.add(ih)

    # ---------------------------------------------------------------- planning

    def target_for(self, rec: CrawlNode) -> bytes:
        """A target in the widest gap of known ids next to ``rec``'s id (random if none).

        The node's table is densest around its own id, so its closest nodes to a point
        in an adjacent gap are the nodes the crawl lacks there. In a shard, the gaps end
        at the shard's edges.
        """
        ids = self._ids
        shard = self.shard
        if rec.id is None or len(ids) < 2 or not shard.contains(x := _id_int(rec.id)):
            return _id_bytes(shard.random_id(self.rng))
        return _id_bytes(gap_target(ids, shard, x, self.rng))

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
        if self._lookups and (self.responders or not self._contacts_pending()):
            # after a first contact answered: the node's lookups start from its table
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
        if self._home:
            addr, target = self._home.popleft()
            rec = self.nodes[addr]
            rec.queries += 1
            self.home_asked += 1
            self.dirty_nodes.add(rec.addr)
            if target is None:
                assert rec.id is not None
                reach = round(HOME_REACH * self.shard.size / len(self._ids))
                target = gap_target(self._ids, self.shard, _id_int(rec.id), self.rng, reach)
            return Job("home", rec, _id_bytes(target))
        if idle and self._home_due:
            self._plan_home()
            if self._home:
                return self.next_job(now)
        if idle and not self._probes:
            self._plan_probes()
        if self._probes:
            return Job("probe", None, self._probes.popleft())
        return self._peers_job()

    def empty_regions(self, min_expected: float) -> list[tuple[float, int, int]]:
        """Id regions not yet probed where no node is known though, at the density seen,
        at least ``min_expected`` should be (see :func:`~mldht.crawl.aim.empty_regions`)."""
        return empty_regions(self._ids, self.shard, min_expected, self._probed)

    def _plan_home(self) -> None:
        """Once the sweep has ended: plan a home job for each node that answered a sample
        aimed far from its id (farther than :data:`HOME_REACH` mean spacings, at the
        density known now), once per node, and for the two ends of each gap wider than
        :data:`HOME_GAP` spacings (a target inside it), once per gap."""
        self._home_due = False
        if len(self._ids) < 2:
            return
        spacing = self.shard.size / len(self._ids)
        answered: dict[int, CrawlNode] = {}
        for rec in self.nodes.values():
            if not rec.responded or rec.id is None or not self.keeps(rec):
                continue
            answered[x := _id_int(rec.id)] = rec
            t = rec.target
            if not rec.asked_home and t is not None and far_from_home(x, t, HOME_REACH * spacing):
                rec.asked_home = True
                self._home.append((rec.addr, None))
        # the gaps between nodes that answered (a dead address's id does not end one)
        for a, b in wide_gaps(sorted(answered), self.shard, HOME_GAP * spacing):
            if (a, b) in self._gaps_asked:
                continue
            self._gaps_asked.add((a, b))
            width = (b - a) % SPACE
            for end in (answered[a], answered[b]):
                self._home.append((end.addr, (a + self.rng.randrange(1, width)) % SPACE))

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
        for _, start, end in self.empty_regions(PROBE_MIN_EXPECTED)[:budget]:
            self._probed.add((start, end))
            self._probes.append(_id_bytes(start + self.rng.randrange(end - start)))

    def _sample(self, rec: CrawlNode) -> Job:
        rec.state = BUSY
        rec.queries += 1
        rec.samples_asked += 1
        self.dirty_nodes.add(rec.addr)
        target = self.target_for(rec)
        if rec.target is None:
            rec.target = _id_int(target)
            self._home_due = True
        return Job("sample", rec, target)

    def _peers_job(self) -> Job | None:
        if not self._peer_queue or self.peers_in_flight >= PEER_LOOKUPS:
            return None
        self.peers_in_flight += 1
        return Job("peers", None, self._peer_queue.popleft())

    @property
    def peers_planned(self) -> int:
        """get_peers lookups planned so far (``--peers``: one per info-hash found)."""
        return self.peers_done + self.peers_in_flight + len(self._peer_queue)

    def next_due(self) -> float | None:
        """When the next planned sample falls due (None when none is planned)."""
        return self._resample[0][0] if self._resample else None

    def finished(self, now: float, deadline: float) -> bool:
        """Nothing left to do before ``deadline`` (assuming no request is in flight)."""
        if self._first or self._pings or self._lookups or self._frontier or self._peer_queue:
            return False
        if self._probes or self.peers_in_flight or self._home or self._home_due:
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
            targets += [(self.shard.random_id(rng), ()) for _ in range(extra_targets)]
            what = "the crawled set"
        else:
            what = "lookups and the crawled set"
        bounds = None if self.shard.whole else (self.shard.lo, self.shard.hi)
        return estimate_size(self._ids, targets, K, what, bounds)
