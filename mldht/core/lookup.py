"""Iterative Kademlia lookups as a pure state machine (BEP 5, "Routing Table", informative).

A :class:`Lookup` knows nothing about message types: it is the shared engine under
``find_node``, ``get_peers``, BEP 44 ``get`` / ``put`` and announces. The caller drives it::

    lookup = Lookup(target, own_id=my_id)
    lookup.add_candidates(routing_table.closest(target, 8))
    while not lookup.done:
        for node in lookup.next_queries(now):
            send the query to node            # later: on_response / on_failure
        wait until a reply, a hard timeout or lookup.next_deadline()
        lookup.handle_timer(now)

Following the8472/mldht, three concerns are kept apart:

* the *candidates*: unqueried nodes ordered by XOR distance to the target, each address
  queried at most once, bounded in number;
* the *closest set*: the nodes that answered, ordered by distance; its k-th entry is the
  bar every other node must beat to matter;
* the decision "send another query?": at most ``alpha`` queries are *active*. A query that
  outlives ``soft_timeout`` becomes *stalled*: it frees its slot so a slow or dead node
  cannot hold the lookup up, yet its late reply still counts. Only the caller's hard
  timeout (:meth:`Lookup.on_failure`) ends a stalled query. With ``retry``, a query past
  its soft deadline is first sent once more (a lost datagram is the likelier cause on a
  live node) and is *retried*: out of its slot, but still awaited for one more soft
  timeout before it stalls (with ``settle``: only until the closest answers have been
  stable that long). With ``far_frees_slot`` a query that ``k`` closer known nodes have
  *overtaken* frees its slot at once and is not resent: rounds do not wait in
  lock-step for the slowest answers of an earlier, farther round;
* IP diversity (``diverse``, libtorrent's restrict_search_ips, S/Kademlia): at most one
  node per public /24 (IPv6 /64) among the candidates, queries and closest set, so that
  one host or one small network answering with made-up ids on its own ports cannot fill
  the closest set (and receive every announce and put). Local-network addresses are
  exempt (one per ip:port, as every address is queried at most once).

Bootstrap routers (BEP 5 asks that they be used only as first contacts) are added with
:meth:`Lookup.add_router`: they are queried only when no real candidate is left, their
replies feed the candidates, and they never enter the closest set.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import InvalidArgument
from .compact import Addr, NodeInfo
from .ids import ID_LEN
from .netaddr import is_acceptable, local_allowed, source_key

__all__ = ["Lookup", "Responded"]


@dataclass(frozen=True, slots=True)
class Responded:
    """A node that answered the lookup's query.

    ``token`` is the write token it gave (``get_peers`` / ``get``), ``payload`` whatever
    the caller attached to the answer (peers, a BEP 44 item, ...), ``rtt`` the seconds
    between sending the query and receiving the answer.
    """

    node: NodeInfo
    token: bytes | None
    payload: object
    rtt: float


class _State(enum.Enum):
    CANDIDATE = enum.auto()
    ACTIVE = enum.auto()
    RETRIED = enum.auto()
    STALLED = enum.auto()
    RESPONDED = enum.auto()
    FAILED = enum.auto()


class _Entry:
    """What the lookup knows about one address."""

    __slots__ = ("deadline", "dist", "node", "sent_at", "source", "state", "subnet")

    def __init__(self, node: NodeInfo, dist: int | None, source: NodeInfo | None) -> None:
        self.node = node
        self.dist = dist  # None for a router: its id is unknown until it answers
        self.source = source
        self.state = _State.CANDIDATE
        self.sent_at = 0.0
        self.deadline = 0.0
        self.subnet: bytes | None = None  # the /24 (/64) it holds in the lookup


_ROUTER_ID = b""


class Lookup:
    """An iterative lookup towards ``target``: which nodes to query next, and when to stop.

    ``k`` is the size of the closest set (BEP 5: 8), ``alpha`` the number of queries
    active at once, ``soft_timeout`` the seconds after which a query stops occupying a
    slot, ``max_candidates`` the bound on unqueried candidates kept (the closest win),
    ``own_id`` our node id, never queried. ``wait_for_stalled``: whether a stalled query
    closer than the k-th answer keeps the lookup from finishing (exhaustive) or not
    (fast: a node slower than the soft timeout is taken for dead). ``local_network``:
    our own address scope (:mod:`mldht.core.netaddr`); candidates with bogon addresses
    are never kept, nor loopback / private ones when it is False. ``retry``: resend a
    query once at its soft deadline (see the module docstring). ``diverse``: at most one
    node per public /24 (IPv6 /64). ``use_k``: how many of the closest the caller will use
    (default ``k``; ``k`` may be wider to find them); a retried query holds the lookup
    only if it could enter those. ``retry_wait``: how long a resent query is awaited,
    in soft timeouts. ``timeout_of``: a node's own soft timeout in seconds, if known
    (e.g. from its measured RTT), else None; a query never gets longer than
    ``soft_timeout``, and a resent one is awaited ``retry_wait`` times its own.
    ``far_frees_slot``: a query *overtaken* by ``k`` closer known nodes (answered,
    active or candidates) holds no slot and is not resent (its answer still counts).
    ``group_cap``: with ``diverse``, at most this many answers of one public /16 (IPv6
    /32) count toward the closest set (0: no cap; see :meth:`storers`).
    ``settle``: a resent query stops holding the lookup once the ``use_k`` closest
    answers have not changed for ``settle`` soft timeouts (0: only its ``retry_wait``).
    """

    def __init__(
        self,
        target: bytes,
        *,
        k: int = 8,
        alpha: int = 4,
        soft_timeout: float = 1.0,
        max_candidates: int = 200,
        own_id: bytes | None = None,
        wait_for_stalled: bool = True,
        local_network: bool | None = None,
        retry: bool = False,
        diverse: bool = True,
        use_k: int | None = None,
        retry_wait: float = 1.0,
        timeout_of: Callable[[NodeInfo], float | None] | None = None,
        far_frees_slot: bool = False,
        group_cap: int = 0,
        settle: float = 0.0,
    ) -> None:
        if len(target) != ID_LEN:
            raise InvalidArgument(f"lookup target must be {ID_LEN} bytes, got {len(target)}")
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, got {k}")
        if alpha < 1:
            raise InvalidArgument(f"alpha must be at least 1, got {alpha}")
        if not soft_timeout > 0:
            raise InvalidArgument(f"soft_timeout must be positive, got {soft_timeout}")
        if max_candidates < k:
            raise InvalidArgument(f"max_candidates ({max_candidates}) must be at least k ({k})")
        self.target = target
        self.k = k
        self.alpha = alpha
        self.soft_timeout = soft_timeout
        self.max_candidates = max_candidates
        self.own_id = own_id
        self.wait_for_stalled = wait_for_stalled
        self.retry = retry
        self.retry_wait = retry_wait
        self.timeout_of = timeout_of
        self.far_frees_slot = far_frees_slot
        self.group_cap = group_cap if diverse else 0
        self.settle = settle
        self.use_k = k if use_k is None else min(k, max(1, use_k))
        self.diverse = diverse
        self._local_ok = local_allowed(local_network)
        self._target_int = int.from_bytes(target, "big")

        self._by_addr: dict[Addr, _Entry] = {}
        self._addr_of_id: dict[bytes, Addr] = {}
        # Unqueried candidates: sorted distances, and the entry for each distance. Ids are
        # unique, so distances to one target are unique too (XOR is a bijection).
        self._cand_dists: list[int] = []
        self._cand: dict[int, _Entry] = {}
        self._routers: list[_Entry] = []  # unqueried routers, in the order given
        # Queries in flight, by address; routers included.
        self._active: dict[Addr, _Entry] = {}
        self._stalled: dict[Addr, _Entry] = {}
        # Resent once, out of their slot, awaited until their second soft deadline.
        self._retried: dict[Addr, _Entry] = {}
        self._resend: list[_Entry] = []
        # IP diversity: the entry holding each public /24 (/64).
        self._subnets: dict[bytes, _Entry] = {}
        # Sorted distances of in-flight non-router queries (active, and all in flight).
        self._active_dists: list[int] = []
        self._inflight_dists: list[int] = []
        # The closest set: sorted distances of responded nodes and their answers.
        self._resp_dists: list[int] = []
        self._resp: dict[int, Responded] = {}
        # With ``group_cap``: the /16 (/32) of each answer that has one, and the sorted
        # distances of the answers that count toward the closest set (all of them
        # without a cap: the same list).
        self._groups: dict[int, bytes] = {}
        self._counted: list[int] = self._resp_dists
        # With ``settle``: when the use_k closest counted answers last changed, and the
        # latest time the caller gave us.
        self._changed_at = 0.0
        self._now = 0.0

        # Routers that join the closest set once they answer (a bootstrap node the user
        # named is an ordinary node whose id we learn only from its answer).
        self._members: set[Addr] = set()
        self._queried = 0
        self._responded = 0
        self._failed = 0
        self._resent = 0

    # ----------------------------------------------------------------- feeding nodes

    def add_candidates(self, nodes: Iterable[NodeInfo], source: NodeInfo | None = None) -> None:
        """Offer nodes to query, e.g. the routing table's closest or a reply's ``nodes``.

        A node is ignored when its id is not 20 bytes, is ``own_id``, when its address
        is a bogon (port 0, unspecified, multicast, broadcast, reserved; loopback and
        private ones too when ``local_network`` is False), or when its address
        or its id is already known to this lookup (each address is queried at most once,
        and an id seen at one address is not chased to another). Nodes that cannot beat
        the current closest set are dropped, and only the ``max_candidates`` closest
        unqueried candidates are kept. ``source`` is the node whose reply listed them
        (``None`` for the routing table); it is kept with each candidate for diagnostics.
        """
        bar = self._bar()
        local_ok = self._local_ok
        for node in nodes:
            if len(node.id) != ID_LEN or node.id == self.own_id:
                continue
            if not is_acceptable(node.addr, local_ok):
                continue
            if node.id in self._addr_of_id:
                continue
            dist = self._target_int ^ int.from_bytes(node.id, "big")
            if bar is not None and dist > bar:
                continue
            known = self._by_addr.get(node.addr)
            if known is not None:
                if known.dist is not None or known.state is not _State.CANDIDATE:
                    continue
                # An unqueried router address turns out to be a node with a known id:
                # query it as a real candidate instead.
                self._routers.remove(known)
            subnet = source_key(node.addr[0]) if self.diverse else None
            if subnet is not None:
                holder = self._subnets.get(subnet)
                if holder is not None:
                    # One node per /24 (/64): an unqueried farther holder gives way to a
                    # closer node; a queried one keeps its place.
                    if holder.state is not _State.CANDIDATE or holder.dist is None:
                        continue
                    if holder.dist < dist:
                        continue
                    self._drop_candidate(holder.dist)
            entry = _Entry(node, dist, source)
            if subnet is not None:
                entry.subnet = subnet
                self._subnets[subnet] = entry
            self._by_addr[node.addr] = entry
            self._addr_of_id[node.id] = node.addr
            bisect.insort(self._cand_dists, dist)
            self._cand[dist] = entry
        self._trim_candidates()

    def add_router(self, addr: Addr, *, member: bool = False) -> None:
        """Offer a bootstrap router (its id unknown): queried only as a last resort.

        A router is queried only when no real candidate is left to query and fewer than
        ``k`` real nodes have answered or are being asked; its answer feeds the
        candidates, but it never joins the closest set (BEP 5: routers are first contacts
        only, never routing-table entries).
        """
        if addr in self._by_addr:
            return
        entry = _Entry(NodeInfo(_ROUTER_ID, addr), None, None)
        self._by_addr[addr] = entry
        self._routers.append(entry)
        if member:
            self._members.add(addr)

    # --------------------------------------------------------------- sending queries

    def next_queries(self, now: float) -> list[NodeInfo]:
        """The nodes to query now, closest first; each is marked in flight until
        ``now + soft_timeout`` (its soft deadline).

        Queries past their soft deadline are first moved to stalled (as by
        :meth:`handle_timer`). At most ``alpha`` queries are active at once, and a
        candidate is chosen only if fewer than ``k`` answered or active nodes are closer
        to the target than it is, i.e. if it could still enter the closest set.
        """
        self.handle_timer(now)
        if self.done:
            return []
        resent: list[NodeInfo] = []
        if self._resend:
            resent = [e.node for e in self._resend]
            self._resend.clear()
        slots = self.alpha - self._slots_taken()
        chosen: list[_Entry] = []
        for dist in self._cand_dists:
            if len(chosen) >= slots:
                break
            # Chosen candidates are closer than ``dist`` and about to be active.
            closer = (
                bisect.bisect_left(self._counted, dist)
                + bisect.bisect_left(self._active_dists, dist)
                + len(chosen)
            )
            if closer >= self.k:
                break  # the count only grows with distance: nothing further can help
            chosen.append(self._cand[dist])
        for entry in chosen:
            assert entry.dist is not None
            del self._cand[entry.dist]
        if chosen:
            del self._cand_dists[: len(chosen)]
        # Routers only when no candidate is left and the real nodes answered or being
        # asked cannot fill the closest set by themselves (BEP 5, "Routing Table": first contacts).
        while (
            len(chosen) < slots
            and self._routers
            and not self._cand_dists
            and len(self._resp_dists) + len(self._active_dists) + self._real(chosen) < self.k
        ):
            chosen.append(self._routers.pop(0))
        for entry in chosen:
            self._send(entry, now)
        return resent + [entry.node for entry in chosen]

    def set_soft_timeout(self, soft_timeout: float) -> None:
        """Change the soft timeout (e.g. as RTTs are measured); queries in flight get the
        new one too, counted from when they were sent, when it is shorter."""
        if not soft_timeout > 0:
            raise InvalidArgument(f"soft_timeout must be positive, got {soft_timeout}")
        self.soft_timeout = soft_timeout
        for entry in self._active.values():
            entry.deadline = min(entry.deadline, entry.sent_at + soft_timeout)
        for entry in self._retried.values():
            wait = (1 + self.retry_wait) * soft_timeout
            entry.deadline = min(entry.deadline, entry.sent_at + wait)

    def next_deadline(self) -> float | None:
        """The earliest soft deadline of the active and retried queries, or ``None``."""
        if not self._active and not self._retried:
            return None
        first = min(entry.deadline for d in (self._active, self._retried) for entry in d.values())
        if self._retried and self.settle > 0:
            settled = self._changed_at + self.settle * self.soft_timeout
            if self._now < settled < first:
                return settled
        return first

    def handle_timer(self, now: float) -> None:
        """Move active queries whose soft deadline has passed to stalled, freeing slots
        (with ``retry``: to retried, to be sent again by :meth:`next_queries`; a
        retried query stalls at its second soft deadline)."""
        self._now = max(self._now, now)
        expired = [e for e in self._active.values() if e.deadline <= now]
        for entry in expired:
            del self._active[entry.node.addr]
            if entry.dist is not None:
                _remove_sorted(self._active_dists, entry.dist)
            if (
                self.retry
                and entry.dist is not None
                and bisect.bisect_left(self._counted, entry.dist) < self.use_k
                and not (self.far_frees_slot and self._overtaken(entry.dist))
            ):
                entry.state = _State.RETRIED
                entry.deadline = now + self.retry_wait * self._timeout(entry)
                self._retried[entry.node.addr] = entry
                self._resend.append(entry)
                self._queried += 1
                self._resent += 1
            else:
                entry.state = _State.STALLED
                self._stalled[entry.node.addr] = entry
        if self._retried:
            for entry in [e for e in self._retried.values() if e.deadline <= now]:
                del self._retried[entry.node.addr]
                entry.state = _State.STALLED
                self._stalled[entry.node.addr] = entry

    # ---------------------------------------------------------------- reply handling

    def on_response(
        self,
        node: NodeInfo,
        now: float,
        nodes: Iterable[NodeInfo] = (),
        token: bytes | None = None,
        payload: object = None,
    ) -> None:
        """``node`` answered (late answers to stalled queries count too).

        It joins the closest set with its ``token`` and ``payload``, and the ``nodes`` it
        returned become candidates. An answer from an address not in flight is ignored.
        An answer whose id differs from the id the node was queried under is counted as
        a failure: the node does not join the closest set (an id cannot be trusted to
        place itself near the target), though the nodes it returned are still used.
        A router's answer feeds the candidates only.
        """
        self._now = max(self._now, now)
        entry = self._finish(node.addr)
        if entry is None:
            return
        if entry.dist is None:
            # A router: now its id is known, do not chase it at another address.
            entry.state = _State.RESPONDED
            self._responded += 1
            if len(node.id) == ID_LEN:
                known = self._addr_of_id.setdefault(node.id, node.addr)
                if (
                    entry.node.addr in self._members
                    and known == node.addr
                    and node.id != self.own_id
                ):
                    entry.node = node
                    entry.dist = self._target_int ^ int.from_bytes(node.id, "big")
                    self._answered(entry, Responded(node, token, payload, now - entry.sent_at), now)
        elif node.id != entry.node.id:
            entry.state = _State.FAILED
            self._failed += 1
        else:
            entry.state = _State.RESPONDED
            self._responded += 1
            self._answered(entry, Responded(entry.node, token, payload, now - entry.sent_at), now)
        self.add_candidates(nodes, source=entry.node)

    def on_failure(self, node: NodeInfo, now: float) -> None:
        """The query to ``node`` failed for good: hard timeout or an error reply."""
        entry = self._finish(node.addr)
        if entry is None:
            return
        entry.state = _State.FAILED
        self._failed += 1

    # ------------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """Whether the lookup has finished.

        True when at least ``k`` nodes answered and no candidate or in-flight query
        (active or stalled) is closer to the target than the k-th closest answer, i.e.
        the k closest known non-failed nodes have all answered; or when no candidate nor
        router is left to query and nothing is in flight. In-flight routers are not
        waited for once the closest set is complete: they can never join it.

        With ``wait_for_stalled`` False, stalled queries (past their last soft deadline)
        never hold the lookup once a real node has answered, whether or not ``k`` did:
        only a lookup that has heard nothing at all waits for their hard timeout.
        """
        counted = self._counted
        if len(counted) >= self.k:
            bar = counted[self.k - 1]
            if self._cand_dists and self._cand_dists[0] < bar:
                return False
            # With wait_for_stalled=False, stalled queries (past the soft timeout) do not
            # hold the lookup up: with a fifth of contacts dead, waiting for their hard
            # timeout made the median simulated lookup 60 RTTs long (bench/lookup_sim.py).
            if self.wait_for_stalled:
                return not (self._inflight_dists and self._inflight_dists[0] < bar)
            if self._active_dists and self._active_dists[0] < bar:
                return False
            # A retried query (resent at its soft deadline) holds the lookup only if it
            # could enter the ``use_k`` closest the caller uses, and with ``settle`` only
            # until those have not changed for ``settle`` soft timeouts.
            if self.settle > 0 and self._now >= self._changed_at + self.settle * self.soft_timeout:
                return True
            bar = counted[self.use_k - 1]
            return not any(e.dist is not None and e.dist < bar for e in self._retried.values())
        if self._cand_dists or self._routers or self._active or self._retried:
            return False
        return not self._stalled or (not self.wait_for_stalled and bool(self._resp_dists))

    def closest(self, n: int | None = None) -> list[Responded]:
        """The answers of the ``n`` closest responded nodes (default ``k``), closest first.

        Routers are never among them. For announces and ``put``, the caller keeps those
        that returned a token (BEP 5, "Routing Table" step 3).
        """
        count = self.k if n is None else n
        return [self._resp[d] for d in self._resp_dists[:count]]

    def storers(self, n: int) -> list[Responded]:
        """The answers a store goes to, closest first: those that gave a token, up to the
        ``n``-th that counts toward the closest set, ``2 n`` at most. A node withholding its
        token (a full store, BEP 33) hands its place to the next, as libtorrent's
        find_data::done does; with ``group_cap`` the answers beyond a /16's (/32's) cap come
        too (a store to the ``n`` closest of distinct networks reaches them all, the crowded
        network's too)."""
        out: list[Responded] = []
        seen: dict[bytes, int] = {}
        limit = 2 * n  # a crowded /16 gets at most n stores beyond the counted ones
        for dist in self._resp_dists:
            answer = self._resp[dist]
            if answer.token is None:
                continue
            out.append(answer)
            if len(out) >= limit:
                break
            group = self._groups.get(dist)
            if group is not None:
                seen[group] = held = seen.get(group, 0) + 1
                if held > self.group_cap:
                    continue
            n -= 1
            if n <= 0:
                break
        return out

    def all_responded(self) -> list[Responded]:
        """Every answer received from a real node, closest first."""
        return [self._resp[d] for d in self._resp_dists]

    def is_router(self, addr: Addr) -> bool:
        """Whether ``addr`` was added with :meth:`add_router` (never a routing-table entry)."""
        entry = self._by_addr.get(addr)
        return entry is not None and entry.dist is None

    @property
    def queried_count(self) -> int:
        """Queries sent so far (routers included)."""
        return self._queried

    @property
    def responded_count(self) -> int:
        """Queries answered so far (routers included; answers with a wrong id excluded)."""
        return self._responded

    @property
    def failed_count(self) -> int:
        """Queries failed so far (hard timeouts, error replies, answers with a wrong id)."""
        return self._failed

    @property
    def resent_count(self) -> int:
        """Queries sent a second time at their soft deadline (``retry``)."""
        return self._resent

    @property
    def active_count(self) -> int:
        """Queries in flight and younger than their soft deadline (at most ``alpha``)."""
        return len(self._active)

    @property
    def stalled_count(self) -> int:
        """Queries in flight past their soft deadline."""
        return len(self._stalled)

    @property
    def candidate_count(self) -> int:
        """Unqueried candidates kept (routers excluded)."""
        return len(self._cand_dists)

    # --------------------------------------------------------------------- helpers

    def _bar(self) -> int | None:
        """Distance of the k-th closest answer: nothing farther can ever matter again."""
        if len(self._counted) >= self.k:
            return self._counted[self.k - 1]
        return None

    def _slots_taken(self) -> int:
        """Active queries holding a query slot: all of them, or with ``far_frees_slot``
        only those among the ``k`` closest nodes known and not failed (answered, active or
        candidate) and routers: a query that closer answers and candidates have overtaken
        stays in flight (its answer still counts) but no longer holds back a closer one."""
        if not self.far_frees_slot:
            return len(self._active)
        taken = len(self._active) - len(self._active_dists)  # routers
        resp, cand, k = self._counted, self._cand_dists, self.k
        for i, dist in enumerate(self._active_dists):
            if i + bisect.bisect_left(resp, dist) + bisect.bisect_left(cand, dist) >= k:
                break
            taken += 1
        return taken

    def _overtaken(self, dist: int) -> bool:
        """Whether ``k`` known nodes not failed (answered and counted, active, candidates)
        are closer than ``dist``."""
        closer = (
            bisect.bisect_left(self._counted, dist)
            + bisect.bisect_left(self._active_dists, dist)
            + bisect.bisect_left(self._cand_dists, dist)
        )
        return closer >= self.k

    @staticmethod
    def _real(entries: list[_Entry]) -> int:
        return sum(1 for e in entries if e.dist is not None)

    def _timeout(self, entry: _Entry) -> float:
        """The soft timeout of a query to this entry: its own if shorter (``timeout_of``)."""
        timeout = self.soft_timeout
        if self.timeout_of is not None and entry.dist is not None:
            own = self.timeout_of(entry.node)
            if own is not None and own < timeout:
                timeout = own
        return timeout

    def _answered(self, entry: _Entry, answer: Responded, now: float) -> None:
        """``entry`` (its distance known) answered: into the closest set."""
        dist = entry.dist
        assert dist is not None
        bisect.insort(self._resp_dists, dist)
        self._resp[dist] = answer
        if self.group_cap > 0:
            if entry.subnet is not None:
                # a /24 key is 3 bytes, a /64 key 8: the /16 is its first 2, the /32 4
                self._groups[dist] = entry.subnet[: 2 if len(entry.subnet) == 3 else 4]
            self._recount()
        counted = self._counted
        at = bisect.bisect_left(counted, dist)
        if at < self.use_k and at < len(counted) and counted[at] == dist:
            self._changed_at = now  # (an answer past its /16's cap changes nothing)
        self._prune_candidates()

    def _recount(self) -> None:
        """The answers that count: at most ``group_cap`` per /16 (/32), closest first."""
        seen: dict[bytes, int] = {}
        counted: list[int] = []
        cap = self.group_cap
        for dist in self._resp_dists:
            group = self._groups.get(dist)
            if group is not None:
                held = seen.get(group, 0)
                seen[group] = held + 1
                if held >= cap:
                    continue
            counted.append(dist)
        self._counted = counted

    def _send(self, entry: _Entry, now: float) -> None:
        entry.state = _State.ACTIVE
        entry.sent_at = now
        entry.deadline = now + self._timeout(entry)
        self._active[entry.node.addr] = entry
        if entry.dist is not None:
            bisect.insort(self._active_dists, entry.dist)
            bisect.insort(self._inflight_dists, entry.dist)
        self._queried += 1

    def _finish(self, addr: Addr) -> _Entry | None:
        """Take the query to ``addr`` out of flight; ``None`` if none is in flight."""
        entry = self._active.pop(addr, None)
        if entry is not None:
            if entry.dist is not None:
                _remove_sorted(self._active_dists, entry.dist)
        else:
            entry = self._retried.pop(addr, None) or self._stalled.pop(addr, None)
            if entry is None:
                return None
            if entry in self._resend:
                self._resend.remove(entry)
        if entry.dist is not None:
            _remove_sorted(self._inflight_dists, entry.dist)
        return entry

    def _forget(self, dist: int) -> None:
        entry = self._cand.pop(dist)
        del self._by_addr[entry.node.addr]
        del self._addr_of_id[entry.node.id]
        if entry.subnet is not None:
            del self._subnets[entry.subnet]

    def _drop_candidate(self, dist: int) -> None:
        self._forget(dist)
        _remove_sorted(self._cand_dists, dist)

    def _trim_candidates(self) -> None:
        # Bounded memory: keep only the closest max_candidates. A dropped node is
        # forgotten, so it may be offered again later (it was never queried).
        excess = len(self._cand_dists) - self.max_candidates
        if excess > 0:
            for dist in self._cand_dists[-excess:]:
                self._forget(dist)
            del self._cand_dists[-excess:]

    def _prune_candidates(self) -> None:
        # Answers only ever join the closest set, so the k-th distance only shrinks: a
        # candidate beyond it can never matter again.
        bar = self._bar()
        if bar is None:
            return
        keep = bisect.bisect_right(self._cand_dists, bar)
        for dist in self._cand_dists[keep:]:
            self._forget(dist)
        del self._cand_dists[keep:]


def _remove_sorted(values: list[int], value: int) -> None:
    i = bisect.bisect_left(values, value)
    if i < len(values) and values[i] == value:
        del values[i]
