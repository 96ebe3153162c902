"""How the ``mldht`` command line fails: one line (one JSON object with ``--json``), the
right exit status, never a traceback; ``--bootstrap none`` and ``--version``.

Everything runs on loopback with short timeouts; every network command is given
``--bootstrap`` (a closed local port, a local node, or ``none``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mldht.core.bep44 import KeyPair
from mldht.runtime.keys import save_keypair
from mldht.runtime.node import DHTNode

from . import test_cli as cli_tests

REPO = Path(__file__).resolve().parents[2]
HEX = "0123456789abcdef0123456789abcdef01234567"
PUBKEY = "cd" * 32
LISTENING = re.compile(r'^\{"event": "listening", "id": "[0-9a-f]{40}", "address": "([^"]+)"\}$')
HAVE_PROC = Path("/proc/self").is_dir()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def mldht_all(
    cases: Sequence[Sequence[str]], timeout: float = 60.0
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m mldht ARGS`` for every case at once; their results, in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mldht", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_env(),
        )
        for argv in cases
    ]
    results = []
    try:
        for argv, proc in zip(cases, procs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(list(argv), proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return results


def mldht(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return mldht_all([args], timeout)[0]


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def closed(host: str) -> str:
    """``HOST:PORT`` of a loopback port nobody listens on."""
    return f"{host}:{free_udp_port(host)}"


def failure(out: subprocess.CompletedProcess[str], status: int) -> dict[str, Any]:
    """Check the one shape of a failure with ``--json``; returns the JSON object.

    Exit ``status``, exactly one JSON object on stdout (``error``, ``exit`` and maybe
    ``code``), its line on stderr too, and no traceback.
    """
    what = (out.args, out.returncode, out.stdout, out.stderr)
    assert out.returncode == status, what
    assert "Traceback" not in out.stderr, what
    assert out.stdout.count("\n") == 1, what
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict) and set(doc) <= {"error", "exit", "code"}, what
    assert doc["exit"] == status and isinstance(doc["error"], str), what
    assert "\n" not in doc["error"] and doc["error"] in out.stderr, what
    return doc


def one_line(out: subprocess.CompletedProcess[str], status: int) -> str:
    """Check a failure without ``--json``: nothing on stdout, one ``mldht:`` line on
    stderr (no traceback, no "retrying"); returns that line."""
    what = (out.args, out.returncode, out.stdout, out.stderr)
    assert out.returncode == status and out.stdout == "", what
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("mldht: "), what
    assert "Traceback" not in out.stderr and "retrying" not in out.stderr, what
    return out.stderr.rstrip("\n")


class NodeProcess(cli_tests.NodeProcess):
    """``mldht node --json ARGS`` (see test_cli), with its address and a SIGTERM stop."""

    def address(self) -> str:
        first = self.line()
        match = LISTENING.match(first)
        assert match is not None, f"unexpected first line {first!r}"
        return match.group(1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, str]:
        """SIGTERM; (exit status, stderr) once it exited."""
        return super().stop(sig, timeout)


@contextmanager
def node_process(*args: str) -> Iterator[NodeProcess]:
    node = NodeProcess(*args)
    try:
        yield node
    finally:
        node.kill()


# ------------------------------------------------------------------ bad input: exit 2


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    under_file = a_file / "state"
    dead = closed("127.0.54.1")
    net = ["--bind", "127.0.54.2:0", "--bootstrap", dead, "--timeout", "1"]
    dirs = [str(under_file)] + (["/proc/xyz/state"] if HAVE_PROC else [])
    cases: list[list[str]] = []
    for state in dirs:
        for json_flag in ([], ["--json"]):
            cases.append(["node", *net[:4], "--state-dir", state, *json_flag])
            cases.append(["get-peers", HEX, *net, "--state-dir", state, *json_flag])
    for argv, out in zip(cases, mldht_all(cases), strict=True):
        state = argv[argv.index("--state-dir") + 1]
        reason = "Not a directory" if state == str(under_file) else "No such file or directory"
        expected = f"cannot create state directory {state!r}: {reason}"
        if "--json" in argv:
            assert failure(out, 2) == {"error": expected, "exit": 2}
        else:
            assert one_line(out, 2) == f"mldht: {expected}"
    assert a_file.read_text() == "x"


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc, a directory root cannot write in")
def test_state_dir_that_cannot_be_written() -> None:
    dead = closed("127.0.54.3")
    cases = [
        ["node", "--bind", "127.0.54.4:0", "--bootstrap", "none", "--state-dir", "/proc", "--json"],
        ["get-peers", HEX, "--bind", "127.0.54.4:0", "--bootstrap", dead, "--timeout", "1",
         "--state-dir", "/proc", "--json"],
    ]  # fmt: skip
    for out in mldht_all(cases):
        assert failure(out, 2)["error"].startswith("cannot write in state directory '/proc': ")


def test_key_file_that_cannot_be_created(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    dead = closed("127.0.54.5")
    net = ["--bind", "127.0.54.6:0", "--bootstrap", dead, "--timeout", "1", "--json"]
    paths = [str(a_file / "k.key")] + (["/proc/xyz/k.key"] if HAVE_PROC else [])
    cases: list[list[str]] = []
    for path in paths:
        cases.append(["put", "--mutable", "v", "--key-file", path, *net])
        cases.append(["kv", "set", "k", "v", "--key-file", path, *net])
    cases.append(["kv", "set", "k", "v", "--state-dir", str(a_file / "state"), *net])
    for argv, out in zip(cases, mldht_all(cases), strict=True):
        doc = failure(out, 2)
        if "--key-file" in argv:
            path = argv[argv.index("--key-file") + 1]
            flag = "--key-file"
        else:
            path = str(a_file / "state" / "identity.key")
            flag = "--state-dir"
        reason = "No such file or directory" if path.startswith("/proc/") else "Not a directory"
        assert doc["error"] == f"argument {flag}: cannot create key file {path!r}: {reason}"
        assert out.stderr == f"mldht: error: {doc['error']}\n"
    out = mldht("put", "--mutable", "v", "--key-file", paths[0], *net[:-1])
    assert one_line(out, 2).startswith("mldht: error: argument --key-file: cannot create key")
    assert a_file.read_text() == "x"


def test_usage_errors_with_json_are_json() -> None:
    cases = [
        ["node", "--bind", "x", "--json"],
        ["get-peers", "abc", "--json"],
        ["--json", "frobnicate"],
        ["get-peers", HEX, "--bootstrap", "none", "--bootstrap", "127.0.0.1:1", "--json"],
        ["kv", "get", "k", "--json"],
    ]
    docs = [failure(out, 2) for out in mldht_all(cases)]
    assert docs[0] == {"error": "argument --bind: invalid HOST:PORT 'x'", "exit": 2}
    assert docs[1]["error"].startswith("argument INFOHASH")
    assert "frobnicate" in docs[2]["error"]
    assert docs[3]["error"].startswith("argument --bootstrap: 'none' cannot be combined")
    assert docs[4]["error"].startswith("argument --key-file: a key pair is needed")


# --------------------------------------------------------------- the item database


def test_garbage_item_database_is_set_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    garbage = os.urandom(4096)
    (state / "items.sqlite").write_bytes(garbage)
    with node_process("--bind", "127.0.54.7:0", "--bootstrap", "none",
                      "--state-dir", str(state)) as node:  # fmt: skip
        assert node.address().startswith("127.0.54.7:")
        code, err = node.stop()
    assert code == 0 and "Traceback" not in err, err
    aside = [p for p in state.iterdir() if p.name.startswith("items.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert (state / "items.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"
    warning = [line for line in err.splitlines() if "damaged" in line]
    assert len(warning) == 1, err
    assert str(state / "items.sqlite") in warning[0] and str(aside[0]) in warning[0]


# ------------------------------------------------------------------ network: exit 1


def test_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.54.8", 0))
        bind = f"127.0.54.8:{busy.getsockname()[1]}"
        dead = closed("127.0.54.9")
        cases = [
            ["node", "--bind", bind, "--bootstrap", "none", "--json"],
            ["get-peers", HEX, "--bind", bind, "--bootstrap", dead, "--timeout", "1", "--json"],
            ["get-peers", HEX, "--bind", bind, "--bootstrap", dead, "--timeout", "1"],
        ]
        results = mldht_all(cases)
    expected = f"cannot bind to {bind}: address already in use"
    assert failure(results[0], 1) == {"error": expected, "exit": 1}
    assert failure(results[1], 1) == {"error": expected, "exit": 1}
    assert one_line(results[2], 1) == f"mldht: {expected}"


def test_one_shot_commands_offline_fail_in_one_line(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    save_keypair(KeyPair.from_seed(bytes(range(32))), key)
    dead = closed("127.0.54.10")
    commands = [
        ["get-peers", HEX],
        ["announce", HEX, "--port", "6881"],
        ["put", "v"],
        ["put", "--mutable", "v", "--key-file", str(key)],
        ["get", HEX],
        ["get", "--mutable", PUBKEY],
        ["kv", "get", "k", "--owner", PUBKEY],
        ["kv", "set", "k", "v", "--key-file", str(key)],
    ]
    net = ["--bind", "127.0.54.11:0", "--bootstrap", dead, "--timeout", "1"]
    cases = [[*argv, *net, *flag] for flag in ([], ["--json"]) for argv in commands]
    cases += [["ping", dead, "--bind", "127.0.54.11:0", "--timeout", "1", *flag]
              for flag in ([], ["--json"])]  # fmt: skip
    start = time.monotonic()
    results = mldht_all(cases)
    assert time.monotonic() - start < 45
    for argv, out in zip(cases, results, strict=True):
        if "--json" not in argv:
            one_line(out, 1)
            continue
        doc = failure(out, 1)
        assert set(doc) == {"error", "exit"}, (argv, doc)
        assert out.stderr == f"mldht: {doc['error']}\n", (argv, out.stderr)
        if argv[0] in ("get-peers", "announce", "get", "kv") and argv[1] != "set":
            assert "no DHT node answered" in doc["error"], (argv, doc)


def test_put_refused_by_every_node_carries_the_krpc_code(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    save_keypair(KeyPair.from_seed(bytes(range(32))), key)
    with node_process("--bind", "127.0.54.12:0", "--bootstrap", "none") as node:
        addr = node.address()
        common = ["--bootstrap", addr, "--bind", "127.0.54.13:0", "--timeout", "10"]
        mutable = ["put", "--mutable", "--key-file", str(key), "--salt", "s"]
        out = mldht(*mutable, "--seq", "5", "new", *common, "--json")
        assert out.returncode == 0, out.stderr
        out = mldht(*mutable, "--seq", "4", "stale", *common, "--json")
        doc = failure(out, 1)
        assert doc["code"] == 302 and "302" in doc["error"]
        out = mldht(*mutable, "--seq", "4", "stale", *common)
        assert "302" in one_line(out, 1)


# --------------------------------------------------------- --version, --bootstrap none


def test_version() -> None:
    out = mldht("--version")
    assert out.returncode == 0 and out.stderr == "", out
    assert re.fullmatch(r"mldht \d+\.\d+\S*\n", out.stdout), out.stdout


def test_bootstrap_none() -> None:
    out = mldht("node", "--help")
    assert out.returncode == 0 and "'none'" in out.stdout
    # the first node of a private network: no router, no warning about any
    with node_process("--bind", "127.0.54.14:0", "--bootstrap", "none",
                      "--status-interval", "0.2") as node:  # fmt: skip
        addr = node.address()
        assert json.loads(node.line())["event"] == "status"
        # a one-shot with no router at all: one line, at once
        start = time.monotonic()
        out = mldht("get-peers", HEX, "--bind", "127.0.54.15:0", "--bootstrap", "none")
        assert "no DHT node answered" in one_line(out, 1)
        assert time.monotonic() - start < 15
        # and one that names the lone node: it answers
        out = mldht("ping", addr, "--bind", "127.0.54.15:0", "--bootstrap", "none")
        assert out.returncode == 0, out.stderr
        code, err = node.stop()
    assert code == 0 and err == "", err


async def test_library_bootstrap_empty_and_no_retry(caplog: pytest.LogCaptureFixture) -> None:
    """``DHTNode(bootstrap=[])`` warns about nothing; ``retry_join=False`` never retries."""
    caplog.set_level(logging.INFO, logger="mldht")
    async with DHTNode(bind=("127.0.54.16", 0), bootstrap=[]) as node:
        await anyio.sleep(0.3)
        assert await node.find_node(bytes(20)) == []
    dead = ("127.0.54.17", free_udp_port("127.0.54.17"))
    kwargs: dict[str, Any] = {"query_timeout": 0.3, "lookup_timeout": 1.0}
    async with DHTNode(bind=("127.0.54.16", 0), bootstrap=[dead], retry_join=False, **kwargs):
        await anyio.sleep(1.5)
    messages = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages
    assert not [m for m in messages if "retrying" in m], messages
    assert "no bootstrap node answered" in messages
