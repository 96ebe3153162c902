"""The ``mldht`` command line (also ``python -m mldht``).

One subcommand per task; each is an ``add_arguments`` function and an async handler
registered in :func:`build_parser`: ``node``, ``ping``, ``get-peers``, ``announce``,
``scrape`` (:mod:`mldht.cli_scrape`), ``dump``, and the BEP 44 ones, ``put``, ``get``
and ``kv set`` / ``kv get``. Checks that depend on several arguments (``get --mutable
PUBKEY``, where the key pair lives) run right after parsing, so they too end with one
``mldht: error: ...`` line and status 2.

Item values: ``VALUE`` on the command line is stored as a bencoded string of its UTF-8
bytes. A value read back is printed as text when it is a UTF-8 string, as hex (and said
so on stderr, or ``"encoding": "hex"`` with ``--json``) when it is not, and as JSON when
it is an int, list or dict (byte strings inside as text, or ``{"hex": ...}``).

Exit status: 0 on success, 1 when the network did not give what was asked (no answer,
nobody accepted, a network error), 2 on bad input: an argument (one ``mldht: error: ...``
line naming it), or a state directory or key file that cannot be created, read or
written. A failure is one line on stderr, ``mldht: <reason>``, never a traceback; with
``--json`` stdout also gets exactly one object, ``{"error": "<reason>", "exit": N}``,
plus ``"code"`` when nodes refused with a KRPC error (e.g. 302).

Short-lived commands (all but ``node``) try the bootstrap nodes once: when none
answers they fail at once rather than retry. ``--bootstrap none`` starts with no
router at all (the first node of a private network).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from ._log import setup_logging
from .argtypes import (
    bind_address,
    checked,
    non_negative_number,
    parse_hostport,
    peer_address,
    positive_seconds,
)
from .argtypes import port as port_number
from .cli_items import add_item_commands
from .cli_scrape import add_scrape_command
from .cli_support import (
    JSON_ERRORS,
    PROG,
    Handler,
    Parser,
    UsageError,
    add_common,
    check_binds,
    emit,
    event_doc,
    fail,
    node_kwargs,
    oneshot_tunables,
    out,
    state_dir_arg,
    unheard_hint,
)
from .core.bep44 import parse_btpk_magnet
from .core.config import NodeConfig
from .core.ids import parse_infohash
from .errors import InvalidArgument, KRPCError, MldhtError, QueryTimeout
from .runtime import persist
from .runtime.node import DHTNode, format_addr, run

__all__ = ["build_parser", "main", "parse_hostport"]


# ------------------------------------------------------------------ argument types


_infohash_arg = checked(parse_infohash)


def _torrent_arg(text: str) -> bytes | tuple[bytes, bytes]:
    """An info-hash, or ``(public key, salt)`` of a BEP 46 ``xs=urn:btpk:`` magnet link."""
    if text.strip().lower().startswith("magnet:") and "urn:btpk:" in text.lower():
        return checked(parse_btpk_magnet)(text)
    return _infohash_arg(text)


def _saved_state_dir_arg(text: str) -> Path:
    """A state directory that holds a readable saved state (for ``dump``)."""
    path = state_dir_arg(text)
    if not (path / persist.STATE_FILE).is_file():
        raise argparse.ArgumentTypeError(f"no saved state ({persist.STATE_FILE}) in {text!r}")
    return path


# ------------------------------------------------------------------------- output


# ----------------------------------------------------------------------- commands


def _status(node: DHTNode) -> dict[str, Any]:
    stats = node.stats
    return {
        "event": "status",
        "nodes": node.stats["nodes"],
        "queries_in": stats.get("queries_in", 0),
        "queries_out": stats.get("queries_out", 0),
        "responses_in": stats.get("responses_in", 0),
        "timeouts": stats.get("timeouts", 0),
        "stored_peers": node.stats["stored_peers"],
    }


def _check_node(args: argparse.Namespace) -> None:
    if args.metrics is not None and importlib.util.find_spec("prometheus_client") is None:
        raise UsageError(
            "argument --metrics: needs prometheus-client (pip install 'mldht[metrics]')"
        )


async def _cmd_node(args: argparse.Namespace) -> int:
    # Signals are caught from before the socket exists: an early Ctrl-C still exits
    # cleanly, through the state save.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        kwargs = node_kwargs(args, read_only=args.read_only)
        async with DHTNode(**kwargs, rate_limit=args.rate_limit) as node:
            # What start-up made (modules, the loaded state, the stores' containers) leaves
            # the collector's reach: with 10^6 stored peers a full collection took 12 ms,
            # 3.9 ms after the freeze (bench/callbacks.py --gc-freeze does the same). The
            # join lookups in flight are frozen too: a one-time, bounded cost.
            gc.collect()
            gc.freeze()
            address = format_addr(node.address)
            listening: dict[str, Any] = {
                "event": "listening",
                "id": node.node_id.hex(),
                "address": address,
            }
            where = [format_addr(a) for a in node.addresses]
            if len(where) > 1:  # dual stack: the primary address, then every one
                listening["addresses"] = where
            emit(args, listening, f"node {node.node_id.hex()} listening on {' and '.join(where)}")
            if args.metrics is not None:
                url = f"http://{format_addr(await node.serve_metrics(args.metrics))}/metrics"
                emit(args, {"event": "metrics", "url": url}, f"metrics at {url}")

            async def status_loop() -> None:
                while True:
                    await anyio.sleep(args.status_interval)
                    st = _status(node)
                    emit(
                        args,
                        st,
                        f"nodes={st['nodes']} queries_in={st['queries_in']} "
                        f"queries_out={st['queries_out']} peers={st['stored_peers']}",
                    )

            async def event_loop() -> None:
                async for event in node.events():
                    emit(args, *event_doc(event))

            async with anyio.create_task_group() as tg:
                tg.start_soon(status_loop)
                if args.events:
                    tg.start_soon(event_loop)
                async for signum in signals:
                    logging.getLogger("mldht.cli").info("%s: stopping", signal.Signals(signum).name)
                    break
                tg.cancel_scope.cancel()
        # leaving DHTNode saved the state
    emit(args, {"event": "stopped"}, "stopped")
    return 0


async def _cmd_ping(args: argparse.Namespace) -> int:
    kwargs = node_kwargs(args, read_only=True)
    # A ping needs no bootstrap: only the routers given explicitly are contacted.
    kwargs["bootstrap"] = args.bootstrap or []
    async with DHTNode(**kwargs, query_timeout=args.timeout) as node:
        try:
            node_id = await node.ping(args.address)
        except QueryTimeout:
            return fail(
                args, f"no answer from {format_addr(args.address)} within {args.timeout:g} s"
            )
        except InvalidArgument as exc:  # a name that does not resolve: the network's say
            return fail(args, str(exc))
    emit(args, {"address": format_addr(args.address), "id": node_id.hex()}, node_id.hex())
    return 0


async def _cmd_get_peers(args: argparse.Namespace) -> int:
    peers: list[str] = []
    extra: dict[str, Any] = {}
    infohash: bytes | None = None
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        with anyio.move_on_after(args.timeout):
            if isinstance(args.infohash, tuple):
                # BEP 46: the magnet names a key; its mutable item names the torrent.
                public_key, salt = args.infohash
                extra = {"public_key": public_key.hex(), "salt": salt.hex()}
                infohash = await node.resolve_torrent(public_key, salt)
                if infohash is None:
                    return fail(
                        args,
                        f"no BEP 46 item found for the key {public_key.hex()}{unheard_hint(node)}",
                    )
                logging.getLogger("mldht.cli").info("BEP 46 item points at %s", infohash.hex())
            else:
                infohash = args.infohash
            async for peer in node.iter_peers(infohash):
                peers.append(format_addr(peer))
                if not args.json:
                    out(peers[-1])
        answered = node.stats.get("responses_in", 0) > 0
    if infohash is None or (not peers and not answered):
        return fail(args, "no DHT node answered (check --bootstrap and the network)")
    if args.json:
        out(json.dumps({"infohash": infohash.hex(), "peers": peers, **extra}))
    return 0


async def _cmd_announce(args: argparse.Namespace) -> int:
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        accepted = 0
        with anyio.move_on_after(args.timeout):
            accepted = await node.announce(args.infohash, args.port, seed=args.seed)
        unheard = unheard_hint(node)
    if accepted == 0:
        return fail(args, f"no node accepted the announce{unheard}")
    emit(
        args,
        {"infohash": args.infohash.hex(), "port": args.port, "accepted": accepted},
        str(accepted),
    )
    return 0


async def _cmd_dump(args: argparse.Namespace) -> int:
    doc = persist.read_state_document(args.state_dir)
    if doc is None:  # removed since the arguments were checked
        return fail(args, f"no saved state in {args.state_dir}")
    out(json.dumps(doc, indent=2))
    return 0


# ------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``mldht`` argument parser (each subcommand sets ``handler``)."""
    parser = Parser(
        prog=PROG,
        description="A BitTorrent mainline DHT node (BEP 5, 32, 33, 42, 43, 44, 46, 51).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("node", _cmd_node, "run a DHT node until SIGINT/SIGTERM")
    add_common(
        p,
        bind_default="0.0.0.0:6881 and [::]:6881 when the host has IPv6, else IPv4 alone",
        timeout=False,
    )
    p.add_argument("--read-only", action="store_true", help="BEP 43: send ro=1 and answer no query")
    p.add_argument(
        "--rate-limit",
        type=non_negative_number,
        default=NodeConfig.rate_limit,
        metavar="QPS",
        help="datagrams per second accepted from one source (an IPv4 address, an IPv6 /64; "
        f"loopback and private ones per address and port); 0 turns the limit off "
        f"(default {NodeConfig.rate_limit:g})",
    )
    p.add_argument(
        "--status-interval",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds between status lines (default 60)",
    )
    p.add_argument(
        "--metrics",
        type=bind_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs mldht[metrics])",
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="print the node's events as they happen (nodes joining and leaving the "
        "table, announces and puts received, warnings)",
    )
    p.set_defaults(check=_check_node)

    oneshot_note = " (runs a short-lived read-only node, BEP 43)"
    p = command("ping", _cmd_ping, "ping a DHT node and print its id" + oneshot_note)
    p.add_argument("address", type=peer_address, metavar="HOST:PORT", help="the node to ping")
    add_common(p, bind_default="0.0.0.0:0", timeout=True, bootstrap_default="none")

    p = command("get-peers", _cmd_get_peers, "find peers of a torrent" + oneshot_note)
    p.add_argument(
        "infohash",
        type=_torrent_arg,
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI (xt=urn:btih:, or BEP 46 "
        "xs=urn:btpk:, whose item is looked up first)",
    )
    add_common(p, bind_default="0.0.0.0:0", timeout=True)

    p = command("announce", _cmd_announce, "announce a peer of a torrent" + oneshot_note)
    p.add_argument(
        "infohash",
        type=_infohash_arg,
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=None,
        metavar="N",
        help="TCP port of the peer (default: implied_port, our UDP source port)",
    )
    p.add_argument(
        "--seed", action="store_true", help="announce a seed (BEP 33: counted by scrape)"
    )
    add_common(p, bind_default="0.0.0.0:0", timeout=True)
    add_scrape_command(command, oneshot_note)

    add_item_commands(sub, command, oneshot_note)
    _add_crawl(sub)

    p = command("dump", _cmd_dump, "print the saved state of a node as JSON (no network)")
    p.add_argument(
        "--state-dir",
        type=_saved_state_dir_arg,
        metavar="DIR",
        required=True,
        help="state directory of a node",
    )
    add_common(p, bind_default="0.0.0.0:0", timeout=False, network=False)
    return parser


def _add_crawl(sub: Any) -> None:
    from . import crawl  # the crawler's own options and handler (also tools/crawl.py)

    help_text = "map the DHT politely: a read-only node sampling infohashes (BEP 51)"
    p = sub.add_parser("crawl", help=help_text, description=help_text)
    crawl.add_arguments(p)

    def check(args: argparse.Namespace) -> None:
        problem = crawl.check_args(args)
        if problem is not None:
            raise UsageError(problem)

    async def handler(args: argparse.Namespace) -> int:
        return await crawl.handle(args)

    p.set_defaults(handler=handler, check=check)


def _version() -> str:
    """The installed mldht's version (``mldht.__version__`` when it is not installed)."""
    try:
        return importlib.metadata.version("mldht")
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (before any ``--``)."""
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def _no_bootstrap(args: argparse.Namespace) -> None:
    """``--bootstrap none``: an empty router list (never mixed with addresses)."""
    routers = getattr(args, "bootstrap", None)
    if isinstance(routers, list) and None in routers:
        if any(r is not None for r in routers):
            raise UsageError("argument --bootstrap: 'none' cannot be combined with HOST:PORT")
        args.bootstrap = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    token = JSON_ERRORS.set(_wants_json(argv))
    try:
        return _main(argv)
    finally:
        JSON_ERRORS.reset(token)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
    try:
        _no_bootstrap(args)
        check_binds(args)
        if check is not None:
            check(args)
    except UsageError as exc:
        parser.error(str(exc))
    setup_logging(args.verbose, log_format=getattr(args, "log_format", "text"))
    handler: Handler = args.handler
    try:
        return run(handler, args, backend=getattr(args, "backend", None))
    except KeyboardInterrupt:
        return 130
    except InvalidArgument as exc:  # e.g. a state directory that cannot be created
        return fail(args, str(exc), 2)
    except KRPCError as exc:
        return fail(args, str(exc), code=exc.code)
    except MldhtError as exc:
        return fail(args, str(exc))
    except OSError as exc:
        # The node names what failed ("cannot bind to HOST:PORT: ..."); anything else
        # from the OS here is the network's.
        line = exc.strerror or str(exc)
        return fail(args, line if line.startswith("cannot ") else f"network error: {line}")
