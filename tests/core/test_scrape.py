"""BEP 33 scrape from the asking side: merging answers, estimating, and the scrape lookup
in the simulator (seeds announced with seed=1, counted through every storing node)."""

from __future__ import annotations

import ipaddress
import math
import random

import pytest

from mldht.core import bep42
from mldht.core.bep33 import BLOOM_BITS, BLOOM_BYTES, bloom_contains, scrape_bloom
from mldht.core.compact import Addr
from mldht.core.config import NodeConfig
from mldht.core.events import AnnounceDone, LookupDone, is_terminal
from mldht.core.krpc import AnnouncePeer, GetPeers, GetPeersResponse, Query, decode_message
from mldht.core.scrape import (
    SATURATED,
    ScrapeAnswer,
    ScrapeDone,
    ScrapeResult,
    estimate_count,
    merge_answers,
)
from mldht.errors import DecodeError
from mldht.sim import Simulator

V4 = [str(ipaddress.IPv4Address("192.0.2.0") + i) for i in range(256)]
V6 = [str(ipaddress.IPv6Address("2001:db8::") + i) for i in range(0x3E8)]
BEP33_FILTER = scrape_bloom(V4 + V6)
"""BEP 33's test vector (test_peer_store checks it against the BEP's hex): 619 zero bits."""
FULL = b"\xff" * BLOOM_BYTES
EMPTY = bytes(BLOOM_BYTES)


# -- estimate --------------------------------------------------------------------------


def test_estimate_of_the_bep33_vector() -> None:
    assert BLOOM_BITS - int.from_bytes(BEP33_FILTER, "big").bit_count() == 619
    assert estimate_count(BEP33_FILTER) == 1225  # the BEP's 1224.9308, rounded


def test_estimate_edges() -> None:
    assert estimate_count(EMPTY) == 0  # the bare formula gives 0.5
    assert estimate_count(scrape_bloom(["192.0.2.1"])) == 1
    assert estimate_count(FULL) == SATURATED == 7806
    one_zero = b"\xfe" + b"\xff" * (BLOOM_BYTES - 1)
    assert estimate_count(one_zero) == SATURATED
    assert ScrapeResult.of(b"i" * 20, FULL, EMPTY, 1).saturated
    assert not ScrapeResult.of(b"i" * 20, one_zero, one_zero, 1).saturated
    with pytest.raises(DecodeError):
        estimate_count(b"\x00" * 255)


def _three_sigma(n: int) -> float:
    """Three standard deviations of the estimate for ``n`` IPs (k = 2, m = 2,048): the
    zero bits are about binomial(m, p) with p = exp(-2n/m), and the estimate moves by
    m / (2 * zeros) per zero bit."""
    p = math.exp(-2 * n / BLOOM_BITS)
    zeros_sd = math.sqrt(BLOOM_BITS * p * (1 - p))
    return 3 * BLOOM_BITS / 2 * zeros_sd / (BLOOM_BITS * p)


def test_estimates_stay_within_three_sigma() -> None:
    rng = random.Random(33)
    for n in (1, 2, 5, 10, 50, 200, 1000, 3000, 6000):
        ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(n)]
        got = estimate_count(scrape_bloom(ips))
        # three sigma: 9% of n at 1,000 IPs, 10% at 3,000, 21% at 6,000
        assert abs(got - n) <= max(1.0, _three_sigma(n)), (n, got)


# -- merging ---------------------------------------------------------------------------


def test_merge_ors_the_filters_of_every_answer() -> None:
    """The vector's IPv4 half from one node, its IPv6 half from another: the union is the
    vector's filter. An IP held by both counts once."""
    a = ScrapeAnswer(scrape_bloom(V4), scrape_bloom(V4[:10]))
    b = ScrapeAnswer(scrape_bloom(V6), scrape_bloom(V4[5:20]))
    seeds, peers, count = merge_answers([a, b])
    assert seeds == BEP33_FILTER and count == 2
    assert peers == scrape_bloom(V4[:20])
    result = ScrapeResult.of(b"i" * 20, seeds, peers, count)
    assert (result.seeds, result.peers, result.nodes) == (1225, 20, 2)


def test_merge_ignores_empty_answers_and_filters_of_the_wrong_size() -> None:
    body = GetPeersResponse(b"n" * 20, b"tok", None, None, None, b"\xff" * 255, b"\xff" * 300)
    bad = ScrapeAnswer.of(body)
    assert bad == ScrapeAnswer() and not bad.useful
    good = ScrapeAnswer.of(GetPeersResponse(b"n" * 20, None, bf_seeds=scrape_bloom(V4[:3])))
    assert good.bf_seeds == scrape_bloom(V4[:3]) and good.bf_peers is None
    seeds, peers, count = merge_answers([bad, good, ScrapeAnswer()])
    assert (estimate_count(seeds), peers, count) == (3, EMPTY, 1)
    assert merge_answers([]) == (EMPTY, EMPTY, 0)


def test_values_without_filters_count_as_peers_unless_seen_as_seeds() -> None:
    """BEP 33, legacy replies: a node without BEP 33 answers with values; their IPs go
    into a local peer filter, except those other nodes' seed filters already hold."""
    legacy = ScrapeAnswer.of(
        GetPeersResponse(b"n" * 20, values=(("192.0.2.1", 1), ("192.0.2.2", 2), ("192.0.2.1", 3)))
    )
    assert legacy.ips == ("192.0.2.1", "192.0.2.2", "192.0.2.1")
    seeder = ScrapeAnswer(scrape_bloom(["192.0.2.2"]), EMPTY)
    seeds, peers, count = merge_answers([legacy, seeder])
    assert seeds == scrape_bloom(["192.0.2.2"]) and count == 2
    assert peers == scrape_bloom(["192.0.2.1"])
    # with a peer filter of its own, a node's values are not counted twice
    both = ScrapeAnswer(None, scrape_bloom(["192.0.2.9"]), ("192.0.2.3",))
    assert merge_answers([both])[1] == scrape_bloom(["192.0.2.9"])


def test_bloom_contains() -> None:
    assert all(bloom_contains(BEP33_FILTER, ip) for ip in V4 + V6)
    one = scrape_bloom(["192.0.2.1"])
    assert bloom_contains(one, "192.0.2.1") and bloom_contains(one, bytes([192, 0, 2, 1]))
    assert not bloom_contains(one, "192.0.2.2")
    assert not bloom_contains(EMPTY, "192.0.2.1")
    assert BLOOM_BITS == 8 * BLOOM_BYTES


# -- the scrape lookup (simulator) --------------------------------------------------------


def _network(
    size: int, seed: int, config: NodeConfig | None = None
) -> tuple[Simulator, list[Addr]]:
    """Public-looking addresses, each in its own /16 (the lookups' group cap counts two
    answers per /16 toward the closest set), each node with a BEP 42-valid id for its own
    (else it changes id once IP voting settles, and the storers stop being the closest)."""
    sim = Simulator(seed=seed, public=True, config=config)
    rng = random.Random(seed)
    nodes = []
    for n in range(1, size + 1):
        ip = f"{11 + (n >> 8)}.{n & 255}.0.1"
        nodes.append(sim.add_node(addr=(ip, 6881), node_id=bep42.generate_node_id(ip, rng)))
    sim.populate(contacts=20)
    return sim, nodes


def _announce(sim: Simulator, addr: Addr, infohash: bytes, port: int, seed: bool) -> AnnounceDone:
    done, _ = sim.run_op(addr, lambda st, now: st.announce(infohash, port, now, seed=seed))
    assert isinstance(done, AnnounceDone) and done.accepted >= 1
    return done


def _scrape(sim: Simulator, addr: Addr, infohash: bytes) -> ScrapeResult:
    done, _ = sim.run_op(addr, lambda st, now: st.scrape(infohash, now))
    assert done is not None and is_terminal(done)  # a LookupDone, hence terminal
    assert isinstance(done, LookupDone) and isinstance(done, ScrapeDone)
    assert done.result is not None and done.nodes
    return done.result


def test_scrape_counts_seeds_and_peers_announced_across_the_network() -> None:
    sim, nodes = _network(120, seed=5)
    infohash = random.Random(7).randbytes(20)
    seeds: list[str] = []
    peers: list[str] = []
    for i, addr in enumerate(nodes[:45]):
        seed = i % 3 == 0
        _announce(sim, addr, infohash, 6881, seed)
        (seeds if seed else peers).append(addr[0])
    result = _scrape(sim, nodes[-1], infohash)
    # The merged filters are exactly those of the announced IPs: every announce's storers
    # answered, and nothing else was counted.
    assert result.bf_seeds == scrape_bloom(seeds) and result.bf_peers == scrape_bloom(peers)
    assert (result.seeds, result.peers) == (
        estimate_count(scrape_bloom(seeds)),
        estimate_count(scrape_bloom(peers)),
    )
    assert abs(result.seeds - 15) <= _three_sigma(15)
    assert abs(result.peers - 30) <= _three_sigma(30)
    assert result.nodes >= 8 and not result.saturated
    # an info-hash nobody announced: zero, and no node contributed
    empty = _scrape(sim, nodes[-1], bytes(20))
    assert (empty.seeds, empty.peers, empty.nodes) == (0, 0, 0)


def test_a_seed_announce_sends_seed_1_and_asks_noseed() -> None:
    """The announce_peer carries seed=1 and its lookup noseed=1, so a seed is not told
    about other seeds (libtorrent does the same)."""
    sim, nodes = _network(30, seed=8)
    infohash = random.Random(9).randbytes(20)
    for addr, seed in ((nodes[0], True), (nodes[1], False)):
        _announce(sim, addr, infohash, 7000, seed)
    sent: list[object] = []
    original = sim.state(nodes[2]).datagrams_to_send

    def spy() -> list[tuple[bytes, Addr]]:
        out = original()
        sent.extend(
            msg.body for msg in map(decode_message, (d for d, _ in out)) if isinstance(msg, Query)
        )
        return out

    sim.state(nodes[2]).datagrams_to_send = spy  # type: ignore[method-assign]
    done = _announce(sim, nodes[2], infohash, 7001, True)
    assert {p[0] for p in done.peers} == {nodes[1][0]}  # the other seed is left out
    get_peers = [q for q in sent if isinstance(q, GetPeers)]
    announces = [q for q in sent if isinstance(q, AnnouncePeer)]
    assert get_peers and all(q.noseed and not q.scrape for q in get_peers)
    assert announces and all(q.seed is True for q in announces)
    result = _scrape(sim, nodes[3], infohash)
    assert (result.seeds, result.peers) == (2, 1)


def test_our_own_store_counts() -> None:
    """A node that stores the info-hash itself counts its own filters too (as get_peers
    lists its own stored peers first)."""
    sim, nodes = _network(2, seed=1)
    infohash = bytes(range(20))
    assert _announce(sim, nodes[0], infohash, 7000, True).accepted == 1
    result = _scrape(sim, nodes[1], infohash)  # its only contact (nodes[0]) stores nothing
    assert (result.seeds, result.peers, result.nodes) == (1, 0, 1)
    assert result.bf_seeds == scrape_bloom([nodes[0][0]])


def test_full_stores_withhold_tokens_and_announces_go_to_the_next_nodes() -> None:
    """BEP 33: a store holding max_peers_per_infohash peers of an info-hash gives no token,
    so that announces go elsewhere. Announces go to the store_k closest nodes *that gave a
    token* among all that answered (libtorrent's find_data::done), not only among the
    store_k closest: with the closest full, a third announce lands on the next answers
    (only among the 8 closest, it was stored nowhere), and a scrape counts all three."""
    config = NodeConfig(max_peers_per_infohash=2, store_k=8, lookup_k=10)
    sim, nodes = _network(200, seed=5, config=config)
    infohash = random.Random(5).randbytes(20)
    assert [_announce(sim, a, infohash, 7000, False).accepted for a in nodes[:2]] == [8, 8]
    assert _announce(sim, nodes[2], infohash, 7000, True).accepted == 8
    # The seed landed on 8 nodes that had room; with the closest full after the first
    # two announces, more than 8 nodes hold peers of the info-hash.
    filters = [sim.state(a).peer_store.scrape(infohash, sim.now) for a in nodes]
    seed_holders = [f for f in filters if f is not None and bloom_contains(f[0], nodes[2][0])]
    assert len(seed_holders) == 8
    assert sum(1 for f in filters if f is not None) > 8
    result = _scrape(sim, nodes[3], infohash)
    assert result.bf_peers == scrape_bloom([a[0] for a in nodes[:2]])
    assert result.bf_seeds == scrape_bloom([nodes[2][0]])
