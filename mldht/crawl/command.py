"""The crawler as a program: its options, their checks, the handler and ``main``.

``mldht crawl`` (through :mod:`mldht.cli`) and ``tools/crawl.py`` both run it:
:func:`add_arguments`, :func:`check_args` and :func:`handle` serve the subcommand,
:func:`main` the stand-alone program.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from mldht import MldhtError
from mldht._log import setup_logging
from mldht.argtypes import (
    Addr,
    Parser,
    bind_address,
    checked,
    count,
    non_negative_seconds,
    peer_address,
    positive_int,
    positive_number,
    positive_seconds,
)
from mldht.runtime import DHTNode, format_addr, run

from . import display
from .driver import Crawler
from .planner import DEFAULT_MAX_INFOHASHES, DEFAULT_MAX_NODES, DEFAULT_MIN_INTERVAL, Crawl
from .shard import WHOLE, parse_shard
from .store import CrawlStore, StoreError, is_postgres_url, open_store

__all__ = ["PROG", "add_arguments", "build_parser", "check_args", "handle", "main"]

log = logging.getLogger("mldht.crawl")

PROG = "crawl"
DEFAULT_RATE = 200.0
DEFAULT_DURATION = 300.0
DEFAULT_QUERY_TIMEOUT = 5.0
DEFAULT_LOOKUPS = 8
FULL_ESTIMATE_TARGETS = 2048
"""Random targets of the size estimate over a complete crawl (cheap: no query is sent)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The crawler's options (for this program, or an ``mldht crawl`` subcommand)."""
    parser.add_argument(
        "--bootstrap",
        type=peer_address,
        action="append",
        metavar="HOST:PORT",
        help="first contact (repeatable); default: the public routers",
    )
    parser.add_argument(
        "--bind",
        type=bind_address,
        default=None,
        metavar="HOST:PORT",
        help="UDP address of the crawler's node (default 0.0.0.0:0, or [::]:0 when every "
        "--bootstrap address is IPv6: the crawler maps one address family)",
    )
    parser.add_argument(
        "--rate",
        type=positive_number,
        default=DEFAULT_RATE,
        metavar="QPS",
        help=f"queries per second at most, all included (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"stop after this long (default {DEFAULT_DURATION:g}); it stops sooner when done",
    )
    parser.add_argument(
        "--max-nodes",
        type=positive_int,
        default=DEFAULT_MAX_NODES,
        metavar="N",
        help=f"keep at most N nodes (default {DEFAULT_MAX_NODES})",
    )
    parser.add_argument(
        "--max-infohashes",
        type=positive_int,
        default=DEFAULT_MAX_INFOHASHES,
        metavar="N",
        help=f"keep at most N info-hashes (default {DEFAULT_MAX_INFOHASHES})",
    )
    parser.add_argument(
        "--db",
        default="crawl.sqlite",
        metavar="FILE|URL",
        help=(
            "database to write: a SQLite file (default crawl.sqlite), or "
            "postgresql://USER@HOST:PORT/DB (needs mldht[postgres]); rows are upserted, "
            "so several crawls (shards) can write one database"
        ),
    )
    parser.add_argument(
        "--shard",
        type=checked(parse_shard),
        default=WHOLE,
        metavar="I/N",
        help=(
            "crawl only the I-th of N equal parts of the id space (1 <= I <= N): N "
            "crawlers with 1/N .. N/N share a crawl without overlap (default 1/1)"
        ),
    )
    parser.add_argument(
        "--peers", action="store_true", help="also run get_peers for each info-hash found"
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the crawl to FILE.png (needs matplotlib)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="requests in flight at most (default: rate x query timeout, at most 1024)",
    )
    parser.add_argument(
        "--query-timeout",
        type=positive_seconds,
        default=DEFAULT_QUERY_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for an answer (default {DEFAULT_QUERY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--min-interval",
        type=non_negative_seconds,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help=(
            "never sample a node again sooner than this, even if its BEP 51 interval is "
            f"shorter (default {DEFAULT_MIN_INTERVAL:g})"
        ),
    )
    parser.add_argument(
        "--lookups",
        type=count,
        default=DEFAULT_LOOKUPS,
        metavar="N",
        help=(
            "find_node lookups to random targets, to seed the sweep and the size estimate "
            f"(default {DEFAULT_LOOKUPS})"
        ),
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="progress display on stderr (default auto: rich on a terminal, else plain)",
    )
    parser.add_argument(
        "--status-interval",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds between plain progress lines (default 5)",
    )
    parser.add_argument("--seed", type=count, default=None, help="seed of the crawl's choices")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Map the mainline DHT politely (BEP 51, BEP 43).")
    add_arguments(parser)
    return parser


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with arguments argparse cannot check alone (None if nothing)."""
    if args.plot is not None:
        if not display.have_matplotlib():
            return (
                "--plot needs matplotlib, which is not installed "
                "(pip install 'mldht[plot]' or pip install matplotlib)"
            )
        parent = Path(args.plot).expanduser().resolve().parent
        if not parent.is_dir():
            return f"--plot: directory {str(parent)!r} does not exist"
    if is_postgres_url(args.db):
        from .store_pg import have_psycopg

        if not have_psycopg():
            return "--db postgresql://... needs psycopg (pip install 'mldht[postgres]')"
    else:
        db_parent = Path(args.db).expanduser().resolve().parent
        if not db_parent.is_dir():
            return f"--db: directory {str(db_parent)!r} does not exist"
    if args.progress == "rich" and not display.have_rich():
        return "--progress rich needs rich, which is not installed (pip install 'mldht[crawl]')"
    return None


async def _resolve_all(addrs: Sequence[Addr], family: socket.AddressFamily) -> list[Addr]:
    """The first contacts' addresses. Names are resolved here only (the crawler's node
    gets addresses), and the ones that fail are told in one warning."""
    out: list[Addr] = []
    failed: list[str] = []
    for host, port in addrs:
        try:
            infos = await anyio.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            failed.append(f"{host} ({exc.strerror or exc})")
            continue
        for *_, sockaddr in infos:
            found = (str(sockaddr[0]), int(sockaddr[1]))
            if found not in out:
                out.append(found)
    if failed:
        log.warning(
            "cannot resolve %s%s",
            ", ".join(failed),
            "" if out else "; no first contact left: is this machine offline?",
        )
    return out


def _is_public(addrs: Sequence[Addr]) -> bool:
    """True when every first contact is globally routable: crawl only such addresses."""
    if not addrs:
        return True
    for host, _ in addrs:
        try:
            if not ipaddress.ip_address(host).is_global:
                return False
        except ValueError:
            return False
    return True


async def handle(args: argparse.Namespace, stop: anyio.Event | None = None) -> int:
    """Run a crawl as the arguments say; the exit status (0 done, 1 nobody answered, 2 bad
    arguments). Prints progress on stderr and the summary on stdout."""
    problem = check_args(args)
    if problem is not None:
        sys.stderr.write(f"{PROG}: error: {problem}\n")
        return 2
    if args.bind is None:  # the family of the first contacts given (IPv4 by default)
        v6 = bool(args.bootstrap) and all(":" in host for host, _ in args.bootstrap)
        args.bind = ("::", 0) if v6 else ("0.0.0.0", 0)
    rng = random.Random(args.seed if args.seed is not None else os.urandom(16))
    wall_offset = time.time() - anyio.current_time()
    family = socket.AF_INET6 if ":" in args.bind[0] else socket.AF_INET
    routers: list[Addr] | None = args.bootstrap
    try:
        store: CrawlStore = open_store(args.db, wall_offset, anyio.current_time())
    except StoreError as exc:
        sys.stderr.write(f"{PROG}: error: --db: {exc}\n")
        return 2
    concurrency = args.concurrency or max(16, min(1024, math.ceil(args.rate * args.query_timeout)))
    progress: display.PlainProgress | display.RichProgress | None = None
    mode = args.progress
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() and display.have_rich() else "plain"
    if mode == "rich":
        progress = display.RichProgress(sys.stderr)
    elif mode == "plain":
        progress = display.PlainProgress(sys.stderr, args.status_interval)
    crawler: Crawler | None = None
    try:
        contacts = await _resolve_all(routers if routers is not None else _public_routers(), family)
        async with DHTNode(
            bind=args.bind,
            # No join of its own: a join's lookups would go out before the crawl and its
            # rate. The crawl samples the contacts first; they fill the node's table.
            bootstrap=[],
            read_only=True,
            query_timeout=args.query_timeout,
            soft_timeout=min(1.0, args.query_timeout),
            lookup_timeout=max(10.0, 4 * args.query_timeout),
            # Its lookups only find nodes to sample: narrow ones, to stay polite (a node's
            # defaults favour exact closest sets over query counts).
            alpha=4,
            lookup_k=8,
            local_network=False if routers is None else None,
        ) as node:
            crawl = Crawl(
                rng,
                anyio.current_time(),
                max_nodes=args.max_nodes,
                max_infohashes=args.max_infohashes,
                min_interval=args.min_interval,
                public_only=_is_public(contacts),
                peers=args.peers,
                own_id=node.node_id,
                shard=args.shard,
            )
            for addr in contacts:
                crawl.add_contact(addr)
            crawl.add_random_lookups(args.lookups)
            crawler = Crawler(
                node,
                crawl,
                rate=args.rate,
                concurrency=concurrency,
                duration=args.duration,
                store=store,
                on_progress=progress,
            )
            await crawler.run(stop)
    except BaseException:
        # Cancelled from outside, or the node failed: still keep what was found.
        if crawler is not None:
            with contextlib.suppress(StoreError):
                store.flush(crawler.crawl, crawler.timeline)
        store.close()
        raise
    finally:
        if progress is not None:
            progress.close()
    estimate = crawl.estimate(extra_targets=FULL_ESTIMATE_TARGETS)
    summary = display.summarize(crawler, estimate, store.label)
    stored = True
    try:
        store.finish(crawl, crawler.timeline, summary)
    except StoreError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        stored = False
    finally:
        store.close()
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(summary) if args.json else display.format_summary(summary), flush=True)
    if args.plot is not None:
        try:
            display.draw_plot(args.plot, crawler, summary)
        except Exception as exc:  # a plotting problem must not hide the crawl's result
            sys.stderr.write(f"{PROG}: could not draw {args.plot}: {exc}\n")
            return 1
        if not args.json:
            print(f"plot:         {args.plot}", flush=True)
    return 0 if crawl.responders and stored else 1


def _public_routers() -> list[Addr]:
    from mldht.runtime import PUBLIC_ROUTERS

    return list(PUBLIC_ROUTERS)


async def _main_async(args: argparse.Namespace) -> int:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()  # the crawl ends, and what it found is written
                    return

        tg.start_soon(on_signal)
        status = await handle(args, stop)
        tg.cancel_scope.cancel()
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the crawler program; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_args(args)
    if problem is not None:
        parser.error(problem)
    setup_logging(args.verbose, PROG)
    try:
        return run(_main_async, args)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"{PROG}: network error on {format_addr(args.bind)}: {exc}\n")
        return 1
    except MldhtError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
