"""Joining the DHT: saved nodes, bootstrap routers, DNS, retry with backoff.

BEP 5, "Routing Table": at every start run a ``find_node`` for our own id. Routers are only first
contacts of lookups (the core never puts them in the routing table). Nodes saved by a
previous run are pinged first, so a restart rejoins even when no router answers.

When nothing answers (an offline machine, a dead router, DNS failing), the loop keeps
trying with a doubling delay and says so in one WARNING line per attempt, never a
traceback. A short-lived node (``retry=False``) tries once and leaves the verdict to its
operations, which find nobody to ask.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..core.compact import Addr

__all__ = [
    "CHECK_INTERVAL",
    "DNS_TIMEOUT",
    "MAX_RETRY",
    "PUBLIC_ROUTERS",
    "RETRY",
    "SAVED_PING_WAIT",
    "join_forever",
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

RETRY = 5.0
"""Seconds before the first retry when nothing answered; doubles up to :data:`MAX_RETRY`."""
MAX_RETRY = 300.0
CHECK_INTERVAL = 60.0
"""Seconds between checks that the routing table is not empty once joined."""
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


async def _sleep_unless_joined(seconds: float, table_size: Callable[[], int]) -> None:
    """Sleep ``seconds``, or less if the table fills meanwhile (others found us)."""
    end = anyio.current_time() + seconds
    while table_size() == 0 and (left := end - anyio.current_time()) > 0:
        await anyio.sleep(min(left, 1.0))


async def join_forever(
    *,
    routers: Sequence[Addr],
    saved: Sequence[Addr],
    family: socket.AddressFamily,
    ping: Callable[[Addr], Awaitable[object]],
    self_lookup: Callable[[list[Addr]], Awaitable[bool]],
    table_size: Callable[[], int],
    on_contacts: Callable[[], None],
    retry: bool = True,
) -> None:
    """Join the DHT and stay joined; runs until cancelled.

    Each round pings the ``saved`` nodes (when the table is empty), resolves the
    ``routers`` and runs ``self_lookup`` from them; ``self_lookup`` returns whether any
    node answered during it. ``on_contacts`` is called once the first round has ended,
    joined or not (``self_lookup`` may signal earlier, as soon as the core has the
    routers: lookups started from then on use them as first contacts). Once the table
    holds a node the loop only checks every :data:`CHECK_INTERVAL` seconds that it is not
    empty again. With ``retry=False`` a round that leaves the table empty ends the loop
    instead of retrying, said at INFO only (no warning).
    """

    async def ping_one(addr: Addr) -> None:
        await ping(addr)

    delay = RETRY
    first = True
    try:
        while True:
            if saved and table_size() == 0:
                with anyio.move_on_after(SAVED_PING_WAIT):
                    async with anyio.create_task_group() as tg:
                        for addr in saved:
                            tg.start_soon(ping_one, addr)
            addrs, failed = await resolve_routers(routers, family)
            answered = False
            if addrs or table_size():
                answered = await self_lookup(addrs)
            if first:
                on_contacts()
                first = False
            if table_size() > 0:
                delay = RETRY
                while table_size() > 0:
                    await anyio.sleep(CHECK_INTERVAL)
                log.warning("the routing table is empty; joining the DHT again")
                continue
            if not retry:
                if answered:
                    log.info("the bootstrap nodes know no other node")
                elif routers or saved:
                    detail = f" (DNS failed for {', '.join(failed)})" if failed else ""
                    log.info("no bootstrap node answered%s", detail)
                return
            if not routers and not saved:
                # Nothing to join from: the first node of a new network. Others will
                # contact us; check now and then whether the table is still empty.
                await _sleep_unless_joined(CHECK_INTERVAL, table_size)
                continue
            if answered:
                # A router answered but knew no other node: a network still forming.
                log.info("the bootstrap nodes know no other node yet; retrying in %.0f s", delay)
            else:
                detail = f" (DNS failed for {', '.join(failed)})" if failed else ""
                log.warning("no bootstrap node answered; retrying in %.0f s%s", delay, detail)
            await _sleep_unless_joined(delay, table_size)
            delay = min(delay * 2, MAX_RETRY)
    finally:
        if first:  # cancelled before the first round ended: never leave waiters hanging
            on_contacts()
