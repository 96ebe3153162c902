"""Operations a node runs: one class per flavour.

Every operation has an op id and ends with exactly one terminal event (its
:attr:`Operation.terminal_event`, see :meth:`Operation.terminal` and
:func:`mldht.core.events.is_terminal`), possibly preceded by progress events
(:class:`~mldht.core.events.PeersFound`). Each query an operation sends carries a
:class:`Call` as its transaction context; the node hands the query's answer, error reply or
timeout back to the call's owner (:meth:`Operation.on_response`, :meth:`Operation.on_error`,
:meth:`Operation.on_timeout`).

* :class:`PingOp`, :class:`SampleOp`: one query to one address;
* :class:`LookupOp` (on :class:`~mldht.core.lookup.Lookup`): :class:`FindNodeOp`,
  :class:`BootstrapOp`, :class:`GetPeersOp`, :class:`GetOp`;
* lookups with a store phase (:mod:`mldht.core.store_ops`): announce and BEP 44 put.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from . import bep44
from .compact import Addr, NodeInfo
from .context import Context
from .events import Event, GetDone, Item, LookupDone, PeersFound, PingDone, SampleDone
from .krpc import (
    FindNode,
    FindNodeResponse,
    Get,
    GetPeers,
    GetPeersResponse,
    GetResponse,
    Ping,
    QueryBody,
    ResponseBody,
    SampleInfohashes,
    SampleInfohashesResponse,
)
from .lookup import Lookup, Responded

__all__ = [
    "BootstrapOp",
    "Call",
    "FindNodeOp",
    "GetOp",
    "GetPeersOp",
    "LookupOp",
    "Operation",
    "PingOp",
    "SampleOp",
]


@dataclass(frozen=True, slots=True)
class Call:
    """The transaction context of one query: the operation that sent it, the node it went
    to (None for a single-address query) and whether it belongs to the store phase."""

    owner: Operation
    node: NodeInfo | None = None
    store: bool = False


class Operation:
    """Base of all operations. ``silent`` operations (internal maintenance) emit nothing."""

    terminal_event: ClassVar[type[object]]
    """The type of the one event that ends this operation."""

    def __init__(self, ctx: Context, *, silent: bool = False) -> None:
        self.ctx = ctx
        self.op = ctx.new_op_id()
        self.silent = silent

    @classmethod
    def terminal(cls, event: Event) -> bool:
        """Whether ``event`` is the terminal event of this kind of operation."""
        return isinstance(event, cls.terminal_event)

    def emit(self, event: Event) -> None:
        if not self.silent:
            self.ctx.events.append(event)

    def start(self, now: float) -> int:
        """Send the first queries; returns the op id."""
        raise NotImplementedError

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        """``sender`` answered the query of ``call`` with ``body``."""
        raise NotImplementedError

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        """The query of ``call`` got a KRPC error reply."""
        raise NotImplementedError

    def on_timeout(self, call: Call, now: float) -> None:
        """The query of ``call`` failed for good (no answer, or an undecodable one)."""
        raise NotImplementedError


# ------------------------------------------------------------------ single queries


class PingOp(Operation):
    """Ping one address; ends with :class:`PingDone` (``node_id`` None: no answer)."""

    terminal_event: ClassVar[type[object]] = PingDone

    def __init__(self, ctx: Context, addr: Addr) -> None:
        super().__init__(ctx)
        self.addr = addr

    def start(self, now: float) -> int:
        self.ctx.send_query(self.addr, Ping(self.ctx.node_id), now, Call(self))
        return self.op

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        self.emit(PingDone(self.op, sender.addr, body.id, version))

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        self.emit(PingDone(self.op, self.addr, None))

    def on_timeout(self, call: Call, now: float) -> None:
        self.emit(PingDone(self.op, self.addr, None))


class SampleOp(Operation):
    """One BEP 51 sample_infohashes query; ends with :class:`SampleDone`.

    ``find_node``: one find_node query to the node instead (its closest nodes to
    ``target``, asked of that node alone, as a crawler asks a node it already sampled
    about its own neighbourhood: BEP 51's interval is about samples); the SampleDone then
    has no samples and ``supported`` False.
    """

    terminal_event: ClassVar[type[object]] = SampleDone

    def __init__(self, ctx: Context, addr: Addr, target: bytes, *, find_node: bool = False) -> None:
        super().__init__(ctx)
        self.addr = addr
        self.target = target
        self.find_node = find_node

    def start(self, now: float) -> int:
        query = FindNode if self.find_node else SampleInfohashes
        self.ctx.send_query(self.addr, query(self.ctx.node_id, self.target), now, Call(self))
        return self.op

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        if isinstance(body, FindNodeResponse):
            found = (body.nodes6 if self.ctx.config.ipv6 else body.nodes) or ()
            done = SampleDone(self.op, sender.addr, body.id, nodes=found, version=version, rtt=rtt)
            self.emit(done)
            return
        if not isinstance(body, SampleInfohashesResponse):  # pragma: no cover - decoded by method
            self.emit(SampleDone(self.op, self.addr, None))
            return
        nodes = (body.nodes6 if self.ctx.config.ipv6 else body.nodes) or ()
        self.emit(
            SampleDone(
                self.op,
                sender.addr,
                body.id,
                body.samples,
                body.num,
                body.interval,
                nodes,
                version,
                rtt,
                body.supported,
            )
        )

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        self.emit(SampleDone(self.op, self.addr, None))

    def on_timeout(self, call: Call, now: float) -> None:
        self.emit(SampleDone(self.op, self.addr, None))


# ------------------------------------------------------------------------ lookups


class LookupOp(Operation):
    """An iterative lookup towards ``target``, registered in ``ctx.running`` while it runs.

    Subclasses choose the query (:meth:`query_body`), take what they need from each
    answer (:meth:`absorb`) and say what happens when the lookup phase ends
    (:meth:`lookup_finished`). Ends with :class:`LookupDone` unless overridden.
    """

    terminal_event: ClassVar[type[object]] = LookupDone

    def __init__(
        self, ctx: Context, target: bytes, *, silent: bool = False, use_table: bool = True
    ) -> None:
        super().__init__(ctx, silent=silent)
        self.target = target
        config = ctx.config
        self.deadline = 0.0
        self.peers: dict[Addr, None] = {}
        self.phase_over = False
        """The lookup phase ended (no more lookup queries; a store phase may follow)."""
        self.finished = False
        """The operation ended and emitted its terminal event."""
        adaptive = config.adaptive_timeout
        self.lookup = Lookup(
            target,
            k=max(config.k, config.lookup_k),
            alpha=config.alpha,
            soft_timeout=ctx.soft_timeout() if adaptive else config.soft_timeout,
            own_id=ctx.node_id,
            wait_for_stalled=not adaptive,
            local_network=config.local_network,
            retry=config.lookup_retry,
            diverse=config.restrict_search_ips,
            use_k=config.k,
            retry_wait=config.lookup_retry_wait,
            timeout_of=self._node_timeout if adaptive and config.node_rtt_timeout else None,
            far_frees_slot=config.lookup_far_frees_slot,
            group_cap=config.lookup_group_cap,
            settle=config.lookup_settle,
        )
        self._use_table = use_table

    # ---------------------------------------------------------------- driving

    def start(self, now: float) -> int:
        ctx = self.ctx
        self.deadline = now + ctx.config.lookup_timeout
        lk = self.lookup
        if self._use_table:
            lk.add_candidates(ctx.routing.closest(self.target, ctx.config.k * 2))
        excluded = ctx.routers_excluded
        for r in ctx.routers:
            lk.add_router(r, member=r not in excluded)
        ctx.running[self.op] = self
        self.started(now)
        self.advance(now)
        ctx.running.reschedule(self.op)
        return self.op

    def _node_timeout(self, node: NodeInfo) -> float | None:
        """The node's own soft timeout from the RTT our table measured, if any."""
        entry = self.ctx.routing.get(node.id)
        if entry is None or entry.rtt is None or entry.node.addr != node.addr:
            return None
        config = self.ctx.config
        return max(config.soft_timeout_min, config.soft_timeout_factor * entry.rtt)

    def started(self, now: float) -> None:
        """Hook: the lookup is registered, no query has been sent yet."""

    def query_body(self) -> QueryBody:
        return FindNode(self.ctx.node_id, self.target)

    def next_deadline(self) -> float | None:
        d = self.deadline
        ld = self.lookup.next_deadline()
        return ld if ld is not None and ld < d else d

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        self.lookup.handle_timer(now)
        self.advance(now)

    def advance(self, now: float) -> None:
        """Send the queries the lookup wants; end the lookup phase when it is done."""
        if self.phase_over:
            return
        lk = self.lookup
        ctx = self.ctx
        if not lk.done and now < self.deadline:
            if ctx.config.adaptive_timeout:
                lk.set_soft_timeout(ctx.soft_timeout())
            body = self.query_body()
            for node in lk.next_queries(now):
                nid = None if lk.is_router(node.addr) else node.id
                ctx.send_query(node.addr, body, now, Call(self, node), nid)
        if lk.done or now >= self.deadline:
            self.phase_over = True
            self.lookup_finished(now, lk.closest(ctx.config.k))

    def finish(self, event: Event) -> None:
        """End the operation with its terminal ``event``."""
        self.finished = self.phase_over = True
        self.ctx.running.pop(self.op, None)
        self.emit(event)

    def lookup_finished(self, now: float, closest: list[Responded]) -> None:
        nodes = tuple(r.node for r in closest)
        self.finish(
            LookupDone(self.op, self.target, nodes, tuple(self.peers), self.lookup.queried_count)
        )

    # ---------------------------------------------------------------- replies

    def absorb(self, body: ResponseBody) -> tuple[bytes | None, object]:
        """Hook: take what this flavour needs from an answer; returns (token, payload)."""
        return None, None

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        if self.phase_over:
            return
        nodes: tuple[NodeInfo, ...] = ()
        if isinstance(body, (FindNodeResponse, GetPeersResponse, GetResponse)):
            nodes = (body.nodes6 if self.ctx.config.ipv6 else body.nodes) or ()
        token, payload = self.absorb(body)
        own = self.ctx.node_id
        self.lookup.on_response(sender, now, [n for n in nodes if n.id != own], token, payload)
        self.advance(now)

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        self.on_timeout(call, now)

    def on_timeout(self, call: Call, now: float) -> None:
        if self.phase_over or call.node is None:
            return
        self.lookup.on_failure(call.node, now)
        self.advance(now)


class FindNodeOp(LookupOp):
    """A find_node lookup; ends with :class:`LookupDone`."""


class BootstrapOp(FindNodeOp):
    """The self-lookup of a bootstrap; ``on_finished(now)`` runs before its LookupDone
    (the bootstrap maintenance, :class:`~mldht.core.maintenance.Bootstrapper`, decides
    there whether to retry and refreshes the far buckets)."""

    def __init__(self, ctx: Context, on_finished: Callable[[float], None]) -> None:
        super().__init__(ctx, ctx.node_id)
        self._on_finished = on_finished

    def lookup_finished(self, now: float, closest: list[Responded]) -> None:
        self.finished = True
        self.ctx.running.pop(self.op, None)
        self._on_finished(now)
        super().lookup_finished(now, closest)


class GetPeersOp(LookupOp):
    """A get_peers lookup: :class:`PeersFound` as new peers arrive (our own stored peers
    first), then :class:`LookupDone` with all of them."""

    def __init__(self, ctx: Context, info_hash: bytes, local: Sequence[Addr] = ()) -> None:
        super().__init__(ctx, info_hash)
        self._local = local

    def started(self, now: float) -> None:
        if self._local:
            self.peers.update(dict.fromkeys(self._local))
            self.emit(PeersFound(self.op, self.target, tuple(self._local)))

    def query_body(self) -> QueryBody:
        return GetPeers(self.ctx.node_id, self.target)

    def absorb(self, body: ResponseBody) -> tuple[bytes | None, object]:
        if not isinstance(body, GetPeersResponse):
            return None, None
        new = tuple(p for p in body.peers if p not in self.peers)
        if new:
            self.peers.update(dict.fromkeys(new))
            self.emit(PeersFound(self.op, self.target, new))
        return body.token, None


class GetOp(LookupOp):
    """A BEP 44 get lookup; :class:`GetDone` carries the valid item with highest seq.

    ``mutable``: None accepts both kinds, True / False only that kind.
    """

    terminal_event: ClassVar[type[object]] = GetDone

    def __init__(
        self, ctx: Context, target: bytes, *, salt: bytes = b"", mutable: bool | None = None
    ) -> None:
        super().__init__(ctx, target)
        self.salt = salt
        self.mutable = mutable
        self.best: Item | None = None

    def query_body(self) -> QueryBody:
        return Get(self.ctx.node_id, self.target)

    def absorb(self, body: ResponseBody) -> tuple[bytes | None, object]:
        if not isinstance(body, GetResponse):
            return None, None
        item = self._valid_item(body)
        best = self.best
        if item is not None and (best is None or (item.seq or 0) > (best.seq or 0)):
            self.best = item
        return body.token, body.seq

    def _valid_item(self, body: GetResponse) -> Item | None:
        """Check a BEP 44 get reply: hash for immutable, key+signature for mutable."""
        if body.v is None:
            return None
        if body.k is None:
            if self.mutable is True or hashlib.sha1(body.v).digest() != self.target:
                return None
            return Item(self.target, body.v)
        if self.mutable is False or body.seq is None or body.sig is None:
            return None
        if bep44.mutable_target(body.k, self.salt) != self.target:
            return None
        if not bep44.verify(body.k, body.sig, body.v, body.seq, self.salt):
            return None
        return Item(self.target, body.v, body.k, self.salt, body.seq, body.sig)

    def lookup_finished(self, now: float, closest: list[Responded]) -> None:
        nodes = tuple(r.node for r in closest)
        self.finish(GetDone(self.op, self.target, self.best, nodes))
