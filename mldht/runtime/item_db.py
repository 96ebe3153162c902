"""SQLite persistence of BEP 44 items: the :class:`~mldht.core.item_store.ItemBackend`.

One table keyed by target. The core's item store returns its changes as work
(:meth:`~mldht.core.node.NodeState.storage_writes`); :meth:`SQLiteItemBackend.apply`
writes a batch of them as one committed transaction, and the runtime sends the replies of
that batch only after it returned, so a put is durable before it is acknowledged.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A commit then
appends the transaction to the ``-wal`` file with ``write()`` but does not ``fsync`` it
(only checkpoints do). Once ``write()`` has returned, the bytes are in the operating
system's page cache, which outlives the process: a crash or a ``SIGKILL`` right after
``save`` returns loses nothing, and the next open replays the WAL. Only a power loss or a
kernel crash can drop the last commits, and even then the database stays consistent
(SQLite's WAL is checksummed). ``synchronous=FULL`` would add an fsync per put, which is
what a power-loss guarantee costs and more than a DHT cache needs.

The calls are synchronous: a commit takes ~40 us, a batch of a hundred puts or a WAL
checkpoint tens of milliseconds, so a running node makes them in a worker thread
(:mod:`mldht.runtime.item_writer`; one at a time: a lock serialises them).

:func:`open_item_db` is how a node opens its database: a file that is not an SQLite
database (or a corrupt one) is kept, renamed aside, and a fresh database is started; a
database that cannot be opened at all raises :class:`~mldht.errors.InvalidArgument`
naming the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ..core.item_store import ItemWrite, StoredItem
from ..errors import InvalidArgument

__all__ = ["SQLiteItemBackend", "open_item_db"]

log = logging.getLogger("mldht.item_db")

_SCHEMA_VERSION = 2
"""1: no source column (items loaded from it are charged to nobody); 2: source."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    target    BLOB PRIMARY KEY NOT NULL,
    v         BLOB NOT NULL,
    k         BLOB,
    salt      BLOB NOT NULL,
    seq       INTEGER,
    sig       BLOB,
    last_put  REAL NOT NULL,
    put_count INTEGER NOT NULL,
    source    BLOB
) WITHOUT ROWID
"""


_UPSERT = (
    "INSERT OR REPLACE INTO items (target, v, k, salt, seq, sig, last_put, put_count, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM items WHERE target = ?"


def _row(item: StoredItem) -> tuple[object, ...]:
    return (
        item.target,
        item.v_bencoded,
        item.k,
        item.salt,
        item.seq,
        item.sig,
        item.last_put,
        item.put_count,
        item.source,
    )


class SQLiteItemBackend:
    """Items in an SQLite database at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # isolation_level=None: autocommit, so every statement below commits on its own.
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):  # ":memory:" cannot use WAL
                raise InvalidArgument(f"cannot use WAL mode on {os.fspath(path)!r} ({mode})")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, _SCHEMA_VERSION):
                raise InvalidArgument(
                    f"{os.fspath(path)!r} has item schema version {version}, "
                    f"this mldht knows {_SCHEMA_VERSION}"
                )
            self._db.execute(_SCHEMA)
            if version == 1:  # the quota source of each item, unknown for older rows
                self._db.execute("ALTER TABLE items ADD COLUMN source BLOB")
            if version != _SCHEMA_VERSION:  # (no write otherwise: a damaged file stays as is)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            # Reads every page of the table: a damaged file fails here, not mid-run.
            self._db.execute("SELECT COUNT(*) FROM items").fetchone()
        except BaseException:
            self._db.close()
            raise

    def apply(self, writes: Sequence[ItemWrite]) -> None:
        """Apply the store's queued changes in order, as one committed transaction."""
        if not writes:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for target, item in writes:
                    if item is None:
                        self._db.execute(_DELETE, (target,))
                    else:
                        self._db.execute(_UPSERT, _row(item))
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) may leave the transaction open; SQLite may
                # also have rolled it back already. Either way the next apply starts clean.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def save(self, item: StoredItem) -> None:
        """Insert or replace ``item``; committed when this returns."""
        self.apply([(item.target, item)])

    def delete(self, target: bytes) -> None:
        """Forget the item under ``target``, if any."""
        self.apply([(target, None)])

    def load_all(self) -> list[StoredItem]:
        """Every stored item, in no particular order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT target, v, k, salt, seq, sig, last_put, put_count, source FROM items"
            ).fetchall()
        return [
            StoredItem(
                target=bytes(target),
                v_bencoded=bytes(v),
                k=None if k is None else bytes(k),
                salt=bytes(salt),
                seq=None if seq is None else int(seq),
                sig=None if sig is None else bytes(sig),
                last_put=float(last_put),
                put_count=int(put_count),
                source=bytes(source) if isinstance(source, bytes) else None,
            )
            for target, v, k, salt, seq, sig, last_put, put_count, source in rows
        ]

    def count(self) -> int:
        """How many items the database holds."""
        with self._lock:
            count: int = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return count

    def close(self) -> None:
        """Checkpoint and close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteItemBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is damaged (rather than that it cannot be opened)."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(name, str) and name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _set_aside(path: Path) -> Path:
    """Rename ``path`` (and its ``-wal``/``-shm`` files) to ``<path>.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    return aside


def open_item_db(path: str | os.PathLike[str]) -> SQLiteItemBackend:
    """Open the item database at ``path``; a damaged file is renamed aside, with a warning.

    Raises :class:`InvalidArgument` (naming the file and the reason) when the database
    cannot be opened or created, e.g. in a directory that cannot be written.
    """
    target = Path(path)
    try:
        return SQLiteItemBackend(target)
    except sqlite3.DatabaseError as exc:
        if not _is_corrupt(exc):
            raise InvalidArgument(f"cannot open the item database {str(target)!r}: {exc}") from exc
        problem = str(exc)
    try:
        aside = _set_aside(target)
    except OSError as exc:
        raise InvalidArgument(
            f"the item database {str(target)!r} is damaged ({problem}) and cannot be "
            f"renamed aside: {exc.strerror or exc}"
        ) from exc
    log.warning(
        "the item database %s is damaged (%s): kept as %s, starting a new one",
        target,
        problem,
        aside,
    )
    try:
        return SQLiteItemBackend(target)
    except sqlite3.DatabaseError as exc:
        raise InvalidArgument(f"cannot open the item database {str(target)!r}: {exc}") from exc
