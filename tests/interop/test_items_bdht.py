"""BEP 44 items between our node and webtorrent's bittorrent-dht (issue 4), on loopback.

The network: our node and two bittorrent-dht nodes, all in each other's tables. Three
nodes, since bittorrent-dht answers a ``get`` that finds the item without ``nodes``, which
can stall a two-node lookup. Its mutable puts are verified by the ed25519 ``verify`` of
bdht_peer.js. ``mldht get`` (a subprocess, a node of its own) reads what it put.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from mldht import DHTNode, KeyPair
from mldht.core.compact import Addr
from mldht.errors import KRPCError

from .aio import call, mldht_cli, wait_for
from .bdht import BdhtError, BdhtPeer
from .lt import ed25519_public_key, mutable_target

pytestmark = pytest.mark.interop

MakeBdht = Callable[..., BdhtPeer]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def network(
    stack: AsyncExitStack, make_bdht: MakeBdht, loopback: Callable[[], Addr]
) -> tuple[DHTNode, BdhtPeer, BdhtPeer]:
    """Our node and two bittorrent-dht nodes, each in the others' routing tables."""
    bd1 = await call(make_bdht)
    bd2 = await call(make_bdht, bootstrap=[bd1.addr])
    await call(bd2.wait_ready, 15)
    # bittorrent-dht takes every node that queries it straight into its table
    ours = await stack.enter_async_context(
        DHTNode(bind=loopback(), bootstrap=[bd1.addr, bd2.addr], **FAST)
    )
    for bd in (bd1, bd2):
        assert await call(bd.wait_for_node, ours.address, 15) is not None, "bdht took us"
    assert await call(bd1.wait_for_node, bd2.addr, 15) is not None
    await wait_for(
        lambda: all(ours.knows(bd.node_id) for bd in (bd1, bd2)),
        15,
        "both bittorrent-dht nodes in our table",
    )
    return ours, bd1, bd2


async def test_immutable_items_both_ways(make_bdht: MakeBdht, loopback: Callable[[], Addr]) -> None:
    async with AsyncExitStack() as stack:
        ours, bd1, bd2 = await network(stack, make_bdht, loopback)
        bootstrap = ["--bootstrap", f"{bd1.addr[0]}:{bd1.addr[1]}", "--bind", f"{loopback()[0]}:0"]

        # bittorrent-dht puts, we get: from the network (get_item asks only others),
        # through the API, and (at the end) with `mldht get`, a node that holds nothing
        value = {b"list": [1, -2, b"x"], b"n": 42}
        target = await call(bd1.put_immutable, value)
        assert target == hashlib.sha1(b"d4:listli1ei-2e1:xe1:ni42ee").digest()
        item = await ours.get_item(target)
        assert item is not None and item.k is None
        assert await ours.get_immutable(target) == value
        target = await call(bd2.put_immutable, b"from bittorrent-dht")
        assert await ours.get_immutable(target.hex()) == b"from bittorrent-dht"
        theirs = target

        # we put, bittorrent-dht gets (from the network, not its own store)
        target = await ours.put_immutable({"from": "mldht", "v": [1, 2]})
        got = await call(bd1.get_immutable, target, 10)
        assert got == {b"from": b"mldht", b"v": [1, 2]}
        target = await ours.put_immutable("héllo")
        assert await call(bd2.get_immutable, target, 10) == "héllo".encode()
        absent = hashlib.sha1(b"absent").digest()
        assert await ours.get_immutable(absent) is None
        assert await call(bd1.get_immutable, absent, 10) is None
        # last: bittorrent-dht keeps the one-shot node that asks it in its table, and its
        # later lookups would wait 2 s for that node, gone by then
        assert await mldht_cli("get", theirs.hex(), *bootstrap) == "from bittorrent-dht\n"


@pytest.mark.parametrize("salt", [b"", b"interop-salt"], ids=["no_salt", "salt"])
async def test_mutable_items_both_ways_then_higher_seq(
    make_bdht: MakeBdht, loopback: Callable[[], Addr], salt: bytes
) -> None:
    seed = random.Random(f"bdht-mutable-{salt!r}").randbytes(32)
    keypair = KeyPair.from_seed(seed)
    pubkey = ed25519_public_key(seed)
    assert keypair.public_key == pubkey
    async with AsyncExitStack() as stack:
        ours, bd1, bd2 = await network(stack, make_bdht, loopback)
        bootstrap = ["--bootstrap", f"{bd2.addr[0]}:{bd2.addr[1]}", "--bind", f"{loopback()[0]}:0"]

        # bittorrent-dht puts seq 1, we read it
        target = await call(bd1.put_mutable, seed, salt, 1, b"one")
        assert target == mutable_target(pubkey, salt) == keypair.target(salt)
        assert await ours.get_mutable(pubkey, salt=salt) == (b"one", 1)

        # we put the next one (newest found + 1): both bittorrent-dht nodes read it
        assert await ours.put_mutable({"n": 2}, keypair=keypair, salt=salt) == 2
        for bd in (bd2, bd1):
            got = await call(bd.get_mutable, pubkey, salt, 10)
            assert got is not None and (got.value, got.seq) == ({b"n": 2}, 2)
            assert got.public_key == pubkey

        # bittorrent-dht puts a higher seq: both sides read it
        await call(bd2.put_mutable, seed, salt, 5, b"five")
        assert await ours.get_mutable(pubkey.hex(), salt=salt) == (b"five", 5)
        got = await call(bd1.get_mutable, pubkey, salt, 10)
        assert got is not None and (got.value, got.seq) == (b"five", 5)

        # compare-and-swap: refused where the stored seq is not cas, taken where it is
        with pytest.raises(KRPCError) as mismatch:
            await ours.put_mutable(b"six", keypair=keypair, salt=salt, cas=4)
        assert mismatch.value.code == KRPCError.CAS_MISMATCH
        # (bittorrent-dht keeps no copy of its own mutable puts: bd2 still holds our seq 2
        # and refuses cas=5 with 301, bd1 holds 5 and takes it)
        assert await ours.put_mutable(b"six", keypair=keypair, salt=salt, cas=5) == 6
        for bd in (bd1, bd2):
            got = await call(bd.get_mutable, pubkey, salt, 10)
            assert got is not None and (got.value, got.seq) == (b"six", 6)

        # we put a higher seq of our choosing: every node takes it, both sides read it
        assert await ours.put_mutable(b"nine", keypair=keypair, salt=salt, seq=9) == 9
        assert await ours.get_mutable(pubkey, salt=salt) == (b"nine", 9)
        for bd in (bd1, bd2):
            got = await call(bd.get_mutable, pubkey, salt, 10)
            assert got is not None and (got.value, got.seq) == (b"nine", 9)
            cached = await call(bd.get_mutable, pubkey, salt, 10, cache=True)
            assert cached is not None and cached.seq == 9
        # stale seqs are refused both ways (302)
        with pytest.raises(KRPCError) as refused:
            await ours.put_mutable(b"four", keypair=keypair, salt=salt, seq=4)
        assert refused.value.code == KRPCError.SEQ_TOO_LOW
        with pytest.raises(BdhtError) as theirs:
            await call(bd1.put_mutable, seed, salt, 3, b"three")
        assert theirs.value.code == 302

        # bittorrent-dht puts the newest: we read it, and so does `mldht get --mutable`
        await call(bd1.put_mutable, seed, salt, 10, b"ten")
        assert await ours.get_mutable(pubkey, salt=salt) == (b"ten", 10)
        args = ["get", "--mutable", pubkey.hex(), *(["--salt", salt.decode()] if salt else [])]
        assert await mldht_cli(*args, *bootstrap) == "ten\nseq 10\n"
