"""DHTNode: a UDP socket per address family, each driving a
:class:`~mldht.core.node.NodeState` on anyio (one family, or both: BEP 32,
:mod:`mldht.runtime.families`).

The runtime is a short loop around the pure core (the aioquic shape; README, Design):

* per family, a receive task feeds every datagram of its socket to its core's
  :meth:`NodeState.receive_datagram`, in batches (:mod:`mldht.runtime.udp`);
* per family, a timer task sleeps until :meth:`NodeState.next_deadline` (woken early when a new
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
timer; the runtime saves that list. Saving and loading the state directory is the mixin
:class:`~mldht.runtime.saving.StateSaving`.
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
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ..core.compact import Addr
from ..core.events import Event, RepublishStopped, is_terminal
from ..core.ids import random_id
from ..core.node import NodeConfig, NodeState
from ..core.tunables import Tunables
from ..errors import InvalidArgument, MldhtError, NotRunning
from . import bootstrap as _bootstrap
from . import persist, udp
from .dht_api import DHTAPI, format_addr
from .families import Family, MergedWaiter, bind_list, routers_for, sync_ids
from .item_api import REPUBLISH_INTERVAL, ItemAPI
from .item_writer import ItemWriter
from .node_config import node_config
from .operation import Operation, PeerIterator, StartOp, _Waiter
from .saving import EXPORT_CHUNK, LOAD_CHUNK, SAVE_INTERVAL, StateSaving
from .udp import UDPLoops
from .watch import EventBus, WatchAPI

if TYPE_CHECKING:
    from ..core.bep44 import KeyPair
    from ..core.item_store import ItemBackend
    from .peer_db import PeerDB

__all__ = [
    "EXPORT_CHUNK",
    "LOAD_CHUNK",
    "REPUBLISH_INTERVAL",
    "SAVE_INTERVAL",
    "DHTNode",
    "Operation",
    "PeerIterator",
    "format_addr",
    "run",
]

log = logging.getLogger("mldht.node")

_Key = tuple[int, int]
"""A waiter's key: (the family's rank, the core's op id)."""


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


class DHTNode(DHTAPI, ItemAPI, WatchAPI, UDPLoops, StateSaving):
    """A mainline DHT node on one UDP socket per address family; use it as an async
    context manager::

        async with DHTNode(bind=("0.0.0.0", 6881), state_dir="~/.mldht") as node:
            peers = await node.get_peers(info_hash)

    * ``bind``: the (host, port) to listen on; port 0 picks a free port (see
      :attr:`address`). A list of one IPv4 and one IPv6 address, e.g.
      ``[("0.0.0.0", 6881), ("::", 6881)]``, runs one node on both families (BEP 32,
      :mod:`~mldht.runtime.families`): a routing table each, stores shared, lookups run
      in both and merged; the first address is the primary one (:attr:`address`,
      :attr:`node_id`). :func:`~mldht.runtime.udp.default_binds` says what the host has.
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
      unless set (per family on a dual-stack node).

    A node holds an anyio task group, so nodes entered in one task must be left in the
    reverse order (or each run in a task of its own).
    """

    def __init__(
        self,
        bind: Addr | Sequence[Addr] = ("0.0.0.0", 6881),
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
        self._binds = binds = bind_list(bind)
        dual = len(binds) > 1
        self._configs = [
            node_config(config, tunables, host, bootstrap is None, read_only, dual=dual)
            for host, _ in binds
        ]
        self.config = self._configs[0]
        """The primary family's config (a dual-stack node's other one differs in
        ``ipv6`` and perhaps ``local_network``)."""
        self._fams: list[Family] = []
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
        self._waiters: dict[_Key, _Waiter] = {}
        self._closed = False
        self._item_backend: ItemBackend | None = None
        self._item_writer: ItemWriter | None = None
        self._peer_db: PeerDB | None = None
        self._peers_ready = False  # the saved peers are all in the core (none to load)
        self._legacy_peers: list[list[Any]] | None = None  # to migrate from state.json
        self._save_lock = anyio.Lock()
        self._retry_join = retry_join
        self._bus = EventBus()
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
        primary: NodeState | None = None
        for rank, ((host, port), config) in enumerate(zip(self._binds, self._configs, strict=True)):
            ipv6 = config.ipv6
            fid = saved.family_ids.get(6 if ipv6 else 4, node_id) if saved else node_id
            state = NodeState(
                fid,
                self._rng,
                now,
                config,
                saved_items=items if primary is None else None,
                republish_interval=self._republish_interval,
                sibling=primary,
            )
            family = socket.AF_INET6 if ipv6 else socket.AF_INET
            raw = await udp.open_socket(host, port, family)
            stack.callback(raw.close)
            local = raw.getsockname()
            fam = Family(state, raw, (str(local[0]), int(local[1])), ipv6, rank)
            if saved is not None:
                fam.saved_nodes = tuple(
                    n for n in saved.nodes if (":" in n.addr[0]) == ipv6 and n.id != fid
                )
            self._fams.append(fam)
            primary = primary or state
        first = self._fams[0]
        self._state_obj = state = first.state
        self._raw, self._address = first.sock, first.address
        self._ids = [fam.state.node_id for fam in self._fams]
        for fam in self._fams:  # republished in every family, as they were put
            self._load_publications(fam.state, now)
        self._apply_storage_writes()  # expired or surplus saved items are deleted
        if saved is not None:
            count = sum(len(fam.saved_nodes) for fam in self._fams)
            log.info("loaded state: id %s, %d saved nodes", node_id.hex(), count)
            if saved.peers:  # the previous version's file; the database wins if it has rows
                db = self._peer_db
                rows = await anyio.to_thread.run_sync(db.count_rows) if db is not None else 0
                if not rows:
                    self._legacy_peers = saved.peers
        self._peers_loaded = anyio.Event()
        if self._peer_db is None:
            self._peers_ready = True
            self._peers_loaded.set()

        self._send_wake = anyio.Event()
        self._backlog = deque()
        self._ready = anyio.Event()
        self._contacts = anyio.Event()
        # Set once the table holds a node or the first join round ended: a store (put,
        # announce) waits for it, since a bootstrap node still known only as a router
        # never gets the store (the core keeps routers out of a lookup's closest set).
        self._joined = anyio.Event()
        self._table_saved = anyio.Event()  # set when the table is worth a first save
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        for fam in self._fams:
            self._tg.start_soon(self._receive_loop, fam)
            self._tg.start_soon(self._timer_loop, fam)
            self._tg.start_soon(self._join, fam)
        self._tg.start_soon(self._sender_loop)
        if self._item_backend is not None:
            self._item_writer = ItemWriter(
                self._item_backend, self._send_batch, self._storage_failed
            )
            self._tg.start_soon(self._item_writer.run)
        if self._peer_db is not None:
            self._tg.start_soon(self._load_peers)
        if self._state_dir is not None:
            self._tg.start_soon(self._autosave_loop)
        where = " and ".join(format_addr(fam.address) for fam in self._fams)
        kind = "both families (IPv4 and IPv6)" if len(self._fams) > 1 else first.name + " only"
        log.info("listening on %s (%s), id %s", where, kind, node_id.hex())

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
        """The (host, port) actually bound, also when port 0 was asked (the primary
        family's, the first bound: see :attr:`addresses`)."""
        if self._address is None:
            raise NotRunning("the DHTNode is not running (use it with 'async with')")
        return self._address

    @property
    def addresses(self) -> list[Addr]:
        """Every (host, port) bound: one per address family, the primary first."""
        self.address  # noqa: B018 - raises NotRunning before the start
        return [fam.address for fam in self._fams]

    def _socket_families(self) -> list[socket.AddressFamily]:
        return [socket.AF_INET6 if fam.ipv6 else socket.AF_INET for fam in self._fams]

    @property
    def stats(self) -> dict[str, int]:
        """Counters and sizes: the core's counters (queries_in, queries_out, ...), the
        runtime's (receive_errors, send_errors), and ``nodes`` (routing table),
        ``stored_infohashes``, ``stored_peers`` and ``stored_items`` (what we store).
        A dual-stack node sums its families' counters and tables, and adds
        ``nodes_ipv4`` and ``nodes_ipv6`` (each table's size)."""
        state = self._state
        out = dict(state.stats)
        for fam in self._fams[1:]:
            for key, value in fam.state.stats.items():
                out[key] = out.get(key, 0) + value
        if len(self._fams) > 1:
            for fam in self._fams:
                out["nodes_" + fam.name.lower()] = len(fam.state.routing)
        out["receive_errors"] = self.receive_errors
        out["send_errors"] = self.send_errors
        out["storage_errors"] = self.storage_errors
        out["nodes"] = self._table_size()
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
            self._item_writer.submit(writes, self._datagrams())
            return
        try:
            self._item_backend.apply(writes)
        except Exception as exc:  # sqlite3.Error, OSError: the node goes on in memory
            self._storage_failed(len(writes), exc)

    def _storage_failed(self, count: int, exc: Exception) -> None:
        self.storage_errors += 1
        self._warn("storage_error", f"could not write {count} item changes: {exc}")

    def _core(self, call: Callable[[NodeState, float], T]) -> T:
        """``call(state, now)`` on the running core (on each family's of a dual-stack
        node: a publication is republished in both), then dispatch what it produced;
        returns the primary's result."""
        now = _now()
        result = call(self._state, now)
        for fam in self._fams[1:]:
            call(fam.state, now)
        self._after_change()
        return result

    def stop_republishing(self, target: bytes) -> bool:
        """Stop re-putting the item with ``target`` (in every family); False if it was
        not republished."""
        for fam in self._fams[1:]:
            fam.state.stop_republishing(bytes(target))
        return super().stop_republishing(target)

    def _table_size(self) -> int:
        return sum(len(fam.state.routing) for fam in self._fams)

    def _after_change(self) -> None:
        """After every call into the core: save item changes, dispatch its events, wake
        sender and timer."""
        self._apply_storage_writes()
        waiters = self._waiters
        for fam in self._fams:
            state, rank = fam.state, fam.rank
            fam.notices_lost = self._bus.drain(state, fam.notices_lost)
            while (event := state.next_event()) is not None:
                if isinstance(event, RepublishStopped):
                    self._republish_stopped(event)
                    continue
                terminal = is_terminal(event)
                key = (rank, event.op)
                waiter = waiters.pop(key, None) if terminal else waiters.get(key)
                if isinstance(waiter, MergedWaiter):
                    waiter.push_from(rank, event)
                elif waiter is not None:
                    waiter.push(event, terminal)
        if len(self._fams) > 1:
            self._sync_ids()
        self._flush()
        if not self._ready.is_set() and self._table_size():
            self._ready.set()
            self._joined.set()
        if not self._table_saved.is_set() and self._table_size() >= self.config.k:
            self._table_saved.set()
        for fam in self._fams:
            deadline = fam.state.next_deadline()
            # Wake the timer only for a deadline meaningfully earlier than the one it
            # sleeps towards: re-arming a sleep costs a cancel scope, which dominated the
            # profile of a 5,000-node swarm in one process; 20 ms late is harmless here.
            if deadline is not None and deadline < fam.timer_at - TIMER_SLACK:
                fam.timer_wake.set()

    def _sync_ids(self) -> None:
        """One node id for both families while BEP 42 allows (:func:`sync_ids`)."""
        ids = [fam.state.node_id for fam in self._fams]
        if ids == self._ids:
            return
        changed = next(
            fam for fam, old in zip(self._fams, self._ids, strict=True) if fam.state.node_id != old
        )
        for fam in self._fams:
            if fam is not changed and sync_ids(changed.state, fam.state, _now()):
                log.info("%s node id follows to %s", fam.name, changed.state.node_id.hex())
        self._ids = [fam.state.node_id for fam in self._fams]

    async def _timer_loop(self, fam: Family) -> None:
        state = fam.state
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
            fam.timer_at = math.inf if deadline is None else deadline
            fam.timer_wake = anyio.Event()
            with anyio.move_on_after(fam.timer_at - now):
                await fam.timer_wake.wait()
            fam.timer_at = math.inf

    async def _join(self, fam: Family) -> None:
        state = fam.state
        family = socket.AF_INET6 if fam.ipv6 else socket.AF_INET
        await _bootstrap.join(
            routers=routers_for(self._routers, fam.ipv6),
            saved=[n.addr for n in fam.saved_nodes],
            family=family,
            ping=self._ping_quietly,
            bootstrap=partial(self._hand_routers, fam),
            progress=lambda: state.bootstrapper,
            table_size=lambda: len(state.routing),
            answered=lambda: state.stats["responses_in"] > 0,
            on_contacts=partial(self._first_round_ended, fam),
            retry=self._retry_join,
        )

    def _first_round_ended(self, fam: Family) -> None:
        self._got_contacts(fam)
        if all(f.contacts.is_set() for f in self._fams):
            self._joined.set()
        if self._table_size():
            self._table_saved.set()

    def _got_contacts(self, fam: Family) -> None:
        fam.contacts.set()
        if all(f.contacts.is_set() for f in self._fams):
            self._contacts.set()

    async def _ping_quietly(self, addr: Addr) -> None:
        with contextlib.suppress(MldhtError):
            await self.add_node(addr)

    async def _hand_routers(self, fam: Family, routers: list[Addr]) -> None:
        """Hand ``routers`` to the core's bootstrap (BEP 5 self-lookup from them and the
        table; the core retries it as it sees fit) and wait for this round to end."""

        def start(state: NodeState, now: float) -> int:
            op = state.bootstrap(
                routers, now, as_nodes=self._routers_are_nodes, retry=self._retry_join
            )
            # From now on every lookup starts at the routers too (core).
            self._got_contacts(fam)
            return op

        with contextlib.suppress(MldhtError):
            await self._operation(start, False, False, lambda: [fam]).result()

    # ---------------------------------------------------------------- operations

    def _check_open(self) -> None:
        if self._closed or self._state_obj is None:
            raise NotRunning("the DHTNode is not running (use it with 'async with')")

    def _begin(self, start: StartOp, fams: list[Family]) -> tuple[list[_Key], _Waiter]:
        """Start an op in the core of each of ``fams`` and register its waiter before
        any event is read (one waiter merging them all for several families)."""
        self._check_open()
        now = _now()
        waiter = _Waiter() if len(fams) == 1 else MergedWaiter(len(fams))
        keys: list[_Key] = []
        try:
            for fam in fams:
                key = (fam.rank, start(fam.state, now))
                self._waiters[key] = waiter
                keys.append(key)
        except BaseException:
            for key in keys:
                self._waiters.pop(key, None)
            raise
        finally:
            self._after_change()
        return keys, waiter

    def _families_at(self, at: Addr | None, lookup: bool) -> list[Family]:
        if at is not None:
            ipv6 = ":" in at[0]
            for fam in self._fams:
                if fam.ipv6 == ipv6:
                    return [fam]
            kind = "IPv6" if ipv6 else "IPv4"
            raise InvalidArgument(f"cannot reach {format_addr(at)}: no {kind} address bound")
        return list(self._fams) if lookup else self._fams[:1]

    def operation(
        self,
        start: StartOp,
        *,
        lookup: bool = False,
        store: bool = False,
        at: Addr | None = None,
    ) -> Operation:
        """A handle on the core operation ``start(state, now)`` starts (it returns the op id)::

            op = node.operation(lambda state, now: state.get_peers(info_hash, now), lookup=True)
            done = await op.result()        # the terminal event
            async for event in op: ...      # or every event, the terminal one last

        The operation starts at the first use of the handle and is bounded (past the
        bound, :class:`QueryTimeout`). ``lookup``: first wait until the join loop gave
        the routers (lookups start from them); ``store`` (a lookup that ends in a put or
        an announce): until a node answered or the first join round ended.

        On a dual-stack node a lookup starts in each family's core and ends with one
        terminal event merging theirs (:func:`~mldht.runtime.families.merge_terminal`);
        an operation aimed ``at`` one address runs in that address's family, any other
        in the primary family.
        """
        return self._operation(start, lookup, store, lambda: self._families_at(at, lookup))

    def _operation(
        self, start: StartOp, lookup: bool, store: bool, fams: Callable[[], list[Family]]
    ) -> Operation:
        keys: list[_Key] = []

        async def begin() -> tuple[int, _Waiter]:
            self._check_open()
            if lookup:
                await self._contacts.wait()
            if store:
                await self._joined.wait()
            started, waiter = self._begin(start, fams())
            keys.extend(started)
            return started[0][1], waiter

        def release(op: int) -> None:
            for key in keys:
                self._waiters.pop(key, None)

        return Operation(begin, release, self._op_bound)

    async def _run(
        self,
        start: StartOp,
        *,
        lookup: bool = False,
        store: bool = False,
        at: Addr | None = None,
    ) -> Event:
        """Start an op and return its terminal event (bounded; QueryTimeout past it)."""
        return await self.operation(start, lookup=lookup, store=store, at=at).result()
