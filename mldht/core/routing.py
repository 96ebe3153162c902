"""The Kademlia routing table (BEP 5, "Routing Table"), with libtorrent's refinements.

The table is a list of buckets, as in libtorrent: bucket ``i`` (for ``i`` below the last
index) holds the nodes whose ids share exactly ``i`` leading bits with our own id; the last
bucket, the *home* bucket, holds every node sharing at least that many bits. This is the
same table as BEP 5's ranges: only the bucket that contains our own id ever splits, and
splitting it appends a new home bucket.

Refinements beyond BEP 5 (all from libtorrent's routing_table.cpp):

* the first four buckets hold more nodes (``far_bucket_sizes``, 128/64/32/16 for k = 8);
* each bucket has a bounded replacement cache of nodes that answered us while the bucket
  was full; the newest entry wins, and entries are promoted when a node is removed or
  goes bad;
* at most one entry per public IP address in the whole table (live entries and caches);
  loopback and private addresses count per ip:port, so that a local network may run
  several nodes on one address;
* at most one entry per public /24 (IPv6: /64) in each bucket, live entries and the
  replacement cache together (libtorrent's restrict_routing_ips: "one per /24 per
  bucket"); local addresses are exempt. Both IP rules go with ``one_per_ip``;
* BEP 42-valid ids (the ``prefer`` hook) are preferred: a node whose id is not valid
  never pushes a valid one out (same ip:port with a new id, same /24, the replacement
  cache), while a valid newcomer to a full bucket that cannot split takes the place of
  the least recently seen invalid entry (which moves to the replacement cache). With
  ``enforce_node_id`` public nodes with BEP 42-invalid ids never enter (libtorrent's
  enforce_node_id);
* bogon addresses never enter (:mod:`mldht.core.netaddr`: unspecified, multicast,
  broadcast, reserved, port 0), nor loopback and private ones when ``local_network`` is
  False (our node is on a public address);
* the same ip:port showing up with a new id evicts the old entry, while the same id from
  another address does not move an entry that is not bad.

The admission rules are in :mod:`~mldht.core.routing_rules`, entries and buckets in
:mod:`~mldht.core.buckets`. A table holds one address family: BEP 32 keeps a separate
table for IPv6.

The table is pure: it never reads a clock or draws its own randomness. Every method that
depends on time takes ``now`` (seconds, any monotonic origin) and the RNG for refresh
targets is given to the constructor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .buckets import Bucket, NodeStatus, RoutingEntry, collect, entry_snapshot
from .compact import Addr, NodeInfo
from .ids import ID_BITS, ID_LEN, id_from_int, random_id_in_range
from .netaddr import local_allowed
from .routing_rules import TableRules

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

__all__ = ["NodeStatus", "RoutingEntry", "RoutingTable"]


_RTT_GAIN = 0.25  # weight of a new RTT sample in the smoothed RTT (an EWMA)


class RoutingTable(TableRules):
    """A BEP 5 routing table around ``own_id``.

    Keyword arguments:

    * ``k``: bucket size (BEP 5: 8).
    * ``far_bucket_sizes``: sizes of buckets 0, 1, 2, … that differ from ``k``
      (libtorrent: 16k, 8k, 4k, 2k). Pass ``()`` for plain BEP 5 buckets.
    * ``replacement_size``: bound of each bucket's replacement cache (default ``k``).
    * ``max_fails``: consecutive unanswered queries that make a node bad.
    * ``good_window``: seconds of activity that keep a node good (BEP 5: 15 min).
    * ``refresh_interval``: a bucket unchanged this long needs a refresh (BEP 5: 15 min).
    * ``ping_interval``: :meth:`node_queried` asks to ping one address at most once in
      this many seconds.
    * ``recent_pings``: how many addresses that memory holds (oldest forgotten first).
    * ``prefer``: nodes for which it returns True are chosen first from replacement caches
      and dropped last from them (e.g. BEP 42-verified ids); a node it rejects never
      pushes out one it accepts, and one it accepts may take a full bucket's place from
      one it rejects.
    * ``one_per_ip``: one entry per public IP in the table and one per public /24 (/64)
      per bucket (libtorrent's dht_restrict_routing_ips).
    * ``enforce_node_id``: public nodes whose id is not BEP 42-valid never enter.
    * ``local_network``: our own address scope: True on a loopback / private network,
      False on a public address (local-network nodes are then turned away), None unknown
      (local-network nodes allowed). Bogons never enter whatever the scope.
    """

    def __init__(
        self,
        own_id: bytes,
        rng: random.Random,
        *,
        k: int = 8,
        far_bucket_sizes: tuple[int, ...] = (128, 64, 32, 16),
        replacement_size: int | None = None,
        max_fails: int = 2,
        good_window: float = 15 * 60.0,
        refresh_interval: float = 15 * 60.0,
        ping_interval: float = 5 * 60.0,
        recent_pings: int = 1024,
        prefer: Callable[[NodeInfo], bool] | None = None,
        one_per_ip: bool = True,
        enforce_node_id: bool = False,
        local_network: bool | None = None,
    ) -> None:
        if len(own_id) != ID_LEN:
            raise InvalidArgument(f"own id must be {ID_LEN} bytes, got {len(own_id)}")
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, got {k}")
        if any(size < 1 for size in far_bucket_sizes):
            raise InvalidArgument(f"bucket sizes must be at least 1: {far_bucket_sizes!r}")
        if replacement_size is None:
            replacement_size = k
        if replacement_size < 0:
            raise InvalidArgument(f"replacement_size must be >= 0, got {replacement_size}")
        if max_fails < 1:
            raise InvalidArgument(f"max_fails must be at least 1, got {max_fails}")
        if recent_pings < 0:
            raise InvalidArgument(f"recent_pings must be >= 0, got {recent_pings}")
        self._own_id = bytes(own_id)
        self._own_int = int.from_bytes(own_id, "big")
        self._rng = rng
        self._k = k
        self._far_sizes = tuple(far_bucket_sizes)
        self._cache_size = replacement_size
        self._max_fails = max_fails
        self._good_window = good_window
        self._refresh_interval = refresh_interval
        self._ping_interval = ping_interval
        self._recent_pings_max = recent_pings
        self._prefer = prefer
        self._enforce_node_id = enforce_node_id
        self._local_ok = local_allowed(local_network)

        self._buckets: list[Bucket] = [Bucket(0, self._limit(0), None)]
        # live entries and cached entries alike: one entry per id and one per IP
        self._by_id: dict[bytes, RoutingEntry] = {}
        self.by_id = self._by_id
        """Every entry by node id (read-only for callers: the answer path looks a
        querier up here and, for a live one at its address, only stamps ``last_query``)."""
        # One entry per public IP (libtorrent's defence against one host filling the
        # table). Loopback and private addresses (BEP 42's exempt ranges) count per
        # ip:port, so that nodes of a local network may share one address;
        # ``one_per_ip=False`` counts every address per ip:port (libtorrent's
        # dht_restrict_routing_ips=false).
        self._one_per_ip = one_per_ip
        self._by_ip: dict[object, RoutingEntry] = {}
        self._live_count = 0
        self.changes = 0
        """Bumped whenever the set of live entries, or of the bad ones among them, changes
        (what :meth:`closest` can return: callers' caches key on it)."""
        # buckets that may need a questionable node pinged (an ordered set)
        self._dirty: dict[Bucket, None] = {}
        self._recent_pings: OrderedDict[Addr, float] = OrderedDict()
        self.on_change: Callable[[NodeInfo, bool], None] | None = None
        """Called as ``on_change(node, added)`` when a node enters or leaves the live
        table (replacement caches not counted)."""

    # ------------------------------------------------------------------ inspection

    @property
    def own_id(self) -> bytes:
        return self._own_id

    @property
    def k(self) -> int:
        return self._k

    @property
    def max_fails(self) -> int:
        """Unanswered queries that make an entry bad (``closest`` skips bad entries)."""
        return self._max_fails

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def __len__(self) -> int:
        """The number of live entries (replacement caches not counted)."""
        return self._live_count

    def __contains__(self, node_id: object) -> bool:
        """Whether a live entry has this id."""
        if not isinstance(node_id, bytes):
            return False
        entry = self._by_id.get(node_id)
        return entry is not None and entry.in_table

    def __iter__(self) -> Iterator[NodeInfo]:
        """The live nodes, bucket by bucket (farthest bucket first)."""
        for bucket in self._buckets:
            for entry in list(bucket.live):
                yield entry.node

    def get(self, node_id: bytes) -> RoutingEntry | None:
        """The live entry with this id, if any."""
        entry = self._by_id.get(node_id)
        return entry if entry is not None and entry.in_table else None

    def replacement_count(self) -> int:
        """The number of nodes waiting in replacement caches."""
        return sum(len(bucket.cache) for bucket in self._buckets)

    def bucket_index(self, node_id: bytes) -> int:
        """The index of the bucket that holds (or would hold) ``node_id``."""
        return self._index_of(int.from_bytes(node_id, "big"))

    def bucket_range(self, index: int) -> tuple[int, int]:
        """The id range ``[lo, hi)`` of bucket ``index`` (BEP 5's ``min`` and ``max``)."""
        if not 0 <= index < len(self._buckets):
            raise InvalidArgument(f"no bucket {index} (the table has {len(self._buckets)})")
        if index == len(self._buckets) - 1:
            # the home bucket: every id sharing at least `index` bits with ours
            shift = ID_BITS - index
            lo = (self._own_int >> shift) << shift
            return lo, lo + (1 << shift)
        # sharing exactly `index` bits: our prefix, then the next bit flipped
        shift = ID_BITS - 1 - index
        lo = ((self._own_int >> shift) ^ 1) << shift
        return lo, lo + (1 << shift)

    def state(self, entry: RoutingEntry, now: float) -> NodeStatus:
        """The BEP 5 state of an entry at time ``now``.

        Bad: ``max_fails`` of our queries in a row unanswered. Good: answered us in the
        last ``good_window``, or queried us in that window (every entry has answered us at
        some time). Questionable otherwise, and also while its last query to it is
        unanswered: a node that just failed us is not "good" whatever the clock says
        (libtorrent likewise treats any failure count as unconfirmed).
        """
        if entry.fails >= self._max_fails:
            return NodeStatus.BAD
        if entry.fails:
            return NodeStatus.QUESTIONABLE
        if now - entry.last_seen < self._good_window:
            return NodeStatus.GOOD
        return NodeStatus.QUESTIONABLE

    def state_of(self, node_id: bytes, now: float) -> NodeStatus | None:
        """The state of the live entry with this id, or None when there is none."""
        entry = self.get(node_id)
        return None if entry is None else self.state(entry, now)

    def good_nodes(self, now: float) -> list[NodeInfo]:
        """Every live node that is good at ``now``."""
        return [
            entry.node
            for bucket in self._buckets
            for entry in bucket.live
            if self.state(entry, now) is NodeStatus.GOOD
        ]

    # ------------------------------------------------------------------ events

    def node_responded(
        self,
        node: NodeInfo,
        now: float,
        rtt: float | None = None,
        version: bytes | None = None,
    ) -> None:
        """``node`` answered one of our queries: insert it or refresh it as good.

        A new node goes into its bucket if there is room; else it replaces a bad node;
        else, in the home bucket, the bucket splits and the insertion is retried; else it
        waits in the replacement cache while the bucket's least recently seen
        questionable node is offered for a ping (:meth:`nodes_to_ping`).
        """
        if node.id == self._own_id:
            return
        entry = self._by_id.get(node.id)
        if entry is not None:
            if entry.node.addr == node.addr:
                self._refresh_entry(entry, now, rtt, version)
                return
            # The same id from another address: an entry does not move (libtorrent), so
            # nobody can take over a good node's place by claiming its id.
            if not self._is_bad(entry):
                return
        if not self._admissible(node):
            return
        holder = self._by_ip.get(self._ip_key(node.addr))
        # One entry per IP. The same ip:port with a new id means the node restarted with a
        # new id (libtorrent evicts the old one) unless only the old id is BEP 42-valid;
        # another port on the same IP is turned away unless the entry holding it is bad.
        preferred = self._prefer is not None and self._prefer(node)
        if holder is not None and not self._may_displace(holder, node, preferred):
            return
        subnet = self._subnet(node)
        rival = self._subnet_rival(node, subnet, (entry, holder))
        if rival is not None and not self._may_displace(rival, node, preferred):
            return
        emptied: list[Bucket] = []
        for old in (entry, holder, rival):
            if old is not None and self._by_id.get(old.node.id) is old:
                emptied.extend(self._evict(old))
        entry = RoutingEntry(
            node=node,
            id_int=int.from_bytes(node.id, "big"),
            first_seen=now,
            last_response=now,
            rtt=rtt,
            version=version,
            subnet=subnet,
            preferred=preferred,
        )
        self._by_id[node.id] = entry
        self._by_ip[self._ip_key(node.addr)] = entry
        self._place(entry, now)
        for bucket in emptied:
            self._refill(bucket, now)

    def node_failed(self, node: NodeInfo, now: float) -> None:
        """One of our queries to ``node`` went unanswered.

        Matches by id and address both. When the failures reach ``max_fails`` the node is
        bad and the best replacement takes its place; with an empty cache the bad node
        stays (out of :meth:`closest`) until a newcomer replaces it, so that a short
        outage of our own link does not wipe the table.
        """
        entry = self._by_id.get(node.id)
        if entry is None or entry.node.addr != node.addr:
            return
        entry.fails += 1
        if entry.fails == self._max_fails:
            self.changes += 1  # bad now: out of closest()
        entry.ping_pending = False
        bucket = self._buckets[self._index_of(entry.id_int)]
        if entry.in_table and entry.fails == self._max_fails:
            bucket.version += 1  # its bad count changed
        if not entry.in_table:
            if entry.fails >= self._max_fails:
                bucket.cache.remove(entry)
                self._forget(entry)
            return
        if entry.fails >= self._max_fails and bucket.cache:
            self._unlink_live(bucket, entry)
            self._forget(entry)
            self._refill(bucket, now)
        if bucket.cache:
            # BEP 5: a node that failed is pinged once more before it is replaced; other
            # questionable nodes of the bucket may be pinged next.
            self._dirty[bucket] = None

    def node_queried(self, node: NodeInfo, now: float) -> bool:
        """``node`` sent us a query. Returns True when the caller should ping it.

        A known node gets its last-query time updated (which keeps it good, BEP 5). A node
        that has only queried us is never inserted (BEP 5, "Routing Table"): when it could
        take a place in the table (its bucket has room, a bad node, can split, or has room
        in its replacement cache) this returns True, and the caller pings it and reports
        the answer with :meth:`node_responded`.

        The table itself remembers which addresses it asked to ping: it asks for one
        address at most once per ``ping_interval`` (a bounded memory of ``recent_pings``
        addresses), so callers need no rate limit of their own for this.
        """
        return self.queried(node.id, node.addr, now)

    def queried(self, node_id: bytes, addr: Addr, now: float) -> bool:
        """:meth:`node_queried` for a querier given by id and address (the answer path
        builds no :class:`NodeInfo` for a querier the table knows or asked about)."""
        if node_id == self._own_id:
            return False
        entry = self._by_id.get(node_id)
        if entry is not None:
            if entry.node.addr == addr:
                entry.last_query = now
                # a bad node that is alive again is worth a ping: an answer clears it
                return entry.in_table and self._is_bad(entry) and self._may_ping(entry.node, now)
            if not self._is_bad(entry):
                return False
        if now - self._recent_pings.get(addr, -1e300) < self._ping_interval:
            return False  # what _may_ping would say at the end of _may_take
        return self._may_take(NodeInfo(node_id, addr), entry, now)

    def remove(self, node_id: bytes) -> bool:
        """Drop the node with this id (live or cached). Returns whether it was known.

        A live node's place goes to the best replacement from its bucket's cache.
        """
        entry = self._by_id.get(node_id)
        if entry is None:
            return False
        for bucket in self._evict(entry):
            self._refill(bucket, None)
        return True

    # ------------------------------------------------------------------ work for the caller

    def nodes_to_ping(self, now: float) -> list[NodeInfo]:
        """Questionable nodes to ping, so that waiting replacements may take their place.

        For each bucket that has replacements waiting and no ping outstanding, this names
        its least recently seen questionable node (one that already failed once first:
        BEP 5 pings a failed node once more before replacing it). Each node is named once;
        the caller must report it with :meth:`node_responded` or :meth:`node_failed`. A bad
        outcome replaces it with the best replacement; a good one moves on to the next
        questionable node of the bucket on a later call.

        Buckets are looked at again when a replacement arrives, when a ping is reported
        and when :meth:`buckets_to_refresh` names them, so call this after those.
        """
        out: list[NodeInfo] = []
        dirty = list(self._dirty)
        self._dirty.clear()
        for bucket in dirty:
            if not bucket.cache or any(e.ping_pending for e in bucket.live):
                continue
            candidates = [e for e in bucket.live if self.state(e, now) is NodeStatus.QUESTIONABLE]
            if not candidates:
                continue
            victim = min(candidates, key=lambda e: (-e.fails, e.last_seen))
            victim.ping_pending = True
            out.append(victim.node)
        return out

    def buckets_to_refresh(self, now: float) -> list[bytes]:
        """Random lookup targets, one in the range of each bucket that needs a refresh.

        A bucket needs one when it has not changed for ``refresh_interval`` (BEP 5). The
        buckets named are marked as refreshed at ``now``. An empty table names none: the
        caller bootstraps instead.
        """
        if not self._live_count:
            return []
        out: list[bytes] = []
        for bucket in self._buckets:
            if bucket.last_changed is None:
                continue
            if now - bucket.last_changed >= self._refresh_interval:
                lo, hi = self.bucket_range(bucket.index)
                out.append(random_id_in_range(self._rng, lo, hi))
                bucket.last_changed = now
                if bucket.cache:
                    # nodes of a stale bucket may have gone questionable since replacements
                    # arrived: look for one to ping
                    self._dirty[bucket] = None
        return out

    def next_refresh_deadline(self) -> float | None:
        """When :meth:`buckets_to_refresh` will next name a bucket (None if the table is empty)."""
        if not self._live_count:
            return None
        times = [b.last_changed for b in self._buckets if b.last_changed is not None]
        return min(times) + self._refresh_interval if times else None

    # ------------------------------------------------------------------ queries

    def closest(self, target: bytes, n: int = 8) -> list[NodeInfo]:
        """The ``n`` live, non-bad nodes closest to ``target`` by XOR distance, closest first."""
        if len(target) != ID_LEN:
            raise InvalidArgument(f"target must be {ID_LEN} bytes, got {len(target)}")
        if n <= 0:
            return []
        t = int.from_bytes(target, "big")
        x = t ^ self._own_int
        home = len(self._buckets) - 1
        buckets = self._buckets
        max_fails = self._max_fails
        out: list[NodeInfo] = []
        # Every bucket is its own distance tier. For i < home, the nodes of bucket i agree
        # with our id on bits 0..i-1 and differ at bit i, so their distance to the target
        # is x on bits 0..i-1 and (not x) at bit i. Hence bucket i lies wholly closer than
        # every deeper bucket when bit i of x is 1, and wholly farther when it is 0. The
        # order is therefore: buckets whose x bit is 1, shallowest first; the home bucket;
        # buckets whose x bit is 0, deepest first.
        top = x >> (ID_BITS - home)  # bits 0..home-1 of x
        rest = top
        while rest:
            i = home - rest.bit_length()
            rest ^= 1 << (home - 1 - i)
            if collect(buckets[i], t, n, out, max_fails):
                return out
        if collect(buckets[home], t, n, out, max_fails):
            return out
        for i in range(home - 1, -1, -1):
            if not (top >> (home - 1 - i)) & 1 and collect(buckets[i], t, n, out, max_fails):
                return out
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """A JSON-able dump of the whole table, for state dumps and debugging."""
        buckets: list[dict[str, Any]] = []
        for bucket in self._buckets:
            lo, hi = self.bucket_range(bucket.index)
            buckets.append(
                {
                    "index": bucket.index,
                    "prefix_bits": bucket.index,
                    "home": bucket.index == len(self._buckets) - 1,
                    "first": id_from_int(lo).hex(),
                    "last": id_from_int(hi - 1).hex(),
                    "limit": bucket.limit,
                    "last_changed": bucket.last_changed,
                    "nodes": [entry_snapshot(e, self.state(e, now)) for e in bucket.live],
                    "replacements": [entry_snapshot(e, self.state(e, now)) for e in bucket.cache],
                }
            )
        return {
            "own_id": self._own_id.hex(),
            "k": self._k,
            "nodes": self._live_count,
            "replacements": self.replacement_count(),
            "buckets": buckets,
        }

    # ------------------------------------------------------------------ internals

    def _limit(self, index: int) -> int:
        return self._far_sizes[index] if index < len(self._far_sizes) else self._k

    def _refresh_entry(
        self, entry: RoutingEntry, now: float, rtt: float | None, version: bytes | None
    ) -> None:
        was_pending = entry.ping_pending
        was_bad = entry.fails >= self._max_fails
        entry.last_response = now
        if entry.fails >= self._max_fails:
            self.changes += 1  # good again
        entry.fails = 0
        entry.ping_pending = False
        if rtt is not None:
            entry.rtt = rtt if entry.rtt is None else entry.rtt + _RTT_GAIN * (rtt - entry.rtt)
        if version is not None:
            entry.version = version
        bucket = self._buckets[self._index_of(entry.id_int)]
        if entry.in_table:
            if was_bad:
                bucket.version += 1  # its bad count changed
            bucket.last_changed = now  # BEP 5: a node in the bucket answered
            if was_pending and bucket.cache:
                # BEP 5: it answered, so move on to the next questionable node
                self._dirty[bucket] = None
            return
        # A cached node answered again: it is the newest candidate, and may now fit.
        bucket.cache.remove(entry)
        self._place(entry, now)

    def _place(self, entry: RoutingEntry, now: float) -> None:
        """Put an indexed entry into its bucket, a bad node's place, or the cache."""
        while True:
            index = self._index_of(entry.id_int)
            bucket = self._buckets[index]
            if len(bucket.live) < bucket.limit:
                self._link_live(bucket, entry, now)
                return
            bad = [e for e in bucket.live if self._is_bad(e)]
            if bad:
                # BEP 5: a bad node is replaced by the new one
                self._unlink_live(bucket, bad[0])
                self._forget(bad[0])
                self._link_live(bucket, entry, now)
                return
            if index == len(self._buckets) - 1 and index < ID_BITS - 1:
                # BEP 5 splits a full bucket that holds our id. Like libtorrent we split
                # even when some of its nodes are questionable: splitting drops nobody.
                self._split(now)
                continue
            if self._is_preferred(entry):
                # BEP 42: a valid newcomer takes the place of the least recently seen
                # invalid entry, which waits in the cache instead
                invalid = [e for e in bucket.live if not self._is_preferred(e)]
                if invalid:
                    loser = min(invalid, key=lambda e: e.last_seen)
                    self._unlink_live(bucket, loser)
                    self._link_live(bucket, entry, now)
                    self._add_to_cache(bucket, loser)
                    return
            self._add_to_cache(bucket, entry)
            return

    def _add_to_cache(self, bucket: Bucket, entry: RoutingEntry) -> None:
        entry.in_table = False
        entry.ping_pending = False
        if self._cache_size == 0:
            self._forget(entry)
            return
        cache = bucket.cache
        if len(cache) >= self._cache_size:
            # newest wins, but a preferred candidate is only pushed out by another one
            drop = next((e for e in cache if not self._is_preferred(e)), None)
            if drop is None:
                if not self._is_preferred(entry):
                    self._forget(entry)
                    return
                drop = cache[0]
            cache.remove(drop)
            self._forget(drop)
        cache.append(entry)
        self._dirty[bucket] = None

    def _refill(self, bucket: Bucket, now: float | None) -> None:
        """Promote replacements into the free places of ``bucket``."""
        while bucket.cache and len(bucket.live) < bucket.limit:
            best = max(
                range(len(bucket.cache)),
                key=lambda i: (self._is_preferred(bucket.cache[i]), -bucket.cache[i].fails, i),
            )
            entry = bucket.cache.pop(best)
            bucket.live.append(entry)
            bucket.version += 1
            self.changes += 1
            entry.in_table = True
            self._live_count += 1
            if self.on_change is not None:
                self.on_change(entry.node, True)
            if now is not None:
                bucket.last_changed = now  # BEP 5: a node was replaced

    def _link_live(self, bucket: Bucket, entry: RoutingEntry, now: float) -> None:
        bucket.live.append(entry)
        bucket.version += 1
        self.changes += 1
        entry.in_table = True
        self._live_count += 1
        bucket.last_changed = now  # BEP 5: a node was added
        if self.on_change is not None:
            self.on_change(entry.node, True)

    def _unlink_live(self, bucket: Bucket, entry: RoutingEntry) -> None:
        bucket.live.remove(entry)
        bucket.version += 1
        self.changes += 1
        entry.in_table = False
        entry.ping_pending = False
        self._live_count -= 1
        if self.on_change is not None:
            self.on_change(entry.node, False)

    def _forget(self, entry: RoutingEntry) -> None:
        """Drop an entry that is in no bucket any more from the indexes."""
        if self._by_id.get(entry.node.id) is entry:
            del self._by_id[entry.node.id]
        if self._by_ip.get(self._ip_key(entry.node.addr)) is entry:
            del self._by_ip[self._ip_key(entry.node.addr)]

    def _evict(self, entry: RoutingEntry) -> list[Bucket]:
        """Remove an entry wherever it is; returns the bucket it left a place in, if any."""
        bucket = self._buckets[self._index_of(entry.id_int)]
        self._forget(entry)
        if entry.in_table:
            self._unlink_live(bucket, entry)
            return [bucket]
        bucket.cache.remove(entry)
        return []

    def _split(self, now: float) -> None:
        """Split the home bucket: its nodes sharing one more bit with us move to a new one."""
        old = self._buckets[-1]
        depth = old.index + 1
        new = Bucket(depth, self._limit(depth), now)
        old.last_changed = now
        self._buckets.append(new)

        def deeper(e: RoutingEntry) -> bool:
            return ID_BITS - (e.id_int ^ self._own_int).bit_length() >= depth

        moved = [e for e in old.live if deeper(e)]
        old.live = [e for e in old.live if not deeper(e)]
        new.live = moved
        new.cache = [e for e in old.cache if deeper(e)]
        old.cache = [e for e in old.cache if not deeper(e)]
        for bucket in (old, new):
            bucket.version += 1
            self.changes += 1
            if len(bucket.live) > bucket.limit:
                # possible only with far_bucket_sizes that grow with depth: the nodes
                # answered longest ago wait in the cache
                bucket.live.sort(key=lambda e: e.last_response, reverse=True)
                overflow = bucket.live[bucket.limit :]
                del bucket.live[bucket.limit :]
                self._live_count -= len(overflow)
                for e in overflow:
                    if self.on_change is not None:
                        self.on_change(e.node, False)
                    e.in_table = False
                    e.ping_pending = False
                bucket.cache[:0] = overflow
            while len(bucket.cache) > self._cache_size:
                self._forget(bucket.cache.pop(0))
            if bucket.cache:
                self._dirty[bucket] = None
