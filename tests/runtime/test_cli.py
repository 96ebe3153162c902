"""The ``mldht`` command line, run as ``python -m mldht`` subprocesses on loopback."""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mldht.cli import build_parser, parse_hostport
from mldht.cli_support import bind_addresses

REPO = Path(__file__).resolve().parents[2]
HEX = "0123456789abcdef0123456789abcdef01234567"
LISTENING = re.compile(r'^\{"event": "listening", "id": "([0-9a-f]{40})", "address": "([^"]+)"\}$')


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def mldht(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mldht ARGS`` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "mldht", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=_env(),
    )


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


class NodeProcess:
    """A running ``mldht node --json``; its stdout is read line by line with a bound."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mldht", "node", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=_env(),
        )
        self._buf = b""

    def line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no output line within {timeout} s"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, "the node closed its stdout"
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line whose ``event`` is ``name``."""
        deadline = time.monotonic() + timeout
        while True:
            obj: dict[str, Any] = json.loads(self.line(max(0.01, deadline - time.monotonic())))
            if obj.get("event") == name:
                return obj

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[int, str]:
        """Send ``sig``; (exit status, stderr) once it exited."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running_node(*args: str) -> Iterator[tuple[NodeProcess, str, str]]:
    """A node subprocess with its (id hex, HOST:PORT) from the listening line; killed after."""
    node = NodeProcess(*args)
    try:
        first = node.line()
        match = LISTENING.match(first)
        assert match is not None, f"unexpected first line {first!r}"
        yield node, match.group(1), match.group(2)
    finally:
        node.kill()


def test_node_ping_announce_get_peers_dump(tmp_path: Path) -> None:
    dead = f"127.0.2.1:{free_udp_port('127.0.2.1')}"
    with (
        running_node(
            "--bind", "127.0.2.2:0", "--bootstrap", dead,
            "--state-dir", str(tmp_path / "a"), "--status-interval", "0.2",
        ) as (a, a_id, a_addr),
        running_node(
            "--bind", "127.0.2.3:0", "--bootstrap", a_addr, "--state-dir", str(tmp_path / "b")
        ) as (b, b_id, b_addr),
    ):  # fmt: skip
        assert a_addr.startswith("127.0.2.2:") and b_addr.startswith("127.0.2.3:")
        # A learns B (B queried it, A pinged back): the status line says so
        deadline = time.monotonic() + 10
        while a.event("status")["nodes"] < 1:
            assert time.monotonic() < deadline

        out = mldht("ping", a_addr, "--bind", "127.0.2.4:0", "--timeout", "5")
        assert (out.returncode, out.stdout) == (0, a_id + "\n"), out.stderr
        out = mldht("ping", b_addr, "--bind", "127.0.2.4:0", "--json")
        assert json.loads(out.stdout) == {"address": b_addr, "id": b_id}

        common = ["--bootstrap", a_addr, "--timeout", "10"]
        out = mldht("announce", HEX, "--port", "6881", "--bind", "127.0.2.5:0", *common)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) >= 1  # B accepts (A is only a router to us)
        implied = free_udp_port("127.0.2.6")
        out = mldht("announce", f"magnet:?xt=urn:btih:{HEX.upper()}&dn=x", *common,
                    "--bind", f"127.0.2.6:{implied}")  # fmt: skip
        assert out.returncode == 0 and int(out.stdout) >= 1, out.stderr

        out = mldht("get-peers", HEX, "--bind", "127.0.2.7:0", *common)
        assert out.returncode == 0, out.stderr
        assert sorted(out.stdout.split()) == sorted(["127.0.2.5:6881", f"127.0.2.6:{implied}"])
        out = mldht("get-peers", HEX, "--bind", "127.0.2.7:0", "--json", *common)
        doc = json.loads(out.stdout)
        assert doc["infohash"] == HEX
        assert sorted(doc["peers"]) == sorted(["127.0.2.5:6881", f"127.0.2.6:{implied}"])

        # SIGINT: exit 0 with the state saved; SIGTERM likewise
        code, err = a.stop(signal.SIGINT)
        assert code == 0 and "Traceback" not in err, err
        code, err = b.stop(signal.SIGTERM)
        assert code == 0 and "Traceback" not in err, err

    saved = json.loads((tmp_path / "a" / "state.json").read_text())
    assert saved["id"] == a_id
    assert {f"{n['ip']}:{n['port']}" for n in saved["nodes"]} == {b_addr}
    out = mldht("dump", "--state-dir", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == saved

    # a restart keeps the id
    with running_node("--bind", "127.0.2.2:0", "--bootstrap", dead,
                      "--state-dir", str(tmp_path / "a")) as (again, again_id, _):  # fmt: skip
        assert again_id == a_id
        code, _ = again.stop()
        assert code == 0


def test_timeouts_exit_1_with_one_line() -> None:
    dead = f"127.0.2.10:{free_udp_port('127.0.2.10')}"
    start = time.monotonic()
    out = mldht("ping", dead, "--bind", "127.0.2.11:0", "--timeout", "0.5")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("mldht: no answer from ") and out.stderr.count("\n") == 1
    assert time.monotonic() - start < 10
    out = mldht("get-peers", HEX, "--bind", "127.0.2.11:0", "--bootstrap", dead, "--timeout", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "no DHT node answered" in out.stderr


def test_bad_input_exits_2_with_one_line_naming_the_argument(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "state.json").write_text("{oops")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases: list[tuple[list[str], str]] = [
        (["node", "--bind", "x"], "argument --bind: invalid HOST:PORT 'x'"),
        (["node", "--bind", "127.0.0.1:65536"], "argument --bind: port out of range"),
        (["node", "--bind", "127.0.0.1:-1"], "argument --bind"),
        (["node", "--bootstrap", "router"], "argument --bootstrap"),
        (["node", "--bootstrap", "[::1:6881"], "argument --bootstrap"),
        (["node", "--bootstrap", "127.0.0.1:0"], "argument --bootstrap: port out of range"),
        (["node", "--state-dir", str(a_file)], "argument --state-dir: not a directory"),
        (["node", "--rate-limit", "-1"], "argument --rate-limit: expected a number >= 0"),
        (["node", "--rate-limit", "lots"], "argument --rate-limit"),
        (["node", "--state-dir", str(corrupt)], "argument --state-dir"),
        (["ping", "1.2.3.4"], "argument HOST:PORT"),
        (["ping", "::1:6881"], "argument HOST:PORT"),
        (["ping", "[zz::1]:6881"], "argument HOST:PORT"),
        (["get-peers", "abc"], "argument INFOHASH"),
        (["get-peers", "magnet:?xt=urn:sha1:abc"], "argument INFOHASH"),
        (["get-peers", HEX[:-1]], "argument INFOHASH"),
        (["get-peers", HEX, "--timeout", "0"], "argument --timeout"),
        (["get-peers", HEX, "--timeout", "soon"], "argument --timeout"),
        (["announce", HEX, "--port", "0"], "argument --port"),
        (["announce", HEX, "--port", "65536"], "argument --port"),
        (["announce", HEX, "--port", "http"], "argument --port"),
        (["dump"], "--state-dir"),
        (["dump", "--state-dir", str(empty)], "argument --state-dir: no saved state"),
        (["dump", "--state-dir", str(corrupt)], "argument --state-dir"),
        (["frobnicate"], "argument COMMAND"),
        ([], "COMMAND"),
    ]
    procs = [
        (
            argv,
            expected,
            subprocess.Popen(
                [sys.executable, "-m", "mldht", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=_env(),
            ),
        )
        for argv, expected in cases
    ]
    failures = []
    try:
        for argv, expected, proc in procs:
            out, err = proc.communicate(timeout=30)
            ok = (
                proc.returncode == 2
                and out == ""
                and err.count("\n") == 1
                and err.startswith("mldht: error: ")
                and expected in err
                and "Traceback" not in err
            )
            if not ok:
                failures.append((argv, proc.returncode, err))
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not failures, failures


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6881", ("127.0.0.1", 6881)),
        ("[::1]:6881", ("::1", 6881)),
        ("[2001:DB8:0::1]:1", ("2001:db8::1", 1)),
        ("dht.example.org:6881", ("dht.example.org", 6881)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "text", ["", ":1", "host:", "host", "::1", "[::1]", "[::1]:", "a b:1", "h:0", "h:99999"]
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_hostport(text)


def test_bind_accepts_port_zero_and_defaults_differ() -> None:
    parser = build_parser()
    assert bind_addresses(parser.parse_args(["node"]))[0] == ("0.0.0.0", 6881)
    assert bind_addresses(parser.parse_args(["ping", "127.0.0.1:1"])) == [("0.0.0.0", 0)]
    assert parser.parse_args(["get-peers", HEX, "--bind", "[::]:0"]).bind == [("::", 0)]
    args = parser.parse_args(["announce", HEX, "--bootstrap", "a:1", "--bootstrap", "b:2"])
    assert args.bootstrap == [("a", 1), ("b", 2)]
    assert args.port is None and args.infohash == bytes.fromhex(HEX)
