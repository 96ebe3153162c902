"""Address classification: bogons, local-network addresses, /24 and /64 sources."""

from __future__ import annotations

import pytest

from mldht.core.netaddr import (
    BOGON,
    LOCAL,
    PUBLIC,
    classify,
    is_acceptable,
    local_allowed,
    source_key,
)


@pytest.mark.parametrize(
    ("ip", "cls"),
    [
        ("0.0.0.0", BOGON),
        ("0.255.1.1", BOGON),
        ("224.0.0.1", BOGON),
        ("239.255.255.250", BOGON),
        ("240.0.0.1", BOGON),
        ("255.255.255.255", BOGON),
        ("::", BOGON),
        ("ff02::1", BOGON),
        ("ff05::2", BOGON),
        ("::ffff:224.0.0.1", BOGON),
        ("not an ip", BOGON),
        ("", BOGON),
        ("127.0.0.1", LOCAL),
        ("10.1.2.3", LOCAL),
        ("172.16.0.1", LOCAL),
        ("172.31.255.255", LOCAL),
        ("192.168.1.1", LOCAL),
        ("100.64.0.1", LOCAL),
        ("100.127.255.254", LOCAL),
        ("169.254.1.1", LOCAL),
        ("::1", LOCAL),
        ("fe80::1", LOCAL),
        ("fd00::5", LOCAL),
        ("fc00::1", LOCAL),
        ("::ffff:10.0.0.1", LOCAL),
        ("1.2.3.4", PUBLIC),
        ("172.32.0.1", PUBLIC),
        ("100.128.0.1", PUBLIC),
        ("223.255.255.255", PUBLIC),
        ("2001:db8::1", PUBLIC),
        ("2a00::1", PUBLIC),
        ("::ffff:1.2.3.4", PUBLIC),
    ],
)
def test_classify(ip: str, cls: int) -> None:
    assert classify(ip) == cls


def test_acceptable_by_scope() -> None:
    assert local_allowed(None) and local_allowed(True) and not local_allowed(False)
    assert is_acceptable(("1.2.3.4", 1), False)
    assert not is_acceptable(("1.2.3.4", 0), True)
    assert not is_acceptable(("1.2.3.4", 65536), True)
    assert is_acceptable(("127.0.0.1", 6881), True)
    assert not is_acceptable(("127.0.0.1", 6881), False)
    assert not is_acceptable(("192.168.0.1", 6881), False)
    assert not is_acceptable(("255.255.255.255", 6881), True)


def test_source_key() -> None:
    assert source_key("1.2.3.4") == source_key("1.2.3.200") == bytes([1, 2, 3])
    assert source_key("1.2.4.4") != source_key("1.2.3.4")
    assert source_key("::ffff:1.2.3.4") == bytes([1, 2, 3])
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert len(source_key("2001:db8::1") or b"") == 8
    for ip in ("10.0.0.1", "127.0.0.1", "fe80::1", "224.0.0.1", "junk"):
        assert source_key(ip) is None
