"""Dual stack (BEP 32): one DHTNode bound to 127.0.0.1 and [::1], on real sockets.

Only ::1 exists as an IPv6 loopback address here: IPv6 nodes differ by port (local
addresses count per ip:port in routing tables and lookups).
"""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from mldht.core import bep42, krpc
from mldht.core.compact import Addr, NodeInfo
from mldht.core.node import NodeConfig, NodeState
from mldht.core.responses import FindNodeResponse, decode_response
from mldht.errors import InvalidArgument
from mldht.runtime import DHTNode, persist
from mldht.runtime.families import bind_list, merge_terminal, routers_for, sync_ids
from mldht.runtime.metrics import NodeCollector
from mldht.runtime.udp import default_binds, has_ipv6

INFOHASH = bytes.fromhex("00112233445566778899aabbccddeeff00112233")
FAST: dict[str, Any] = {"query_timeout": 0.5, "soft_timeout": 0.2, "lookup_timeout": 5.0}
PROBE_ID = b"\x37" * 20


@pytest.fixture(autouse=True)
def _needs_ipv6() -> None:
    """Skip where the host cannot bind [::1]; under CI (``CI=true``, machines with ::1)
    fail instead, so that the tests never vanish silently there."""
    if has_ipv6():
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail("this host cannot bind [::1], which CI machines have", pytrace=False)
    pytest.skip("this host cannot bind [::1]")


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    with anyio.move_on_after(timeout):
        while not cond():
            await anyio.sleep(0.02)
    assert cond(), f"timed out after {timeout} s waiting for {what}"


def dual(ip4: str, **kw: Any) -> DHTNode:
    return DHTNode(bind=[(ip4, 0), ("::1", 0)], **FAST, **kw)


async def find_node_v4(dest: Addr, target: bytes, want: tuple[bytes, ...]) -> FindNodeResponse:
    """A find_node with ``want`` sent to ``dest`` from a plain IPv4 socket; its answer."""
    async with await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.9") as sock:
        t = b"dq"
        body = krpc.FindNode(PROBE_ID, target, want=want)
        with anyio.fail_after(5):
            for _ in range(20):  # bounded: a datagram or two may be lost
                await sock.sendto(krpc.encode_query(t, body), *dest)
                with anyio.move_on_after(0.25):
                    while True:
                        data, _source = await sock.receive()
                        msg = krpc.decode_message(data)
                        if isinstance(msg, krpc.Response) and msg.t == t:
                            answer = decode_response(b"find_node", msg)
                            assert isinstance(answer, FindNodeResponse)
                            return answer
    raise AssertionError("no answer to find_node")


async def test_dual_node_answers_pings_on_both_families() -> None:
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        v4, v6 = node.addresses
        assert v4[0] == "127.0.0.1" and v6[0] == "::1"
        assert node.address == v4
        client4 = await stack.enter_async_context(
            DHTNode(bind=("127.0.0.2", 0), bootstrap=[], **FAST)
        )
        client6 = await stack.enter_async_context(DHTNode(bind=("::1", 0), bootstrap=[], **FAST))
        assert await client4.ping(v4) == node.node_id
        assert await client6.ping(v6) == node.node_id  # one id: loopback is BEP 42 exempt
        # A single-family node cannot reach the other family; it says so.
        with pytest.raises(InvalidArgument, match="no IPv6 address bound"):
            await client4.ping(v6)
        # The dual node pings out of the socket of each destination's family.
        assert await node.ping(client4.address) == client4.node_id
        assert await node.ping(client6.address) == client6.node_id
        stats = node.stats
        assert stats["nodes"] == stats["nodes_ipv4"] + stats["nodes_ipv6"]


async def test_second_dual_node_shows_in_nodes6_of_an_ipv4_find_node() -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        second = await stack.enter_async_context(dual("127.0.0.2", bootstrap=first.addresses))
        v6_of_second = second.addresses[1]
        await wait_until(
            lambda: any(n.addr == v6_of_second for n in first.routing_nodes()),
            10,
            "the second node in the first one's IPv6 table",
        )
        answer = await find_node_v4(first.address, second.node_id, (b"n4", b"n6"))
        assert answer.nodes6 is not None and answer.nodes is not None
        assert NodeInfo(second.node_id, v6_of_second) in answer.nodes6
        assert NodeInfo(second.node_id, second.address) in answer.nodes
        # Without want: the query's family only (BEP 32).
        plain = await find_node_v4(first.address, second.node_id, (b"n4",))
        assert plain.nodes6 is None and plain.nodes


async def hub_and_singles(stack: AsyncExitStack) -> tuple[DHTNode, DHTNode, DHTNode]:
    """A dual node on 127.0.0.1 and [::1], an IPv4-only node (127.0.0.3) and an IPv6-only
    one bootstrapped from it, both ready: ``(hub, only4, only6)``."""
    hub = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
    v4, v6 = hub.addresses
    only6 = await stack.enter_async_context(DHTNode(bind=("::1", 0), bootstrap=[v6], **FAST))
    only4 = await stack.enter_async_context(DHTNode(bind=("127.0.0.3", 0), bootstrap=[v4], **FAST))
    assert await only6.wait_ready(10) and await only4.wait_ready(10)
    return hub, only4, only6


async def test_peers_announced_over_ipv6_are_found_by_the_dual_node() -> None:
    async with AsyncExitStack() as stack:
        hub, only4, only6 = await hub_and_singles(stack)
        assert await only6.announce(INFOHASH, 4242) >= 1
        assert await only4.announce(INFOHASH, 4343) >= 1
        # One store for both families: the IPv6 peer is there for an IPv4-side caller.
        assert set(hub.stored_peers(INFOHASH)) >= {("::1", 4242), ("127.0.0.3", 4343)}
        # A lookup of the dual node runs in both families and merges their peers.
        found = [peer async for peer in hub.iter_peers(INFOHASH)]
        assert ("::1", 4242) in found and ("127.0.0.3", 4343) in found
        # Over the wire, each family gets values of its own (BEP 32).
        assert await only4.get_peers(INFOHASH) == [("127.0.0.3", 4343)]
        assert await only6.get_peers(INFOHASH) == [("::1", 4242)]


async def test_dual_node_scrape_counts_both_families() -> None:
    """A scrape of a dual node runs in both families and ORs their filters: a seed
    announced over IPv6 and a peer over IPv4 are both counted."""
    async with AsyncExitStack() as stack:
        hub, only4, only6 = await hub_and_singles(stack)
        assert await only6.announce(INFOHASH, 4242, seed=True) >= 1
        assert await only4.announce(INFOHASH, 4343) >= 1
        result = await hub.scrape(INFOHASH)
        assert (result.seeds, result.peers) == (1, 1)
        assert result.nodes == 1  # its own (shared) store, counted once
        # The dual node's shared store answers a scrape with the filters of both
        # families' announces, whichever family asks (the filters hold either kind of IP).
        for single in (only4, only6):
            result = await single.scrape(INFOHASH)
            assert (result.seeds, result.peers) == (1, 1)


async def test_dual_node_announce_and_find_reach_both_families() -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        peer = await stack.enter_async_context(dual("127.0.0.2", bootstrap=hub.addresses))
        only6 = await stack.enter_async_context(
            DHTNode(bind=("::1", 0), bootstrap=[hub.addresses[1]], **FAST)
        )
        assert await peer.wait_ready(10) and await only6.wait_ready(10)
        await wait_until(lambda: hub.stats["nodes_ipv6"] >= 2, 10, "both IPv6 neighbours")
        accepted = await peer.announce(INFOHASH, 5555)
        assert accepted >= 2  # at least the hub on each family
        assert ("::1", 5555) in await only6.get_peers(INFOHASH)
        nodes = await peer.find_node(only6.node_id)
        assert NodeInfo(only6.node_id, only6.address) in nodes


async def test_dual_state_saves_both_tables(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        state_dir = tmp_path / "state"
        async with dual("127.0.0.2", bootstrap=hub.addresses, state_dir=state_dir) as node:
            await wait_until(lambda: node.stats["nodes_ipv6"] >= 1, 10, "an IPv6 neighbour")
            await wait_until(lambda: node.stats["nodes_ipv4"] >= 1, 10, "an IPv4 neighbour")
            node_id = node.node_id
        doc = json.loads((state_dir / persist.STATE_FILE).read_text())
        addrs = {(n["ip"], n["port"]) for n in doc["nodes"]}
        assert set(hub.addresses) <= addrs
        assert doc["family_ids"] == {"4": node_id.hex(), "6": node_id.hex()}
        # Restarted, each family pings its own saved nodes and rejoins.
        async with dual("127.0.0.2", bootstrap=[], state_dir=state_dir) as again:
            assert again.node_id == node_id
            await wait_until(lambda: again.stats["nodes_ipv6"] >= 1, 10, "the saved IPv6 node")
            await wait_until(lambda: again.stats["nodes_ipv4"] >= 1, 10, "the saved IPv4 node")


def test_old_state_file_loads_for_both_families() -> None:
    nid = bytes(range(20))
    doc = persist.state_document(nid, [NodeInfo(b"\x01" * 20, ("::1", 7))])
    saved = persist.parse_state(doc)
    assert saved.family_ids == {} and saved.node_id == nid
    doc6 = persist.state_document(nid, [], family_ids={4: nid, 6: b"\x02" * 20})
    assert persist.parse_state(doc6).family_ids == {4: nid, 6: b"\x02" * 20}
    doc6["family_ids"] = {"6": "zz", "5": nid.hex(), "4": [1]}
    assert persist.parse_state(doc6).family_ids == {}


def test_bind_list_rules() -> None:
    assert bind_list(("::1", 0)) == [("::1", 0)]
    assert bind_list([("0.0.0.0", 1), ("::", 1)]) == [("0.0.0.0", 1), ("::", 1)]
    with pytest.raises(InvalidArgument, match="one address per family"):
        bind_list([("127.0.0.1", 1), ("127.0.0.2", 1)])
    with pytest.raises(InvalidArgument, match="no address"):
        bind_list([])
    with pytest.raises(InvalidArgument, match="port"):
        bind_list([("::1", 70000)])
    assert routers_for([("::1", 1), ("127.0.0.1", 2), ("router.example", 3)], True) == [
        ("::1", 1),
        ("router.example", 3),
    ]
    assert default_binds(6881) == [("0.0.0.0", 6881), ("::", 6881)]


def test_merge_terminal_keeps_both_families() -> None:
    from mldht.core.events import AnnounceDone, GetDone, Item, LookupDone, PutDone

    a = NodeInfo(b"\x00" * 20, ("127.0.0.1", 1))
    b = NodeInfo(b"\x01" * 20, ("::1", 2))
    done = merge_terminal(
        LookupDone(1, b"\x00" * 20, (a,), (("127.0.0.1", 9),), 3),
        LookupDone(7, b"\x00" * 20, (b,), (("::1", 9), ("127.0.0.1", 9)), 4),
    )
    assert done == LookupDone(1, b"\x00" * 20, (a, b), (("127.0.0.1", 9), ("::1", 9)), 7)
    announced = merge_terminal(AnnounceDone(1, b"i", 3), AnnounceDone(2, b"i", 5))
    assert announced == AnnounceDone(1, b"i", 8)
    old, new = Item(b"t", b"1:a", b"k", seq=1), Item(b"t", b"1:b", b"k", seq=2)
    got = merge_terminal(GetDone(1, b"t", old), GetDone(2, b"t", new))
    assert isinstance(got, GetDone) and got.item == new
    got = merge_terminal(GetDone(1, b"t", new), GetDone(2, b"t", None))
    assert isinstance(got, GetDone) and got.item == new
    put = merge_terminal(PutDone(1, b"t", 2, 5, ((205, "x"),)), PutDone(2, b"t", 0, None))
    assert put == PutDone(1, b"t", 2, 5, ((205, "x"),))


def test_one_id_while_bep42_allows() -> None:
    rng = random.Random(5)
    v4 = NodeState(b"\x11" * 20, rng, 0.0, NodeConfig())
    v6 = NodeState(b"\x11" * 20, rng, 0.0, NodeConfig(ipv6=True), sibling=v4)
    v4.external_ip = "203.0.113.7"
    v4.set_node_id(bep42.generate_node_id("203.0.113.7", rng), 2.0)
    # the IPv6 side knows no public address of its own: it follows
    assert sync_ids(v4, v6, 2.0) and v6.node_id == v4.node_id
    assert not sync_ids(v4, v6, 2.0)  # nothing to do
    # the IPv6 side learns a public address whose BEP 42 id differs: two ids
    v6.external_ip = "2001:db8::7"
    v6.set_node_id(bep42.generate_node_id("2001:db8::7", rng), 3.0)
    assert not sync_ids(v6, v4, 3.0)
    assert v4.node_id != v6.node_id
    assert bep42.is_valid_node_id(v4.node_id, "203.0.113.7")
    assert bep42.is_valid_node_id(v6.node_id, "2001:db8::7")


async def test_metrics_cover_both_tables() -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        peer = await stack.enter_async_context(dual("127.0.0.2", bootstrap=hub.addresses))
        await wait_until(
            lambda: peer.stats["nodes_ipv4"] >= 1 and peer.stats["nodes_ipv6"] >= 1,
            10,
            "a neighbour in each family",
        )
        families = {m.name: m for m in NodeCollector(peer).collect()}
        samples = families["mldht_routing_table_nodes"].samples
        assert {s.labels["family"]: s.value for s in samples} == {"ipv4": 1, "ipv6": 1}
        received = families["mldht_queries_received"].samples
        assert sum(s.value for s in received) == peer.stats["queries_in"]


async def test_dual_node_republishes_in_both_families() -> None:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(dual("127.0.0.1", bootstrap=[]))
        publisher = await stack.enter_async_context(
            dual("127.0.0.2", bootstrap=hub.addresses, republish_interval=1.0)
        )
        await wait_until(lambda: publisher.stats["nodes_ipv6"] >= 1, 10, "an IPv6 neighbour")
        target = await publisher.put_immutable("both families")
        assert target in publisher.republishing
        # An IPv6-only node that joins later gets the item from a re-put over IPv6.
        late6 = await stack.enter_async_context(
            DHTNode(bind=("::1", 0), bootstrap=[hub.addresses[1]], **FAST)
        )
        await wait_until(lambda: late6.stored_item(target) is not None, 20, "the re-put over IPv6")
        assert publisher.stop_republishing(target)
        assert not publisher.republishing
        assert not any(fam.state.republishing for fam in publisher._fams)  # both families
