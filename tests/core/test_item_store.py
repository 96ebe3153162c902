"""The storing node's BEP 44 item store: error codes, seq / cas, expiry, bounds (BEP 44)."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.bencode import bencode
from mldht.core.bep44 import MAX_SEQ, KeyPair, immutable_target, mutable_target
from mldht.core.item_store import ItemStore, ItemWrite, StoredItem
from mldht.errors import InvalidArgument, KRPCError

KP = KeyPair.from_seed(bytes(range(32)))
OTHER = KeyPair.from_seed(bytes(range(1, 33)))
ZERO_ID = bytes(20)
TTL = 7200.0


class DictBackend:
    """Durable storage in a dict: applies the writes a persistent store queues, as the
    runtime does, whenever a test looks at it."""

    def __init__(self) -> None:
        self._items: dict[bytes, StoredItem] = {}
        self._saves: list[StoredItem] = []
        self._deletes: list[bytes] = []
        self.stores: list[ItemStore] = []

    def apply(self, writes: list[ItemWrite]) -> None:
        for target, item in writes:
            if item is None:
                self._items.pop(target, None)
                self._deletes.append(target)
            else:
                self._items[target] = item
                self._saves.append(item)

    def sync(self) -> None:
        for store in self.stores:
            self.apply(store.take_writes())

    @property
    def items(self) -> dict[bytes, StoredItem]:
        self.sync()
        return self._items

    @property
    def saves(self) -> list[StoredItem]:
        self.sync()
        return self._saves

    @property
    def deletes(self) -> list[bytes]:
        self.sync()
        return self._deletes

    def load_all(self) -> list[StoredItem]:
        return list(self.items.values())


def make_store(backend: DictBackend | None = None, **kw: Any) -> ItemStore:
    store = ItemStore(own_id=kw.pop("own_id", ZERO_ID), persistent=backend is not None, **kw)
    if backend is not None:
        backend.stores.append(store)
    return store


def mput(
    store: ItemStore,
    v: bytes = b"i1e",
    seq: int = 1,
    salt: bytes = b"",
    cas: int | None = None,
    now: float = 0.0,
    kp: KeyPair = KP,
    sig: bytes | None = None,
) -> bytes:
    """Put a correctly signed mutable item (unless ``sig`` is given); returns its target."""
    if sig is None:
        sig = kp.sign_item(v, seq, salt)
    store.put_mutable(kp.public_key, salt, seq, sig, v, cas, now)
    return mutable_target(kp.public_key, salt)


def value_of_size(tag: int, size: int) -> bytes:
    """A bencoded string of exactly ``size`` bytes, distinct for each ``tag``."""
    for payload in range(size, 0, -1):
        if payload + len(str(payload)) + 1 == size:
            out = bencode((b"%d:" % tag).ljust(payload, b"."))
            assert len(out) == size
            return out
    # No string has this length (e.g. 103 jumps from 102 to 104): wrap one in a list.
    return b"l" + value_of_size(tag, size - 2) + b"e"


def closeness(target: bytes) -> int:
    """Leading bits shared with ZERO_ID."""
    return 160 - int.from_bytes(target, "big").bit_length()


def values_with_closeness(
    lo: int, hi: int, count: int, size: int = 20, start: int = 0
) -> list[bytes]:
    out: list[bytes] = []
    tag = start
    while len(out) < count:
        v = value_of_size(tag, size)
        if lo <= closeness(immutable_target(v)) <= hi:
            out.append(v)
        tag += 1
    return out


def expect(code: int, fn: Callable[[], object]) -> KRPCError:
    with pytest.raises(KRPCError) as info:
        fn()
    assert info.value.code == code, info.value
    return info.value


# --- immutable items ---------------------------------------------------------------------


def test_immutable_put_get() -> None:
    backend = DictBackend()
    store = make_store(backend)
    v = b"12:Hello World!"
    target = store.put_immutable(v, 10.0)
    assert target.hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    item = store.get(target, 11.0)
    assert item == StoredItem(target, v, None, b"", None, None, 10.0, 1)
    assert not item.is_mutable
    assert len(store) == 1 and store.bytes_used == 20 + len(v)
    assert backend.items == {target: item}
    assert store.get(hashlib.sha1(b"other").digest(), 11.0) is None


def test_immutable_refresh() -> None:
    backend = DictBackend()
    store = make_store(backend)
    target = store.put_immutable(b"i42e", 0.0)
    assert store.put_immutable(b"i42e", 5000.0) == target
    item = store.get(target, 5000.0)
    assert item is not None and item.put_count == 2 and item.last_put == 5000.0
    assert len(store) == 1 and store.bytes_used == 24
    # The refresh moved the expiry: 2 h after the last put, not the first.
    assert store.get(target, 5000.0 + TTL - 0.001) is not None
    assert store.get(target, 5000.0 + TTL) is None
    assert backend.items[target].last_put == 5000.0 and len(backend.saves) == 2


def test_expiry_two_hours() -> None:
    backend = DictBackend()
    store = make_store(backend)
    t_imm = store.put_immutable(b"3:abc", 100.0)
    t_mut = mput(store, now=200.0)
    assert store.get(t_imm, 100.0 + TTL - 1e-6) is not None
    assert store.get(t_imm, 100.0 + TTL) is None
    assert store.get(t_mut, 100.0 + TTL) is not None
    assert len(store) == 2  # get does not drop; expire does
    assert store.expire(100.0 + TTL - 1.0) == 0
    assert store.expire(100.0 + TTL) == 1
    assert len(store) == 1 and t_imm not in backend.items and t_mut in backend.items
    assert store.expire(200.0 + TTL) == 1
    assert len(store) == 0 and store.bytes_used == 0 and backend.items == {}
    assert store.get(t_mut, 200.0 + TTL) is None


def test_custom_ttl() -> None:
    store = make_store(ttl=60.0)
    target = store.put_immutable(b"i1e", 0.0)
    assert store.get(target, 59.9) is not None
    assert store.get(target, 60.0) is None


# --- error codes -------------------------------------------------------------------------


def test_205_value_size() -> None:
    backend = DictBackend()
    store = make_store(backend)
    big = value_of_size(1, 1001)
    expect(205, lambda: store.put_immutable(big, 0.0))
    expect(205, lambda: store.put_immutable(b"", 0.0))
    expect(205, lambda: mput(store, v=big))
    expect(205, lambda: mput(store, v=b""))
    assert len(store) == 0 and backend.saves == []
    # Exactly 1000 bytes is accepted (libtorrent does too), also with the largest salt.
    limit = value_of_size(2, 1000)
    t1 = store.put_immutable(limit, 0.0)
    t2 = mput(store, v=limit, salt=b"s" * 64)
    assert store.get(t1, 0.0) is not None
    item = store.get(t2, 0.0)
    assert item is not None and item.v_bencoded == limit and item.salt == b"s" * 64


@pytest.mark.parametrize(
    "v", [b"i01e", b"d1:bi1e1:ai2ee", b"12:Hello World!x", b"i1e\x00", b"x", b"3:ab"]
)
def test_203_non_canonical_value(v: bytes) -> None:
    backend = DictBackend()
    store = make_store(backend)
    expect(203, lambda: store.put_immutable(v, 0.0))
    expect(203, lambda: mput(store, v=v))
    assert len(store) == 0 and backend.saves == []


def test_203_malformed_mutable_fields() -> None:
    backend = DictBackend()
    store = make_store(backend)
    sig = KP.sign_item(b"i1e", 1)
    k = KP.public_key
    cases: list[tuple[object, object, object, object, object, object]] = [
        (k[:31], b"", 1, sig, b"i1e", None),
        (k + b"\x00", b"", 1, sig, b"i1e", None),
        (None, b"", 1, sig, b"i1e", None),
        (k, b"", 1, sig[:63], b"i1e", None),
        (k, b"", 1, sig + b"\x00", b"i1e", None),
        (k, b"", 1, None, b"i1e", None),
        (k, "salt", 1, sig, b"i1e", None),
        (k, b"", "1", sig, b"i1e", None),
        (k, b"", True, sig, b"i1e", None),
        (k, b"", 1, sig, "i1e", None),
        (k, b"", 1, sig, b"i1e", "0"),
    ]
    for k_, salt, seq, sig_, v, cas in cases:
        expect(203, lambda: store.put_mutable(k_, salt, seq, sig_, v, cas, 0.0))  # type: ignore[arg-type]  # noqa: B023
    assert len(store) == 0 and backend.saves == []


@pytest.mark.parametrize("seq", [-1, MAX_SEQ + 1, -(2**70)])
def test_203_seq_out_of_range(seq: int) -> None:
    store = make_store()
    # Signed correctly, so only the range rule can reject it.
    expect(203, lambda: mput(store, seq=seq))
    assert len(store) == 0


def test_largest_seq_accepted() -> None:
    store = make_store()
    target = mput(store, seq=MAX_SEQ)
    item = store.get(target, 0.0)
    assert item is not None and item.seq == MAX_SEQ


def test_206_bad_signature() -> None:
    backend = DictBackend()
    store = make_store(backend)
    good = KP.sign_item(b"i1e", 1)
    expect(206, lambda: mput(store, sig=bytes(64)))
    expect(206, lambda: mput(store, sig=good[:-1] + bytes((good[-1] ^ 1,))))
    expect(206, lambda: mput(store, seq=2, sig=good))  # signature of another seq
    expect(206, lambda: mput(store, salt=b"x", sig=good))  # signature without the salt
    expect(206, lambda: mput(store, sig=OTHER.sign_item(b"i1e", 1)))  # another key
    assert len(store) == 0 and backend.saves == []


def test_206_checked_before_stored_item() -> None:
    """A forged put must not learn anything from, or change, the stored item."""
    backend = DictBackend()
    store = make_store(backend)
    target = mput(store, v=b"i5e", seq=5)
    before = store.get(target, 0.0)
    # Would be 301 (cas) or 302 (seq) if the signature were looked at later.
    expect(206, lambda: mput(store, v=b"i3e", seq=3, cas=99, sig=bytes(64)))
    expect(206, lambda: mput(store, v=b"i9e", seq=9, sig=bytes(64)))
    expect(206, lambda: mput(store, v=b"i5e", seq=5, sig=bytes(64), now=10.0))
    assert store.get(target, 20.0) == before
    assert len(backend.saves) == 1


def test_207_salt_too_big() -> None:
    backend = DictBackend()
    store = make_store(backend)
    salt = b"s" * 65
    expect(207, lambda: mput(store, salt=salt))  # correctly signed, still too big
    expect(207, lambda: mput(store, salt=salt, sig=bytes(64)))  # checked before 206
    expect(205, lambda: mput(store, salt=salt, v=value_of_size(0, 1001)))  # 205 first
    assert len(store) == 0 and backend.saves == []
    mput(store, salt=b"s" * 64)
    assert len(store) == 1


def test_301_cas_mismatch() -> None:
    backend = DictBackend()
    store = make_store(backend)
    target = mput(store, v=b"i5e", seq=5)
    expect(301, lambda: mput(store, v=b"i6e", seq=6, cas=4))
    expect(301, lambda: mput(store, v=b"i6e", seq=6, cas=6))
    # cas is checked before seq (as libtorrent does).
    expect(301, lambda: mput(store, v=b"i4e", seq=4, cas=3))
    expect(301, lambda: mput(store, v=b"i5e", seq=5, cas=3))
    item = store.get(target, 0.0)
    assert item is not None and item.seq == 5 and item.v_bencoded == b"i5e"
    assert len(backend.saves) == 1
    mput(store, v=b"i6e", seq=6, cas=5, now=1.0)
    item = store.get(target, 1.0)
    assert item is not None and item.seq == 6 and item.v_bencoded == b"i6e"
    assert backend.items[target] == item


def test_cas_ignored_when_nothing_stored() -> None:
    store = make_store()
    target = mput(store, seq=3, cas=77)
    assert store.get(target, 0.0) is not None


def test_302_seq_too_low() -> None:
    backend = DictBackend()
    store = make_store(backend)
    target = mput(store, v=b"i5e", seq=5)
    expect(302, lambda: mput(store, v=b"i4e", seq=4))
    expect(302, lambda: mput(store, v=b"i4e", seq=4, cas=5))  # cas right, seq low
    expect(302, lambda: mput(store, v=b"i0e", seq=0))
    # Equal seq with a different value is rejected too (BEP 44 MUST).
    expect(302, lambda: mput(store, v=b"i7e", seq=5))
    item = store.get(target, 0.0)
    assert item is not None and item.v_bencoded == b"i5e" and item.put_count == 1
    assert len(backend.saves) == 1


def test_equal_seq_same_value_refreshes() -> None:
    backend = DictBackend()
    store = make_store(backend)
    target = mput(store, v=b"i5e", seq=5, now=0.0)
    stored_sig = store.get(target, 0.0).sig  # type: ignore[union-attr]
    mput(store, v=b"i5e", seq=5, now=6000.0)
    item = store.get(target, 6000.0)
    assert item is not None
    assert (item.seq, item.v_bencoded, item.sig) == (5, b"i5e", stored_sig)
    assert item.last_put == 6000.0 and item.put_count == 2
    assert store.get(target, 6000.0 + TTL - 1) is not None  # alive past the first 2 h
    assert backend.items[target] == item


def test_mutable_replace_and_fields() -> None:
    backend = DictBackend()
    store = make_store(backend)
    target = mput(store, v=b"i1e", seq=1, salt=b"abc")
    big = bencode({b"ih": bytes(20), b"x": b"y" * 100})
    mput(store, v=big, seq=2, salt=b"abc", now=3.0)
    item = store.get(target, 3.0)
    assert item == StoredItem(
        target, big, KP.public_key, b"abc", 2, KP.sign_item(big, 2, b"abc"), 3.0, 2
    )
    assert item.is_mutable
    assert store.bytes_used == 20 + 64 + 32 + 1 + 3 + len(big)
    assert backend.items == {target: item}


@pytest.mark.parametrize("salt_len", [0, 1, 2, 63, 64])
def test_salts_round_trip(salt_len: int) -> None:
    store = make_store()
    salt = bytes(range(200, 200 - salt_len, -1))
    v = bencode([b"\x00" * 10, 7])
    target = mput(store, v=v, seq=9, salt=salt)
    item = store.get(target, 0.0)
    assert item is not None
    assert (item.k, item.salt, item.seq, item.v_bencoded) == (KP.public_key, salt, 9, v)
    assert item.sig == KP.sign_item(v, 9, salt)


def test_salts_are_separate_items() -> None:
    store = make_store()
    t1 = mput(store, v=b"i1e", seq=7)
    t2 = mput(store, v=b"i2e", seq=1, salt=b"a")
    t3 = mput(store, v=b"i3e", seq=1, salt=b"b")
    assert len({t1, t2, t3}) == 3 and len(store) == 3
    assert store.get(t2, 0.0).v_bencoded == b"i2e"  # type: ignore[union-attr]


def test_expired_item_no_longer_constrains_seq() -> None:
    store = make_store()
    target = mput(store, v=b"i5e", seq=5, now=0.0)
    mput(store, v=b"i1e", seq=1, now=TTL, cas=4)  # the seq-5 item has expired
    item = store.get(target, TTL)
    assert item is not None and item.seq == 1 and item.put_count == 1


# --- bounds and eviction -----------------------------------------------------------------


def test_eviction_order_and_202() -> None:
    backend = DictBackend()
    store = make_store(backend, max_items=3)
    far = values_with_closeness(0, 0, 8)  # usefulness 0 + bitlen(puts)
    near = values_with_closeness(8, 160, 1)[0]
    a, c, d, e, f, g, h = far[:7]
    ta = store.put_immutable(a, 1.0)
    tb = store.put_immutable(near, 2.0)
    tc = store.put_immutable(c, 3.0)
    # Full: a newcomer as useful as a and c evicts the older of them, a.
    td = store.put_immutable(d, 4.0)
    assert store.get(ta, 4.0) is None and {tb, tc, td} <= {i.target for i in store}
    assert ta in backend.deletes and ta not in backend.items
    # Popularity: four puts of d (3 bits) outweigh being put more recently.
    for t in (5.0, 6.0, 7.0):
        store.put_immutable(d, t)
    te = store.put_immutable(e, 8.0)  # evicts c (score 1), not d (score 3)
    assert store.get(tc, 8.0) is None and store.get(td, 8.0) is not None
    tf = store.put_immutable(f, 9.0)  # evicts e, the only other score-1 item
    assert store.get(te, 9.0) is None
    store.put_immutable(f, 10.0)  # f: 2 puts, score 2
    # Now every stored item is more useful than a far newcomer: refuse, evict nothing.
    saves = len(backend.saves)
    expect(202, lambda: store.put_immutable(g, 11.0))
    assert {i.target for i in store} == {tb, td, tf} and len(backend.saves) == saves
    assert set(backend.items) == {tb, td, tf}
    # A near newcomer is more useful than f and d: it gets in.
    tn = store.put_immutable(values_with_closeness(4, 160, 1, start=10_000)[0], 12.0)
    assert store.get(tn, 12.0) is not None and store.get(tf, 12.0) is None
    assert len(store) == 3
    # Expired items make room before anything is evicted.
    th = store.put_immutable(h, 2.0 + TTL)  # b has expired by now
    assert store.get(th, 2.0 + TTL) is not None and tb not in backend.items
    assert store.get(td, 2.0 + TTL) is not None and store.get(tn, 2.0 + TTL) is not None


def test_byte_bound() -> None:
    backend = DictBackend()
    store = make_store(backend, max_bytes=3000, max_items=1000)
    small = values_with_closeness(0, 0, 10, size=100)
    big = values_with_closeness(0, 0, 2, size=1000, start=50_000)
    small_targets = [store.put_immutable(v, float(i)) for i, v in enumerate(small)]
    assert store.bytes_used == 10 * 120
    tb1 = store.put_immutable(big[0], 20.0)
    assert store.bytes_used == 10 * 120 + 1020 and len(store) == 11
    tb2 = store.put_immutable(big[1], 21.0)  # needs 240 bytes: the two oldest smalls go
    assert store.bytes_used == 3000 and len(store) == 10
    assert [store.get(t, 21.0) is None for t in small_targets[:3]] == [True, True, False]
    assert store.get(tb1, 21.0) is not None and store.get(tb2, 21.0) is not None
    assert set(backend.items) == {i.target for i in store}
    assert store.bytes_used == sum(20 + len(i.v_bencoded) for i in store)


def test_mutable_growth_evicts_others() -> None:
    store = make_store(max_bytes=1500, own_id=mutable_target(KP.public_key))
    fillers = values_with_closeness(0, 0, 4, size=100)
    mine = mput(store, v=b"i1e", seq=1)  # closeness 160: the most useful item here
    for i, v in enumerate(fillers):
        store.put_immutable(v, float(i))
    used = store.bytes_used
    assert used == 20 + 97 + 3 + 4 * 120
    mput(store, v=value_of_size(3, 1000), seq=2, now=10.0)  # grows by 997 bytes
    assert store.get(mine, 10.0).seq == 2  # type: ignore[union-attr]
    # 20 + 97 + 1000 bytes for the item leave room for 3 of the 4 fillers (120 bytes each).
    assert len(store) == 4 and store.bytes_used == 1117 + 3 * 120


def test_set_own_id_rescores() -> None:
    store = make_store(max_items=2)
    far = values_with_closeness(0, 0, 3)
    t0 = store.put_immutable(far[0], 0.0)
    t1 = store.put_immutable(far[1], 1.0)
    store.set_own_id(t0)  # item 0 is now as close as can be
    store.put_immutable(far[2], 2.0)
    assert store.get(t0, 2.0) is not None and store.get(t1, 2.0) is None
    with pytest.raises(InvalidArgument):
        store.set_own_id(b"short")


def test_constructor_checks() -> None:
    for kw in ({"own_id": b"x"}, {"max_items": 0}, {"max_bytes": 1000}, {"ttl": 0.0}):
        with pytest.raises(InvalidArgument):
            make_store(**kw)


# --- the backend -------------------------------------------------------------------------


def test_writes_are_queued_in_order_and_only_when_persistent() -> None:
    store = make_store(None)
    store.put_immutable(b"i1e", 0.0)
    assert store.take_writes() == []  # an in-memory store queues nothing
    store = ItemStore(own_id=ZERO_ID, persistent=True)
    target = store.put_immutable(b"i1e", 0.0)
    mput(store, seq=2)
    expect(302, lambda: mput(store, seq=1))  # refused: queues nothing
    (t1, saved), (t2, _) = store.take_writes()
    assert (t1, saved) == (target, store.get(target, 0.0)) and t2 != target
    assert store.take_writes() == []  # taken once
    store.expire(TTL + 1.0)
    assert sorted(store.take_writes()) == sorted([(target, None), (t2, None)])


def test_load_from_backend() -> None:
    backend = DictBackend()
    writer = make_store(backend)
    t_old = writer.put_immutable(b"3:old", 0.0)
    t_imm = writer.put_immutable(b"3:new", 5000.0)
    t_mut = mput(writer, v=b"i9e", seq=9, salt=b"q", now=6000.0)
    mput(writer, v=b"i9e", seq=9, salt=b"q", now=6500.0)  # put_count 2
    # Malformed rows (as if the file had been edited) are dropped, not trusted.
    bad = StoredItem(b"\x01" * 20, b"i1e", None, b"", None, None, 6000.0, 1)  # wrong target
    backend.items[bad.target] = bad
    reader = make_store(backend)
    assert reader.load(backend.load_all(), now=7300.0) == 2
    assert reader.get(t_old, 7300.0) is None
    assert t_old not in backend.items and bad.target not in backend.items
    assert reader.get(t_imm, 7300.0) == writer.get(t_imm, 7300.0)
    assert reader.get(t_mut, 7300.0) == writer.get(t_mut, 7300.0)
    assert reader.get(t_mut, 7300.0).put_count == 2  # type: ignore[union-attr]
    assert reader.bytes_used == writer.bytes_used - 25
    # Loaded items go on obeying the rules.
    expect(302, lambda: mput(reader, v=b"i8e", seq=8, salt=b"q", now=7301.0))


def test_load_respects_bounds() -> None:
    backend = DictBackend()
    writer = make_store(backend)
    values = values_with_closeness(0, 0, 5)
    targets = [writer.put_immutable(v, float(i)) for i, v in enumerate(values)]
    reader = make_store(backend, max_items=3)
    assert reader.load(backend.load_all(), now=10.0) >= 3
    assert len(reader) == 3 and len(backend.items) == 3
    assert {i.target for i in reader} == set(targets[2:])  # the newest kept
    assert make_store().load([], now=0.0) == 0


# --- invariants under random operations --------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["imm", "mut", "expire"]),
        st.integers(0, 30),  # which value / key
        st.integers(1, 1000),  # value size
        st.floats(0, 3000),  # time step
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(ops=OPS)
def test_invariants(ops: list[tuple[str, int, int, float]]) -> None:
    backend = DictBackend()
    store = make_store(backend, max_items=8, max_bytes=4000)
    seqs: dict[int, int] = {}
    now = 0.0
    for kind, tag, size, step in ops:
        now += step
        try:
            if kind == "imm":
                v = value_of_size(tag, max(size, 5))
                target = store.put_immutable(v, now)
                assert store.get(target, now).v_bencoded == v  # type: ignore[union-attr]
            elif kind == "mut":
                seqs[tag] = seqs.get(tag, 0) + 1
                v = value_of_size(tag, max(size, 5))
                target = mput(store, v=v, seq=seqs[tag], salt=b"%d" % tag, now=now)
                assert store.get(target, now).seq == seqs[tag]  # type: ignore[union-attr]
            else:
                store.expire(now)
        except KRPCError as exc:
            assert exc.code == 202
        items = list(store)
        assert len(items) == len(store) <= 8
        assert store.bytes_used == sum(
            20 + len(i.v_bencoded) + (97 + len(i.salt) if i.is_mutable else 0) for i in items
        )
        assert store.bytes_used <= 4000
        assert {i.target: i for i in items} == backend.items


# --- memory ------------------------------------------------------------------------------


def test_memory_per_item() -> None:
    """A 1000-byte immutable item costs at most 1.3 KB, value included."""
    n = 20_000
    values = [bencode(b"%08d" % i + b"." * 988) for i in range(n)]
    assert len(values[0]) == 1000
    store = make_store(max_items=n, max_bytes=10**9)
    gc.collect()
    tracemalloc.start()
    try:
        for i, v in enumerate(values):
            store.put_immutable(v, float(i))
        gc.collect()
        overhead, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(store) == n
    per_item = overhead / n + values[0].__sizeof__()  # the value itself was made before
    assert per_item <= 1300, per_item


# -- per-source quota ---------------------------------------------------------------------


def test_quota_per_putting_source() -> None:
    store = make_store(max_items_per_source=3)
    targets = [store.put_immutable(f"i{n}e".encode(), 0.0, source=f"45.1.1.{n}") for n in range(3)]
    with pytest.raises(KRPCError) as exc:
        store.put_immutable(b"i99e", 0.0, source="45.1.1.200")  # same /24
    assert exc.value.code == KRPCError.SERVER
    assert len(store) == 3
    # refreshing a stored item is free, for its putter or anyone
    assert store.put_immutable(b"i0e", 1.0, source="45.1.1.0") == targets[0]
    store.put_immutable(b"i1e", 1.0, source="45.1.1.9")
    # another /24, local putters and callers that name no source are not limited
    store.put_immutable(b"i99e", 0.0, source="45.1.2.1")
    for n in range(5):
        store.put_immutable(f"i{100 + n}e".encode(), 0.0, source="10.0.0.1")
        store.put_immutable(f"i{200 + n}e".encode(), 0.0)
    assert len(store) == 14
    # expired items give the quota back
    store.expire(store.ttl + 2.0)
    store.put_immutable(b"i300e", store.ttl + 2.0, source="45.1.1.3")


def test_quota_per_source_mutable_and_ipv6() -> None:
    store = make_store(max_items_per_source=2)
    for n in range(2):
        kp = KeyPair.generate()
        sig = kp.sign_item(b"i1e", 1, b"")
        store.put_mutable(
            kp.public_key, b"", 1, sig, b"i1e", None, 0.0, source=f"2001:db8::{n + 1}"
        )
    kp = KeyPair.generate()
    sig = kp.sign_item(b"i1e", 1, b"")
    with pytest.raises(KRPCError):
        store.put_mutable(kp.public_key, b"", 1, sig, b"i1e", None, 0.0, source="2001:db8::ff")
    store.put_mutable(kp.public_key, b"", 1, sig, b"i1e", None, 0.0, source="2001:db8:0:1::1")
    assert len(store) == 3


def test_flood_of_items_leaves_room_for_honest_puts() -> None:
    # the honest item is one we are a storing node for: its target is near our id
    honest = b"5:hello"
    store = make_store(max_items=200, max_items_per_source=10, own_id=hashlib.sha1(honest).digest())
    stored = 0
    for n in range(2000):
        try:
            store.put_immutable(f"i{n}e".encode(), 0.0, source=f"45.{n % 50}.0.1")
            stored += 1
        except KRPCError:
            pass
    assert len(store) == 200 and stored < 2000  # each source held at most 10 at a time
    store.put_immutable(honest, 1.0, source="46.0.0.1")  # a fresh putter
    assert store.get(hashlib.sha1(honest).digest(), 1.0) is not None
