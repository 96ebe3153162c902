"""Observability from the command line: ``mldht node --metrics`` scraped while it works,
``--log-format json``; and the typed configuration (mypy, the README's table)."""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import urllib.request
from pathlib import Path
from typing import get_type_hints

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mldht.core.bencode import bencode
from mldht.core.config import NodeConfig
from mldht.core.tunables import Tunables

from .test_cli import REPO, mldht, running_node

sys.path.insert(0, str(REPO / "tools"))
import tunables_table

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _ping(address: str, count: int) -> int:
    """Send ``count`` pings to a node on loopback; returns how many it answered."""
    host, port = address.rsplit(":", 1)
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.44", 0))
        sock.settimeout(5)
        for i in range(count):
            t = i.to_bytes(2, "big")
            q = {b"a": {b"id": b"\x42" * 20}, b"q": b"ping", b"t": t, b"y": b"q"}
            sock.sendto(bencode(q), (host, int(port)))
            try:
                sock.recvfrom(2048)
                answered += 1
            except TimeoutError:
                pass
    return answered


def test_mldht_node_metrics_are_scraped_and_counters_move() -> None:
    args = ("--bind", "127.0.0.43:0", "--bootstrap", "none", "--metrics", "127.0.0.43:0")
    with running_node(*args) as (node, _, address):
        url = node.event("metrics")["url"]
        assert url.startswith("http://127.0.0.43:") and url.endswith("/metrics")
        before = _scrape(url)
        assert _ping(address, 5) == 5
        after = _scrape(url)
        ping = ("mldht_queries_received_total", (("method", "ping"),))
        assert after[ping] - before.get(ping, 0.0) == 5
        received = ("mldht_bytes_received_total", ())
        assert after[received] > before[received]
        sent = ("mldht_responses_sent_total", ())
        assert after[sent] - before[sent] == 5
        for name in (
            "mldht_queries_sent_total",
            "mldht_query_timeouts_total",
            "mldht_responses_received_total",
            "mldht_bytes_sent_total",
            "mldht_peer_store_infohashes",
            "mldht_item_store_items",
        ):
            assert any(key[0] == name for key in after), name
        assert ("mldht_dropped_total", (("reason", "malformed"),)) in after
        assert ("mldht_routing_table_nodes", (("family", "ipv4"),)) in after
        node.stop()


def test_log_format_json_gives_one_object_per_line() -> None:
    done = mldht("ping", "127.0.0.45:9", "--timeout", "1", "--log-format", "json", "-vv")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, done.stderr
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert all(line.startswith(("{", "mldht: no answer")) for line in lines), done.stderr
    bad = mldht("ping", "127.0.0.45:9", "--log-format", "xml")
    assert bad.returncode == 2 and "--log-format" in bad.stderr


def test_mypy_rejects_a_misspelt_tunable_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(REPO))  # this checkout's mldht, not an installed one
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from mldht import DHTNode, NodeConfig\n"
        "good = DHTNode(alpha=3, config=NodeConfig(k=8))\n"
        "bad = DHTNode(alpah=3)\n"
        "wrong = DHTNode(alpha='3')\n"
    )
    out, err, status = api.run(["--strict", "--cache-dir", str(REPO / ".mypy_cache"), str(snippet)])
    assert status == 1, out + err
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    assert "snippet.py:3:" in errors[0] and '"alpah"' in errors[0]
    assert "snippet.py:4:" in errors[1] and '"alpha"' in errors[1]


def test_tunables_match_node_config() -> None:
    fields = {f.name for f in dataclasses.fields(NodeConfig)}
    assert set(Tunables.__annotations__) == fields - {"read_only"}
    config_hints = get_type_hints(NodeConfig)
    for name, hint in get_type_hints(Tunables).items():
        assert hint == config_hints[name], name


def test_readme_lists_every_tunable_as_generated() -> None:
    readme = (REPO / "README.md").read_text()
    shown = tunables_table.readme_table(readme)
    assert shown is not None, "README.md lacks the tunables markers"
    assert shown == tunables_table.table(), "run: python tools/tunables_table.py --write"
    names = {row[0] for row in tunables_table.rows()}
    assert names == {f.name for f in dataclasses.fields(NodeConfig)}
    assert all(meaning for _, _, meaning in tunables_table.rows())


def test_mldht_node_events_prints_announces_and_joins() -> None:
    args = ("--bind", "127.0.0.46:0", "--bootstrap", "none", "--events")
    with running_node(*args) as (node, _, address):
        infohash = "cd" * 20
        announced = mldht("announce", infohash, "--port", "5555", "--bootstrap", address)
        assert announced.returncode == 0, announced.stderr
        event = node.event("peer_announced")
        assert event["info_hash"] == infohash and event["peer"].endswith(":5555")
        joiner = ("--bind", "127.0.0.47:0", "--bootstrap", address, "--json")
        with running_node(*joiner) as (other, other_id, other_address):
            added = node.event("node_added")
            assert added["node"] == {"id": other_id, "address": other_address}
            other.stop()
        node.stop()
