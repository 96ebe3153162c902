"""The pure core of mldht: no sockets, no clock reads, no module-level randomness.

Time (``now``) and random number generators are passed in by the caller.

:class:`~mldht.core.node.NodeState` (node.py) is the node, a thin dispatcher over:
config.py (:class:`~mldht.core.config.NodeConfig`), context.py (what the pieces share and
the output sink), admission.py (per-IP rate limit), handlers.py (answers to queries),
operations.py and store_ops.py (one class per operation, each owning its events and its
store phase), maintenance.py (bootstrap with backoff, periodic upkeep), on top of
lookup.py, routing.py (with buckets.py and routing_rules.py, its admission rules),
krpc.py, peer_store.py, item_store.py, tokens.py, transactions.py. events.py holds what
comes out: operation events and node events (for watchers); counters.py the counters
metrics read; tunables.py the keyword form of NodeConfig.
"""
