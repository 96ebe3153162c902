"""Fuzz the receive path: no exception escapes, honest pings are still answered.

Prints one JSON object. Datagrams come from seeded generators over the repository's real
KRPC datagrams (``tests/data/krpc``, 175 of them, from libtorrent, bittorrent-dht, aria2
and Transmission):

* ``bytes``: byte-level mutations of a real datagram (bit flips, byte insert / delete /
  overwrite, truncation, splice of two datagrams, changed length prefixes, chunk copies);
* ``random``: random bytes of random length (0-3000), some starting with ``d``;
* ``deep``: deep nesting (``l`` * n, ``d1:a`` + ``l1:x`` * n, ``d1:ad1:a...``, mixed,
  closed or not);
* ``struct``: a real datagram decoded, one field (top level, ``a``/``r`` keys, list
  elements) replaced by a wrong value (int for bytes, bytes for int, list, dict, huge
  int, negative port, 19/21-byte ids, empty strings, unknown ``y``/``q``, junk ``want``,
  ``values`` of bad lengths, ...), deleted, or an unknown key added; the fields are taken
  in turn (a seeded shuffle of every (datagram, field, wrong value)); re-encoded
  canonically with :mod:`mldht.core.bencode`;
* ``answer``: a reply to a query the node actually sent (its pings of queriers, and the
  queries of the lookups / puts / samples this bench starts now and then): a real reply
  of the same method with the right ``t``, from the address queried, valid or with one
  field wrong as above; so that response decoding and the operations see junk too;
* ``real``: a real datagram unchanged.

**core** mode feeds them to one :class:`~mldht.core.node.NodeState` from 5,000
public-looking sources (45.x.y.z) at a virtual clock advanced by ``--step`` seconds a
datagram (the per-source budget, 100 datagrams/s, refills as it would), with an honest
ping (valid, from a fresh address) every ``--honest-every`` datagrams whose answer must be
in the next ``datagrams_to_send()``. Counted: exceptions escaping ``receive_datagram``
(wrapped), ``stats["internal_errors"]`` (with the first offending datagrams in hex and the
exception logged), drops by reason, replies, honest pings answered, datagrams per second.
A second, shorter run (``core_few_sources``) sends from ``--few-sources`` addresses only,
with the default budget: most of it is then rate-limited or banned.

**node** mode starts a real ``DHTNode`` (a subprocess of this script, 127.0.0.1:0, no
bootstrap) and blasts ``--node-count`` datagrams of the same generators (no ``answer``)
at ``--node-rate`` a second from ``--node-sources`` loopback addresses (127.0.20.x to
127.0.23.x), with honest pings from 127.0.30.x between; counts the pings answered within 1 s and
reads the node's ``receive_errors`` / ``internal_errors`` at the end.

Targets (issue "Hardening"): 0 exceptions escape, 0 internal errors, >= 99% of the
honest pings answered.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import select
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.bencode import bdecode, bencode  # noqa: E402
from mldht.core.node import NodeConfig, NodeState  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_inputs import Corpus, Generators  # noqa: E402

Addr = tuple[str, int]


# --------------------------------------------------------------------- core mode


class _Capture(logging.Handler):
    """Keeps the last exception logged on ``mldht.core`` (internal errors)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            exc = record.exc_info[1]
            tb = traceback.extract_tb(record.exc_info[2])
            where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
            self.last = f"{type(exc).__name__}: {exc} at {where}"


def public_source(i: int) -> Addr:
    return (f"45.{(i >> 16) & 255}.{(i >> 8) & 255}.{(i & 255) or 1}", 6881 + i % 1000)


def honest_ping(rng: random.Random) -> bytes:
    t = rng.randbytes(2)
    return bencode({b"a": {b"id": rng.randbytes(20)}, b"q": b"ping", b"t": t, b"y": b"q"})


def run_core(
    count: int,
    seed: int,
    *,
    sources: int = 5000,
    step: float = 1e-4,
    honest_every: int = 100,
    op_every: int = 1000,
    max_examples: int = 5,
) -> dict[str, Any]:
    """Feed ``count`` generated datagrams (plus the honest pings) to one NodeState."""
    rng = random.Random(seed)
    corpus = Corpus()
    gen = Generators(corpus, rng)
    now = 1_000_000.0
    node = NodeState(rng.randbytes(20), random.Random(seed + 1), now, NodeConfig())
    capture = _Capture()
    core_log = logging.getLogger("mldht.core")
    core_log.addHandler(capture)
    old_propagate = core_log.propagate
    core_log.propagate = False  # counted and kept here; not thousands of tracebacks
    source_addrs = [public_source(i) for i in range(sources)]
    stats = node.stats
    kinds: Counter[str] = Counter()
    escaped = 0
    escaped_examples: list[dict[str, str]] = []
    internal_examples: list[dict[str, str]] = []
    internal_by_kind: Counter[str] = Counter()
    honest_sent = honest_answered = 0
    honest_missed: list[str] = []
    bad_outputs = 0
    outputs = 0
    honest_n = 0
    next_timer = now + 0.5

    def drain(expect: Addr | None = None, t: bytes | None = None) -> bool:
        nonlocal bad_outputs, outputs
        answered = False
        for data, addr in node.datagrams_to_send():
            outputs += 1
            try:
                msg = bdecode(data)
            except Exception:
                bad_outputs += 1
                continue
            if not isinstance(msg, dict):
                bad_outputs += 1
                continue
            if addr == expect:
                if msg.get(b"y") == b"r" and msg.get(b"t") == t:
                    answered = True
                continue
            if msg.get(b"y") == b"q":
                gen.pending.append((msg[b"t"], msg[b"q"], addr))
        return answered

    def guarded(call: Callable[..., object], what: str, data: bytes, *args: Any) -> None:
        nonlocal escaped
        try:
            call(*args)
        except Exception as exc:
            escaped += 1
            if len(escaped_examples) < max_examples:
                escaped_examples.append(
                    {"in": what, "hex": data.hex(), "error": f"{type(exc).__name__}: {exc}"}
                )

    started = time.perf_counter()
    for n in range(count):
        now += step
        if now >= next_timer:
            guarded(node.handle_timer, "handle_timer", b"", now)
            next_timer = now + 0.5
            drain()
        if n % op_every == op_every // 2:
            start_operation(node, rng, now, guarded)
            drain()
        if n % honest_every == 0:
            honest_n += 1
            src = (f"46.{(honest_n >> 16) & 255}.{(honest_n >> 8) & 255}.{honest_n & 255}", 7000)
            ping = honest_ping(rng)
            t = ping[ping.index(b"1:t2:") + 5 : ping.index(b"1:t2:") + 7]
            guarded(node.receive_datagram, "honest ping", ping, ping, src, now)
            honest_sent += 1
            if drain(src, t):
                honest_answered += 1
            elif len(honest_missed) < max_examples:
                honest_missed.append(f"#{n} {src[0]} {json.dumps(stats_drops(stats))}")
        kind, data, addr = gen.next()
        kinds[kind] += 1
        if addr is None:
            addr = source_addrs[rng.randrange(sources)]
        before = stats["internal_errors"]
        guarded(node.receive_datagram, kind, data, data, addr, now)
        if stats["internal_errors"] != before:
            internal_by_kind[kind] += 1
            if len(internal_examples) < max_examples:
                internal_examples.append(
                    {"kind": kind, "hex": data.hex(), "error": capture.last or "?"}
                )
        drain()
    seconds = time.perf_counter() - started
    core_log.removeHandler(capture)
    core_log.propagate = old_propagate
    total = count + honest_sent
    return {
        "datagrams": count,
        "honest_pings": honest_sent,
        "honest_answered": honest_answered,
        "honest_answered_share": round(honest_answered / honest_sent, 5) if honest_sent else None,
        "honest_missed_examples": honest_missed,
        "escaped_exceptions": escaped,
        "escaped_examples": escaped_examples,
        "internal_errors": stats["internal_errors"],
        "internal_errors_by_kind": dict(internal_by_kind),
        "internal_error_examples": internal_examples,
        "seconds": round(seconds, 2),
        "datagrams_per_s": round(total / seconds) if seconds else None,
        "virtual_seconds": round(count * step, 1),
        "sources": sources,
        "by_generator": dict(kinds),
        "struct_cases": len(gen.struct_cases),
        "struct_cases_covered": min(gen.struct_at, len(gen.struct_cases)),
        "drops": stats_drops(stats),
        "outputs": outputs,
        "bad_outputs": bad_outputs,
        "stats": dict(stats),
        "routing_nodes": len(node.routing),
    }


def stats_drops(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if k.startswith("dropped") or k == "rate_limited"}


def start_operation(
    node: NodeState,
    rng: random.Random,
    now: float,
    guarded: Callable[..., None],
) -> None:
    """Start one operation, so that the node sends queries of every kind to answer."""
    choice = rng.randrange(6)
    target = rng.randbytes(20)
    nodes = node.good_nodes(now)

    def go() -> None:
        if choice == 0:
            node.find_node(target, now)
        elif choice == 1:
            node.get_peers(target, now)
        elif choice == 2:
            node.announce(target, 6881, now)
        elif choice == 3:
            node.get_item(target, now)
        elif choice == 4:
            node.put_immutable(bencode(rng.randbytes(rng.randrange(1, 100))), now)
        elif nodes:
            node.sample_infohashes(rng.choice(nodes).addr, target, now)
        else:
            node.ping(public_source(rng.randrange(5000)), now)

    guarded(go, f"operation {choice}", b"")


# --------------------------------------------------------------------- node mode


def serve_node() -> None:
    """Child process: a DHTNode on 127.0.0.1:0; prints its port, then, when stdin
    closes, its stats (and the first datagrams that raised) as JSON."""
    import anyio

    from mldht.runtime.node import DHTNode

    capture = _Capture()
    core_log = logging.getLogger("mldht")
    core_log.addHandler(capture)
    core_log.propagate = False
    examples: list[dict[str, str]] = []
    last: list[bytes] = [b""]

    async def main() -> None:
        async with DHTNode(bind=("127.0.0.1", 0), bootstrap=[], retry_join=False) as node:
            errors = [0]

            def trace(data: bytes, source: Addr, now: float) -> None:
                # the previous datagram's handling is over: did it raise?
                seen = node.stats["internal_errors"] + node.receive_errors
                if seen != errors[0]:
                    errors[0] = seen
                    if len(examples) < 5:
                        examples.append({"hex": last[0].hex(), "error": capture.last or "?"})
                last[0] = data

            node.on_datagram = trace
            print(json.dumps({"port": node.address[1]}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.buffer.read)
            stats = node.stats
            print(json.dumps({"stats": stats, "error_examples": examples}), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)


def run_node(count: int, seed: int, rate: float, sources: int, honest_every: int) -> dict[str, Any]:
    rng = random.Random(seed)
    corpus = Corpus()
    gen = Generators(corpus, rng, answers=False)
    kinds: Counter[str] = Counter()
    datagrams: list[bytes] = []
    for _ in range(count):
        kind, data, _addr = gen.next()
        kinds[kind] += 1
        datagrams.append(data[:65507])  # the largest UDP payload over IPv4
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-node"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        port = json.loads(proc.stdout.readline())["port"]
        server = ("127.0.0.1", port)
        senders = []
        for i in range(sources):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.{20 + i // 250}.{1 + i % 250}", 0))
            s.setblocking(False)
            senders.append(s)
        honest = []
        for i in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.30.{1 + i}", 0))
            s.setblocking(False)
            honest.append(s)
        by_fd = {s.fileno(): s for s in honest}
        poller = select.poll()  # select() fails on descriptors over 1023
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        outstanding: dict[tuple[int, bytes], float] = {}
        rtts: list[float] = []
        late = 0
        send_errors = 0
        honest_sent = 0

        def collect(timeout: float) -> None:
            nonlocal late
            ready = poller.poll(timeout * 1000)
            got = time.monotonic()
            for fd, _event in ready:
                s = by_fd[fd]
                while True:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        break
                    try:
                        msg = bdecode(data)
                    except Exception:
                        continue
                    if not isinstance(msg, dict) or msg.get(b"y") != b"r":
                        continue
                    sent = outstanding.pop((fd, msg.get(b"t", b"")), None)
                    if sent is None:
                        continue
                    if got - sent <= 1.0:
                        rtts.append(got - sent)
                    else:
                        late += 1

        started = time.monotonic()
        batch = max(1, int(rate / 1000))  # one batch a millisecond
        for n in range(0, count, batch):
            due = started + n / rate
            delay = due - time.monotonic()
            collect(max(0.0, delay))
            for j in range(n, min(n + batch, count)):
                if j % honest_every == 0:
                    s = honest[honest_sent % len(honest)]
                    ping = honest_ping(rng)
                    t = ping[ping.index(b"1:t2:") + 5 : ping.index(b"1:t2:") + 7]
                    outstanding[(s.fileno(), t)] = time.monotonic()
                    honest_sent += 1
                    with contextlib.suppress(OSError):
                        s.sendto(ping, server)
                try:
                    senders[j % sources].sendto(datagrams[j], server)
                except OSError:
                    send_errors += 1
        blast = time.monotonic() - started
        end = time.monotonic() + 1.2
        while time.monotonic() < end and outstanding:
            collect(0.05)
        proc.stdin.close()
        result = json.loads(proc.stdout.readline())
        stats = result["stats"]
        answered = len(rtts)
        rtts.sort()
        return {
            "datagrams": count,
            "rate_target": rate,
            "rate_reached": round(count / blast),
            "sources": sources,
            "by_generator": dict(kinds),
            "send_errors": send_errors,
            "honest_pings": honest_sent,
            "honest_answered_1s": answered,
            "honest_answered_share": round(answered / honest_sent, 5) if honest_sent else None,
            "honest_late": late,
            "honest_rtt_ms_p50": round(rtts[len(rtts) // 2] * 1000, 2) if rtts else None,
            "honest_rtt_ms_p99": round(rtts[int(len(rtts) * 0.99)] * 1000, 2) if rtts else None,
            "receive_errors": stats.get("receive_errors"),
            "internal_errors": stats.get("internal_errors"),
            "error_examples": result["error_examples"],
            "queries_in": stats.get("queries_in"),
            "responses_out": stats.get("responses_out"),
            "errors_out": stats.get("errors_out"),
            "drops": stats_drops(stats),
        }
    finally:
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--count", type=int, default=1_000_000, help="datagrams in core mode")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mode", choices=("core", "node", "both"), default="both")
    ap.add_argument("--sources", type=int, default=5000, help="fuzz sources in core mode")
    ap.add_argument("--step", type=float, default=1e-4, help="virtual seconds per datagram")
    ap.add_argument("--honest-every", type=int, default=100)
    ap.add_argument("--few-sources", type=int, default=10)
    ap.add_argument(
        "--few-count", type=int, default=None, help="datagrams of the few-sources run (count/10)"
    )
    ap.add_argument("--node-count", type=int, default=100_000)
    ap.add_argument("--node-rate", type=float, default=20_000.0)
    ap.add_argument("--node-sources", type=int, default=1000)
    ap.add_argument("--serve-node", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_node:
        serve_node()
        return
    out: dict[str, Any] = {"seed": args.seed, "mode": args.mode}
    if args.mode in ("core", "both"):
        out["core"] = run_core(
            args.count,
            args.seed,
            sources=args.sources,
            step=args.step,
            honest_every=args.honest_every,
        )
        few = args.few_count if args.few_count is not None else max(1, args.count // 10)
        out["core_few_sources"] = run_core(
            few, args.seed, sources=args.few_sources, step=args.step, honest_every=args.honest_every
        )
    if args.mode in ("node", "both"):
        out["node"] = run_node(
            args.node_count, args.seed, args.node_rate, args.node_sources, args.honest_every
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
