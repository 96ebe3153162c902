"""The ``mldht`` command line (also ``python -m mldht``).

One subcommand per task; each is an ``add_arguments`` function and an async handler
registered in :func:`build_parser`, so new ones (``put``, ``get``, ``kv set``, ``crawl``)
slot in beside ``node``, ``ping``, ``get-peers``, ``announce`` and ``dump``.

Exit status: 0 on success, 1 when the network did not give what was asked (no answer,
nobody accepted), 2 on bad input (one ``mldht: error: ...`` line naming the argument).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from .core.compact import Addr
from .core.ids import parse_infohash
from .errors import InvalidArgument, MldhtError, QueryTimeout
from .runtime import persist
from .runtime.node import DHTNode, format_addr, run

__all__ = ["build_parser", "main", "parse_hostport"]

PROG = "mldht"
Handler = Callable[[argparse.Namespace], Awaitable[int]]

# ------------------------------------------------------------------ argument types

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


def parse_hostport(text: str, *, allow_port_zero: bool = False) -> Addr:
    """Parse ``HOST:PORT`` (IPv6 as ``[::1]:6881``); raises ``ArgumentTypeError``."""
    low = 0 if allow_port_zero else 1
    bracketed = re.fullmatch(r"\[([^\[\]]+)\]:([0-9]+)", text)
    if bracketed is not None:
        host, port_text = bracketed.groups()
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid IPv6 address in {text!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host or not port_text.isdigit():
            raise argparse.ArgumentTypeError(f"invalid HOST:PORT {text!r}")
        if not _HOSTNAME.match(host):
            raise argparse.ArgumentTypeError(f"invalid host in {text!r}")
    port = int(port_text)
    if not low <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range ({low}-65535) in {text!r}")
    return (host, port)


def _bind_arg(text: str) -> Addr:
    return parse_hostport(text, allow_port_zero=True)


def _peer_arg(text: str) -> Addr:
    return parse_hostport(text)


def _infohash_arg(text: str) -> bytes:
    try:
        return parse_infohash(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {text!r}")
    return int(text)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _state_dir_arg(text: str) -> Path:
    """A usable state directory: absent (created later) or a directory we can use."""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot read directory {text!r}")
        try:
            persist.load_state(path)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(f"unusable state in {text!r}: {exc}") from None
    return path


def _saved_state_dir_arg(text: str) -> Path:
    """A state directory that holds a readable saved state (for ``dump``)."""
    path = _state_dir_arg(text)
    if not (path / persist.STATE_FILE).is_file():
        raise argparse.ArgumentTypeError(f"no saved state ({persist.STATE_FILE}) in {text!r}")
    return path


# ------------------------------------------------------------------------- output


def _out(line: str) -> None:
    with contextlib.suppress(BrokenPipeError):  # `mldht get-peers ... | head -1`
        print(line, flush=True)


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    _out(json.dumps(obj) if args.json else text)


def _fail(message: str, status: int = 1) -> int:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
    return status


# ----------------------------------------------------------------------- commands


def _node_kwargs(args: argparse.Namespace, *, read_only: bool) -> dict[str, Any]:
    return {
        "bind": args.bind,
        "bootstrap": args.bootstrap,
        "state_dir": args.state_dir,
        "read_only": read_only,
    }


def _status(node: DHTNode) -> dict[str, Any]:
    stats = node.stats
    return {
        "event": "status",
        "nodes": len(node.state.routing),
        "queries_in": stats.get("queries_in", 0),
        "queries_out": stats.get("queries_out", 0),
        "responses_in": stats.get("responses_in", 0),
        "timeouts": stats.get("timeouts", 0),
        "stored_peers": node.state.peer_store.peer_count(),
    }


async def _cmd_node(args: argparse.Namespace) -> int:
    # Signals are caught from before the socket exists: an early Ctrl-C still exits
    # cleanly, through the state save.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with DHTNode(**_node_kwargs(args, read_only=args.read_only)) as node:
            address = format_addr(node.address)
            _emit(
                args,
                {"event": "listening", "id": node.node_id.hex(), "address": address},
                f"node {node.node_id.hex()} listening on {address}",
            )

            async def status_loop() -> None:
                while True:
                    await anyio.sleep(args.status_interval)
                    st = _status(node)
                    _emit(
                        args,
                        st,
                        f"nodes={st['nodes']} queries_in={st['queries_in']} "
                        f"queries_out={st['queries_out']} peers={st['stored_peers']}",
                    )

            async with anyio.create_task_group() as tg:
                tg.start_soon(status_loop)
                async for signum in signals:
                    logging.getLogger("mldht.cli").info("%s: stopping", signal.Signals(signum).name)
                    break
                tg.cancel_scope.cancel()
        # leaving DHTNode saved the state
    _emit(args, {"event": "stopped"}, "stopped")
    return 0


def _oneshot_tunables(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "lookup_timeout": min(60.0, args.timeout),
        "query_timeout": min(5.0, args.timeout),
    }


async def _cmd_ping(args: argparse.Namespace) -> int:
    kwargs = _node_kwargs(args, read_only=True)
    # A ping needs no bootstrap: only the routers given explicitly are contacted.
    kwargs["bootstrap"] = args.bootstrap or []
    async with DHTNode(**kwargs, query_timeout=args.timeout) as node:
        try:
            node_id = await node.ping(args.address)
        except QueryTimeout:
            return _fail(f"no answer from {format_addr(args.address)} within {args.timeout:g} s")
    _emit(args, {"address": format_addr(args.address), "id": node_id.hex()}, node_id.hex())
    return 0


async def _cmd_get_peers(args: argparse.Namespace) -> int:
    peers: list[str] = []
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        with anyio.move_on_after(args.timeout):
            async for peer in node.iter_peers(args.infohash):
                peers.append(format_addr(peer))
                if not args.json:
                    _out(peers[-1])
        answered = node.stats.get("responses_in", 0) > 0
    if args.json:
        _out(json.dumps({"infohash": args.infohash.hex(), "peers": peers}))
    if not peers and not answered:
        return _fail("no DHT node answered (check --bootstrap and the network)")
    return 0


async def _cmd_announce(args: argparse.Namespace) -> int:
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        accepted = 0
        with anyio.move_on_after(args.timeout):
            accepted = await node.announce(args.infohash, args.port)
    _emit(
        args,
        {"infohash": args.infohash.hex(), "port": args.port, "accepted": accepted},
        str(accepted),
    )
    if accepted == 0:
        return _fail("no node accepted the announce")
    return 0


async def _cmd_dump(args: argparse.Namespace) -> int:
    doc = persist.read_state_document(args.state_dir)
    if doc is None:  # removed since the arguments were checked
        return _fail(f"no saved state in {args.state_dir}")
    _out(json.dumps(doc, indent=2))
    return 0


# ------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Bad input gives one line, ``mldht: error: ...``, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n")


def _common(
    p: argparse.ArgumentParser,
    *,
    bind_default: str,
    timeout: bool,
    network: bool = True,
    bootstrap_default: str = "the public routers",
) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    if not network:
        return
    p.add_argument(
        "--bind",
        type=_bind_arg,
        default=_bind_arg(bind_default),
        metavar="HOST:PORT",
        help=f"UDP address to listen on (default {bind_default})",
    )
    p.add_argument(
        "--bootstrap",
        type=_peer_arg,
        action="append",
        metavar="HOST:PORT",
        help=f"bootstrap node (repeatable); default: {bootstrap_default}",
    )
    p.add_argument(
        "--state-dir",
        type=_state_dir_arg,
        metavar="DIR",
        help="keep the node id, routing table and stored data here across runs",
    )
    p.add_argument("--backend", choices=("asyncio", "trio"), default=None, help=argparse.SUPPRESS)
    if timeout:
        p.add_argument(
            "--timeout",
            type=_seconds_arg,
            default=30.0,
            metavar="SECONDS",
            help="give up after this long (default 30)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``mldht`` argument parser (each subcommand sets ``handler``)."""
    parser = _Parser(
        prog=PROG,
        description="A BitTorrent mainline DHT node (BEP 5, 42, 43, 44, 51).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("node", _cmd_node, "run a DHT node until SIGINT/SIGTERM")
    _common(p, bind_default="0.0.0.0:6881", timeout=False)
    p.add_argument("--read-only", action="store_true", help="BEP 43: send ro=1 and answer no query")
    p.add_argument(
        "--status-interval",
        type=_seconds_arg,
        default=60.0,
        metavar="SECONDS",
        help="seconds between status lines (default 60)",
    )

    oneshot_note = " (runs a short-lived read-only node, BEP 43)"
    p = command("ping", _cmd_ping, "ping a DHT node and print its id" + oneshot_note)
    p.add_argument("address", type=_peer_arg, metavar="HOST:PORT", help="the node to ping")
    _common(p, bind_default="0.0.0.0:0", timeout=True, bootstrap_default="none")

    p = command("get-peers", _cmd_get_peers, "find peers of a torrent" + oneshot_note)
    p.add_argument(
        "infohash",
        type=_infohash_arg,
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI",
    )
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    p = command("announce", _cmd_announce, "announce a peer of a torrent" + oneshot_note)
    p.add_argument(
        "infohash",
        type=_infohash_arg,
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI",
    )
    p.add_argument(
        "--port",
        type=_port_arg,
        default=None,
        metavar="N",
        help="TCP port of the peer (default: implied_port, our UDP source port)",
    )
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    p = command("dump", _cmd_dump, "print the saved state of a node as JSON (no network)")
    p.add_argument(
        "--state-dir",
        type=_saved_state_dir_arg,
        metavar="DIR",
        required=True,
        help="state directory of a node",
    )
    _common(p, bind_default="0.0.0.0:0", timeout=False, network=False)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger = logging.getLogger("mldht")
    logger.addHandler(handler)
    logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return run(handler, args, backend=getattr(args, "backend", None))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        bind = getattr(args, "bind", None)
        where = f" on {format_addr(bind)}" if bind is not None else ""
        return _fail(f"network error{where}: {exc.strerror or exc}")
    except MldhtError as exc:
        return _fail(str(exc))
