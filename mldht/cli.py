"""The ``mldht`` command line (also ``python -m mldht``).

One subcommand per task; each is an ``add_arguments`` function and an async handler
registered in :func:`build_parser`: ``node``, ``ping``, ``get-peers``, ``announce``,
``dump``, and the BEP 44 ones, ``put``, ``get`` and ``kv set`` / ``kv get``. Checks that
depend on several arguments (``get --mutable PUBKEY``, where the key pair lives) run
right after parsing, so they too end with one ``mldht: error: ...`` line and status 2.

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
import contextlib
import contextvars
import importlib.metadata
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from ._log import setup_logging
from .argtypes import (
    bind_address,
    bootstrap_address,
    checked,
    non_negative_number,
    parse_hostport,
    peer_address,
    positive_seconds,
)
from .argtypes import port as port_number
from .core.bencode import BValue
from .core.bep44 import MAX_SEQ, KeyPair, mutable_target, parse_btpk_magnet
from .core.config import NodeConfig
from .core.events import PutDone
from .core.ids import parse_infohash
from .errors import InvalidArgument, KRPCError, MldhtError, NotStored, QueryTimeout
from .runtime import persist
from .runtime.item_api import check_stored
from .runtime.items import (
    IDENTITY_FILE,
    as_public_key,
    as_salt,
    as_target,
    encode_value,
    kv_salt,
    load_or_create_keypair,
)
from .runtime.keys import load_keypair
from .runtime.node import DHTNode, format_addr, run

__all__ = ["build_parser", "main", "parse_hostport"]

PROG = "mldht"
Handler = Callable[[argparse.Namespace], Awaitable[int]]

# ------------------------------------------------------------------ argument types


_infohash_arg = checked(parse_infohash)


def _torrent_arg(text: str) -> bytes | tuple[bytes, bytes]:
    """An info-hash, or ``(public key, salt)`` of a BEP 46 ``xs=urn:btpk:`` magnet link."""
    if text.strip().lower().startswith("magnet:") and "urn:btpk:" in text.lower():
        return checked(parse_btpk_magnet)(text)
    return _infohash_arg(text)


def _utf8(text: str) -> bytes:
    """Command-line bytes that are not UTF-8 come through as given."""
    return text.encode("utf-8", "surrogateescape")


@checked
def _value_arg(text: str) -> bytes:
    """VALUE: its UTF-8 bytes, stored as a bencoded byte string; checked here to fit an
    item (1000 bytes bencoded)."""
    encode_value(_utf8(text))
    return _utf8(text)


@checked
def _salt_arg(text: str) -> bytes:
    return as_salt(_utf8(text))


@checked
def _key_arg(text: str) -> bytes:
    kv_salt(_utf8(text))
    return _utf8(text)


_pubkey_arg = checked(as_public_key)


def _seq_arg(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_SEQ:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63 - 1, got {text!r}")
    return int(text)


def _state_dir_arg(text: str) -> Path:
    """A usable state directory: absent (created later) or a directory we can use."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    if path.exists() and not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot read directory {text!r}")
    try:  # cheap: the node reads the state itself, once
        persist.check_state_dir(path)
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


def _fail(args: argparse.Namespace, message: str, status: int = 1, code: int | None = None) -> int:
    """Report a failure (see :func:`_report_failure`); returns ``status``."""
    _report_failure(message, status, json_out=bool(getattr(args, "json", False)), code=code)
    return status


def _report_failure(
    message: str, status: int, *, json_out: bool, code: int | None = None, prefix: str = ""
) -> None:
    """One line on stderr, ``mldht: [prefix]message``; with ``json_out`` also one object,
    ``{"error": message, "exit": status[, "code": code]}``, on stdout."""
    line = " ".join(message.split())  # one line, whatever the message held
    _note(prefix + line)
    if json_out:
        doc: dict[str, Any] = {"error": line, "exit": status}
        if code is not None:
            doc["code"] = code
        _out(json.dumps(doc))


def _note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _json_value(value: BValue) -> Any:
    """A decoded item value as JSON: UTF-8 strings as text, other bytes as ``{"hex": ...}``."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": value.hex()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, v in value.items():
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                name = "hex:" + key.hex()
            out[name] = _json_value(v)
        return out
    return value


def _print_value(
    args: argparse.Namespace, value: BValue, seq: int | None, extra: dict[str, Any]
) -> None:
    """Print an item's value (and ``seq N`` after it, for a mutable item)."""
    doc: dict[str, Any] = dict(extra)
    if isinstance(value, bytes):
        try:
            text, encoding = value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = value.hex(), "hex"
        doc.update(value=text, encoding=encoding, seq=seq)
        if encoding == "hex" and not args.json:
            _note("the value is not UTF-8 text; printed as hex")
    else:
        text = json.dumps(_json_value(value))
        doc.update(value=_json_value(value), seq=seq)
    if args.json:
        _out(json.dumps(doc))
        return
    _out(text)
    if seq is not None:
        _out(f"seq {seq}")


def _unheard(node: DHTNode) -> str:
    """A hint for "not found" when in fact no node answered at all."""
    if node.stats.get("responses_in", 0) > 0:
        return ""
    return " (no DHT node answered: check --bootstrap and the network)"


def _put_failed(args: argparse.Namespace, done: PutDone) -> int | None:
    """Exit status 1 with the reason when no node stored the item, else None.

    The library's check (:func:`mldht.runtime.item_api.check_stored`) says why; when
    nodes refused the item, the KRPC code most of them gave goes with the failure.
    """
    try:
        check_stored(done, "item")
    except KRPCError as exc:
        return _fail(args, str(exc), code=exc.code)
    except NotStored as exc:
        return _fail(args, f"{exc}; check --bootstrap and the network")
    return None


# ----------------------------------------------------------------------- commands


def _node_kwargs(args: argparse.Namespace, *, read_only: bool) -> dict[str, Any]:
    """DHTNode's arguments; a short-lived node (all but ``node``) does not retry its join."""
    return {
        "bind": args.bind,
        "bootstrap": args.bootstrap,
        "state_dir": args.state_dir,
        "read_only": read_only,
        "retry_join": args.command == "node",
    }


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


async def _cmd_node(args: argparse.Namespace) -> int:
    # Signals are caught from before the socket exists: an early Ctrl-C still exits
    # cleanly, through the state save.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        kwargs = _node_kwargs(args, read_only=args.read_only)
        async with DHTNode(**kwargs, rate_limit=args.rate_limit) as node:
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
            return _fail(
                args, f"no answer from {format_addr(args.address)} within {args.timeout:g} s"
            )
        except InvalidArgument as exc:  # a name that does not resolve: the network's say
            return _fail(args, str(exc))
    _emit(args, {"address": format_addr(args.address), "id": node_id.hex()}, node_id.hex())
    return 0


async def _cmd_get_peers(args: argparse.Namespace) -> int:
    peers: list[str] = []
    extra: dict[str, Any] = {}
    infohash: bytes | None = None
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        with anyio.move_on_after(args.timeout):
            if isinstance(args.infohash, tuple):
                # BEP 46: the magnet names a key; its mutable item names the torrent.
                public_key, salt = args.infohash
                extra = {"public_key": public_key.hex(), "salt": salt.hex()}
                infohash = await node.resolve_torrent(public_key, salt)
                if infohash is None:
                    return _fail(
                        args,
                        f"no BEP 46 item found for the key {public_key.hex()}{_unheard(node)}",
                    )
                logging.getLogger("mldht.cli").info("BEP 46 item points at %s", infohash.hex())
            else:
                infohash = args.infohash
            async for peer in node.iter_peers(infohash):
                peers.append(format_addr(peer))
                if not args.json:
                    _out(peers[-1])
        answered = node.stats.get("responses_in", 0) > 0
    if infohash is None or (not peers and not answered):
        return _fail(args, "no DHT node answered (check --bootstrap and the network)")
    if args.json:
        _out(json.dumps({"infohash": infohash.hex(), "peers": peers, **extra}))
    return 0


async def _cmd_announce(args: argparse.Namespace) -> int:
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        accepted = 0
        with anyio.move_on_after(args.timeout):
            accepted = await node.announce(args.infohash, args.port)
        unheard = _unheard(node)
    if accepted == 0:
        return _fail(args, f"no node accepted the announce{unheard}")
    _emit(
        args,
        {"infohash": args.infohash.hex(), "port": args.port, "accepted": accepted},
        str(accepted),
    )
    return 0


def _cli_keypair(args: argparse.Namespace, *, create: bool) -> KeyPair:
    """The key pair of ``--key-file``, or of the state dir (created there if ``create``)."""
    key_file: Path | None = args.key_file
    flag = "--key-file"
    if key_file is None:
        if args.state_dir is None:
            raise _UsageError(
                "argument --key-file: a key pair is needed: give --key-file FILE, or "
                "--state-dir DIR to use (or create) DIR/" + IDENTITY_FILE
            )
        key_file = args.state_dir / IDENTITY_FILE
        flag = "--state-dir"
    try:
        if create:
            keypair, created = load_or_create_keypair(key_file)
            if created:
                _note(f"created a new key pair in {key_file}")
            return keypair
        return load_keypair(key_file)
    except (FileNotFoundError, NotADirectoryError):
        raise _UsageError(f"argument {flag}: no key pair in {str(key_file)!r}") from None
    except OSError as exc:
        raise _UsageError(
            f"argument {flag}: cannot read key file {str(key_file)!r}: {exc.strerror or exc}"
        ) from None
    except InvalidArgument as exc:
        raise _UsageError(f"argument {flag}: {exc}") from None


def _check_get(args: argparse.Namespace) -> None:
    if args.mutable:
        if args.target.strip().lower().startswith("magnet:"):
            try:
                args.target, salt = parse_btpk_magnet(args.target)
            except InvalidArgument as exc:
                raise _UsageError(f"argument PUBKEY: {exc}") from None
            args.salt = salt if args.salt is None else args.salt
        else:
            try:
                args.target = as_public_key(args.target)
            except InvalidArgument as exc:
                raise _UsageError(f"argument PUBKEY: {exc}") from None
    else:
        if args.salt is not None:
            raise _UsageError("argument --salt: only mutable items have a salt (add --mutable)")
        try:
            args.target = as_target(args.target)
        except InvalidArgument as exc:
            raise _UsageError(f"argument TARGET: {exc}") from None


def _check_put(args: argparse.Namespace) -> None:
    if args.mutable:
        args.keypair = _cli_keypair(args, create=True)
        return
    for name in ("salt", "key_file", "seq", "cas"):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise _UsageError(f"argument {flag}: only mutable items have one (add --mutable)")


def _check_kv_set(args: argparse.Namespace) -> None:
    args.keypair = _cli_keypair(args, create=True)


def _check_kv_get(args: argparse.Namespace) -> None:
    args.keypair = None if args.owner is not None else _cli_keypair(args, create=False)


async def _cmd_put(args: argparse.Namespace) -> int:
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        if not args.mutable:
            done = await node.put_item(encode_value(args.value))
            if (status := _put_failed(args, done)) is not None:
                return status
            _emit(args, {"target": done.target.hex(), "accepted": done.accepted}, done.target.hex())
            return 0
        keypair: KeyPair = args.keypair
        salt: bytes = args.salt or b""
        done = await node.put_item(
            encode_value(args.value), keypair=keypair, salt=salt, seq=args.seq, cas=args.cas
        )
    if (status := _put_failed(args, done)) is not None:
        return status
    doc = {
        "public_key": keypair.public_key.hex(),
        "target": done.target.hex(),
        "seq": done.seq,
        "salt": salt.hex(),
        "accepted": done.accepted,
    }
    _emit(args, doc, f"{doc['public_key']} {doc['target']} {doc['seq']}")
    return 0


async def _cmd_get(args: argparse.Namespace) -> int:
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        if not args.mutable:
            value = await node.get_immutable(args.target)
            if value is None:
                return _fail(
                    args, f"no item found for the target {args.target.hex()}{_unheard(node)}"
                )
            _print_value(args, value, None, {"target": args.target.hex()})
            return 0
        salt: bytes = args.salt or b""
        found = await node.get_mutable(args.target, salt=salt)
        unheard = _unheard(node)
    if found is None:
        return _fail(args, f"no mutable item found for the key {args.target.hex()}{unheard}")
    extra = {
        "public_key": args.target.hex(),
        "salt": salt.hex(),
        "target": mutable_target(args.target, salt).hex(),
    }
    _print_value(args, found[0], found[1], extra)
    return 0


async def _cmd_kv_set(args: argparse.Namespace) -> int:
    keypair: KeyPair = args.keypair
    kwargs = _node_kwargs(args, read_only=True)
    async with DHTNode(**kwargs, keypair=keypair, **_oneshot_tunables(args)) as node:
        seq = await node.set(args.key, args.value)
    target = mutable_target(keypair.public_key, kv_salt(args.key))
    doc = {
        "key": args.key.decode("utf-8", "replace"),
        "public_key": keypair.public_key.hex(),
        "target": target.hex(),
        "seq": seq,
    }
    _emit(args, doc, f"{doc['public_key']} {doc['target']} {seq}")
    return 0


async def _cmd_kv_get(args: argparse.Namespace) -> int:
    owner: bytes = args.owner if args.owner is not None else args.keypair.public_key
    salt = kv_salt(args.key)
    async with DHTNode(**_node_kwargs(args, read_only=True), **_oneshot_tunables(args)) as node:
        found = await node.get_mutable(owner, salt=salt)
        unheard = _unheard(node)
    key = args.key.decode("utf-8", "replace")
    if found is None:
        return _fail(args, f"no value found for the key {key!r} of {owner.hex()}{unheard}")
    extra = {"key": key, "owner": owner.hex(), "target": mutable_target(owner, salt).hex()}
    _print_value(args, found[0], found[1], extra)
    return 0


async def _cmd_dump(args: argparse.Namespace) -> int:
    doc = persist.read_state_document(args.state_dir)
    if doc is None:  # removed since the arguments were checked
        return _fail(args, f"no saved state in {args.state_dir}")
    _out(json.dumps(doc, indent=2))
    return 0


# ------------------------------------------------------------------------- parser


class _UsageError(Exception):
    """Bad input found after parsing; reported like argparse's own errors (status 2)."""


_JSON_ERRORS: contextvars.ContextVar[bool] = contextvars.ContextVar("json_errors", default=False)
"""Whether :func:`main` was given ``--json``: usage errors are then JSON on stdout too."""


class _Parser(argparse.ArgumentParser):
    """Bad input gives one line, ``mldht: error: ...``, and exit status 2 (and with
    ``--json`` on the command line, the failure object on stdout)."""

    def error(self, message: str) -> NoReturn:
        _report_failure(message, 2, json_out=_JSON_ERRORS.get(), prefix="error: ")
        self.exit(2)


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
        type=bind_address,
        default=bind_address(bind_default),
        metavar="HOST:PORT",
        help=f"UDP address to listen on (default {bind_default})",
    )
    p.add_argument(
        "--bootstrap",
        type=bootstrap_address,
        action="append",
        metavar="HOST:PORT",
        help=f"bootstrap node (repeatable), or 'none' for no router at all (the first "
        f"node of a private network); default: {bootstrap_default}",
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
            type=positive_seconds,
            default=30.0,
            metavar="SECONDS",
            help="give up after this long (default 30)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``mldht`` argument parser (each subcommand sets ``handler``)."""
    parser = _Parser(
        prog=PROG,
        description="A BitTorrent mainline DHT node (BEP 5, 42, 43, 44, 46, 51).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
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

    oneshot_note = " (runs a short-lived read-only node, BEP 43)"
    p = command("ping", _cmd_ping, "ping a DHT node and print its id" + oneshot_note)
    p.add_argument("address", type=peer_address, metavar="HOST:PORT", help="the node to ping")
    _common(p, bind_default="0.0.0.0:0", timeout=True, bootstrap_default="none")

    p = command("get-peers", _cmd_get_peers, "find peers of a torrent" + oneshot_note)
    p.add_argument(
        "infohash",
        type=_torrent_arg,
        metavar="INFOHASH",
        help="40 hex digits, 32 base32 characters or a magnet URI (xt=urn:btih:, or BEP 46 "
        "xs=urn:btpk:, whose item is looked up first)",
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
        type=port_number,
        default=None,
        metavar="N",
        help="TCP port of the peer (default: implied_port, our UDP source port)",
    )
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    _add_item_commands(sub, command, oneshot_note)
    _add_crawl(sub)

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


def _add_key_file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--key-file",
        type=lambda text: Path(text).expanduser(),
        metavar="FILE",
        help=f"{what} (default: {IDENTITY_FILE} in --state-dir)",
    )


def _add_item_commands(
    sub: Any, command: Callable[[str, Handler, str], argparse.ArgumentParser], note: str
) -> None:
    """``put``, ``get`` (BEP 44) and ``kv set`` / ``kv get``."""
    p = command("put", _cmd_put, "store a BEP 44 item and print its target" + note)
    p.set_defaults(check=_check_put)
    p.add_argument(
        "value",
        type=_value_arg,
        metavar="VALUE",
        help="stored as a bencoded string of its UTF-8 bytes (at most 1000 bytes bencoded)",
    )
    p.add_argument(
        "--mutable",
        action="store_true",
        help="a mutable item signed with the key pair; prints PUBKEY TARGET SEQ",
    )
    p.add_argument("--salt", type=_salt_arg, metavar="S", help="salt (mutable; UTF-8, <= 64 bytes)")
    _add_key_file(p, "key pair to sign with, created if missing (mutable)")
    p.add_argument(
        "--seq",
        type=_seq_arg,
        metavar="N",
        help="sequence number (mutable; default: one more than the newest found)",
    )
    p.add_argument(
        "--cas", type=_seq_arg, metavar="N", help="store only if the stored seq is N (mutable)"
    )
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    p = command("get", _cmd_get, "print the value of a BEP 44 item" + note)
    p.set_defaults(check=_check_get)
    p.add_argument(
        "target",
        metavar="TARGET",
        help="40 hex digits; with --mutable the public key (64 hex) or a xs=urn:btpk: magnet",
    )
    p.add_argument(
        "--mutable", action="store_true", help="get the mutable item of a public key (and salt)"
    )
    p.add_argument("--salt", type=_salt_arg, metavar="S", help="salt (mutable; UTF-8)")
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    kv = command("kv", _cmd_kv_set, "a key/value store: mutable items under your key pair")
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="ACTION", parser_class=_Parser)
    kv_sub.required = True

    p = kv_sub.add_parser("set", help="store VALUE under KEY" + note)
    p.set_defaults(handler=_cmd_kv_set, check=_check_kv_set)
    p.add_argument(
        "key", type=_key_arg, metavar="KEY", help="the key (UTF-8; hashed if > 64 bytes)"
    )
    p.add_argument(
        "value", type=_value_arg, metavar="VALUE", help="stored as a bencoded UTF-8 string"
    )
    _add_key_file(p, "key pair to sign with, created if missing")
    _common(p, bind_default="0.0.0.0:0", timeout=True)

    p = kv_sub.add_parser("get", help="print the value stored under KEY" + note)
    p.set_defaults(handler=_cmd_kv_get, check=_check_kv_get)
    p.add_argument("key", type=_key_arg, metavar="KEY", help="the key")
    p.add_argument(
        "--owner",
        type=_pubkey_arg,
        metavar="PUBKEY",
        help="whose value (64 hex); default: the key pair of --key-file or --state-dir",
    )
    _add_key_file(p, "whose value, when --owner is not given")
    _common(p, bind_default="0.0.0.0:0", timeout=True)


def _add_crawl(sub: Any) -> None:
    from . import crawl  # the crawler's own options and handler (also tools/crawl.py)

    help_text = "map the DHT politely: a read-only node sampling infohashes (BEP 51)"
    p = sub.add_parser("crawl", help=help_text, description=help_text)
    crawl.add_arguments(p)

    def check(args: argparse.Namespace) -> None:
        problem = crawl.check_args(args)
        if problem is not None:
            raise _UsageError(problem)

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
            raise _UsageError("argument --bootstrap: 'none' cannot be combined with HOST:PORT")
        args.bootstrap = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    token = _JSON_ERRORS.set(_wants_json(argv))
    try:
        return _main(argv)
    finally:
        _JSON_ERRORS.reset(token)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
    try:
        _no_bootstrap(args)
        if check is not None:
            check(args)
    except _UsageError as exc:
        parser.error(str(exc))
    setup_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return run(handler, args, backend=getattr(args, "backend", None))
    except KeyboardInterrupt:
        return 130
    except InvalidArgument as exc:  # e.g. a state directory that cannot be created
        return _fail(args, str(exc), 2)
    except KRPCError as exc:
        return _fail(args, str(exc), code=exc.code)
    except MldhtError as exc:
        return _fail(args, str(exc))
    except OSError as exc:
        # The node names what failed ("cannot bind to HOST:PORT: ..."); anything else
        # from the OS here is the network's.
        line = exc.strerror or str(exc)
        return _fail(args, line if line.startswith("cannot ") else f"network error: {line}")
