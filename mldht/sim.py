"""A simulated DHT: many :class:`~mldht.core.node.NodeState` on an in-memory network.

Virtual time, seeded latency, loss and dead nodes: the same seed gives the same run.
Used by the tests and benchmarks, and by anyone who wants to study DHT behaviour::

    sim = Simulator(seed=1)
    seed_node = sim.add_node()
    nodes = [sim.add_node() for _ in range(200)]
    for n in nodes:
        sim.start(n, lambda st, now: st.bootstrap([seed_node], now))
    sim.run(until=60.0)
    done, elapsed = sim.run_op(nodes[0], lambda st, now: st.get_peers(infohash, now))
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .core.compact import Addr, NodeInfo
from .core.events import TERMINAL_EVENTS, Event, NodeEvent, is_terminal
from .core.ids import random_id
from .core.node import NodeConfig, NodeState
from .errors import InvalidArgument, MldhtError

__all__ = ["TERMINAL_EVENTS", "SimNode", "Simulator"]


@dataclass(eq=False)
class SimNode:
    addr: Addr
    state: NodeState | None  # None: a dead address (never answers)
    latency: float  # this node's delay, seconds: a round trip with b takes latency + b's
    events: list[Event]


class Simulator:
    """An in-memory network on a virtual clock.

    One definition of a round trip: a query out and its answer back. Each node draws a
    lognormal delay ``d`` (median ``median_rtt / 2``, sigma ``rtt_sigma``); a datagram
    from a to b takes ``(d_a + d_b) / 2``, so a round trip between a and b takes
    ``d_a + d_b``, whose median is about ``median_rtt`` (a little above: the sum of two
    lognormals; ``bench/lookup_sim.py`` reports the measured one). ``loss`` drops each
    datagram with that probability. ``public``: addresses are public-looking, one /24 per
    node (``11.x.y.1`` upwards), so that per-subnet rules (IP diversity) apply as on the
    internet; otherwise they are private (``10.x.y.z``). Everything random is drawn from
    ``random.Random(seed)``.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        median_rtt: float = 0.08,
        rtt_sigma: float = 0.5,
        loss: float = 0.0,
        config: NodeConfig | None = None,
        public: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.median_rtt = median_rtt
        self.rtt_sigma = rtt_sigma
        self.loss = loss
        self.public = public
        self.config = config or NodeConfig()
        self.nodes: dict[Addr, SimNode] = {}
        self._queue: list[tuple[float, int, int, bytes, Addr, Addr]] = []
        self._timers: list[tuple[float, int, Addr]] = []
        self._seq = 0
        self.delivered = 0
        self.dropped = 0
        self.on_event: Callable[[Addr, Event, float], None] | None = None
        """Called as ``on_event(addr, event, now)`` for every event a node emits (e.g. to
        time many concurrent operations); the event is also kept in ``SimNode.events``."""
        self.on_notice: Callable[[Addr, NodeEvent, float], None] | None = None
        """Called as ``on_notice(addr, event, now)`` for every node event (NodeAdded,
        PeerAnnounced, ...: :data:`~mldht.core.events.NodeEvent`); unless set, they are
        dropped."""

    # ------------------------------------------------------------------ topology

    def _next_addr(self) -> Addr:
        n = len(self.nodes) + 1
        if self.public:
            return (f"{11 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}.1", 6881)
        return (f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 6881)

    def add_node(
        self,
        *,
        addr: Addr | None = None,
        node_id: bytes | None = None,
        dead: bool = False,
        config: NodeConfig | None = None,
        state: NodeState | None = None,
    ) -> Addr:
        """Add a node (or a dead address) and return its address. ``state``: a node of
        one's own (e.g. a subclass that misbehaves) instead of a new NodeState."""
        addr = addr or self._next_addr()
        if addr in self.nodes:
            raise InvalidArgument(f"address in use: {addr}")
        latency = self.median_rtt / 2 * math.exp(self.rng.gauss(0.0, self.rtt_sigma))
        if state is None and not dead:
            node_rng = random.Random(self.rng.getrandbits(64))
            state = NodeState(
                node_id or random_id(node_rng), node_rng, self.now, config or self.config
            )
        self.nodes[addr] = SimNode(addr, state, latency, [])
        if state is not None:
            self._schedule_timer(addr)
        return addr

    def state(self, addr: Addr) -> NodeState:
        st = self.nodes[addr].state
        if st is None:
            raise InvalidArgument(f"{addr} is a dead address")
        return st

    def kill(self, addr: Addr) -> None:
        """Make a node silent from now on (it keeps its address)."""
        self.nodes[addr].state = None

    def populate(self, contacts: int = 40, dead_share: float = 0.0) -> None:
        """Fill every routing table directly (omniscient, no messages): each node learns
        ``contacts`` random nodes plus its closest ones, as a bootstrapped node would.

        ``dead_share`` of the entries learned may be dead addresses. For large networks,
        where bootstrapping by messages would dominate the run time.
        """
        live = [sn for sn in self.nodes.values() if sn.state is not None]
        dead = [sn for sn in self.nodes.values() if sn.state is None]
        dead_ids = {sn.addr: random_id(self.rng) for sn in dead}
        ordered = sorted(live, key=lambda sn: sn.state.node_id if sn.state else b"")
        index = {id(sn): i for i, sn in enumerate(ordered)}
        for sn in live:
            st = sn.state
            assert st is not None
            i = index[id(sn)]
            near = ordered[max(0, i - 8) : i] + ordered[i + 1 : i + 9]
            picks = near + self.rng.sample(live, min(contacts, len(live)))
            for other in picks:
                if other is sn or other.state is None:
                    continue
                st.routing.node_responded(NodeInfo(other.state.node_id, other.addr), self.now)
            if dead and dead_share > 0:
                for d in self.rng.sample(dead, min(len(dead), int(contacts * dead_share))):
                    st.routing.node_responded(NodeInfo(dead_ids[d.addr], d.addr), self.now)

    # ------------------------------------------------------------------- running

    def _schedule_timer(self, addr: Addr) -> None:
        st = self.nodes[addr].state
        if st is None:
            return
        d = st.next_deadline()
        if d is not None:
            self._seq += 1
            heapq.heappush(self._timers, (max(d, self.now), self._seq, addr))

    def _flush(self, addr: Addr) -> None:
        sn = self.nodes[addr]
        st = sn.state
        if st is None:
            return
        for data, dst in st.datagrams_to_send():
            if self.loss and self.rng.random() < self.loss:
                self.dropped += 1
                continue
            peer = self.nodes.get(dst)
            if peer is None:
                self.dropped += 1
                continue
            # one way: the mean of both ends' delays; a round trip a->b->a: la + lb
            delay = (sn.latency + peer.latency) / 2
            self._seq += 1
            heapq.heappush(self._queue, (self.now + delay, self._seq, 0, data, addr, dst))
        while (ev := st.next_event()) is not None:
            sn.events.append(ev)
            if self.on_event is not None:
                self.on_event(addr, ev, self.now)
        while (notice := st.next_notice()) is not None:
            if self.on_notice is not None:
                self.on_notice(addr, notice, self.now)
        self._schedule_timer(addr)

    def start(self, addr: Addr, action: Callable[[NodeState, float], int]) -> int:
        """Run ``action(state, now)`` on a node (e.g. start a lookup); returns its op id."""
        op = action(self.state(addr), self.now)
        self._flush(addr)
        return op

    def step(self) -> bool:
        """Process the earliest delivery or timer; False when nothing is left."""
        q, t = self._queue, self._timers
        if not q and not t:
            return False
        if q and (not t or q[0][0] <= t[0][0]):
            when, _, _, data, src, dst = heapq.heappop(q)
            self.now = max(self.now, when)
            sn = self.nodes[dst]
            if sn.state is None:
                self.dropped += 1
                return True
            self.delivered += 1
            sn.state.receive_datagram(data, src, self.now)
            self._flush(dst)
        else:
            when, _, addr = heapq.heappop(t)
            self.now = max(self.now, when)
            st = self.nodes[addr].state
            if st is None:
                return True
            d = st.next_deadline()
            if d is not None and d <= self.now:
                st.handle_timer(self.now)
                self._flush(addr)
        return True

    def run(
        self,
        *,
        until: float | None = None,
        stop: Callable[[], bool] | None = None,
        max_steps: int = 50_000_000,
    ) -> None:
        """Advance virtual time until ``until`` or until ``stop()`` is true (bounded)."""
        for _ in range(max_steps):
            if stop is not None and stop():
                return
            nxt = min(
                self._queue[0][0] if self._queue else math.inf,
                self._timers[0][0] if self._timers else math.inf,
            )
            if until is not None and nxt > until:
                self.now = max(self.now, until)
                return
            if not self.step():
                return
        raise MldhtError("simulation did not settle within max_steps")

    def run_op(
        self, addr: Addr, action: Callable[[NodeState, float], int], *, timeout: float = 120.0
    ) -> tuple[Event | None, float]:
        """Start an operation and run until its terminal event; returns it and the
        virtual seconds it took (None if it did not end within ``timeout``)."""
        sn = self.nodes[addr]
        start = self.now
        mark = len(sn.events)
        op = self.start(addr, action)
        found: list[Event] = []

        def done() -> bool:
            for ev in sn.events[mark:]:
                if is_terminal(ev) and ev.op == op:
                    found.append(ev)
                    return True
            return False

        self.run(until=start + timeout, stop=done)
        return (found[0] if found else None), self.now - start

    def events_for(self, addr: Addr, op: int) -> list[Event]:
        return [e for e in self.nodes[addr].events if getattr(e, "op", None) == op]
