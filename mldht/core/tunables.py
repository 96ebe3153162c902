"""Tunables: the fields of :class:`~mldht.core.config.NodeConfig` as keyword arguments.

``DHTNode(..., **tunables: Unpack[Tunables])`` lets ``mypy --strict`` check each name and
type (``DHTNode(alpah=3)`` is an error that names ``alpah``); at run time an unknown
name raises ``TypeError``. ``tests/core/test_config_doc.py`` checks that this list and
NodeConfig agree.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["Tunables"]


class Tunables(TypedDict, total=False):
    """One optional keyword per NodeConfig field (see NodeConfig for each meaning) but
    ``read_only``, which DHTNode takes as a parameter of its own."""

    k: int
    alpha: int
    query_timeout: float
    soft_timeout: float
    lookup_timeout: float
    max_infohashes: int
    max_peers_per_infohash: int
    max_items: int
    max_item_bytes: int
    sample_interval: int
    version: bytes
    ipv6: bool
    max_values: int
    rate_limit: float
    send_rate: float
    maintenance_interval: float
    adaptive_timeout: bool
    lookup_k: int
    store_k: int
    soft_timeout_factor: float
    soft_timeout_min: float
    lookup_retry: bool
    lookup_retry_wait: float
    node_rtt_timeout: bool
    lookup_far_frees_slot: bool
    lookup_group_cap: int
    lookup_settle: float
    restrict_search_ips: bool
    restrict_ips: bool
    enforce_node_id: bool
    local_network: bool | None
    max_peers_per_source: int
    max_peers_per_source_per_infohash: int
    max_items_per_source: int
