"""The node's UDP sockets and the loops that serve them (a mixin of
:class:`~mldht.runtime.node.DHTNode`).

A node has one socket per address family it is bound to (a dual-stack node two, each
feeding its family's core node; sends go out through the socket of the destination's
family). Each socket is a plain non-blocking socket that only this module reads: whenever it is
readable (an asyncio reader callback; on trio, a task in :func:`anyio.wait_readable`),
up to :data:`RECEIVE_BATCH` datagrams are read and handed to the core, and the answers
sent right away, in the same wake-up. An anyio UDP socket (the previous design) has the
event loop read every datagram into a queue of 100 that silently drops the oldest when
the node is busy, and costs an await, a checkpoint and a task switch to the sender per
batch: under a flood, honest datagrams were lost in that queue, not in the kernel's
4 MiB buffer.

Sends go straight to the socket after every call into the core
(:meth:`UDPLoops._flush`); only when the kernel's send buffer is full do the datagrams
wait, in order, for the sender task, which waits until the socket is writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from ..core.compact import Addr
from .dht_api import format_addr

if TYPE_CHECKING:
    from ..core.node import NodeState
    from .families import Family

__all__ = [
    "RECEIVE_BATCH",
    "RECEIVE_BUDGET",
    "RECEIVE_BUFFER",
    "SOCKET_BUFFER",
    "UDPLoops",
    "default_binds",
    "has_ipv6",
    "open_socket",
]

log = logging.getLogger("mldht.node")

RECEIVE_BATCH = 1024
"""Datagrams handled per wake-up of the receive loop before it yields."""
RECEIVE_BUDGET = 0.002
"""Seconds a wake-up of the receive loop may spend handling datagrams before it yields
(bench/callbacks.py: a 1,024-datagram batch of lookup answers took up to 180 ms)."""
RECEIVE_BUFFER = 65536
"""Bytes read per datagram: the whole of any UDP datagram, so that an oversized one is
read, counted and dropped whole (the core decodes none over 2,048 bytes)."""
SOCKET_BUFFER = 4 * 1024 * 1024
"""Bytes of kernel receive buffer asked for the UDP socket."""
BACKLOG_LIMIT = 65536
"""Datagrams kept waiting for a full send buffer; beyond, the oldest are dropped (and
counted in ``send_errors``) as the kernel would."""


async def open_socket(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)`` (a name is resolved first).

    A failure raises :class:`OSError` naming the address and the reason."""
    try:
        try:
            ipaddress.ip_address(host)
            where: tuple[str, int] | tuple[str, int, int, int] = (host, port)
        except ValueError:  # a name: resolve it (an address literal needs no DNS)
            infos = await anyio.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
            where = infos[0][4]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                # IPv6 only: [::]:6881 and 0.0.0.0:6881 coexist (a dual-stack node),
                # and no IPv4 datagram arrives as a v4-mapped address.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # A large receive buffer absorbs bursts (and floods, which the core drops
            # cheaply) so that honest datagrams queued behind them are not lost by the
            # kernel. The kernel caps it (net.core.rmem_max); a refusal leaves the default.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.bind(where)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        number = exc.errno
        if isinstance(exc, socket.gaierror) or not number:
            reason = str(exc.strerror or exc)
        else:
            reason = os.strerror(number).lower()
        raise OSError(number, f"cannot bind to {format_addr((host, port))}: {reason}") from exc
    return sock


def has_ipv6() -> bool:
    """Whether this host can bind an IPv6 UDP socket (probed by binding ``[::1]:0``)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def default_binds(port: int) -> list[Addr]:
    """What a node binds when not told: ``0.0.0.0:PORT`` and ``[::]:PORT`` when the
    host has IPv6 (:func:`has_ipv6`), else ``0.0.0.0:PORT`` alone."""
    binds: list[Addr] = [("0.0.0.0", port)]
    if has_ipv6():
        binds.append(("::", port))
    return binds


class UDPLoops:
    """The receive loop, direct sends and the sender task of
    :class:`~mldht.runtime.node.DHTNode` (see the module docstring)."""

    _raw: socket.socket
    _fams: list[Family]
    _send_wake: anyio.Event
    _backlog: deque[tuple[bytes, Addr]]
    receive_errors: int
    send_errors: int
    on_datagram: Callable[[bytes, Addr, float], None] | None

    # provided by DHTNode
    @property
    def _state(self) -> NodeState:
        raise NotImplementedError

    def _after_change(self) -> None:
        raise NotImplementedError

    def _datagrams(self) -> list[tuple[bytes, Addr]]:
        """What the core nodes queued (both families' on a dual-stack node)."""
        fams = self._fams
        batch = fams[0].state.datagrams_to_send()
        for fam in fams[1:]:
            batch += fam.state.datagrams_to_send()
        return batch

    def _flush(self) -> None:
        """Send what the core queued (:meth:`_send_batch`)."""
        batch = self._datagrams()
        if batch:
            self._send_batch(batch)

    def _socket_for(self, addr: Addr) -> socket.socket:
        """The socket of ``addr``'s family (the primary one when none: the OS refuses)."""
        fams = self._fams
        if len(fams) > 1 and (":" in addr[0]) != fams[0].ipv6:
            return fams[1].sock
        return self._raw

    def _send_batch(self, batch: Sequence[tuple[bytes, Addr]]) -> None:
        """Send ``batch`` straight to the socket; what the kernel cannot take now waits
        for the sender task, in order."""
        backlog = self._backlog
        if backlog:
            backlog.extend(batch)
            self._send_wake.set()
            return
        sendto = self._raw.sendto
        dual = len(self._fams) > 1
        for i, (data, addr) in enumerate(batch):
            try:
                if dual:
                    self._socket_for(addr).sendto(data, addr)
                else:
                    sendto(data, addr)
            except BlockingIOError:
                backlog.extend(batch[i:])
                self._overflow()
                return
            except OSError as exc:  # ICMP unreachable, no route, bad address, ...
                self.send_errors += 1
                log.debug("sending to %s failed: %r", format_addr(addr), exc)

    def _overflow(self) -> None:
        backlog = self._backlog
        while len(backlog) > BACKLOG_LIMIT:
            backlog.popleft()
            self.send_errors += 1
        self._send_wake.set()

    async def _sender_loop(self) -> None:
        """Send the backlog once the socket takes datagrams again."""
        backlog = self._backlog
        while True:
            if not backlog:
                self._send_wake = anyio.Event()
                await self._send_wake.wait()
                continue
            await anyio.wait_writable(self._socket_for(backlog[0][1]))
            while backlog:
                data, addr = backlog[0]
                try:
                    self._socket_for(addr).sendto(data, addr)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.send_errors += 1
                    log.debug("sending to %s failed: %r", format_addr(addr), exc)
                backlog.popleft()
            self._overflow()

    async def _receive_loop(self, fam: Family) -> None:
        """Serve ``fam``'s socket until cancelled. On asyncio the event loop calls one batch
        per readiness of the socket (:meth:`_receive_batch` as a reader callback, as a
        datagram protocol would be: no task switch, no future per wake-up); elsewhere
        (trio) a task waits for readability and runs the same batch."""
        failures = 0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio
            loop = None
        if loop is not None:
            fd = fam.sock.fileno()
            loop.add_reader(fd, self._receive_batch, fam)
            try:
                await anyio.sleep_forever()
            finally:
                loop.remove_reader(fd)
        while True:
            await anyio.wait_readable(fam.sock)
            if self._receive_batch(fam):
                failures = 0
            else:
                # e.g. an ICMP error surfaced on the socket: not fatal for a UDP
                # server, but do not spin if the socket really is broken.
                failures += 1
                await anyio.sleep(min(0.001 * failures, 1.0))

    def _receive_batch(self, fam: Family) -> bool:
        """Read and handle up to :data:`RECEIVE_BATCH` queued datagrams of ``fam``'s
        socket, then send what the core queued; False when the socket reported an error."""
        recvfrom = fam.sock.recvfrom
        receive = fam.state.receive_datagram
        # One clock reading per batch (a batch takes well under a millisecond). The
        # loop is lean: under a flood most datagrams are dropped by the core's admission
        # in about a microsecond, and the kernel drops what we do not read.
        now = time.time()  # the core's clock (DHTNode: wall-clock seconds)
        trace = self.on_datagram
        ok = True
        # A batch also ends after RECEIVE_BUDGET seconds (checked every 8 datagrams), so
        # that a batch of costly answers (hundreds of lookups running) does not hold the
        # loop: the socket stays readable and the next wake-up reads on.
        clock = time.perf_counter
        budget_end = clock() + RECEIVE_BUDGET
        for i in range(RECEIVE_BATCH):
            if not i & 7 and i and clock() > budget_end:
                break
            try:
                data, addr = recvfrom(RECEIVE_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("receive failed: %r", exc)
                ok = False
                break
            # IPv6 addresses come as (host, port, flowinfo, scope_id)
            source = addr if len(addr) == 2 else (addr[0], addr[1])
            try:
                if trace is not None:
                    trace(data, source, now)
                receive(data, source, now)
            except Exception:  # a datagram must never take the node down
                self.receive_errors += 1
                log.debug("error handling a datagram from %r", addr, exc_info=True)
        try:
            self._after_change()
        except Exception:
            self.receive_errors += 1
            log.debug("error dispatching events", exc_info=True)
        return ok
