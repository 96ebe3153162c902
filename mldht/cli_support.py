"""What the ``mldht`` subcommands share: output and failure reporting (the exit-status
and ``--json`` conventions of :mod:`mldht.cli`), the argument parser class, the options
every networked command takes, and the arguments of the node a command runs."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

from ._log import LOG_FORMATS
from .argtypes import Addr, bind_address, bootstrap_address, positive_seconds
from .core.bencode import BValue
from .core.compact import NodeInfo
from .core.events import NodeEvent, PutDone
from .errors import InvalidArgument, KRPCError, NotStored
from .runtime import persist
from .runtime.item_api import check_stored
from .runtime.node import DHTNode, format_addr
from .runtime.udp import default_binds

__all__ = [
    "JSON_ERRORS",
    "PROG",
    "Handler",
    "Parser",
    "UsageError",
    "add_common",
    "bind_addresses",
    "check_binds",
    "emit",
    "event_doc",
    "fail",
    "json_value",
    "node_kwargs",
    "note",
    "oneshot_tunables",
    "out",
    "print_value",
    "put_failed",
    "report_failure",
    "state_dir_arg",
    "unheard_hint",
]

PROG = "mldht"
Handler = Callable[[argparse.Namespace], Awaitable[int]]


def out(line: str) -> None:
    with contextlib.suppress(BrokenPipeError):  # `mldht get-peers ... | head -1`
        print(line, flush=True)


def _plain(value: object) -> object:
    """An event field as JSON: bytes as hex, a node as its id and address, an address
    as ``HOST:PORT``."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, NodeInfo):
        return {"id": value.id.hex(), "address": format_addr(value.addr)}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return format_addr((str(value[0]), value[1]))
    return value


def event_doc(event: NodeEvent) -> tuple[dict[str, Any], str]:
    """A node event as a JSON object (``{"event": "peer_announced", ...}``) and as a line
    of text (``peer_announced info_hash=... peer=HOST:PORT ...``)."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()
    doc: dict[str, Any] = {"event": name}
    for field in dataclasses.fields(event):
        doc[field.name] = _plain(getattr(event, field.name))
    words = [name] + [
        f"{key}={json.dumps(value) if isinstance(value, dict) else value}"
        for key, value in doc.items()
        if key != "event"
    ]
    return doc, " ".join(words)


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    out(json.dumps(obj) if args.json else text)


def fail(args: argparse.Namespace, message: str, status: int = 1, code: int | None = None) -> int:
    """Report a failure (see :func:`report_failure`); returns ``status``."""
    report_failure(message, status, json_out=bool(getattr(args, "json", False)), code=code)
    return status


def report_failure(
    message: str, status: int, *, json_out: bool, code: int | None = None, prefix: str = ""
) -> None:
    """One line on stderr, ``mldht: [prefix]message``; with ``json_out`` also one object,
    ``{"error": message, "exit": status[, "code": code]}``, on stdout."""
    line = " ".join(message.split())  # one line, whatever the message held
    note(prefix + line)
    if json_out:
        doc: dict[str, Any] = {"error": line, "exit": status}
        if code is not None:
            doc["code"] = code
        out(json.dumps(doc))


def note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def json_value(value: BValue) -> Any:
    """A decoded item value as JSON: UTF-8 strings as text, other bytes as ``{"hex": ...}``."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": value.hex()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, v in value.items():
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                name = "hex:" + key.hex()
            out[name] = json_value(v)
        return out
    return value


def print_value(
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
            note("the value is not UTF-8 text; printed as hex")
    else:
        text = json.dumps(json_value(value))
        doc.update(value=json_value(value), seq=seq)
    if args.json:
        out(json.dumps(doc))
        return
    out(text)
    if seq is not None:
        out(f"seq {seq}")


def unheard_hint(node: DHTNode) -> str:
    """A hint for "not found" when in fact no node answered at all."""
    if node.stats.get("responses_in", 0) > 0:
        return ""
    return " (no DHT node answered: check --bootstrap and the network)"


def put_failed(args: argparse.Namespace, done: PutDone) -> int | None:
    """Exit status 1 with the reason when no node stored the item, else None.

    The library's check (:func:`mldht.runtime.item_api.check_stored`) says why; when
    nodes refused the item, the KRPC code most of them gave goes with the failure.
    """
    try:
        check_stored(done, "item")
    except KRPCError as exc:
        return fail(args, str(exc), code=exc.code)
    except NotStored as exc:
        return fail(args, f"{exc}; check --bootstrap and the network")
    return None


def node_kwargs(args: argparse.Namespace, *, read_only: bool) -> dict[str, Any]:
    """DHTNode's arguments; a short-lived node (all but ``node``) does not retry its join."""
    return {
        "bind": bind_addresses(args),
        "bootstrap": args.bootstrap,
        "state_dir": args.state_dir,
        "read_only": read_only,
        "retry_join": args.command == "node",
    }


def oneshot_tunables(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "lookup_timeout": min(60.0, args.timeout),
        "query_timeout": min(5.0, args.timeout),
    }


class UsageError(Exception):
    """Bad input found after parsing; reported like argparse's own errors (status 2)."""


def check_binds(args: argparse.Namespace) -> None:
    """``--bind`` given at most once per address family (a dual-stack node, BEP 32;
    the crawler's own ``--bind`` is one address)."""
    binds = getattr(args, "bind", None)
    if not isinstance(binds, list):
        return
    for i, addr in enumerate(binds):
        for other in binds[:i]:
            if (":" in addr[0]) == (":" in other[0]):
                raise UsageError(
                    f"argument --bind: one address per family (IPv4, IPv6), got "
                    f"{format_addr(other)} and {format_addr(addr)}"
                )


def bind_addresses(args: argparse.Namespace) -> list[Addr]:
    """The addresses a command's node binds: ``--bind`` as given (one per family), or
    else: for ``node``, ``0.0.0.0:6881`` and ``[::]:6881`` when the host has IPv6
    (:func:`~mldht.runtime.udp.default_binds`); for a one-shot command, port 0 in the
    families of the addresses it was given (the pinged node, ``--bootstrap``): IPv6
    (``[::]:0``) for an IPv6 literal, IPv4 (``0.0.0.0:0``) for the others and by default
    (the public routers)."""
    binds: list[Addr] = getattr(args, "bind", None) or []
    if binds:
        return list(binds)
    if args.command == "node":
        return default_binds(6881)
    given: list[Addr] = [a for a in (getattr(args, "address", None),) if a is not None]
    given += [a for a in args.bootstrap or () if a is not None]
    out: list[Addr] = []
    if not given or any(":" not in host for host, _ in given):
        out.append(("0.0.0.0", 0))
    if any(":" in host for host, _ in given):
        out.append(("::", 0))
    return out


JSON_ERRORS: contextvars.ContextVar[bool] = contextvars.ContextVar("json_errors", default=False)
"""Whether :func:`main` was given ``--json``: usage errors are then JSON on stdout too."""


class Parser(argparse.ArgumentParser):
    """Bad input gives one line, ``mldht: error: ...``, and exit status 2 (and with
    ``--json`` on the command line, the failure object on stdout)."""

    def error(self, message: str) -> NoReturn:
        report_failure(message, 2, json_out=JSON_ERRORS.get(), prefix="error: ")
        self.exit(2)


def add_common(
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
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="logs on stderr as text lines or as one JSON object per line (default text)",
    )
    if not network:
        return
    if bind_default.endswith(":0"):  # a one-shot command: see bind_addresses
        bind_default = (
            "port 0 in the families of the addresses given (0.0.0.0:0 for IPv4 ones, "
            "names and the public routers; [::]:0 for IPv6 ones)"
        )
    p.add_argument(
        "--bind",
        type=bind_address,
        action="append",
        metavar="HOST:PORT",
        help=f"UDP address to listen on, IPv6 as [ADDR]:PORT; repeatable, one per family "
        f"(IPv4 and IPv6: one node on both, BEP 32); default {bind_default}",
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
        type=state_dir_arg,
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


def state_dir_arg(text: str) -> Path:
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
