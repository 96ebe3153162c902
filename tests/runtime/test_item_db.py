"""SQLite persistence of BEP 44 items: round trips, expiry, and survival of SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mldht.core.bencode import bencode
from mldht.core.bep44 import MAX_SEQ, KeyPair, immutable_target, mutable_target
from mldht.core.item_store import ItemStore, StoredItem
from mldht.errors import InvalidArgument, KRPCError
from mldht.runtime.item_db import SQLiteItemBackend, open_item_db

REPO = Path(__file__).resolve().parents[2]
KP = KeyPair.from_seed(bytes(range(32)))


class SyncedStore(ItemStore):
    """A persistent store whose queued writes reach the database after every call, as the
    runtime applies them after every batch of datagrams."""

    def __init__(self, backend: SQLiteItemBackend, **kw: int) -> None:
        super().__init__(own_id=bytes(20), persistent=True, **kw)
        self.backend = backend

    def flush(self) -> None:
        self.backend.apply(self.take_writes())

    def put_immutable(self, v_bencoded: bytes, now: float, *, source: str | None = None) -> bytes:
        target = super().put_immutable(v_bencoded, now, source=source)
        self.flush()
        return target

    def put_mutable(self, *args: Any, **kwargs: Any) -> None:
        super().put_mutable(*args, **kwargs)
        self.flush()

    def expire(self, now: float, limit: int | None = None) -> int:
        n = super().expire(now, limit)
        self.flush()
        return n

    def load_saved(self, now: float) -> int:
        n = self.load(self.backend.load_all(), now)
        self.flush()
        return n


def new_store(backend: SQLiteItemBackend, **kw: int) -> SyncedStore:
    return SyncedStore(backend, **kw)


def put_mutable(store: SyncedStore, v: bytes, seq: int, salt: bytes, now: float) -> bytes:
    store.put_mutable(KP.public_key, salt, seq, KP.sign_item(v, seq, salt), v, None, now)
    return mutable_target(KP.public_key, salt)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with SQLiteItemBackend(path) as backend:
        store = new_store(backend)
        t1 = store.put_immutable(b"12:Hello World!", 100.0)
        t2 = put_mutable(store, b"d2:ih20:" + bytes(20) + b"e", MAX_SEQ, b"", 200.0)
        t3 = put_mutable(store, b"i1e", 1, b"\x00" * 64, 300.0)
        put_mutable(store, b"i1e", 1, b"\x00" * 64, 400.0)  # refresh: put_count 2
        assert backend.count() == 3
        before = {t: store.get(t, 500.0) for t in (t1, t2, t3)}
    with SQLiteItemBackend(path) as backend:
        fresh = new_store(backend)
        assert fresh.load_saved(now=500.0) == 3
        after = {t: fresh.get(t, 500.0) for t in (t1, t2, t3)}
    assert after == before
    imm, mut, salted = after[t1], after[t2], after[t3]
    assert mut is not None and mut.salt == b"" and mut.seq == MAX_SEQ
    assert salted is not None and salted.put_count == 2 and salted.last_put == 400.0
    assert imm is not None and imm.k is None and imm.sig is None


def test_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    backend = SQLiteItemBackend(path)
    backend.save(StoredItem(b"\x01" * 20, b"i1e", None, b"", None, None, 0.0, 1))
    probe = sqlite3.connect(path)
    try:
        assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Committed: another connection sees the row while the writer is still open.
        assert probe.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
    finally:
        probe.close()
        backend.close()


def test_deletes_and_expiry_persist(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with SQLiteItemBackend(path) as backend:
        store = new_store(backend)
        old = [store.put_immutable(bencode(b"old %d" % i), 0.0) for i in range(5)]
        new = [store.put_immutable(bencode(b"new %d" % i), 5000.0) for i in range(5)]
        assert store.expire(7200.0) == 5
        assert backend.count() == 5
        loaded = {i.target for i in backend.load_all()}
        assert loaded == set(new) and not loaded & set(old)


def test_expired_items_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with SQLiteItemBackend(path) as backend:
        store = new_store(backend)
        t_old = store.put_immutable(b"3:old", 0.0)
        t_mut = put_mutable(store, b"i1e", 1, b"", 1000.0)
        t_new = store.put_immutable(b"3:new", 6000.0)
    with SQLiteItemBackend(path) as backend:
        fresh = new_store(backend)
        assert fresh.load_saved(now=8200.0) == 1
        assert fresh.get(t_old, 8200.0) is None and fresh.get(t_mut, 8200.0) is None
        assert fresh.get(t_new, 8200.0) is not None
        assert [i.target for i in backend.load_all()] == [t_new]  # dropped from disk too


def test_bounds_apply_when_loading(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with SQLiteItemBackend(path) as backend:
        store = new_store(backend)
        for i in range(10):
            store.put_immutable(bencode(i), float(i))
    with SQLiteItemBackend(path) as backend:
        small = new_store(backend, max_items=4)
        small.load_saved(now=10.0)
        assert len(small) == 4 and backend.count() == 4


def test_unknown_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(InvalidArgument):
        SQLiteItemBackend(path)


def test_item_quotas_are_charged_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with SQLiteItemBackend(path) as backend:
        store = new_store(backend, max_items_per_source=2)
        for n in range(2):
            store.put_immutable(f"i{n}e".encode(), 0.0, source=f"45.1.1.{n}")
    with SQLiteItemBackend(path) as backend:
        again = new_store(backend, max_items_per_source=2)
        assert again.load_saved(1.0) == 2
        with pytest.raises(KRPCError):  # the /24 is still at its quota
            again.put_immutable(b"i9e", 1.0, source="45.1.1.9")
        again.put_immutable(b"i9e", 1.0, source="45.1.2.9")
    with SQLiteItemBackend(path) as backend:  # a lower quota: the oldest are kept
        third = new_store(backend, max_items_per_source=1)
        assert third.load_saved(2.0) == 2 and len(third) == 2
        assert backend.count() == 2


def test_schema_1_gains_the_source_column(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE items (target BLOB PRIMARY KEY NOT NULL, v BLOB NOT NULL, k BLOB,"
        " salt BLOB NOT NULL, seq INTEGER, sig BLOB, last_put REAL NOT NULL,"
        " put_count INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO items VALUES (?, ?, NULL, ?, NULL, NULL, 5.0, 1)",
        (immutable_target(b"i1e"), b"i1e", b""),
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with SQLiteItemBackend(path) as backend:
        (item,) = backend.load_all()
        assert item.v_bencoded == b"i1e" and item.source is None


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_open_item_db_sets_a_damaged_file_aside(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.sqlite"
    if damage == "garbage":
        path.write_bytes(os.urandom(5000))
    else:  # a real database whose pages are overwritten past the header
        with SQLiteItemBackend(path) as backend:
            for i in range(200):
                item = StoredItem(i.to_bytes(20, "big"), b"x" * 500, None, b"", None, None, 0.0, 1)
                backend.save(item)
        with open(path, "r+b") as f:
            f.seek(2 * 4096)
            f.write(os.urandom(3 * 4096))
    damaged = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="mldht"):
        backend = open_item_db(path)
    try:
        assert backend.count() == 0
    finally:
        backend.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("items.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    (record,) = caplog.records
    assert str(path) in record.getMessage() and str(aside[0]) in record.getMessage()


def test_open_item_db_keeps_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    with open_item_db(path) as backend:
        backend.save(StoredItem(b"\x01" * 20, b"i1e", None, b"", None, None, 0.0, 1))
    with open_item_db(path) as backend:
        assert backend.count() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.sqlite"]


def test_open_item_db_that_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "items.sqlite"
    with pytest.raises(InvalidArgument, match="cannot open the item database") as info:
        open_item_db(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "missing-dir").exists()


# --- SIGKILL -----------------------------------------------------------------------------

CHILD = r"""
import sys
from mldht.core.bencode import bencode
from mldht.core.bep44 import KeyPair
from mldht.core.item_store import ItemStore
from mldht.runtime.item_db import SQLiteItemBackend

store = ItemStore(own_id=bytes(20), max_items=100_000, max_bytes=10**9, persistent=True)
backend = SQLiteItemBackend(sys.argv[1])
kp = KeyPair.from_seed(bytes(range(32)))
for i in range(20):  # expired by the time the parent loads
    store.put_immutable(bencode(b"old %d" % i), 0.0)
backend.apply(store.take_writes())
i = 0
while True:  # until killed
    v = bencode([b"item", i, b"x" * (i % 900)])
    if i % 2:
        store.put_immutable(v, 5000.0)
    else:
        salt = b"%d" % i
        store.put_mutable(kp.public_key, salt, i, kp.sign_item(v, i, salt), v, None, 5000.0)
    backend.apply(store.take_writes())  # as the runtime does before sending the reply
    print(i, flush=True)  # acknowledged
    if i == 150:
        print("stored", flush=True)
    i += 1
"""


def expected_item(i: int) -> tuple[bytes, StoredItem]:
    """What the child stored as item ``i`` (Ed25519 signatures are deterministic)."""
    v = bencode([b"item", i, b"x" * (i % 900)])
    if i % 2:
        target = immutable_target(v)
        return target, StoredItem(target, v, None, b"", None, None, 5000.0, 1)
    salt = b"%d" % i
    target = mutable_target(KP.public_key, salt)
    return target, StoredItem(
        target, v, KP.public_key, salt, i, KP.sign_item(v, i, salt), 5000.0, 1
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_acknowledged_items_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    acked: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, cwd=tmp_path
    ) as proc:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = raw.decode().strip()
                if line == "stored":
                    break
                acked.append(int(line))
            # Killed while it is still putting: nothing gets a chance to close the database.
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            tail = proc.stdout.read()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Puts acknowledged after "stored" but before the kill must be there too.
    acked += [int(line) for line in tail.decode().split("\n")[:-1] if line.isdigit()]
    assert acked == list(range(len(acked))) and len(acked) > 150
    assert Path(str(path) + "-wal").exists()  # not closed cleanly: recovery reads the WAL

    with SQLiteItemBackend(path) as backend:
        fresh = new_store(backend, max_items=100_000, max_bytes=10**9)
        loaded = fresh.load_saved(now=8000.0)  # the 20 "old" items have expired
        assert loaded >= len(acked)
        for i in acked:
            target, item = expected_item(i)
            assert fresh.get(target, 8000.0) == item, i
        assert all(item.last_put == 5000.0 for item in fresh)


def test_a_failed_commit_leaves_the_database_usable(tmp_path: Path) -> None:
    """A batch that fails is rolled back whole and leaves no transaction open: the next
    batch applies."""
    with SQLiteItemBackend(tmp_path / "items.sqlite") as backend:
        good = StoredItem(b"\x01" * 20, b"i1e", None, b"", None, None, 0.0, 1)
        bad = StoredItem(b"\x02" * 20, None, None, b"", None, None, 0.0, 1)  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            backend.apply([(good.target, good), (bad.target, bad)])
        assert backend.count() == 0  # rolled back whole
        backend.apply([(good.target, good)])
        assert backend.count() == 1
