"""The state directory: peers in peers.sqlite written off the loop, the previous format
migrated, private files, atomic writes."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from mldht.core import krpc
from mldht.core.bencode import bencode
from mldht.core.peer_store import PeerStore
from mldht.errors import InvalidArgument
from mldht.runtime import DHTNode, persist
from mldht.runtime.peer_db import PeerDB

NODE_ID = bytes(range(20))


def fill(store: PeerStore, peers: int, per_infohash: int = 100) -> None:
    """``peers`` public peers, each from a /24 of its own (the quotas allow 200)."""
    now = time.time()
    for i in range(peers):
        ih = (i // per_infohash).to_bytes(20, "big")
        ip = f"{11 + i // 65536}.{i // 256 % 256}.{i % 256}.7"
        assert store.announce(ih, (ip, 1000 + i % 60000), now, seed=i % 2 == 1)


def saved_peers(state_dir: Path) -> list[list[Any]]:
    db = PeerDB(state_dir / persist.PEERS_FILE)
    try:
        return [e for batch in db.read_batches() for e in batch]
    finally:
        db.close()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_peers_survive_a_restart_and_files_are_private(tmp_path: Path) -> None:
    os.umask(0o022)
    async with DHTNode(bind=("127.0.3.1", 0), bootstrap=[], state_dir=tmp_path) as node:
        assert await node.wait_peers_loaded(5)
        fill(node._state.peer_store, 5_000)
    doc = json.loads((tmp_path / persist.STATE_FILE).read_text())
    assert "peers" not in doc
    assert len(saved_peers(tmp_path)) == 5_000
    for name in (persist.STATE_FILE, persist.PEERS_FILE, persist.ITEMS_FILE):
        assert mode(tmp_path / name) == 0o600, name
    async with DHTNode(bind=("127.0.3.1", 0), bootstrap=[], state_dir=tmp_path) as node:
        assert await node.wait_peers_loaded(5)
        assert node.stats["stored_peers"] == 5_000
        assert node.stored_peers((0).to_bytes(20, "big"))[0][0].startswith("11.0.")


async def test_old_state_json_with_peers_migrates_once(tmp_path: Path) -> None:
    peers = [
        [(7).to_bytes(20, "big").hex(), f"11.0.{i}.1", 6000 + i, False, 900] for i in range(50)
    ]
    doc = persist.state_document(NODE_ID, [], peers)
    persist.save_state(tmp_path, doc)
    async with DHTNode(bind=("127.0.3.2", 0), bootstrap=[], state_dir=tmp_path) as node:
        assert await node.wait_peers_loaded(5)
        assert node.node_id == NODE_ID
        assert node.stats["stored_peers"] == 50
        # migrated right away: peers.sqlite holds them, state.json no longer does
        await _wait(lambda: "peers" not in json.loads((tmp_path / persist.STATE_FILE).read_text()))
        assert len(saved_peers(tmp_path)) == 50
    async with DHTNode(bind=("127.0.3.2", 0), bootstrap=[], state_dir=tmp_path) as node:
        assert await node.wait_peers_loaded(5)
        assert node.stats["stored_peers"] == 50
        left = [p[4] for p in saved_peers(tmp_path)]
        assert all(890 < x <= 900 for x in left)


async def _wait(cond: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)


async def test_a_save_does_not_block_pings(tmp_path: Path) -> None:
    async with (
        DHTNode(bind=("127.0.3.3", 0), bootstrap=[], state_dir=tmp_path, rate_limit=0) as node,
        await anyio.create_udp_socket(
            family=socket.AF_INET, local_host="127.0.3.4", local_port=0
        ) as sock,
    ):
        assert await node.wait_peers_loaded(5)
        fill(node._state.peer_store, 100_000)
        replies: list[float] = []
        saving = True

        async def pinger() -> None:
            n = 0
            while saving:
                n += 1
                t = n.to_bytes(4, "big")
                await sock.sendto(
                    bencode({b"a": {b"id": NODE_ID}, b"q": b"ping", b"t": t, b"y": b"q"}),
                    *node.address,
                )
                await anyio.sleep(0.005)

        async def receiver() -> None:
            while True:
                data, _ = await sock.receive()
                if isinstance(krpc.decode_message(data), krpc.Response):
                    replies.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            tg.start_soon(pinger)
            await anyio.sleep(0.1)
            start = time.monotonic()
            await node._save(final=False)
            end = time.monotonic()
            await anyio.sleep(0.05)
            saving = False
            tg.cancel_scope.cancel()
        during = [r for r in replies if start - 0.05 <= r <= end + 0.05]
        gaps = [b - a for a, b in itertools.pairwise(during)]
        assert len(saved_peers(tmp_path)) == 100_000
        assert during and max(gaps) < 0.2, (max(gaps), end - start)


def test_atomic_write_is_private_and_exclusive(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o644)
    persist.atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_check_state_dir_is_cheap_but_rejects_a_corrupt_file(tmp_path: Path) -> None:
    persist.check_state_dir(tmp_path / "missing")
    (tmp_path / persist.STATE_FILE).write_text("{oops")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        persist.check_state_dir(tmp_path)
    # a big one (the previous format, with peers) is left to the node, which reads it once
    (tmp_path / persist.STATE_FILE).write_text("{" + " " * (persist.CHECK_LIMIT + 1))
    persist.check_state_dir(tmp_path)
