"""Admission rules of the routing table: who may enter, and whom a newcomer may push out.

* bogon addresses never enter (:mod:`mldht.core.netaddr`), nor loopback and private ones
  when our node is on a public address; with ``enforce_node_id`` neither do public
  nodes whose id is not BEP 42-valid;
* one entry per public IP in the whole table, one per public /24 (IPv6: /64) per
  bucket (``one_per_ip``; local addresses count per ip:port and are exempt from the
  subnet rule);
* BEP 42-valid ids (``preferred``) are never pushed out by invalid ones.

:class:`TableRules` is the base class of :class:`~mldht.core.routing.RoutingTable`: the
table's attributes it reads are declared here, set by the table's constructor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .bep42 import is_local_ip, is_valid_node_id
from .buckets import Bucket, RoutingEntry
from .compact import Addr, NodeInfo
from .ids import ID_BITS
from .netaddr import is_acceptable, source_key

__all__ = ["TableRules"]


class TableRules:
    """The admission rules (see the module docstring) over the table's state."""

    _own_int: int
    _buckets: list[Bucket]
    _max_fails: int
    _cache_size: int
    _one_per_ip: bool
    _local_ok: bool
    _enforce_node_id: bool
    _ping_interval: float
    _recent_pings_max: int
    _recent_pings: OrderedDict[Addr, float]
    _by_id: dict[bytes, RoutingEntry]
    _by_ip: dict[object, RoutingEntry]
    _prefer: Callable[[NodeInfo], bool] | None

    def _may_take(self, node: NodeInfo, entry: RoutingEntry | None, now: float) -> bool:
        """Whether querier ``node`` (``entry``: a bad entry with its id, if any) could take
        a place in the table, then whether it may be pinged now (:meth:`_may_ping`)."""
        if not self._admissible(node):
            return False
        holder = self._by_ip.get(self._ip_key(node.addr))
        preferred = self._prefer is not None and self._prefer(node)
        if (
            holder is not None
            and holder is not entry
            and not self._may_displace(holder, node, preferred)
        ):
            return False
        rival = self._subnet_rival(node, self._subnet(node), (entry, holder))
        if rival is not None and not self._may_displace(rival, node, preferred):
            return False
        if (
            entry is None
            and holder is None
            and rival is None
            and not self._has_place(node.id, preferred)
        ):
            return False
        return self._may_ping(node, now)

    def _admissible(self, node: NodeInfo) -> bool:
        """Whether the address may enter at all (no bogon, scope, enforce_node_id)."""
        if not is_acceptable(node.addr, self._local_ok):
            return False
        return not self._enforce_node_id or is_valid_node_id(node.id, node.addr[0])

    def _subnet(self, node: NodeInfo) -> bytes | None:
        return source_key(node.addr[0]) if self._one_per_ip else None

    def _subnet_rival(
        self,
        node: NodeInfo,
        subnet: bytes | None,
        skip: tuple[RoutingEntry | None, ...],
    ) -> RoutingEntry | None:
        """Another entry of the node's bucket (live or cached) from the same /24 (/64)."""
        if subnet is None:
            return None
        bucket = self._buckets[self._index_of(int.from_bytes(node.id, "big"))]
        for group in (bucket.live, bucket.cache):
            for e in group:
                if e.subnet == subnet and e not in skip:
                    return e
        return None

    def _may_displace(self, old: RoutingEntry, node: NodeInfo, preferred: bool) -> bool:
        """Whether newcomer ``node`` may push out ``old`` (same IP or same subnet).

        A bad entry always may be replaced. Otherwise: the same ip:port with a new id
        replaces it (a restart) unless that would put an invalid id in a valid one's
        place; another address may replace it only with a valid id replacing an invalid.
        """
        if self._is_bad(old):
            return True
        old_preferred = self._is_preferred(old)
        if old.node.addr == node.addr:
            return preferred or not old_preferred
        return preferred and not old_preferred

    def _ip_key(self, addr: Addr) -> object:
        if self._one_per_ip and not is_local_ip(addr[0]):
            return addr[0]
        return addr

    def _index_of(self, id_int: int) -> int:
        shared = ID_BITS - (id_int ^ self._own_int).bit_length()
        home = len(self._buckets) - 1
        return shared if shared < home else home

    def _is_bad(self, entry: RoutingEntry) -> bool:
        return entry.fails >= self._max_fails

    @staticmethod
    def _is_preferred(entry: RoutingEntry) -> bool:
        return entry.preferred

    def _has_place(self, node_id: bytes, preferred: bool = False) -> bool:
        """Whether a new node with this id would enter its bucket or its cache unopposed."""
        index = self._index_of(int.from_bytes(node_id, "big"))
        bucket = self._buckets[index]
        live = bucket.live
        if (
            len(live) < bucket.limit
            or (index == len(self._buckets) - 1 and index < ID_BITS - 1)
            or len(bucket.cache) < self._cache_size
        ):
            return True
        if preferred and bucket.invalid_count():
            return True
        return bucket.bad_count(self._max_fails) > 0

    def _may_ping(self, node: NodeInfo, now: float) -> bool:
        """Record a ping request for this address unless one was made too recently."""
        last = self._recent_pings.get(node.addr)
        if last is not None and now - last < self._ping_interval:
            return False
        if self._recent_pings_max == 0:
            return True
        self._recent_pings[node.addr] = now
        self._recent_pings.move_to_end(node.addr)
        while len(self._recent_pings) > self._recent_pings_max:
            self._recent_pings.popitem(last=False)
        return True

    def check_indexes(self) -> None:
        """Raise AssertionError unless the id and IP indexes name exactly the entries
        in the buckets and their replacement caches (a consistency check for tests)."""
        held = [e for b in self._buckets for e in b.live + b.cache]
        if {id(e) for e in held} != {id(e) for e in self._by_id.values()} or len(held) != len(
            self._by_id
        ):
            raise AssertionError("the id index does not match the buckets")
        if any(self._by_id.get(e.node.id) is not e for e in held):
            raise AssertionError("an entry is indexed under another id")
        if len(self._by_ip) != len(held) or any(
            self._by_id.get(e.node.id) is not e for e in self._by_ip.values()
        ):
            raise AssertionError("the IP index does not match the id index")
