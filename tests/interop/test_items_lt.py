"""BEP 44 items between our node and libtorrent (issue 4), on loopback.

The network: our node and two libtorrent nodes, all in each other's tables (three nodes:
a get that finds the item then still reaches a node holding the newest copy, and no dead
node for libtorrent's traversals to wait 15 s on). Each libtorrent call runs in a worker
thread while our node serves on the event loop. ``mldht get`` (a subprocess, a node of
its own) reads what libtorrent put, over the network.
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
from .lt import LtNode, ed25519_public_key, mutable_target

pytestmark = pytest.mark.interop

MakeLt = Callable[..., LtNode]
FAST: dict[str, Any] = {"query_timeout": 2.0, "lookup_timeout": 20.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def network(
    stack: AsyncExitStack, make_lt: MakeLt, loopback: Callable[[], Addr]
) -> tuple[DHTNode, LtNode, LtNode]:
    """Our node and two libtorrent nodes, each in the others' routing tables."""
    lt1 = await call(make_lt)
    lt2 = await call(make_lt)
    ours = await stack.enter_async_context(
        DHTNode(bind=loopback(), bootstrap=[lt1.addr, lt2.addr], **FAST)
    )
    await call(lt1.add_node, lt2.addr)
    await call(lt2.add_node, lt1.addr)
    for lt in (lt1, lt2):
        await call(lt.add_node, ours.address)
    for lt, other in ((lt1, lt2), (lt2, lt1)):
        assert await call(lt.wait_for_node, ours.address, 20) is not None, "libtorrent took us"
        assert await call(lt.wait_for_node, other.addr, 20) is not None
    await wait_for(
        lambda: all(ours.knows(lt.node_id) for lt in (lt1, lt2)),
        15,
        "both libtorrent nodes in our table",
    )
    return ours, lt1, lt2


async def test_immutable_items_both_ways(make_lt: MakeLt, loopback: Callable[[], Addr]) -> None:
    async with AsyncExitStack() as stack:
        ours, lt1, lt2 = await network(stack, make_lt, loopback)
        bootstrap = ["--bootstrap", f"{lt1.addr[0]}:{lt1.addr[1]}", "--bind", f"{loopback()[0]}:0"]

        # libtorrent puts, we get: from the network (get_item asks only others), through
        # the API, and (at the end) with `mldht get`, a node that holds nothing itself
        value = {b"list": [1, -2, b"x"], b"n": 42}
        put = await call(lt1.put_immutable, value)
        assert put.num_success >= 2
        item = await ours.get_item(put.target)
        assert item is not None and item.k is None
        assert await ours.get_immutable(put.target) == value
        text = b"from libtorrent"
        put = await call(lt2.put_immutable, text)
        assert await ours.get_immutable(put.target.hex()) == text
        theirs = put.target

        # we put, libtorrent gets (lt2 holds it, lt1 asks it and us)
        target = await ours.put_immutable({"from": "mldht", "v": [1, 2]})
        assert target == hashlib.sha1(b"d4:from5:mldht1:vli1ei2eee").digest()
        got = await call(lt1.get_immutable, target, 15)
        assert got == {b"from": b"mldht", b"v": [1, 2]}
        target = await ours.put_immutable("héllo")
        assert await call(lt2.get_immutable, target, 15) == "héllo".encode()
        # an unknown target is not found on either side
        absent = hashlib.sha1(b"absent").digest()
        assert await ours.get_immutable(absent) is None
        assert await call(lt1.get_immutable, absent, 10) is None
        assert await mldht_cli("get", theirs.hex(), *bootstrap) == "from libtorrent\n"


@pytest.mark.parametrize("salt", [b"", b"interop-salt"], ids=["no_salt", "salt"])
async def test_mutable_items_both_ways_then_higher_seq(
    make_lt: MakeLt, loopback: Callable[[], Addr], salt: bytes
) -> None:
    seed = random.Random(f"lt-mutable-{salt!r}").randbytes(32)
    keypair = KeyPair.from_seed(seed)
    pubkey = ed25519_public_key(seed)
    assert keypair.public_key == pubkey
    async with AsyncExitStack() as stack:
        ours, lt1, lt2 = await network(stack, make_lt, loopback)
        bootstrap = ["--bootstrap", f"{lt2.addr[0]}:{lt2.addr[1]}", "--bind", f"{loopback()[0]}:0"]

        # libtorrent puts seq 1, we read it
        put = await call(lt1.put_mutable, seed, salt, b"one", expect_seq=1)
        assert put.target == mutable_target(pubkey, salt) == keypair.target(salt)
        assert put.num_success >= 2
        assert await ours.get_mutable(pubkey, salt=salt) == (b"one", 1)

        # we put the next one (seq: newest found + 1), both libtorrent nodes read it
        assert await ours.put_mutable(b"two", keypair=keypair, salt=salt) == 2
        for lt in (lt2, lt1):
            got = await call(lt.get_mutable, pubkey, salt, 20)
            assert got is not None and (got.value, got.seq, got.salt) == (b"two", 2, salt)

        # libtorrent puts a higher seq (it picks newest + 1 = 3): both sides read it
        await call(lt2.put_mutable, seed, salt, b"three", expect_seq=3)
        assert await ours.get_mutable(pubkey.hex(), salt=salt) == (b"three", 3)
        got = await call(lt1.get_mutable, pubkey, salt, 20)
        assert got is not None and (got.value, got.seq) == (b"three", 3)

        # we put a higher seq of our choosing: both sides read it
        assert await ours.put_mutable(b"ten", keypair=keypair, salt=salt, seq=10) == 10
        assert await ours.get_mutable(pubkey, salt=salt) == (b"ten", 10)
        for lt in (lt1, lt2):
            got = await call(lt.get_mutable, pubkey, salt, 20)
            assert got is not None and (got.value, got.seq) == (b"ten", 10)
            assert got.authoritative
        # a stale seq is refused by libtorrent too (302)
        with pytest.raises(KRPCError) as refused:
            await ours.put_mutable(b"five", keypair=keypair, salt=salt, seq=5)
        assert refused.value.code == KRPCError.SEQ_TOO_LOW

        # libtorrent puts the newest (11): we read it, and so does `mldht get --mutable`
        await call(lt1.put_mutable, seed, salt, b"eleven", expect_seq=11)
        assert await ours.get_mutable(pubkey, salt=salt) == (b"eleven", 11)
        args = ["get", "--mutable", pubkey.hex(), *(["--salt", salt.decode()] if salt else [])]
        assert await mldht_cli(*args, *bootstrap) == "eleven\nseq 11\n"
