"""Item writes off the event loop, each acknowledged only once it is done.

The core queues the item changes a call made (:meth:`~mldht.core.node.NodeState.storage_writes`)
next to the datagrams it queued, among them the replies that acknowledge those puts. A
SQLite commit takes ~40 us, but a batch of a hundred puts tens of milliseconds and a WAL
checkpoint (an fsync) as long: too long for the event loop. So the runtime hands the
writes *and the datagrams queued with them* to :class:`ItemWriter`: its task applies the
writes in a worker thread (one transaction, in order, several batches merged), then
sends those datagrams. What is promised: a reply acknowledging a put leaves only after
the put's transaction committed (as before: a crash or ``kill -9`` after the reply
loses nothing, see :mod:`mldht.runtime.item_db`); replies and queries queued in the same
call wait with it (a few milliseconds), later ones do not. Reads are not affected: the
core's store is the copy that answers ``get``. At close, writes still queued are applied
on the caller's thread and their datagrams dropped (nothing acknowledged is lost).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import anyio

from ..core.compact import Addr
from ..core.item_store import ItemBackend, ItemWrite

__all__ = ["MAX_MERGED_WRITES", "ItemWriter"]

log = logging.getLogger("mldht.item_writer")

MAX_MERGED_WRITES = 1_000
"""Writes of several calls applied in one transaction, at most (about one batch of
received datagrams)."""

Datagrams = Sequence[tuple[bytes, Addr]]


class ItemWriter:
    """Applies queued item writes in a worker thread, then sends what waited on them."""

    def __init__(
        self,
        backend: ItemBackend,
        send: Callable[[Datagrams], None],
        on_error: Callable[[int, Exception], None],
    ) -> None:
        self._backend = backend
        self._send = send  # the node's send path (its backlog when the kernel's is full)
        self._on_error = on_error
        self._queue: deque[tuple[Sequence[ItemWrite], Datagrams]] = deque()
        self._wake = anyio.Event()

    @property
    def pending(self) -> int:
        """Calls whose writes are not applied yet."""
        return len(self._queue)

    def submit(self, writes: Sequence[ItemWrite], held: Datagrams) -> None:
        """Queue ``writes``; ``held`` is sent once they are applied."""
        self._queue.append((writes, held))
        self._wake.set()

    async def run(self) -> None:
        """The writer task (runs until cancelled; a write under way is finished first)."""
        queue = self._queue
        while True:
            if not queue:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            writes: list[ItemWrite] = []
            held: list[tuple[bytes, Addr]] = []
            while queue and len(writes) < MAX_MERGED_WRITES:
                more, datagrams = queue.popleft()
                writes += more
                held += datagrams
            try:
                await anyio.to_thread.run_sync(self._backend.apply, writes)
            except Exception as exc:  # sqlite3.Error, OSError: the node goes on in memory
                self._on_error(len(writes), exc)
            self._send(held)

    def flush(self) -> None:
        """Apply every queued write now, on this thread (at close); their datagrams are
        dropped."""
        writes = [w for more, _ in self._queue for w in more]
        self._queue.clear()
        if writes:
            try:
                self._backend.apply(writes)
            except Exception as exc:
                self._on_error(len(writes), exc)
