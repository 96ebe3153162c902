"""Context: what the query handlers and the operations of one node share.

The node's current id and routing table (both replaced when BEP 42 regenerates the id),
its config and RNG, the pending transactions, and the two outputs: datagrams to send and
events. Datagrams pass a global send budget (``NodeConfig.send_rate`` bytes a second, a
burst of one second's worth): answers may spend all of it, our own queries only while
more than a quarter is left, so under load we keep answering and query less (a query
over budget is not sent and times out like a lost one). :class:`~mldht.core.node.NodeState`
owns one and hands it to the pieces that need it; nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .bencode import bencode
from .compact import Addr
from .config import NodeConfig
from .counters import QUERY_METHODS
from .events import NOTICE_BACKLOG, Event, NodeEvent, Ready, Warning
from .krpc import (
    QueryBody,
    ResponseBody,
    encode_error,
    encode_query,
    frame_response,
)
from .routing import RoutingTable
from .timers import RunningOps, Timed
from .transactions import Pending, Transactions

if TYPE_CHECKING:
    import random

__all__ = ["Context", "SendBudget", "Timed"]


class SendBudget:
    """A token bucket of bytes: ``rate`` a second, a burst of one second's worth."""

    __slots__ = ("_at", "_tokens", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._at = 0.0

    def spend(self, size: int, reserve: float, now: float) -> bool:
        """Take ``size`` bytes, keeping ``reserve`` (a share of the burst) for answers;
        False, taking nothing, if that is not there."""
        rate = self.rate
        tokens = self._tokens + (now - self._at) * rate
        if tokens > rate:
            tokens = rate
        self._at = now
        if tokens - size < reserve * rate:
            self._tokens = tokens
            return False
        self._tokens = tokens - size
        return True


class Context:
    """Shared state and output sink of one node (see the module docstring)."""

    def __init__(
        self,
        node_id: bytes,
        routing: RoutingTable,
        config: NodeConfig,
        rng: random.Random,
        stats: dict[str, int],
    ) -> None:
        self.node_id = node_id
        self.routing = routing
        self.config = config
        self.rng = rng
        self.stats = stats
        self.tx = Transactions(rng)
        self.out: list[tuple[bytes, Addr]] = []
        self.events: deque[Event] = deque()
        self.notices: deque[NodeEvent] = deque()
        """Node events for watchers (:meth:`notify`), drained by the runtime."""
        self.notices_lost = 0
        self.queries_out: dict[bytes, int] = dict.fromkeys(QUERY_METHODS, 0)
        """Queries sent, by method."""
        self._ready = False
        self.running = RunningOps()
        """Operations with deadlines (lookups) by op id, until they end, indexed by their
        next deadline (:mod:`~mldht.core.timers`)."""
        self.routers: list[Addr] = []
        """Bootstrap routers: first contacts of every lookup."""
        self.routers_excluded: set[Addr] = set()
        """Routers never put in the routing table (BEP 5)."""
        self.rtts: deque[float] = deque(maxlen=128)
        """Recent round-trip times, for adaptive soft timeouts."""
        self.now = 0.0
        """The time of the call into the node being handled (set by NodeState)."""
        self._next_op = 1
        self.send_budget = SendBudget(config.send_rate)
        """The bytes this node may send (shared by both families of a dual-stack node)."""

    def notify(self, event: NodeEvent) -> None:
        """Queue a node event; at most NOTICE_BACKLOG wait (the oldest go first, counted
        in ``notices_lost``)."""
        notices = self.notices
        if len(notices) >= NOTICE_BACKLOG:
            notices.popleft()
            self.notices_lost += 1
        notices.append(event)

    def joined(self) -> None:
        """A bootstrap round ended: the first one with nodes in the table emits Ready, one
        with none (and routers to ask) a Warning."""
        if not len(self.routing):
            if self.routers:  # none: the first node of a private network, nobody to know
                self.notify(Warning("bootstrap_failed", "no bootstrap node answered"))
        elif not self._ready:
            self._ready = True
            self.notify(Ready(len(self.routing)))

    def new_op_id(self) -> int:
        n = self._next_op
        self._next_op = n + 1
        return n

    # ------------------------------------------------------------------ output

    def send_query(
        self,
        addr: Addr,
        body: QueryBody,
        now: float,
        context: object = None,
        node_id: bytes | None = None,
    ) -> Pending:
        """Queue a query to ``addr``; its answer, error or timeout goes to ``context``."""
        config = self.config
        self.now = now
        p = self.tx.new(addr, body.method, now, config.query_timeout, node_id, context)
        data = encode_query(p.t, body, version=config.version, read_only=config.read_only)
        if config.send_rate > 0 and not self._spend(len(data), 0.25):
            self.stats["send_budget_queries"] += 1  # not sent: it will time out
            return p
        self.out.append((data, addr))
        self.stats["queries_out"] += 1
        self.queries_out[body.method] += 1
        return p

    def reply(self, t: bytes, body: ResponseBody, addr: Addr) -> None:
        self.reply_items(t, bencode(body.to_dict())[1:-1], addr)

    def reply_items(self, t: bytes, r_items: bytes, addr: Addr) -> None:
        """Answer with an ``r`` dict given as its bencoded items (the handlers' fast path;
        see :func:`~mldht.core.krpc.frame_response`)."""
        data = frame_response(t, r_items, self.config.version, addr)
        if self.config.send_rate > 0 and not self.spend_reply(len(data)):
            return
        self.out.append((data, addr))
        self.stats["responses_out"] += 1

    def spend_reply(self, size: int) -> bool:
        """Take a reply of ``size`` bytes from the send budget (all of it may go to
        replies); False, counted, when it is spent: the reply is not sent."""
        if self._spend(size, 0.0):
            return True
        self.stats["send_budget_replies"] += 1
        return False

    def reply_error(self, t: bytes, code: int, message: str, addr: Addr) -> None:
        data = encode_error(t, code, message, version=self.config.version, ip=addr)
        if self.config.send_rate > 0 and not self.spend_reply(len(data)):
            return
        self.out.append((data, addr))
        self.stats["errors_out"] += 1

    def _spend(self, size: int, reserve: float) -> bool:
        """Take ``size`` bytes of the send budget, keeping ``reserve`` (a share of the
        burst) for answers; False, taking nothing, if that is not there."""
        return self.send_budget.spend(size, reserve, self.now)

    # ------------------------------------------------------------------ timing

    def soft_timeout(self) -> float:
        """``soft_timeout_factor`` times the median of recent RTTs, within
        [soft_timeout_min, soft_timeout]; soft_timeout until a few RTTs are known (re-read
        before each round of queries, so a lookup adapts as its first answers arrive)."""
        rtts = self.rtts
        config = self.config
        if len(rtts) < 4:
            return config.soft_timeout
        median = sorted(rtts)[len(rtts) // 2]
        floor = config.soft_timeout_min
        return min(config.soft_timeout, max(floor, config.soft_timeout_factor * median))
