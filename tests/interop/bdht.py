"""Drive webtorrent's bittorrent-dht (Node.js) from tests, through ``bdht_peer.js``.

``BdhtPeer`` starts ``node tests/interop/bdht_peer.js`` as a child process and talks JSON
lines over its stdin/stdout. Every read has a bound; the child is killed on close, and it
exits by itself if our end of its stdin closes or after ``max_seconds``. Methods are
thread-safe (replies are matched by request id), so an anyio test can call them through
``anyio.to_thread.run_sync`` while its own node keeps serving.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mldht.core.bencode import BValue, bdecode, bencode
from mldht.core.compact import Addr, NodeInfo

__all__ = [
    "BDHT_MODULE",
    "PEER_SCRIPT",
    "REPO_ROOT",
    "BdhtError",
    "BdhtPeer",
    "LookupResult",
    "MutableValue",
    "bdht_missing_reason",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).resolve().with_name("bdht_peer.js")
BDHT_MODULE = REPO_ROOT / "node_modules" / "bittorrent-dht" / "package.json"

_REPLY_GRACE = 5.0  # seconds on top of a command's own timeout before we give up on it


def bdht_missing_reason() -> str | None:
    """Why bittorrent-dht cannot run here (``None`` when it can)."""
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH"
    if not BDHT_MODULE.is_file():
        return f"bittorrent-dht is not installed: run `npm ci` in {REPO_ROOT}"
    return None


class BdhtError(Exception):
    """A command failed inside bittorrent-dht; ``code`` is the KRPC error code if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message if code is None else f"{message} (KRPC {code})")
        self.code = code


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Peers a get_peers lookup found; ``sources[peer]`` lists the nodes that sent it.

    A source of ``None`` means the node's own store (peers announced to it), not the network.
    """

    peers: list[Addr]
    sources: dict[Addr, list[Addr | None]]
    visited: int | None
    timed_out: bool


@dataclass(frozen=True, slots=True)
class MutableValue:
    """A mutable item as bittorrent-dht returned it (signature checked by our verify)."""

    value: BValue
    seq: int
    public_key: bytes
    signature: bytes


def _parse_addr(text: str) -> Addr:
    ip, _, port = text.rpartition(":")
    return (ip, int(port))


def _value_args(value: BValue | str) -> dict[str, str]:
    if isinstance(value, str):
        return {"v_str": value}
    if isinstance(value, bytes):
        return {"v_hex": value.hex()}
    return {"v_bencoded_hex": bencode(value).hex()}


class BdhtPeer:
    """A bittorrent-dht node on ``host:port`` (port 0: any), in its own Node.js process.

    ``bootstrap`` addresses are routers for its first lookup (and enter its table when they
    answer); by default there are none: the library's default is the public routers.
    ``query_timeout`` is its per-query timeout (the library's default is 2 s).
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        bootstrap: Sequence[Addr] = (),
        node_id: bytes | None = None,
        query_timeout: float = 2.0,
        max_seconds: float = 300.0,
        start_timeout: float = 15.0,
    ) -> None:
        reason = bdht_missing_reason()
        if reason is not None:
            raise BdhtError(reason)
        if node_id is not None and len(node_id) != 20:
            raise ValueError("node_id must be 20 bytes")
        cmd = [
            "node",
            str(PEER_SCRIPT),
            "--host",
            host,
            "--port",
            str(port),
            "--timeout-ms",
            str(round(query_timeout * 1000)),
            "--max-seconds",
            str(max_seconds),
        ]
        for ip, bport in bootstrap:
            cmd += ["--bootstrap", f"{ip}:{bport}"]
        if node_id is not None:
            cmd += ["--id", node_id.hex()]
        self._proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env={**os.environ, "DEBUG": ""},  # bittorrent-dht's debug output would flood stderr
        )
        self._lock = threading.Lock()
        self._waiters: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._rids = itertools.count(1)
        self._closed = False
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        try:
            first = self._next_event(start_timeout)
            if first.get("event") != "listening":
                raise BdhtError(f"bittorrent-dht did not start: {first}{self._stderr_tail()}")
            self.node_id: bytes = bytes.fromhex(first["id"])
            self.addr: Addr = (str(first["host"]), int(first["port"]))
        except BaseException:
            self.close()
            raise

    # --- process plumbing ---------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self._stderr.append(f"[non-JSON stdout] {line.rstrip()}")
                continue
            rid = msg.get("rid")
            with self._lock:
                waiter = self._waiters.pop(rid, None) if isinstance(rid, int) else None
            if waiter is not None:
                waiter.put(msg)
            elif "event" in msg:
                self._events.put(msg)
            else:
                self._stderr.append(f"[unmatched reply] {line.rstrip()}")
        # The process is gone: fail every pending call now rather than at its timeout.
        with self._lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.put({"ok": False, "error": "bdht_peer.js exited"})
        self._events.put({"event": "exit"})

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def _stderr_tail(self) -> str:
        tail = list(self._stderr)[-15:]
        return ("\n--- bdht_peer stderr ---\n" + "\n".join(tail)) if tail else ""

    def _next_event(self, timeout: float) -> dict[str, Any]:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"no event from bdht_peer.js in {timeout}s{self._stderr_tail()}"
            ) from None

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait for the end of its bootstrap lookup (immediate without bootstrap nodes)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next_event(max(0.0, deadline - time.monotonic()))
            if ev.get("event") == "ready":
                return
            if ev.get("event") in ("exit", "error", "max-lifetime"):
                raise BdhtError(f"bittorrent-dht stopped: {ev}{self._stderr_tail()}")

    def call(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send one command; its reply, within ``timeout`` plus a grace period.

        A reply with ``ok: false`` raises :class:`BdhtError`. Commands that take a
        ``timeout`` argument get this one too (in seconds), so the node answers first.
        """
        rid = next(self._rids)
        waiter: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
        with self._lock:
            if self._closed:
                raise BdhtError("BdhtPeer is closed")
            self._waiters[rid] = waiter
        line = json.dumps({"rid": rid, "cmd": cmd, "timeout": timeout, **args}) + "\n"
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            with self._lock:
                self._waiters.pop(rid, None)
            raise BdhtError(f"bdht_peer.js is gone ({exc}){self._stderr_tail()}") from None
        try:
            reply = waiter.get(timeout=timeout + _REPLY_GRACE)
        except queue.Empty:
            with self._lock:
                self._waiters.pop(rid, None)
            raise TimeoutError(
                f"bdht_peer.js did not answer {cmd} in {timeout + _REPLY_GRACE}s"
                f"{self._stderr_tail()}"
            ) from None
        if not reply.get("ok"):
            raise BdhtError(str(reply.get("error")), reply.get("code"))
        return reply

    def close(self) -> None:
        """Ask the node to quit, then make sure the process is gone. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        proc = self._proc
        stdin = proc.stdin
        if stdin is not None:
            # The process may be gone already (max lifetime, crash): then writing fails,
            # and the unflushed line would fail again when the file is collected.
            if proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    stdin.write(json.dumps({"rid": 0, "cmd": "quit"}) + "\n")
                    stdin.flush()
            with contextlib.suppress(OSError, ValueError):
                stdin.close()  # the script exits on EOF as well
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._reader.join(timeout=2)
        self._err_reader.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> BdhtPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def returncode(self) -> int | None:
        """The process's exit status, ``None`` while it runs."""
        return self._proc.poll()

    @property
    def process(self) -> subprocess.Popen[str]:
        """The Node.js child process (for tests of its own lifetime)."""
        return self._proc

    # --- commands -----------------------------------------------------------------------

    def ping(self, timeout: float = 5.0) -> None:
        """Round-trip to the Node.js process (no network traffic)."""
        self.call("ping", timeout)

    def add_node(self, addr: Addr, node_id: bytes | None = None, *, timeout: float = 5.0) -> bytes:
        """Add ``addr`` to its table; without ``node_id`` it pings first. Returns the id.

        A node that does not answer the ping raises :class:`BdhtError`.
        """
        args: dict[str, Any] = {"ip": addr[0], "port": addr[1]}
        if node_id is not None:
            args["id"] = node_id.hex()
        reply = self.call("addNode", timeout, **args)
        return bytes.fromhex(reply["id"])

    def routing_table(self) -> list[NodeInfo]:
        """Every node in its k-bucket table."""
        reply = self.call("nodes", 5.0)
        return [NodeInfo(bytes.fromhex(n["id"]), (n["ip"], int(n["port"]))) for n in reply["nodes"]]

    def wait_for_node(self, addr: Addr, timeout: float) -> NodeInfo | None:
        """Poll the table until ``addr`` is in it, or ``None`` at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.routing_table():
                if node.addr == addr:
                    return node
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def announce(self, infohash: bytes, port: int = 0, *, timeout: float = 30.0) -> int:
        """Lookup then announce_peer to the closest nodes; how many accepted it.

        ``port=0`` sends ``implied_port=1``. Fails if no node accepted it.
        """
        reply = self.call("announce", timeout, infohash=infohash.hex(), port=port)
        return int(reply["hits"])

    def lookup(self, infohash: bytes, timeout: float = 10.0) -> LookupResult:
        """Run a get_peers lookup to its end (or ``timeout``), collecting every peer."""
        reply = self.call("lookup", timeout, infohash=infohash.hex())
        sources: dict[Addr, list[Addr | None]] = {}
        for p in reply["peers"]:
            sources[(p["ip"], int(p["port"]))] = [_parse_addr(f) if f else None for f in p["from"]]
        return LookupResult(
            peers=list(sources),
            sources=sources,
            visited=reply.get("visited"),
            timed_out=bool(reply.get("timed_out")),
        )

    def get_peers(self, infohash: bytes, timeout: float = 10.0) -> list[Addr]:
        """Peers found by a get_peers lookup (see :meth:`lookup`)."""
        return self.lookup(infohash, timeout).peers

    def put_immutable(self, value: BValue | str, *, timeout: float = 30.0) -> bytes:
        """Store an immutable item (get, then put to the closest); returns its target.

        ``bytes`` and ``str`` are byte strings; other values are bencoded as they are.
        """
        reply = self.call("putImmutable", timeout, **_value_args(value))
        return bytes.fromhex(reply["target"])

    def get_immutable(
        self, target: bytes, timeout: float = 10.0, *, cache: bool = False
    ) -> BValue | None:
        """The immutable item under ``target`` from the network, or ``None``.

        ``cache=True`` lets it answer from its own store without asking anyone.
        """
        reply = self.call("getImmutable", timeout, target=target.hex(), cache=cache)
        if not reply.get("found"):
            return None
        value: BValue = bdecode(bytes.fromhex(reply["v_bencoded_hex"]))
        return value

    def put_mutable(
        self,
        seed: bytes,
        salt: bytes,
        seq: int,
        value: BValue | str,
        *,
        cas: int | None = None,
        timeout: float = 30.0,
    ) -> bytes:
        """Sign (ed25519 key of the 32-byte ``seed``) and store a mutable item; its target.

        A refusal by every storing node raises :class:`BdhtError` with the KRPC code
        (302: seq not newer, 301: CAS mismatch).
        """
        args: dict[str, Any] = {"seed_hex": seed.hex(), "salt_hex": salt.hex(), "seq": seq}
        if cas is not None:
            args["cas"] = cas
        reply = self.call("putMutable", timeout, **args, **_value_args(value))
        return bytes.fromhex(reply["target"])

    def get_mutable(
        self, pubkey: bytes, salt: bytes, timeout: float = 10.0, *, cache: bool = False
    ) -> MutableValue | None:
        """The newest valid mutable item it finds for (``pubkey``, ``salt``), or ``None``."""
        reply = self.call(
            "getMutable", timeout, pubkey_hex=pubkey.hex(), salt_hex=salt.hex(), cache=cache
        )
        if not reply.get("found"):
            return None
        return MutableValue(
            value=bdecode(bytes.fromhex(reply["v_bencoded_hex"])),
            seq=int(reply["seq"]),
            public_key=bytes.fromhex(reply["k_hex"]),
            signature=bytes.fromhex(reply["sig_hex"]),
        )
