"""``mldht put`` / ``get`` / ``kv`` and BEP 46 magnets on loopback, and a node that keeps
every stored item across ``kill -9``.

The node under test is always a ``python -m mldht node`` subprocess; most one-shot
commands run in-process through :func:`mldht.cli.main` (the same code, without a Python
start-up each), some as subprocesses. Addresses: 127.0.52.x.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from mldht.cli import main
from mldht.core import bep44
from mldht.core.bencode import bdecode, bencode
from mldht.core.bep44 import KeyPair
from mldht.core.compact import Addr
from mldht.runtime.keys import load_keypair, save_keypair

REPO = Path(__file__).resolve().parents[2]
HEX = "0123456789abcdef0123456789abcdef01234567"
SEED = bytes(range(32))
LISTENING = re.compile(r'^\{"event": "listening", "id": "([0-9a-f]{40})", "address": "([^"]+)"\}$')
PROBE_ID = b"\x52" * 20


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def mldht(*args: str | bytes, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mldht ARGS`` to completion (bounded); text output."""
    return subprocess.run(
        [sys.executable, "-m", "mldht", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=_env(),
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``mldht ARGS`` in this process; its status and output, as :func:`mldht` gives."""
    logger = logging.getLogger("mldht")
    handlers, level = list(logger.handlers), logger.level
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        # main() configures the "mldht" logger for a process; undo it for the next call
        logger.handlers[:] = handlers
        logger.setLevel(level)
    return subprocess.CompletedProcess(["mldht", *args], status, out.getvalue(), err.getvalue())


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def parse_addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return (host, int(port))


@contextmanager
def running_node(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], Addr]]:
    """``mldht node --json ARGS`` and its address; killed (SIGKILL) on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mldht", "node", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the node printed nothing within 15 s"
        first = proc.stdout.readline().decode()
        match = LISTENING.match(first.strip())
        assert match is not None, f"unexpected first line {first!r}"
        yield proc, parse_addr(match.group(2))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


class RawClient:
    """A bare, blocking KRPC client: the most direct way to ask one node what it holds."""

    def __init__(self, dest: Addr, host: str) -> None:
        self.dest = dest
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(2.0)
        self._n = 0

    def close(self) -> None:
        self.sock.close()

    def query(self, q: bytes, args: dict[bytes, Any]) -> dict[bytes, Any]:
        self._n += 1
        t = b"c%d" % self._n
        msg = {b"t": t, b"y": b"q", b"q": q, b"a": {b"id": PROBE_ID, **args}}
        self.sock.sendto(bencode(msg), self.dest)
        deadline = time.monotonic() + 2.0
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data, source = self.sock.recvfrom(65536)
            reply: dict[bytes, Any] = bdecode(data)
            if source == self.dest and reply.get(b"t") == t:
                return reply

    def get(self, target: bytes) -> dict[bytes, Any]:
        reply = self.query(b"get", {b"target": target})
        assert reply[b"y"] == b"r", reply
        r: dict[bytes, Any] = reply[b"r"]
        return r

    def put_immutable(self, value: Any) -> bytes:
        target = hashlib.sha1(bencode(value)).digest()
        token = self.get(target)[b"token"]
        reply = self.query(b"put", {b"token": token, b"v": value})
        assert reply[b"y"] == b"r", reply
        return target

    def put_mutable(self, kp: KeyPair, value: Any, seq: int, salt: bytes = b"") -> bytes:
        target = kp.target(salt)
        token = self.get(target)[b"token"]
        args = {
            b"token": token,
            b"v": value,
            b"k": kp.public_key,
            b"seq": seq,
            b"sig": kp.sign_item(bencode(value), seq, salt),
        }
        if salt:
            args[b"salt"] = salt
        reply = self.query(b"put", args)
        assert reply[b"y"] == b"r", reply
        return target


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return out.stdout


def test_put_get_kv_and_btpk_magnet(tmp_path: Path) -> None:
    dead = f"127.0.52.250:{free_udp_port('127.0.52.250')}"
    with running_node(
        "--bind", "127.0.52.1:0", "--bootstrap", dead, "--state-dir", str(tmp_path / "a")
    ) as (_, addr):  # fmt: skip
        node = f"{addr[0]}:{addr[1]}"
        common = ["--bootstrap", node, "--bind", "127.0.52.2:0", "--timeout", "10"]

        # immutable: the target is the SHA-1 of the bencoded UTF-8 string
        text = "héllo wörld"
        target = ok(cli("put", text, *common)).strip()
        assert target == hashlib.sha1(bencode(text.encode())).hexdigest()
        assert ok(cli("get", target, *common)) == text + "\n"
        doc = json.loads(ok(cli("get", target, "--json", *common)))
        assert doc == {"target": target, "value": text, "encoding": "utf-8", "seq": None}
        doc = json.loads(ok(cli("put", text, "--json", *common)))
        assert doc == {"target": target, "accepted": 1}
        # bytes that are not UTF-8: stored as given, printed as hex, and said so
        out = cli("put", "\udcff\udcfe", *common)
        binary = ok(out).strip()
        assert binary == hashlib.sha1(b"2:\xff\xfe").hexdigest()
        out = cli("get", binary, *common)
        assert ok(out) == "fffe\n" and "not UTF-8" in out.stderr
        doc = json.loads(ok(cli("get", binary, "--json", *common)))
        assert (doc["value"], doc["encoding"]) == ("fffe", "hex")
        out = cli("get", hashlib.sha1(b"absent").hexdigest(), *common)
        assert out.returncode == 1 and out.stdout == "" and "no item found" in out.stderr

        # mutable, with the key pair of a state dir, created on first use (0600)
        state = tmp_path / "c"
        out = cli("put", "--mutable", "--salt", "s", "--state-dir", str(state), "v1", *common)
        pk, mtarget, seq = ok(out).split()
        assert "created a new key pair" in out.stderr
        key_file = state / "identity.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert pk == load_keypair(key_file).public_key.hex()
        assert mtarget == hashlib.sha1(bytes.fromhex(pk) + b"s").hexdigest() and seq == "1"
        out = cli("put", "--mutable", "--salt", "s", "--state-dir", str(state), "v2", *common)
        assert ok(out).split() == [pk, mtarget, "2"] and out.stderr == ""
        assert ok(cli("get", "--mutable", pk, "--salt", "s", *common)) == "v2\nseq 2\n"
        doc = json.loads(ok(cli("get", "--mutable", pk, "--salt", "s", "--json", *common)))
        assert doc == {
            "public_key": pk, "salt": b"s".hex(), "target": mtarget,
            "value": "v2", "encoding": "utf-8", "seq": 2,
        }  # fmt: skip
        magnet = bep44.btpk_magnet(bytes.fromhex(pk), b"s")
        assert ok(cli("get", "--mutable", magnet, *common)) == "v2\nseq 2\n"
        # a stale seq is refused by the node: status 1, the code in the message
        out = cli("put", "--mutable", "--salt", "s", "--state-dir", str(state),
                    "--seq", "1", "stale", *common)  # fmt: skip
        assert out.returncode == 1 and "302" in out.stderr and out.stderr.count("\n") == 1
        out = cli("put", "--mutable", "--salt", "s", "--key-file", str(key_file),
                    "--cas", "1", "v3", "--json", *common)  # fmt: skip
        assert out.returncode == 1 and "301" in out.stderr
        out = cli("put", "--mutable", "--salt", "s", "--key-file", str(key_file),
                    "--cas", "2", "v3", "--json", *common)  # fmt: skip
        doc = json.loads(ok(out))
        assert (doc["public_key"], doc["target"], doc["seq"], doc["accepted"]) == (
            pk,
            mtarget,
            3,
            1,
        )

        # kv with a key file (created on first use)
        kfile = tmp_path / "kv.key"
        out = cli("kv", "set", "color", "blue", "--key-file", str(kfile), *common)
        kpk, ktarget, kseq = ok(out).split()
        assert kpk == load_keypair(kfile).public_key.hex() and kseq == "1"
        assert ktarget == hashlib.sha1(bytes.fromhex(kpk) + b"color").hexdigest()
        out = cli("kv", "set", "color", "red", "--key-file", str(kfile), *common)
        assert ok(out).split() == [kpk, ktarget, "2"]
        assert ok(cli("kv", "get", "color", "--key-file", str(kfile), *common)) == "red\nseq 2\n"
        doc = json.loads(ok(cli("kv", "get", "color", "--owner", kpk, "--json", *common)))
        assert doc == {
            "key": "color", "owner": kpk, "target": ktarget,
            "value": "red", "encoding": "utf-8", "seq": 2,
        }  # fmt: skip
        out = cli("kv", "get", "colour", "--owner", kpk, *common)
        assert out.returncode == 1 and "no value found" in out.stderr
        # the same key under the state dir's key pair is another item
        out = cli("kv", "get", "color", "--state-dir", str(state), *common)
        assert out.returncode == 1

        # BEP 46: a torrent pointer put by another client; its value prints as JSON, and
        # get-peers follows a xs=urn:btpk: magnet to the peers of the torrent
        kp = KeyPair.from_seed(SEED)
        raw = RawClient(addr, "127.0.52.3")
        try:
            raw.put_mutable(kp, {b"ih": bytes.fromhex(HEX)}, 1, b"t")
            raw.put_immutable({b"n": 1, b"l": [b"x", b"\x00"]})
        finally:
            raw.close()
        printed = ok(cli("get", "--mutable", kp.public_key.hex(), "--salt", "t", *common))
        assert printed == '{"ih": {"hex": "' + HEX + '"}}\nseq 1\n'
        dict_target = hashlib.sha1(bencode({b"n": 1, b"l": [b"x", b"\x00"]})).hexdigest()
        assert json.loads(ok(cli("get", dict_target, *common))) == {"l": ["x", "\x00"], "n": 1}
        assert ok(cli("announce", HEX, "--port", "6881", *common)).strip() == "1"
        magnet = bep44.btpk_magnet(kp.public_key, b"t")
        assert ok(cli("get-peers", magnet, *common)) == "127.0.52.2:6881\n"
        doc = json.loads(ok(cli("get-peers", magnet, "--json", *common)))
        assert doc == {
            "infohash": HEX, "peers": ["127.0.52.2:6881"],
            "public_key": kp.public_key.hex(), "salt": b"t".hex(),
        }  # fmt: skip
        # a key with no item, and an item that is not a torrent pointer
        out = cli("get-peers", bep44.btpk_magnet(kp.public_key, b"none"), *common)
        assert out.returncode == 1 and "no BEP 46 item" in out.stderr
        out = cli("get-peers", bep44.btpk_magnet(bytes.fromhex(pk), b"s"), *common)
        assert out.returncode == 1 and "not a BEP 46 torrent item" in out.stderr
        assert "Traceback" not in out.stderr


def test_kill_9_then_restart_answers_every_stored_item(tmp_path: Path) -> None:
    dead = f"127.0.52.250:{free_udp_port('127.0.52.250')}"
    port = free_udp_port("127.0.52.10")
    args = ["--bind", f"127.0.52.10:{port}", "--bootstrap", dead, "--state-dir", str(tmp_path)]
    kp = KeyPair.from_seed(SEED)
    immutable: dict[bytes, Any] = {}
    mutable: dict[bytes, tuple[Any, int, bytes]] = {}
    with running_node(*args) as (proc, addr):
        raw = RawClient(addr, "127.0.52.11")
        try:
            values: list[Any] = [b"one", 2, [b"three", 3], {b"four": {b"4": b"\xff"}}]
            for value in values:
                immutable[raw.put_immutable(value)] = value
            versions: list[tuple[bytes, int, Any]] = [
                (b"", 1, b"first"), (b"a", 7, b"seven"), (b"b", 2, [1])
            ]  # fmt: skip
            for salt, seq, value in versions:
                mutable[raw.put_mutable(kp, value, seq, salt)] = (value, seq, salt)
            # a newer version of one of them replaces the old one
            mutable[raw.put_mutable(kp, b"eight", 8, b"a")] = (b"eight", 8, b"a")
        finally:
            raw.close()
        # and one through the command line, with argv bytes that are not UTF-8
        out = mldht("put", b"\xffcli", "--bootstrap", f"{addr[0]}:{addr[1]}",
                    "--bind", "127.0.52.12:0", "--timeout", "10")  # fmt: skip
        immutable[bytes.fromhex(ok(out).strip())] = b"\xffcli"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    with running_node(*args) as (_, again):
        assert again == addr
        raw = RawClient(again, "127.0.52.11")
        try:
            for target, value in immutable.items():
                r = raw.get(target)
                assert r.get(b"v") == value, (target.hex(), r)
            for target, (value, seq, salt) in mutable.items():
                r = raw.get(target)
                assert (r.get(b"v"), r.get(b"seq"), r.get(b"k")) == (value, seq, kp.public_key)
                assert bep44.verify(kp.public_key, r[b"sig"], bencode(value), seq, salt)
        finally:
            raw.close()
        common = ["--bootstrap", f"{again[0]}:{again[1]}", "--bind", "127.0.52.12:0"]
        assert ok(mldht("get", hashlib.sha1(b"3:one").hexdigest(), *common)) == "one\n"
        out = mldht("get", hashlib.sha1(b"4:\xffcli").hexdigest(), *common)
        assert ok(out) == b"\xffcli".hex() + "\n" and "printed as hex" in out.stderr
        out = mldht("get", "--mutable", kp.public_key.hex(), "--salt", "a", *common)
        assert ok(out) == "eight\nseq 8\n"


def _run_all(cases: Sequence[tuple[list[str], str]]) -> list[tuple[list[str], int, str]]:
    """The (argv, status, stderr) of the cases that did not exit 2 with one
    ``mldht: error:`` line containing the expected text."""
    failures = []
    for argv, expected in cases:
        out = cli(*argv)
        good = (
            out.returncode == 2
            and out.stdout == ""
            and out.stderr.count("\n") == 1
            and out.stderr.startswith("mldht: error: ")
            and expected in out.stderr
        )
        if not good:
            failures.append((argv, out.returncode, out.stderr))
    return failures


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "good.key"
    save_keypair(KeyPair.from_seed(SEED), key)
    bad = tmp_path / "bad.key"
    bad.write_text("garbage\n")
    missing = tmp_path / "missing.key"
    target = "ab" * 20
    pubkey = "cd" * 32
    cases: list[tuple[list[str], str]] = [
        (["get", "xyz"], "argument TARGET: target is not hex"),
        (["get", target[:-2]], "argument TARGET: target must be 40 hex digits"),
        (["get", target, "--salt", "s"], "argument --salt: only mutable items"),
        (["get", "--mutable", "xyz"], "argument PUBKEY: public key is not hex"),
        (["get", "--mutable", target], "argument PUBKEY: public key must be 64 hex"),
        (["get", "--mutable", "magnet:?xs=urn:btpk:zz"], "argument PUBKEY"),
        (["get", "--mutable", pubkey, "--salt", "s" * 65], "argument --salt"),
        (["put", "x" * 997], "argument VALUE: value is 1001 bytes bencoded"),
        (["put", "x", "--salt", "s"], "argument --salt: only mutable items"),
        (["put", "x", "--seq", "1"], "argument --seq: only mutable items"),
        (["put", "x", "--key-file", str(key)], "argument --key-file: only mutable items"),
        (["put", "--mutable", "x"], "argument --key-file: a key pair is needed"),
        (["put", "--mutable", "x", "--key-file", str(bad)], "argument --key-file: "),
        (["put", "--mutable", "x", "--seq", "-1", "--key-file", str(key)], "argument --seq"),
        (["put", "--mutable", "x", "--cas", "x", "--key-file", str(key)], "argument --cas"),
        (["put", "--mutable", "x", "--seq", str(2**63), "--key-file", str(key)], "--seq"),
        (["kv", "set", "", "v", "--key-file", str(key)], "argument KEY: a key must not be empty"),
        (["kv", "set", "k", "x" * 997, "--key-file", str(key)], "argument VALUE"),
        (["kv", "get", "k"], "argument --key-file: a key pair is needed"),
        (["kv", "get", "k", "--key-file", str(missing)], "argument --key-file: no key pair"),
        (["kv", "get", "k", "--owner", "xyz"], "argument --owner"),
        (["kv"], "ACTION"),
        (["kv", "del", "k"], "argument ACTION"),
        (["get-peers", "magnet:?xs=urn:btpk:abcd"], "argument INFOHASH"),
        (["get-peers", "magnet:?xs=urn:btpk:" + pubkey + "&s=zz"], "argument INFOHASH"),
    ]
    assert _run_all(cases) == []
    # nothing was created by a refused command
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.key", "good.key"]


def test_no_node_to_store_or_read_exits_1(tmp_path: Path) -> None:
    dead = f"127.0.52.251:{free_udp_port('127.0.52.251')}"
    common = ["--bootstrap", dead, "--bind", "127.0.52.20:0", "--timeout", "1"]
    key = tmp_path / "k.key"
    save_keypair(KeyPair.from_seed(SEED), key)
    cases = [
        (["put", "x"], "no DHT node stored the item"),
        (["put", "--mutable", "x", "--key-file", str(key)], "no DHT node stored the item"),
        (["kv", "set", "k", "v", "--key-file", str(key)], "no DHT node stored the mutable item"),
        (["get", "ab" * 20], "no item found for the target abab"),
        (["get", "--mutable", "cd" * 32], "no mutable item found"),
        (["kv", "get", "k", "--key-file", str(key)], "no value found for the key 'k'"),
        (["get-peers", bep44.btpk_magnet(bytes(32))], "no DHT node answered"),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mldht", *argv, *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_env(),
        )
        for argv, _ in cases
    ]
    try:
        for (argv, expected), proc in zip(cases, procs, strict=True):
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 1, (argv, err)
            # (the join loop may have warned before it: the failure is the last line)
            last = err.splitlines()[-1]
            assert out == "" and last.startswith("mldht: "), (argv, err)
            assert expected in last and "Traceback" not in err, (argv, err)
            if argv[0] in ("get", "kv") and argv[1] != "set":
                assert "no DHT node answered" in last, (argv, err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
