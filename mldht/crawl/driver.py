"""The async part of the crawler: :class:`Crawler` runs a :class:`~.planner.Crawl` on a
read-only :class:`~mldht.runtime.DHTNode`, through its public API only (``ping``,
``find_node``, ``get_peers``, ``sample_infohashes``, ``stats``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc

from mldht import MldhtError
from mldht.runtime import DHTNode, format_addr

from .pacing import Pacer
from .planner import Crawl, Job, NodeLike, SampleReply
from .store import CrawlStore, StoreError

__all__ = ["FLUSH_INTERVAL", "Crawler", "Snapshot"]

log = logging.getLogger("mldht.crawl")

FLUSH_INTERVAL = 10.0
"""Seconds between writes of what changed to the database while crawling."""


@dataclass(slots=True)
class Snapshot:
    """Progress numbers at one moment."""

    elapsed: float
    duration: float
    found: int
    queried: int
    responders: int
    bep51: int
    infohashes: int
    queries: int
    qps: float
    in_flight: int
    peers_done: int = 0
    peers_planned: int = 0
    peers: bool = False
    """``--peers``: get_peers lookups run (their numbers are the two above)."""


class Crawler:
    """Runs a :class:`Crawl` on a read-only :class:`~mldht.runtime.DHTNode`.

    ``rate`` bounds every query the node sends (its own lookups' included: the bucket
    is charged with what the node's ``queries_out`` counter shows); ``concurrency``
    bounds the requests in flight.
    """

    def __init__(
        self,
        node: DHTNode,
        crawl: Crawl,
        *,
        rate: float,
        concurrency: int,
        duration: float,
        store: CrawlStore | None = None,
        on_progress: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.node = node
        self.crawl = crawl
        self.rate = rate
        self.concurrency = max(1, concurrency)
        self.duration = duration
        self.store = store
        self.on_progress = on_progress
        self.in_flight = 0
        self.timeline: list[tuple[float, int, int, int, int, int]] = []
        self.interrupted = False
        self.started = 0.0
        self.ended = 0.0
        self._changed = anyio.Event()
        self._pacer: Pacer | None = None
        self._queries_base = 0

    @property
    def queries_sent(self) -> int:
        return self.node.stats.get("queries_out", 0) - self._queries_base

    def _notify(self) -> None:
        self._changed.set()

    async def _pace(self, job: Job) -> None:
        """Wait until the job's queries fit the rate (see :mod:`.pacing`)."""
        pacer = self._pacer
        assert pacer is not None
        single = job.node is not None
        while True:
            sent = self.node.stats.get("queries_out", 0)
            wait = pacer.delay(single, anyio.current_time(), sent)
            if wait <= 0:
                return
            await anyio.sleep(wait)

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Crawl until done, ``duration`` passes, or ``stop`` is set."""
        self.started = anyio.current_time()
        deadline = self.started + self.duration
        self._queries_base = self.node.stats.get("queries_out", 0)
        self._pacer = Pacer(self.rate, self.started, self._queries_base)
        slots = anyio.Semaphore(self.concurrency)
        try:
            with anyio.move_on_after(self.duration):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._ticker)
                    if stop is not None:
                        tg.start_soon(self._watch_stop, stop, tg)
                    await self._dispatch(tg, slots, deadline)
                    tg.cancel_scope.cancel()
        finally:
            self.ended = anyio.current_time()
            self._tick()

    async def _watch_stop(self, stop: anyio.Event, tg: anyio.abc.TaskGroup) -> None:
        await stop.wait()
        self.interrupted = True
        tg.cancel_scope.cancel()

    async def _dispatch(
        self, tg: anyio.abc.TaskGroup, slots: anyio.Semaphore, deadline: float
    ) -> None:
        crawl = self.crawl
        while True:
            await slots.acquire()
            while True:
                # A fresh event before looking: a request ending from here on wakes us.
                changed = self._changed = anyio.Event()
                now = anyio.current_time()
                job = crawl.next_job(now, idle=self.in_flight == 0)
                if job is not None:
                    break
                if self.in_flight == 0 and crawl.finished(now, deadline):
                    slots.release()
                    return
                due = crawl.next_due()
                wait = 1.0 if due is None else min(1.0, max(0.0, due - now))
                with anyio.move_on_after(wait):
                    await changed.wait()
            await self._pace(job)
            self.in_flight += 1
            tg.start_soon(self._execute, job, slots)

    async def _execute(self, job: Job, slots: anyio.Semaphore) -> None:
        node = self.node
        crawl = self.crawl
        try:
            if job.kind in ("sample", "home"):
                assert job.node is not None
                reply: SampleReply | None = None
                ask = node.sample_infohashes if job.kind == "sample" else node.query_find_node
                try:
                    reply = await ask(job.node.addr, job.target)
                except MldhtError as exc:
                    log.debug("%s to %s: %r", job.kind, format_addr(job.node.addr), exc)
                crawl.on_sample(job, reply, anyio.current_time())
            elif job.kind == "ping":
                assert job.node is not None
                node_id: bytes | None = None
                with contextlib.suppress(MldhtError):
                    node_id = await node.ping(job.node.addr)
                crawl.on_ping(job, node_id, anyio.current_time())
            elif job.kind in ("lookup", "probe"):
                found: Sequence[NodeLike] = ()
                try:
                    found = await node.find_node(job.target)
                except MldhtError as exc:
                    log.debug("find_node %s: %r", job.target.hex(), exc)
                crawl.on_lookup(job.target, found, anyio.current_time(), probe=job.kind == "probe")
            else:
                count: int | None = None
                try:
                    count = len(await node.get_peers(job.target))
                except MldhtError as exc:
                    log.debug("get_peers %s: %r", job.target.hex(), exc)
                crawl.on_peers(job.target, count)
        finally:
            self.in_flight -= 1
            if self._pacer is not None:
                self._pacer.done(job.node is not None)
            slots.release()
            self._notify()

    def snapshot(self) -> Snapshot:
        now = anyio.current_time()
        recent = [row for row in self.timeline if row[0] >= (now - self.started) - 5.0]
        qps = 0.0
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            qps = (recent[-1][5] - recent[0][5]) / (recent[-1][0] - recent[0][0])
        c = self.crawl
        return Snapshot(
            elapsed=now - self.started,
            duration=self.duration,
            found=len(c.nodes),
            queried=c.queried,
            responders=c.responders,
            bep51=c.bep51_nodes,
            infohashes=len(c.infohashes),
            queries=self.queries_sent,
            qps=qps,
            in_flight=self.in_flight,
            peers_done=c.peers_done,
            peers_planned=c.peers_planned,
            peers=c.want_peers,
        )

    def _tick(self) -> None:
        c = self.crawl
        now = anyio.current_time()
        self.timeline.append(
            (
                round(now - self.started, 3),
                len(c.nodes),
                c.responders,
                c.bep51_nodes,
                len(c.infohashes),
                self.queries_sent,
            )
        )
        if self.on_progress is not None:
            self.on_progress(self.snapshot())

    async def _ticker(self) -> None:
        last_flush = anyio.current_time()
        while True:
            await anyio.sleep(1.0)
            self._tick()
            if self.store is not None and anyio.current_time() - last_flush >= FLUSH_INTERVAL:
                last_flush = anyio.current_time()
                try:
                    self.store.flush(self.crawl, self.timeline)
                except StoreError as exc:
                    log.warning("%s", exc)
