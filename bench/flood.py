"""Do honest nodes still get answers while one address floods the node?

Prints one JSON object. Every server runs stock (``mldht node``; libtorrent with its
default DHT settings, only the bootstrap list emptied and alerts off) in its own process
on loopback, one after the other, under the same load:

* a **flooder** process on one address (``127.0.9.1``) with ``--flood-ports`` sockets
  sends as fast as it can, cycling through pre-built datagrams: valid ``get_peers`` and
  ``find_node`` with random targets, ``announce_peer`` with bad tokens, deeply nested
  junk under 1,500 bytes (``llll...``) and oversized datagrams (4 KB of junk);
* **honest nodes**: this process pings the server from ``--honest`` other addresses
  (``127.0.10.x``), ``--ping-rate`` pings per second in all, and counts the pings
  answered within 1 s, with their round-trip times.

Per server: the share of honest pings answered, p50/p99 of their round trips, the
server's CPU share and its RSS growth over the flood, and the flood rate reached. The
targets of the hardening issue: >= 99% answered, p99 <= 20 ms, RSS growth <= 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.bencode import bdecode, bencode  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLOOD_HOST = "127.0.9.1"
HONEST_PREFIX = "127.0.10."
SERVER_HOST = "127.0.0.1"


# --------------------------------------------------------------------------- servers


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def serve_libtorrent(port: int) -> None:
    import libtorrent as lt

    settings = {
        "listen_interfaces": f"{SERVER_HOST}:{port}",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "alert_mask": 0,
    }
    ses = lt.session(settings)  # type: ignore[call-overload]
    print(json.dumps({"port": port}), flush=True)
    with contextlib.suppress(Exception):
        sys.stdin.buffer.read()
    del ses


class Server:
    """A server process: ``mldht node`` or a libtorrent session."""

    def __init__(self, name: str) -> None:
        self.name = name
        port = _free_port(SERVER_HOST)
        if name == "mldht":
            cmd = [sys.executable, "-m", "mldht", "node", "--json", "--bootstrap", "none"]
            cmd += ["--bind", f"{SERVER_HOST}:{port}"]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-libtorrent", str(port)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the listening line / the port
        if not line:
            raise RuntimeError(f"{name} did not start")
        self.addr = (SERVER_HOST, port)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.name == "mldht":
                self.proc.terminate()
            else:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- flooder


def flood_datagrams(rng: random.Random, n: int = 4096) -> list[bytes]:
    """The four kinds of hostile datagrams, shuffled: the flooder cycles through them."""
    out: list[bytes] = []
    for i in range(n):
        kind = i % 5
        tid = rng.randbytes(2)
        node_id = rng.randbytes(20)
        if kind == 0:
            a = {b"id": node_id, b"info_hash": rng.randbytes(20)}
            out.append(bencode({b"a": a, b"q": b"get_peers", b"t": tid, b"y": b"q"}))
        elif kind == 1:
            a = {b"id": node_id, b"target": rng.randbytes(20)}
            out.append(bencode({b"a": a, b"q": b"find_node", b"t": tid, b"y": b"q"}))
        elif kind == 2:
            announce: dict[bytes, bytes | int] = {
                b"id": node_id,
                b"info_hash": rng.randbytes(20),
                b"port": rng.randrange(1, 65536),
                b"token": rng.randbytes(8),
            }
            out.append(bencode({b"a": announce, b"q": b"announce_peer", b"t": tid, b"y": b"q"}))
        elif kind == 3:
            depth = rng.randrange(200, 1400)
            out.append(b"l" * depth + b"i1e" + b"e" * rng.randrange(0, depth // 2))
        else:
            out.append(b"d1:ad2:id20:" + rng.randbytes(4000))
    rng.shuffle(out)
    return out


def flooder(target: tuple[str, int], ports: int, seconds: float, counter: Any) -> None:
    """Send as fast as possible from ``ports`` sockets on one address for ``seconds``."""
    rng = random.Random(1)
    data = flood_datagrams(rng)
    socks = []
    for _ in range(ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((FLOOD_HOST, 0))
        s.setblocking(False)
        socks.append(s)
    sent = 0
    end = time.monotonic() + seconds
    i = 0
    n, m = len(data), len(socks)
    while True:
        for _ in range(256):
            try:
                socks[i % m].sendto(data[i % n], target)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            i += 1
        if time.monotonic() >= end:
            break
        # Drain what the server sends back now and then, so the buffers do not fill.
        for s in socks[: m if i % 4096 < 256 else 0]:
            with contextlib.suppress(OSError):
                while True:
                    s.recv(65536)
    for s in socks:
        s.close()
    counter.value = sent


# --------------------------------------------------------------------------- honest nodes


class Honest(asyncio.DatagramProtocol):
    def __init__(self, sent: dict[bytes, float], rtts: list[float]) -> None:
        self.sent = sent
        self.rtts = rtts
        self.transport: Any = None
        self.node_id = os.urandom(20)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = bdecode(data)
        except Exception:
            return
        if not isinstance(msg, dict):
            return
        t = msg.get(b"t")
        if msg.get(b"y") == b"q" and isinstance(t, bytes):  # the server pings us back
            reply = {b"r": {b"id": self.node_id}, b"t": t, b"y": b"r"}
            self.transport.sendto(bencode(reply), addr)
            return
        if isinstance(t, bytes) and t in self.sent and msg.get(b"y") == b"r":
            self.rtts.append(time.monotonic() - self.sent.pop(t))


async def honest_pings(
    target: tuple[str, int], honest: int, rate: float, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    sent: dict[bytes, float] = {}
    rtts: list[float] = []
    protos: list[Honest] = []
    for i in range(honest):
        _, proto = await loop.create_datagram_endpoint(
            lambda: Honest(sent, rtts), local_addr=(f"{HONEST_PREFIX}{i + 1}", 0)
        )
        protos.append(proto)
    total = 0
    counter = 0
    end = loop.time() + seconds
    while loop.time() < end:
        proto = protos[total % honest]
        counter += 1
        t = counter.to_bytes(4, "big")
        query = {b"a": {b"id": proto.node_id}, b"q": b"ping", b"t": t, b"y": b"q"}
        sent[t] = time.monotonic()
        proto.transport.sendto(bencode(query), target)
        total += 1
        await asyncio.sleep(1.0 / rate)
    await asyncio.sleep(1.0)  # the last pings get their second
    for proto in protos:
        proto.transport.close()
    answered = [r for r in rtts if r <= 1.0]
    ms = sorted(r * 1000 for r in answered)
    return {
        "honest_pings": total,
        "answered_within_1s_pct": round(100.0 * len(answered) / max(1, total), 2),
        "rtt_ms_p50": round(statistics.median(ms), 2) if ms else None,
        "rtt_ms_p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2) if ms else None,
    }


# --------------------------------------------------------------------------- driver


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    server = Server(name)
    try:
        time.sleep(1.0)
        rss0, cpu0, t0 = server.rss_mb(), server.cpu_seconds(), time.monotonic()
        counter = multiprocessing.Value("q", 0)
        flood = multiprocessing.Process(
            target=flooder, args=(server.addr, args.flood_ports, args.seconds, counter)
        )
        flood.start()
        result = asyncio.run(honest_pings(server.addr, args.honest, args.ping_rate, args.seconds))
        flood.join(30)
        elapsed = time.monotonic() - t0
        result.update(
            server=name,
            flood_datagrams_per_s=round(counter.value / args.seconds),
            server_cpu_pct=round(100.0 * (server.cpu_seconds() - cpu0) / elapsed, 1),
            rss_growth_mb=round(server.rss_mb() - rss0, 1),
            alive=server.proc.poll() is None,
        )
        return result
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="mldht,libtorrent", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood length (default 10)")
    parser.add_argument("--flood-ports", type=int, default=32, help="flooder sockets (32)")
    parser.add_argument("--honest", type=int, default=20, help="honest addresses (20)")
    parser.add_argument("--ping-rate", type=float, default=17.0, help="honest pings/s (17)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, servers alternating")
    parser.add_argument("--serve-libtorrent", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_libtorrent is not None:
        serve_libtorrent(args.serve_libtorrent)
        return
    names = [n for n in args.servers.split(",") if n]
    runs: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for name in names:
            runs.append(measure(name, args))
    print(
        json.dumps(
            {
                "bench": "flood",
                "date": time.strftime("%Y-%m-%d"),
                "seconds": args.seconds,
                "cpus": os.cpu_count(),
                "targets": {"answered_pct": 99.0, "p99_ms": 20.0, "rss_growth_mb": 50.0},
                "runs": runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
