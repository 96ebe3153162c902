"""The pieces NodeState is made of: operations and their terminal events, query handlers,
admission, the receive path's error accounting and the bootstrap backoff."""

from __future__ import annotations

import collections
import itertools
import logging
import random
from collections.abc import Callable

import pytest

from mldht.core import bep44
from mldht.core.admission import RateLimiter
from mldht.core.bencode import bdecode, bencode
from mldht.core.compact import Addr, NodeInfo
from mldht.core.config import NodeConfig
from mldht.core.context import Context
from mldht.core.events import (
    TERMINAL_EVENTS,
    AnnounceDone,
    Event,
    ExternalAddressChanged,
    GetDone,
    LookupDone,
    PeersFound,
    PingDone,
    PutDone,
    SampleDone,
    is_terminal,
)
from mldht.core.handlers import QueryHandlers
from mldht.core.item_store import ItemStore
from mldht.core.krpc import PingResponse, Query, decode_message
from mldht.core.maintenance import BACKOFF_MAX, BACKOFF_MIN
from mldht.core.node import NodeState
from mldht.core.operations import (
    BootstrapOp,
    FindNodeOp,
    GetOp,
    GetPeersOp,
    Operation,
    PingOp,
    SampleOp,
)
from mldht.core.peer_store import PeerStore
from mldht.core.routing import RoutingTable
from mldht.core.store_ops import AnnounceOp, ImmutablePutOp, MutablePutOp
from mldht.core.tokens import TokenManager
from mldht.sim import Simulator

CLIENT = ("127.0.0.2", 6881)

# ------------------------------------------------------------------ terminal events

EXPECTED: list[tuple[type[Operation], type[object]]] = [
    (PingOp, PingDone),
    (SampleOp, SampleDone),
    (FindNodeOp, LookupDone),
    (BootstrapOp, LookupDone),
    (GetPeersOp, LookupDone),
    (AnnounceOp, AnnounceDone),
    (GetOp, GetDone),
    (ImmutablePutOp, PutDone),
    (MutablePutOp, PutDone),
]


@pytest.mark.parametrize(("cls", "event_type"), EXPECTED, ids=lambda x: x.__name__)
def test_each_operation_names_its_terminal_event(
    cls: type[Operation], event_type: type[object]
) -> None:
    assert cls.terminal_event is event_type
    assert event_type in TERMINAL_EVENTS
    peers = PeersFound(1, b"i" * 20, ())
    assert not cls.terminal(peers)


def test_is_terminal() -> None:
    assert is_terminal(PingDone(1, CLIENT, None))
    assert is_terminal(LookupDone(1, b"t" * 20, ()))
    assert is_terminal(AnnounceDone(1, b"t" * 20, 0))
    assert is_terminal(GetDone(1, b"t" * 20, None))
    assert is_terminal(PutDone(1, b"t" * 20, 0))
    assert is_terminal(SampleDone(1, CLIENT, None))
    assert not is_terminal(PeersFound(1, b"t" * 20, (CLIENT,)))
    assert not is_terminal(ExternalAddressChanged("1.2.3.4", b"x" * 20))


def _network() -> tuple[Simulator, list[Addr]]:
    sim = Simulator(seed=5)
    seed = sim.add_node()
    nodes = [sim.add_node() for _ in range(30)]
    for n in nodes:
        sim.start(n, lambda st, now: st.bootstrap([seed], now))
    sim.run(until=30.0)
    return sim, nodes


def test_every_operation_ends_with_exactly_one_terminal_event_of_its_type() -> None:
    sim, nodes = _network()
    kp = bep44.KeyPair.from_seed(b"s" * 32)
    ih = b"I" * 20
    cases: list[tuple[Callable[[NodeState, float], int], type[object]]] = [
        (lambda st, now: st.ping(nodes[2], now), PingDone),
        (lambda st, now: st.sample_infohashes(nodes[3], b"t" * 20, now), SampleDone),
        (lambda st, now: st.find_node(b"f" * 20, now), LookupDone),
        (lambda st, now: st.bootstrap([nodes[4]], now), LookupDone),
        (lambda st, now: st.announce(ih, 6881, now), AnnounceDone),
        (lambda st, now: st.get_peers(ih, now), LookupDone),
        (lambda st, now: st.put_immutable(bencode(b"hello"), now), PutDone),
        (lambda st, now: st.get_item(bep44.immutable_target(bencode(b"hello")), now), GetDone),
        (lambda st, now: st.put_mutable(bencode(b"m"), now, keypair=kp), PutDone),
    ]
    me = nodes[0]
    for action, event_type in cases:
        ev, _ = sim.run_op(me, action)
        assert ev is not None and is_terminal(ev) and isinstance(ev, event_type)
        sim.run(until=sim.now + 130.0)  # anything after the terminal event would show
        mine = sim.events_for(me, ev.op)
        assert [is_terminal(e) for e in mine] == [False] * (len(mine) - 1) + [True]
        assert all(isinstance(e, PeersFound) for e in mine[:-1])
    assert sim.state(me).stats["internal_errors"] == 0


# ------------------------------------------------------------------ receive path


def _node(config: NodeConfig | None = None) -> NodeState:
    return NodeState(b"\x11" * 20, random.Random(7), 0.0, config or NodeConfig())


def _ping_query(t: bytes = b"tt") -> bytes:
    return bencode({b"a": {b"id": b"c" * 20}, b"q": b"ping", b"t": t, b"y": b"q"})


def test_garbage_is_dropped_not_an_internal_error() -> None:
    node = _node()
    node.receive_datagram(b"not bencode", CLIENT, 1.0)
    node.receive_datagram(bencode({b"t": b"xx", b"y": b"r", b"r": {b"id": b"c" * 20}}), CLIENT, 1.0)
    assert node.stats["dropped"] == 2
    assert node.stats["internal_errors"] == 0


def test_a_bug_in_a_handler_is_counted_and_logged_not_dropped(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node()

    def broken(*args: object) -> None:
        raise ZeroDivisionError("bug")

    # the querier's bookkeeping fails (after the query was counted), on either lane
    monkeypatch.setattr(RoutingTable, "queried", broken)
    with caplog.at_level(logging.ERROR, logger="mldht.core"):
        node.receive_datagram(_ping_query(), CLIENT, 1.0)  # must not raise
    assert node.stats["internal_errors"] == 1
    assert node.stats["dropped"] == 0
    assert node.stats["queries_in"] == 1
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "mldht.core" and record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


def test_a_bug_in_an_operation_is_counted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    node = _node()
    node.ping(CLIENT, 0.0)
    [(data, _)] = node.datagrams_to_send()
    msg = decode_message(data)
    assert isinstance(msg, Query)

    def broken(self: PingOp, *args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(PingOp, "on_response", broken)
    reply = {b"t": msg.t, b"y": b"r", b"r": {b"id": b"c" * 20}}
    node.receive_datagram(bencode(reply), CLIENT, 0.1)
    assert node.stats["internal_errors"] == 1
    assert node.stats["dropped"] == 0 and node.stats["responses_in"] == 1


# ------------------------------------------------------------------ handlers, admission


def test_handlers_work_without_a_node_state() -> None:
    rng = random.Random(1)
    stats = {"responses_out": 0, "errors_out": 0, "queries_out": 0}
    own = b"\x22" * 20
    ctx = Context(own, RoutingTable(own, rng=rng), NodeConfig(), rng, stats)
    handlers = QueryHandlers(
        ctx, PeerStore(rng), ItemStore(own_id=own), TokenManager(rng=rng, now=0.0)
    )
    msg = decode_message(_ping_query(b"ab"))
    assert isinstance(msg, Query)
    handlers.handle(msg, CLIENT, 1.0)
    [(data, addr)] = ctx.out
    assert addr == CLIENT and stats["responses_out"] == 1
    r = bdecode(data)
    assert r[b"t"] == b"ab" and r[b"r"][b"id"] == own
    assert PingResponse(own).to_dict() == r[b"r"]


def test_rate_limiter_burst_and_refill() -> None:
    lim = RateLimiter(10.0)
    assert sum(lim.allow("1.2.3.4", 0.0) for _ in range(30)) == 20  # burst: 2 s worth
    assert lim.dropped == 10
    assert lim.allow("5.6.7.8", 0.0)  # per IP
    assert not lim.allow("1.2.3.4", 0.05)
    assert lim.allow("1.2.3.4", 0.2)  # 0.2 s refills 2 tokens
    assert all(RateLimiter(0).allow("1.2.3.4", 0.0) for _ in range(1000))


# ------------------------------------------------------------------ bootstrap backoff


def _is_self_lookup(data: bytes, own: bytes) -> bool:
    m = bdecode(data)
    return bool(m.get(b"q") == b"find_node" and m[b"a"][b"target"] == own)


def test_bootstrap_backs_off_from_5_s_doubling_to_5_min_then_resets() -> None:
    """A router that never answers: each self-lookup fails after query_timeout (5 s);
    the next one starts 5, 10, 20, ... s later, never more than 300 s."""
    router = ("10.9.9.9", 6881)
    node = _node(NodeConfig(maintenance_interval=0.5))
    own = node.node_id
    starts: list[float] = []
    now = 0.0
    node.bootstrap([router], now)
    assert any(_is_self_lookup(d, own) for d, a in node.datagrams_to_send() if a == router)
    starts.append(now)
    while len(starts) < 10:
        deadline = node.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        node.handle_timer(now)
        if any(_is_self_lookup(d, own) for d, a in node.datagrams_to_send() if a == router):
            starts.append(now)
    # each attempt fails 5 s (query_timeout) after it starts; the wait after it doubles
    waits = [b - a - 5.0 for a, b in itertools.pairwise(starts)]
    expected = [min(BACKOFF_MAX, BACKOFF_MIN * 2**i) for i in range(len(waits))]
    assert waits == pytest.approx(expected, abs=0.5)  # maintenance runs every 0.5 s
    assert node.bootstrapper.backoff == BACKOFF_MAX
    # The table fills before the running attempt ends: no retry, the backoff resets.
    for i in range(node.config.k):
        node.routing.node_responded(NodeInfo(bytes([i + 1]) * 20, (f"10.0.0.{i + 1}", 1)), now)
    for _ in range(100):
        deadline = node.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        node.handle_timer(now)
        node.datagrams_to_send()
        if not node.bootstrapper.running:
            break
    assert node.bootstrapper.next_retry is None
    assert node.bootstrapper.backoff == BACKOFF_MIN


def test_events_of_silent_operations_are_not_emitted() -> None:
    rng = random.Random(7)
    own = b"\x11" * 20
    ctx = Context(own, RoutingTable(own, rng=rng), NodeConfig(), rng, {})
    FindNodeOp(ctx, b"t" * 20, silent=True).start(0.0)  # nobody to ask: ends at once
    events: list[Event] = list(ctx.events)
    assert events == []
    op = FindNodeOp(ctx, b"t" * 20).start(0.0)
    assert [type(e) for e in ctx.events] == [LookupDone]
    assert op not in ctx.running


def test_adaptive_soft_timeout_is_factor_times_median_rtt_within_bounds() -> None:
    config = NodeConfig(soft_timeout=1.0, soft_timeout_factor=1.5, soft_timeout_min=0.03)
    rng = random.Random(5)
    own = bytes(20)
    ctx = Context(own, RoutingTable(own, rng=rng), config, rng, {})
    assert ctx.soft_timeout() == 1.0  # fewer than 4 RTTs known: the configured bound
    ctx.rtts.extend([0.04, 0.05, 0.06, 0.07])
    assert ctx.soft_timeout() == pytest.approx(1.5 * 0.06)
    ctx.rtts.extend([0.001] * 8)  # loopback: the floor
    assert ctx.soft_timeout() == pytest.approx(0.03)
    ctx.rtts.extend([2.0] * 20)  # a slow path: the bound
    assert ctx.soft_timeout() == 1.0


@pytest.mark.parametrize("per_node", [True, False])
def test_lookup_query_to_a_node_with_a_measured_rtt_gets_its_own_soft_timeout(
    per_node: bool,
) -> None:
    config = NodeConfig(soft_timeout=1.0, soft_timeout_factor=1.5, node_rtt_timeout=per_node)
    rng = random.Random(6)
    own = bytes(20)
    table = RoutingTable(own, rng=rng)
    fast = NodeInfo(b"\x80" + bytes(19), ("10.0.0.1", 6881))
    table.node_responded(fast, 0.0, rtt=0.2)
    unmeasured = NodeInfo(b"\x81" + bytes(19), ("10.0.0.2", 6881))
    table.node_responded(unmeasured, 0.0)
    ctx = Context(own, table, config, rng, collections.Counter())
    op = FindNodeOp(ctx, b"\x80" + bytes(19), silent=True)
    op.start(0.0)
    # 1.5 x 0.2 s for the measured node; the others wait the lookup's own soft timeout
    assert op.lookup.next_deadline() == pytest.approx(0.3 if per_node else 1.0)
    op.handle_timer(0.31)
    assert op.lookup.resent_count == (1 if per_node else 0)
