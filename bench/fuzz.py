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
import re
import select
import socket
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mldht.core.bencode import bdecode, bencode  # noqa: E402
from mldht.core.node import NodeConfig, NodeState  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "krpc"
Addr = tuple[str, int]

# ------------------------------------------------------------------------- corpus


class Corpus:
    """The real datagrams, raw and decoded, with their kind."""

    def __init__(self) -> None:
        files = json.loads((CORPUS / "index.json").read_text())["files"]
        self.raw: list[bytes] = []
        self.decoded: list[dict[bytes, Any]] = []
        self.replies: dict[bytes, list[dict[bytes, Any]]] = {}
        """Real replies (``r`` and ``e``) by the method they answer."""
        for entry in files:
            data = (CORPUS / entry["path"]).read_bytes()
            self.raw.append(data)
            try:
                msg = bdecode(data)
            except Exception:
                continue
            if not isinstance(msg, dict):
                continue
            self.decoded.append(msg)
            if entry["y"] in ("r", "e") and entry.get("method"):
                self.replies.setdefault(entry["method"].encode(), []).append(msg)


# ------------------------------------------------------------------ wrong values

JUNK: list[Any] = [
    0,
    1,
    -1,
    2**64,
    -(2**70),
    10**40,
    b"",
    b"x",
    b"\x00" * 19,
    b"\x00" * 21,
    b"\xff" * 20,
    b"A" * 1000,
    [],
    [b"a"],
    [1, 2],
    {},
    {b"a": b"b"},
    {b"": 0},
    [[[]]],
    [{}],
    b"\x00" * 6,
    b"\x00" * 18,
    b"\x00" * 26,
]
"""Wrong values for any field."""

FIELD_JUNK: dict[bytes, list[Any]] = {
    b"y": [b"x", b"Q", b"", b"qq", b"r\x00", b"e"],
    b"q": [b"unknown", b"PING", b"", b"ping\x00", b"get_peerz", b"vote", b"x" * 300],
    b"t": [b"", b"x" * 100, b"\x00", 0],
    b"id": [b"\x00" * 19, b"\x00" * 21, b"", b"\x00" * 20],
    b"target": [b"\x00" * 19, b"\x00" * 21, b""],
    b"info_hash": [b"\x00" * 19, b"\x00" * 21, b""],
    b"port": [-1, 0, 65536, 2**31, 70000, -(2**40), b"6881"],
    b"implied_port": [2, -1, b"1", 2**70],
    b"want": [[b"n4", b"junk"], [1], b"n4", [b"n4"] * 100, [[]], [b""], [b"n6", b"n6"]],
    b"values": [
        [b"\x00" * 5],
        [b"\x00" * 7],
        [b""],
        [1],
        [b"\x00" * 6] * 300,
        b"\x00" * 6,
        [b"\x00" * 18, b"\x00" * 6],
        [[b"\x00" * 6]],
    ],
    b"nodes": [b"\x00" * 25, b"\x00" * 27, b"", [b"x"], b"\x00" * 26 * 100],
    b"nodes6": [b"\x00" * 37, b"\x00" * 39, b"", [b"x"]],
    b"token": [b"", b"x" * 200, 5, [b"t"]],
    b"seq": [-1, 2**63, 2**64, b"1", -(2**63) - 1],
    b"cas": [-1, b"x", 2**64],
    b"sig": [b"\x00" * 63, b"\x00" * 65, b""],
    b"k": [b"\x00" * 31, b"\x00" * 33, b""],
    b"salt": [b"x" * 65, b"", 0],
    b"v": [b"x" * 1001, 0, [], {b"a": [[[[[[]]]]]]}, b"MD\x00\x01" * 10],
    b"ro": [2, b"1", -1, []],
    b"ip": [b"\x00" * 5, b"\x00" * 18, b"\x7f\x00\x00\x01\x00\x00", b"\x00" * 7, 5],
    b"samples": [b"\x00" * 19, b"\x00" * 41, [b"\x00" * 20], b""],
    b"interval": [-1, 2**40, b"x"],
    b"num": [-5, 2**64, b"x"],
    b"e": [[201], [b"x", 201], [2**70, b"m"], [], [201, b"m", b"extra"], [-1, b""]],
    b"scrape": [2, b"1"],
    b"noseed": [2, b"1"],
    b"seed": [2, b"1"],
    b"BFpe": [b"\x00" * 255, b"\x00" * 257],
    b"BFsd": [b"\x00" * 255, b"\x00" * 257],
}
"""Wrong values for particular fields, tried besides :data:`JUNK`."""

Path_ = tuple[Any, ...]
"""A path into a decoded message: dict keys and list indexes."""


def _paths(msg: Any, prefix: Path_ = (), depth: int = 0) -> list[Path_]:
    out: list[Path_] = []
    if depth > 3:
        return out
    if isinstance(msg, dict):
        for k, v in msg.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k), depth + 1))
    elif isinstance(msg, list):
        for i, v in enumerate(msg[:3]):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i), depth + 1))
    return out


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _wrong_values(path: Path_) -> list[Any]:
    key = next((p for p in reversed(path) if isinstance(p, bytes)), b"")
    return FIELD_JUNK.get(key, []) + JUNK


def _apply(msg: dict[bytes, Any], path: Path_, value: Any, op: str) -> dict[bytes, Any]:
    """A copy of ``msg`` with ``path`` set to ``value`` (op "set"), removed ("del"), or a
    key ``zz`` with ``value`` added beside it ("add")."""
    out: dict[bytes, Any] = _copy(msg)
    parent: Any = out
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "set":
        parent[last] = value
    elif op == "del":
        del parent[last]
    elif isinstance(parent, dict):
        parent[b"zz"] = value
    else:
        parent.append(value)
    return out


# --------------------------------------------------------------------- generators


class Generators:
    """Seeded datagram generators; :meth:`next` picks one by weight."""

    WEIGHTS: dict[str, float] = {  # noqa: RUF012
        "bytes": 0.30,
        "struct": 0.30,
        "answer": 0.15,
        "random": 0.10,
        "deep": 0.08,
        "real": 0.07,
    }

    def __init__(self, corpus: Corpus, rng: random.Random, *, answers: bool = True) -> None:
        self.corpus = corpus
        self.rng = rng
        weights = dict(self.WEIGHTS)
        if not answers:
            del weights["answer"]
        self.kinds = list(weights)
        self.cum: list[float] = []
        total = 0.0
        for k in self.kinds:
            total += weights[k]
            self.cum.append(total)
        self.total = total
        # Every (datagram, field, wrong value) in turn, in a seeded order.
        self.struct_cases: list[tuple[int, Path_, Any, str]] = []
        for i, msg in enumerate(corpus.decoded):
            for path in _paths(msg):
                for v in _wrong_values(path):
                    self.struct_cases.append((i, path, v, "set"))
                self.struct_cases.append((i, path, None, "del"))
                self.struct_cases.append((i, path, rng.choice(JUNK), "add"))
        rng.shuffle(self.struct_cases)
        self.struct_at = 0
        self.pending: deque[tuple[bytes, bytes, Addr]] = deque(maxlen=5000)
        """Queries the node sent: (t, method, address), for ``answer``."""

    def next(self) -> tuple[str, bytes, Addr | None]:
        """(kind, datagram, source or None for any source)."""
        r = self.rng.random() * self.total
        kind = self.kinds[-1]
        for k, c in zip(self.kinds, self.cum, strict=True):
            if r < c:
                kind = k
                break
        if kind == "answer":
            if self.pending:
                t, method, addr = self.pending.popleft()
                return kind, self.answer(t, method), addr
            kind = "struct"
        if kind == "bytes":
            return kind, self.mutate_bytes(), None
        if kind == "struct":
            return kind, self.struct(), None
        if kind == "random":
            return kind, self.random_bytes(), None
        if kind == "deep":
            return kind, self.deep(), None
        return kind, self.rng.choice(self.corpus.raw), None

    # ---------------------------------------------------------------- byte level

    def mutate_bytes(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(self.corpus.raw))
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            op = rng.randrange(8)
            n = len(data)
            if n == 0:
                data = bytearray(rng.choice(self.corpus.raw))
                n = len(data)
            if op == 0:  # bit flip
                i = rng.randrange(n)
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:  # insert
                i = rng.randrange(n + 1)
                data[i:i] = bytes([rng.choice(b"deil0123456789:x\x00\xff")])
            elif op == 2:  # delete
                i = rng.randrange(n)
                del data[i : i + rng.choice((1, 1, 2, 5))]
            elif op == 3:  # truncate
                del data[rng.randrange(n) :]
            elif op == 4:  # splice two datagrams
                other = rng.choice(self.corpus.raw)
                data = data[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
            elif op == 5:  # change a length prefix
                prefixes = list(re.finditer(rb"(\d+):", bytes(data)))
                if prefixes:
                    m = rng.choice(prefixes)
                    old = int(m.group(1))
                    new = rng.choice(
                        (old + 1, old - 1, 0, old * 2, 10**9, 2**64, rng.randrange(3000))
                    )
                    text = (b"0" + str(old).encode()) if rng.random() < 0.1 else str(new).encode()
                    data[m.start(1) : m.end(1)] = text
            elif op == 6:  # overwrite a byte
                data[rng.randrange(n)] = rng.randrange(256)
            else:  # copy a chunk elsewhere
                i = rng.randrange(n)
                chunk = data[i : i + rng.randrange(1, 40)]
                j = rng.randrange(n + 1)
                data[j:j] = chunk
        return bytes(data)

    def random_bytes(self) -> bytes:
        rng = self.rng
        n = rng.choice((0, 1, 2, rng.randrange(64), rng.randrange(3001)))
        data = rng.randbytes(n)
        if n and rng.random() < 0.5:
            data = b"d" + data[1:]
        return data

    def deep(self) -> bytes:
        rng = self.rng
        n = rng.choice((5, 13, 14, 50, 100, 500, 1000, rng.randrange(2000), 100_000))
        style = rng.randrange(5)
        if style == 0:
            body = b"l" * n
        elif style == 1:
            body = b"d1:a" + b"l1:x" * n
        elif style == 2:
            body = b"d" + b"1:ad" * n
        elif style == 3:
            body = (
                b"d1:ad2:id20:"
                + b"\x00" * 20
                + b"1:v"
                + b"".join(rng.choice((b"l", b"d1:k", b"li1e")) for _ in range(n))
            )
        else:  # inside a valid-looking query
            body = b"d1:ad2:id20:" + b"\x00" * 20 + b"6:target" + b"l" * n
        if rng.random() < 0.5:
            body += b"e" * (body.count(b"l") + body.count(b"d"))
        return body

    # ------------------------------------------------------------ structure aware

    def struct(self) -> bytes:
        cases = self.struct_cases
        i, path, value, op = cases[self.struct_at % len(cases)]
        self.struct_at += 1
        return self._encode(_apply(self.corpus.decoded[i], path, value, op))

    def answer(self, t: bytes, method: bytes) -> bytes:
        """A real reply to ``method`` with transaction id ``t``: valid (with a fresh id)
        half the time, else with one field wrong."""
        rng = self.rng
        replies = self.corpus.replies.get(method) or self.corpus.replies[b"ping"]
        msg = _copy(rng.choice(replies))
        msg[b"t"] = t
        body = msg.get(b"r")
        if isinstance(body, dict):
            body[b"id"] = rng.randbytes(20)
        if rng.random() < 0.5:
            paths = [p for p in _paths(msg) if p[0] != b"t"]
            if paths:
                path = rng.choice(paths)
                op = rng.choice(("set", "set", "set", "del", "add"))
                msg = _apply(msg, path, rng.choice(_wrong_values(path)), op)
        return self._encode(msg)

    def _encode(self, msg: Any) -> bytes:
        try:
            return bencode(msg)
        except TypeError:
            return b"d1:y1:qe"

    # ----------------------------------------------------------------- bookkeeping

    def note_sent(self, data: bytes, addr: Addr) -> None:
        """Remember a query the node sent, to answer it later."""
        try:
            msg = bdecode(data)
        except Exception:
            return
        if isinstance(msg, dict) and msg.get(b"y") == b"q":
            self.pending.append((msg[b"t"], msg[b"q"], addr))


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
