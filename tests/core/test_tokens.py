"""Write tokens: binding to IP and target, rotation on an injected clock."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mldht.core.tokens import TOKEN_LEN, TokenManager
from mldht.errors import InvalidArgument

IP = "203.0.113.7"
TARGET = bytes(range(20))


def manager(now: float = 0.0, seed: int = 1) -> TokenManager:
    return TokenManager(rng=random.Random(seed), now=now)


def test_valid_right_after_issue() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    assert isinstance(tok, bytes) and len(tok) == TOKEN_LEN == 8
    assert tm.verify(tok, IP, TARGET, 0.0)
    assert tm.verify(tok, IP, TARGET, 1.0)


def test_issued_at_start_of_period_lives_ten_minutes() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    assert tm.verify(tok, IP, TARGET, 299.999)
    assert tm.verify(tok, IP, TARGET, 300.0)  # now under the previous secret
    assert tm.verify(tok, IP, TARGET, 599.999)
    assert not tm.verify(tok, IP, TARGET, 600.0)
    assert not tm.verify(tok, IP, TARGET, 601.0)


def test_issued_at_end_of_period_lives_five_minutes() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 299.999)
    assert tm.verify(tok, IP, TARGET, 300.0)
    assert tm.verify(tok, IP, TARGET, 599.999)
    assert not tm.verify(tok, IP, TARGET, 600.0)


def test_rotation_grid_starts_at_construction_time() -> None:
    tm = manager(now=1000.0)
    assert tm.next_deadline() == 1300.0
    tok = tm.issue(IP, TARGET, 1000.0)
    assert tm.verify(tok, IP, TARGET, 1599.5)
    assert not tm.verify(tok, IP, TARGET, 1600.0)
    assert tm.next_deadline() == 1900.0


def test_same_token_within_a_period_new_one_after_rotation() -> None:
    tm = manager()
    t1 = tm.issue(IP, TARGET, 10.0)
    assert tm.issue(IP, TARGET, 299.0) == t1
    t2 = tm.issue(IP, TARGET, 300.0)
    assert t2 != t1
    assert tm.verify(t1, IP, TARGET, 300.0) and tm.verify(t2, IP, TARGET, 300.0)
    assert tm.verify(t2, IP, TARGET, 899.0)
    assert not tm.verify(t2, IP, TARGET, 900.0)


@settings(max_examples=200, deadline=None)
@given(
    issued=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    delay=st.floats(min_value=0, max_value=1200, allow_nan=False),
)
def test_validity_window_property(issued: float, delay: float) -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, issued)
    period_start = (issued // 300) * 300
    expected = issued + delay < period_start + 600
    assert tm.verify(tok, IP, TARGET, issued + delay) is expected
    # Whatever the rotation phase: always valid for 5 minutes, never after 10.
    if delay < 300:
        assert expected
    if delay >= 600:
        assert not expected


def test_long_gap_invalidates_everything() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    assert not tm.verify(tok, IP, TARGET, 1e6)
    fresh = tm.issue(IP, TARGET, 1e6)
    assert fresh != tok
    assert tm.verify(fresh, IP, TARGET, 1e6 + 1)


def test_clock_going_backwards_changes_nothing() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 400.0)
    assert tm.verify(tok, IP, TARGET, 100.0)
    assert tm.verify(tok, IP, TARGET, 899.0)
    assert not tm.verify(tok, IP, TARGET, 900.0)


def test_bound_to_ip_not_port() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    assert not tm.verify(tok, "203.0.113.8", TARGET, 0.0)
    assert not tm.verify(tok, "2001:db8::7", TARGET, 0.0)
    # A dual-stack socket's mapped form is the same host.
    assert tm.verify(tok, "::ffff:203.0.113.7", TARGET, 0.0)
    tok6 = tm.issue("2001:db8::7", TARGET, 0.0)
    assert tm.verify(tok6, "2001:db8:0::7", TARGET, 0.0)
    assert not tm.verify(tok6, "2001:db8::8", TARGET, 0.0)


def test_bound_to_target() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    other = bytes(19) + b"\x01"
    assert not tm.verify(tok, IP, other, 0.0)
    assert tm.issue(IP, other, 0.0) != tok


def test_wrong_length_and_garbage_rejected() -> None:
    tm = manager()
    tok = tm.issue(IP, TARGET, 0.0)
    assert not tm.verify(tok[:-1], IP, TARGET, 0.0)
    assert not tm.verify(tok + b"\x00", IP, TARGET, 0.0)
    assert not tm.verify(b"", IP, TARGET, 0.0)
    assert not tm.verify(tok, "not-an-ip", TARGET, 0.0)
    flipped = bytes([tok[0] ^ 1]) + tok[1:]
    assert not tm.verify(flipped, IP, TARGET, 0.0)
    with pytest.raises(InvalidArgument):
        tm.issue("not-an-ip", TARGET, 0.0)


def test_token_from_another_manager_rejected() -> None:
    a, b = manager(seed=1), manager(seed=2)
    tok = a.issue(IP, TARGET, 0.0)
    assert not b.verify(tok, IP, TARGET, 0.0)


def test_distinct_tokens_across_ips() -> None:
    tm = manager()
    toks = {tm.issue(f"198.51.100.{i}", TARGET, 0.0) for i in range(256)}
    assert len(toks) == 256


def test_secret_source_is_called_per_rotation() -> None:
    counter = itertools.count()
    calls: list[int] = []

    def source() -> bytes:
        n = next(counter)
        calls.append(n)
        return n.to_bytes(16, "big")

    a = TokenManager(source, now=0.0)
    assert len(calls) == 2  # current and a fresh "previous"
    tok = a.issue(IP, TARGET, 0.0)
    a.rotate(300.0)
    assert len(calls) == 3
    assert a.verify(tok, IP, TARGET, 300.0)
    # Same secrets, same tokens: the token is a pure function of secret, IP and target.
    b = TokenManager(itertools.repeat(bytes(16)).__next__, now=0.0)
    c = TokenManager(itertools.repeat(bytes(16)).__next__, now=0.0)
    assert b.issue(IP, TARGET, 0.0) == c.issue(IP, TARGET, 0.0)


def test_custom_length_and_period() -> None:
    tm = TokenManager(rng=random.Random(5), now=0.0, rotate_every=10.0, token_len=4)
    tok = tm.issue(IP, TARGET, 5.0)
    assert len(tok) == 4
    assert tm.verify(tok, IP, TARGET, 19.9)
    assert not tm.verify(tok, IP, TARGET, 20.0)


def test_constructor_checks() -> None:
    with pytest.raises(InvalidArgument):
        TokenManager(now=0.0)
    with pytest.raises(InvalidArgument):
        TokenManager(lambda: bytes(16), rng=random.Random(1))
    with pytest.raises(InvalidArgument):
        TokenManager(rng=random.Random(1), rotate_every=0.0)
    with pytest.raises(InvalidArgument):
        TokenManager(rng=random.Random(1), token_len=2)
    with pytest.raises(InvalidArgument):
        TokenManager(lambda: b"short")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_forged_tokens_fail(token: bytes) -> None:
    tm = manager()
    real = tm.issue(IP, TARGET, 0.0)
    assert tm.verify(token, IP, TARGET, 0.0) is (token == real)
