"""Saving and loading the state directory while a :class:`~mldht.runtime.node.DHTNode`
runs (a mixin): the stored peers load in small steps after the start, and the id, the
tables (both families of a dual-stack node) and the peers are saved once joined, every
:data:`SAVE_INTERVAL` and on exit, without stalling the loop (:mod:`mldht.runtime.persist`
holds the formats)."""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from . import persist

if TYPE_CHECKING:
    from ..core.node import NodeState
    from .families import Family
    from .peer_db import PeerDB

__all__ = ["EXPORT_CHUNK", "LOAD_CHUNK", "SAVE_INTERVAL", "StateSaving"]

log = logging.getLogger("mldht.node")

SAVE_INTERVAL = 300.0
"""Seconds between saves of the state directory while the node runs (the id and the
table are saved once as soon as the node has joined, too)."""
EXPORT_CHUNK = 2_000
"""Peers exported from the core per step of a save (about a millisecond on the loop);
each chunk is written in a worker thread while the loop serves the network."""
LOAD_CHUNK = 250
"""Saved peers handed to the core per step of the load at start (a few milliseconds)."""


def _now() -> float:
    return time.time()


class StateSaving:
    """The state directory's load and save tasks of :class:`~mldht.runtime.node.DHTNode`."""

    _state_dir: Path | None
    _state_obj: NodeState | None
    _fams: list[Family]
    _peer_db: PeerDB | None
    _peers_ready: bool
    _peers_loaded: anyio.Event
    _legacy_peers: list[list[Any]] | None
    _save_lock: anyio.Lock
    _table_saved: anyio.Event
    config: Any

    # provided by DHTNode
    @property
    def _state(self) -> NodeState:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def _warn(self, kind: str, message: str) -> None:
        raise NotImplementedError

    async def wait_peers_loaded(self, timeout: float | None = None) -> bool:
        """Wait until the peers saved in the state directory are all back in the store
        (they load in small steps after start, while the node already answers); False
        if ``timeout`` seconds passed first or the load failed."""
        self._check_open()
        with anyio.move_on_after(timeout):
            await self._peers_loaded.wait()
        return self._peers_ready

    async def _load_peers(self) -> None:
        """Hand the saved peers to the core, :data:`LOAD_CHUNK` at a time with a
        checkpoint between, reading the database in a worker thread. Peers from a
        state.json of the previous version are saved in the database right after."""
        db, store = self._peer_db, self._state.peer_store
        assert db is not None
        legacy, stored = self._legacy_peers, 0
        try:
            if legacy is not None:
                batches: Any = iter([legacy])
            else:
                batches = await anyio.to_thread.run_sync(partial(db.read_batches, packed=True))
            while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                for i in range(0, len(batch), LOAD_CHUNK):
                    stored += store.load(batch[i : i + LOAD_CHUNK], _now())
                    await anyio.lowlevel.checkpoint()
            self._peers_ready = True
        except Exception as exc:
            self._warn("storage_error", f"could not load the saved peers: {exc}")
        finally:
            self._peers_loaded.set()
        log.info("loaded %d saved peers", stored)
        if legacy is not None and self._peers_ready:
            await self._save(final=False)  # migrate: peers.sqlite, then state.json without

    async def _autosave_loop(self) -> None:
        # The id and the table as soon as the node has joined (a quick restart rejoins
        # from them), then everything every SAVE_INTERVAL.
        await self._table_saved.wait()
        await self._save(final=False, peers=False)
        while True:
            await anyio.sleep(SAVE_INTERVAL)
            await self._save(final=False)

    async def _save(self, final: bool, *, peers: bool = True) -> None:
        """Save the state directory without stalling the loop: the stored peers in
        chunks (exported here, written in a worker thread, one transaction), then
        ``state.json`` in a thread. Peers are saved only once the saved ones are all
        loaded (the database keeps them until then)."""
        if self._state_dir is None or self._state_obj is None:
            return
        async with self._save_lock:
            try:
                await self._save_locked(final, peers and self._peers_ready)
            except Exception as exc:
                self._warn("storage_error", f"could not save the state in {self._state_dir}: {exc}")

    async def _save_locked(self, final: bool, peers: bool) -> None:
        state_dir, state, db = self._state_dir, self._state, self._peer_db
        assert state_dir is not None
        if self._legacy_peers is not None and not (peers and db is not None):
            return  # state.json still holds the only copy of the peers: keep it as it is
        now = _now()
        fams = [(fam.state, fam.saved_nodes) for fam in self._fams]
        doc, count = persist.node_document(fams, now, self.config.k)
        saved_peers = 0
        if peers and db is not None:
            writer = db.writer(now)
            await anyio.to_thread.run_sync(writer.begin)
            try:
                for chunk in state.peer_store.export_chunks(now, EXPORT_CHUNK):
                    await anyio.to_thread.run_sync(writer.add, chunk)
                await anyio.to_thread.run_sync(writer.commit)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(writer.abort)
                raise
            saved_peers = writer.peers
        path = await anyio.to_thread.run_sync(persist.save_state, state_dir, doc)
        if peers and db is not None:
            self._legacy_peers = None
        level = logging.INFO if final else logging.DEBUG
        log.log(level, "saved %d nodes to %s, %d peers", count, path, saved_peers)
