"""The answer path's fast lane: ping, find_node and get_peers in their common shape, from
the decoded datagram to the reply bytes in one method.

Most datagrams a public node receives are these three queries, well formed, with no
``want``, ``noseed``, ``scrape`` or ``ro``. :meth:`Answerer.answer` takes the dict the
decoder gave and, for those, checks the few keys it reads, does the querier's routing
bookkeeping (:meth:`RoutingTable.queried`; a querier the table would take is pinged),
and frames the reply from prepared pieces: no message objects, one peer-store call for a
get_peers (its token decision and its values from one look-up of the info-hash), the
closest nodes from :class:`~mldht.core.nearest.Nearest`'s pre-encoded snapshot. Anything
else (another method or shape, a read-only node, a malformed query) returns False and
goes the general way (:mod:`~mldht.core.krpc`, :class:`QueryHandlers`), which answers
exactly as this lane would have: the tests feed both the same queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .compact import Addr
from .context import Context
from .handlers import QueryHandlers
from .item_store import ItemStore
from .krpc import T_KEYS, ip_head, reply_tail
from .peer_records import pick_values
from .peer_store import DEFAULT_VALUES_BUDGET as VALUES_BUDGET
from .peer_store import PeerStore
from .tokens import TokenManager

__all__ = ["Answerer"]


class Answerer(QueryHandlers):
    """:class:`QueryHandlers` with a fast lane for the common queries (see the module)."""

    def __init__(
        self,
        ctx: Context,
        peer_store: PeerStore,
        items: ItemStore,
        tokens: TokenManager,
        queries_in: dict[bytes, int],
        ping: Callable[[Addr, float], None],
    ) -> None:
        super().__init__(ctx, peer_store, items, tokens)
        self._queries_in = queries_in
        self._ping_querier = ping
        self._nid = b""
        self._id_item = b""
        self._version: bytes | None = b""
        self._tail = b""

    def answer(self, d: Any, addr: Addr, now: float) -> bool:
        """Answer ``d`` (a decoded datagram from ``addr``) if it is a ping, find_node or
        get_peers in the common shape; False, having done nothing, for anything else."""
        if type(d) is not dict or d.get(b"y") != b"q" or b"ro" in d:
            return False
        t = d.get(b"t")
        a = d.get(b"a")
        if type(t) is not bytes or type(a) is not dict:
            return False
        sid = a.get(b"id")
        if type(sid) is not bytes or len(sid) != 20 or b"want" in a:
            return False
        ctx = self._ctx
        config = ctx.config
        if config.read_only:
            return False
        nid = ctx.node_id
        if nid is not self._nid or config.version is not self._version:
            self._nid = nid
            self._id_item = b"2:id20:" + nid
            self._version = config.version
            self._tail = reply_tail(config.version)
        q = d.get(b"q")
        if q == b"ping":
            items = self._id_item
        elif q == b"find_node":
            target = a.get(b"target")
            if type(target) is not bytes or len(target) != 20:
                return False
            items = self._id_item + self._nodes_items(target, None)
        elif q == b"get_peers":
            ih = a.get(b"info_hash")
            if type(ih) is not bytes or len(ih) != 20 or b"noseed" in a or b"scrape" in a:
                return False
            items = self._peers_items(ih, addr, now)
        else:
            return False
        stats = ctx.stats
        stats["queries_in"] += 1
        self._queries_in[q] += 1
        routing = ctx.routing
        entry = routing.by_id.get(sid)
        if (
            entry is not None
            and entry.node.addr == addr
            and not (entry.fails and entry.in_table and entry.fails >= routing.max_fails)
        ):
            entry.last_query = now  # RoutingTable.queried for a querier it knows, inlined
        elif routing.queried(sid, addr, now):
            self._ping_querier(addr, now)
        n = len(t)
        data = b"".join(
            (
                ip_head(addr),
                items,
                T_KEYS[n] if n < 64 else b"e1:t%d:" % n,
                t,
                self._tail,
            )
        )
        if config.send_rate > 0 and not ctx.spend_reply(len(data)):
            return True
        ctx.out.append((data, addr))
        stats["responses_out"] += 1
        return True

    def _peers_items(self, ih: bytes, addr: Addr, now: float) -> bytes:
        """The ``r`` items of a get_peers answer: id, nodes, token, values."""
        ip = addr[0]
        ctx = self._ctx
        packed, pools = self._peers.for_reply(ih, now, ip, 6 if ":" in ip else 4)
        parts = [self._id_item, self._nodes_items(ih, None)]
        if packed is not None:
            token = self._tokens.issue_packed(packed, ih, now)
            parts += (b"5:token%d:" % len(token), token)
        if pools:  # compact already (6 or 18 bytes each)
            values = pick_values(pools, ctx.config.max_values, ctx.rng, False, VALUES_BUDGET)
            if values:
                parts.append(b"6:valuesl")
                for v in values:
                    parts += (b"6:" if len(v) == 6 else b"18:", v)
                parts.append(b"e")
        return b"".join(parts)
