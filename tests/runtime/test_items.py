"""BEP 44 items, the key/value API, BEP 46 and republishing through DHTNode on loopback.

Small networks of our own nodes on 127.0.44.x, a raw KRPC client for the storing side's
error replies, and a rogue node whose answers must be discarded. Every test runs on both
anyio backends (conftest).
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from mldht.core import bep44
from mldht.core.bencode import bdecode, bencode
from mldht.core.bep44 import KeyPair
from mldht.core.compact import Addr
from mldht.errors import DecodeError, InvalidArgument, KRPCError, MldhtError
from mldht.runtime import DHTNode
from mldht.runtime.items import (
    IDENTITY_FILE,
    as_public_key,
    as_salt,
    as_target,
    decode_value,
    encode_value,
    kv_salt,
    load_or_create_keypair,
)
from mldht.runtime.keys import save_keypair
from mldht.testnet import Testnet

FAST: dict[str, Any] = {"query_timeout": 0.5, "soft_timeout": 0.2, "lookup_timeout": 5.0}
SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
INFOHASH = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
PROBE_ID = b"\x44" * 20


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not cond():
            await anyio.sleep(0.02)
    assert cond(), f"timed out after {timeout} s waiting for {what}"


async def start_network(stack: AsyncExitStack, size: int, subnet: int, **kw: Any) -> list[DHTNode]:
    """A :class:`Testnet` of ``size`` nodes on 127.<subnet>.0.x, every table full."""
    net = await stack.enter_async_context(Testnet(size, prefix=f"127.{subnet}", **FAST, **kw))
    await net.wait_tables()
    return list(net.nodes)


def count_puts(nodes: list[DHTNode]) -> dict[tuple[int, bytes], int]:
    """Counts of the BEP 44 puts each node receives, by (node index, target), as traffic."""
    counts: dict[tuple[int, bytes], int] = {}

    def observer(i: int) -> Callable[[bytes, Addr, float], None]:
        def seen(data: bytes, addr: Addr, now: float) -> None:
            msg = bdecode(data)
            if not isinstance(msg, dict) or msg.get(b"q") != b"put":
                return
            a = msg[b"a"]
            assert isinstance(a, dict)
            if b"k" in a:
                target = hashlib.sha1(a[b"k"] + a.get(b"salt", b"")).digest()
            else:
                target = hashlib.sha1(bencode(a[b"v"])).digest()
            counts[i, target] = counts.get((i, target), 0) + 1

        return seen

    for i, node in enumerate(nodes):
        node.on_datagram = observer(i)
    return counts


def stored_elsewhere(
    nodes: list[DHTNode], target: bytes, puts: dict[tuple[int, bytes], int]
) -> list[tuple[int | None, int]]:
    """(seq, puts received) of the copies of ``target`` the nodes' stores hold."""
    out = []
    for i, node in enumerate(nodes):
        item = node.stored_item(target)
        if item is not None:
            out.append((item.seq, puts.get((i, target), 0)))
    return out


# ------------------------------------------------------------------- pure helpers


def test_encode_value_types_and_limits() -> None:
    assert encode_value("héllo") == bencode("héllo".encode())
    assert encode_value(b"\xff\x00") == b"2:\xff\x00"
    assert encode_value(bytearray(b"ab")) == b"2:ab"
    assert encode_value(-42) == b"i-42e"
    assert encode_value([1, "a", (b"b",)]) == b"li1e1:al1:bee"
    # str and bytes keys both become byte keys, sorted by bytes (canonical bencode)
    assert encode_value({"b": 1, b"a": [2]}) == b"d1:ali2ee1:bi1ee"
    # what comes back: strings as bytes, dict keys as bytes
    assert decode_value(encode_value({"name": "alice", "n": [1, "x"]})) == {
        b"name": b"alice",
        b"n": [1, b"x"],
    }
    biggest = "x" * 996  # "996:" and 996 bytes: 1000 bytes bencoded
    assert len(encode_value(biggest)) == 1000
    for bad, match in [
        ("x" * 997, "1000"),
        (True, "booleans"),
        (None, "NoneType"),
        (1.5, "float"),
        ({1: 2}, "dict keys"),
        ({"a": 1, b"a": 2}, "twice"),
        ("\ud800", "Unicode"),
        ({"set": {1}}, "set"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            encode_value(bad)
    nested: list[Any] = []
    nested.append(nested)
    with pytest.raises(InvalidArgument, match="deeply"):
        encode_value(nested)


def test_salts_keys_and_targets() -> None:
    assert kv_salt("color") == b"color"
    assert kv_salt(b"\xff") == b"\xff"
    assert kv_salt("k" * 64) == b"k" * 64
    long_key = "é" * 40  # 80 bytes in UTF-8
    assert kv_salt(long_key) == hashlib.sha1(long_key.encode()).digest()
    with pytest.raises(InvalidArgument, match="empty"):
        kv_salt("")
    assert as_salt("s") == b"s" and as_salt(b"\x00" * 64) == b"\x00" * 64
    with pytest.raises(InvalidArgument, match="64"):
        as_salt("s" * 65)
    kp = KeyPair.from_seed(SEED)
    assert as_public_key(kp.public_key.hex()) == as_public_key(kp.public_key) == kp.public_key
    assert as_target("ab" * 20) == b"\xab" * 20
    for bad in ("ab" * 31, "zz" * 32, b"\x00" * 31):
        with pytest.raises(InvalidArgument):
            as_public_key(bad)
    for bad_target in ("ab" * 19, b"\x00" * 21, "xyz"):
        with pytest.raises(InvalidArgument):
            as_target(bad_target)


def test_load_or_create_keypair(tmp_path: Path) -> None:
    path = tmp_path / "sub" / IDENTITY_FILE
    first, created = load_or_create_keypair(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_or_create_keypair(path)
    assert not created and again == first
    assert sorted(p.name for p in path.parent.iterdir()) == [IDENTITY_FILE]  # no temporaries
    # An existing file is never replaced.
    other = tmp_path / "other.key"
    save_keypair(KeyPair.from_seed(SEED), other)
    assert load_or_create_keypair(other) == (KeyPair.from_seed(SEED), False)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(InvalidArgument):
        load_or_create_keypair(bad)


# ------------------------------------------------------------------------ network


async def test_immutable_items() -> None:
    async with AsyncExitStack() as stack:
        a, b, c, d = await start_network(stack, 4, subnet=44)
        target = await a.put_immutable("héllo")
        assert target == hashlib.sha1(bencode("héllo".encode())).digest()
        # b, c and d all stored it; read it from one that did not put it
        assert await d.get_immutable(target) == "héllo".encode()
        assert await b.get_immutable(target.hex()) == "héllo".encode()
        value = {"list": [1, -2, b"\x00\xff"], "n": 7}
        t2 = await b.put_immutable(value)
        assert await a.get_immutable(t2) == {b"list": [1, -2, b"\x00\xff"], b"n": 7}
        # the same value put again: the same target
        assert await c.put_immutable(value) == t2
        assert await c.get_immutable(hashlib.sha1(b"absent").digest()) is None
        # a mutable target is not an immutable item
        seq = await a.put_mutable("m", keypair=KeyPair.from_seed(SEED))
        assert seq == 1
        assert await d.get_immutable(KeyPair.from_seed(SEED).target()) is None
        # low level: the core's result, and the item as found
        done = await d.put_item(encode_value(b"raw"))
        assert done.accepted >= 2 and done.seq is None and done.errors == ()
        item = await a.get_item(done.target)
        assert item is not None and item.v == b"3:raw" and item.k is None
        with pytest.raises(InvalidArgument, match="1000"):
            await a.put_immutable("x" * 2000)
        with pytest.raises(InvalidArgument):
            await a.get_immutable("nothex")


async def test_mutable_items_seq_salt_and_cas() -> None:
    kp = KeyPair.from_seed(SEED)
    async with AsyncExitStack() as stack:
        a, b, c, d = await start_network(stack, 4, subnet=45)
        assert await a.get_mutable(kp.public_key, salt="s") is None
        assert await a.put_mutable(b"one", keypair=kp, salt="s") == 1
        assert await b.get_mutable(kp.public_key, salt=b"s") == (b"one", 1)
        # seq=None: one more than the newest found
        assert await c.put_mutable({"v": 2}, keypair=kp, salt="s") == 2
        assert await d.get_mutable(kp.public_key.hex(), salt="s") == ({b"v": 2}, 2)
        # another salt, or none, is another item
        assert await d.get_mutable(kp.public_key) is None
        assert await d.put_mutable("unsalted", keypair=kp) == 1
        assert await a.get_mutable(kp.public_key) == (b"unsalted", 1)
        assert await a.get_mutable(kp.public_key, salt="s") == ({b"v": 2}, 2)
        # an explicit seq; a lower one is refused by every node (BEP 44: 302)
        assert await b.put_mutable("ten", keypair=kp, salt="s", seq=10) == 10
        # (a node does not store its own puts: c puts the same item again, so that b has
        # it too; the same seq and value only refresh a and d's copies)
        assert await c.put_mutable("ten", keypair=kp, salt="s", seq=10) == 10
        copies = [n.stored_item(kp.target(b"s")) for n in (a, b, c, d)]
        assert {item.seq if item else None for item in copies} == {10}
        with pytest.raises(KRPCError) as refused:
            await c.put_mutable("five", keypair=kp, salt="s", seq=5)
        assert refused.value.code == KRPCError.SEQ_TOO_LOW
        # compare-and-swap: a wrong cas is refused (301), the right one goes through
        with pytest.raises(KRPCError) as mismatch:
            await a.put_mutable("eleven", keypair=kp, salt="s", cas=9)
        assert mismatch.value.code == KRPCError.CAS_MISMATCH
        assert await a.put_mutable("eleven", keypair=kp, salt="s", cas=10) == 11
        assert await d.get_mutable(kp.public_key, salt="s") == (b"eleven", 11)
        # the highest valid seq among the nodes wins: put 12 into b's store only (a raw
        # put), so that the others still hold 11 (and a, which put 11, its 10)
        async with await anyio.create_udp_socket(local_host="127.0.45.9") as sock:
            sig = kp.sign_item(b"6:twelve", 12, b"s")
            reply = await RawClient(sock, b.address).put(
                kp.target(b"s"), v=b"twelve", k=kp.public_key, seq=12, sig=sig, salt=b"s"
            )
            assert reply[b"y"] == b"r", reply
        held = [n.stored_item(kp.target(b"s")) for n in (a, b, c, d)]
        assert [item.seq if item else None for item in held] == [10, 12, 11, 11]
        for node in (a, b, c, d):
            assert await node.get_mutable(kp.public_key, salt="s") == (b"twelve", 12)
        with pytest.raises(InvalidArgument, match="64"):
            await a.put_mutable("x", keypair=kp, salt="s" * 65)
        with pytest.raises(InvalidArgument, match="seq"):
            await a.put_mutable("x", keypair=kp, seq=-1)
        with pytest.raises(InvalidArgument):
            await a.get_mutable("00" * 31)


async def test_key_value_api(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a, b, c = await start_network(stack, 3, subnet=46)
        owner = await stack.enter_async_context(
            DHTNode(bind=("127.0.46.9", 0), bootstrap=[a.address], state_dir=tmp_path / "s", **FAST)
        )
        await wait_until(lambda: owner.stats["nodes"] == 3, 10, "the owner to join")
        key_file = tmp_path / "s" / IDENTITY_FILE
        assert not key_file.exists()  # created on first use only
        assert await owner.set("color", "blue") == 1
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        pk = owner.keypair.public_key
        # a str comes back as bytes (bencode has no text type)
        assert await owner.get("color") == b"blue"
        assert await b.get("color", owner=pk) == b"blue"
        assert await c.get("color", owner=pk.hex()) == b"blue"
        assert await owner.set("color", "green") == 2
        assert await b.get("color", owner=pk) == b"green"
        # the item is a plain mutable item under the key's salt
        assert await c.get_mutable(pk, salt="color") == (b"green", 2)
        # other value types, and a key longer than a salt (hashed)
        long_key = "k" * 100
        assert await owner.set(long_key, {"n": 1, "l": [b"x", 2]}) == 1
        assert await a.get(long_key, owner=pk) == {b"n": 1, b"l": [b"x", 2]}
        found = await a.get_mutable(pk, salt=hashlib.sha1(long_key.encode()).digest())
        assert found == ({b"n": 1, b"l": [b"x", 2]}, 1)
        assert await owner.set(b"\xff", 7) == 1
        assert await b.get(b"\xff", owner=pk) == 7
        # unknown key, unknown owner, own key of another node
        assert await b.get("absent", owner=pk) is None
        assert await b.get("color", owner=KeyPair.from_seed(SEED).public_key) is None
        assert await b.get("color") is None  # b's own (ephemeral) key pair wrote nothing
        with pytest.raises(InvalidArgument, match="empty"):
            await owner.set("", 1)
    # a node without a state dir has a key pair of its own, for this run only
    assert isinstance(a.keypair, KeyPair) and a.keypair != b.keypair
    # the key pair outlives the node: a restart signs with the same key
    async with DHTNode(bind=("127.0.46.9", 0), bootstrap=[], state_dir=tmp_path / "s") as again:
        assert again.keypair.public_key == pk
    explicit = KeyPair.from_seed(OTHER_SEED)
    assert DHTNode(bind=("127.0.46.9", 0), keypair=explicit).keypair is explicit


async def test_bep46_publish_and_resolve() -> None:
    kp = KeyPair.from_seed(SEED)
    async with AsyncExitStack() as stack:
        a, b, c = await start_network(stack, 3, subnet=47)
        assert await b.resolve_torrent(kp.public_key) is None
        assert await a.publish_torrent(INFOHASH, kp) == 1
        assert await b.resolve_torrent(kp.public_key) == INFOHASH
        # the item is BEP 46's {"ih": infohash}, under the magnet link's key and salt
        assert await c.get_mutable(kp.public_key) == ({b"ih": INFOHASH}, 1)
        newer = hashlib.sha1(b"v2").digest()
        assert await a.publish_torrent(newer.hex(), kp, salt=b"n") == 1
        magnet = bep44.btpk_magnet(kp.public_key, b"n")
        key, salt = bep44.parse_btpk_magnet(magnet)
        assert await c.resolve_torrent(key, salt) == newer
        assert await c.resolve_torrent(kp.public_key.hex(), "n") == newer
        # an item that is not a torrent pointer
        await a.put_mutable("not a torrent", keypair=kp, salt="t")
        with pytest.raises(DecodeError):
            await b.resolve_torrent(kp.public_key, "t")
        with pytest.raises(InvalidArgument):
            await a.publish_torrent(b"short", kp)


async def test_republish_refreshes_and_stops_when_superseded() -> None:
    kp = KeyPair.from_seed(SEED)
    async with AsyncExitStack() as stack:
        nodes = await start_network(stack, 4, subnet=48)
        a, b, c, _ = nodes
        publisher = await stack.enter_async_context(
            DHTNode(
                bind=("127.0.48.9", 0),
                bootstrap=[a.address],
                republish_interval=0.3,
                **FAST,
            )
        )
        await wait_until(lambda: publisher.stats["nodes"] == 4, 10, "the publisher to join")
        puts = count_puts(nodes)
        target = await publisher.put_immutable("kept alive")
        seq = await publisher.put_mutable("mine", keypair=kp, salt="r")
        mtarget = kp.target(b"r")
        assert seq == 1
        assert publisher.republishing == {target, mtarget}
        first = stored_elsewhere(nodes, target, puts)
        assert first and all(count == 1 for _, count in first)
        # re-put every 0.3 s: each storing node sees the same item again
        await wait_until(
            lambda: all(count >= 3 for _, count in stored_elsewhere(nodes, target, puts)),
            5,
            "the immutable item to be re-put twice",
        )
        # the mutable one with the same seq (a refresh, not a new version)
        await wait_until(
            lambda: all(s == 1 and n >= 3 for s, n in stored_elsewhere(nodes, mtarget, puts)),
            5,
            "the mutable item to be re-put twice with seq 1",
        )
        # stop_republishing: the count stops growing
        assert publisher.stop_republishing(target)
        assert not publisher.stop_republishing(target)
        await anyio.sleep(0.5)  # a republish already under way may still land
        settled = stored_elsewhere(nodes, target, puts)
        await anyio.sleep(0.8)
        assert stored_elsewhere(nodes, target, puts) == settled
        # someone else with the key puts a newer seq: our seq 1 is refused (302) and we
        # stop re-putting it, rather than fight the newer item forever
        assert await b.put_mutable("theirs", keypair=kp, salt="r") == 2
        await wait_until(
            lambda: mtarget not in publisher.republishing, 5, "the publisher to stop republishing"
        )
        assert await c.get_mutable(kp.public_key, salt="r") == (b"theirs", 2)
        assert not publisher.stop_republishing(mtarget)
        # a put of ours that nobody stored is not republished
        assert publisher.stop_republishing(target) is False


async def test_republish_list_survives_a_restart(tmp_path: Path) -> None:
    """Immutable items and mutable ones signed by the node's own key pair are re-put by
    the next run too; one signed by another key pair is not (its secret is not saved)."""
    state = tmp_path / "pub"
    other = KeyPair.from_seed(OTHER_SEED)
    async with AsyncExitStack() as stack:
        nodes = await start_network(stack, 4, subnet=58)

        def publisher() -> DHTNode:
            return DHTNode(
                bind=("127.0.58.9", 0), bootstrap=[nodes[0].address], state_dir=state, **FAST
            )

        async with publisher() as first:
            await wait_until(lambda: first.stats["nodes"] == 4, 10, "the publisher to join")
            target = await first.put_immutable("kept across restarts")
            assert await first.set("name", "value") == 1
            own = first.keypair.target(kv_salt("name"))
            await first.put_mutable("foreign", keypair=other, salt="f")
            assert first.republishing == {target, own, other.target(b"f")}
        saved = state / "republish.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert OTHER_SEED.hex() not in saved.read_text()
        assert first.keypair.seed.hex() not in saved.read_text()
        async with publisher() as again:
            assert again.republishing == {target, own}
            await wait_until(lambda: again.stats["nodes"] == 4, 10, "the publisher to rejoin")
            assert again.stop_republishing(target)
        async with publisher() as third:
            assert third.republishing == {own}


async def test_put_with_nobody_to_store_it() -> None:
    async with DHTNode(bind=("127.0.49.1", 0), bootstrap=[], **FAST) as lone:
        with pytest.raises(MldhtError, match="no DHT node stored"):
            await lone.put_immutable("nowhere")
        with pytest.raises(MldhtError, match="no DHT node stored"):
            await lone.put_mutable("nowhere", keypair=KeyPair.from_seed(SEED))
        done = await lone.put_item(encode_value("nowhere"))
        assert done.accepted == 0
        assert not lone.stop_republishing(done.target)  # not remembered either
        assert await lone.get_immutable(done.target) is None


# -------------------------------------------------------- raw KRPC client, rogue node


class RawClient:
    """A bare KRPC client on its own UDP socket: builds every message by hand."""

    def __init__(self, sock: anyio.abc.UDPSocket, dest: Addr) -> None:
        self.sock = sock
        self.dest = dest
        self._n = 0

    async def query(self, q: bytes, args: dict[bytes, Any]) -> dict[bytes, Any]:
        self._n += 1
        t = b"x%d" % self._n
        msg = {b"t": t, b"y": b"q", b"q": q, b"a": {b"id": PROBE_ID, **args}}
        await self.sock.sendto(bencode(msg), *self.dest)
        with anyio.fail_after(2):
            while True:
                data, source = await self.sock.receive()
                reply: dict[bytes, Any] = bdecode(data)
                if source[:2] == self.dest and reply.get(b"t") == t:
                    return reply

    async def get(self, target: bytes) -> dict[bytes, Any]:
        reply = await self.query(b"get", {b"target": target})
        assert reply[b"y"] == b"r", reply
        r: dict[bytes, Any] = reply[b"r"]
        return r

    async def put(self, target: bytes, **args: Any) -> dict[bytes, Any]:
        """A put with a fresh token for ``target`` (from a get) unless one is given."""
        if b"token" not in {k.encode() for k in args}:
            args["token"] = (await self.get(target))[b"token"]
        return await self.query(b"put", {k.encode(): v for k, v in args.items()})


def error_code(reply: dict[bytes, Any]) -> int | None:
    if reply.get(b"y") != b"e":
        return None
    code: int = reply[b"e"][0]
    return code


async def test_raw_client_error_paths_store_nothing() -> None:
    kp = KeyPair.from_seed(SEED)
    async with (
        DHTNode(bind=("127.0.50.1", 0), bootstrap=[], **FAST) as node,
        await anyio.create_udp_socket(local_host="127.0.50.2") as sock,
    ):
        raw = RawClient(sock, node.address)

        # 205: v over 1000 bytes, immutable and mutable
        big = b"x" * 1000  # 1005 bytes bencoded
        big_target = hashlib.sha1(bencode(big)).digest()
        assert error_code(await raw.put(big_target, v=big)) == 205
        assert b"v" not in await raw.get(big_target)
        sig = kp.sign_item(bencode(big), 1)
        assert error_code(await raw.put(kp.target(), v=big, k=kp.public_key, seq=1, sig=sig)) == 205
        assert b"v" not in await raw.get(kp.target())

        # 207: salt over 64 bytes
        salt = b"s" * 65
        t65 = hashlib.sha1(kp.public_key + salt).digest()
        sig = kp.sign_item(b"2:hi", 1, salt)
        reply = await raw.put(t65, v=b"hi", k=kp.public_key, seq=1, sig=sig, salt=salt)
        assert error_code(reply) == 207
        assert b"v" not in await raw.get(t65)

        # 206: a signature that does not cover the item
        target = kp.target(b"s")
        bad_sig = kp.sign_item(b"5:other", 1, b"s")
        reply = await raw.put(target, v=b"value", k=kp.public_key, seq=1, sig=bad_sig, salt=b"s")
        assert error_code(reply) == 206
        assert b"v" not in await raw.get(target)

        # 203: no valid token
        reply = await raw.put(
            target,
            v=b"five",
            k=kp.public_key,
            seq=5,
            sig=kp.sign_item(b"4:five", 5, b"s"),
            salt=b"s",
            token=b"nope",
        )
        assert error_code(reply) == 203
        assert b"v" not in await raw.get(target)
        assert node.stats["stored_items"] == 0

        # a valid put is stored...
        reply = await raw.put(
            target, v=b"five", k=kp.public_key, seq=5, sig=kp.sign_item(b"4:five", 5, b"s"),
            salt=b"s",
        )  # fmt: skip
        assert reply[b"y"] == b"r", reply

        async def unchanged() -> None:
            r = await raw.get(target)
            assert (r[b"v"], r[b"seq"], r[b"k"]) == (b"five", 5, kp.public_key)
            assert bep44.verify(kp.public_key, r[b"sig"], b"4:five", 5, b"s")

        await unchanged()

        # 301: cas is not the stored seq
        six = {"v": b"six", "k": kp.public_key, "seq": 6, "salt": b"s"}
        six["sig"] = kp.sign_item(b"3:six", 6, b"s")
        assert error_code(await raw.put(target, **six, cas=4)) == 301
        await unchanged()
        # 302: a lower seq, and the same seq with another value
        four = kp.sign_item(b"4:four", 4, b"s")
        reply = await raw.put(target, v=b"four", k=kp.public_key, seq=4, sig=four, salt=b"s")
        assert error_code(reply) == 302
        await unchanged()
        cinq = kp.sign_item(b"4:cinq", 5, b"s")
        reply = await raw.put(target, v=b"cinq", k=kp.public_key, seq=5, sig=cinq, salt=b"s")
        assert error_code(reply) == 302
        await unchanged()
        assert node.stats["stored_items"] == 1
        # the node answers its own API from what it stores
        assert await node.get_mutable(kp.public_key, salt="s") == (b"five", 5)
        ok = await raw.put(hashlib.sha1(b"5:small").digest(), v=b"small")
        assert ok[b"y"] == b"r"
        assert await node.get_immutable(hashlib.sha1(b"5:small").digest()) == b"small"


async def test_replies_that_do_not_check_out_are_discarded() -> None:
    """A rogue node answers every get with an item that fails the BEP 44 checks."""
    kp = KeyPair.from_seed(SEED)
    forger = KeyPair.from_seed(OTHER_SEED)
    mode = {"kind": "valid"}
    gets: list[bytes] = []
    rogue_id = b"\x66" * 20

    async def serve(sock: anyio.abc.UDPSocket) -> None:
        async for data, source in sock:
            msg = bdecode(data)
            if msg.get(b"y") != b"q":
                continue
            r: dict[bytes, Any] = {b"id": rogue_id, b"nodes": b"", b"token": b"tok"}
            if msg[b"q"] == b"get":
                gets.append(msg[b"a"][b"target"])
                kind = mode["kind"]
                if kind == "valid":
                    r[b"v"] = b"abc"
                elif kind == "wrong hash":
                    r[b"v"] = b"not what was asked for"
                elif kind == "bad signature":
                    r.update({b"v": b"forged", b"k": kp.public_key, b"seq": 9})
                    r[b"sig"] = forger.sign_item(b"6:forged", 9)
                else:  # a valid item, but of another key than the target's
                    r.update({b"v": b"forged", b"k": forger.public_key, b"seq": 9})
                    r[b"sig"] = forger.sign_item(b"6:forged", 9)
            reply = {b"t": msg[b"t"], b"y": b"r", b"r": r}
            await sock.sendto(bencode(reply), source[0], source[1])

    async with (
        await anyio.create_udp_socket(local_host="127.0.51.1") as rogue_sock,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(serve, rogue_sock)
        local = rogue_sock.extra(anyio.abc.SocketAttribute.local_address)
        rogue: Addr = (str(local[0]), int(local[1]))
        async with DHTNode(bind=("127.0.51.2", 0), bootstrap=[rogue], **FAST) as n:
            await wait_until(lambda: n.stats["nodes"] == 1, 10, "the rogue in the table")
            # the control: an item that checks out is taken
            target = hashlib.sha1(b"3:abc").digest()
            assert await n.get_immutable(target) == b"abc"
            mode["kind"] = "wrong hash"
            other = hashlib.sha1(b"3:xyz").digest()
            assert await n.get_immutable(other) is None
            mode["kind"] = "bad signature"
            assert await n.get_mutable(kp.public_key) is None
            mode["kind"] = "other key"
            assert await n.get_mutable(kp.public_key) is None
            # every one of them was asked and answered
            assert gets == [target, other, kp.target(), kp.target()]
        tg.cancel_scope.cancel()


async def test_exception_in_the_body_is_not_wrapped() -> None:
    with pytest.raises(KRPCError) as caught:
        async with DHTNode(bind=("127.0.49.2", 0), bootstrap=[], **FAST):
            raise KRPCError(302, "from the body")
    assert caught.value.code == 302


# ------------------------------------------------------------- a core limitation
