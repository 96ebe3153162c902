"""mldht.Testnet: a private network on loopback, on one address or on many."""

from __future__ import annotations

from typing import Any

import pytest

import mldht
from mldht import InvalidArgument
from mldht.runtime import DHTNode
from mldht.testnet import Testnet, loopback_host

FAST: dict[str, Any] = {"query_timeout": 0.5, "soft_timeout": 0.2, "lookup_timeout": 5.0}
INFOHASH = bytes.fromhex("00112233445566778899aabbccddeeff00112233")


async def test_testnet_on_one_address_forms_a_network() -> None:
    """Nodes sharing 127.0.0.1 (ports differ) all know each other: loopback counts per
    ip:port in the routing table, public addresses per IP."""
    async with Testnet(5, host="127.0.0.1", **FAST) as net:
        assert mldht.Testnet is Testnet
        assert {host for host, _ in net.addresses} == {"127.0.0.1"}
        assert len(set(net.addresses)) == 5
        await net.wait_tables()  # every table holds the 4 others
        assert all(n.stats["nodes"] == 4 for n in net.nodes)
        async with (
            DHTNode(bind=("127.0.0.1", 0), bootstrap=net.bootstrap, **FAST) as announcer,
            DHTNode(bind=("127.0.0.1", 0), bootstrap=net.bootstrap, **FAST) as searcher,
        ):
            assert await announcer.announce(INFOHASH, 6881) >= 1
            assert net.holders(INFOHASH)
            assert ("127.0.0.1", 6881) in await searcher.get_peers(INFOHASH)


async def test_testnet_on_distinct_addresses_announces() -> None:
    async with Testnet(6, prefix="127.78", infohashes=5, seed=3, **FAST) as net:
        hosts = [host for host, _ in net.addresses]
        assert hosts == [loopback_host("127.78", i) for i in range(6)]
        assert len(net.bootstrap) == 4 and net.bootstrap_address == net.addresses[0]
        assert len(net.infohashes) == 5 and all(net.announced[ih] >= 1 for ih in net.infohashes)
        summary = net.summary()
        assert summary["nodes"] == 6 and summary["announces_accepted"] >= 5
    assert net.nodes == []  # stopped


async def test_own_stored_peers_are_part_of_get_peers() -> None:
    """b announces to a (the only other node); a's own lookup returns that peer, which no
    other node holds."""
    async with Testnet(2, prefix="127.79", **FAST) as net:
        await net.wait_tables()
        a, b = net.nodes
        assert await b.announce(INFOHASH, 5555) == 1
        peer = (b.address[0], 5555)
        assert a.stored_peers(INFOHASH) == [peer] and b.stored_peers(INFOHASH) == []
        assert await a.get_peers(INFOHASH) == [peer]
        assert [p async for p in a.iter_peers(INFOHASH)] == [peer]


def test_testnet_rejects_bad_sizes_and_prefixes() -> None:
    with pytest.raises(InvalidArgument, match="at least one node"):
        Testnet(0)
    with pytest.raises(InvalidArgument, match="not a loopback"):
        Testnet(3, prefix="10.1")
    with pytest.raises(InvalidArgument, match="too many nodes"):
        Testnet(256 * 254 + 1)
