"""NodeState: the whole DHT node as one sans-IO state machine (aioquic style).

Bytes and the current time go in (:meth:`NodeState.receive_datagram`,
:meth:`NodeState.handle_timer`); datagrams to send, the next deadline and events come out
(:meth:`NodeState.datagrams_to_send`, :meth:`NodeState.next_deadline`,
:meth:`NodeState.next_event`). Operations (:meth:`NodeState.get_peers`, ...) return an
op id; exactly one terminal event with that id follows.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError, InvalidArgument, KRPCError
from . import bep42, bep44
from .bencode import bdecode
from .compact import Addr, NodeInfo
from .events import (
    AnnounceDone,
    Event,
    ExternalAddressChanged,
    GetDone,
    Item,
    LookupDone,
    PeersFound,
    PingDone,
    PutDone,
    SampleDone,
)
from .ids import random_id_in_range
from .item_store import ItemBackend, ItemStore
from .krpc import (
    AnnouncePeer,
    AnnounceResponse,
    Error,
    FindNode,
    FindNodeResponse,
    Get,
    GetPeers,
    GetPeersResponse,
    GetResponse,
    MalformedMessage,
    Ping,
    PingResponse,
    Put,
    PutResponse,
    Query,
    QueryBody,
    Response,
    ResponseBody,
    SampleInfohashes,
    SampleInfohashesResponse,
    decode_message,
    decode_response,
    encode_error,
    encode_query,
    encode_response,
)
from .lookup import Lookup
from .peer_store import PeerStore
from .routing import RoutingTable
from .tokens import TokenManager
from .transactions import Pending, Transactions

if TYPE_CHECKING:
    import random

__all__ = ["NodeConfig", "NodeState"]

MAX_VALUE_SIZE = bep44.MAX_VALUE_LEN  # BEP 44: bencoded v
MAX_SALT_SIZE = bep44.MAX_SALT_LEN


@dataclass
class NodeConfig:
    """Tunables of a node. Unknown names raise ``TypeError`` (dataclass constructor)."""

    k: int = 8
    alpha: int = 4
    query_timeout: float = 5.0
    soft_timeout: float = 1.0
    lookup_timeout: float = 60.0
    max_infohashes: int = 50_000
    max_peers_per_infohash: int = 500
    max_items: int = 20_000
    max_item_bytes: int = 32 * 1024 * 1024
    sample_interval: int = 21600
    read_only: bool = False
    version: bytes = b"MD\x00\x01"
    ipv6: bool = False
    max_values: int = 50
    rate_limit: float = 100.0
    """Queries per second accepted from one IP (token bucket, burst = 2 s worth)."""
    maintenance_interval: float = 5.0
    adaptive_timeout: bool = True
    """Lookups use a soft timeout of a few times the median RTT measured (at most
    ``soft_timeout``) and do not wait for queries past it (the8472/mldht)."""
    restrict_ips: bool = True
    """One routing table entry per IP (libtorrent's dht_restrict_routing_ips)."""

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


# ------------------------------------------------------------------ operations


@dataclass(eq=False)
class _Op:
    op: int
    silent: bool = False  # internal maintenance (refresh): no event


@dataclass(eq=False)
class _PingOp(_Op):
    addr: Addr = ("", 0)


@dataclass(eq=False)
class _SampleOp(_Op):
    addr: Addr = ("", 0)


@dataclass(eq=False)
class _PutSpec:
    v: bytes
    keypair: bep44.KeyPair | None = None
    salt: bytes = b""
    seq: int | None = None
    cas: int | None = None


@dataclass(eq=False)
class _LookupOp(_Op):
    kind: bytes = b"find_node"  # find_node | get_peers | get
    target: bytes = b""
    lookup: Lookup | None = None
    deadline: float = 0.0
    peers: dict[Addr, None] = field(default_factory=dict)
    announce_port: int | None = None
    announce: bool = False
    put: _PutSpec | None = None
    salt: bytes = b""
    mutable: bool | None = None
    best: Item | None = None
    # store phase (announce_peer / put to the closest nodes that gave a token)
    storing: bool = False
    store_pending: int = 0
    accepted: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    put_seq: int | None = None
    finished: bool = False
    bootstrap: bool = False


@dataclass(frozen=True, slots=True)
class _Call:
    """The context of one query sent for a lookup: its lookup-phase or its store-phase."""

    op: _LookupOp
    node: NodeInfo
    store: bool = False


class _RateLimiter:
    """Per-IP token buckets, bounded in memory (the table is reset when it grows too big)."""

    def __init__(self, rate: float, max_ips: int = 50_000) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self.max_ips = max_ips
        self._b: dict[str, tuple[float, float]] = {}
        self.dropped = 0

    def allow(self, ip: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, last = self._b.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._b[ip] = (tokens, now)
            self.dropped += 1
            return False
        if len(self._b) >= self.max_ips and ip not in self._b:
            self._b.clear()
        self._b[ip] = (tokens - 1.0, now)
        return True


class NodeState:
    """A mainline DHT node without I/O. See the module docstring."""

    def __init__(
        self,
        node_id: bytes,
        rng: random.Random,
        now: float,
        config: NodeConfig | None = None,
        item_backend: ItemBackend | None = None,
    ) -> None:
        if len(node_id) != 20:
            raise InvalidArgument("node id must be 20 bytes")
        self.config = config or NodeConfig()
        self._rng = rng
        self._id = node_id
        self.routing = self._new_table(node_id)
        self.tokens = TokenManager(rng=rng, now=now)
        self.peer_store = PeerStore(
            rng,
            max_infohashes=self.config.max_infohashes,
            max_peers_per_infohash=self.config.max_peers_per_infohash,
        )
        self.items = ItemStore(
            own_id=node_id,
            max_items=self.config.max_items,
            max_bytes=self.config.max_item_bytes,
            backend=item_backend,
        )
        if item_backend is not None:
            self.items.load(now)
        self.voter = bep42.ExternalIPVoter()
        self.external_ip: str | None = None
        self._tx = Transactions(rng)
        self._limiter = _RateLimiter(self.config.rate_limit)
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()
        self._ops: dict[int, _Op] = {}
        self._lookups: dict[int, _LookupOp] = {}
        self._next_op = 1
        self._routers: list[Addr] = []
        self._routers_excluded: set[Addr] = set()
        self._bootstrap_backoff = 5.0
        self._next_bootstrap: float | None = None
        self._bootstrapping = False
        self._read_only_peers: dict[Addr, None] = {}
        self._sample_cache: tuple[float, tuple[bytes, ...]] | None = None
        self._rtts: deque[float] = deque(maxlen=128)  # recent RTTs, for soft timeouts
        self._recently_pinged: dict[Addr, float] = {}
        self._next_maintenance = now + self.config.maintenance_interval
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
        }

    # ------------------------------------------------------------------ properties

    @property
    def node_id(self) -> bytes:
        return self._id

    # --------------------------------------------------------------------- outputs

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        d = self._next_maintenance
        t = self._tx.next_deadline()
        if t is not None and t < d:
            d = t
        for op in self._lookups.values():
            # the store phase ends one query timeout after the lookup's own deadline
            end = op.deadline + self.config.query_timeout if op.storing else op.deadline
            if end < d:
                d = end
            if op.lookup is not None and not op.storing:
                ld = op.lookup.next_deadline()
                if ld is not None and ld < d:
                    d = ld
        return d

    # --------------------------------------------------------------------- sending

    def _send_query(
        self,
        addr: Addr,
        body: QueryBody,
        now: float,
        context: object = None,
        node_id: bytes | None = None,
    ) -> Pending:
        p = self._tx.new(addr, body.method, now, self.config.query_timeout, node_id, context)
        self._out.append(
            (
                encode_query(
                    p.t, body, version=self.config.version, read_only=self.config.read_only
                ),
                addr,
            )
        )
        self.stats["queries_out"] += 1
        return p

    def _reply(self, q: Query, body: ResponseBody, addr: Addr) -> None:
        self._out.append((encode_response(q.t, body, version=self.config.version, ip=addr), addr))
        self.stats["responses_out"] += 1

    def _reply_error(self, t: bytes, code: int, message: str, addr: Addr) -> None:
        self._out.append(
            (encode_error(t, code, message, version=self.config.version, ip=addr), addr)
        )
        self.stats["errors_out"] += 1

    def _emit(self, op: _Op, event: Event) -> None:
        if not op.silent:
            self._events.append(event)

    def _new_op_id(self) -> int:
        n = self._next_op
        self._next_op += 1
        return n

    # --------------------------------------------------------------------- receive

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram. Never raises: garbage is counted or answered with 203/204."""
        try:
            self._receive(data, addr, now)
        except Exception:  # hostile input must never escape the receive path
            self.stats["dropped"] += 1

    def _receive(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            msg = decode_message(data)
        except MalformedMessage as exc:
            self.stats["dropped"] += 1
            if (
                exc.is_query
                and exc.t is not None
                and not self.config.read_only
                and self._limiter.allow(addr[0], now)
            ):
                self._reply_error(exc.t, exc.code, exc.reason, addr)
            return
        if isinstance(msg, Query):
            self.stats["queries_in"] += 1
            if self.config.read_only:  # BEP 43: a read-only node answers no queries
                return
            if not self._limiter.allow(addr[0], now):
                self.stats["rate_limited"] += 1
                return
            self._handle_query(msg, addr, now)
        elif isinstance(msg, Response):
            self._handle_response(msg, addr, now)
        else:
            self._handle_error(msg, addr, now)

    # ------------------------------------------------------------- query handlers

    def _closest_nodes(
        self, target: bytes, want: tuple[bytes, ...] | None
    ) -> tuple[tuple[NodeInfo, ...] | None, tuple[NodeInfo, ...] | None]:
        """``nodes``/``nodes6`` per BEP 32's ``want`` rules (we serve one family)."""
        mine = b"n6" if self.config.ipv6 else b"n4"
        other = b"n4" if self.config.ipv6 else b"n6"
        closest = tuple(self.routing.closest(target, self.config.k))
        ours = closest if (want is None or mine in want) else None
        theirs: tuple[NodeInfo, ...] | None = () if (want is not None and other in want) else None
        return (theirs, ours) if self.config.ipv6 else (ours, theirs)

    def _handle_query(self, q: Query, addr: Addr, now: float) -> None:
        body = q.body
        if q.read_only:
            self._remember_read_only(addr)
        elif body.id != self._id and self.routing.node_queried(NodeInfo(body.id, addr), now):
            self._maybe_ping(addr, now)
        if isinstance(body, Ping):
            self._reply(q, PingResponse(self._id), addr)
        elif isinstance(body, FindNode):
            self._reply(
                q, FindNodeResponse(self._id, *self._closest_nodes(body.target, body.want)), addr
            )
        elif isinstance(body, GetPeers):
            self._on_get_peers(q, body, addr, now)
        elif isinstance(body, AnnouncePeer):
            self._on_announce(q, body, addr, now)
        elif isinstance(body, Get):
            self._on_get(q, body, addr, now)
        elif isinstance(body, Put):
            self._on_put(q, body, addr, now)
        elif isinstance(body, SampleInfohashes):
            self._reply(
                q,
                SampleInfohashesResponse(
                    self._id,
                    self.config.sample_interval,
                    len(self.peer_store),
                    self._samples(now),
                    *self._closest_nodes(body.target, body.want),
                ),
                addr,
            )

    def _samples(self, now: float) -> tuple[bytes, ...]:
        """BEP 51 samples: all when they fit, else a random 20 reused until ``interval``."""
        store = self.peer_store
        if len(store) <= 20:
            return tuple(store.infohashes())
        if self._sample_cache is None or now >= self._sample_cache[0]:
            self._sample_cache = (
                now + self.config.sample_interval,
                tuple(store.sample(self._rng, 20)),
            )
        return self._sample_cache[1]

    def _on_get_peers(self, q: Query, body: GetPeers, addr: Addr, now: float) -> None:
        ih = body.info_hash
        store = self.peer_store
        # Withhold the token when the store is full (libtorrent): no announce can land.
        token = self.tokens.issue(addr[0], ih, now) if store.can_accept(ih, now) else None
        blooms = store.scrape(ih, now) if body.scrape else None
        peers: list[Addr] = []
        if blooms is None:
            # BEP 32: values of the query's family only.
            family = 6 if ":" in addr[0] else 4
            peers = store.get_peers(
                ih, now, self.config.max_values, noseed=body.noseed, rng=self._rng, family=family
            )
        # BEP 33 (as libtorrent): with scrape=1 the filters replace values, to stay < 1024 B.
        self._reply(
            q,
            GetPeersResponse(
                self._id,
                token,
                tuple(peers) if peers else None,
                *self._closest_nodes(ih, body.want),
                blooms[0] if blooms else None,
                blooms[1] if blooms else None,
            ),
            addr,
        )

    def _on_announce(self, q: Query, body: AnnouncePeer, addr: Addr, now: float) -> None:
        if not self.tokens.verify(body.token, addr[0], body.info_hash, now):
            self._reply_error(q.t, KRPCError.PROTOCOL, "invalid token", addr)
            return
        port = addr[1] if body.implied_port else body.port
        # Never store an address from the message body: the source IP only (BEP 5).
        self.peer_store.announce(body.info_hash, (addr[0], port), now, seed=bool(body.seed))
        self._reply(q, AnnounceResponse(self._id), addr)

    def _on_get(self, q: Query, body: Get, addr: Addr, now: float) -> None:
        n4, n6 = self._closest_nodes(body.target, body.want)
        token = self.tokens.issue(addr[0], body.target, now)
        item = self.items.get(body.target, now)
        if item is None:
            self._reply(q, GetResponse(self._id, token, nodes=n4, nodes6=n6), addr)
        elif item.k is None:
            self._reply(
                q, GetResponse(self._id, token, v=item.v_bencoded, nodes=n4, nodes6=n6), addr
            )
        elif body.seq is not None and item.seq is not None and item.seq <= body.seq:
            # BEP 44: the requester already has this seq; send only seq.
            self._reply(q, GetResponse(self._id, token, seq=item.seq, nodes=n4, nodes6=n6), addr)
        else:
            self._reply(
                q,
                GetResponse(
                    self._id,
                    token,
                    v=item.v_bencoded,
                    k=item.k,
                    seq=item.seq,
                    sig=item.sig,
                    nodes=n4,
                    nodes6=n6,
                ),
                addr,
            )

    def _on_put(self, q: Query, body: Put, addr: Addr, now: float) -> None:
        # Check order: libtorrent's (libtorrent's put handler, measured).
        if len(body.v) > MAX_VALUE_SIZE:
            self._reply_error(q.t, KRPCError.MESSAGE_TOO_BIG, "message too big", addr)
            return
        if len(body.salt) > MAX_SALT_SIZE:
            self._reply_error(q.t, KRPCError.SALT_TOO_BIG, "salt too big", addr)
            return
        if body.k is not None:
            target = bep44.mutable_target(body.k, body.salt)
        else:
            target = bep44.immutable_target(body.v)
        if not self.tokens.verify(body.token, addr[0], target, now):
            self._reply_error(q.t, KRPCError.PROTOCOL, "invalid token", addr)
            return
        try:
            if body.k is None:
                self.items.put_immutable(body.v, now)
            else:
                assert body.seq is not None and body.sig is not None
                self.items.put_mutable(body.k, body.salt, body.seq, body.sig, body.v, body.cas, now)
        except KRPCError as exc:
            self._reply_error(q.t, exc.code, exc.message, addr)
            return
        self._reply(q, PutResponse(self._id), addr)

    def _remember_read_only(self, addr: Addr) -> None:
        ro = self._read_only_peers
        ro[addr] = None
        if len(ro) > 10_000:
            del ro[next(iter(ro))]

    def _maybe_ping(self, addr: Addr, now: float) -> None:
        last = self._recently_pinged.get(addr)
        if (last is not None and now - last < 300.0) or self._tx.full:
            return  # a flood of new queriers must not grow our pending table unbounded
        if len(self._recently_pinged) > 10_000:
            self._recently_pinged.clear()
        self._recently_pinged[addr] = now
        self._send_query(addr, Ping(self._id), now)

    # ------------------------------------------------------------- response path

    def _handle_response(self, msg: Response, addr: Addr, now: float) -> None:
        p = self._tx.match(msg.t, addr)
        if p is None:
            self.stats["dropped"] += 1
            return
        self.stats["responses_in"] += 1
        try:
            body = decode_response(p.method, msg)
        except DecodeError:
            self._on_failure(p, now)
            return
        sender = NodeInfo(body.id, addr)
        rtt = now - p.sent_at
        self._rtts.append(rtt)
        if (
            body.id != self._id
            and addr not in self._read_only_peers
            and addr not in self._routers_excluded
        ):
            self.routing.node_responded(sender, now, rtt=rtt, version=msg.version)
        if msg.ip is not None:
            self._vote(addr[0], msg.ip[0], now)
        ctx = p.context
        if isinstance(ctx, _Call):
            if ctx.store:
                self._store_reply(ctx.op, now, accepted=True)
            else:
                self._lookup_response(ctx.op, sender, body, now)
        elif isinstance(ctx, _PingOp):
            self._ops.pop(ctx.op, None)
            self._emit(ctx, PingDone(ctx.op, addr, body.id, msg.version))
        elif isinstance(ctx, _SampleOp):
            self._ops.pop(ctx.op, None)
            if isinstance(body, SampleInfohashesResponse):
                self._emit(
                    ctx,
                    SampleDone(
                        ctx.op,
                        addr,
                        body.id,
                        body.samples,
                        body.num,
                        body.interval,
                        (body.nodes6 if self.config.ipv6 else body.nodes) or (),
                        msg.version,
                        rtt,
                        body.supported,
                    ),
                )

    def _handle_error(self, msg: Error, addr: Addr, now: float) -> None:
        p = self._tx.match(msg.t, addr)
        self.stats["errors_in"] += 1
        if p is None:
            return
        ctx = p.context
        if isinstance(ctx, _Call) and ctx.store:
            ctx.op.errors.append((msg.code, msg.message.decode("utf-8", "replace")))
            self._store_reply(ctx.op, now, accepted=False)
            return
        self._on_failure(p, now, timed_out=False)

    def _on_failure(self, p: Pending, now: float, timed_out: bool = True) -> None:
        ctx = p.context
        if timed_out:
            self.stats["timeouts"] += 1
            if p.node_id is not None:
                self.routing.node_failed(NodeInfo(p.node_id, p.addr), now)
        if isinstance(ctx, _Call):
            op = ctx.op
            if ctx.store:
                self._store_reply(op, now, accepted=False)
            elif op.lookup is not None and not op.finished and not op.storing:
                op.lookup.on_failure(ctx.node, now)
                self._advance(op, now)
        elif isinstance(ctx, _PingOp):
            self._ops.pop(ctx.op, None)
            self._emit(ctx, PingDone(ctx.op, p.addr, None))
        elif isinstance(ctx, _SampleOp):
            self._ops.pop(ctx.op, None)
            self._emit(ctx, SampleDone(ctx.op, p.addr, None))

    # ------------------------------------------------------------------ BEP 42

    def _vote(self, voter_ip: str, reported_ip: str, now: float) -> None:
        new_ip = self.voter.add_vote(voter_ip, reported_ip, now)
        if new_ip is None or new_ip == self.external_ip:
            return
        self.external_ip = new_ip
        if bep42.is_exempt(new_ip) or bep42.is_valid_node_id(self._id, new_ip):
            return
        self.set_node_id(bep42.generate_node_id(new_ip, self._rng), now)
        self._events.append(ExternalAddressChanged(new_ip, self._id))

    def _new_table(self, node_id: bytes) -> RoutingTable:
        # BEP 42: when the table must choose (replacement promotion), prefer nodes whose
        # id matches their IP; local addresses are exempt and count as matching.
        return RoutingTable(
            node_id,
            rng=self._rng,
            k=self.config.k,
            prefer=lambda n: bep42.is_valid_node_id(n.id, n.addr[0]),
            one_per_ip=self.config.restrict_ips,
        )

    def set_node_id(self, node_id: bytes, now: float) -> None:
        """Change our id (BEP 42 regeneration); the table is rebuilt around it."""
        old = self.routing
        self._id = node_id
        self.routing = self._new_table(node_id)
        self.items.set_own_id(node_id)
        for n in old.good_nodes(now):
            if n.id != node_id:
                self.routing.node_responded(n, now)

    # ------------------------------------------------------------------- lookups

    def _start_lookup(
        self,
        kind: bytes,
        target: bytes,
        now: float,
        *,
        routers: list[Addr] | None = None,
        silent: bool = False,
        use_table: bool = True,
    ) -> _LookupOp:
        op = _LookupOp(self._new_op_id(), silent, kind=kind, target=target)
        op.deadline = now + self.config.lookup_timeout
        adaptive = self.config.adaptive_timeout
        op.lookup = Lookup(
            target,
            k=self.config.k,
            alpha=self.config.alpha,
            soft_timeout=self._soft_timeout() if adaptive else self.config.soft_timeout,
            own_id=self._id,
            wait_for_stalled=not adaptive,
        )
        if use_table:
            op.lookup.add_candidates(self.routing.closest(target, self.config.k * 2))
        for r in routers if routers is not None else self._routers:
            op.lookup.add_router(r, member=r not in self._routers_excluded)
        self._lookups[op.op] = op
        return op

    def _soft_timeout(self) -> float:
        """4x the median of recent RTTs, within [0.1 s, soft_timeout]; soft_timeout until
        a few RTTs are known (re-read before each round of queries, so a lookup adapts as its
        first answers arrive). Under lognormal RTTs (sigma 0.5) a live node is slower than
        4x the median less than 0.3% of the time."""
        rtts = self._rtts
        if len(rtts) < 4:
            return self.config.soft_timeout
        median = sorted(rtts)[len(rtts) // 2]
        return min(self.config.soft_timeout, max(0.1, 4.0 * median))

    def _lookup_body(self, op: _LookupOp) -> QueryBody:
        if op.kind == b"get_peers":
            return GetPeers(self._id, op.target)
        if op.kind == b"get":
            return Get(self._id, op.target)
        return FindNode(self._id, op.target)

    def _advance(self, op: _LookupOp, now: float) -> None:
        """Send the queries the lookup wants; finish it when it is done."""
        lk = op.lookup
        if lk is None or op.storing or op.finished:
            return
        if not lk.done and now < op.deadline:
            if self.config.adaptive_timeout:
                lk.set_soft_timeout(self._soft_timeout())
            body = self._lookup_body(op)
            for node in lk.next_queries(now):
                nid = None if lk.is_router(node.addr) else node.id
                self._send_query(node.addr, body, now, _Call(op, node), nid)
        if lk.done or now >= op.deadline:
            self._lookup_finished(op, now)

    def _lookup_response(
        self, op: _LookupOp, sender: NodeInfo, body: ResponseBody, now: float
    ) -> None:
        lk = op.lookup
        if lk is None or op.finished or op.storing:
            return
        nodes: tuple[NodeInfo, ...] = ()
        token: bytes | None = None
        payload: object = None
        if isinstance(body, (FindNodeResponse, GetPeersResponse, GetResponse)):
            nodes = (body.nodes6 if self.config.ipv6 else body.nodes) or ()
        if isinstance(body, GetPeersResponse):
            token = body.token
            new = tuple(p for p in body.peers if p not in op.peers)
            for p in new:
                op.peers[p] = None
            if new:
                self._emit(op, PeersFound(op.op, op.target, new))
        elif isinstance(body, GetResponse):
            token = body.token
            item = self._valid_item(op, body)
            if item is not None and (op.best is None or (item.seq or 0) > (op.best.seq or 0)):
                op.best = item
            payload = body.seq
        lk.on_response(sender, now, [n for n in nodes if n.id != self._id], token, payload)
        self._advance(op, now)

    def _valid_item(self, op: _LookupOp, body: GetResponse) -> Item | None:
        """Check a BEP 44 get reply: hash for immutable, key+signature for mutable."""
        if body.v is None:
            return None
        if body.k is None:
            if op.mutable is True or hashlib.sha1(body.v).digest() != op.target:
                return None
            return Item(op.target, body.v)
        if op.mutable is False or body.seq is None or body.sig is None:
            return None
        if bep44.mutable_target(body.k, op.salt) != op.target:
            return None
        if not bep44.verify(body.k, body.sig, body.v, body.seq, op.salt):
            return None
        return Item(op.target, body.v, body.k, op.salt, body.seq, body.sig)

    def _lookup_finished(self, op: _LookupOp, now: float) -> None:
        lk = op.lookup
        assert lk is not None
        closest = lk.closest(self.config.k)
        if op.announce or op.put is not None:
            op.storing = True
            bodies: list[tuple[NodeInfo, QueryBody]] = []
            if op.announce:
                port = op.announce_port
                for r in closest:
                    if r.token is not None:
                        bodies.append(
                            (
                                r.node,
                                AnnouncePeer(
                                    self._id,
                                    op.target,
                                    port or 1,
                                    r.token,
                                    implied_port=port is None,
                                ),
                            )
                        )
            else:
                put = self._prepare_put(op)
                if put is not None:
                    for r in closest:
                        if r.token is not None:
                            bodies.append((r.node, put(r.token)))
            if not bodies:
                self._finish_store(op)
                return
            op.store_pending = len(bodies)
            for node, b in bodies:
                self._send_query(node.addr, b, now, _Call(op, node, store=True), node.id)
            return
        op.finished = True
        del self._lookups[op.op]
        if op.bootstrap:
            self._bootstrapping = False
            if len(self.routing) < self.config.k:
                # Too few nodes answered: try again later, backing off (5 s up to 5 min).
                self._next_bootstrap = now + self._bootstrap_backoff
                self._bootstrap_backoff = min(300.0, self._bootstrap_backoff * 2)
            else:
                self._next_bootstrap = None
                self._bootstrap_backoff = 5.0
            self._refresh_all(now)
        nodes = tuple(r.node for r in closest)
        if op.kind == b"get":
            self._emit(op, GetDone(op.op, op.target, op.best, nodes))
        else:
            self._emit(op, LookupDone(op.op, op.target, nodes, tuple(op.peers), lk.queried_count))

    def _prepare_put(self, op: _LookupOp) -> Any:
        spec = op.put
        assert spec is not None
        if spec.keypair is None:
            return lambda token: Put(self._id, token, spec.v)
        seq = spec.seq
        if seq is None:
            seq = (op.best.seq + 1) if op.best is not None and op.best.seq is not None else 1
        cas = spec.cas
        op.put_seq = seq
        sig = spec.keypair.sign_item(spec.v, seq, spec.salt)
        k = spec.keypair.public_key
        return lambda token: Put(self._id, token, spec.v, k, seq, sig, spec.salt, cas)

    def _store_reply(self, op: _LookupOp, now: float, accepted: bool) -> None:
        if op.finished:
            return
        if accepted:
            op.accepted += 1
        op.store_pending -= 1
        if op.store_pending <= 0:
            self._finish_store(op)

    def _finish_store(self, op: _LookupOp) -> None:
        op.finished = True
        self._lookups.pop(op.op, None)
        if op.announce:
            self._emit(op, AnnounceDone(op.op, op.target, op.accepted, tuple(op.peers)))
        else:
            self._emit(op, PutDone(op.op, op.target, op.accepted, op.put_seq, tuple(op.errors)))

    # ---------------------------------------------------------------- operations

    def ping(self, addr: Addr, now: float) -> int:
        op = _PingOp(self._new_op_id(), addr=addr)
        self._ops[op.op] = op
        self._send_query(addr, Ping(self._id), now, op)
        return op.op

    def add_node(self, addr: Addr, now: float) -> int:
        """Ping ``addr``; it enters the routing table if it answers."""
        return self.ping(addr, now)

    def find_node(self, target: bytes, now: float) -> int:
        op = self._start_lookup(b"find_node", target, now)
        self._advance(op, now)
        return op.op

    def bootstrap(self, routers: list[Addr], now: float, *, as_nodes: bool = False) -> int:
        """Self-lookup starting at ``routers`` and the table (BEP 5, "Routing Table").

        Routers are used as first contacts of lookups only, never put in the table
        (BEP 5), unless ``as_nodes``: then they are ordinary nodes once they answer (for
        bootstrap nodes a user named, e.g. the first node of a private network).
        """
        self._routers = list(dict.fromkeys(routers))
        self._routers_excluded = set() if as_nodes else set(self._routers)
        return self._bootstrap(now)

    def _bootstrap(self, now: float) -> int:
        self._bootstrapping = True
        op = self._start_lookup(b"find_node", self._id, now)
        op.bootstrap = True
        self._advance(op, now)
        return op.op

    def get_peers(self, info_hash: bytes, now: float) -> int:
        """get_peers lookup. Peers our own store holds for ``info_hash`` (we may be one of
        its storing nodes) come first, in a PeersFound before any query is answered."""
        op = self._start_lookup(b"get_peers", info_hash, now)
        local = self.peer_store.get_peers(
            info_hash,
            now,
            self.config.max_peers_per_infohash,
            family=6 if self.config.ipv6 else 4,
            max_bytes=1 << 30,
        )
        if local:
            op.peers.update(dict.fromkeys(local))
            self._emit(op, PeersFound(op.op, info_hash, tuple(local)))
        self._advance(op, now)
        return op.op

    def announce(self, info_hash: bytes, port: int | None, now: float) -> int:
        """get_peers lookup, then announce_peer to the closest nodes that gave a token.

        ``port=None`` sends ``implied_port=1`` (the receiver uses our UDP source port).
        """
        if port is not None and not 0 < port < 65536:
            raise InvalidArgument(f"port out of range: {port}")
        op = self._start_lookup(b"get_peers", info_hash, now)
        op.announce = True
        op.announce_port = port
        self._advance(op, now)
        return op.op

    def get_item(
        self, target: bytes, now: float, *, salt: bytes = b"", mutable: bool | None = None
    ) -> int:
        """BEP 44 get lookup; the terminal GetDone carries the valid item with highest seq."""
        op = self._start_lookup(b"get", target, now)
        op.salt = salt
        op.mutable = mutable
        self._advance(op, now)
        return op.op

    def put_immutable(self, v_bencoded: bytes, now: float) -> int:
        _check_value(v_bencoded)
        target = bep44.immutable_target(v_bencoded)
        op = self._start_lookup(b"get", target, now)
        op.mutable = False
        op.put = _PutSpec(v_bencoded)
        self._advance(op, now)
        return op.op

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
        _check_value(v_bencoded)
        if len(salt) > MAX_SALT_SIZE:
            raise InvalidArgument("salt longer than 64 bytes")
        target = bep44.mutable_target(keypair.public_key, salt)
        op = self._start_lookup(b"get", target, now)
        op.mutable = True
        op.salt = salt
        op.put = _PutSpec(v_bencoded, keypair, salt, seq, cas)
        self._advance(op, now)
        return op.op

    def sample_infohashes(self, addr: Addr, target: bytes, now: float) -> int:
        op = _SampleOp(self._new_op_id(), addr=addr)
        self._ops[op.op] = op
        self._send_query(addr, SampleInfohashes(self._id, target), now, op)
        return op.op

    # ---------------------------------------------------------------------- timer

    def handle_timer(self, now: float) -> None:
        for p in self._tx.expire(now):
            self._on_failure(p, now)
        for op in list(self._lookups.values()):
            if op.finished:
                continue
            if op.storing:
                if now >= op.deadline + self.config.query_timeout:
                    self._finish_store(op)
                continue
            if op.lookup is not None:
                op.lookup.handle_timer(now)
            self._advance(op, now)
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.config.maintenance_interval
            self._maintenance(now)

    def _refresh_all(self, now: float) -> None:
        """A lookup for a random id in every bucket but the home one (after bootstrap).

        The self-lookup only fills buckets near our id; without this, the far half of
        the id space stays unknown until the 15-minute refresh (libtorrent does the same).
        """
        own = int.from_bytes(self._id, "big")
        # At least the four farthest ranges, even while the table is a single bucket.
        for i in range(max(self.routing.bucket_count - 1, 4)):
            shift = 159 - i
            lo = ((own >> shift) ^ 1) << shift
            target = random_id_in_range(self._rng, lo, lo + (1 << shift))
            near = self.routing.closest(target, 1)
            # Nobody known in that range: our neighbours likely know nobody there either,
            # so ask the routers (queried only when no table node is a candidate).
            empty = not near or (int.from_bytes(near[0].id, "big") ^ lo) >> shift != 0
            op = self._start_lookup(b"find_node", target, now, silent=True, use_table=not empty)
            self._advance(op, now)

    def _maintenance(self, now: float) -> None:
        if (
            self._next_bootstrap is not None
            and now >= self._next_bootstrap
            and not self._bootstrapping
        ):
            self._next_bootstrap = None
            self._bootstrap(now)
        for node in self.routing.nodes_to_ping(now):
            self._send_query(node.addr, Ping(self._id), now, None, node.id)
        if len(self.routing):
            for target in self.routing.buckets_to_refresh(now):
                op = self._start_lookup(b"find_node", target, now, silent=True)
                self._advance(op, now)
        self.peer_store.expire(now)
        self.items.expire(now)

    # ---------------------------------------------------------------- inspection

    def good_nodes(self, now: float) -> list[NodeInfo]:
        return list(self.routing.good_nodes(now))

    def snapshot(self, now: float) -> dict[str, Any]:
        """A JSON-able dump: id, routing table, store sizes, counters."""
        return {
            "id": self._id.hex(),
            "external_ip": self.external_ip,
            "routing_table": self.routing.snapshot(now),
            "nodes": len(self.routing),
            "stored_infohashes": len(self.peer_store),
            "stored_peers": self.peer_store.peer_count(),
            "stored_items": len(self.items),
            "lookups_running": len(self._lookups),
            "stats": dict(self.stats, spoofed=self._tx.spoofed),
        }


def _check_value(v_bencoded: bytes) -> None:
    if not 0 < len(v_bencoded) <= MAX_VALUE_SIZE:
        raise InvalidArgument(f"bencoded value must be 1-{MAX_VALUE_SIZE} bytes")
    try:
        bdecode(v_bencoded)
    except DecodeError:
        raise InvalidArgument("value is not canonical bencode") from None
