"""BEP 42: CRC-32C, node id generation and checks, exemptions, external-IP voting."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.bep42 import (
    ExternalIPVoter,
    crc32c,
    generate_node_id,
    is_exempt,
    is_valid_node_id,
    node_id_crc,
)
from mldht.errors import InvalidArgument


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# -- CRC-32C ------------------------------------------------------------------------------


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_crc32c_rfc3720_vectors() -> None:
    # RFC 3720 appendix B.4 (iSCSI uses CRC-32C).
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"") == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_crc32c_matches_bitwise_reference(data: bytes) -> None:
    assert crc32c(data) == _crc32c_bitwise(data)


# -- BEP 42 vectors -----------------------------------------------------------------------

BEP42_VECTORS = [
    ("124.31.75.21", 1, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", 86, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", 22, "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", 65, "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", 90, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]

DERIVED_CRC = [
    ("124.31.75.21", 1, "200f0b15", 0x5FBFBDB2),
    ("21.75.31.124", 86, "c10b1f7c", 0x5A3CE9B0),
    ("65.23.51.170", 22, "c10733aa", 0xA5D4344A),
    ("84.124.73.14", 65, "200c090e", 0x1B03217B),
    ("43.213.53.83", 90, "43053553", 0xE56F6972),
    ("2001:db8::1", 0, "0001050800000000", 0x7C89C9BD),
    ("2001:db8:1234:5678::1", 5, "a001050812345678", 0x4EEFE00D),
]


@pytest.mark.parametrize(("ip", "rand", "example"), BEP42_VECTORS)
def test_generate_matches_bep42_vectors(ip: str, rand: int, example: str) -> None:
    ex = bytes.fromhex(example)
    for seed in range(8):
        nid = generate_node_id(ip, random.Random(seed), rand)
        assert len(nid) == 20
        assert nid[0] == ex[0]
        assert nid[1] == ex[1]
        assert nid[2] & 0xF8 == ex[2] & 0xF8
        assert nid[19] == ex[19] == rand
        assert is_valid_node_id(nid, ip)


@pytest.mark.parametrize(("ip", "rand", "example"), BEP42_VECTORS)
def test_bep42_example_ids_verify(ip: str, rand: int, example: str) -> None:
    nid = bytes.fromhex(example)
    assert is_valid_node_id(nid, ip, honor_exemptions=False)
    # The same id does not fit another of the vector IPs.
    for other, _, _ in BEP42_VECTORS:
        if other != ip:
            assert not is_valid_node_id(nid, other)


@pytest.mark.parametrize(("ip", "rand", "masked", "crc"), DERIVED_CRC)
def test_derived_crc_table(ip: str, rand: int, masked: str, crc: int) -> None:
    assert crc32c(bytes.fromhex(masked)) == crc
    assert node_id_crc(ip, rand) == crc
    # Only rand & 7 is hashed.
    assert node_id_crc(ip, rand | 0xF8) == crc
    assert node_id_crc(ipaddress.ip_address(ip).packed, rand) == crc


@pytest.mark.parametrize(("ip", "rand", "masked", "crc"), DERIVED_CRC[5:])
def test_ipv6_generate_uses_derived_crc(ip: str, rand: int, masked: str, crc: int) -> None:
    nid = generate_node_id(ip, random.Random(7), rand)
    assert nid[:2] == crc.to_bytes(4, "big")[:2]
    assert nid[2] & 0xF8 == (crc >> 8) & 0xF8
    assert nid[19] == rand
    assert is_valid_node_id(nid, ip)
    # IPv6 hashes only the high 64 bits: the interface id does not matter.
    assert is_valid_node_id(nid, ip.replace("::1", "::ffff:1"))


def test_free_bits_do_not_matter_but_fixed_bits_do() -> None:
    ip = "124.31.75.21"
    nid = bytearray(bytes.fromhex(BEP42_VECTORS[0][2]))
    for i in range(3, 19):
        alt = bytearray(nid)
        alt[i] ^= 0xFF
        assert is_valid_node_id(bytes(alt), ip)
    for bit in range(3):
        alt = bytearray(nid)
        alt[2] ^= 1 << bit
        assert is_valid_node_id(bytes(alt), ip)
    for i, bit in [(0, 0), (0, 7), (1, 3), (2, 3), (2, 7)]:
        alt = bytearray(nid)
        alt[i] ^= 1 << bit
        assert not is_valid_node_id(bytes(alt), ip)
    alt = bytearray(nid)
    alt[19] = 2  # different r = rand & 7
    assert not is_valid_node_id(bytes(alt), ip)
    alt[19] = 1 | 0x80  # same r: the high bits of the last byte are not hashed
    assert is_valid_node_id(bytes(alt), ip)


def test_generate_random_rand_and_bad_input() -> None:
    rng = random.Random(3)
    lasts = {generate_node_id("8.8.8.8", rng)[19] for _ in range(200)}
    assert len(lasts) > 100
    with pytest.raises(InvalidArgument):
        generate_node_id("not an ip", rng)
    with pytest.raises(InvalidArgument):
        generate_node_id("8.8.8.8", rng, 256)
    with pytest.raises(InvalidArgument):
        node_id_crc(b"\x01\x02\x03", 0)


def test_is_valid_node_id_never_raises_on_garbage() -> None:
    nid = bytes.fromhex(BEP42_VECTORS[0][2])
    assert not is_valid_node_id(nid[:19], "124.31.75.21")
    assert not is_valid_node_id(nid + b"x", "124.31.75.21")
    assert not is_valid_node_id(nid, "garbage")
    assert not is_valid_node_id(nid, "")


def test_ipv4_mapped_ipv6_is_checked_as_ipv4() -> None:
    nid = bytes.fromhex(BEP42_VECTORS[0][2])
    assert is_valid_node_id(nid, "::ffff:124.31.75.21")


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses(), st.integers(0, 2**32 - 1), st.integers(0, 255))
def test_generate_verify_round_trip(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, seed: int, rand: int
) -> None:
    ip = str(addr)
    nid = generate_node_id(ip, random.Random(seed), rand)
    assert nid[19] == rand
    assert is_valid_node_id(nid, ip, honor_exemptions=False)
    assert is_valid_node_id(nid, ip)


def test_random_ids_rarely_verify() -> None:
    rng = random.Random(11)
    hits = sum(is_valid_node_id(rng.randbytes(20), "81.2.3.4") for _ in range(2000))
    assert hits == 0  # chance per id is 2**-21


# -- exemptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.3.4",
        "127.0.0.1",
        "127.5.6.7",
        "100.64.0.1",
        "100.127.255.255",
        "::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "ff05::2",
        "ff12::3",
        "::ffff:10.1.2.3",
    ],
)
def test_exempt(ip: str) -> None:
    assert is_exempt(ip)
    # Any id passes for an exempt source unless exemptions are turned off.
    foreign = generate_node_id("8.8.8.8", random.Random(1))
    assert is_valid_node_id(foreign, ip)
    assert not is_valid_node_id(foreign, ip, honor_exemptions=False)


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "11.0.0.1",
        "172.15.255.255",
        "172.32.0.0",
        "192.169.0.1",
        "169.253.0.1",
        "100.63.255.255",
        "100.128.0.0",
        "128.0.0.1",
        "2001:db8::1",
        "2a00:1450::1",
        "fe00::1",
        "ff0e::1",
        "::ffff:8.8.8.8",
        "not an ip",
    ],
)
def test_not_exempt(ip: str) -> None:
    assert not is_exempt(ip)


# -- external IP voting -------------------------------------------------------------------


def test_one_voter_cannot_flip() -> None:
    v = ExternalIPVoter(min_votes=3)
    for i in range(10):
        assert v.add_vote("1.2.3.4", ("5.6.7.8", 6881), float(i)) is None
    assert v.current is None
    assert v.votes_for("5.6.7.8") == 1


def test_one_slash24_counts_once() -> None:
    v = ExternalIPVoter(min_votes=3)
    for i in range(1, 10):
        assert v.add_vote(f"1.2.3.{i}", "5.6.7.8", float(i)) is None
    assert v.votes_for("5.6.7.8") == 1
    v2 = ExternalIPVoter(min_votes=3, v4_prefix=32)
    results = [v2.add_vote(f"1.2.3.{i}", "5.6.7.8", float(i)) for i in range(1, 4)]
    assert results == [None, None, "5.6.7.8"]


def test_distinct_voters_decide_and_then_flip() -> None:
    v = ExternalIPVoter(min_votes=3)
    assert v.add_vote("1.0.0.1", ("5.6.7.8", 1), 0.0) is None
    assert v.add_vote("2.0.0.1", ("5.6.7.8", 2), 1.0) is None
    assert v.add_vote("3.0.0.1", ("5.6.7.8", 3), 2.0) == "5.6.7.8"
    assert v.current == "5.6.7.8"
    assert v.add_vote("4.0.0.1", "5.6.7.8", 3.0) is None  # no change, nothing returned
    # A new address needs min_votes and more votes than the current one.
    for i, voter in enumerate(["11.0.0.1", "12.0.0.1", "13.0.0.1", "14.0.0.1"]):
        assert v.add_vote(voter, "9.9.9.9", 10.0 + i) is None
    assert v.votes_for("9.9.9.9") == 4 and v.votes_for("5.6.7.8") == 4
    assert v.add_vote("15.0.0.1", "9.9.9.9", 20.0) == "9.9.9.9"
    assert v.current == "9.9.9.9"


def test_a_voter_changing_its_mind_moves_its_vote() -> None:
    v = ExternalIPVoter(min_votes=2, current="5.6.7.8")
    assert v.add_vote("1.0.0.1", "5.6.7.8", 0.0) is None
    assert v.add_vote("2.0.0.1", "5.6.7.8", 0.0) is None
    # After a real IP change the same voters report the new address.
    assert v.add_vote("1.0.0.1", "9.9.9.9", 5.0) is None
    assert v.votes_for("5.6.7.8") == 1
    assert v.add_vote("2.0.0.1", "9.9.9.9", 6.0) == "9.9.9.9"
    assert v.votes_for("5.6.7.8") == 0


def test_private_and_garbage_reports_are_ignored() -> None:
    v = ExternalIPVoter(min_votes=1)
    for voter, rep in [
        ("1.0.0.1", "192.168.1.2"),
        ("2.0.0.1", "10.0.0.1"),
        ("3.0.0.1", "127.0.0.1"),
        ("4.0.0.1", "0.0.0.0"),
        ("5.0.0.1", "fd00::1"),
        ("6.0.0.1", "garbage"),
        ("bad voter", "8.8.8.8"),
    ]:
        assert v.add_vote(voter, rep, 0.0) is None
    assert v.current is None
    assert v.add_vote("7.0.0.1", "::ffff:8.8.4.4", 0.0) == "8.8.4.4"
    lan = ExternalIPVoter(min_votes=1, ignore_exempt=False)
    assert lan.add_vote("127.0.0.2", ("127.0.0.1", 9), 0.0) == "127.0.0.1"


def test_votes_expire_after_window() -> None:
    v = ExternalIPVoter(min_votes=3, window=100.0)
    v.add_vote("1.0.0.1", "5.6.7.8", 0.0)
    v.add_vote("2.0.0.1", "5.6.7.8", 50.0)
    # The first vote is 100 s old by now: only two remain with this one.
    assert v.add_vote("3.0.0.1", "5.6.7.8", 100.0) is None
    assert v.votes_for("5.6.7.8") == 2
    assert v.add_vote("4.0.0.1", "5.6.7.8", 101.0) == "5.6.7.8"


def test_max_voters_bounds_memory() -> None:
    v = ExternalIPVoter(min_votes=3, max_voters=5)
    for i in range(100):
        v.add_vote(f"{i % 200 + 1}.0.0.1", f"8.8.{i}.1", float(i))
    assert sum(v.votes_for(f"8.8.{i}.1") for i in range(100)) == 5
    assert v.current is None


def test_ipv6_voters_grouped_by_64() -> None:
    v = ExternalIPVoter(min_votes=2)
    assert v.add_vote("2001:db8:1:2::1", "2001:db8:ff::5", 0.0) is None
    assert v.add_vote("2001:db8:1:2::2", "2001:db8:ff::5", 0.0) is None
    assert v.add_vote("2001:db8:1:3::1", "2001:db8:ff::5", 0.0) == "2001:db8:ff::5"


def test_voter_argument_checks() -> None:
    with pytest.raises(InvalidArgument):
        ExternalIPVoter(min_votes=0)
    with pytest.raises(InvalidArgument):
        ExternalIPVoter(min_votes=5, max_voters=4)
    with pytest.raises(InvalidArgument):
        ExternalIPVoter(current="nope")
    v = ExternalIPVoter()
    v.set_current("1.2.3.4")
    assert v.current == "1.2.3.4"
    v.set_current(None)
    assert v.current is None
