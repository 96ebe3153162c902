"""Lookups followed by a store phase: announce (BEP 5) and put (BEP 44).

The lookup collects write tokens; when it ends, the store query (announce_peer / put)
goes to each of the ``store_k`` (default 10) closest nodes that gave one (passing over
those that withheld it), and the operation ends when all of them answered or failed.
These nodes answered moments ago, so with ``adaptive_timeout`` the phase does not wait
for hard timeouts: a store query unanswered after one soft timeout is sent once more
(``lookup_retry``; a lost datagram), and the phase ends two soft timeouts after it
began. Without it, the phase ends one query timeout after the lookup's deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ..errors import DecodeError, InvalidArgument
from . import bep44
from .bencode import bdecode
from .compact import NodeInfo
from .context import Context
from .events import AnnounceDone, Event, PutDone
from .krpc import AnnouncePeer, GetPeers, Put, QueryBody, ResponseBody
from .lookup import Responded
from .operations import Call, GetOp, GetPeersOp, LookupOp

__all__ = [
    "AnnounceOp",
    "ImmutablePutOp",
    "MutablePutOp",
    "PutOp",
    "StoringLookup",
    "check_value",
]


class StoringLookup(LookupOp):
    """A lookup whose end starts a store phase (see the module docstring).

    Subclasses build the store query for a token (:meth:`store_query`), may prepare it
    once before (:meth:`prepare_store`), and build the terminal event (:meth:`done_event`).
    """

    def __init__(self, ctx: Context, target: bytes) -> None:
        super().__init__(ctx, target)
        self.storing = False
        self.store_pending = 0
        self.accepted = 0
        self.errors: list[tuple[int, str]] = []
        self._outstanding: dict[tuple[str, int], tuple[NodeInfo, QueryBody]] = {}
        self._resend_at: float | None = None
        self._store_end_at = 0.0
        self._store_hard_end = 0.0
        self._store_calls = 0

    def prepare_store(self) -> None:
        """Hook: called once when the lookup phase ends, before :meth:`store_query`."""

    def store_query(self, token: bytes) -> QueryBody:
        raise NotImplementedError

    def done_event(self) -> Event:
        raise NotImplementedError

    # ---------------------------------------------------------------- phases

    def lookup_finished(self, now: float, closest: list[Responded]) -> None:
        self.storing = True
        self.prepare_store()
        config = self.ctx.config
        storers = self.lookup.storers(max(config.store_k, len(closest)))
        calls = [(r.node, self.store_query(r.token)) for r in storers if r.token is not None]
        if not calls:
            self.finish(self.done_event())
            return
        self.store_pending = self._store_calls = len(calls)
        # At the latest when a resent store query would time out too (each unanswered
        # query times out on its own before that and counts as refused).
        self._store_end_at = self._store_hard_end = now + 2 * config.query_timeout
        if config.adaptive_timeout:
            soft = self.ctx.soft_timeout()
            if config.lookup_retry:
                self._resend_at = now + soft
                soft *= 2
            self._store_end_at = min(self._store_end_at, now + soft)
        send = self.ctx.send_query
        for node, body in calls:
            self._outstanding[node.addr] = (node, body)
            send(node.addr, body, now, Call(self, node, store=True), node.id)

    def _store_reply(self, accepted: bool, node: NodeInfo | None = None) -> None:
        if self.finished:
            return
        if node is not None and self._outstanding.pop(node.addr, None) is None:
            return  # the answer to a resent store query's twin, already counted
        if accepted:
            self.accepted += 1
        self.store_pending -= 1
        if self.store_pending <= 0:
            self.finish(self.done_event())

    def next_deadline(self) -> float | None:
        if not self.storing:
            return super().next_deadline()
        if self._resend_at is not None:
            return self._resend_at
        return self._store_end_at

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        if self.storing:
            if now >= self._store_end_at:
                # Two soft timeouts after the queries went out, end only once half of the
                # storers accepted: on a slow or busy network answers come later than the
                # soft timeout, and ending then would report nothing stored (though it
                # was). Otherwise wait for them, up to one hard query timeout.
                if now >= self._store_hard_end or 2 * self.accepted >= self._store_calls:
                    self.finish(self.done_event())
                else:
                    self._store_end_at = self._store_hard_end
            elif self._resend_at is not None and now >= self._resend_at:
                self._resend_at = None
                send = self.ctx.send_query
                for node, body in self._outstanding.values():
                    send(node.addr, body, now, Call(self, node, store=True), node.id)
            return
        super().handle_timer(now)

    # ---------------------------------------------------------------- replies

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        if call.store:
            self._store_reply(True, call.node)
        else:
            super().on_response(call, sender, body, version, rtt, now)

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        if call.store:
            if call.node is None or call.node.addr in self._outstanding:
                self.errors.append((code, message))
            self._store_reply(False, call.node)
        else:
            super().on_error(call, code, message, now)

    def on_timeout(self, call: Call, now: float) -> None:
        if call.store:
            self._store_reply(False, call.node)
        else:
            super().on_timeout(call, now)


class AnnounceOp(StoringLookup, GetPeersOp):
    """get_peers lookup, then announce_peer to the closest nodes that gave a token;
    :class:`PeersFound` on the way, :class:`AnnounceDone` at the end.

    ``port=None`` sends ``implied_port=1`` (the receiver uses our UDP source port).
    ``seed`` announces a seed (BEP 33 ``seed=1``); its lookup asks ``noseed=1``, as
    libtorrent's does (a seed has no use for other seeds).
    """

    terminal_event: ClassVar[type[object]] = AnnounceDone

    def __init__(
        self, ctx: Context, info_hash: bytes, port: int | None, *, seed: bool = False
    ) -> None:
        super().__init__(ctx, info_hash)
        self.port = port
        self.seed = seed

    def query_body(self) -> QueryBody:
        body = super().query_body()
        return replace(body, noseed=True) if self.seed and isinstance(body, GetPeers) else body

    def store_query(self, token: bytes) -> QueryBody:
        port = self.port
        return AnnouncePeer(
            self.ctx.node_id,
            self.target,
            port or 1,
            token,
            implied_port=port is None,
            seed=True if self.seed else None,
        )

    def done_event(self) -> Event:
        return AnnounceDone(self.op, self.target, self.accepted, tuple(self.peers))


class PutOp(StoringLookup, GetOp):
    """BEP 44 get lookup (tokens, current seq), then put; ends with :class:`PutDone`."""

    terminal_event: ClassVar[type[object]] = PutDone

    def __init__(self, ctx: Context, target: bytes, v: bytes, *, salt: bytes, mutable: bool):
        # GetOp's keywords go through StoringLookup's signature: set them after.
        super().__init__(ctx, target)
        self.salt = salt
        self.mutable = mutable
        self.v = v
        self.put_seq: int | None = None

    def done_event(self) -> Event:
        return PutDone(self.op, self.target, self.accepted, self.put_seq, tuple(self.errors))


class ImmutablePutOp(PutOp):
    """Put an immutable item (``v`` is its bencoded value; the target is its SHA-1)."""

    def __init__(self, ctx: Context, v: bytes) -> None:
        super().__init__(ctx, bep44.immutable_target(v), v, salt=b"", mutable=False)

    def store_query(self, token: bytes) -> QueryBody:
        return Put(self.ctx.node_id, token, self.v)


@dataclass(frozen=True, slots=True)
class _Signed:
    """A mutable item ready to put: its key, seq and signature."""

    k: bytes
    seq: int
    sig: bytes


class MutablePutOp(PutOp):
    """Put a mutable item signed with ``keypair``; ``seq=None`` puts the newest seq found
    by the lookup + 1 (1 if none); ``cas`` is sent as is."""

    def __init__(
        self,
        ctx: Context,
        v: bytes,
        keypair: bep44.KeyPair,
        *,
        salt: bytes = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> None:
        target = bep44.mutable_target(keypair.public_key, salt)
        super().__init__(ctx, target, v, salt=salt, mutable=True)
        self.keypair = keypair
        self.seq = seq
        self.cas = cas
        self._signed: _Signed | None = None

    def prepare_store(self) -> None:
        seq = self.seq
        if seq is None:
            best = self.best
            seq = (best.seq + 1) if best is not None and best.seq is not None else 1
        self.put_seq = seq
        sig = self.keypair.sign_item(self.v, seq, self.salt)
        self._signed = _Signed(self.keypair.public_key, seq, sig)

    def store_query(self, token: bytes) -> QueryBody:
        s = self._signed
        assert s is not None, "prepare_store() runs first"
        return Put(self.ctx.node_id, token, self.v, s.k, s.seq, s.sig, self.salt, self.cas)


def check_value(v_bencoded: bytes) -> None:
    """Raise InvalidArgument unless ``v_bencoded`` is a canonical bencoded value of
    1 to 1000 bytes (BEP 44), before a put is started."""
    if not 0 < len(v_bencoded) <= bep44.MAX_VALUE_LEN:
        raise InvalidArgument(f"bencoded value must be 1-{bep44.MAX_VALUE_LEN} bytes")
    try:
        bdecode(v_bencoded)
    except DecodeError:
        raise InvalidArgument("value is not canonical bencode") from None
