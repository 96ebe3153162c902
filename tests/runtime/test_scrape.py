"""BEP 33 scrape through the runtime and the command line, on a loopback Testnet:
``DHTNode.announce(seed=True)``, ``mldht announce --seed`` and ``mldht scrape --json``."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest

from mldht import ScrapeResult
from mldht.core.bep33 import scrape_bloom
from mldht.core.scrape import estimate_count
from mldht.runtime import DHTNode, format_addr
from mldht.testnet import Testnet

from .test_cli import REPO, _env, mldht

FAST: dict[str, Any] = {"query_timeout": 0.5, "soft_timeout": 0.2, "lookup_timeout": 5.0}
HEX = "5c7a9e0f1b2d3c4e5f60718293a4b5c6d7e8f901"
INFOHASH = bytes.fromhex(HEX)


async def _cli(*args: str) -> tuple[int, str, str]:
    """``python -m mldht ARGS`` as a subprocess (bounded), while this process's nodes serve."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "mldht", *args], cwd=REPO, env=_env(), check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_scrape_counts_what_was_announced_with_and_without_seed() -> None:
    """10 nodes announce (4 as seeds through the API), a one-shot ``announce --seed`` adds
    a fifth seed; ``mldht scrape --json`` and ``DHTNode.scrape`` count them: exactly the
    estimate of the announced IPs' filters, and within its error of the truth."""
    async with Testnet(10, prefix="127.83", **FAST) as net:
        await net.wait_tables()
        seeds: list[str] = []
        peers: list[str] = []
        for i, node in enumerate(net.nodes):
            seed = i % 3 == 0
            assert await node.announce(INFOHASH, 6000 + i, seed=seed) >= 1
            (seeds if seed else peers).append(node.address[0])
        boot = ["--bootstrap", format_addr(net.bootstrap_address)]
        common = ("--timeout", "20", "--json", *boot)
        code, out, err = await _cli(
            "announce", HEX, "--seed", "--port", "7000", "--bind", "127.83.9.1:0", *common
        )
        assert code == 0, err
        assert json.loads(out)["accepted"] >= 1
        seeds.append("127.83.9.1")

        code, out, err = await _cli("scrape", HEX, "--bind", "127.83.9.2:0", *common)
        assert code == 0, err
        want = {
            "seeds": estimate_count(scrape_bloom(seeds)),
            "peers": estimate_count(scrape_bloom(peers)),
        }
        assert json.loads(out) == want
        assert (len(seeds), len(peers)) == (5, 6)
        assert abs(want["seeds"] - 5) <= 1 and abs(want["peers"] - 6) <= 1

        code, out, err = await _cli("scrape", HEX, "--bind", "127.83.9.2:0", *boot)
        assert (code, out) == (0, f"{want['seeds']} seeds, {want['peers']} peers\n"), err

        async with DHTNode(bind=("127.83.9.3", 0), bootstrap=net.bootstrap, **FAST) as node:
            result = await node.scrape(HEX)
        assert isinstance(result, ScrapeResult)
        assert result.bf_seeds == scrape_bloom(seeds) and result.bf_peers == scrape_bloom(peers)
        assert result.nodes >= 8 and not result.saturated

        # nobody announced this one: zero, exit status 0 (nodes answered)
        code, out, err = await _cli("scrape", "00" * 20, "--bind", "127.83.9.2:0", *common)
        assert code == 0 and json.loads(out) == {"seeds": 0, "peers": 0}, err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["scrape", "xyz"], "argument INFOHASH"),
        (["scrape", "ab" * 19], "argument INFOHASH"),
        (["scrape"], "INFOHASH"),
        (["scrape", HEX, "--timeout", "0"], "argument --timeout"),
        (["scrape", HEX, "--bind", "nowhere"], "argument --bind"),
        (["announce", HEX, "--seed=yes"], "argument --seed"),
    ],
)
def test_scrape_usage_errors_name_the_argument_and_exit_2(args: list[str], named: str) -> None:
    done = mldht(*args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mldht: error: ") and named in lines[0]
    done = mldht(*args, "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["exit"] == 2 and named in json.loads(done.stdout)["error"]


def test_scrape_with_nobody_to_ask_exits_1() -> None:
    done = mldht("scrape", HEX, "--bootstrap", "none", "--bind", "127.0.0.1:0", "--timeout", "3")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("mldht: ") and len(done.stderr.splitlines()) == 1
