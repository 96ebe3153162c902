"""Keeping the routing table alive: bootstrap with backoff, periodic maintenance.

* :class:`Bootstrapper`: the self-lookup from the routers (BEP 5, "Routing Table"), then a
  lookup into every far bucket; while the table holds fewer than k nodes the self-lookup is
  run again, 5 s after the first failure, doubling up to 5 min; when the table becomes
  empty later, the node joins again from the routers. This is the node's only join retry
  policy: the runtime hands the routers over once and logs from :attr:`Bootstrapper.failed_rounds`
  and :attr:`Bootstrapper.next_retry`.
* :class:`Maintenance`: every ``maintenance_interval``, the bootstrap retry when due, pings
  of questionable nodes, refresh lookups of stale buckets and the stores' expiry.
"""

from __future__ import annotations

from .compact import Addr
from .context import Context
from .ids import random_id_in_range
from .item_store import ItemStore
from .krpc import Ping
from .operations import BootstrapOp, FindNodeOp
from .peer_store import PeerStore

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "Bootstrapper", "Maintenance"]

BACKOFF_MIN = 5.0
"""Seconds before the first bootstrap retry."""
BACKOFF_MAX = 300.0
"""Upper bound of the bootstrap retry delay."""


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
        refresh_far_buckets(ctx, now)


def refresh_far_buckets(ctx: Context, now: float) -> None:
    """A lookup for a random id in every bucket but the home one (after bootstrap).

    The self-lookup only fills buckets near our id; without this, the far half of
    the id space stays unknown until the 15-minute refresh (libtorrent does the same).
    """
    own = int.from_bytes(ctx.node_id, "big")
    routing = ctx.routing
    # At least the four farthest ranges, even while the table is a single bucket.
    for i in range(max(routing.bucket_count - 1, 4)):
        shift = 159 - i
        lo = ((own >> shift) ^ 1) << shift
        target = random_id_in_range(ctx.rng, lo, lo + (1 << shift))
        near = routing.closest(target, 1)
        # Nobody known in that range: our neighbours likely know nobody there either,
        # so ask the routers (queried only when no table node is a candidate).
        empty = not near or (int.from_bytes(near[0].id, "big") ^ lo) >> shift != 0
        FindNodeOp(ctx, target, silent=True, use_table=not empty).start(now)


class Maintenance:
    """The periodic round (see the module docstring)."""

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
        self.next_at = now + ctx.config.maintenance_interval

    def handle_timer(self, now: float) -> None:
        if now >= self.next_at:
            self.next_at = now + self._ctx.config.maintenance_interval
            self.run(now)

    def run(self, now: float) -> None:
        ctx = self._ctx
        boot = self._bootstrapper
        if boot.retry_due(now) or boot.rejoin_due(now):
            boot.next_retry = None
            boot.run(now)
        routing = ctx.routing
        for node in routing.nodes_to_ping(now):
            ctx.send_query(node.addr, Ping(ctx.node_id), now, None, node.id)
        if len(routing):
            for target in routing.buckets_to_refresh(now):
                FindNodeOp(ctx, target, silent=True).start(now)
        self._peers.expire(now)
        self._items.expire(now)
