"""``mldht scrape``: estimated seeds and peers of a torrent from the DHT (BEP 33).

A short-lived read-only node runs one scrape lookup (:meth:`DHTNode.scrape`). Text output
is one line, ``N seeds, N peers``; ``--json`` prints ``{"seeds": N, "peers": N}``. Exit
status 1 when no DHT node answered at all; 0 (and zero counts) when nodes answered but
none stores the torrent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import anyio

from .argtypes import checked
from .cli_support import (
    Handler,
    add_common,
    emit,
    fail,
    node_kwargs,
    note,
    oneshot_tunables,
    unheard_hint,
)
from .core.ids import parse_infohash
from .core.scrape import ScrapeResult
from .runtime.node import DHTNode

__all__ = ["add_scrape_command"]


async def _cmd_scrape(args: argparse.Namespace) -> int:
    result: ScrapeResult | None = None
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        with anyio.move_on_after(args.timeout):
            result = await node.scrape(args.infohash)
        answered = node.stats.get("responses_in", 0) > 0
        unheard = unheard_hint(node)
    if result is None:
        return fail(args, f"the scrape did not end within {args.timeout:g} s{unheard}")
    if not answered:
        return fail(args, "no DHT node answered (check --bootstrap and the network)")
    if result.saturated:
        note("a filter is full: the count is a lower bound (BEP 33 saturates near 8000)")
    emit(
        args,
        {"seeds": result.seeds, "peers": result.peers},
        f"{result.seeds} seeds, {result.peers} peers",
    )
    return 0


def add_scrape_command(
    command: Callable[[str, Handler, str], argparse.ArgumentParser], oneshot: str
) -> None:
    """Register ``scrape`` (``command`` is :func:`mldht.cli.build_parser`'s helper)."""
    p = command(
        "scrape",
        _cmd_scrape,
        "estimate the seeds and peers of a torrent (BEP 33 scrape)" + oneshot,
    )
    p.add_argument(
        "infohash",
        type=checked(parse_infohash),
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI",
    )
    add_common(p, bind_default="0.0.0.0:0", timeout=True)
