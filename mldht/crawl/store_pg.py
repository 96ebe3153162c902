"""The crawl's PostgreSQL database (``--db postgresql://USER@HOST:PORT/DB``; psycopg 3, the
``postgres`` extra): the same tables and columns as the SQLite one (:mod:`.store`).

Several crawlers (shards) write into one database at once: every row is an upsert that
keeps the earliest ``first_seen``, the latest ``last_seen`` and the largest counts; each
writer sends its rows in key order (so two writers never wait on each other's locks in a
cycle) and retries a transaction PostgreSQL aborted as a deadlock or a serialization
failure. The schema is created under an advisory lock (two crawlers starting together
would otherwise race on ``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .planner import Crawl
from .store import StoreError, changed_rows

__all__ = ["PostgresStore", "have_psycopg"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nodes (
        id TEXT NOT NULL,
        ip TEXT NOT NULL,
        port INTEGER NOT NULL,
        version TEXT,
        bep51 INTEGER NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        rtt_ms DOUBLE PRECISION,
        responded INTEGER NOT NULL,
        queries INTEGER NOT NULL,
        num INTEGER,
        "interval" INTEGER,
        PRIMARY KEY (ip, port)
    )""",
    "CREATE INDEX IF NOT EXISTS nodes_id ON nodes (id)",
    """CREATE TABLE IF NOT EXISTS infohashes (
        infohash TEXT PRIMARY KEY,
        first_seen DOUBLE PRECISION NOT NULL,
        sources INTEGER NOT NULL,
        peers INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS crawls (
        started DOUBLE PRECISION PRIMARY KEY,
        ended DOUBLE PRECISION,
        summary TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS timeline (
        crawl DOUBLE PRECISION NOT NULL,
        t DOUBLE PRECISION NOT NULL,
        nodes INTEGER NOT NULL,
        responders INTEGER NOT NULL,
        bep51 INTEGER NOT NULL,
        infohashes INTEGER NOT NULL,
        queries INTEGER NOT NULL
    )""",
)

_SCHEMA_LOCK = 0x6D6C646874  # pg_advisory_xact_lock key: "mldht"

_UPSERT_NODE = """
INSERT INTO nodes (id, ip, port, version, bep51, first_seen, last_seen, rtt_ms, responded,
                   queries, num, "interval")
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (ip, port) DO UPDATE SET
    id = EXCLUDED.id,
    version = COALESCE(EXCLUDED.version, nodes.version),
    bep51 = GREATEST(nodes.bep51, EXCLUDED.bep51),
    first_seen = LEAST(nodes.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(nodes.last_seen, EXCLUDED.last_seen),
    rtt_ms = COALESCE(EXCLUDED.rtt_ms, nodes.rtt_ms),
    responded = GREATEST(nodes.responded, EXCLUDED.responded),
    queries = EXCLUDED.queries,
    num = COALESCE(EXCLUDED.num, nodes.num),
    "interval" = COALESCE(EXCLUDED."interval", nodes."interval")
"""

_UPSERT_INFOHASH = """
INSERT INTO infohashes (infohash, first_seen, sources, peers) VALUES (%s, %s, %s, %s)
ON CONFLICT (infohash) DO UPDATE SET
    first_seen = LEAST(infohashes.first_seen, EXCLUDED.first_seen),
    sources = GREATEST(infohashes.sources, EXCLUDED.sources),
    peers = COALESCE(EXCLUDED.peers, infohashes.peers)
"""

RETRIES = 3
"""Attempts at a transaction PostgreSQL aborted to break a deadlock or a conflict."""


def have_psycopg() -> bool:
    """psycopg 3 (the ``postgres`` extra) is installed: ``--db postgresql://...`` works."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


class PostgresStore:
    """The crawl's PostgreSQL database at ``url`` (a libpq URI). Raises StoreError."""

    def __init__(self, url: str, wall_offset: float, started: float) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                "a postgresql:// database needs psycopg (pip install 'mldht[postgres]')"
            ) from exc
        self._psycopg = psycopg
        self.label = _redact(url)
        self._offset = wall_offset
        self._started = wall_offset + started
        try:
            self.db = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.label}: {_first_line(exc)}") from exc
        self._run(self._create)

    def _create(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in _SCHEMA:
            cur.execute(statement)
        cur.execute(
            "INSERT INTO crawls (started, ended, summary) VALUES (%s, NULL, NULL) "
            "ON CONFLICT (started) DO UPDATE SET ended = NULL, summary = NULL",
            (self._started,),
        )

    def _run(self, work: Any) -> None:
        """Run ``work(cursor)`` in one transaction, again if PostgreSQL aborted it as a
        deadlock or a serialization failure."""
        errors = self._psycopg.errors
        for attempt in range(RETRIES):
            try:
                with self.db.transaction(), self.db.cursor() as cur:
                    work(cur)
                return
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == RETRIES - 1:
                    raise StoreError(f"cannot write {self.label}: {_first_line(exc)}") from exc
            except self._psycopg.Error as exc:
                raise StoreError(f"cannot write {self.label}: {_first_line(exc)}") from exc

    def flush(self, crawl: Crawl, timeline: Sequence[Sequence[float]] = ()) -> None:
        """Write the nodes and info-hashes that changed since the last flush."""
        rows, ih_rows = changed_rows(crawl, self._offset)
        started = self._started

        def write(cur: Any) -> None:
            if rows:
                cur.executemany(_UPSERT_NODE, rows)
            if ih_rows:
                cur.executemany(_UPSERT_INFOHASH, ih_rows)
            if timeline:
                cur.execute("DELETE FROM timeline WHERE crawl = %s", (started,))
                cur.executemany(
                    "INSERT INTO timeline VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(started, *row) for row in timeline],
                )

        self._run(write)
        crawl.dirty_nodes.clear()
        crawl.dirty_infohashes.clear()

    def finish(
        self, crawl: Crawl, timeline: Sequence[Sequence[float]], summary: dict[str, Any]
    ) -> None:
        self.flush(crawl, timeline)
        ended = time.time()

        def write(cur: Any) -> None:
            cur.execute(
                "UPDATE crawls SET ended = %s, summary = %s WHERE started = %s",
                (ended, json.dumps(summary), self._started),
            )

        self._run(write)

    def close(self) -> None:
        self.db.close()


def _redact(url: str) -> str:
    """The URL without a password (``user:secret@`` becomes ``user@``)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not (sep and at):
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
