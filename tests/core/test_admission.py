"""Admission before decoding: budgets, junk costs more, bans, cheap checks, bounds."""

from __future__ import annotations

import json
import random
from pathlib import Path

from mldht.core.admission import (
    MALFORMED_COST,
    MAX_DATAGRAM,
    Admission,
    cheap_reject,
    source_key,
)
from mldht.core.bencode import bdecode, bencode
from mldht.core.node import NodeConfig, NodeState

CORPUS = Path(__file__).resolve().parents[1] / "data" / "krpc"


def test_every_real_datagram_passes_the_cheap_checks() -> None:
    files = json.loads((CORPUS / "index.json").read_text())["files"]
    for entry in files:
        assert cheap_reject((CORPUS / entry["path"]).read_bytes()) is None, entry["path"]


def test_cheap_checks_name_the_reason() -> None:
    assert cheap_reject(b"d1:ad2:id20:" + bytes(MAX_DATAGRAM)) == "oversize"
    assert cheap_reject(b"li1ee") == "not_dict"
    assert cheap_reject(b"") == "not_dict"
    assert cheap_reject(b"d" + b"l" * 1400) == "deep"
    assert cheap_reject(b"d1:a" + b"l1:x" * 300) == "deep"  # openers apart still count
    # A BEP 44 put whose value nests a few levels is fine, as are ids full of 'd' and 'l'.
    v = bencode([[[[b"x"]]]])
    put = {b"a": {b"id": b"dlld" * 5, b"token": b"llll", b"v": bdecode(v)}, b"q": b"put"}
    assert cheap_reject(bencode({**put, b"t": b"aa", b"y": b"q"})) is None


def test_budget_burst_refill_and_junk_costs_more() -> None:
    adm = Admission(10.0)  # burst 20
    assert all(adm.admit(("1.2.3.4", 1), 0.0) is None for _ in range(20))
    assert adm.admit(("1.2.3.4", 1), 0.0) == "rate"
    assert adm.admit(("1.2.3.4", 1), 0.1) is None  # one token back after 0.1 s
    assert adm.admit(("5.6.7.8", 1), 0.1) is None  # other sources have their own
    adm.admit(("9.9.9.9", 1), 0.0)
    adm.charge(("9.9.9.9", 1), MALFORMED_COST, 0.0)
    admitted = sum(adm.admit(("9.9.9.9", 1), 0.0) is None for _ in range(30))
    assert admitted == 20 - 1 - int(MALFORMED_COST)


def test_persistent_offender_is_banned_then_forgiven() -> None:
    adm = Admission(10.0, ban_threshold=50, ban_window=10.0, ban_time=300.0)
    verdicts = [adm.admit(("6.6.6.6", 1), 1.0) for _ in range(100)]
    assert verdicts[:20] == [None] * 20
    assert verdicts[20:71] == ["rate"] * 51 or "banned" in verdicts
    assert verdicts[-1] == "banned" and adm.is_banned(("6.6.6.6", 1), 2.0)
    assert adm.admit(("6.6.6.6", 1), 200.0) == "banned"
    assert adm.admit(("6.6.6.6", 1), 302.0) is None  # the ban ended: a fresh budget
    assert not adm.is_banned(("6.6.6.6", 1), 302.0)


def test_ipv6_budget_is_per_64_for_public_addresses() -> None:
    def key(ip: str, port: int = 1) -> object:
        return source_key((ip, port))

    assert key("2001:db8:1:2::5") == key("2001:db8:1:2:ffff::9")
    assert key("2001:db8:1:3::5") != key("2001:db8:1:2::5")
    assert key("45.1.2.3", 1) == key("45.1.2.3", 2) == "45.1.2.3"  # public: per address
    assert key("::ffff:45.1.2.3") == "45.1.2.3"  # a dual-stack socket's IPv4 peer
    # loopback and private addresses: per ip:port, as in the routing table
    assert key("127.0.0.1", 7001) != key("127.0.0.1", 7002)
    assert key("10.0.0.1", 5) == ("10.0.0.1", 5) and key("::1", 6) != key("::1", 7)
    adm = Admission(1.0)  # burst 2
    hosts = [f"2001:db8:1:2::{i:x}" for i in range(1, 5)]
    assert [adm.admit((h, 1), 0.0) for h in hosts] == [None, None, "rate", "rate"]


def test_memory_is_bounded_and_busy_sources_keep_their_budget() -> None:
    adm = Admission(10.0, max_sources=100)
    for _ in range(20):
        adm.admit(("7.7.7.7", 1), 0.0)  # the busy source spent its burst
    for i in range(1000):  # a flood of fresh addresses, with the busy one in between
        adm.admit((f"45.{i // 256}.{i % 256}.1", 1), 0.0)
        if i % 50 == 0:
            assert adm.admit(("7.7.7.7", 1), 0.0) == "rate"  # not reset by the churn
    assert len(adm) <= 100


def test_rate_zero_admits_everything() -> None:
    adm = Admission(0.0)
    assert all(adm.admit(("1.1.1.1", 1), 0.0) is None for _ in range(10_000))


def test_node_under_flood_drops_cheaply_and_answers_honest_pings() -> None:
    node = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig())
    rng = random.Random(2)
    flooder = ("45.1.2.3", 4000)
    junk = [b"l" * 1400, b"d1:ad2:id20:" + bytes(3000), b"x" * 50, b"d1:ai1e"]
    answered = 0
    for i in range(20_000):
        now = 1.0 + i * 1e-5
        node.receive_datagram(junk[i % len(junk)], (flooder[0], 4000 + i % 32), now)
        if i % 200 == 0:
            ping = {b"a": {b"id": rng.randbytes(20)}, b"q": b"ping", b"t": b"pp", b"y": b"q"}
            honest = (f"45.9.{i // 200 % 250}.1", 6881)
            node.receive_datagram(bencode({**ping}), honest, now)
            answered += any(a == honest for _, a in node.datagrams_to_send())
    stats = node.stats
    assert answered == 100
    assert stats["dropped_banned"] > 15_000  # banned within the first thousand or so
    assert stats["dropped_deep"] + stats["dropped_oversize"] + stats["dropped_not_dict"] > 0
    assert stats["internal_errors"] == 0


def _ping(t: bytes) -> bytes:
    """A ping from a read-only node (BEP 43): answered, and never pinged back."""
    return bencode({b"a": {b"id": b"p" * 20}, b"q": b"ping", b"ro": 1, b"t": t, b"y": b"q"})


def test_send_budget_keeps_answering_and_queries_less() -> None:
    """Over the budget, answers still go out (until it is spent) while our own queries
    stop at a quarter left; the budget refills with time."""
    node = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig(send_rate=2000.0))
    sent = 0
    for i in range(60):  # ~60 bytes per answer: 2,000 bytes last about 33 answers
        node.receive_datagram(_ping(b"%02d" % i), (f"45.0.{i}.1", 1), 1.0)
        sent += len(node.datagrams_to_send())
    assert 25 <= sent <= 40
    assert node.stats["send_budget_replies"] == 60 - node.stats["responses_out"]
    before = node.stats["queries_out"]
    node.ping(("45.1.1.1", 1), 1.0)  # less than a quarter left: our query is not sent
    assert node.stats["queries_out"] == before and node.stats["send_budget_queries"] == 1
    assert node.datagrams_to_send() == []
    node.ping(("45.1.1.1", 1), 3.0)  # refilled
    assert len(node.datagrams_to_send()) == 1
    unlimited = NodeState(b"\x11" * 20, random.Random(1), 0.0, NodeConfig(send_rate=0))
    for i in range(200):
        unlimited.receive_datagram(_ping(b"%03d" % i), (f"45.2.{i}.1", 1), 1.0)
    assert len(unlimited.datagrams_to_send()) == 200


def test_the_deepest_value_mldht_encodes_passes_and_one_more_level_does_not() -> None:
    """A BEP 44 put of a value nested as deep as encode_value allows reaches other
    mldht nodes' decoder; deeper is cut short before it (and could not be encoded)."""
    from mldht.core.bep44 import MAX_VALUE_DEPTH

    def put_of_depth(n: int) -> bytes:
        v: object = b"x"
        for _ in range(n):
            v = [v]
        a = {b"id": b"i" * 20, b"token": b"t", b"v": v}
        return bencode({b"a": a, b"q": b"put", b"t": b"aa", b"y": b"q"})

    assert cheap_reject(put_of_depth(MAX_VALUE_DEPTH)) is None
    assert cheap_reject(put_of_depth(MAX_VALUE_DEPTH + 1)) == "deep"
