"""The command line on both address families: ``mldht node --bind`` given twice, and
one-shot commands that take ``[addr]:port`` (they bind the families they are given)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mldht.cli import build_parser
from mldht.cli_support import bind_addresses

from .test_cli import HEX, NodeProcess, mldht
from .test_dual import _needs_ipv6

__all__ = ["_needs_ipv6"]  # the autouse fixture: skip without ::1, fail under CI


def test_dual_listening_line_and_ipv6_one_shots(tmp_path: Path) -> None:
    node = NodeProcess("--bind", "127.0.3.2:0", "--bind", "[::1]:0", "--bootstrap", "none")
    try:
        first = json.loads(node.line())
        assert first["event"] == "listening"
        v4, v6 = first["addresses"]
        assert first["address"] == v4 and v4.startswith("127.0.3.2:") and v6.startswith("[::1]:")
        # ping over each family: one id (loopback is exempt from BEP 42)
        for addr in (v4, v6):
            out = mldht("ping", addr, "--json", "--timeout", "5")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == {"address": addr, "id": first["id"]}
        # announce over IPv6 only (the one-shot binds [::]:0 for an IPv6 bootstrap node)
        common = ["--timeout", "10"]
        out = mldht("announce", HEX, "--port", "7777", "--bootstrap", v6, *common)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) >= 1
        # a one-shot given both families looks in both and finds the IPv6 peer
        out = mldht("get-peers", HEX, "--json", "--bootstrap", v4, "--bootstrap", v6, *common)
        assert out.returncode == 0, out.stderr
        assert "[::1]:7777" in json.loads(out.stdout)["peers"]
        # the crawler binds the family of its first contacts: [::]:0 for [::1]
        db = str(tmp_path / "crawl.sqlite")
        crawl = ["--duration", "3", "--db", db, "--progress", "none", "--query-timeout", "1"]
        out = mldht("crawl", "--bootstrap", v6, *crawl)
        assert out.returncode == 0, out.stderr
        assert re.search(r"^responding: +1\b", out.stdout, re.MULTILINE), out.stdout
        status, err = node.stop()
        assert status == 0 and "Traceback" not in err, err
    finally:
        node.kill()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["node", "--bind", "127.0.0.1:0", "--bind", "127.0.0.2:0"], "argument --bind"),
        (["ping", "[::1]:1", "--bind", "[::1]:0", "--bind", "[::]:0"], "argument --bind"),
    ],
)
def test_bind_twice_in_one_family_is_a_usage_error(argv: list[str], message: str) -> None:
    out = mldht(*argv)
    assert out.returncode == 2
    assert message in out.stderr and "one address per family" in out.stderr


def test_one_shot_binds_the_families_it_is_given() -> None:
    parser = build_parser()

    def binds(*argv: str) -> list[tuple[str, int]]:
        return bind_addresses(parser.parse_args(list(argv)))

    assert binds("ping", "[::1]:5") == [("::", 0)]
    assert binds("ping", "127.0.0.1:5") == [("0.0.0.0", 0)]
    assert binds("get-peers", HEX) == [("0.0.0.0", 0)]  # the public routers: IPv4
    assert binds("get-peers", HEX, "--bootstrap", "[::1]:5") == [("::", 0)]
    both = binds("announce", HEX, "--bootstrap", "[::1]:5", "--bootstrap", "router.example:6")
    assert both == [("0.0.0.0", 0), ("::", 0)]
    assert binds("ping", "[::1]:5", "--bind", "[::1]:7") == [("::1", 7)]
    assert binds("node", "--bind", "[::]:6881") == [("::", 6881)]
    assert binds("node") == [("0.0.0.0", 6881), ("::", 6881)]  # this host has IPv6
