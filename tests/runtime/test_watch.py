"""Watching running nodes on loopback: DHTNode.events() and the metrics they serve."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mldht
from mldht.core.compact import NodeInfo
from mldht.core.events import NodeEvent
from mldht.runtime import DHTNode
from mldht.runtime.watch import EventBus

pytestmark = pytest.mark.anyio

INFOHASH = bytes.fromhex("bb" * 20)


async def _collect(
    stream: object, out: list[NodeEvent], until: Callable[[], bool], bound: float = 20.0
) -> None:
    """Read ``stream`` into ``out`` until ``until()`` holds (at most ``bound`` seconds)."""
    assert hasattr(stream, "__anext__")
    with anyio.move_on_after(bound):
        while not until():
            out.append(await stream.__anext__())


async def test_two_nodes_on_loopback_see_joins_announces_and_puts() -> None:
    async with DHTNode(bind=("127.0.0.31", 0), bootstrap=[]) as first:
        seen_first: list[NodeEvent] = []
        stream = first.events()
        async with DHTNode(bind=("127.0.0.32", 0), bootstrap=[first.address]) as joiner:
            seen_joiner: list[NodeEvent] = []
            joiner_stream = joiner.events()
            joined = mldht.NodeAdded(NodeInfo(joiner.node_id, joiner.address))
            await _collect(stream, seen_first, lambda: joined in seen_first)
            assert joined in seen_first

            def ready() -> bool:
                return any(isinstance(e, mldht.Ready) for e in seen_joiner)

            await _collect(joiner_stream, seen_joiner, ready)
            assert ready()
            assert mldht.NodeAdded(NodeInfo(first.node_id, first.address)) in seen_joiner

            assert await joiner.announce(INFOHASH, 6000) == 1
            announced = mldht.PeerAnnounced(INFOHASH, ("127.0.0.32", 6000), joiner.address)
            await _collect(stream, seen_first, lambda: announced in seen_first)
            assert announced in seen_first

            target = await joiner.put_immutable(b"watched")
            stored = mldht.ItemStored(target, joiner.address)
            await _collect(stream, seen_first, lambda: stored in seen_first)
            assert stored in seen_first
            assert not any(isinstance(e, mldht.PeerAnnounced) for e in seen_joiner)
        # the joiner left: its stream ends with the node
        rest = [e async for e in joiner_stream]
        assert all(not isinstance(e, mldht.PeerAnnounced) for e in rest)


async def test_metrics_of_a_library_node_move() -> None:
    async with DHTNode(bind=("127.0.0.33", 0), bootstrap=[]) as node:
        address = await node.serve_metrics(("127.0.0.33", 0))
        async with DHTNode(bind=("127.0.0.34", 0), bootstrap=[node.address]) as other:
            assert await other.ping(node.address) == node.node_id
        text = await _scrape(address)
        samples = _samples(text)
        assert samples[("mldht_queries_received_total", (("method", "ping"),))] >= 1
        assert samples[("mldht_bytes_received_total", ())] > 0
        assert ("mldht_routing_table_nodes", (("family", "ipv4"),)) in samples


async def _scrape(address: tuple[str, int], path: str = "/metrics") -> str:
    async with await anyio.connect_tcp(*address) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with anyio.move_on_after(10):
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    return (status + b"\n" + body).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, _, body = text.partition("\n")
    assert status.startswith("HTTP/1.1 200"), status
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_server_refuses_other_paths_and_junk() -> None:
    async with DHTNode(bind=("127.0.0.35", 0), bootstrap=[]) as node:
        address = await node.serve_metrics(("127.0.0.35", 0))
        assert (await _scrape(address, "/")).startswith("HTTP/1.1 404")
        async with await anyio.connect_tcp(*address) as stream:
            await stream.send(b"x" * 10_000)  # no end of headers: cut off at the limit
            with anyio.move_on_after(10):
                reply = await stream.receive()
            assert reply.startswith(b"HTTP/1.1 431")
        # still serving
        assert (await _scrape(address)).startswith("HTTP/1.1 200")


async def test_a_slow_watcher_loses_the_oldest_and_is_told_how_many() -> None:
    bus = EventBus()
    slow = bus.watch(3)
    fast = bus.watch(100)
    events = [mldht.Warning("test", str(i)) for i in range(10)]
    for event in events:
        bus.publish(event)
    bus.close()
    assert [e async for e in slow] == [mldht.EventsLost(7), *events[-3:]]
    assert [e async for e in fast] == events


async def test_events_end_when_the_node_stops_and_bad_sizes_are_refused() -> None:
    async with DHTNode(bind=("127.0.0.36", 0), bootstrap=[]) as node:
        stream = node.events()
        with pytest.raises(mldht.InvalidArgument):
            node.events(0)
    assert [e async for e in stream] == []
    with pytest.raises(mldht.NotRunning):
        node.events()
