"""Inputs of bench/fuzz.py: the corpus of real datagrams, wrong values for every field,
and the generators of hostile datagrams (mutated real ones, random bytes, deep nesting,
wrong types in every field, mutated answers to the node's own queries)."""

from __future__ import annotations

import json
import random
import re
from collections import deque
from pathlib import Path
from typing import Any

from mldht.core.bencode import bdecode, bencode

ROOT = Path(__file__).resolve().parent.parent
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
