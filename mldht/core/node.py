"""NodeState: the whole DHT node as one sans-IO state machine (aioquic style).

Bytes and the current time go in (:meth:`NodeState.receive_datagram`,
:meth:`NodeState.handle_timer`); datagrams to send, the next deadline and events come out
(:meth:`NodeState.datagrams_to_send`, :meth:`NodeState.next_deadline`,
:meth:`NodeState.next_event`, and item changes to make durable,
:meth:`NodeState.storage_writes`). Operations (:meth:`NodeState.get_peers`, ...) return an
op id; exactly one terminal event with that id follows
(:func:`~mldht.core.events.is_terminal`).

NodeState only dispatches. The pieces:

* :mod:`~mldht.core.config`: :class:`NodeConfig`;
* :mod:`~mldht.core.context`: what the pieces share (id, table, transactions, outputs);
* :mod:`~mldht.core.admission`: the per-IP rate limit on incoming queries;
* :mod:`~mldht.core.handlers`: the answers to incoming queries;
* :mod:`~mldht.core.operations`, :mod:`~mldht.core.store_ops`: one class per operation,
  which gets the answers, errors and timeouts of the queries it sent;
* :mod:`~mldht.core.maintenance`: bootstrap (with its backoff) and the periodic round;
* :mod:`~mldht.core.republish`: the BEP 44 re-puts of the items this node put.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError, InvalidArgument
from . import bep42, bep44
from .admission import MALFORMED_COST, Admission, cheap_reject
from .bencode import bdecode
from .bencode import raw_bdecode as _bdecode
from .compact import Addr, NodeInfo
from .config import NodeConfig
from .context import Context
from .counters import QUERY_METHODS, OpTimes
from .events import (
    Event,
    ExternalAddressChanged,
    NodeAdded,
    NodeEvent,
    NodeRemoved,
    Warning,
    is_terminal,
)
from .fast_answers import Answerer
from .handlers import MAX_SALT_SIZE, MAX_VALUE_SIZE
from .item_store import ItemStore, ItemWrite, StoredItem
from .krpc import (
    Error,
    MalformedMessage,
    Ping,
    Query,
    Response,
    decode_response,
    message_from,
)
from .maintenance import Bootstrapper, Maintenance
from .operations import Call, FindNodeOp, GetOp, GetPeersOp, LookupOp, PingOp, SampleOp
from .peer_store import PeerStore
from .republish import REPUBLISH_INTERVAL, Publication, Republisher
from .routing import RoutingTable
from .scrape import ScrapeAnswer, ScrapeOp
from .store_ops import AnnounceOp, ImmutablePutOp, MutablePutOp, check_value
from .tokens import TokenManager
from .transactions import Pending

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable

__all__ = ["MAX_SALT_SIZE", "MAX_VALUE_SIZE", "NodeConfig", "NodeState"]

log = logging.getLogger("mldht.core")

TIMER_EXPIRED_BATCH = 32
"""Timed-out queries handled in one :meth:`NodeState.handle_timer` call (each may make
its operation send the next queries: tens of microseconds)."""
TIMER_OPS_BATCH = 8
"""Operations whose own deadline passed run in one :meth:`NodeState.handle_timer` call."""


class NodeState:
    """A mainline DHT node without I/O. See the module docstring."""

    def __init__(
        self,
        node_id: bytes,
        rng: random.Random,
        now: float,
        config: NodeConfig | None = None,
        saved_items: Iterable[StoredItem] | None = None,
        *,
        republish_interval: float = REPUBLISH_INTERVAL,
        sibling: NodeState | None = None,
    ) -> None:
        """``sibling``: the node of the other address family of a dual-stack node
        (BEP 32): this one shares its peer store, item store and token secret (a peer
        announced over IPv6 is stored once, for both), and each answers ``want`` of the
        other family from the other's routing table. ``saved_items`` are the sibling's
        then. Ids, tables, IP votes (BEP 42) and operations stay per family."""
        if len(node_id) != 20:
            raise InvalidArgument("node id must be 20 bytes")
        self.config = config = config or NodeConfig()
        self._rng = rng
        self.stats: dict[str, int] = {
            "queries_in": 0,
            "queries_out": 0,
            "responses_in": 0,
            "responses_out": 0,
            "errors_in": 0,
            "errors_out": 0,
            "timeouts": 0,
            "dropped": 0,
            "rate_limited": 0,
            "dropped_banned": 0,
            "dropped_oversize": 0,
            "dropped_not_dict": 0,
            "dropped_deep": 0,
            "dropped_malformed": 0,
            "dropped_unmatched": 0,
            "send_budget_queries": 0,
            "send_budget_replies": 0,
            "internal_errors": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        self._ctx = ctx = Context(node_id, self._new_table(node_id), config, rng, self.stats)
        self.tokens: TokenManager
        self.peer_store: PeerStore
        self.items: ItemStore
        self._shares_stores = sibling is not None
        if sibling is not None:
            self.tokens, self.peer_store = sibling.tokens, sibling.peer_store
            self.items = sibling.items
        else:
            self.tokens = TokenManager(rng=rng, now=now)
            self.peer_store = PeerStore(
                rng,
                max_infohashes=config.max_infohashes,
                max_peers_per_infohash=config.max_peers_per_infohash,
                max_peers_per_source=config.max_peers_per_source,
                max_peers_per_source_per_infohash=config.max_peers_per_source_per_infohash,
                local_network=config.local_network,
            )
            self.items = ItemStore(
                own_id=node_id,
                max_items=config.max_items,
                max_bytes=config.max_item_bytes,
                max_items_per_source=config.max_items_per_source,
                persistent=saved_items is not None,
            )
            if saved_items is not None:
                self.items.load(saved_items, now)
        self.voter = bep42.ExternalIPVoter()
        self.external_ip: str | None = None
        self._admission = Admission(config.rate_limit)
        self.queries_in: dict[bytes, int] = dict.fromkeys(QUERY_METHODS, 0)
        """Queries received, by method (``stats["queries_in"]`` is their sum)."""
        self._handlers = Answerer(
            ctx, self.peer_store, self.items, self.tokens, self.queries_in, self._maybe_ping
        )
        self._answer = self._handlers.dispatch
        self._fast = self._handlers.answer
        if sibling is not None:  # BEP 32: each answers want=n4/n6 from the other's table
            self._handlers.sibling = sibling._ctx
            sibling._handlers.sibling = ctx
            ctx.send_budget = sibling._ctx.send_budget  # one send_rate for the node
        self._bootstrapper = Bootstrapper(ctx)
        self._maintenance = Maintenance(ctx, self._bootstrapper, self.peer_store, self.items, now)
        try:
            self.republisher = Republisher(ctx, republish_interval)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self._read_only_peers: dict[Addr, None] = {}
        self._recently_pinged: dict[Addr, float] = {}
        self.op_times = OpTimes()
        """Durations of the lookups asked of this node, by kind (for metrics)."""

    # ------------------------------------------------------------------ properties

    @property
    def node_id(self) -> bytes:
        return self._ctx.node_id

    @property
    def routing(self) -> RoutingTable:
        return self._ctx.routing

    @routing.setter
    def routing(self, table: RoutingTable) -> None:
        self._ctx.routing = table

    @property
    def bootstrapper(self) -> Bootstrapper:
        """The bootstrap state: routers, retry schedule."""
        return self._bootstrapper

    # --------------------------------------------------------------------- outputs

    def storage_writes(self) -> list[ItemWrite]:
        """Item changes to make durable, in order (when built with ``saved_items``).

        The runtime applies them before it sends the datagrams of the same call, so that a
        put is acknowledged only once it is on disk."""
        return self.items.take_writes()

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        ctx = self._ctx
        out, ctx.out = ctx.out, []
        if out:
            self.stats["bytes_out"] += sum([len(d) for d, _ in out])
        return out

    def next_event(self) -> Event | None:
        events = self._ctx.events
        if not events:
            return None
        event = events.popleft()
        if self.op_times.open and is_terminal(event):
            self.op_times.ended(event.op, self._ctx.now)
        return event

    def next_notice(self) -> NodeEvent | None:
        """The next node event (:data:`~mldht.core.events.NodeEvent`) for watchers, or
        None. At most :data:`~mldht.core.events.NOTICE_BACKLOG` wait; those dropped
        before this call are counted in :attr:`notices_lost`."""
        notices = self._ctx.notices
        return notices.popleft() if notices else None

    @property
    def queries_out(self) -> dict[bytes, int]:
        """Queries sent, by method (``stats["queries_out"]`` is their sum)."""
        return self._ctx.queries_out

    @property
    def notices_lost(self) -> int:
        """Node events dropped because nobody drained them in time."""
        return self._ctx.notices_lost

    def next_deadline(self) -> float | None:
        ctx = self._ctx
        d = self._maintenance.next_at
        t = ctx.tx.next_deadline()
        if t is not None and t < d:
            d = t
        od = ctx.running.next_deadline()
        if od is not None and od < d:
            d = od
        r = self.republisher.next_deadline()
        if r is not None and r < d:
            d = r
        return d

    # --------------------------------------------------------------------- receive

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram. Never raises.

        Admission comes first (:mod:`~mldht.core.admission`): the source's budget, then
        cheap checks of size, shape and depth, before a byte is decoded. Every drop is
        counted in ``stats["dropped"]`` and by reason in ``stats["dropped_<reason>"]``
        (``banned``, ``oversize``, ``not_dict``, ``deep``, ``malformed``, ``unmatched``:
        a reply nobody waits for) or ``stats["rate_limited"]``; junk is charged to its
        source, and malformed queries within budget are answered with 203/204. Any other
        exception is a bug of ours: it is counted in ``stats["internal_errors"]`` and
        logged at ERROR level with its traceback on the ``mldht.core`` logger (the core
        does no I/O of its own; the application's logging config decides where it goes).
        """
        stats = self.stats
        self._ctx.now = now
        stats["bytes_in"] += len(data)
        admission = self._admission
        verdict = admission.admit(addr, now) if admission.rate > 0 else None
        if verdict is not None:
            stats["dropped"] += 1
            if verdict == "rate":
                stats["rate_limited"] += 1
            else:
                stats["dropped_banned"] += 1
            return
        reason = cheap_reject(data)
        if reason is not None:
            stats["dropped"] += 1
            stats["dropped_" + reason] += 1
            self._admission.charge(addr, MALFORMED_COST, now)
            return
        try:
            try:
                try:
                    d = _bdecode(data)
                except Exception:  # the decoder's own error: say why, as a malformed one
                    d = bdecode(data)
                if self._fast(d, addr, now):  # the common queries (core.fast_answers)
                    return
                msg = message_from(d)
            except (MalformedMessage, DecodeError) as exc:
                stats["dropped"] += 1
                stats["dropped_malformed"] += 1
                self._admission.charge(addr, MALFORMED_COST, now)
                if (
                    isinstance(exc, MalformedMessage)
                    and exc.is_query
                    and exc.t is not None
                    and not self.config.read_only
                ):
                    self._ctx.reply_error(exc.t, exc.code, exc.reason, addr)
                return
            if isinstance(msg, Query):
                self._on_query(msg, addr, now)
            elif isinstance(msg, Response):
                self._on_response(msg, addr, now)
            else:
                self._on_error(msg, addr, now)
        except Exception:  # a bug must not take the receive path down, nor hide
            self.stats["internal_errors"] += 1
            log.exception("internal error handling a datagram from %s:%s", addr[0], addr[1])
            self._ctx.notify(Warning("internal_error", f"error handling a datagram from {addr}"))

    def _on_query(self, q: Query, addr: Addr, now: float) -> None:
        self.stats["queries_in"] += 1
        body = q.body
        self.queries_in[body.method] += 1
        if self.config.read_only:  # BEP 43: a read-only node answers no queries
            return
        sid = body.id
        if q.read_only:
            ro = self._read_only_peers
            ro[addr] = None
            if len(ro) > 10_000:
                del ro[next(iter(ro))]
        elif sid != self._ctx.node_id and self._ctx.routing.queried(sid, addr, now):
            self._maybe_ping(addr, now)
        self._answer[type(body)](q, body, addr, now)  # QueryHandlers.handle, inlined

    def _maybe_ping(self, addr: Addr, now: float) -> None:
        """Ping a querier the table would take; it enters when it answers."""
        last = self._recently_pinged.get(addr)
        if (last is not None and now - last < 300.0) or self._ctx.tx.full:
            return  # a flood of new queriers must not grow our pending table unbounded
        if len(self._recently_pinged) > 10_000:
            self._recently_pinged.clear()
        self._recently_pinged[addr] = now
        self._ctx.send_query(addr, Ping(self._ctx.node_id), now)

    def _on_response(self, msg: Response, addr: Addr, now: float) -> None:
        ctx = self._ctx
        p = ctx.tx.match(msg.t, addr)
        if p is None:
            self.stats["dropped"] += 1
            self.stats["dropped_unmatched"] += 1
            return
        self.stats["responses_in"] += 1
        try:
            body = decode_response(p.method, msg)
        except DecodeError:
            self._timed_out(p, now)
            return
        sender = NodeInfo(body.id, addr)
        rtt = now - p.sent_at
        ctx.rtts.append(rtt)
        if (
            body.id != ctx.node_id
            and addr not in self._read_only_peers
            and addr not in ctx.routers_excluded
        ):
            ctx.routing.node_responded(sender, now, rtt=rtt, version=msg.version)
        if msg.ip is not None:
            self._vote(addr[0], msg.ip[0], now)
        call = p.context
        if isinstance(call, Call):
            call.owner.on_response(call, sender, body, msg.version, rtt, now)
            ctx.running.reschedule(call.owner.op)

    def _on_error(self, msg: Error, addr: Addr, now: float) -> None:
        p = self._ctx.tx.match(msg.t, addr)
        self.stats["errors_in"] += 1
        if p is None:
            return
        call = p.context
        if isinstance(call, Call):
            call.owner.on_error(call, msg.code, msg.message.decode("utf-8", "replace"), now)
            self._ctx.running.reschedule(call.owner.op)

    def _timed_out(self, p: Pending, now: float) -> None:
        self.stats["timeouts"] += 1
        if p.node_id is not None:
            self._ctx.routing.node_failed(NodeInfo(p.node_id, p.addr), now)
        call = p.context
        if isinstance(call, Call):
            call.owner.on_timeout(call, now)
            self._ctx.running.reschedule(call.owner.op)

    # ------------------------------------------------------------------ BEP 42

    def _vote(self, voter_ip: str, reported_ip: str, now: float) -> None:
        new_ip = self.voter.add_vote(voter_ip, reported_ip, now)
        if new_ip is None or new_ip == self.external_ip:
            return
        self.external_ip = new_ip
        if not (bep42.is_exempt(new_ip) or bep42.is_valid_node_id(self.node_id, new_ip)):
            self.set_node_id(bep42.generate_node_id(new_ip, self._rng), now)
        self._ctx.notify(ExternalAddressChanged(new_ip, self.node_id))

    def _new_table(self, node_id: bytes) -> RoutingTable:
        # BEP 42: when the table must choose (replacement promotion), prefer nodes whose
        # id matches their IP; local addresses are exempt and count as matching.
        table = RoutingTable(
            node_id,
            rng=self._rng,
            k=self.config.k,
            prefer=lambda n: bep42.is_valid_node_id(n.id, n.addr[0]),
            one_per_ip=self.config.restrict_ips,
            enforce_node_id=self.config.enforce_node_id,
            local_network=self.config.local_network,
        )
        table.on_change = self._table_changed
        return table

    def _table_changed(self, node: NodeInfo, added: bool) -> None:
        self._ctx.notify(NodeAdded(node) if added else NodeRemoved(node))

    def set_node_id(self, node_id: bytes, now: float) -> None:
        """Change our id (BEP 42 regeneration); the table is rebuilt around it."""
        ctx = self._ctx
        old = ctx.routing
        ctx.node_id = node_id
        ctx.routing = self._new_table(node_id)
        self.items.set_own_id(node_id)
        for n in old.good_nodes(now):
            if n.id != node_id:
                ctx.routing.node_responded(n, now)

    # ---------------------------------------------------------------- operations

    def ping(self, addr: Addr, now: float) -> int:
        return PingOp(self._ctx, addr).start(now)

    def add_node(self, addr: Addr, now: float) -> int:
        """Ping ``addr``; it enters the routing table if it answers."""
        return self.ping(addr, now)

    def find_node(self, target: bytes, now: float) -> int:
        return self.op_times.started(FindNodeOp(self._ctx, target).start(now), "find_node", now)

    def bootstrap(
        self, routers: list[Addr], now: float, *, as_nodes: bool = False, retry: bool = True
    ) -> int:
        """Self-lookup starting at ``routers`` and the table (BEP 5, "Routing Table").

        Routers are used as first contacts of lookups only, never put in the table
        (BEP 5), unless ``as_nodes``: then they are ordinary nodes once they answer (for
        bootstrap nodes a user named, e.g. the first node of a private network). While
        the table holds fewer than k nodes afterwards, the self-lookup is retried with a
        backoff (5 s doubling to 5 min), and should the table become empty later, the node
        joins again from the routers (:mod:`~mldht.core.maintenance`); ``retry=False``:
        neither (a short-lived node). Calling it again replaces the routers.
        """
        return self._bootstrapper.bootstrap(routers, now, as_nodes=as_nodes, retry=retry)

    def get_peers(self, info_hash: bytes, now: float) -> int:
        """get_peers lookup. Peers our own store holds for ``info_hash`` (we may be one of
        its storing nodes) come first, in a PeersFound before any query is answered."""
        local = self.peer_store.get_peers(
            info_hash,
            now,
            self.config.max_peers_per_infohash,
            family=6 if self.config.ipv6 else 4,
            max_bytes=1 << 30,
        )
        op = GetPeersOp(self._ctx, info_hash, local).start(now)
        return self.op_times.started(op, "get_peers", now)

    def announce(
        self, info_hash: bytes, port: int | None, now: float, *, seed: bool = False
    ) -> int:
        """get_peers lookup, then announce_peer to the closest nodes that gave a token.

        ``port=None`` sends ``implied_port=1`` (the receiver uses our UDP source port);
        ``seed`` announces a seed (BEP 33: ``seed=1``).
        """
        if port is not None and not 0 < port < 65536:
            raise InvalidArgument(f"port out of range: {port}")
        op = AnnounceOp(self._ctx, info_hash, port, seed=seed).start(now)
        return self.op_times.started(op, "announce", now)

    def scrape(self, info_hash: bytes, now: float) -> int:
        """BEP 33 scrape: get_peers lookup with ``scrape=1``; the terminal ScrapeDone
        carries the merged filters and estimated seeds and peers (:mod:`.scrape`)."""
        # Our own store's filters: on a dual-stack node the stores are shared, and the
        # first family's scrape counts them (once).
        own = None if self._shares_stores else self.peer_store.scrape(info_hash, now)
        local = ScrapeAnswer(*own) if own is not None else None
        op = ScrapeOp(self._ctx, info_hash, local).start(now)
        return self.op_times.started(op, "scrape", now)

    def get_item(
        self, target: bytes, now: float, *, salt: bytes = b"", mutable: bool | None = None
    ) -> int:
        """BEP 44 get lookup; the terminal GetDone carries the valid item with highest seq."""
        op = GetOp(self._ctx, target, salt=salt, mutable=mutable).start(now)
        return self.op_times.started(op, "get", now)

    def put_immutable(self, v_bencoded: bytes, now: float) -> int:
        check_value(v_bencoded)
        op = ImmutablePutOp(self._ctx, v_bencoded).start(now)
        return self.op_times.started(op, "put", now)

    def put_mutable(
        self,
        v_bencoded: bytes,
        now: float,
        *,
        keypair: bep44.KeyPair,
        salt: bytes = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> int:
        """get lookup for the current seq and tokens, then put. ``seq=None``: newest + 1."""
        check_value(v_bencoded)
        if len(salt) > MAX_SALT_SIZE:
            raise InvalidArgument("salt longer than 64 bytes")
        op = MutablePutOp(self._ctx, v_bencoded, keypair, salt=salt, seq=seq, cas=cas)
        return self.op_times.started(op.start(now), "put", now)

    def sample_infohashes(self, addr: Addr, target: bytes, now: float) -> int:
        return SampleOp(self._ctx, addr, target).start(now)

    def query_find_node(self, addr: Addr, target: bytes, now: float) -> int:
        """One find_node query to ``addr`` (not a lookup); ends with a SampleDone without
        samples (its ``nodes``, ``node_id`` None if it did not answer)."""
        return SampleOp(self._ctx, addr, target, find_node=True).start(now)

    # ---------------------------------------------------------------- republish

    def add_publication(
        self,
        v_bencoded: bytes,
        due: float,
        *,
        keypair: bep44.KeyPair | None = None,
        salt: bytes = b"",
        seq: int | None = None,
    ) -> Publication:
        """Re-put this item every ``republish_interval``, the first time at ``due``
        (BEP 44; :mod:`~mldht.core.republish`). Mutable items (``keypair``) keep ``seq``.
        An item with the same target is replaced."""
        try:
            return self.republisher.add(v_bencoded, due, keypair=keypair, salt=salt, seq=seq)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None

    def stop_republishing(self, target: bytes) -> bool:
        """Stop re-putting ``target``; False if it was not republished."""
        return self.republisher.remove(target)

    @property
    def republishing(self) -> frozenset[bytes]:
        """Targets of the items this node re-puts."""
        return self.republisher.targets

    def publications(self) -> list[Publication]:
        """The items this node re-puts (e.g. to save the list)."""
        return self.republisher.publications()

    # ---------------------------------------------------------------------- timer

    def handle_timer(self, now: float) -> None:
        ctx = self._ctx
        ctx.now = now
        # Bounded work per call, so that no timer callback runs long (hundreds of
        # lookups started together fall due together): what is left stays due, and
        # next_deadline() says so, for the next call.
        for p in ctx.tx.expire(now, TIMER_EXPIRED_BATCH):
            self._timed_out(p, now)
        ctx.running.run_due(now, TIMER_OPS_BATCH)  # only operations whose deadline passed
        self._maintenance.handle_timer(now)
        self.republisher.handle_timer(now)

    # ---------------------------------------------------------------- inspection

    def good_nodes(self, now: float) -> list[NodeInfo]:
        return list(self.routing.good_nodes(now))

    def snapshot(self, now: float) -> dict[str, Any]:
        """A JSON-able dump: id, routing table, store sizes, counters."""
        ctx = self._ctx
        return {
            "id": ctx.node_id.hex(),
            "external_ip": self.external_ip,
            "routing_table": self.routing.snapshot(now),
            "nodes": len(self.routing),
            "stored_infohashes": len(self.peer_store),
            "stored_peers": self.peer_store.peer_count(),
            "stored_items": len(self.items),
            "lookups_running": sum(isinstance(op, LookupOp) for op in ctx.running.values()),
            "stats": dict(self.stats, spoofed=ctx.tx.spoofed),
        }
