"""Crawl the mainline DHT politely: map its nodes and sample its info-hashes (BEP 51).

::

    python tools/crawl.py --bootstrap HOST:PORT --duration 60 --db out.sqlite [--plot out.png]
    mldht crawl --shard 2/4 --db postgresql://USER@HOST:PORT/DB ...

How it crawls:

* It runs a **read-only** node (BEP 43: ``ro=1`` in every query), so no node ever puts it
  in its routing table, and it answers nothing.
* It sweeps the id space with BEP 51 ``sample_infohashes`` queries, each node once, plus a
  ping when it did not answer and another sample only once its ``interval`` has passed
  (never sooner than ``--min-interval``) and while it still has info-hashes to show;
  ``find_node`` lookups seed the sweep and, once it has ended, probe the id regions where
  nodes should be but none is known (see :mod:`mldht.crawl.planner`).
* Every query it sends, its node's own included, goes through one token bucket
  (``--rate``, see :mod:`mldht.crawl.pacing`); the requests in flight
  (``--concurrency``), the nodes kept (``--max-nodes``) and the info-hashes kept
  (``--max-infohashes``) are bounded.
* ``--shard I/N`` keeps it to the I-th of N equal parts of the id space, so N crawlers
  share a crawl without overlap (:mod:`mldht.crawl.shard`).

It writes SQLite (``--db FILE``) or PostgreSQL (``--db postgresql://...``, the
``postgres`` extra), the same tables in both: ``nodes`` (id, ip, port, version, bep51,
first_seen, last_seen, rtt_ms, ...), ``infohashes`` (infohash, first_seen, sources,
peers), ``timeline`` and ``crawls``; times are Unix seconds; rows are upserted, so shards
can write one database at once. ``--peers`` runs get_peers for each
info-hash found and stores the peer count. At the end it prints a summary with an
estimate of the network's size; ``--plot`` draws the crawl (needs matplotlib, the
``plot`` extra). Ctrl-C stops it cleanly and keeps what it found.

Uses the public API of mldht only. The package:

* :mod:`.planner`: the policy, sans-IO (replies and time in, requests out);
  :mod:`.estimate`: the network size estimate; :mod:`.shard`: the id range of a shard;
  :mod:`.pacing`: the rate (sans-IO too);
* :mod:`.store`: the SQLite database and what both stores share; :mod:`.store_pg`:
  PostgreSQL;
* :mod:`.driver`: the async part, driving a :class:`~mldht.runtime.DHTNode`;
* :mod:`.display`: progress, summary and plot;
* :mod:`.command`: the options, their checks, the handler and ``main``.

Importing this package loads none of them; each name below loads its module on first use
(so ``mldht.crawl.planner`` can be used without anyio).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .command import add_arguments, build_parser, check_args, handle, main
    from .display import PlainProgress, RichProgress, have_matplotlib
    from .driver import Crawler, Snapshot
    from .estimate import SizeEstimate, estimate_size, k_closest
    from .pacing import Pacer, TokenBucket
    from .planner import Crawl, CrawlNode, Job, format_version
    from .shard import Shard, parse_shard
    from .store import Store, StoreError, open_store

__all__ = [
    "Crawl",
    "CrawlNode",
    "Crawler",
    "Job",
    "Pacer",
    "PlainProgress",
    "RichProgress",
    "Shard",
    "SizeEstimate",
    "Snapshot",
    "Store",
    "StoreError",
    "TokenBucket",
    "add_arguments",
    "build_parser",
    "check_args",
    "estimate_size",
    "format_version",
    "handle",
    "have_matplotlib",
    "k_closest",
    "main",
    "open_store",
    "parse_shard",
]

_HOME = {
    "add_arguments": "command",
    "build_parser": "command",
    "check_args": "command",
    "handle": "command",
    "main": "command",
    "PlainProgress": "display",
    "RichProgress": "display",
    "have_matplotlib": "display",
    "Crawler": "driver",
    "Snapshot": "driver",
    "SizeEstimate": "estimate",
    "estimate_size": "estimate",
    "k_closest": "estimate",
    "Crawl": "planner",
    "CrawlNode": "planner",
    "Job": "planner",
    "TokenBucket": "pacing",
    "format_version": "planner",
    "Store": "store",
    "StoreError": "store",
    "open_store": "store",
    "Pacer": "pacing",
    "Shard": "shard",
    "parse_shard": "shard",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
