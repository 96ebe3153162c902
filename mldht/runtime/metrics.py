"""Prometheus metrics of a running node (the optional extra ``mldht[metrics]``).

Nothing is counted for Prometheus on the hot path: :class:`NodeCollector` reads the
core's own counters (``NodeState.stats``, queries by method, the lookup-duration
histograms of :mod:`mldht.core.counters`) when it is scraped. Two ways to use it:

* ``await node.serve_metrics(("127.0.0.1", 9100))`` (or ``mldht node --metrics
  HOST:PORT``): a small HTTP server in the node's task group answers ``GET /metrics``;
* ``registry.register(NodeCollector(node))`` on a registry of one's own.

Metric names: ``mldht_queries_received_total{method}``, ``mldht_queries_sent_total{method}``,
``mldht_responses_received_total``, ``mldht_responses_sent_total``,
``mldht_errors_received_total``, ``mldht_query_timeouts_total``,
``mldht_dropped_total{reason}``, ``mldht_bytes_received_total``, ``mldht_bytes_sent_total``,
``mldht_internal_errors_total``, ``mldht_routing_table_nodes{family}``,
``mldht_peer_store_infohashes``, ``mldht_peer_store_peers``, ``mldht_item_store_items`` and
the histogram ``mldht_lookup_duration_seconds{kind}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..core.compact import Addr
from ..errors import NotRunning

if TYPE_CHECKING:
    from .node import DHTNode

__all__ = ["DROP_REASONS", "NodeCollector", "serve"]

log = logging.getLogger("mldht.metrics")

DROP_REASONS = {
    "rate_limited": "rate_limited",
    "banned": "dropped_banned",
    "oversize": "dropped_oversize",
    "not_dict": "dropped_not_dict",
    "deep": "dropped_deep",
    "malformed": "dropped_malformed",
    "unmatched": "dropped_unmatched",
}
"""``reason`` label of ``mldht_dropped_total`` -> the core's counter."""

_COUNTERS = (
    ("responses_received", "responses_in", "Responses to our queries received."),
    ("responses_sent", "responses_out", "Responses we sent."),
    ("errors_received", "errors_in", "KRPC error messages received."),
    ("query_timeouts", "timeouts", "Queries of ours that got no valid answer in time."),
    ("bytes_received", "bytes_in", "UDP payload bytes received."),
    ("bytes_sent", "bytes_out", "UDP payload bytes handed to the socket."),
    ("internal_errors", "internal_errors", "Datagrams whose handling hit a bug of ours."),
)

REQUEST_LIMIT = 8192
"""Bytes of an HTTP request read at most (the request line and headers)."""
REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request and read the answer."""
MAX_CLIENTS = 8
"""Scrapes served at once; more connections are closed at once."""


class NodeCollector(Collector):
    """Reads a node's counters at each scrape (register it on any registry)."""

    def __init__(self, node: DHTNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        try:
            state = self._node._state
        except NotRunning:
            return
        states = [fam.state for fam in self._node._fams]  # both on a dual-stack node
        stats = self._node.stats  # summed over them
        for name, attr, doc in (
            ("mldht_queries_received", "queries_in", "Queries received, by method."),
            ("mldht_queries_sent", "queries_out", "Queries sent, by method."),
        ):
            family = CounterMetricFamily(name, doc, labels=["method"])
            for method in getattr(state, attr):
                count = sum(getattr(s, attr).get(method, 0) for s in states)
                family.add_metric([method.decode()], count)
            yield family
        for name, key, doc in _COUNTERS:
            yield CounterMetricFamily(f"mldht_{name}", doc, value=stats.get(key, 0))
        dropped = CounterMetricFamily(
            "mldht_dropped",
            "Datagrams dropped before or at decoding, by reason.",
            labels=["reason"],
        )
        for reason, key in DROP_REASONS.items():
            dropped.add_metric([reason], stats.get(key, 0))
        yield dropped
        nodes = GaugeMetricFamily(
            "mldht_routing_table_nodes", "Live nodes in the routing table.", labels=["family"]
        )
        for s in states:
            nodes.add_metric(["ipv6" if s.config.ipv6 else "ipv4"], len(s.routing))
        yield nodes
        store = state.peer_store
        yield GaugeMetricFamily(
            "mldht_peer_store_infohashes", "Info-hashes we store peers of.", value=len(store)
        )
        yield GaugeMetricFamily(
            "mldht_peer_store_peers", "Peers we store.", value=store.peer_count()
        )
        yield GaugeMetricFamily(
            "mldht_item_store_items", "BEP 44 items we store.", value=len(state.items)
        )
        hist = HistogramMetricFamily(
            "mldht_lookup_duration_seconds",
            "Time from start to end of the lookups asked of this node, by kind.",
            labels=["kind"],
        )
        for kind, times in sorted(state.op_times.kinds.items()):
            buckets = [(_le(bound), count) for bound, count in times.cumulative()]
            hist.add_metric([kind], buckets, times.sum)
        yield hist


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def serve(node: DHTNode, address: Addr, task_group: TaskGroup) -> Addr:
    """Listen on ``address`` for scrapes of ``node`` (in ``task_group``); returns the
    address bound. Raises OSError ("cannot bind metrics to HOST:PORT: ...")."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    host, port = address
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot bind metrics to {host}:{port}: {reason}") from exc
    bound = listener.extra(SocketAttribute.local_address)
    clients = anyio.CapacityLimiter(MAX_CLIENTS)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            try:
                clients.acquire_nowait()
            except anyio.WouldBlock:
                return
            try:
                with anyio.move_on_after(REQUEST_TIMEOUT):
                    await _answer(stream, registry)
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                pass  # the client went away
            finally:
                clients.release()

    async def run() -> None:
        async with listener:
            await listener.serve(handle)

    task_group.start_soon(run)
    log.info("metrics at http://%s:%s/metrics", bound[0], bound[1])
    return (str(bound[0]), int(bound[1]))


async def _answer(stream: SocketStream, registry: CollectorRegistry) -> None:
    """Read one request (bounded) and answer it: the metrics, 404 or 405."""
    request = b""
    while b"\r\n\r\n" not in request and b"\n\n" not in request:
        chunk = await stream.receive(REQUEST_LIMIT)
        request += chunk
        if len(request) > REQUEST_LIMIT:
            await stream.send(_response(b"431 Request Header Fields Too Large", b""))
            return
    parts = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    method = parts[0] if parts else b""
    path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
    if method not in (b"GET", b"HEAD"):
        await stream.send(_response(b"405 Method Not Allowed", b"GET /metrics\n"))
    elif path != b"/metrics":
        await stream.send(_response(b"404 Not Found", b"see /metrics\n"))
    else:
        body = generate_latest(registry)
        head = method == b"HEAD"
        await stream.send(_response(b"200 OK", body, CONTENT_TYPE_LATEST.encode(), head))


def _response(
    status: bytes, body: bytes, content_type: bytes = b"text/plain", head: bool = False
) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n" + (b"" if head else body)
    )  # fmt: skip
