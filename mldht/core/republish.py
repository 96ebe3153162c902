"""Republishing the BEP 44 items a node put (BEP 44, "Expiration": about hourly).

Storing nodes drop an item two hours after it was last put, so its publisher re-puts it.
:class:`Republisher` holds the node's :class:`Publication` list and, on the node's timer
(it adds its own deadline to :meth:`~mldht.core.node.NodeState.next_deadline`), starts
the re-puts that are due, at most ``concurrency`` at once. Those puts are the core's own
operations: they emit no event; the republisher follows their end itself.

A mutable item is re-put with the seq it was put with (a refresh, not a new version).
When storing nodes refuse it as old (301/302), someone holding the key may have put a
newer seq: a get lookup follows, and if it finds a newer seq the item is dropped from the
list (re-putting the old one helps nobody) and :class:`~mldht.core.events.RepublishStopped`
is emitted. An equal seq, which some nodes refuse too, keeps being refreshed.

While the routing table is empty (not joined yet, or offline), due items wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..errors import InvalidArgument
from . import bep44
from .compact import NodeInfo
from .context import Context
from .events import Event, GetDone, PutDone, RepublishStopped, is_terminal
from .krpc import ResponseBody
from .operations import Call, GetOp, LookupOp
from .store_ops import ImmutablePutOp, MutablePutOp

__all__ = [
    "REPUBLISH_CONCURRENCY",
    "REPUBLISH_INTERVAL",
    "WAIT_FOR_TABLE",
    "Publication",
    "Republisher",
]

REPUBLISH_INTERVAL = 3600.0
"""Seconds between re-puts of an item (BEP 44: about hourly; items expire after 2 hours)."""
REPUBLISH_CONCURRENCY = 8
"""Re-puts (and their follow-up gets) running at once."""
WAIT_FOR_TABLE = 5.0
"""Seconds between checks of an empty routing table while items are due."""


@dataclass(eq=False)
class Publication:
    """An item this node put and re-puts: ``seq`` is None for an immutable item
    (``keypair`` None too); ``due`` is when it is re-put next."""

    target: bytes
    v_bencoded: bytes
    keypair: bep44.KeyPair | None
    salt: bytes
    seq: int | None
    due: float


class _Owned(LookupOp):
    """A lookup of the republisher's: its terminal event goes to ``on_done(event, now)``
    instead of the node's event queue (nobody outside waits on it)."""

    on_done: Callable[[Event, float], None]
    _now = 0.0

    def emit(self, event: Event) -> None:
        if is_terminal(event):
            self.on_done(event, self._now)

    # Every path that can end an operation comes with the time: remember it for emit.
    def start(self, now: float) -> int:
        self._now = now
        return super().start(now)

    def handle_timer(self, now: float) -> None:
        self._now = now
        super().handle_timer(now)

    def on_response(
        self,
        call: Call,
        sender: NodeInfo,
        body: ResponseBody,
        version: bytes | None,
        rtt: float,
        now: float,
    ) -> None:
        self._now = now
        super().on_response(call, sender, body, version, rtt, now)

    def on_error(self, call: Call, code: int, message: str, now: float) -> None:
        self._now = now
        super().on_error(call, code, message, now)

    def on_timeout(self, call: Call, now: float) -> None:
        self._now = now
        super().on_timeout(call, now)


class _ImmutableRePut(_Owned, ImmutablePutOp):
    pass


class _MutableRePut(_Owned, MutablePutOp):
    pass


class _SupersededGet(_Owned, GetOp):
    pass


class Republisher:
    """The node's publications and their re-puts (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        interval: float = REPUBLISH_INTERVAL,
        concurrency: int = REPUBLISH_CONCURRENCY,
    ) -> None:
        if not interval > 0:
            raise InvalidArgument(f"republish interval must be positive: {interval!r}")
        if concurrency < 1:
            raise InvalidArgument(f"republish concurrency must be at least 1: {concurrency!r}")
        self._ctx = ctx
        self.interval = float(interval)
        self.concurrency = concurrency
        self._pubs: dict[bytes, Publication] = {}
        self._running: dict[bytes, Publication] = {}
        """Targets with a re-put (or its follow-up get) under way."""
        self._hold_until = 0.0
        self.puts = 0
        """Re-puts ended so far (accepted or not)."""

    # ------------------------------------------------------------------ the list

    @property
    def targets(self) -> frozenset[bytes]:
        return frozenset(self._pubs)

    def publications(self) -> list[Publication]:
        """The publications, oldest first (e.g. to save them)."""
        return list(self._pubs.values())

    def get(self, target: bytes) -> Publication | None:
        return self._pubs.get(bytes(target))

    def add(
        self,
        v_bencoded: bytes,
        due: float,
        *,
        keypair: bep44.KeyPair | None = None,
        salt: bytes = b"",
        seq: int | None = None,
    ) -> Publication:
        """Republish an item from ``due`` on (replacing one with the same target)."""
        if keypair is None:
            target = bep44.immutable_target(v_bencoded)
            seq = None
        else:
            if seq is None or not 0 <= seq <= bep44.MAX_SEQ:
                raise InvalidArgument(f"a mutable publication needs its seq, got {seq!r}")
            target = bep44.mutable_target(keypair.public_key, salt)
        pub = Publication(target, v_bencoded, keypair, salt, seq, due)
        self._pubs.pop(target, None)
        self._pubs[target] = pub
        return pub

    def remove(self, target: bytes) -> bool:
        """Stop re-putting ``target``; False if it was not in the list. A re-put under
        way ends unheeded."""
        return self._pubs.pop(bytes(target), None) is not None

    # ------------------------------------------------------------------ timer

    def next_deadline(self) -> float | None:
        if len(self._running) >= self.concurrency:
            return None  # the end of a running re-put starts the next one
        due = min((p.due for t, p in self._pubs.items() if t not in self._running), default=None)
        if due is None:
            return None
        return max(due, self._hold_until)

    def handle_timer(self, now: float) -> None:
        if now < self._hold_until:
            return
        self._start_due(now)

    def _start_due(self, now: float) -> None:
        running = self._running
        for target, pub in list(self._pubs.items()):
            if len(running) >= self.concurrency:
                return
            if pub.due > now or target in running:
                continue
            if not len(self._ctx.routing):
                self._hold_until = now + WAIT_FOR_TABLE  # nobody to put to yet
                return
            pub.due = now + self.interval
            running[target] = pub
            op: _Owned
            if pub.keypair is None:
                op = _ImmutableRePut(self._ctx, pub.v_bencoded)
            else:
                op = _MutableRePut(
                    self._ctx, pub.v_bencoded, pub.keypair, salt=pub.salt, seq=pub.seq
                )
            op.on_done = partial(self._put_done, pub)
            op.start(now)

    def _put_done(self, pub: Publication, event: Event, now: float) -> None:
        assert isinstance(event, PutDone)
        self.puts += 1
        current = self._pubs.get(pub.target) is pub
        if (
            current
            and pub.keypair is not None
            and any(code in (301, 302) for code, _ in event.errors)
        ):
            # Refused as old: look for a newer seq before deciding.
            op = _SupersededGet(self._ctx, pub.target, salt=pub.salt, mutable=True)
            op.on_done = partial(self._get_done, pub)
            op.start(now)
            return
        self._ended(pub, now)

    def _get_done(self, pub: Publication, event: Event, now: float) -> None:
        assert isinstance(event, GetDone)
        newest = event.item
        if (
            newest is not None
            and newest.seq is not None
            and pub.seq is not None
            and newest.seq > pub.seq
            and self._pubs.get(pub.target) is pub
        ):
            del self._pubs[pub.target]
            self._ctx.events.append(RepublishStopped(pub.target, pub.seq, newest.seq))
        self._ended(pub, now)

    def _ended(self, pub: Publication, now: float) -> None:
        if self._running.get(pub.target) is pub:
            del self._running[pub.target]
        self._start_due(now)
