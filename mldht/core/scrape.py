"""BEP 33 scrape from the asking side: a get_peers lookup with ``scrape=1`` whose answers'
filters are merged, and the swarm size estimated from them.

BEP 33 gives the filter, the union (bitwise OR) and the estimate; it says announces are
"scattered over a dozen or more nodes around the target key, with no single node having
a complete set", so the filters of **every** node that answered the lookup are merged,
as the8472's mldht (the BEP's author) does: the union of one IP's bits is idempotent, so
a node holding a stale or partial set never inflates the count, it only fills it in.
libtorrent (2.1) answers scrapes but never asks: its get_peers traversal sends no
``scrape`` key, so there is no libtorrent client behaviour to follow here.

A node that answers ``scrape=1`` with ``values`` and no filters (a node without BEP 33)
has its peers' IPs put in a local peer filter, minus those its seed filters already
hold (BEP 33, "legacy replies"). A filter that is not 256 bytes is ignored (hostile or
broken input). Our own store's filters count as one more answer (we may be one of the
storing nodes), as our own peers come first in a get_peers lookup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from .bep33 import BLOOM_BYTES, bloom_contains, bloom_estimate, bloom_insert
from .context import Context
from .events import LookupDone
from .krpc import GetPeers, GetPeersResponse, QueryBody, ResponseBody
from .lookup import Responded
from .operations import GetPeersOp

__all__ = [
    "SATURATED",
    "ScrapeAnswer",
    "ScrapeDone",
    "ScrapeOp",
    "ScrapeResult",
    "estimate_count",
    "merge_answers",
]

_EMPTY = bytes(BLOOM_BYTES)

SATURATED = round(bloom_estimate(b"\xfe" + b"\xff" * (BLOOM_BYTES - 1)))
"""The count reported for a full filter (no zero bit): the estimate at one zero bit,
7,806. A full filter means "this many or more" (BEP 33: it saturates near 8,000)."""


def estimate_count(bloom: bytes) -> int:
    """BEP 33's estimate of the distinct IPs in a filter, rounded to the nearest integer.

    An empty filter gives 0 (the bare formula gives 0.5); a full one, :data:`SATURATED`.
    The BEP's test vector (1,256 addresses, 619 zero bits) gives 1,225 (1,224.93).
    Raises :class:`~mldht.errors.DecodeError` unless the filter is 256 bytes.
    """
    estimate = bloom_estimate(bloom)
    if math.isinf(estimate):
        return SATURATED
    return math.floor(estimate + 0.5)


@dataclass(frozen=True, slots=True)
class ScrapeAnswer:
    """What one node's answer to ``get_peers`` with ``scrape=1`` gave: its two filters
    (None when absent or not 256 bytes) and the IPs of the ``values`` it sent."""

    bf_seeds: bytes | None = None
    bf_peers: bytes | None = None
    ips: tuple[str, ...] = ()

    @classmethod
    def of(cls, body: GetPeersResponse) -> ScrapeAnswer:
        """The scrape part of a get_peers answer (filters of a wrong size dropped)."""
        return cls(
            _filter(body.bf_seeds), _filter(body.bf_peers), tuple(ip for ip, _ in body.peers)
        )

    @property
    def useful(self) -> bool:
        """Whether it says anything about the swarm (filters or peers)."""
        return self.bf_seeds is not None or self.bf_peers is not None or bool(self.ips)


def _filter(value: bytes | None) -> bytes | None:
    return value if value is not None and len(value) == BLOOM_BYTES else None


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """A scrape's outcome: estimated ``seeds`` and ``peers`` (non-seeds), the merged
    filters they come from, and how many nodes contributed (``nodes``: answers with
    filters or peers, our own store included)."""

    info_hash: bytes
    seeds: int
    peers: int
    bf_seeds: bytes = _EMPTY
    bf_peers: bytes = _EMPTY
    nodes: int = 0

    @classmethod
    def of(cls, info_hash: bytes, bf_seeds: bytes, bf_peers: bytes, nodes: int) -> ScrapeResult:
        """The result of merged filters (counts estimated from them)."""
        return cls(
            info_hash,
            estimate_count(bf_seeds),
            estimate_count(bf_peers),
            bf_seeds,
            bf_peers,
            nodes,
        )

    @property
    def saturated(self) -> bool:
        """Whether a filter is full: its count is a lower bound (:data:`SATURATED`)."""
        return any(f == b"\xff" * BLOOM_BYTES for f in (self.bf_seeds, self.bf_peers))


def merge_answers(answers: Iterable[ScrapeAnswer]) -> tuple[bytes, bytes, int]:
    """``(seed filter, peer filter, contributing answers)`` of scrape answers.

    Filters are ORed together. The ``values`` of an answer without a peer filter go into
    a local peer filter, except IPs the merged seed filter already holds (BEP 33, legacy
    replies: such an IP is most likely a seed the node did not flag).
    """
    seeds = peers = 0
    direct: list[str] = []
    count = 0
    for answer in answers:
        if not answer.useful:
            continue
        count += 1
        if answer.bf_seeds is not None:
            seeds |= int.from_bytes(answer.bf_seeds, "little")
        if answer.bf_peers is not None:
            peers |= int.from_bytes(answer.bf_peers, "little")
        else:
            direct.extend(answer.ips)
    seed_filter = seeds.to_bytes(BLOOM_BYTES, "little")
    if direct:
        local = bytearray(BLOOM_BYTES)
        for ip in direct:
            if not bloom_contains(seed_filter, ip):
                bloom_insert(local, ip)
        peers |= int.from_bytes(local, "little")
    return seed_filter, peers.to_bytes(BLOOM_BYTES, "little"), count


def merge_results(first: ScrapeResult | None, other: ScrapeResult | None) -> ScrapeResult | None:
    """One result of two scrapes of the same info-hash (a dual-stack node scrapes in both
    families): filters ORed, contributing nodes summed."""
    if first is None or other is None:
        return first or other
    seeds = int.from_bytes(first.bf_seeds, "little") | int.from_bytes(other.bf_seeds, "little")
    peers = int.from_bytes(first.bf_peers, "little") | int.from_bytes(other.bf_peers, "little")
    return ScrapeResult.of(
        first.info_hash,
        seeds.to_bytes(BLOOM_BYTES, "little"),
        peers.to_bytes(BLOOM_BYTES, "little"),
        first.nodes + other.nodes,
    )


@dataclass(frozen=True, slots=True)
class ScrapeDone(LookupDone):
    """A scrape lookup ended (a :class:`~mldht.core.events.LookupDone`, since a scrape is
    a get_peers lookup): ``nodes`` are the closest that answered, ``result`` the merged
    filters and the estimated counts."""

    result: ScrapeResult | None = None


class ScrapeOp(GetPeersOp):
    """get_peers with ``scrape=1`` (BEP 33) towards ``info_hash``; ends with
    :class:`ScrapeDone`. ``local`` is our own store's answer (its filters), if any."""

    terminal_event: ClassVar[type[object]] = ScrapeDone

    def __init__(self, ctx: Context, info_hash: bytes, local: ScrapeAnswer | None = None) -> None:
        super().__init__(ctx, info_hash)
        self._own = local

    def started(self, now: float) -> None:
        """No PeersFound: a scrape counts peers, it does not list them."""

    def query_body(self) -> QueryBody:
        body = super().query_body()
        return replace(body, scrape=True) if isinstance(body, GetPeers) else body

    def absorb(self, body: ResponseBody) -> tuple[bytes | None, object]:
        if not isinstance(body, GetPeersResponse):
            return None, None
        return body.token, ScrapeAnswer.of(body)

    def lookup_finished(self, now: float, closest: list[Responded]) -> None:
        answers = [r.payload for r in self.lookup.all_responded()]
        if self._own is not None:
            answers.append(self._own)
        seeds, peers, count = merge_answers(a for a in answers if isinstance(a, ScrapeAnswer))
        result = ScrapeResult.of(self.target, seeds, peers, count)
        nodes = tuple(r.node for r in closest)
        queried = self.lookup.queried_count
        self.finish(ScrapeDone(self.op, self.target, nodes, (), queried, result))
