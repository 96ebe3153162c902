"""DHTNode on real UDP sockets: small networks of our own nodes on 127.0.0.x (loopback)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import sniffio

from mldht.core import krpc
from mldht.core.bencode import bencode
from mldht.core.compact import Addr, NodeInfo
from mldht.core.events import LookupDone, PeersFound
from mldht.errors import InvalidArgument, MldhtError, QueryTimeout
from mldht.runtime import DHTNode, persist, run
from mldht.runtime.peer_db import PeerDB
from mldht.runtime.udp import has_ipv6
from mldht.testnet import Testnet

INFOHASH = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
FAST: dict[str, Any] = {"query_timeout": 0.5, "soft_timeout": 0.2, "lookup_timeout": 5.0}
PROBE_ID = b"\x42" * 20


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not cond():
            await anyio.sleep(0.02)
    assert cond(), f"timed out after {timeout} s waiting for {what}"


def closed_udp_port(host: str) -> int:
    """A UDP port on ``host`` where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


async def start_network(
    stack: AsyncExitStack, size: int, first_ip: int, **kw: Any
) -> list[DHTNode]:
    """A :class:`Testnet` of ``size`` nodes on 127.<first_ip>.0.x, every table full.

    Bootstrap nodes the user named are ordinary neighbours once they answer (only the
    public routers are kept out of tables), so every node ends up knowing all others.
    """
    net = await stack.enter_async_context(Testnet(size, prefix=f"127.{first_ip}", **FAST, **kw))
    await net.wait_tables()
    return list(net.nodes)


async def probe(sock: anyio.abc.UDPSocket, dest: Addr, raw: bytes, t: bytes) -> Any:
    """Send ``raw`` to ``dest``; the decoded reply with transaction id ``t``, or None."""
    await sock.sendto(raw, *dest)
    with anyio.move_on_after(0.5):
        while True:
            data, source = await sock.receive()
            msg = krpc.decode_message(data)
            if source[:2] == dest and msg.t == t:
                return msg
    return None


def ping_query(t: bytes, **extra: bytes) -> bytes:
    args: dict[bytes, bytes] = {b"id": PROBE_ID}
    args.update((k.encode(), v) for k, v in extra.items())
    return bencode({b"a": args, b"q": b"ping", b"t": t, b"y": b"q"})


# ------------------------------------------------------------------------- tests


async def test_lookups_in_a_small_network() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_network(stack, 6, first_ip=1)
        seed, a, b, c, d, e = nodes

        assert await a.ping(seed.address) == seed.node_id
        assert await b.ping(c.address) == c.node_id

        found = await b.find_node(d.node_id)
        assert NodeInfo(d.node_id, d.address) in found

        # an explicit port, then implied_port (the receivers use our UDP source port)
        assert await a.announce(INFOHASH, 6000) > 0
        assert await e.announce(INFOHASH.hex()) > 0
        peers = await c.get_peers(INFOHASH)
        assert (a.address[0], 6000) in peers
        assert e.address in peers
        assert len(peers) == len(set(peers))

        streamed = [p async for p in d.iter_peers(INFOHASH)]
        assert sorted(streamed) == sorted(peers)
        # leaving a stream early is fine, and the node keeps working
        async for first in b.iter_peers(INFOHASH):
            assert first in peers
            break
        assert await b.get_peers(bytes(20)) == []

        # the operation primitive: stream a core operation's events, or await its end
        op = d.operation(lambda state, now: state.get_peers(INFOHASH, now), lookup=True)
        events = [event async for event in op]
        assert isinstance(events[-1], LookupDone) and op.op == events[-1].op
        assert all(isinstance(ev, PeersFound) for ev in events[:-1])
        got = {p for ev in events if isinstance(ev, PeersFound | LookupDone) for p in ev.peers}
        assert got == set(peers)
        done = await d.operation(
            lambda state, now: state.find_node(a.node_id, now), lookup=True
        ).result()
        assert isinstance(done, LookupDone) and a.node_id in [n.id for n in done.nodes]

        # BEP 44 immutable item through the runtime: put by one node, got by another
        put = await a.put_item(bencode(b"hello from the runtime"))
        assert put.accepted > 0
        item = await d.get_item(put.target)
        assert item is not None and item.v == bencode(b"hello from the runtime")
        assert await d.get_item(bytes(20)) is None

        for node in nodes:
            snap = json.loads(json.dumps(node.routing_table_snapshot()))
            assert snap["own_id"] == node.node_id.hex()
            dump = json.loads(json.dumps(node.dump_state()))
            assert dump["id"] == node.node_id.hex()
            assert node.stats["receive_errors"] == 0
        assert seed.dump_state()["nodes"] == 5


async def test_sample_infohashes_and_bad_arguments() -> None:
    async with AsyncExitStack() as stack:
        seed, a, b = await start_network(stack, 3, first_ip=20)
        assert await a.announce(INFOHASH, 7000) > 0
        holder = next(n for n in (seed, a, b) if n.stats["stored_infohashes"])
        asker = b if holder is not b else a
        done = await asker.sample_infohashes(holder.address, bytes(20))
        assert done.node_id == holder.node_id
        assert INFOHASH in done.samples
        assert done.num == 1

        with pytest.raises(InvalidArgument):
            await a.get_peers(b"short")
        with pytest.raises(InvalidArgument):
            await a.get_peers("not an infohash")
        with pytest.raises(InvalidArgument):
            await a.announce(INFOHASH, 70000)
        with pytest.raises(InvalidArgument):
            await a.find_node(b"x" * 19)


async def test_timeouts_are_bounded_and_lonely_lookups_end() -> None:
    async with DHTNode(bind=("127.0.0.30", 0), bootstrap=[], **FAST) as node:
        assert node.address[0] == "127.0.0.30" and node.address[1] > 0
        start = anyio.current_time()
        with pytest.raises(QueryTimeout):
            await node.ping(("127.0.0.30", closed_udp_port("127.0.0.30")))
        assert anyio.current_time() - start < 3.0
        # nothing to bootstrap from: lookups end at once, empty
        assert await node.find_node(bytes(20)) == []
        assert await node.get_peers(INFOHASH) == []
        assert await node.wait_ready(0.1) is False
    with pytest.raises(MldhtError):
        await node.ping(("127.0.0.1", 1))


async def test_restart_rejoins_from_saved_nodes_without_the_bootstrap_node(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    seed = DHTNode(bind=("127.0.0.40", 0), bootstrap=[], **FAST)
    stop_seed, seed_closed = anyio.Event(), anyio.Event()

    async def serve_seed(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        # In a task of its own: anyio task groups (one per node) close in LIFO order
        # within a task, and the seed must close before the nodes started after it.
        async with seed:
            task_status.started()
            await stop_seed.wait()
        seed_closed.set()

    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        await tg.start(serve_seed)
        others = [
            await stack.enter_async_context(
                DHTNode(bind=(f"127.0.0.{41 + i}", 0), bootstrap=[seed.address], **FAST)
            )
            for i in range(3)
        ]
        keeper = DHTNode(
            bind=("127.0.0.50", 0), bootstrap=[seed.address], state_dir=state_dir, **FAST
        )
        async with keeper:
            await wait_until(lambda: keeper.stats["nodes"] == 4, 10, "the keeper to join")
            old_id, address = keeper.node_id, keeper.address
            assert await others[0].announce(INFOHASH, 6881) > 0
            assert keeper.stats["stored_peers"] == 1

        doc = json.loads((state_dir / persist.STATE_FILE).read_text())
        assert doc["id"] == old_id.hex()
        assert {(n["ip"], n["port"]) for n in doc["nodes"]} == {n.address for n in [*others, seed]}
        assert "peers" not in doc  # they live in peers.sqlite
        db = PeerDB(state_dir / persist.PEERS_FILE)
        try:
            saved_peers = [e for batch in db.read_batches() for e in batch]
        finally:
            db.close()
        assert [p[:3] for p in saved_peers] == [[INFOHASH.hex(), others[0].address[0], 6881]]
        assert not [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")]
        for name in (persist.STATE_FILE, persist.PEERS_FILE):
            assert (state_dir / name).stat().st_mode & 0o777 == 0o600

        dead_seed = seed.address
        stop_seed.set()  # the bootstrap node is gone for good
        await seed_closed.wait()

        restarted = DHTNode(bind=address, bootstrap=[dead_seed], state_dir=state_dir, **FAST)
        async with restarted:
            start = anyio.current_time()
            await wait_until(
                lambda: restarted.stats["nodes"] >= 3, 3, "the table to fill from saved nodes"
            )
            assert anyio.current_time() - start < 3.0
            assert restarted.node_id == old_id
            assert await restarted.wait_peers_loaded(3)
            assert restarted.stats["stored_peers"] == 1  # stored peers survived
            assert await others[1].get_peers(INFOHASH) == [(others[0].address[0], 6881)]
            found = await restarted.find_node(others[2].node_id)
            assert NodeInfo(others[2].node_id, others[2].address) in found


async def test_read_only_node_is_answered_but_answers_nothing() -> None:
    async with AsyncExitStack() as stack:
        nodes = await start_network(stack, 4, first_ip=60)
        ro = await stack.enter_async_context(
            DHTNode(bind=("127.0.0.70", 0), bootstrap=[nodes[0].address], read_only=True, **FAST)
        )
        # it gets answers: its table fills and its lookups work
        await wait_until(lambda: ro.stats["nodes"] == 4, 10, "the read-only node to join")
        found = await ro.find_node(nodes[2].node_id)
        assert NodeInfo(nodes[2].node_id, nodes[2].address) in found
        assert await ro.announce(INFOHASH, 5000) > 0
        assert (ro.address[0], 5000) in await nodes[3].get_peers(INFOHASH)

        # BEP 43: it never enters the others' tables ...
        await anyio.sleep(0.3)
        assert all(not n.knows(ro.node_id) for n in nodes)
        # ... and answers no query, while a normal node does
        async with await anyio.create_udp_socket(
            family=socket.AF_INET, local_host="127.0.0.71", local_port=0
        ) as sock:
            assert await probe(sock, ro.address, ping_query(b"r1"), b"r1") is None
            reply = await probe(sock, nodes[1].address, ping_query(b"r2"), b"r2")
            assert isinstance(reply, krpc.Response) and reply.sender_id == nodes[1].node_id
        assert ro.stats["queries_in"] >= 1
        assert ro.stats["responses_out"] == 0


async def test_garbage_never_breaks_a_node() -> None:
    rng = random.Random(20240601)
    garbage = [rng.randbytes(rng.randrange(0, 300)) for _ in range(300)]
    garbage += [
        b"",
        b"d",
        b"de",
        b"i1e",
        b"l" * 5000 + b"e" * 5000,  # deep nesting
        b"d1:t2:aa1:y1:qe",  # a query without a method
        bencode({b"t": b"ab", b"y": b"q", b"q": b"ping"}),  # no arguments
        bencode({b"t": b"ac", b"y": b"q", b"q": b"find_node", b"a": {b"id": b"short"}}),
        bencode({b"t": b"ad", b"y": b"r", b"r": {b"id": PROBE_ID}}),  # unknown transaction
        bencode({b"t": b"ae", b"y": b"e", b"e": [201, b"x"]}),
        bencode([1, 2, 3]),
        rng.randbytes(60_000),
    ]
    async with DHTNode(bind=("127.0.0.80", 0), bootstrap=[], **FAST) as node:
        async with (
            await anyio.create_udp_socket(
                family=socket.AF_INET, local_host="127.0.0.81", local_port=0
            ) as junk_sock,
            await anyio.create_udp_socket(
                family=socket.AF_INET, local_host="127.0.0.83", local_port=0
            ) as sock,
        ):
            for i, datagram in enumerate(garbage):
                await junk_sock.sendto(datagram, *node.address)
                if i % 50 == 0:
                    await anyio.sleep(0.01)  # let the node read: no queue overflow
            # Junk is charged to its sender: that one is out of budget, others are not.
            assert await probe(junk_sock, node.address, ping_query(b"no"), b"no") is None
            reply = await probe(sock, node.address, ping_query(b"ok"), b"ok")
            assert isinstance(reply, krpc.Response) and reply.sender_id == node.node_id
            # a datagram above 1,500 bytes is read whole; above 2,048 it is dropped unread
            near = ping_query(b"bg", pad=b"x" * 1900)
            assert 1500 < len(near) <= 2048
            reply = await probe(sock, node.address, near, b"bg")
            assert isinstance(reply, krpc.Response) and reply.sender_id == node.node_id
            too_big = ping_query(b"xl", pad=b"x" * 3000)
            assert await probe(sock, node.address, too_big, b"xl") is None
        stats = node.stats
        assert stats["dropped"] > 0 and stats["rate_limited"] > 0
        assert stats["dropped_oversize"] >= 1 and stats["dropped_not_dict"] > 0
        assert stats["receive_errors"] == 0 and stats["internal_errors"] == 0
        async with DHTNode(bind=("127.0.0.82", 0), bootstrap=[], **FAST) as other:
            assert await other.ping(node.address) == node.node_id


async def test_offline_bootstrap_warns_and_keeps_running(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="mldht")

    async def no_dns(*args: object, **kwargs: object) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # The DNS case without touching the network: the resolver fails as if offline.
    monkeypatch.setattr(anyio, "getaddrinfo", no_dns)
    dead = ("127.0.0.1", closed_udp_port("127.0.0.1"))
    async with (
        DHTNode(bind=("127.0.0.90", 0), bootstrap=[dead], **FAST) as node,
        DHTNode(bind=("127.0.0.91", 0), bootstrap=[("router.example", 6881)], **FAST) as node2,
    ):

        def warnings() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "no bootstrap node answered" in r.getMessage()]

        await wait_until(lambda: len(warnings()) >= 2, 5, "the bootstrap warnings")
        for record in warnings():
            assert record.levelno == logging.WARNING
            assert record.exc_info is None
            assert "retrying in 5 s" in record.getMessage()
        assert any("DNS failed for router.example" in r.getMessage() for r in warnings())
        assert await node2.ping(node.address) == node.node_id  # both still work
        # contacted by node2, the stranded node pings it back and has a table again
        await wait_until(lambda: node.knows(node2.node_id), 3, "node to learn node2")
        assert NodeInfo(node2.node_id, node2.address) in await node.find_node(node2.node_id)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unknown_tunable_and_state_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        DHTNode(bind=("127.0.0.95", 0), no_such_tunable=1)  # type: ignore[call-arg]
    with pytest.raises(MldhtError):
        DHTNode(bind=("127.0.0.95", 0)).node_id  # noqa: B018 - not running yet
    (tmp_path / persist.STATE_FILE).write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        async with DHTNode(bind=("127.0.0.95", 0), bootstrap=[], state_dir=tmp_path):
            pass  # pragma: no cover


def test_run_prefers_uvloop_on_asyncio() -> None:
    async def which(x: int) -> tuple[str, str, int]:
        loop = (
            type(asyncio.get_running_loop()).__module__
            if sniffio.current_async_library() == "asyncio"
            else ""
        )
        return sniffio.current_async_library(), loop, x * 2

    backend, loop, doubled = run(which, 21)
    assert (backend, doubled) == ("asyncio", 42)
    installed = importlib.util.find_spec("uvloop") is not None
    assert loop.startswith("uvloop" if installed else "asyncio")
    assert run(which, 1, backend="trio")[0] == "trio"


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this machine")
async def test_ipv6_nodes_on_loopback() -> None:
    async with AsyncExitStack() as stack:
        # every node shares ::1, so relax the one-node-per-IP rule
        kw = dict(FAST, restrict_ips=False)
        seed = await stack.enter_async_context(DHTNode(bind=("::1", 0), bootstrap=[], **kw))
        others = [
            await stack.enter_async_context(
                DHTNode(bind=("::1", 0), bootstrap=[seed.address], **kw)
            )
            for _ in range(3)
        ]
        await wait_until(
            lambda: all(n.stats["nodes"] == 3 for n in [seed, *others]), 10, "v6 tables"
        )
        assert await others[0].announce(INFOHASH, 6881) >= 2
        assert ("::1", 6881) in await others[1].get_peers(INFOHASH)
        found = await others[2].find_node(others[1].node_id)
        assert NodeInfo(others[1].node_id, others[1].address) in found
