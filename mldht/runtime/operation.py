"""One core operation as the runtime hands it out: :class:`Operation`.

:meth:`DHTNode.operation <mldht.runtime.node.DHTNode.operation>` starts an operation of
the core (:class:`~mldht.core.node.NodeState`: ``get_peers``, ``put_mutable``, ...) and
returns an :class:`Operation`: await :meth:`Operation.result` for its terminal event, or
iterate it for every event (progress events such as ``PeersFound``, the terminal one
last). Which event is terminal is :func:`mldht.core.events.is_terminal`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import anyio

from ..core.compact import Addr
from ..core.events import Event, LookupDone, PeersFound, TerminalEvent, is_terminal
from ..core.node import NodeState
from ..errors import NotRunning, QueryTimeout
from .items import as_infohash

__all__ = ["Operation", "PeerIterator", "StartOp"]

log = logging.getLogger("mldht.node")

StartOp = Callable[[NodeState, float], int]
"""Starts one core operation: ``(state, now) -> op id``."""


class _Waiter:
    """The events of one operation, queued for the task that awaits them."""

    __slots__ = ("_wake", "done", "events")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.done = False
        self._wake = anyio.Event()

    def push(self, event: Event, terminal: bool) -> None:
        self.events.append(event)
        self.done = self.done or terminal
        self._wake.set()

    def close(self) -> None:
        self.done = True
        self._wake.set()

    async def next(self) -> Event | None:
        """The next event; None once the operation ended and every event was read."""
        while not self.events:
            if self.done:
                return None
            await self._wake.wait()
            self._wake = anyio.Event()
        return self.events.popleft()


class Operation(AsyncIterator[Event]):
    """A core operation started by :meth:`DHTNode.operation`.

    The operation starts at the first ``await op.result()`` or ``__anext__`` (a lookup
    first waits for the node's first contacts); from then on it is bounded: past the
    node's operation bound, :meth:`result` and iteration raise :class:`QueryTimeout`.
    :class:`NotRunning` when the node is not running or is closed meanwhile. Leaving
    early is fine: the operation ends on its own in the core.
    """

    def __init__(
        self,
        start: Callable[[], Awaitable[tuple[int, _Waiter]]],
        release: Callable[[int], None],
        bound: float,
    ) -> None:
        self._start = start
        self._release = release
        self._bound = bound
        self._op: int | None = None
        self._waiter: _Waiter | None = None
        self._deadline = 0.0
        self._finished = False
        self._terminal: TerminalEvent | None = None

    @property
    def op(self) -> int | None:
        """The core's id of the operation; None until it started."""
        return self._op

    def __aiter__(self) -> Operation:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        try:
            return await self._next()
        except BaseException:
            self._finish()
            raise

    async def _next(self) -> Event:
        if self._waiter is None:
            self._deadline = anyio.current_time() + self._bound
            with anyio.move_on_after(self._bound):
                self._op, self._waiter = await self._start()
        event: Event | None = None
        if self._waiter is not None:
            with anyio.move_on_after(self._deadline - anyio.current_time()):
                event = await self._waiter.next()
                if event is None:
                    raise NotRunning("the DHTNode was closed")
        if event is None:
            raise QueryTimeout(f"operation did not end within {self._bound:.0f} s")
        if is_terminal(event):
            self._terminal = event
            self._finish()
        return event

    async def result(self) -> TerminalEvent:
        """The operation's terminal event (progress events before it are skipped)."""
        async for _ in self:
            pass
        if self._terminal is None:
            raise NotRunning("the operation was closed before it ended")
        return self._terminal

    def _finish(self) -> None:
        self._finished = True
        if self._op is not None:
            self._release(self._op)

    async def aclose(self) -> None:
        """Stop listening (the operation itself ends on its own in the core)."""
        self._finish()


class Operations(Protocol):
    """What starts core operations: :class:`~mldht.runtime.node.DHTNode`."""

    def operation(
        self, start: StartOp, *, lookup: bool = False, store: bool = False
    ) -> Operation: ...


class PeerIterator(AsyncIterator[Addr]):
    """The async iterator returned by :meth:`DHTNode.iter_peers`.

    The lookup starts at the first ``__anext__``; iteration ends when it does (or at the
    runtime's bound). Leaving early is fine: the lookup finishes in the background.
    """

    def __init__(self, node: Operations, info_hash: bytes | str) -> None:
        ih = as_infohash(info_hash)
        self._operation = node.operation(lambda state, now: state.get_peers(ih, now), lookup=True)
        self._buffer: deque[Addr] = deque()
        self._seen: set[Addr] = set()
        self._finished = False

    def __aiter__(self) -> PeerIterator:
        return self

    async def __anext__(self) -> Addr:
        while not self._buffer:
            if self._finished:
                raise StopAsyncIteration
            try:
                event = await self._operation.__anext__()
            except StopAsyncIteration:
                self._finished = True
                continue
            except QueryTimeout:
                self._finished = True
                log.debug("get_peers lookup passed the runtime's bound")
                raise StopAsyncIteration from None
            except BaseException:
                self._finished = True
                raise
            if isinstance(event, PeersFound | LookupDone):
                self._take(event.peers)
        return self._buffer.popleft()

    def _take(self, peers: Sequence[Addr]) -> None:
        for peer in peers:
            if peer not in self._seen:
                self._seen.add(peer)
                self._buffer.append(peer)

    async def aclose(self) -> None:
        """Stop listening (the lookup itself ends on its own in the core)."""
        self._finished = True
        self._buffer.clear()
        await self._operation.aclose()
