"""The interop harness proved on the two real clients, client to client, on loopback.

libtorrent (Python bindings) and webtorrent's bittorrent-dht (Node.js) talk to each other
through :class:`LtNode` and :class:`BdhtPeer`; no mldht node is involved. If these pass,
a failure in a test that puts mldht between them points at mldht, not at the harness.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable

import pytest

from mldht.core.bencode import BValue
from mldht.core.compact import Addr

from .bdht import BdhtError, BdhtPeer
from .lt import LtNode, ed25519_public_key, libtorrent_secret_key, mutable_target

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
MakeBdht = Callable[..., BdhtPeer]


def _rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _pair(make_lt: MakeLt, make_bdht: MakeBdht) -> tuple[LtNode, BdhtPeer]:
    """A libtorrent node and a bittorrent-dht node, each in the other's routing table."""
    lt = make_lt()
    bd = make_bdht(bootstrap=[lt.addr])
    bd.wait_ready(timeout=10)
    lt.add_node(bd.addr)
    assert lt.wait_for_node(bd.addr, timeout=10) is not None, "libtorrent never added bdht"
    return lt, bd


def _poll(fn: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- the harness itself ---------------------------------------------------------------


def test_ed25519_helpers_match_rfc8032_and_node() -> None:
    # RFC 8032 §7.1 TEST 1: the seed and its public key.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pub = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert ed25519_public_key(seed) == pub
    secret = libtorrent_secret_key(seed)
    assert len(secret) == 64
    assert secret[32:] == hashlib.sha512(seed).digest()[32:]  # nonce prefix kept as is
    assert secret[0] & 7 == 0 and secret[31] & 0xC0 == 0x40  # clamped scalar
    assert mutable_target(pub, b"salt") == hashlib.sha1(pub + b"salt").digest()


def test_bdht_process_answers_and_reports_errors(make_bdht: MakeBdht) -> None:
    bd = make_bdht()
    bd.ping()
    assert len(bd.node_id) == 20
    assert bd.addr[0].startswith("127.")
    assert bd.routing_table() == []
    # Nobody to store it on: bittorrent-dht says so instead of hanging.
    with pytest.raises(BdhtError, match="No nodes"):
        bd.put_immutable(b"nowhere")
    with pytest.raises(BdhtError, match="unknown command"):
        bd.call("noSuchCommand")


def test_bdht_process_exits_when_stdin_closes(make_bdht: MakeBdht) -> None:
    bd = make_bdht()
    proc = bd.process
    assert proc.stdin is not None
    proc.stdin.close()  # what a crashed test leaves behind
    assert proc.wait(timeout=5) == 0


def test_bdht_process_exits_after_max_lifetime(make_bdht: MakeBdht) -> None:
    bd = make_bdht(max_seconds=1)
    assert _poll(lambda: bd.returncode is not None, timeout=5, interval=0.1)
    assert bd.returncode == 3


def test_node_derives_the_same_public_key(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    _, bd = _pair(make_lt, make_bdht)
    seed = bytes(range(32))
    reply = bd.call("putMutable", 10, seed_hex=seed.hex(), salt_hex="", seq=1, v_str="k")
    assert bytes.fromhex(reply["pubkey"]) == ed25519_public_key(seed)
    assert bytes.fromhex(reply["target"]) == mutable_target(ed25519_public_key(seed))


# --- BEP 5 ------------------------------------------------------------------------------


def test_bootstrap_from_each_other(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    lt = make_lt()
    # bittorrent-dht bootstraps from libtorrent; libtorrent is only queried by it.
    bd = make_bdht(bootstrap=[lt.addr])
    bd.wait_ready(timeout=10)
    seen_by_bd = bd.wait_for_node(lt.addr, timeout=5)
    assert seen_by_bd is not None and seen_by_bd.id == lt.node_id
    # libtorrent keeps a node that only queried it as a replacement until the node answers
    # libtorrent's own query (measured: about 3-6 s).
    seen_by_lt = lt.wait_for_node(bd.addr, timeout=20)
    assert seen_by_lt is not None and seen_by_lt.id == bd.node_id


def test_libtorrent_adds_bdht(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    bd = make_bdht()
    lt = make_lt()
    lt.add_node(bd.addr)
    seen_by_lt = lt.wait_for_node(bd.addr, timeout=10)
    assert seen_by_lt is not None and seen_by_lt.id == bd.node_id
    # bittorrent-dht puts every node that queries it straight into its table.
    seen_by_bd = bd.wait_for_node(lt.addr, timeout=5)
    assert seen_by_bd is not None and seen_by_bd.id == lt.node_id
    assert lt.table_stats()[0][0] >= 1


def test_bdht_adds_libtorrent(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    lt = make_lt()
    bd = make_bdht()
    assert bd.add_node(lt.addr) == lt.node_id
    assert lt.wait_for_node(bd.addr, timeout=20) is not None


@pytest.mark.parametrize("implied", [False, True], ids=["port", "implied_port"])
def test_bdht_announces_libtorrent_finds(
    make_lt: MakeLt, make_bdht: MakeBdht, implied: bool
) -> None:
    rng = random.Random(f"bdht-announce-{implied}")
    lt, bd = _pair(make_lt, make_bdht)
    infohash = _rand(rng, 20)
    # port 0 makes bittorrent-dht send implied_port=1: the peer is its UDP source port.
    port = 0 if implied else 6881
    assert bd.announce(infohash, port, timeout=15) >= 1
    expected = (bd.addr[0], bd.addr[1] if implied else 6881)
    assert lt.get_peers(infohash, timeout=10) == [expected]


@pytest.mark.parametrize("implied", [False, True], ids=["port", "implied_port"])
def test_libtorrent_announces_bdht_finds(
    make_lt: MakeLt, make_bdht: MakeBdht, implied: bool
) -> None:
    rng = random.Random(f"lt-announce-{implied}")
    lt, bd = _pair(make_lt, make_bdht)
    infohash = _rand(rng, 20)
    lt.announce(infohash, 6882, implied=implied)
    expected = (lt.addr[0], lt.addr[1] if implied else 6882)
    # No alert marks the end of libtorrent's announce: poll the receiving side.
    found: list[Addr] = []

    def look() -> bool:
        found[:] = bd.get_peers(infohash, timeout=5)
        return expected in found

    assert _poll(look, timeout=15), f"bittorrent-dht found {found}, expected {expected}"
    assert found == [expected]
    # The peer must come over the network from libtorrent too (libtorrent stores its own
    # announces), not only from bittorrent-dht's own store.
    result = bd.lookup(infohash, timeout=5)
    assert lt.addr in result.sources[expected]


def test_get_peers_for_unknown_infohash_is_empty(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    rng = random.Random("unknown")
    lt, bd = _pair(make_lt, make_bdht)
    infohash = _rand(rng, 20)
    result = bd.lookup(infohash, timeout=5)
    assert result.peers == [] and not result.timed_out and result.visited == 1
    assert lt.get_peers(infohash, timeout=2) == []


# --- BEP 44 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"interop immutable", {b"list": [1, -2, b"x"], b"n": 42}],
    ids=["bytes", "dict"],
)
def test_immutable_both_ways(make_lt: MakeLt, make_bdht: MakeBdht, value: BValue) -> None:
    lt, bd = _pair(make_lt, make_bdht)
    # libtorrent puts, bittorrent-dht gets (from the network, not its own store).
    put = lt.put_immutable(value)
    assert put.num_success >= 1
    assert bd.get_immutable(put.target, timeout=10) == value
    # bittorrent-dht puts, libtorrent gets.
    other = {b"from": b"bdht", b"v": value}
    target = bd.put_immutable(other)
    assert bd.get_immutable(target, timeout=10, cache=True) == other
    assert lt.get_immutable(target, timeout=10) == other
    # An unknown target is not found, promptly.
    assert lt.get_immutable(hashlib.sha1(b"absent").digest(), timeout=10) is None
    assert bd.get_immutable(hashlib.sha1(b"absent").digest(), timeout=10) is None


@pytest.mark.parametrize("salt", [b"", b"interop-salt"], ids=["no_salt", "salt"])
def test_mutable_both_ways_then_higher_seq(
    make_lt: MakeLt, make_bdht: MakeBdht, salt: bytes
) -> None:
    rng = random.Random(f"mutable-{salt!r}")
    seed = _rand(rng, 32)
    pubkey = ed25519_public_key(seed)
    lt, bd = _pair(make_lt, make_bdht)
    # A third node, so that the newest copy of an item is always held by some node
    # libtorrent queries. With two nodes only, libtorrent misses a newer item kept only
    # in its own store: bittorrent-dht answers a get that finds an (older) item without
    # `nodes`, so libtorrent never learns of itself and never queries itself.
    bd2 = make_bdht(bootstrap=[lt.addr])
    bd2.wait_ready(timeout=10)
    lt.add_node(bd2.addr)
    assert lt.wait_for_node(bd2.addr, timeout=10) is not None
    assert bd.add_node(bd2.addr) == bd2.node_id

    # bittorrent-dht puts seq 1, libtorrent reads it.
    target = bd.put_mutable(seed, salt, 1, b"one")
    assert target == mutable_target(pubkey, salt)
    got = lt.get_mutable(pubkey, salt, timeout=20)
    assert got is not None
    assert (got.value, got.seq, got.public_key, got.salt) == (b"one", 1, pubkey, salt)

    # libtorrent puts the next one: it picks seq = newest found + 1 = 2 itself.
    put = lt.put_mutable(seed, salt, b"two", expect_seq=2)
    assert put.target == target and put.num_success >= 2
    read = bd.get_mutable(pubkey, salt, timeout=10)
    assert read is not None and (read.value, read.seq) == (b"two", 2)
    assert read.public_key == pubkey

    # bittorrent-dht puts a higher seq, libtorrent reads the newest.
    bd.put_mutable(seed, salt, 5, b"five")
    got = lt.get_mutable(pubkey, salt, timeout=20)
    assert got is not None and (got.value, got.seq) == (b"five", 5)
    assert got.authoritative

    # And a stale seq is refused by every node that stores it (BEP 44: 302).
    with pytest.raises(BdhtError) as refused:
        bd.put_mutable(seed, salt, 3, b"three")
    assert refused.value.code == 302


# --- BEP 51 -----------------------------------------------------------------------------


def test_sample_infohashes(make_lt: MakeLt, make_bdht: MakeBdht) -> None:
    rng = random.Random("sample")
    lt, bd = _pair(make_lt, make_bdht)
    lt2 = make_lt()
    lt2.add_node(lt.addr)
    assert lt2.wait_for_node(lt.addr, timeout=10) is not None
    infohash = _rand(rng, 20)
    lt2.announce(infohash, 6883)  # stored by lt, its closest (and only) neighbour
    sample: list[bytes] = []

    def sampled() -> bool:
        result = lt2.sample_infohashes(lt.addr, _rand(rng, 20), timeout=5)
        assert result is not None, "libtorrent did not answer sample_infohashes"
        assert result.interval == 0  # dht_sample_infohashes_interval=0 in loopback_settings
        sample[:] = result.samples
        return infohash in sample

    assert _poll(sampled, timeout=10), f"{infohash.hex()} not in {[s.hex() for s in sample]}"
    # bittorrent-dht does not implement BEP 51 and sends no reply at all: this pairing
    # cannot work, and the helper reports it as None at its timeout.
    assert lt.sample_infohashes(bd.addr, _rand(rng, 20), timeout=2) is None
