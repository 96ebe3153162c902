"""Keeping the routing table alive: bootstrap with backoff, periodic maintenance.

* :class:`Bootstrapper`: the self-lookup from the routers (BEP 5, "Routing Table"), then a
  lookup into every far bucket; while the table holds fewer than k nodes the self-lookup is
  run again, 5 s after the first failure, doubling up to 5 min; when the table becomes
  empty later, the node joins again from the routers. This is the node's only join retry
  policy: the runtime hands the routers over once and logs from :attr:`Bootstrapper.failed_rounds`
  and :attr:`Bootstrapper.next_retry`.
* :class:`Maintenance`: every ``maintenance_interval``, the bootstrap retry when due, pings
  of questionable nodes, refresh lookups of stale buckets and the stores' expiry.

No maintenance work runs as one long callback: the round only queues it, and a *step*
every :data:`STEP_INTERVAL` seconds while work is queued starts at most
:data:`LOOKUPS_PER_STEP` refresh lookups (the far-bucket lookups after a bootstrap
too), sends at most :data:`PINGS_PER_STEP` pings and runs one bounded slice of each
store's expiry (:meth:`~mldht.core.peer_store.PeerStore.expire_some`,
:data:`ITEMS_PER_STEP` items).
"""

from __future__ import annotations

import math
from collections import deque

from .compact import Addr, NodeInfo
from .context import Context
from .ids import random_id_in_range
from .item_store import ItemStore
from .krpc import Ping
from .operations import BootstrapOp, FindNodeOp
from .peer_store import PeerStore

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "ITEMS_PER_STEP",
    "LOOKUPS_PER_STEP",
    "PINGS_PER_STEP",
    "STEP_INTERVAL",
    "Bootstrapper",
    "Maintenance",
    "far_bucket_targets",
]

BACKOFF_MIN = 5.0
"""Seconds before the first bootstrap retry."""
BACKOFF_MAX = 300.0
"""Upper bound of the bootstrap retry delay."""
STEP_INTERVAL = 0.05
"""Seconds between two steps of queued maintenance work."""
LOOKUPS_PER_STEP = 2
"""Refresh lookups started per step (40 a second: a far-bucket refresh of a 20-bucket
table takes half a second)."""
PINGS_PER_STEP = 8
"""Pings of questionable nodes sent per step."""
ITEMS_PER_STEP = 1_000
"""Expired items dropped per step at most."""

RefreshTarget = tuple[bytes, bool]
"""A refresh lookup to start: (target, whether to start from the table's nodes)."""


class Bootstrapper:
    """Runs the bootstrap lookup and owns its retry schedule (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.backoff = BACKOFF_MIN
        """The delay before the next retry, should the running bootstrap fail."""
        self.next_retry: float | None = None
        """When the self-lookup is due again (None: not scheduled)."""
        self.retry_delay: float | None = None
        """The delay chosen when :attr:`next_retry` was last set by a failed round."""
        self.running = False
        self.retry = True
        """Whether to retry at all (False: a short-lived node tries once)."""
        self.started = False
        """Whether :meth:`bootstrap` was called (the node is meant to be joined)."""
        self.rounds = 0
        """Self-lookups ended so far."""
        self.failed_rounds = 0
        """Self-lookups in a row that ended with an empty table (0 once a node is known)."""
        self.rejoins = 0
        """Times the table became empty after a join and the node joined again."""
        self.refreshes: deque[RefreshTarget] = deque()
        """Refresh lookups queued after a self-lookup, started by the maintenance steps."""

    def bootstrap(
        self, routers: list[Addr], now: float, *, as_nodes: bool = False, retry: bool = True
    ) -> int:
        """Set the routers (first contacts of every lookup from now on) and run the
        self-lookup; ``as_nodes``: the routers may enter the table once they answer;
        ``retry=False``: no retry when it fails."""
        ctx = self._ctx
        ctx.routers = list(dict.fromkeys(routers))
        ctx.routers_excluded = set() if as_nodes else set(ctx.routers)
        self.retry = retry
        self.started = True
        self.next_retry = None
        return self.run(now)

    def run(self, now: float) -> int:
        """Start the self-lookup; returns its op id."""
        self.running = True
        return BootstrapOp(self._ctx, self._finished).start(now)

    def retry_due(self, now: float) -> bool:
        return self.next_retry is not None and now >= self.next_retry and not self.running

    def rejoin_due(self, now: float) -> bool:
        """After a join, the table became empty: join again from the routers now."""
        if (
            not self.started
            or not self.retry
            or self.running
            or self.next_retry is not None
            or len(self._ctx.routing)
        ):
            return False
        self.rejoins += 1
        self.backoff = BACKOFF_MIN
        return True

    def _finished(self, now: float) -> None:
        self.running = False
        self.rounds += 1
        ctx = self._ctx
        self.failed_rounds = 0 if len(ctx.routing) else self.failed_rounds + 1
        ctx.joined()
        if not self.retry:
            self.next_retry = None
        elif len(ctx.routing) < ctx.config.k:
            # Too few nodes answered: try again later, backing off (5 s up to 5 min).
            self.next_retry = now + self.backoff
            self.retry_delay = self.backoff
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
        else:
            self.next_retry = None
            self.backoff = BACKOFF_MIN
        self.refreshes.extend(far_bucket_targets(ctx))


def far_bucket_targets(ctx: Context) -> list[RefreshTarget]:
    """A lookup for a random id in every bucket but the home one (after bootstrap).

    The self-lookup only fills buckets near our id; without this, the far half of
    the id space stays unknown until the 15-minute refresh (libtorrent does the same).
    """
    own = int.from_bytes(ctx.node_id, "big")
    routing = ctx.routing
    out: list[RefreshTarget] = []
    # At least the four farthest ranges, even while the table is a single bucket.
    for i in range(max(routing.bucket_count - 1, 4)):
        shift = 159 - i
        lo = ((own >> shift) ^ 1) << shift
        target = random_id_in_range(ctx.rng, lo, lo + (1 << shift))
        near = routing.closest(target, 1)
        # Nobody known in that range: our neighbours likely know nobody there either,
        # so ask the routers (queried only when no table node is a candidate).
        empty = not near or (int.from_bytes(near[0].id, "big") ^ lo) >> shift != 0
        out.append((target, not empty))
    return out


class Maintenance:
    """The periodic round and the paced steps of its work (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        bootstrapper: Bootstrapper,
        peer_store: PeerStore,
        items: ItemStore,
        now: float,
    ) -> None:
        self._ctx = ctx
        self._bootstrapper = bootstrapper
        self._peers = peer_store
        self._items = items
        self.round_at = now + ctx.config.maintenance_interval
        """When the next round is due."""
        self._pings: deque[NodeInfo] = deque()
        self._sweeping = False
        self._last_step = -math.inf

    def _pending(self) -> bool:
        return bool(self._bootstrapper.refreshes or self._pings or self._sweeping)

    @property
    def next_at(self) -> float:
        """When :meth:`handle_timer` has work to do next."""
        if self._pending():
            return min(self.round_at, self._last_step + STEP_INTERVAL)
        return self.round_at

    def handle_timer(self, now: float) -> None:
        if now >= self.round_at:
            self.round_at = now + self._ctx.config.maintenance_interval
            self.run(now)
        elif self._pending() and now >= self._last_step + STEP_INTERVAL:
            self.step(now)

    def run(self, now: float) -> None:
        """The round: the bootstrap retry when due; queue pings, refreshes and expiry."""
        ctx = self._ctx
        boot = self._bootstrapper
        if boot.retry_due(now) or boot.rejoin_due(now):
            boot.next_retry = None
            boot.run(now)
        routing = ctx.routing
        self._pings.extend(routing.nodes_to_ping(now))
        if len(routing):
            boot.refreshes.extend((t, True) for t in routing.buckets_to_refresh(now))
        self._sweeping = True
        self.step(now)

    def step(self, now: float) -> None:
        """One bounded slice of the queued work."""
        self._last_step = now
        ctx = self._ctx
        refreshes = self._bootstrapper.refreshes
        for _ in range(min(LOOKUPS_PER_STEP, len(refreshes))):
            target, use_table = refreshes.popleft()
            FindNodeOp(ctx, target, silent=True, use_table=use_table).start(now)
        pings = self._pings
        for _ in range(min(PINGS_PER_STEP, len(pings))):
            node = pings.popleft()
            ctx.send_query(node.addr, Ping(ctx.node_id), now, None, node.id)
        if self._sweeping:
            self._peers.expire_some(now)
            items_left = self._items.expire(now, ITEMS_PER_STEP) >= ITEMS_PER_STEP
            self._sweeping = items_left or self._peers.sweeping
