"""Peer store (BEP 5 announces, BEP 33 scrape filters, BEP 51 samples)."""

from __future__ import annotations

import gc
import ipaddress
import json
import math
import random
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.compact import decode_peer, encode_peer
from mldht.core.netaddr import PUBLIC, classify
from mldht.core.peer_store import (
    BLOOM_BYTES,
    PeerStore,
    bloom_estimate,
    bloom_insert,
    bloom_union,
    scrape_bloom,
)
from mldht.errors import DecodeError, InvalidArgument

IH = bytes(range(20))
IH2 = bytes(range(1, 21))


def store(**kw: Any) -> PeerStore:
    """A store whose per-source quotas do not bind (most tests use one /24 or /64);
    the quota tests set them."""
    kw.setdefault("max_peers_per_source", 10**6)
    kw.setdefault("max_peers_per_source_per_infohash", 10**6)
    return PeerStore(random.Random(1), **kw)


# -- BEP 33 bloom filter ------------------------------------------------------------------

BEP33_FILTER = bytes.fromhex(
    """
    F6C3F5EA A07FFD91 BDE89F77 7F26FB2B FF37BDB8 FB2BBAA2 FD3DDDE7 BACFFF75 EE7CCBAE
    FE5EEDB1 FBFAFF67 F6ABFF5E 43DDBCA3 FD9B9FFD F4FFD3E9 DFF12D1B DF59DB53 DBE9FA5B
    7FF3B8FD FCDE1AFB 8BEDD7BE 2F3EE71E BBBFE93B CDEEFE14 8246C2BC 5DBFF7E7 EFDCF24F
    D8DC7ADF FD8FFFDF DDFFF7A4 BBEEDF5C B95CE81F C7FCFF1F F4FFFFDF E5F7FDCB B7FD79B3
    FA1FC77B FE07FFF9 05B7B7FF C7FEFEFF E0B8370B B0CD3F5B 7F2BD93F EB4386CF DD6F7FD5
    BFAF2E9E BFFFFEEC D67ADBF7 C67F17EF D5D75EBA 6FFEBA7F FF47A91E B1BFBB53 E8ABFB57
    62ABE8FF 237279BF EFBFEEF5 FFC5FEBF DFE5ADFF ADFEE1FB 737FFFFB FD9F6AEF FEEE76B6
    FD8F72EF
    """.replace(" ", "").replace("\n", "")
)


def _bep33_ips() -> list[str]:
    v4 = [str(ipaddress.IPv4Address("192.0.2.0") + i) for i in range(256)]
    v6 = [str(ipaddress.IPv6Address("2001:db8::") + i) for i in range(0x3E8)]
    return v4 + v6


def test_bep33_test_vector() -> None:
    ips = _bep33_ips()
    assert len(ips) == 1256
    bloom = scrape_bloom(ips)
    assert len(bloom) == BLOOM_BYTES == len(BEP33_FILTER)
    assert bloom == BEP33_FILTER
    assert BLOOM_BYTES * 8 - int.from_bytes(bloom, "big").bit_count() == 619
    est = bloom_estimate(bloom)
    assert int(est * 10_000) == 12_249_308  # the BEP prints 1224.9308 (truncated)


def test_bep33_vector_through_the_store() -> None:
    ps = store(max_peers_per_infohash=2000)
    for i, ip in enumerate(_bep33_ips()):
        assert ps.announce(IH, (ip, 1000 + i), 0.0, seed=bool(i % 2))
    seeds, peers = ps.scrape(IH, 1.0) or (b"", b"")
    assert bloom_union([seeds, peers]) == BEP33_FILTER
    assert ps.counts(IH, 1.0) == (628, 628)
    assert ps.scrape(IH2, 1.0) is None


def test_bloom_insert_ignores_port_and_accepts_packed() -> None:
    a = bytearray(BLOOM_BYTES)
    bloom_insert(a, "192.0.2.1")
    assert bytes(a) == scrape_bloom([("192.0.2.1", 6881)])
    assert bytes(a) == scrape_bloom([bytes([192, 0, 2, 1])])
    assert sum(bin(b).count("1") for b in a) in (1, 2)
    with pytest.raises(InvalidArgument):
        bloom_insert(a, "nope")


def test_bloom_estimate_edges() -> None:
    assert bloom_estimate(bytes(BLOOM_BYTES)) == 0.0
    assert bloom_estimate(b"\xff" * BLOOM_BYTES) == math.inf
    one = scrape_bloom(["198.51.100.1"])
    assert 0.5 < bloom_estimate(one) < 1.5
    with pytest.raises(DecodeError):
        bloom_estimate(bytes(255))
    with pytest.raises(DecodeError):
        bloom_union([bytes(BLOOM_BYTES), bytes(3)])


def test_bloom_estimate_tracks_size() -> None:
    rng = random.Random(4)
    for n in (10, 100, 1000, 4000):
        ips = {str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(n)}
        est = bloom_estimate(scrape_bloom(ips))
        assert abs(est - len(ips)) < 0.1 * len(ips) + 3


# -- announce / get_peers -----------------------------------------------------------------


def test_announce_and_get() -> None:
    ps = store()
    assert ps.announce(IH, ("198.51.100.1", 6881), 0.0)
    assert ps.announce(IH, ("2001:db8::1", 51413), 0.0, seed=True)
    got = ps.get_peers(IH, 1.0)
    assert sorted(got) == [("198.51.100.1", 6881), ("2001:db8::1", 51413)]
    assert ps.get_peers(IH2, 1.0) == []
    assert len(ps) == 1 and ps.peer_count() == 2
    assert IH in ps and IH2 not in ps


def test_values_are_compact_and_family_filtered() -> None:
    ps = store()
    ps.announce(IH, ("198.51.100.1", 6881), 0.0)
    ps.announce(IH, ("2001:db8::1", 51413), 0.0)
    assert ps.get_values(IH, 0.0, family=4) == [encode_peer(("198.51.100.1", 6881))]
    assert ps.get_values(IH, 0.0, family=6) == [encode_peer(("2001:db8::1", 51413))]
    assert [decode_peer(v) for v in ps.get_values(IH, 0.0, family=4)] == [("198.51.100.1", 6881)]
    with pytest.raises(InvalidArgument):
        ps.get_values(IH, 0.0, family=5)


def test_one_entry_per_ip_updates_port_and_seed() -> None:
    ps = store()
    ps.announce(IH, ("198.51.100.1", 1111), 0.0)
    ps.announce(IH, ("198.51.100.1", 2222), 5.0, seed=True)
    assert ps.get_peers(IH, 6.0) == [("198.51.100.1", 2222)]
    assert ps.peer_count() == 1
    assert ps.counts(IH, 6.0) == (1, 0)
    assert ps.get_peers(IH, 6.0, noseed=True) == []
    ps.announce(IH, ("::ffff:198.51.100.1", 3333), 7.0)  # dual-stack form: same IP
    assert ps.get_peers(IH, 8.0) == [("198.51.100.1", 3333)]
    assert ps.counts(IH, 8.0) == (0, 1)


def test_expiry_and_refresh() -> None:
    ps = store(peer_ttl=1800.0)
    ps.announce(IH, ("198.51.100.1", 1), 0.0)
    ps.announce(IH, ("198.51.100.2", 2), 100.0)
    assert len(ps.get_peers(IH, 1799.9)) == 2
    ps.announce(IH, ("198.51.100.2", 2), 1799.9)  # refresh: now expires at 3599
    assert ps.get_peers(IH, 1800.0) == [("198.51.100.2", 2)]
    assert ps.get_peers(IH, 3598.9) == [("198.51.100.2", 2)]
    assert ps.get_peers(IH, 3599.0) == []
    assert len(ps) == 0 and ps.peer_count() == 0


def test_expire_sweeps_everything_due() -> None:
    ps = store(peer_ttl=100.0)
    for i in range(50):
        ih = i.to_bytes(20, "big")
        for j in range(10):
            ps.announce(ih, (f"198.51.{i}.{j}", 1000 + j), float(i))
    assert len(ps) == 50 and ps.peer_count() == 500
    assert ps.expire(50.0) == 0
    assert ps.expire(110.0) == 110  # info-hashes 0..10 were announced at t <= 10
    assert len(ps) == 39 and ps.peer_count() == 390
    assert ps.expire(1000.0) == 390
    assert len(ps) == 0 and ps.infohashes() == []


def test_clock_going_backwards_is_clamped() -> None:
    ps = store(peer_ttl=100.0)
    ps.announce(IH, ("198.51.100.1", 1), 50.0)
    ps.announce(IH, ("198.51.100.2", 2), 10.0)  # earlier now: treated as 50
    assert len(ps.get_peers(IH, 149.0)) == 2
    assert ps.get_peers(IH, 150.0) == []


def test_limits_and_can_accept() -> None:
    ps = store(max_infohashes=2, max_peers_per_infohash=3, peer_ttl=100.0)
    assert ps.can_accept(IH)
    for i in range(3):
        assert ps.announce(IH, (f"198.51.100.{i}", 1), 0.0)
    assert not ps.can_accept(IH)
    assert not ps.announce(IH, ("198.51.100.9", 1), 0.0)
    assert not ps.announce(IH, ("2001:db8::9", 1), 0.0)  # the cap covers both families
    assert ps.announce(IH, ("198.51.100.0", 2), 1.0)  # a re-announce always succeeds
    assert ps.peer_count() == 3
    assert ps.announce(IH2, ("2001:db8::1", 1), 0.0)
    assert not ps.can_accept(b"\x07" * 20)
    assert not ps.announce(b"\x07" * 20, ("198.51.100.1", 1), 0.0)
    assert len(ps) == 2
    # Once entries expire there is room again.
    assert ps.can_accept(IH, now=101.0)
    assert ps.can_accept(b"\x07" * 20, now=101.0)
    assert ps.announce(b"\x07" * 20, ("198.51.100.1", 1), 102.0)


def test_announce_rejects_bad_arguments() -> None:
    ps = store()
    with pytest.raises(InvalidArgument):
        ps.announce(b"short", ("198.51.100.1", 1), 0.0)
    with pytest.raises(InvalidArgument):
        ps.announce(IH, ("198.51.100.1", 0), 0.0)
    with pytest.raises(InvalidArgument):
        ps.announce(IH, ("198.51.100.1", 65536), 0.0)
    with pytest.raises(InvalidArgument):
        ps.announce(IH, ("not-an-ip", 1), 0.0)
    assert len(ps) == 0


def test_unaligned_ip_match_is_not_mistaken() -> None:
    # Records are ip | port | stamp. "1.10.0.0" (01 0a 00 00) occurs at offset 3 of the
    # first record (ip ends in 01, port 0a00, stamp starts 00): a naive find() would
    # take it for a record and the refresh would corrupt the array.
    ps = store()
    ps.announce(IH, ("10.0.0.1", 0x0A00), 0.0)  # record: 0a000001 0a00 <stamp>
    ps.announce(IH, ("1.10.0.0", 7), 0.0)  # its bytes 01 0a 00 00 occur at offset 3
    ps.announce(IH, ("1.10.0.0", 8), 0.0)
    assert sorted(ps.get_peers(IH, 0.0)) == [("1.10.0.0", 8), ("10.0.0.1", 0x0A00)]


def test_random_subset_and_byte_budget() -> None:
    ps = store(max_peers_per_infohash=1000)
    for i in range(300):
        ps.announce(IH, (str(ipaddress.IPv4Address("203.0.113.0") + i * 7), 1), 0.0)
    a = ps.get_values(IH, 0.0, rng=random.Random(1))
    b = ps.get_values(IH, 0.0, rng=random.Random(2))
    assert len(a) == len(b) == 50
    assert len(set(a)) == 50 and set(a) != set(b)
    assert len(ps.get_values(IH, 0.0, 10)) == 10
    assert len(ps.get_values(IH, 0.0, 1000, max_bytes=80)) == 10
    assert ps.get_values(IH, 0.0, 0) == []
    seen: set[bytes] = set()
    rng = random.Random(3)
    for _ in range(100):
        seen.update(ps.get_values(IH, 0.0, rng=rng))
    assert len(seen) > 250  # every peer gets its turn


def test_ipv6_values_fit_the_budget() -> None:
    ps = store()
    for i in range(100):
        ps.announce(IH, (f"2001:db8::{i + 1:x}", 1), 0.0)
    vals = ps.get_values(IH, 0.0)
    assert len(vals) == 19 and all(len(v) == 18 for v in vals)
    assert sum(len(v) + 3 for v in vals) <= 400


def test_noseed() -> None:
    ps = store()
    for i in range(40):
        ps.announce(IH, (f"198.51.100.{i}", 1), 0.0, seed=i < 30)
    assert len(ps.get_peers(IH, 0.0)) == 40
    leechers = ps.get_peers(IH, 0.0, noseed=True)
    assert sorted(leechers) == sorted((f"198.51.100.{i}", 1) for i in range(30, 40))
    assert len(ps.get_peers(IH, 0.0, 5, noseed=True)) == 5
    assert ps.counts(IH, 0.0) == (30, 10)


def test_sample_infohashes() -> None:
    ps = store()
    hashes = [random.Random(i).randbytes(20) for i in range(100)]
    for i, ih in enumerate(hashes):
        ps.announce(ih, ("198.51.100.1" if i % 2 else "2001:db8::1", 1), 0.0)
    assert sorted(ps.infohashes()) == sorted(hashes)
    s = ps.sample(random.Random(9))
    assert len(s) == 20 and len(set(s)) == 20 and set(s) <= set(hashes)
    assert ps.sample(random.Random(9)) == s  # deterministic for a seeded rng
    assert sorted(ps.sample(random.Random(9), 500)) == sorted(hashes)
    assert store().sample(random.Random(1)) == []
    # An info-hash with peers of both families is listed and sampled once.
    ps.announce(hashes[0], ("198.51.100.1", 1), 0.0)
    assert len(ps.infohashes()) == 100 and len(ps) == 100


# -- persistence --------------------------------------------------------------------------


def test_dump_load_round_trip() -> None:
    ps = store(peer_ttl=1800.0)
    ps.announce(IH, ("198.51.100.1", 1), 0.0, seed=True)
    ps.announce(IH, ("2001:db8::1", 2), 100.0)
    ps.announce(IH2, ("198.51.100.2", 3), 200.0)
    dump = json.loads(json.dumps(ps.dump(300.0)))
    assert sorted(map(tuple, dump)) == [
        (IH.hex(), "198.51.100.1", 1, True, 1500.0),
        (IH.hex(), "2001:db8::1", 2, False, 1600.0),
        (IH2.hex(), "198.51.100.2", 3, False, 1700.0),
    ]
    assert ps.snapshot(300.0) == ps.dump(300.0)
    # A restart on a different clock: times are relative.
    restored = store(peer_ttl=1800.0)
    assert restored.load(dump, 5000.0) == 3
    assert sorted(restored.get_peers(IH, 5000.0)) == [("198.51.100.1", 1), ("2001:db8::1", 2)]
    assert restored.counts(IH, 5000.0) == (1, 1)
    assert restored.get_peers(IH, 6500.0) == [("2001:db8::1", 2)]
    assert restored.get_peers(IH2, 6699.0) == [("198.51.100.2", 3)]
    assert restored.get_peers(IH2, 6700.0) == []


def test_load_skips_garbage_and_caps_ttl() -> None:
    ps = store(peer_ttl=100.0, max_peers_per_infohash=2)
    entries: list[object] = [
        [IH.hex(), "198.51.100.1", 1, False, 1e9],  # capped to the TTL
        [IH.hex(), "198.51.100.2", 1, True, 0],  # expired
        [IH.hex(), "198.51.100.3", 0, False, 10],  # bad port
        ["zz", "198.51.100.4", 1, False, 10],  # bad hex
        [IH.hex()[:-2], "198.51.100.5", 1, False, 10],  # short info-hash
        [IH.hex(), "nope", 1, False, 10],  # bad IP
        [IH.hex(), 5, 1, False, 10],  # IP not text
        [IH.hex(), "198.51.100.6", "1", False, 10],  # port not int
        [IH.hex(), "198.51.100.7", 1, False, float("nan")],
        [IH.hex(), "198.51.100.8"],  # too short
        "not a list at all",
        [IH.hex(), "198.51.100.9", 1, False, 50],
        [IH.hex(), "198.51.100.10", 1, False, 50],  # over the per-hash cap
    ]
    assert ps.load(entries, 0.0) == 2  # type: ignore[arg-type]
    assert sorted(ps.get_peers(IH, 49.0)) == [("198.51.100.1", 1), ("198.51.100.9", 1)]
    assert ps.get_peers(IH, 50.0) == [("198.51.100.1", 1)]
    assert ps.get_peers(IH, 100.0) == []


def test_load_merges_in_expiry_order() -> None:
    ps = store(peer_ttl=100.0)
    ps.announce(IH, ("198.51.100.1", 1), 0.0)  # expires at 100
    ps.load([[IH.hex(), "198.51.100.2", 2, False, 30]], 0.0)  # expires at 30
    ps.load([[IH.hex(), "198.51.100.3", 3, False, 60]], 0.0)  # expires at 60
    assert len(ps.get_peers(IH, 29.0)) == 3
    assert sorted(ps.get_peers(IH, 30.0)) == [("198.51.100.1", 1), ("198.51.100.3", 3)]
    assert ps.get_peers(IH, 60.0) == [("198.51.100.1", 1)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # which info-hash
            st.integers(0, 15),  # which IP
            st.integers(1, 65535),
            st.booleans(),
            st.integers(0, 200).map(lambda q: q / 4),  # time step, exact in binary
        ),
        max_size=60,
    )
)
def test_matches_a_simple_model(ops: list[tuple[int, int, int, bool, float]]) -> None:
    ttl = 100.0
    ps = store(max_infohashes=3, max_peers_per_infohash=5, peer_ttl=ttl)
    model: dict[int, dict[str, tuple[int, bool, float]]] = {}
    # Two sources: 198.51.100/24 and 2001:db8::/64. Each info-hash is owned by the source
    # that created it; a full store evicts for a source owning fewer than the biggest
    # owner minus one (here: when the other source owns all three).
    owner: dict[int, bool] = {}  # info-hash -> created by the IPv6 source
    now = 0.0
    for ih_n, ip_n, port, seed, step in ops:
        now += step
        ih = bytes([ih_n]) * 20
        ip = f"198.51.100.{ip_n}" if ip_n % 3 else f"2001:db8::{ip_n + 1:x}"
        # Model: drop expired entries (expiry rounded down to a whole second).
        for stored in model.values():
            for gone in [k for k, v in stored.items() if v[2] <= now]:
                del stored[gone]
        for empty in [k for k, v in model.items() if not v]:
            del model[empty]
            del owner[empty]
        peers = model.get(ih_n)
        v6 = ":" in ip
        victim = None
        if peers is not None and ip in peers:
            can = True
        elif peers is not None:
            can = len(peers) < 5
        else:
            can = len(model) < 3
            if not can and all(o != v6 for o in owner.values()):
                # evict the least popular (fewest families), the oldest on a tie
                victim = min(owner, key=lambda n: len({":" in i for i in model[n]}))
                can = True
        ps.expire(now)
        assert ps.announce(ih, (ip, port), now, seed) is can
        if victim is not None:
            del model[victim]
            del owner[victim]
        if can:
            model.setdefault(ih_n, {})[ip] = (port, seed, float(math.floor(now + ttl)))
            owner.setdefault(ih_n, v6)
        for n in range(4):
            want = sorted((i, p) for i, (p, _, _) in model.get(n, {}).items())
            got = sorted(ps.get_peers(bytes([n]) * 20, now, 100, max_bytes=10_000))
            assert got == [(str(ipaddress.ip_address(i)), p) for i, p in want]
            seeds = sum(s for _, s, _ in model.get(n, {}).values())
            assert ps.counts(bytes([n]) * 20, now) == (seeds, len(model.get(n, {})) - seeds)
        assert len(ps) == len(model)
        assert ps.peer_count() == sum(len(v) for v in model.values())


# -- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_hashes", "per_hash", "limit"),
    # Budget: 60 bytes per peer at 10**6 peers with one peer per info-hash (bench/memory.py:
    # 57). A single-peer info-hash is a 30-byte record and its source a 16-byte one, in
    # packed tables; here the text->packed IP cache (bounded, ~3 MB) weighs more.
    [(20, 1000, 15), (1000, 20, 25), (20000, 1, 100)],
)
def test_memory_per_peer(n_hashes: int, per_hash: int, limit: float) -> None:
    rng = random.Random(5)
    ips: list[str] = []
    while len(ips) < per_hash:
        ip = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        if classify(ip) == PUBLIC:
            ips.append(ip)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ps = PeerStore(
            rng,
            max_infohashes=n_hashes,
            max_peers_per_infohash=per_hash,
            max_peers_per_source=10**6,
        )
        for _ in range(n_hashes):
            ih = rng.randbytes(20)  # the key is a real cost: allocate it while tracing
            for j, ip in enumerate(ips):
                ps.announce(ih, (ip, 1024 + j), 0.0)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert ps.peer_count() == n_hashes * per_hash
    assert used / ps.peer_count() < limit


# -- abuse limits -------------------------------------------------------------------------


def ih_n(n: int) -> bytes:
    return n.to_bytes(20, "big")


def test_quota_per_source_total() -> None:
    ps = PeerStore(random.Random(1), max_peers_per_source=5)
    for n in range(5):
        assert ps.announce(ih_n(n), (f"45.1.1.{n}", 1), 0.0)
    # the whole /24 is at its quota: other addresses of it too
    assert not ps.announce(ih_n(9), ("45.1.1.200", 1), 0.0)
    assert not ps.can_accept(ih_n(9), 0.0, source="45.1.1.200")
    # a re-announce still succeeds; another /24 is unaffected
    assert ps.announce(ih_n(0), ("45.1.1.0", 2), 1.0)
    assert ps.can_accept(ih_n(0), 1.0, source="45.1.1.0")
    assert ps.announce(ih_n(9), ("45.1.2.1", 1), 0.0)
    # entries that expire give the quota back
    assert ps.announce(ih_n(9), ("45.1.1.200", 1), 3600.0)


def test_quota_per_source_per_infohash_and_ipv6_slash64() -> None:
    ps = PeerStore(random.Random(1), max_peers_per_source_per_infohash=3)
    for i in range(1000):  # 1,000 addresses of one /64: 3 entries
        ps.announce(IH, (f"2001:db8:1:2::{i + 1:x}", 1), 0.0)
    assert ps.peer_count() == 3
    assert ps.announce(IH, ("2001:db8:1:3::1", 1), 0.0)
    for i in range(10):
        ps.announce(IH, (f"45.6.7.{i}", 1), 0.0)
    assert ps.peer_count() == 7
    assert ps.announce(IH2, ("45.6.7.9", 1), 0.0)  # another info-hash: fine


def test_local_announcers_are_exempt_from_quotas() -> None:
    ps = PeerStore(random.Random(1), max_peers_per_source=2, max_peers_per_source_per_infohash=1)
    for i in range(20):
        assert ps.announce(IH, (f"10.0.0.{i}", 1), 0.0)
        assert ps.announce(ih_n(i), ("127.0.0.1", 1), 0.0)
    assert ps.peer_count() == 40


@pytest.mark.parametrize(
    "ip", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.9", "::", "ff02::1"]
)
def test_bogon_announces_are_not_stored(ip: str) -> None:
    ps = PeerStore(random.Random(1))
    assert not ps.announce(IH, (ip, 6881), 0.0)
    assert not ps.can_accept(IH, 0.0, source=ip)
    assert ps.peer_count() == 0
    assert ps.load([[IH.hex(), ip, 1, False, 60]], 0.0) == 0


def test_local_announces_follow_the_scope() -> None:
    for scope, stored in ((None, True), (True, True), (False, False)):
        ps = PeerStore(random.Random(1), local_network=scope)
        for ip in ("127.0.0.1", "192.168.1.2", "fd00::1"):
            assert ps.announce(IH, (ip, 6881), 0.0) is stored
            assert ps.can_accept(IH2, 0.0, source=ip) is stored
        assert ps.announce(IH, ("45.1.2.3", 6881), 0.0)


def test_full_store_evicts_the_biggest_owner_not_honest_newcomers() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=100)
    for n in range(100):  # one /24 fills the store
        assert ps.announce(ih_n(n), (f"45.1.1.{n % 50}", 1), 0.0)
    assert len(ps) == 100
    # the flooder gets nothing more: it owns everything already
    assert not ps.announce(ih_n(1000), ("45.1.1.7", 1), 1.0)
    assert not ps.can_accept(ih_n(1000), 1.0, source="45.1.1.7")
    # honest announcers from fresh addresses get in, by evicting the flooder's oldest
    for i in range(10):
        assert ps.can_accept(ih_n(2000 + i), 1.0, source=f"46.0.{i}.1")
        assert ps.announce(ih_n(2000 + i), (f"46.0.{i}.1", 1), 1.0)
    assert len(ps) == 100
    assert ih_n(0) not in ps and ih_n(10) in ps
    # a second flooding /24 evicts the first one's until they are even, never the honest
    stored = sum(ps.announce(ih_n(3000 + n), ("47.1.1.1", 1), 2.0) for n in range(200))
    assert stored == 45  # 45 + 45 + 10 honest
    assert all(ih_n(2000 + i) in ps for i in range(10))
    assert len(ps) == 100


def test_eviction_spares_popular_infohashes() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=4)
    for n in range(4):
        assert ps.announce(ih_n(n), ("45.1.1.1", 1), 0.0)
    # info-hash 0 (the oldest) is popular: announced from three /24s
    for i in range(2):
        ps.announce(ih_n(0), (f"46.{i}.0.1", 1), 0.0)
    assert ps.popularity(ih_n(0)) == 3 and ps.popularity(ih_n(1)) == 1
    assert ps.announce(ih_n(99), ("48.0.0.1", 1), 1.0)
    assert ih_n(0) in ps and ih_n(1) not in ps
    # the evicted info-hash's peers gave their quota back
    assert ps.peer_count() == 3 + 2 + 1


# -- single-peer table, paced expiry, export ----------------------------------------------


def _public_ip(n: int) -> str:
    return f"{45 + n % 150}.{(n >> 8) & 255}.{n & 255}.{1 + n % 200}"


def test_single_peer_infohashes_promote_and_keep_their_owner() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=3)
    assert ps.announce(ih_n(1), ("45.1.1.1", 1), 0.0)  # single-peer entries
    assert ps.announce(ih_n(2), ("45.1.1.2", 1), 0.0)
    assert ps.announce(ih_n(2), ("46.1.1.1", 2), 0.0)  # a second peer: general table
    assert ps.announce(ih_n(3), ("2001:db8::1", 3), 0.0)
    assert ps.popularity(ih_n(2)) == 2 and ps.popularity(ih_n(1)) == 1
    # the store is full; 47.x owns nothing, 45.1.1/24 owns two: its oldest goes
    assert ps.announce(ih_n(4), ("47.0.0.1", 1), 1.0)
    assert ih_n(1) not in ps and ih_n(2) in ps
    assert sorted(ps.get_peers(ih_n(2), 1.0)) == [("45.1.1.2", 1), ("46.1.1.1", 2)]
    assert ps.peer_count() == 4 and len(ps) == 3


def test_expire_some_is_bounded_and_a_sweep_finishes() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=10_000, peer_ttl=10.0)
    for n in range(5000):
        assert ps.announce(ih_n(n), (_public_ip(n), 1), 0.0)
    for n in range(0, 5000, 5):  # some general entries too
        assert ps.announce(ih_n(n), (_public_ip(n + 1), 2), 0.0)
    keep = ih_n(10**6)
    assert ps.announce(keep, ("44.1.1.1", 1), 15.0)
    total = 0
    calls = 0
    while ps.peer_count() > 1:
        dropped = ps.expire_some(20.0, 500)
        assert dropped <= 500 // 10 + 2 * 40  # the budget, plus at most one shard
        total += dropped
        calls += 1
        assert calls < 1000
    assert calls > 5 and total == 6000
    assert len(ps) == 1 and ps.get_peers(keep, 20.0) == [("44.1.1.1", 1)]
    assert ps.expire_some(20.0) == 0


def test_export_chunks_round_trip_through_load() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=1000)
    for n in range(300):
        ps.announce(ih_n(n), (_public_ip(n), 1000 + n), 0.0, seed=bool(n % 2))
    ps.announce(ih_n(1), ("2001:db8::5", 7), 0.0)
    ps.announce(ih_n(2), ("46.0.0.1", 8), 0.0)
    chunks = list(ps.export_chunks(100.0, peers_per_chunk=64))
    assert all(len(c) >= 64 for c in chunks[:-1])
    entries = [e for c in chunks for e in c]
    assert len(entries) == ps.peer_count() == 302
    assert all(left == 1700.0 for *_, left in entries)
    other = PeerStore(random.Random(2), max_infohashes=1000)
    assert other.load(entries, 100.0) == 302  # packed form
    assert sorted(other.dump(100.0)) == sorted(ps.dump(100.0))
    third = PeerStore(random.Random(2), max_infohashes=1000)
    assert third.load(ps.dump(100.0), 100.0) == 302  # text form
    assert third.counts(ih_n(3), 100.0) == (1, 0)


def test_sources_owning_one_single_are_found_again() -> None:
    """An owner of one single-peer info-hash does not list it; its second one finds it."""
    ps = PeerStore(random.Random(1), max_infohashes=200)
    for n in range(100):  # 100 owners, each one single-peer info-hash
        assert ps.announce(ih_n(n), (f"{45 + n}.0.0.1", 1), 0.0)
    for n in range(100):  # each a second one: now listed, the first oldest
        assert ps.announce(ih_n(1000 + n), (f"{45 + n}.0.0.2", 1), 0.0)
    # a newcomer evicts the biggest owner's (the first to own two) oldest: ih 0
    assert ps.announce(ih_n(5000), ("10.9.9.9", 1), 1.0)
    assert ih_n(0) not in ps and ih_n(1000) in ps and len(ps) == 200


def test_sample_of_a_big_store_draws_without_listing() -> None:
    ps = PeerStore(random.Random(1), max_infohashes=5000)
    singles = {ih_n(n) for n in range(3000)}
    for n in range(3000):
        ps.announce(ih_n(n), (_public_ip(n), 1), 0.0)
    general = {ih_n(10_000 + n) for n in range(300)}
    for n in range(300):
        ps.announce(ih_n(10_000 + n), (_public_ip(n), 1), 0.0)
        ps.announce(ih_n(10_000 + n), ("2001:db8::1", 1), 0.0)
    seen: set[bytes] = set()
    rng = random.Random(4)
    for _ in range(200):
        s = ps.sample(rng, 20)
        assert len(s) == 20 and len(set(s)) == 20 and set(s) <= singles | general
        seen.update(s)
    # both kinds drawn, about in proportion (300 of 3,300 are general)
    assert 0.04 < len(seen & general) / len(seen) < 0.2 and len(seen) > 2000
