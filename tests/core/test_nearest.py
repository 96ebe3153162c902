"""Nearest: the closest-node answers from a sorted snapshot agree with RoutingTable.closest."""

from __future__ import annotations

import random

import pytest

from mldht.core import nearest as nearest_module
from mldht.core.compact import NodeInfo, encode_nodes
from mldht.core.nearest import Nearest
from mldht.core.routing import RoutingTable


@pytest.fixture(autouse=True)
def _snapshot_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer from the snapshot from the first question on (the comparisons below are
    of the snapshot's answers, not of RoutingTable.closest with itself)."""
    monkeypatch.setattr(nearest_module, "REBUILD_AFTER", 1)


def _table(seed: int, size: int, *, near_own: int = 0) -> tuple[RoutingTable, list[NodeInfo]]:
    """A table with up to ``size`` random nodes (and ``near_own`` sharing a long prefix
    with our id, which splits the home bucket deep)."""
    rng = random.Random(seed)
    own = rng.randbytes(20)
    table = RoutingTable(own, random.Random(seed + 1), local_network=True)
    nodes: list[NodeInfo] = []
    for i in range(size + near_own):
        nid = own[:12] + rng.randbytes(8) if i >= size else rng.randbytes(20)
        node = NodeInfo(nid, (f"127.0.{i >> 8}.{i & 255 or 1}", 1000 + i))
        table.node_responded(node, 1.0)
        nodes.append(node)
    return table, nodes


def _targets(table: RoutingTable, nodes: list[NodeInfo], rng: random.Random) -> list[bytes]:
    out = [rng.randbytes(20) for _ in range(300)]
    out += [n.id for n in nodes[:50]]  # a target that is a node's own id
    out.append(table.own_id)
    out += [bytes(20), b"\xff" * 20]
    return out


@pytest.mark.parametrize(("size", "near_own"), [(0, 0), (3, 0), (8, 0), (9, 0), (300, 0), (60, 60)])
def test_same_nodes_as_routing_closest(size: int, near_own: int) -> None:
    table, nodes = _table(size * 7 + near_own, size, near_own=near_own)
    nearest = Nearest()
    rng = random.Random(size)
    for target in _targets(table, nodes, rng):
        for n in (1, 8, 20):
            expect = table.closest(target, n)
            assert list(nearest.nodes(table, target, n)) == expect
            assert nearest.compact(table, target, n) == encode_nodes(expect)


def test_bad_nodes_are_skipped_as_in_routing_closest() -> None:
    table, nodes = _table(3, 60)
    nearest = Nearest()
    rng = random.Random(4)
    # A target in the far half: its closest nodes are in bucket 0 (room for 128, so no
    # replacement takes a bad node's place).
    target = bytes([table.own_id[0] ^ 0x80]) + rng.randbytes(19)
    before = nearest.nodes(table, target, 8)
    # Make the three closest bad (without the set of live entries changing).
    for node in before[:3]:
        for _ in range(table.max_fails):
            table.node_failed(node, 2.0)
    assert all(table.get(n.id) is not None for n in before[:3])
    after = nearest.nodes(table, target, 8)
    assert not set(after) & set(before[:3])
    assert list(after) == table.closest(target, 8)
    for target in _targets(table, nodes, rng):
        assert list(nearest.nodes(table, target, 8)) == table.closest(target, 8)


def test_follows_changes_of_the_table_and_a_new_table() -> None:
    table, nodes = _table(5, 40)
    nearest = Nearest()
    target = nodes[0].id
    assert nearest.nodes(table, target, 8)[0] == nodes[0]
    table.remove(nodes[0].id)
    assert nodes[0] not in nearest.nodes(table, target, 8)
    assert list(nearest.nodes(table, target, 8)) == table.closest(target, 8)
    table.node_responded(nodes[0], 3.0)
    assert nearest.nodes(table, target, 8)[0] == nodes[0]
    other, _ = _table(6, 10)
    assert list(nearest.nodes(other, target, 8)) == other.closest(target, 8)


def test_a_table_in_flux_is_asked_directly_until_it_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nearest_module, "REBUILD_AFTER", 5)
    table, nodes = _table(8, 50)
    nearest = Nearest()
    built: list[int] = []
    snapshot = Nearest._snapshot

    def counting(self: Nearest, routing: RoutingTable, n: int) -> None:
        built.append(routing.changes)
        snapshot(self, routing, n)

    monkeypatch.setattr(Nearest, "_snapshot", counting)
    target = nodes[3].id
    for i in range(12):  # the table changes before every question: never rebuilt
        table.node_responded(NodeInfo(bytes([i]) * 20, (f"127.1.0.{i + 1}", 1)), 5.0)
        assert list(nearest.nodes(table, target, 8)) == table.closest(target, 8)
    assert built == []
    for _ in range(8):  # unchanged: rebuilt once, at the fifth question
        assert list(nearest.nodes(table, target, 8)) == table.closest(target, 8)
    assert built == [table.changes]


@pytest.mark.parametrize(("size", "near_own"), [(5, 0), (300, 0), (60, 60), (200, 100)])
def test_kept_answers_agree_with_routing_closest(size: int, near_own: int) -> None:
    """Answers kept per cell of target space (the first 16 bits) and reused for the next
    targets there: random targets, and targets sharing 8-24 leading bits with an entry
    (in its cell, and in the cells around it), all agree with RoutingTable.closest."""
    table, nodes = _table(size + near_own, size, near_own=near_own)
    nearest = Nearest()
    rng = random.Random(size)
    targets = [rng.randbytes(20) for _ in range(3000)]
    for node in nodes[:100]:
        for bits in (8, 12, 16, 17, 24):
            keep = int.from_bytes(node.id, "big") >> (160 - bits) << (160 - bits)
            noise = rng.getrandbits(160 - bits)
            targets.append((keep | noise).to_bytes(20, "big"))
    for target in targets + targets:  # the second time from the kept answers
        assert nearest.compact(table, target, 8) == encode_nodes(table.closest(target, 8))
    assert nearest._cells is not None, "answers are kept after CELLS_AFTER questions"
    kept = sum(1 for cell in nearest._cells if cell)
    assert kept > len(nearest._cells) // 4, "many targets are answered from a kept answer"
