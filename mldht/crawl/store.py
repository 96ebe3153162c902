"""The crawl's database: ``nodes``, ``infohashes``, ``crawls`` and ``timeline``, in SQLite
(:class:`Store`, the default) or PostgreSQL (:mod:`.store_pg`, same tables and columns).

Times are Unix seconds (the crawl's clock plus ``wall_offset``). Rows are upserted, so one
database can hold several crawls, and in PostgreSQL several shards can write at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import MldhtError
from .planner import Crawl, format_version

__all__ = ["CrawlStore", "Store", "StoreError", "changed_rows", "is_postgres_url", "open_store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT NOT NULL,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    version TEXT,
    bep51 INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    rtt_ms REAL,
    responded INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    num INTEGER,
    interval INTEGER,
    PRIMARY KEY (ip, port)
);
CREATE INDEX IF NOT EXISTS nodes_id ON nodes (id);
CREATE TABLE IF NOT EXISTS infohashes (
    infohash TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    sources INTEGER NOT NULL,
    peers INTEGER
);
CREATE TABLE IF NOT EXISTS crawls (
    started REAL PRIMARY KEY,
    ended REAL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS timeline (
    crawl REAL NOT NULL,
    t REAL NOT NULL,
    nodes INTEGER NOT NULL,
    responders INTEGER NOT NULL,
    bep51 INTEGER NOT NULL,
    infohashes INTEGER NOT NULL,
    queries INTEGER NOT NULL
);
"""

_UPSERT_NODE = """
INSERT INTO nodes (id, ip, port, version, bep51, first_seen, last_seen, rtt_ms, responded,
                   queries, num, interval)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ip, port) DO UPDATE SET
    id = excluded.id,
    version = COALESCE(excluded.version, nodes.version),
    bep51 = MAX(nodes.bep51, excluded.bep51),
    first_seen = MIN(nodes.first_seen, excluded.first_seen),
    last_seen = MAX(nodes.last_seen, excluded.last_seen),
    rtt_ms = COALESCE(excluded.rtt_ms, nodes.rtt_ms),
    responded = MAX(nodes.responded, excluded.responded),
    queries = excluded.queries,
    num = COALESCE(excluded.num, nodes.num),
    interval = COALESCE(excluded.interval, nodes.interval)
"""

_UPSERT_INFOHASH = """
INSERT INTO infohashes (infohash, first_seen, sources, peers) VALUES (?, ?, ?, ?)
ON CONFLICT (infohash) DO UPDATE SET
    first_seen = MIN(infohashes.first_seen, excluded.first_seen),
    sources = MAX(infohashes.sources, excluded.sources),
    peers = COALESCE(excluded.peers, infohashes.peers)
"""


class StoreError(MldhtError):
    """The crawl's database could not be opened or written (its driver's message)."""


NodeRow = tuple[Any, ...]


class CrawlStore(Protocol):
    """Where a crawl's results go: :class:`Store` (SQLite) or
    :class:`~mldht.crawl.store_pg.PostgresStore`. Each raises :class:`StoreError`."""

    label: str

    def flush(self, crawl: Crawl, timeline: Sequence[Sequence[float]] = ()) -> None: ...

    def finish(
        self, crawl: Crawl, timeline: Sequence[Sequence[float]], summary: dict[str, Any]
    ) -> None: ...

    def close(self) -> None: ...


def changed_rows(crawl: Crawl, offset: float) -> tuple[list[NodeRow], list[NodeRow]]:
    """The ``nodes`` and ``infohashes`` rows that changed since the last write, in key
    order (concurrent writers then lock rows in one order), times as Unix seconds."""
    rows = []
    for addr in crawl.dirty_nodes:
        rec = crawl.nodes.get(addr)
        if rec is None or rec.id is None or not crawl.keeps(rec):
            continue  # a contact that never answered, or one outside the shard
        rows.append(
            (
                rec.id.hex(),
                addr[0],
                addr[1],
                format_version(rec.version),
                int(rec.bep51),
                offset + rec.first_seen,
                offset + rec.last_seen,
                None if rec.rtt is None else round(rec.rtt * 1000.0, 3),
                int(rec.responded),
                rec.queries,
                rec.num,
                rec.interval,
            )
        )
    ih_rows = []
    for ih in crawl.dirty_infohashes:
        info = crawl.infohashes.get(ih)
        if info is not None:
            ih_rows.append((ih.hex(), offset + info.first_seen, info.sources, info.peers))
    rows.sort(key=lambda r: (r[1], r[2]))
    ih_rows.sort()
    return rows, ih_rows


def open_store(db: str, wall_offset: float, started: float) -> CrawlStore:
    """The store ``--db`` names: a ``postgresql://`` (or ``postgres://``) URL, else a
    SQLite file. Raises :class:`StoreError`."""
    if is_postgres_url(db):
        from .store_pg import PostgresStore

        return PostgresStore(db, wall_offset, started)
    try:
        return Store(db, wall_offset, started)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {db!r}: {exc}") from exc


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


class Store:
    """The crawl's SQLite database. Rows are upserted, so a database can hold several
    crawls: a node keeps its earliest first_seen and latest last_seen."""

    def __init__(self, path: str | os.PathLike[str], wall_offset: float, started: float) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(_SCHEMA)
        self._offset = wall_offset  # crawl clock -> Unix time
        self._started = wall_offset + started
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO crawls (started, ended, summary) VALUES (?, NULL, NULL)",
                (self._started,),
            )

    def flush(self, crawl: Crawl, timeline: Sequence[Sequence[float]] = ()) -> None:
        """Write the nodes and info-hashes that changed since the last flush."""
        rows, ih_rows = changed_rows(crawl, self._offset)
        try:
            with self.db:
                self.db.executemany(_UPSERT_NODE, rows)
                self.db.executemany(_UPSERT_INFOHASH, ih_rows)
                if timeline:
                    self.db.execute("DELETE FROM timeline WHERE crawl = ?", (self._started,))
                    self.db.executemany(
                        "INSERT INTO timeline VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(self._started, *row) for row in timeline],
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {self.label}: {exc}") from exc
        crawl.dirty_nodes.clear()
        crawl.dirty_infohashes.clear()

    def finish(
        self, crawl: Crawl, timeline: Sequence[Sequence[float]], summary: dict[str, Any]
    ) -> None:
        self.flush(crawl, timeline)
        try:
            with self.db:
                self.db.execute(
                    "UPDATE crawls SET ended = ?, summary = ? WHERE started = ?",
                    (time.time(), json.dumps(summary), self._started),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {self.label}: {exc}") from exc

    def close(self) -> None:
        self.db.close()
