"""The packed hash table behind the peer store's single-peer entries and source counts."""

from __future__ import annotations

import random

import pytest

from mldht.core.packed_table import PackedTable, count_aligned, find_aligned
from mldht.errors import InvalidArgument


def test_put_get_pop_and_growth_match_a_dict() -> None:
    rng = random.Random(3)
    table = PackedTable(4, 2, per_shard=4)
    model: dict[bytes, bytes] = {}
    keys = [rng.randbytes(4) for _ in range(300)]
    for step in range(3000):
        key = rng.choice(keys)
        if rng.random() < 0.6:
            value = step.to_bytes(2, "big")
            table.put(key, value)
            model[key] = value
        else:
            assert table.pop(key) == model.pop(key, None)
        assert table.get(key) == model.get(key)
        assert len(table) == len(model)
    assert table.shard_count() > 1  # it grew one shard at a time
    assert all(table.get(k) == v for k, v in model.items())
    records = b"".join(table.shards())
    assert len(records) == len(model) * table.size


def test_unaligned_matches_are_not_keys() -> None:
    table = PackedTable(2, 2)
    table.put(b"ab", b"cd")
    table.put(b"cd", b"ab")  # b"cd" occurs first as the value of b"ab"
    assert table.get(b"cd") == b"ab" and table.get(b"bc") is None
    assert table.pop(b"cd") == b"ab" and table.get(b"ab") == b"cd"


def test_find_and_count_aligned() -> None:
    blob = b"xab" + b"abx" + b"abz" + b"qab"
    assert find_aligned(blob, b"ab", 3) == 3
    assert find_aligned(blob, b"ab", 3, at=1) == 0
    assert find_aligned(blob, b"ab", 3, start=6) == 6
    assert count_aligned(blob, b"ab", 3, 10) == 2
    assert count_aligned(blob, b"ab", 3, 1) == 1
    assert find_aligned(blob, b"zz", 3) == -1


def test_bad_geometry() -> None:
    with pytest.raises(InvalidArgument):
        PackedTable(0, 2)
