"""``<state_dir>/peers.sqlite``: the stored peers, written off the event loop.

One row per info-hash and address family, its peers packed in one blob of fixed-size
records::

    ip (4 or 16) | port (2, big-endian) | expires (4, Unix seconds, big-endian) | seed (1)

A million peers fit in about 12 MB and a few thousand rows. Every method here blocks (it
is SQLite): the runtime calls them in a worker thread (``anyio.to_thread.run_sync``),
handing the writer chunks exported from the core on the loop
(:meth:`~mldht.core.peer_store.PeerStore.export_chunks`). A save is one transaction
(:meth:`PeerDBWriter.begin` ... :meth:`PeerDBWriter.commit`): a crash leaves the previous
save or the new one. The file is created mode 0600 (SQLite gives its journal the same
mode).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core.compact import ip_from_bytes
from ..errors import InvalidArgument
from .persist import create_private

__all__ = ["PEERS_FILE", "Entry", "PeerDB", "PeerDBWriter"]

PEERS_FILE = "peers.sqlite"
_SCHEMA_VERSION = 1
_TAIL = struct.Struct(">HIB")  # port, expires, seed
_RECORD = {4: struct.Struct(">4sHIB"), 16: struct.Struct(">16sHIB")}

Entry = tuple[bytes, bytes, int, bool, float]
"""(infohash, packed ip, port, seed, seconds left): what the core exports."""


class PeerDB:
    """The peer database of a state directory (one connection, any one thread at a time)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            create_private(self.path)
            self._db = sqlite3.connect(
                os.fspath(self.path), isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise InvalidArgument(f"cannot open {str(self.path)!r}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=DELETE")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise InvalidArgument(f"{self.path}: unknown schema version {version}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS peers "
                "(infohash BLOB NOT NULL, family INTEGER NOT NULL, records BLOB NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise InvalidArgument(f"{self.path} is not a usable peer database: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def count_rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM peers").fetchone()[0])

    def writer(self, saved_at: float) -> PeerDBWriter:
        """A writer for one save; ``saved_at`` is the wall-clock time the seconds left of
        the entries count from."""
        return PeerDBWriter(self._db, saved_at)

    def read_batches(
        self, rows_per_batch: int = 20, *, packed: bool = False
    ) -> Iterator[list[Any]]:
        """The saved peers, still alive now, as batches of entries for
        :meth:`~mldht.core.peer_store.PeerStore.load`: ``[infohash hex, ip, port, seed,
        seconds left]``, or with ``packed`` ``(infohash, packed ip, port, seed, seconds
        left)`` tuples, which load several times faster (no text to parse). Malformed
        rows are skipped."""
        cursor = self._db.execute("SELECT infohash, family, records FROM peers")
        while rows := cursor.fetchmany(rows_per_batch):
            now = time.time()
            out: list[Any] = []
            for infohash, family, records in rows:
                if not (isinstance(infohash, bytes) and isinstance(records, bytes)):
                    continue
                iplen = 4 if family == 4 else 16 if family == 6 else 0
                size = iplen + _TAIL.size
                if not iplen or len(records) % size:
                    continue
                if packed:
                    out += [
                        (infohash, ip, port, bool(seed), expires - now)
                        for ip, port, expires, seed in _RECORD[iplen].iter_unpack(records)
                        if expires > now
                    ]
                    continue
                hx = infohash.hex()
                for off in range(0, len(records), size):
                    port, expires, seed = _TAIL.unpack_from(records, off + iplen)
                    left = expires - now
                    if left > 0:
                        ip = ip_from_bytes(records[off : off + iplen])
                        out.append([hx, ip, port, bool(seed), left])
            yield out


class PeerDBWriter:
    """One save: :meth:`begin`, :meth:`add` per exported chunk, :meth:`commit` (or
    :meth:`abort`). The previous content is replaced as a whole at the commit."""

    def __init__(self, db: sqlite3.Connection, saved_at: float) -> None:
        self._db = db
        self._saved_at = saved_at
        self.peers = 0

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("DELETE FROM peers")

    def add(self, chunk: Iterable[Entry]) -> None:
        rows = []
        base = self._saved_at
        for (infohash, family), group in itertools.groupby(
            chunk, key=lambda e: (e[0], 4 if len(e[1]) == 4 else 6)
        ):
            parts = []
            for _, ip, port, seed, left in group:
                expires = min(int(base + left), 0xFFFFFFFF)
                parts.append(ip + _TAIL.pack(port, expires, 1 if seed else 0))
            self.peers += len(parts)
            rows.append((infohash, family, b"".join(parts)))
        self._db.executemany("INSERT INTO peers VALUES (?, ?, ?)", rows)

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def abort(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
