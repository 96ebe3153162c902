"""Joining the DHT: saved nodes, bootstrap routers, DNS; the I/O side of it.

BEP 5, "Routing Table": at every start run a ``find_node`` for our own id. Routers are only first
contacts of lookups (the core never puts them in the routing table). Nodes saved by a
previous run are pinged first, so a restart rejoins even when no router answers.

The retry policy is the core's (:class:`~mldht.core.maintenance.Bootstrapper`: the
self-lookup again while the table is short of nodes, 5 s doubling to 5 min, and a new join
from the routers when the table becomes empty). :func:`join` resolves the router names,
pings the saved nodes, hands the routers to the core once and then only watches: it says
when nothing answers (a WARNING at the first failed round and then at the 2nd, 4th, 8th,
..., never a traceback), and re-resolves names whose DNS failed as the core retries. A
short-lived node (``retry=False``) tries once, says so at INFO, and leaves the verdict to
its operations, which find nobody to ask.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio

from ..core.compact import Addr

__all__ = [
    "DNS_TIMEOUT",
    "PUBLIC_ROUTERS",
    "SAVED_PING_WAIT",
    "WATCH_INTERVAL",
    "JoinProgress",
    "join",
    "resolve",
    "resolve_routers",
]

log = logging.getLogger("mldht.bootstrap")

PUBLIC_ROUTERS: tuple[Addr, ...] = (
    ("router.bittorrent.com", 6881),
    ("router.utorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("dht.libtorrent.org", 25401),
)
"""The routers used when no bootstrap list is given (those libtorrent and others use)."""

WATCH_INTERVAL = 0.5
"""Seconds between looks at the core's join progress (to log it; nothing is sent)."""
DNS_TIMEOUT = 10.0
"""Bound on resolving one router name (a broken resolver must not stall the start)."""
SAVED_PING_WAIT = 2.0
"""How long the self-lookup waits for saved nodes to answer their pings (later answers
still enter the table)."""


def _numeric(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve(addr: Addr, family: socket.AddressFamily) -> list[Addr]:
    """IP addresses of ``addr``'s host in ``family``; an empty list when DNS fails.

    IP literals are returned at once (in the compressed text form the core compares).
    """
    host, port = addr
    ip = _numeric(host)
    if ip is not None:
        return [(ip, port)] if (":" in ip) == (family == socket.AF_INET6) else []
    result: list[Addr] = []
    with anyio.move_on_after(DNS_TIMEOUT):
        try:
            infos = await anyio.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.debug("cannot resolve %s: %s", host, exc)
            return []
        for *_, sockaddr in infos:
            found = (str(sockaddr[0]), int(sockaddr[1]))
            if found not in result:
                result.append(found)
    return result


async def resolve_routers(
    routers: Sequence[Addr], family: socket.AddressFamily
) -> tuple[list[Addr], list[str]]:
    """Resolve every router concurrently: (addresses, names that did not resolve)."""
    results: list[list[Addr]] = [[] for _ in routers]

    async def one(i: int, addr: Addr) -> None:
        results[i] = await resolve(addr, family)

    async with anyio.create_task_group() as tg:
        for i, addr in enumerate(routers):
            tg.start_soon(one, i, addr)
    addrs: list[Addr] = []
    failed: list[str] = []
    for addr, found in zip(routers, results, strict=True):
        if not found:
            failed.append(addr[0])
        addrs.extend(a for a in found if a not in addrs)
    return addrs, failed


class JoinProgress(Protocol):
    """What :func:`join` reads of the core's join state
    (:class:`~mldht.core.maintenance.Bootstrapper`)."""

    @property
    def rounds(self) -> int: ...

    @property
    def failed_rounds(self) -> int: ...

    @property
    def next_retry(self) -> float | None: ...

    @property
    def retry_delay(self) -> float | None: ...

    @property
    def running(self) -> bool: ...


def _detail(failed: Sequence[str]) -> str:
    return f" (DNS failed for {', '.join(failed)})" if failed else ""


async def join(
    *,
    routers: Sequence[Addr],
    saved: Sequence[Addr],
    family: socket.AddressFamily,
    ping: Callable[[Addr], Awaitable[object]],
    bootstrap: Callable[[list[Addr]], Awaitable[None]],
    progress: Callable[[], JoinProgress],
    table_size: Callable[[], int],
    answered: Callable[[], bool],
    on_contacts: Callable[[], None],
    retry: bool = True,
) -> None:
    """Join the DHT, then watch the core keep the node joined; runs until cancelled
    (with ``retry=False``: until the first round ended).

    Pings the ``saved`` nodes, resolves the ``routers`` and calls ``bootstrap(addresses)``
    once, which hands them to the core and waits for its first self-lookup to end (it may
    call ``on_contacts`` as soon as the core has them); ``on_contacts`` is called then in
    any case. ``answered()`` tells whether any node has answered us (a router knowing no
    one yet is not an offline machine). The core retries on its own (``progress()``);
    this loop logs, and re-resolves the names whose DNS failed each time the core records
    another failed round (handing the routers over again once more of them resolve).
    """

    async def ping_one(addr: Addr) -> None:
        await ping(addr)

    first = True
    try:
        if saved:
            with anyio.move_on_after(SAVED_PING_WAIT):
                async with anyio.create_task_group() as tg:
                    for addr in saved:
                        tg.start_soon(ping_one, addr)
        addrs, failed = await resolve_routers(routers, family)
        await bootstrap(addrs)
        on_contacts()
        first = False
        if not retry:
            if table_size() == 0:
                if answered():
                    log.info("the bootstrap nodes know no other node")
                elif routers or saved:
                    log.info("no bootstrap node answered%s", _detail(failed))
            return
        if not routers and not saved:
            return  # the first node of a new network: others will contact us
        seen = 0  # failed rounds already looked at
        warn_at = 1  # the next failed round that gets a WARNING: 1, 2, 4, 8, ...
        was_joined = False
        while True:
            boot = progress()
            size = table_size()
            if size and not was_joined:
                was_joined = True
                warn_at = 1
            elif not size and was_joined:
                was_joined = False
                log.warning("the routing table is empty; joining the DHT again")
            if boot.failed_rounds > seen:
                seen = boot.failed_rounds
                delay = boot.retry_delay if boot.next_retry is not None else None
                wait = f"; retrying in {delay:.0f} s" if delay is not None else ""
                if answered():
                    # A router answered but knew no other node: a network still forming.
                    log.info("the bootstrap nodes know no other node yet%s", wait)
                elif seen >= warn_at:
                    warn_at = seen * 2
                    log.warning("no bootstrap node answered%s%s", wait, _detail(failed))
                else:
                    log.debug("no bootstrap node answered%s%s", wait, _detail(failed))
                if failed and routers:
                    more, failed = await resolve_routers(routers, family)
                    if [a for a in more if a not in addrs] and not progress().running:
                        addrs = more
                        await bootstrap(addrs)
            elif boot.failed_rounds < seen:
                seen = boot.failed_rounds
            await anyio.sleep(WATCH_INTERVAL)
    finally:
        if first:  # cancelled before the first round ended: never leave waiters hanging
            on_contacts()
