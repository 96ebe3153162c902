"""Item writes off the event loop: the datagrams queued with them leave after the commit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from mldht.core.bep44 import immutable_target
from mldht.core.compact import Addr
from mldht.core.item_store import ItemWrite, StoredItem
from mldht.runtime.item_db import SQLiteItemBackend
from mldht.runtime.item_writer import ItemWriter


class GatedBackend(SQLiteItemBackend):
    """A real item database whose commits wait for the test to open a gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.started = threading.Event()

    def apply(self, writes: Sequence[ItemWrite]) -> None:
        self.started.set()
        assert self.gate.wait(10)
        super().apply(writes)


def write(v: bytes) -> ItemWrite:
    target = immutable_target(v)
    return target, StoredItem(target, v, None, b"", None, None, 1.0, 1)


@pytest.mark.anyio
async def test_replies_wait_for_their_commit(tmp_path: Path) -> None:
    backend = GatedBackend(tmp_path / "items.sqlite")
    errors: list[int] = []
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inbox,
    ):
        out.setblocking(False)
        inbox.bind(("127.0.0.1", 0))
        inbox.settimeout(0.05)

        def send(batch: Sequence[tuple[bytes, Addr]]) -> None:
            for data, addr in batch:
                out.sendto(data, addr)

        writer = ItemWriter(backend, send, lambda n, exc: errors.append(n))
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            writer.submit([write(b"i1e")], [(b"ack", inbox.getsockname())])
            assert await anyio.to_thread.run_sync(backend.started.wait, 10)
            with pytest.raises(TimeoutError):  # the commit has not happened: no ack yet
                inbox.recv(16)
            assert backend.count() == 0
            backend.gate.set()
            inbox.settimeout(10)
            assert await anyio.to_thread.run_sync(inbox.recv, 16) == b"ack"
            assert backend.count() == 1
            # queued at close: applied on the caller's thread, the datagrams dropped
            tg.cancel_scope.cancel()
        writer.submit([write(b"i2e")], [(b"late", inbox.getsockname())])
        writer.flush()
        assert backend.count() == 2 and writer.pending == 0 and not errors
    backend.close()
