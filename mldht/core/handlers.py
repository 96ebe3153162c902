"""Answers to incoming queries: ping, find_node, get_peers, announce_peer, get, put and
sample_infohashes (BEP 5, 32, 33, 44, 51).

:class:`QueryHandlers` gets the tables it answers from explicitly (peer store, item store,
token manager) plus the node's :class:`~mldht.core.context.Context` for the current id,
routing table, config, RNG and the output sink. Admission (the per-IP rate limit, BEP 43
read-only mode) is decided before a query gets here (:mod:`mldht.core.admission`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import KRPCError
from . import bep44
from .compact import Addr, NodeInfo, encode_nodes
from .context import Context
from .events import ItemStored, PeerAnnounced
from .item_store import ItemStore
from .krpc import (
    AnnouncePeer,
    AnnounceResponse,
    FindNode,
    Get,
    GetPeers,
    GetPeersResponse,
    GetResponse,
    Ping,
    Put,
    PutResponse,
    Query,
    SampleInfohashes,
    SampleInfohashesResponse,
    bstr,
)
from .nearest import Nearest
from .peer_store import PeerStore
from .tokens import TokenManager

__all__ = ["MAX_SALT_SIZE", "MAX_VALUE_SIZE", "QueryHandlers"]

MAX_VALUE_SIZE = bep44.MAX_VALUE_LEN  # BEP 44: bencoded v
MAX_SALT_SIZE = bep44.MAX_SALT_LEN

_Handler = Callable[..., None]
"""``handler(query, body, addr, now)``, ``body`` of the type it is registered for."""


class QueryHandlers:
    """Answer admitted queries; :meth:`handle` dispatches on the query's body type."""

    def __init__(
        self,
        ctx: Context,
        peer_store: PeerStore,
        items: ItemStore,
        tokens: TokenManager,
    ) -> None:
        self._ctx = ctx
        self._peers = peer_store
        self._items = items
        self._tokens = tokens
        self._sample_cache: tuple[float, tuple[bytes, ...]] | None = None
        self._nearest = Nearest()
        self.dispatch: dict[type, _Handler] = {
            Ping: self._ping,
            FindNode: self._find_node,
            GetPeers: self._get_peers,
            AnnouncePeer: self._announce,
            Get: self._get,
            Put: self._put,
            SampleInfohashes: self._sample_infohashes,
        }

    def handle(self, q: Query, addr: Addr, now: float) -> None:
        """Queue the answer (or KRPC error) to ``q`` from ``addr``."""
        body = q.body
        self.dispatch[type(body)](q, body, addr, now)

    # ------------------------------------------------------------------ helpers

    sibling: Context | None = None
    """The node of the other address family on a dual-stack node (BEP 32), set by
    :meth:`NodeState.link <mldht.core.node.NodeState.link>`: ``want`` of the other family
    is answered from its routing table; None: an empty list."""
    _sibling_nearest: Nearest | None = None

    def _closest_nodes(
        self, target: bytes, want: tuple[bytes, ...] | None
    ) -> tuple[tuple[NodeInfo, ...] | None, tuple[NodeInfo, ...] | None]:
        """``nodes``/``nodes6`` per BEP 32's ``want`` rules: our own family's table,
        and for ``want`` of the other family the sibling's (if any)."""
        ctx = self._ctx
        ipv6 = ctx.config.ipv6
        mine = b"n6" if ipv6 else b"n4"
        other = b"n4" if ipv6 else b"n6"
        closest = self._nearest.nodes(ctx.routing, target, ctx.config.k)
        ours = closest if (want is None or mine in want) else None
        theirs: tuple[NodeInfo, ...] | None = None
        if want is not None and other in want:
            sib = self.sibling
            if sib is None:
                theirs = ()
            else:
                if self._sibling_nearest is None:
                    self._sibling_nearest = Nearest()  # its own snapshot of that table
                theirs = self._sibling_nearest.nodes(sib.routing, target, sib.config.k)
        return (theirs, ours) if ipv6 else (ours, theirs)

    def _nodes_items(self, target: bytes, want: tuple[bytes, ...] | None) -> bytes:
        """The bencoded ``nodes`` / ``nodes6`` items of a reply, as :meth:`_closest_nodes`
        chooses them, from the prepared compact forms (:class:`Nearest`)."""
        ctx = self._ctx
        if want is None:
            nodes = self._nearest.compact(ctx.routing, target, ctx.config.k)
            return (b"6:nodes6" if ctx.config.ipv6 else b"5:nodes") + bstr(nodes)
        n4, n6 = self._closest_nodes(target, want)
        out = b""
        if n4 is not None:
            out += b"5:nodes" + bstr(encode_nodes(n4))
        if n6 is not None:
            out += b"6:nodes6" + bstr(encode_nodes(n6))
        return out

    def _samples(self, now: float) -> tuple[bytes, ...]:
        """BEP 51 samples: all when they fit, else a random 20 reused until ``interval``."""
        store = self._peers
        if len(store) <= 20:
            return tuple(store.infohashes())
        if self._sample_cache is None or now >= self._sample_cache[0]:
            self._sample_cache = (
                now + self._ctx.config.sample_interval,
                tuple(store.sample(self._ctx.rng, 20)),
            )
        return self._sample_cache[1]

    # ----------------------------------------------------------------- handlers

    def _ping(self, q: Query, body: Ping, addr: Addr, now: float) -> None:
        self._ctx.reply_items(q.t, b"2:id20:" + self._ctx.node_id, addr)

    def _find_node(self, q: Query, body: FindNode, addr: Addr, now: float) -> None:
        ctx = self._ctx
        items = self._nodes_items(body.target, body.want)
        ctx.reply_items(q.t, b"2:id20:" + ctx.node_id + items, addr)

    def _sample_infohashes(self, q: Query, body: SampleInfohashes, addr: Addr, now: float) -> None:
        ctx = self._ctx
        ctx.reply(
            q.t,
            SampleInfohashesResponse(
                ctx.node_id,
                ctx.config.sample_interval,
                len(self._peers),
                self._samples(now),
                *self._closest_nodes(body.target, body.want),
            ),
            addr,
        )

    def _get_peers(self, q: Query, body: GetPeers, addr: Addr, now: float) -> None:
        ctx = self._ctx
        ih = body.info_hash
        store = self._peers
        # Withhold the token when no announce of the querier's could land (libtorrent):
        # the info-hash is full, or its /24 (/64) is at its quota, or a full store would
        # not make room for it (peer_store's fair share), or its address is a bogon.
        accept = store.can_accept(ih, now, source=addr[0])
        token = self._tokens.issue(addr[0], ih, now) if accept else None
        if body.scrape:
            self._scrape(q, body, token, addr, now)
            return
        # BEP 32: values of the query's family only.
        family = 6 if ":" in addr[0] else 4
        values = store.get_values(
            ih, now, ctx.config.max_values, noseed=body.noseed, rng=ctx.rng, family=family
        )
        # Keys in bencode order: id, nodes / nodes6, token, values.
        items = [b"2:id20:", ctx.node_id, self._nodes_items(ih, body.want)]
        if token is not None:
            items += (b"5:token", bstr(token))
        if values:  # compact already (6 or 18 bytes each)
            items.append(b"6:valuesl")
            items += map(bstr, values)
            items.append(b"e")
        ctx.reply_items(q.t, b"".join(items), addr)

    def _scrape(
        self, q: Query, body: GetPeers, token: bytes | None, addr: Addr, now: float
    ) -> None:
        """BEP 33 (as libtorrent): with scrape=1 the bloom filters replace values, to stay
        under 1,024 bytes."""
        ctx = self._ctx
        blooms = self._peers.scrape(body.info_hash, now)
        ctx.reply(
            q.t,
            GetPeersResponse(
                ctx.node_id,
                token,
                None,
                *self._closest_nodes(body.info_hash, body.want),
                blooms[0] if blooms else None,
                blooms[1] if blooms else None,
            ),
            addr,
        )

    def _announce(self, q: Query, body: AnnouncePeer, addr: Addr, now: float) -> None:
        ctx = self._ctx
        if not self._tokens.verify(body.token, addr[0], body.info_hash, now):
            ctx.reply_error(q.t, KRPCError.PROTOCOL, "invalid token", addr)
            return
        port = addr[1] if body.implied_port else body.port
        # Never store an address from the message body: the source IP only (BEP 5).
        if self._peers.announce(body.info_hash, (addr[0], port), now, seed=bool(body.seed)):
            ctx.notify(PeerAnnounced(body.info_hash, (addr[0], port), addr))
        ctx.reply(q.t, AnnounceResponse(ctx.node_id), addr)

    def _get(self, q: Query, body: Get, addr: Addr, now: float) -> None:
        ctx = self._ctx
        nid = ctx.node_id
        n4, n6 = self._closest_nodes(body.target, body.want)
        token = self._tokens.issue(addr[0], body.target, now)
        item = self._items.get(body.target, now)
        if item is None:
            r = GetResponse(nid, token, nodes=n4, nodes6=n6)
        elif item.k is None:
            r = GetResponse(nid, token, v=item.v_bencoded, nodes=n4, nodes6=n6)
        elif body.seq is not None and item.seq is not None and item.seq <= body.seq:
            # BEP 44: the requester already has this seq; send only seq.
            r = GetResponse(nid, token, seq=item.seq, nodes=n4, nodes6=n6)
        else:
            r = GetResponse(
                nid,
                token,
                v=item.v_bencoded,
                k=item.k,
                seq=item.seq,
                sig=item.sig,
                nodes=n4,
                nodes6=n6,
            )
        ctx.reply(q.t, r, addr)

    def _put(self, q: Query, body: Put, addr: Addr, now: float) -> None:
        ctx = self._ctx
        # Check order: libtorrent's (libtorrent's put handler, measured).
        if len(body.v) > MAX_VALUE_SIZE:
            ctx.reply_error(q.t, KRPCError.MESSAGE_TOO_BIG, "message too big", addr)
            return
        if len(body.salt) > MAX_SALT_SIZE:
            ctx.reply_error(q.t, KRPCError.SALT_TOO_BIG, "salt too big", addr)
            return
        if body.k is not None:
            target = bep44.mutable_target(body.k, body.salt)
        else:
            target = bep44.immutable_target(body.v)
        if not self._tokens.verify(body.token, addr[0], target, now):
            ctx.reply_error(q.t, KRPCError.PROTOCOL, "invalid token", addr)
            return
        try:
            if body.k is None:
                self._items.put_immutable(body.v, now, source=addr[0])
            else:
                assert body.seq is not None and body.sig is not None
                self._items.put_mutable(
                    body.k, body.salt, body.seq, body.sig, body.v, body.cas, now, source=addr[0]
                )
        except KRPCError as exc:
            ctx.reply_error(q.t, exc.code, exc.message, addr)
            return
        ctx.notify(ItemStored(target, addr, body.k, body.salt, body.seq))
        ctx.reply(q.t, PutResponse(ctx.node_id), addr)
