"""Everything the runtime keeps on disk, and the one way it writes files.

* :func:`atomic_write`: every file the runtime writes (``state.json``, ``republish.json``,
  key files) goes through it: a temporary file in the same directory, created mode 0600
  (never readable by others, even briefly), flushed to disk, then ``os.replace``: a
  crash leaves the old file or the new one, never a torn one.
* ``<state_dir>/state.json``: the node id and the good nodes of the routing table (so a
  restart rejoins in seconds by pinging them, even when no bootstrap router answers);
  for a dual-stack node the good nodes of both tables, and the id of each family under
  ``family_ids`` (``{"4": hex, "6": hex}``; they differ only when BEP 42 made them: see
  :func:`mldht.runtime.families.sync_ids`). A file without it gives every family ``id``.
  Small: written whole, in a worker thread. (Before ``peers.sqlite``, it held the stored
  peers too: such a file still loads, and its peers move to the database once.)
* ``<state_dir>/peers.sqlite``: the announced peers with their expiry
  (:mod:`mldht.runtime.peer_db`), exported from the core in small chunks on the loop and
  written in a worker thread, one transaction per save.
* ``<state_dir>/republish.json``: the BEP 44 items the node republishes
  (:func:`save_publications`).

BEP 44 items stored for others live beside them in ``items.sqlite``
(:mod:`mldht.runtime.item_db`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.compact import NodeInfo
from ..core.ids import ID_LEN
from ..errors import InvalidArgument

if TYPE_CHECKING:
    from ..core.item_store import ItemBackend
    from ..core.node import NodeState
    from .peer_db import PeerDB

log = logging.getLogger("mldht.node")

__all__ = [
    "FORMAT_VERSION",
    "ITEMS_FILE",
    "PEERS_FILE",
    "REPUBLISH_FILE",
    "STATE_FILE",
    "SavedPublication",
    "SavedState",
    "atomic_write",
    "check_state_dir",
    "close_item_backend",
    "load_publications",
    "load_state",
    "node_document",
    "open_item_backend",
    "open_peer_db",
    "parse_state",
    "prepare_state_dir",
    "read_state_document",
    "save_publications",
    "save_state",
    "state_document",
]

STATE_FILE = "state.json"
ITEMS_FILE = "items.sqlite"
REPUBLISH_FILE = "republish.json"
PEERS_FILE = "peers.sqlite"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a previous run left: its id, its good nodes and its stored peers."""

    node_id: bytes
    nodes: tuple[NodeInfo, ...] = ()
    peers: list[list[Any]] = field(default_factory=list)
    """Entries of :meth:`mldht.core.peer_store.PeerStore.dump` (loaded by the core): only
    in a file of the previous version, which kept the peers in ``state.json``."""
    saved_at: float | None = None
    """Wall-clock time (Unix seconds) of the save, for people reading the file."""
    family_ids: dict[int, bytes] = field(default_factory=dict)
    """The id of each family (4, 6) of a dual-stack node, when it was one."""


def state_document(
    node_id: bytes,
    nodes: Iterable[NodeInfo],
    peers: list[list[Any]] | None = None,
    *,
    saved_at: float | None = None,
    family_ids: dict[int, bytes] | None = None,
) -> dict[str, Any]:
    """The JSON-able document saved in ``state.json`` (``peers`` only for tests of the
    previous format: the runtime keeps them in ``peers.sqlite``; ``family_ids`` for a
    dual-stack node)."""
    doc: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "id": node_id.hex(),
        "saved_at": time.time() if saved_at is None else saved_at,
        "nodes": [{"id": n.id.hex(), "ip": n.addr[0], "port": n.addr[1]} for n in nodes],
    }
    if family_ids:
        doc["family_ids"] = {str(f): fid.hex() for f, fid in sorted(family_ids.items())}
    if peers is not None:
        doc["peers"] = peers
    return doc


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, mode 0600; returns the path.

    The data goes to a temporary file in the same directory, created 0600 from the start,
    is flushed to disk, then renamed over ``path``; the rename is made durable too where
    the platform can open a directory. Raises :class:`OSError` when it cannot be written.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return target
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return target


def save_state(state_dir: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Write ``document`` to ``<state_dir>/state.json`` atomically; returns the path.

    The directory is created if missing. Raises :class:`OSError` when it cannot be written.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    data = json.dumps(document, indent=1).encode() + b"\n"
    return atomic_write(directory / STATE_FILE, data)


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
    family_ids: dict[int, bytes] = {}
    raw_ids = doc.get("family_ids")
    for family, value in raw_ids.items() if isinstance(raw_ids, dict) else ():
        with contextlib.suppress(ValueError, TypeError):
            fid = bytes.fromhex(value)
            if family in ("4", "6") and len(fid) == ID_LEN:
                family_ids[int(family)] = fid
    return SavedState(
        node_id=node_id,
        nodes=tuple(nodes),
        peers=[p for p in peers if isinstance(p, list)] if isinstance(peers, list) else [],
        saved_at=float(saved_at) if isinstance(saved_at, int | float) else None,
        family_ids=family_ids,
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


# ------------------------------------------------------------------ republish list


@dataclass(frozen=True, slots=True)
class SavedPublication:
    """One item of ``republish.json``: what to re-put, without any secret key.

    ``public_key`` is None for an immutable item; for a mutable one it names the key
    pair, which is never saved here: the node finds it again only if it is its own
    (``identity.key``, or the ``keypair`` it is given).
    """

    target: bytes
    v_bencoded: bytes
    salt: bytes = b""
    seq: int | None = None
    public_key: bytes | None = None


def save_publications(state_dir: str | os.PathLike[str], items: Iterable[SavedPublication]) -> Path:
    """Write the republish list to ``<state_dir>/republish.json`` (atomically, 0600)."""
    doc = {
        "format": FORMAT_VERSION,
        "items": [
            {
                "target": p.target.hex(),
                "v": p.v_bencoded.hex(),
                "salt": p.salt.hex(),
                "seq": p.seq,
                "k": None if p.public_key is None else p.public_key.hex(),
            }
            for p in items
        ],
    }
    return atomic_write(Path(state_dir) / REPUBLISH_FILE, json.dumps(doc, indent=1).encode())


def load_publications(state_dir: str | os.PathLike[str]) -> list[SavedPublication]:
    """The republish list saved in ``state_dir``: empty when there is none; malformed
    entries are skipped, and an unreadable file raises :class:`InvalidArgument`."""
    path = Path(state_dir) / REPUBLISH_FILE
    try:
        doc = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise InvalidArgument(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from None
    entries = doc.get("items") if isinstance(doc, dict) else None
    out: list[SavedPublication] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            seq = entry["seq"]
            k = entry["k"]
            pub = SavedPublication(
                bytes.fromhex(entry["target"]),
                bytes.fromhex(entry["v"]),
                bytes.fromhex(entry["salt"]),
                seq if type(seq) is int else None,
                bytes.fromhex(k) if isinstance(k, str) else None,
            )
        except (KeyError, TypeError, ValueError):
            continue
        if (
            len(pub.target) == ID_LEN
            and pub.v_bencoded
            and (pub.public_key is None) == (pub.seq is None)
        ):
            out.append(pub)
    return out


# ------------------------------------------------------------------ the state directory


def prepare_state_dir(state_dir: Path) -> None:
    """Create ``state_dir`` if missing and check that it can be written in (now rather
    than at the first save); :class:`InvalidArgument` naming it and the reason if not."""
    where = str(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create state directory {where!r}: {exc.strerror or exc}"
        raise InvalidArgument(problem) from exc
    try:
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        problem = f"cannot write in state directory {where!r}: {exc.strerror or exc}"
        raise InvalidArgument(problem) from exc


CHECK_LIMIT = 1 << 20
"""Bytes of ``state.json`` up to which :func:`check_state_dir` parses it (a larger one is
from the previous version, with peers: the node reads it, once)."""


def check_state_dir(state_dir: Path) -> None:
    """Cheap checks for a command line: ``state_dir`` is absent or a directory we can
    use, and its ``state.json`` (when small, as it is since peers moved out) is valid.
    Raises :class:`InvalidArgument` saying why not."""
    if not state_dir.exists():
        return
    if not state_dir.is_dir():
        raise InvalidArgument(f"not a directory: {str(state_dir)!r}")
    if not os.access(state_dir, os.R_OK | os.X_OK):
        raise InvalidArgument(f"cannot read directory {str(state_dir)!r}")
    try:
        size = (state_dir / STATE_FILE).stat().st_size
    except OSError:
        return  # missing, or the node will say why it cannot read it
    if size <= CHECK_LIMIT:
        load_state(state_dir)


def create_private(path: Path) -> None:
    """Create ``path`` empty, mode 0600, if missing (SQLite then keeps that mode and gives
    it to its journal); make an existing one 0600."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        os.chmod(path, 0o600)


def open_peer_db(state_dir: Path) -> PeerDB:
    """The peer database of ``state_dir`` (created 0600); InvalidArgument if unusable."""
    from .peer_db import PeerDB

    return PeerDB(state_dir / PEERS_FILE)


def open_item_backend(state_dir: Path) -> ItemBackend | None:
    """The item database of ``state_dir``: a damaged one is renamed aside, with a
    warning; one that cannot be opened raises InvalidArgument."""
    from .item_db import open_item_db

    with contextlib.suppress(OSError):  # the database says why it cannot be opened
        create_private(state_dir / ITEMS_FILE)
    backend: ItemBackend = open_item_db(state_dir / ITEMS_FILE)
    return backend


def close_item_backend(backend: ItemBackend | None) -> None:
    """Close an item database from :func:`open_item_backend` (failures logged)."""
    close = getattr(backend, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.warning("closing the item database failed", exc_info=True)


def node_document(
    families: Sequence[tuple[NodeState, Iterable[NodeInfo]]], now: float, k: int
) -> tuple[dict[str, Any], int]:
    """The ``state.json`` document of a node's core nodes (one per address family, each
    with the nodes saved earlier for it; the primary first): the id, the good nodes of
    every table (cheap, for the loop) and the number of nodes in it.

    A thin table (under ``k`` good nodes: offline for a while, or a tiny network) keeps
    its family's ``earlier`` saved nodes too, so an outage does not erase what a restart
    needs.
    """
    nodes: list[NodeInfo] = []
    for state, earlier in families:
        good = state.good_nodes(now)
        if len(good) < k:
            ids = {n.id for n in good}
            addrs = {n.addr for n in good}
            good += [n for n in earlier if n.id not in ids and n.addr not in addrs]
        nodes += good
    family_ids = (
        {6 if state.config.ipv6 else 4: state.node_id for state, _ in families}
        if len(families) > 1
        else None
    )
    return state_document(families[0][0].node_id, nodes, family_ids=family_ids), len(nodes)
