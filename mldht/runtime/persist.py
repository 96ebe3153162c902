"""A node's state across restarts: ``<state_dir>/state.json``.

The file holds the node id, the good nodes of the routing table (so a restart rejoins in
seconds by pinging them, even when no bootstrap router answers) and the announced peers
with the seconds they have left. It is JSON, written atomically (a temporary file in the
same directory, flushed to disk, then ``os.replace``): a crash leaves the old file or the
new one, never a torn one. BEP 44 items live beside it in ``items.sqlite``
(:mod:`mldht.runtime.item_db`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.compact import NodeInfo
from ..core.ids import ID_LEN
from ..errors import InvalidArgument

__all__ = [
    "FORMAT_VERSION",
    "ITEMS_FILE",
    "STATE_FILE",
    "SavedState",
    "load_state",
    "parse_state",
    "read_state_document",
    "save_state",
    "state_document",
]

STATE_FILE = "state.json"
ITEMS_FILE = "items.sqlite"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a previous run left: its id, its good nodes and its stored peers."""

    node_id: bytes
    nodes: tuple[NodeInfo, ...] = ()
    peers: list[list[Any]] = field(default_factory=list)
    """Entries of :meth:`mldht.core.peer_store.PeerStore.dump` (loaded by the core)."""
    saved_at: float | None = None
    """Wall-clock time (Unix seconds) of the save, for people reading the file."""


def state_document(
    node_id: bytes,
    nodes: Iterable[NodeInfo],
    peers: list[list[Any]],
    *,
    saved_at: float | None = None,
) -> dict[str, Any]:
    """The JSON-able document saved in ``state.json``."""
    return {
        "format": FORMAT_VERSION,
        "id": node_id.hex(),
        "saved_at": time.time() if saved_at is None else saved_at,
        "nodes": [{"id": n.id.hex(), "ip": n.addr[0], "port": n.addr[1]} for n in nodes],
        "peers": peers,
    }


def save_state(state_dir: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Write ``document`` to ``<state_dir>/state.json`` atomically; returns the path.

    The directory is created if missing. Raises :class:`OSError` when it cannot be written.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    data = json.dumps(document, indent=1).encode() + b"\n"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def read_state_document(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The raw document in ``<state_dir>/state.json``; None when there is no such file.

    Raises :class:`InvalidArgument` (naming the file) when it cannot be read or is not a
    JSON object.
    """
    path = Path(state_dir) / STATE_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None  # (a directory under a regular file: creating it will say why not)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path} does not hold a JSON object")
    return doc


def parse_state(doc: dict[str, Any], where: str = STATE_FILE) -> SavedState:
    """Validate a saved document.

    A missing or malformed id raises :class:`InvalidArgument`; malformed node entries are
    skipped (one bad line must not cost the whole table), and peer entries are left to
    :meth:`~mldht.core.peer_store.PeerStore.load`, which skips bad ones itself.
    """
    fmt = doc.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise InvalidArgument(f"{where}: unknown format {fmt!r} (expected {FORMAT_VERSION})")
    raw_id = doc.get("id")
    try:
        node_id = bytes.fromhex(raw_id) if isinstance(raw_id, str) else b""
    except ValueError:
        node_id = b""
    if len(node_id) != ID_LEN:
        raise InvalidArgument(f"{where}: 'id' is not 40 hex digits: {raw_id!r}")
    nodes: list[NodeInfo] = []
    raw_nodes = doc.get("nodes", [])
    for entry in raw_nodes if isinstance(raw_nodes, list) else []:
        node = _parse_node(entry)
        if node is not None:
            nodes.append(node)
    peers = doc.get("peers", [])
    saved_at = doc.get("saved_at")
    return SavedState(
        node_id=node_id,
        nodes=tuple(nodes),
        peers=[p for p in peers if isinstance(p, list)] if isinstance(peers, list) else [],
        saved_at=float(saved_at) if isinstance(saved_at, int | float) else None,
    )


def _parse_node(entry: object) -> NodeInfo | None:
    if not isinstance(entry, dict):
        return None
    raw_id, ip, port = entry.get("id"), entry.get("ip"), entry.get("port")
    if not (isinstance(raw_id, str) and isinstance(ip, str) and type(port) is int):
        return None
    if not 0 < port < 65536:
        return None
    try:
        node_id = bytes.fromhex(raw_id)
        ip = str(ipaddress.ip_address(ip))  # the core compares addresses as text
    except ValueError:
        return None
    if len(node_id) != ID_LEN:
        return None
    return NodeInfo(node_id, (ip, port))


def load_state(state_dir: str | os.PathLike[str]) -> SavedState | None:
    """The state saved in ``state_dir``; None when nothing was saved there yet.

    Raises :class:`InvalidArgument` when the file exists but cannot be used.
    """
    doc = read_state_document(state_dir)
    if doc is None:
        return None
    return parse_state(doc, str(Path(state_dir) / STATE_FILE))
