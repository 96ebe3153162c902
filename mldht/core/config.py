"""NodeConfig: every tunable of a node, typed, with its default."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["NodeConfig"]


@dataclass
class NodeConfig:
    """Tunables of a node. Unknown names raise ``TypeError`` (dataclass constructor)."""

    k: int = 8
    """Bucket size and size of a lookup's closest set (BEP 5: 8)."""
    alpha: int = 8
    """Queries a lookup keeps active at once (8: the lookup's rounds overlap and the
    fastest answers lead; 16 is faster still but costs half as many queries again at
    10^5 nodes; bench/lookup_sim.py)."""
    query_timeout: float = 5.0
    """Seconds after which an unanswered query fails for good (hard timeout); the store
    phase of an announce / put also ends this long after the lookup's own deadline."""
    soft_timeout: float = 1.0
    """Seconds after which a lookup query stops occupying a slot (it becomes stalled; a
    late answer still counts). With ``adaptive_timeout`` this is the upper bound."""
    lookup_timeout: float = 60.0
    """Seconds after which a lookup ends with whatever it has found."""
    max_infohashes: int = 50_000
    """Info-hashes our peer store keeps (announce_peer from others)."""
    max_peers_per_infohash: int = 500
    """Peers kept per info-hash in our peer store."""
    max_items: int = 20_000
    """BEP 44 items our item store keeps."""
    max_item_bytes: int = 32 * 1024 * 1024
    """Total bytes of BEP 44 values our item store keeps."""
    sample_interval: int = 21600
    """BEP 51 ``interval`` we announce; the sample we answer with is reused this long."""
    read_only: bool = False
    """BEP 43: mark our queries ``ro=1`` and answer no queries."""
    version: bytes = b"MD\x00\x01"
    """The ``v`` key of every message we send (client id and version)."""
    ipv6: bool = False
    """Serve the IPv6 DHT (``nodes6``, 18-byte values) instead of the IPv4 one (BEP 32)."""
    max_values: int = 50
    """Peers returned in one get_peers answer at most."""
    rate_limit: float = 100.0
    """Datagrams per second accepted from one source (an IPv4 address, a public IPv6 /64)
    before any is decoded (token bucket, burst = 2 s worth; junk costs more, persistent
    offenders are banned for 5 minutes: :mod:`mldht.core.admission`); 0 or less: no
    limit."""
    send_rate: float = 2_000_000.0
    """Global send budget in bytes per second (burst = 1 s worth); answers may spend all
    of it, our own queries only the first three quarters. 0 or less: no limit."""
    maintenance_interval: float = 5.0
    """Seconds between maintenance rounds (pings of questionable nodes, bucket refresh,
    store expiry, bootstrap retry)."""
    adaptive_timeout: bool = True
    """Lookups use a soft timeout of a few times the median RTT measured (at most
    ``soft_timeout``) and do not wait for queries past it (the8472/mldht)."""
    lookup_k: int = 10
    """Answered nodes a lookup gathers before it ends (its closest set), at least ``k``
    (0: ``k``); the operation still uses the ``k`` closest. A wider set finds the true
    k closest more often (a node no answering node knew is the main miss)."""
    store_k: int = 10
    """Announces and puts go to this many of the closest nodes that gave a token (at
    least ``k``; at most ``lookup_k`` are known): a few more storers than BEP 5's k keep
    a value findable when sybils hold some of the closest places."""
    soft_timeout_factor: float = 1.5
    """With ``adaptive_timeout``: the soft timeout is this many times the median RTT
    measured (within [``soft_timeout_min``, ``soft_timeout``]). 1.2 ends lookups sooner
    (10^4 simulated nodes: median 4.49 round trips instead of 4.86) but found the peer
    under an eclipse in 94% of bench/sybil.py's trials instead of 96%."""
    soft_timeout_min: float = 0.1
    """With ``adaptive_timeout``: the soft timeout is never shorter than this (seconds)."""
    lookup_retry: bool = True
    """A lookup query unanswered at its soft deadline is sent once more (a lost datagram
    is not taken for a dead node) and awaited one more soft timeout; it frees its slot
    at the first deadline either way."""
    lookup_retry_wait: float = 1.0
    """With ``lookup_retry``: soft timeouts a resent lookup query is awaited before it
    stalls (and stops holding the lookup)."""
    node_rtt_timeout: bool = False
    """With ``adaptive_timeout``: a lookup query to a node whose RTT the routing table
    has measured gets ``soft_timeout_factor`` times that RTT as its soft timeout (within
    [``soft_timeout_min``, the lookup's soft timeout]) instead of the median's. Off: at
    10^4 simulated nodes it gained 0.07 round trips (4.80 -> 4.73), within noise, and
    bench/sybil.py found the peer in 94.5% of trials (< 95%)."""
    lookup_far_frees_slot: bool = True
    """A lookup query to a node that closer answers and candidates have overtaken (it is
    no longer among the ``lookup_k`` closest known) frees its query slot at once and is
    not resent; it stays in flight and its answer still counts. 10^4 simulated nodes
    (with ``lookup_settle`` 0.5): median 4.86 -> 4.01 round trips, p95 8.34 -> 6.66,
    28.9 -> 30.9 queries (bench/lookup_sim.py)."""
    lookup_settle: float = 0.5
    """With ``lookup_retry``: a resent lookup query stops holding the lookup once the
    ``k`` closest answers have not changed for this many soft timeouts (0: it holds
    until its own ``lookup_retry_wait`` is over). Most resent queries went to dead
    nodes; 0.25 ended lookups a little sooner but found the exact closest 8 less often
    (89% instead of 91% at 10^4 simulated nodes)."""
    lookup_group_cap: int = 2
    """With ``restrict_search_ips``: answers from one public /16 (IPv6 /32) that count
    toward a lookup's closest set, at most (0: no cap). Answers beyond the cap stay
    known (and get stores) but the lookup goes on until ``lookup_k`` answers of other
    networks are in, so a few networks holding made-up ids near a target cannot crowd
    the honest nodes out of the closest set (bench/sybil.py: 5 attacker /24s in one /16
    held 5 of 10 places; with the cap, shorter waits keep >= 95% of peers found)."""
    restrict_search_ips: bool = True
    """At most one node per public /24 (IPv6 /64) among a lookup's candidates and closest
    set (libtorrent's dht_restrict_search_ips): one host cannot fill a lookup with
    made-up ids on its own ports. Local-network addresses are exempt."""
    restrict_ips: bool = True
    """One routing table entry per IP (libtorrent's dht_restrict_routing_ips)."""
    enforce_node_id: bool = False
    """Public nodes whose id is not BEP 42-valid for their IP never enter the routing
    table (libtorrent's dht_enforce_node_id). Valid ids are preferred either way."""
    local_network: bool | None = None
    """Our own address scope: True when the node is bound to a loopback or private
    address (a local network: loopback and private nodes, peers and candidates are
    accepted), False on a public address (they are dropped as bogons), None when
    unknown (accepted, as on a local network)."""
    max_peers_per_source: int = 200
    """Peer entries one announcing /24 (IPv6: /64) may hold in our peer store in total;
    local-network announcers are exempt."""
    max_peers_per_source_per_infohash: int = 16
    """Peer entries one announcing /24 (IPv6: /64) may hold for one info-hash (several
    peers of one torrent may share a carrier-grade NAT pool or a campus /24)."""
    max_items_per_source: int = 100
    """BEP 44 items one putting /24 (IPv6: /64) may hold in our item store."""

    @classmethod
    def names(cls) -> frozenset[str]:
        """The names of all tunables."""
        return frozenset(f.name for f in fields(cls))
