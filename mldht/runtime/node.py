"""DHTNode: one UDP socket driving a :class:`~mldht.core.node.NodeState` on anyio.

The runtime is a short loop around the pure core (the aioquic shape; README, Design):

* a receive task feeds every datagram to :meth:`NodeState.receive_datagram`, in
  batches (:mod:`mldht.runtime.udp`);
* one timer task sleeps until :meth:`NodeState.next_deadline` (woken early when a new
  deadline comes sooner) and calls :meth:`NodeState.handle_timer`;
* after every call into the core, what it queued (:meth:`NodeState.datagrams_to_send`)
  goes straight to the socket (a sender task takes over only while the kernel's buffer
  is full), and its events are dispatched to the callers waiting on their op ids.

Every awaitable API call is bounded: the core ends each operation with one terminal
event within its lookup timeout, and the runtime adds its own bound on top.

Every operation goes through one primitive, :meth:`DHTNode.operation`
(:mod:`mldht.runtime.operation`). BEP 44 items and the key/value API built on them (BEP 46
too) are methods of :class:`DHTNode` from the mixin :class:`~mldht.runtime.item_api.ItemAPI`,
over that primitive; the value and key conventions are in :mod:`mldht.runtime.items`. The
core republishes the items this node put (BEP 44 asks publishers to, about hourly) on its
timer; the runtime saves that list.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ..core.compact import Addr, NodeInfo
from ..core.events import Event, RepublishStopped, is_terminal
from ..core.ids import random_id
from ..core.node import NodeConfig, NodeState
from ..core.tunables import Tunables
from ..errors import InvalidArgument, MldhtError, NotRunning
from . import bootstrap as _bootstrap
from . import persist, udp
from .dht_api import DHTAPI, format_addr
from .item_api import REPUBLISH_INTERVAL, ItemAPI
from .item_writer import ItemWriter
from .node_config import node_config
from .operation import Operation, PeerIterator, StartOp, _Waiter
from .udp import UDPLoops
from .watch import EventBus, WatchAPI

if TYPE_CHECKING:
    from ..core.bep44 import KeyPair
    from ..core.item_store import ItemBackend
    from .peer_db import PeerDB

__all__ = [
    "REPUBLISH_INTERVAL",
    "SAVE_INTERVAL",
    "DHTNode",
    "Operation",
    "PeerIterator",
    "format_addr",
    "run",
]

log = logging.getLogger("mldht.node")

SAVE_INTERVAL = 300.0
"""Seconds between saves of the state directory while the node runs (the id and the
table are saved once as soon as the node has joined, too)."""
EXPORT_CHUNK = 2_000
"""Peers exported from the core per step of a save (about a millisecond on the loop);
each chunk is written in a worker thread while the loop serves the network."""
LOAD_CHUNK = 250
"""Saved peers handed to the core per step of the load at start (a few milliseconds)."""

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


def run(
    func: Callable[[Unpack[PosArgsT]], Awaitable[T]],
    *args: *PosArgsT,
    backend: str | None = None,
) -> T:
    """Run ``func(*args)`` on anyio: asyncio with uvloop when it is installed, or ``backend``.

    ``backend`` is ``"asyncio"`` (the default; uvloop answers about 4x more datagrams,
    bench/throughput.py) or ``"trio"``.
    """
    if backend in (None, "asyncio"):
        options: dict[str, Any] = {}
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options["use_uvloop"] = True
        return anyio.run(func, *args, backend="asyncio", backend_options=options)
    return anyio.run(func, *args, backend=backend)


FINAL_SAVE_BOUND = 60.0
"""Seconds the save at exit may take (a stuck disk must not hang the exit)."""
TIMER_SLACK = 0.02
"""Seconds a timer may fire late rather than be re-armed (see DHTNode._after_change)."""


def _now() -> float:
    """The core's clock: wall-clock seconds, since stored items and peers outlive the
    process (their times are saved and compared after a restart)."""
    return time.time()


class DHTNode(DHTAPI, ItemAPI, WatchAPI, UDPLoops):
    """A mainline DHT node on one UDP socket; use it as an async context manager::

        async with DHTNode(bind=("0.0.0.0", 6881), state_dir="~/.mldht") as node:
            peers = await node.get_peers(info_hash)

    * ``bind``: the (host, port) to listen on; port 0 picks a free port (see
      :attr:`address`).
    * ``bootstrap``: routers used as first contacts. ``None`` means the public routers
      (:data:`~mldht.runtime.bootstrap.PUBLIC_ROUTERS`); a list of (host, port) replaces
      them; an empty list means none. The nodes saved in ``state_dir`` are pinged in
      every case.
    * ``state_dir``: where the node id, the routing table's good nodes and the stored
      peers are saved (once joined, every 5 minutes and on exit; off the event loop:
      see :mod:`mldht.runtime.persist`), BEP 44 items are kept, and the list
      of items the node republishes (see :attr:`republishing`); created
      if missing. ``None``: nothing is saved and the id is new each run.
    * ``read_only``: BEP 43, the node sends ``ro=1`` and answers no query.
    * ``keypair``: the node's own key pair for the key/value API (:meth:`set`,
      :meth:`get`). ``None``: the one in ``<state_dir>/identity.key`` (created, mode
      0600, on first use), or, without a state directory, a new one for this run only.
    * ``republish_interval``: seconds between re-puts of the BEP 44 items this node put
      (default one hour, as BEP 44 asks of publishers).
    * ``retry_join``: when no bootstrap node answers, keep trying with backoff (the
      core's: 5 s doubling to 5 min; a warning at the first failure, then at growing
      intervals). ``False`` for a short-lived node: one round, then its
      operations find nobody to ask.
    * ``config``: a :class:`~mldht.core.config.NodeConfig` (every tunable, typed);
      ``tunables``: any of its fields as keywords (``k=``, ``alpha=``,
      ``query_timeout=``, ...), applied over ``config``: ``mypy`` checks their names
      and types (:class:`~mldht.core.tunables.Tunables`); an unknown name raises
      ``TypeError``. ``ipv6`` follows the bind address and ``local_network`` its scope
      unless set.

    A node holds an anyio task group, so nodes entered in one task must be left in the
    reverse order (or each run in a task of its own).
    """

    def __init__(
        self,
        bind: Addr = ("0.0.0.0", 6881),
        bootstrap: Sequence[Addr] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        *,
        keypair: KeyPair | None = None,
        republish_interval: float = REPUBLISH_INTERVAL,
        retry_join: bool = True,
        config: NodeConfig | None = None,
        **tunables: Unpack[Tunables],
    ) -> None:
        self._init_items(keypair, republish_interval)
        host, port = bind
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgument(f"bind port out of range: {port!r}")
        self.config = node_config(config, tunables, host, bootstrap is None, read_only)
        self._bind: Addr = (host, port)
        self._routers: list[Addr] = list(
            _bootstrap.PUBLIC_ROUTERS if bootstrap is None else bootstrap
        )
        # Nodes the user named are ordinary neighbours once they answer; the public
        # routers are first contacts only (BEP 5 asks not to put them in tables).
        self._routers_are_nodes = bootstrap is not None
        self._state_dir = Path(state_dir).expanduser() if state_dir is not None else None
        # The operating system's CSPRNG: token secrets, transaction ids and node ids must
        # not be predictable from what a node sends (a seeded Mersenne Twister can be
        # recovered from 624 of its outputs). Seeded RNGs are for the simulator.
        self._rng: random.Random = random.SystemRandom()
        # A lookup ends within lookup_timeout, its store phase within one more
        # query_timeout (core); this bound only catches a core that broke its promise.
        self._op_bound = self.config.lookup_timeout + 2 * self.config.query_timeout + 10.0
        self._state_obj: NodeState | None = None
        self._address: Addr | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._closed = False
        self._item_backend: ItemBackend | None = None
        self._item_writer: ItemWriter | None = None
        self._saved_nodes: tuple[NodeInfo, ...] = ()
        self._peer_db: PeerDB | None = None
        self._peers_ready = False  # the saved peers are all in the core (none to load)
        self._legacy_peers: list[list[Any]] | None = None  # to migrate from state.json
        self._save_lock = anyio.Lock()
        self._retry_join = retry_join
        self._bus = EventBus()
        self._notices_lost = 0
        self.receive_errors = 0
        """Datagrams whose handling raised (logged at debug and dropped)."""
        self.send_errors = 0
        """Datagrams the OS refused to send (logged at debug and dropped)."""
        self.storage_errors = 0
        """Batches of item changes the item database refused (logged as warnings)."""
        self.on_datagram: Callable[[bytes, Addr, float], None] | None = None
        """Called with (data, source, time) before each received datagram is handled (to
        trace traffic); an exception it raises drops the datagram like a bad one."""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> DHTNode:
        if self._stack is not None:
            raise NotRunning("a DHTNode can be entered only once")
        self._stack = AsyncExitStack()
        try:
            await self._start(self._stack)
        except BaseException:
            self._closed = True
            await self._stack.aclose()
            self._close_backend()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None and self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            # The body's exception is not handed to the task group, which would wrap it
            # in an ExceptionGroup: it propagates as it is once the tasks are closed.
            await self._stack.__aexit__(None, None, None)
            return None
        finally:
            self._closed = True
            for waiter in self._waiters.values():
                waiter.close()
            self._waiters.clear()
            self._bus.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_SAVE_BOUND):
                await self._save(final=True)
            self._close_backend()

    async def _start(self, stack: AsyncExitStack) -> None:
        saved: persist.SavedState | None = None
        if self._state_dir is not None:
            # Read once (the CLI only checks the directory), in a thread: a state.json of
            # the previous version held every stored peer.
            saved = await anyio.to_thread.run_sync(persist.load_state, self._state_dir)
            persist.prepare_state_dir(self._state_dir)
            self._item_backend = await anyio.to_thread.run_sync(
                persist.open_item_backend, self._state_dir
            )
            self._peer_db = await anyio.to_thread.run_sync(persist.open_peer_db, self._state_dir)
        node_id = saved.node_id if saved is not None else random_id(self._rng)
        backend = self._item_backend
        items = await anyio.to_thread.run_sync(backend.load_all) if backend is not None else None
        now = _now()
        self._state_obj = state = NodeState(
            node_id,
            self._rng,
            now,
            self.config,
            saved_items=items,
            republish_interval=self._republish_interval,
        )
        self._load_publications(state, now)
        self._apply_storage_writes()  # expired or surplus saved items are deleted
        if saved is not None:
            self._saved_nodes = tuple(n for n in saved.nodes if n.id != node_id)
            log.info("loaded state: id %s, %d saved nodes", node_id.hex(), len(self._saved_nodes))
            if saved.peers:  # the previous version's file; the database wins if it has rows
                db = self._peer_db
                rows = await anyio.to_thread.run_sync(db.count_rows) if db is not None else 0
                if not rows:
                    self._legacy_peers = saved.peers
        self._peers_loaded = anyio.Event()
        if self._peer_db is None:
            self._peers_ready = True
            self._peers_loaded.set()
        family: Literal[socket.AddressFamily.AF_INET, socket.AddressFamily.AF_INET6] = (
            socket.AF_INET6 if self.config.ipv6 else socket.AF_INET
        )
        host, port = self._bind
        self._raw = raw = await udp.open_socket(host, port, family)
        stack.callback(raw.close)
        local = raw.getsockname()
        self._address = (str(local[0]), int(local[1]))
        self._family = family

        self._send_wake = anyio.Event()
        self._backlog = deque()
        self._timer_wake = anyio.Event()
        self._timer_at = math.inf
        self._ready = anyio.Event()
        self._contacts = anyio.Event()
        # Set once the table holds a node or the first join round ended: a store (put,
        # announce) waits for it, since a bootstrap node still known only as a router
        # never gets the store (the core keeps routers out of a lookup's closest set).
        self._joined = anyio.Event()
        self._table_saved = anyio.Event()  # set when the table is worth a first save
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._receive_loop)
        self._tg.start_soon(self._sender_loop)
        self._tg.start_soon(self._timer_loop)
        self._tg.start_soon(self._join)
        if self._item_backend is not None:
            self._item_writer = ItemWriter(
                self._item_backend, self._send_batch, self._storage_failed
            )
            self._tg.start_soon(self._item_writer.run)
        if self._peer_db is not None:
            self._tg.start_soon(self._load_peers)
        if self._state_dir is not None:
            self._tg.start_soon(self._autosave_loop)
        log.info("listening on %s, id %s", format_addr(self._address), node_id.hex())

    def _close_backend(self) -> None:
        writer, self._item_writer = self._item_writer, None
        if writer is not None:
            writer.flush()
        backend, self._item_backend = self._item_backend, None
        persist.close_item_backend(backend)
        db, self._peer_db = self._peer_db, None
        if db is not None:
            db.close()

    # ------------------------------------------------------------------ properties

    @property
    def _state(self) -> NodeState:
        if self._state_obj is None:
            raise NotRunning("the DHTNode is not running (use it with 'async with')")
        return self._state_obj

    @property
    def node_id(self) -> bytes:
        """Our 20-byte node id (it changes if BEP 42 regenerates it)."""
        return self._state.node_id

    @property
    def address(self) -> Addr:
        """The (host, port) actually bound, also when port 0 was asked."""
        if self._address is None:
            raise NotRunning("the DHTNode is not running (use it with 'async with')")
        return self._address

    @property
    def stats(self) -> dict[str, int]:
        """Counters and sizes: the core's counters (queries_in, queries_out, ...), the
        runtime's (receive_errors, send_errors), and ``nodes`` (routing table),
        ``stored_infohashes``, ``stored_peers`` and ``stored_items`` (what we store)."""
        state = self._state
        out = dict(state.stats)
        out["receive_errors"] = self.receive_errors
        out["send_errors"] = self.send_errors
        out["storage_errors"] = self.storage_errors
        out["nodes"] = len(state.routing)
        out["stored_infohashes"] = len(state.peer_store)
        out["stored_peers"] = state.peer_store.peer_count()
        out["stored_items"] = len(state.items)
        return out

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the routing table holds a node; False if ``timeout`` passed first."""
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await self._ready.wait()
        return self._ready.is_set()

    # --------------------------------------------------------------------- tasks

    def _apply_storage_writes(self) -> None:
        """Make the core's item changes durable (one transaction) before any reply of the
        same call is sent, so that an acknowledged put is on disk: once the node runs, in
        the item writer's worker thread, the call's datagrams waiting for it
        (:mod:`~mldht.runtime.item_writer`). Should the database
        fail (a full disk), the replies still go out, the node keeps the items in memory,
        and ``stats["storage_errors"]`` and a warning say so."""
        writes = self._state.storage_writes()
        if not writes or self._item_backend is None:
            return
        if self._item_writer is not None:  # running: off the loop, replies held till done
            self._item_writer.submit(writes, self._state.datagrams_to_send())
            return
        try:
            self._item_backend.apply(writes)
        except Exception as exc:  # sqlite3.Error, OSError: the node goes on in memory
            self._storage_failed(len(writes), exc)

    def _storage_failed(self, count: int, exc: Exception) -> None:
        self.storage_errors += 1
        self._warn("storage_error", f"could not write {count} item changes: {exc}")

    def _core(self, call: Callable[[NodeState, float], T]) -> T:
        """``call(state, now)`` on the running core, then dispatch what it produced."""
        result = call(self._state, _now())
        self._after_change()
        return result

    def _after_change(self) -> None:
        """After every call into the core: save item changes, dispatch its events, wake
        sender and timer."""
        state = self._state
        self._apply_storage_writes()
        self._notices_lost = self._bus.drain(state, self._notices_lost)
        while (event := state.next_event()) is not None:
            if isinstance(event, RepublishStopped):
                self._republish_stopped(event)
                continue
            terminal = is_terminal(event)
            waiter = self._waiters.pop(event.op, None) if terminal else self._waiters.get(event.op)
            if waiter is not None:
                waiter.push(event, terminal)
        self._flush()
        if not self._ready.is_set() and len(state.routing):
            self._ready.set()
            self._joined.set()
        if not self._table_saved.is_set() and len(state.routing) >= self.config.k:
            self._table_saved.set()
        deadline = state.next_deadline()
        # Wake the timer only for a deadline meaningfully earlier than the one it sleeps
        # towards: re-arming a sleep costs a cancel scope, which dominated the profile of
        # a 5,000-node swarm in one process; 20 ms late is harmless for DHT timeouts.
        if deadline is not None and deadline < self._timer_at - TIMER_SLACK:
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        state = self._state
        last_fired: float | None = None
        while True:
            now = _now()
            deadline = state.next_deadline()
            if deadline is not None and deadline <= now:
                if deadline == last_fired:
                    # The core did not move this deadline on: do not spin on it.
                    await anyio.sleep(0.01)
                    now = _now()
                last_fired = deadline
                try:
                    state.handle_timer(now)
                    self._after_change()
                except Exception:
                    log.exception("error in the node's timer")
                await anyio.lowlevel.checkpoint()
                continue
            self._timer_at = math.inf if deadline is None else deadline
            self._timer_wake = anyio.Event()
            with anyio.move_on_after(self._timer_at - now):
                await self._timer_wake.wait()
            self._timer_at = math.inf

    async def _join(self) -> None:
        await _bootstrap.join(
            routers=self._routers,
            saved=[n.addr for n in self._saved_nodes],
            family=self._family,
            ping=self._ping_quietly,
            bootstrap=self._hand_routers,
            progress=lambda: self._state.bootstrapper,
            table_size=lambda: len(self._state.routing),
            answered=lambda: self._state.stats["responses_in"] > 0,
            on_contacts=self._first_round_ended,
            retry=self._retry_join,
        )

    def _first_round_ended(self) -> None:
        self._contacts.set()
        self._joined.set()
        if len(self._state.routing):
            self._table_saved.set()

    async def _ping_quietly(self, addr: Addr) -> None:
        with contextlib.suppress(MldhtError):
            await self.add_node(addr)

    async def _hand_routers(self, routers: list[Addr]) -> None:
        """Hand ``routers`` to the core's bootstrap (BEP 5 self-lookup from them and the
        table; the core retries it as it sees fit) and wait for this round to end."""

        def start(state: NodeState, now: float) -> int:
            op = state.bootstrap(
                routers, now, as_nodes=self._routers_are_nodes, retry=self._retry_join
            )
            # From now on every lookup starts at the routers too (core).
            self._contacts.set()
            return op

        with contextlib.suppress(MldhtError):
            await self._run(start)

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
        doc, count = persist.node_document(state, self._saved_nodes, now, self.config.k)
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

    # ---------------------------------------------------------------- operations

    def _check_open(self) -> None:
        if self._closed or self._state_obj is None:
            raise NotRunning("the DHTNode is not running (use it with 'async with')")

    def _begin(self, start: StartOp) -> tuple[int, _Waiter]:
        """Start an op in the core and register its waiter before any event is read."""
        self._check_open()
        op = start(self._state, _now())
        waiter = self._waiters[op] = _Waiter()
        self._after_change()
        return op, waiter

    def operation(self, start: StartOp, *, lookup: bool = False, store: bool = False) -> Operation:
        """A handle on the core operation ``start(state, now)`` starts (it returns the op id)::

            op = node.operation(lambda state, now: state.get_peers(info_hash, now), lookup=True)
            done = await op.result()        # the terminal event
            async for event in op: ...      # or every event, the terminal one last

        The operation starts at the first use of the handle and is bounded (past the
        bound, :class:`QueryTimeout`). ``lookup``: first wait until the join loop gave
        the routers (lookups start from them); ``store`` (a lookup that ends in a put or
        an announce): until a node answered or the first join round ended.
        """

        async def begin() -> tuple[int, _Waiter]:
            self._check_open()
            if lookup:
                await self._contacts.wait()
            if store:
                await self._joined.wait()
            return self._begin(start)

        return Operation(begin, self._release, self._op_bound)

    def _release(self, op: int) -> None:
        self._waiters.pop(op, None)

    async def _run(self, start: StartOp, *, lookup: bool = False, store: bool = False) -> Event:
        """Start an op and return its terminal event (bounded; QueryTimeout past it)."""
        return await self.operation(start, lookup=lookup, store=store).result()
