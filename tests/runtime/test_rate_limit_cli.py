"""``mldht node --rate-limit QPS``: the per-source budget reaches the node (0 turns it off)."""

from __future__ import annotations

import socket
import time

from mldht.core.bencode import bencode

from .test_cli import running_node

BURST = 40


def _answered(addr: str, source: str) -> int:
    """Send BURST pings at once from one socket; how many were answered (within 3 s)."""
    host, port = addr.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for i in range(BURST):
            a = {b"id": b"r" * 20}
            s.sendto(
                bencode({b"a": a, b"q": b"ping", b"t": b"%03d" % i, b"y": b"q"}), (host, int(port))
            )
        s.settimeout(0.2)
        got: set[bytes] = set()
        deadline = time.monotonic() + 3.0
        while len(got) < BURST and time.monotonic() < deadline:
            try:
                data = s.recv(2048)
            except TimeoutError:
                continue
            if b"1:y1:r" in data:
                got.add(data)
    return len(got)


def test_rate_limit_reaches_the_node_and_zero_turns_it_off() -> None:
    with (
        running_node("--bind", "127.0.2.60:0", "--bootstrap", "none", "--rate-limit", "2") as (
            _,
            _,
            limited,
        ),
        running_node("--bind", "127.0.2.61:0", "--bootstrap", "none", "--rate-limit", "0") as (
            _,
            _,
            unlimited,
        ),
    ):
        # A budget of 2/s has a burst of 4: the rest of the burst is dropped unread.
        assert _answered(limited, "127.0.2.62") <= 6
        assert _answered(unlimited, "127.0.2.63") == BURST
