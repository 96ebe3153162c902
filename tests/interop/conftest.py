"""Fixtures for interop tests against real DHT clients, on loopback only.

* ``loopback``: a factory of fresh ``(ip, port)`` pairs, each on its own ``127.0.N.1``
  (distinct /24s keep libtorrent's per-IP and per-/24 rules out of the way) with a port
  free for both UDP and TCP (libtorrent listens on both).
* ``make_lt`` / ``make_bdht``: factories of started :class:`LtNode` / :class:`BdhtPeer`
  closed at teardown.

A missing client skips the test with the reason, except under CI (``CI=true``), which
installs both clients, so there a missing one fails the test instead.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mldht.core.compact import Addr

from .bdht import BdhtPeer, bdht_missing_reason
from .lt import LtNode, libtorrent_missing_reason

_INTEROP_DIR = os.path.dirname(os.path.abspath(__file__))

# 127.0.N.1 for N = 10..249, then 127.1.N.1, ...: one /24 per node, never 127.0.0.1.
_hosts = (f"127.{hi}.{lo}.1" for hi in itertools.count() for lo in range(10, 250))


def in_ci() -> bool:
    """True when running under CI, where every interop dependency must be present."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(missing_reason: str | None) -> None:
    """Skip (or, under CI, fail) the current test when a client is missing."""
    if missing_reason is None:
        return
    if in_ci():
        pytest.fail(f"interop dependency missing under CI: {missing_reason}", pytrace=False)
    pytest.skip(missing_reason)


def free_port(ip: str, attempts: int = 50) -> int:
    """A port free on ``ip`` for UDP and TCP alike, found by binding port 0."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((ip, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((ip, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {ip}")


def next_addr() -> Addr:
    """A fresh loopback address on a /24 of its own, with a free port."""
    ip = next(_hosts)
    return (ip, free_port(ip))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/interop with ``interop`` (``-m "not interop"`` skips)."""
    for item in items:
        if str(item.path).startswith(_INTEROP_DIR + os.sep):
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def loopback() -> Callable[[], Addr]:
    """Factory of fresh ``(ip, port)`` pairs: call it once per node."""
    return next_addr


@pytest.fixture
def make_lt() -> Iterator[Callable[..., LtNode]]:
    """Factory: ``make_lt(addr=None, **kwargs)`` starts an :class:`LtNode` (closed after)."""
    require(libtorrent_missing_reason())
    nodes: list[LtNode] = []

    def make(addr: Addr | None = None, **kwargs: Any) -> LtNode:
        host, port = addr or next_addr()
        node = LtNode(host, port, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in reversed(nodes):
        node.close()


@pytest.fixture
def make_bdht() -> Iterator[Callable[..., BdhtPeer]]:
    """Factory: ``make_bdht(addr=None, **kwargs)`` starts a :class:`BdhtPeer` (closed after)."""
    require(bdht_missing_reason())
    peers: list[BdhtPeer] = []

    def make(addr: Addr | None = None, **kwargs: Any) -> BdhtPeer:
        host, port = addr or next_addr()
        peer = BdhtPeer(host, port, **kwargs)
        peers.append(peer)
        return peer

    yield make
    for peer in reversed(peers):
        peer.close()
