"""Watching a running node: ``DHTNode.events()`` and ``DHTNode.serve_metrics()``.

The core queues node events (:data:`~mldht.core.events.NodeEvent`); after every call
into it the runtime hands them to an :class:`EventBus`, which copies each to every
watcher's own buffer. A buffer is bounded: when a watcher falls behind, its oldest
events are dropped and it is told how many (an :class:`~mldht.core.events.EventsLost`
in their place). Publishing never waits, so a slow watcher never slows the node.

:class:`WatchAPI` is the mixin of :class:`~mldht.runtime.node.DHTNode` that offers them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from ..core.compact import Addr
from ..core.events import EventsLost, ExternalAddressChanged, NodeEvent, Warning
from ..errors import InvalidArgument

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..core.node import NodeState

__all__ = ["DEFAULT_BUFFER", "EventBus", "EventStream", "WatchAPI"]

log = logging.getLogger("mldht.node")

DEFAULT_BUFFER = 1000
"""Events a watcher's buffer holds before the oldest are dropped."""


class _Watcher:
    """One consumer's bounded buffer."""

    __slots__ = ("buffer", "closed", "lost", "maxsize", "wake")

    def __init__(self, maxsize: int) -> None:
        self.buffer: deque[NodeEvent] = deque()
        self.maxsize = maxsize
        self.lost = 0
        self.closed = False
        self.wake = anyio.Event()

    def push(self, event: NodeEvent) -> None:
        buffer = self.buffer
        if len(buffer) >= self.maxsize:
            buffer.popleft()
            self.lost += 1
        buffer.append(event)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def next(self) -> NodeEvent | None:
        """The next event (an EventsLost first if some were dropped); None once closed
        and drained."""
        while True:
            if self.lost:
                lost, self.lost = self.lost, 0
                return EventsLost(lost)
            if self.buffer:
                return self.buffer.popleft()
            if self.closed:
                return None
            await self.wake.wait()
            self.wake = anyio.Event()


class EventBus:
    """Copies node events to every watcher (see the module docstring)."""

    def __init__(self) -> None:
        self._watchers: list[_Watcher] = []
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self._watchers)

    def publish(self, event: NodeEvent) -> None:
        for watcher in self._watchers:
            watcher.push(event)

    def drain(self, state: NodeState, lost_before: int) -> int:
        """Take the core's queued node events, log what the operator should see, and
        publish them; returns the core's lost count now (to pass next time)."""
        while (event := state.next_notice()) is not None:
            if isinstance(event, ExternalAddressChanged):
                log.info(
                    "external IP is %s (BEP 42 vote); node id %s", event.ip, event.node_id.hex()
                )
            if self._watchers:
                self.publish(event)
        lost = state.notices_lost
        if lost != lost_before and self._watchers:
            self.publish(EventsLost(lost - lost_before))
        return lost

    def watch(self, maxsize: int) -> EventStream:
        """A new watcher, registered now (it gets every event from this call on)."""
        if maxsize < 1:
            raise InvalidArgument(f"maxsize must be at least 1, got {maxsize}")
        watcher = _Watcher(maxsize)
        if self._closed:
            watcher.close()
        else:
            self._watchers.append(watcher)
        return EventStream(self, watcher)

    def _forget(self, watcher: _Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def close(self) -> None:
        """The node stopped: every watcher's iteration ends once it read its buffer."""
        self._closed = True
        for watcher in self._watchers:
            watcher.close()


class EventStream(AsyncIterator[NodeEvent]):
    """The events of one watcher (see :meth:`WatchAPI.events`). Iteration ends when the
    node stops; :meth:`aclose` (or ``async with``, or dropping the stream) lets go."""

    def __init__(self, bus: EventBus, watcher: _Watcher) -> None:
        self._bus = bus
        self._watcher = watcher

    async def __anext__(self) -> NodeEvent:
        event = await self._watcher.next()
        if event is None:
            self._bus._forget(self._watcher)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop watching: the node forgets this watcher, iteration ends."""
        self._watcher.close()
        self._watcher.buffer.clear()
        self._bus._forget(self._watcher)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        self._bus._forget(self._watcher)


class WatchAPI:
    """Events and metrics of :class:`~mldht.runtime.node.DHTNode` (a mixin)."""

    _bus: EventBus
    _tg: TaskGroup | None

    # provided by DHTNode
    def _check_open(self) -> None:
        raise NotImplementedError

    def events(self, maxsize: int = DEFAULT_BUFFER) -> EventStream:
        """What happens to the node, as it happens::

            async for event in node.events():
                if isinstance(event, mldht.PeerAnnounced): ...

        Yields :class:`~mldht.Ready`, :class:`~mldht.NodeAdded`,
        :class:`~mldht.NodeRemoved`, :class:`~mldht.PeerAnnounced`,
        :class:`~mldht.ItemStored`, :class:`~mldht.ExternalAddressChanged` and
        :class:`~mldht.Warning` from the moment of the call; it ends when the node stops
        (``aclose()`` it, or use it as ``async with node.events() as events:``, to stop
        watching earlier). Each call is a watcher of its own,
        with a buffer of ``maxsize`` events: one that falls behind loses the oldest and
        gets :class:`~mldht.EventsLost` (how many) in their place; the node never waits
        for a watcher.
        """
        self._check_open()
        return self._bus.watch(maxsize)

    def _warn(self, kind: str, message: str) -> None:
        """Log a warning and hand it to the watchers as a Warning event."""
        log.warning("%s", message)
        self._bus.publish(Warning(kind, message))

    async def serve_metrics(self, address: Addr) -> Addr:
        """Serve Prometheus text at ``http://HOST:PORT/metrics`` while the node runs
        (needs ``pip install mldht[metrics]``); returns the address bound (port 0 picks
        one). The figures are read from the node's counters at each scrape; see
        :mod:`mldht.runtime.metrics` for the names and for a registry of one's own."""
        self._check_open()
        from . import metrics  # prometheus-client is an optional extra

        assert self._tg is not None
        return await metrics.serve(self, address, self._tg)  # type: ignore[arg-type]
