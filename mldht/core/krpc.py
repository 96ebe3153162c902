"""KRPC messages (BEP 5, 32, 33, 43, 44, 51): one dataclass per message; encode; decode.

Decoding never raises anything but :class:`MalformedMessage` (a :class:`DecodeError`).
Responses do not name their method, so :func:`decode_message` returns a
:class:`Response` holding the raw ``r`` dict, and :func:`decode_response` parses it once
the pending transaction tells which query it answers (reply bodies and their parsing live
in :mod:`mldht.core.responses`, re-exported here).

Queries are decoded on every datagram a node answers, so their classes are plain (not
frozen: a frozen dataclass costs a checked ``__setattr__`` per field, measured at a tenth
of a ping's cost in the core) and the common shapes of ping, find_node and get_peers skip
the generic argument checks (:func:`_decode_query`). Replies are framed from their
pre-encoded ``r`` items (:func:`frame_response`) with no intermediate dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import DecodeError, KRPCError
from .bencode import bdecode, bencode
from .compact import Addr, decode_peer, encode_peer
from .responses import (
    AnnounceResponse,
    FindNodeResponse,
    GetPeersResponse,
    GetResponse,
    PingResponse,
    PutResponse,
    Response,
    ResponseBody,
    SampleInfohashesResponse,
    decode_response,
)

__all__ = [
    "T_KEYS",
    "AnnouncePeer",
    "AnnounceResponse",
    "Error",
    "FindNode",
    "FindNodeResponse",
    "Get",
    "GetPeers",
    "GetPeersResponse",
    "GetResponse",
    "MalformedMessage",
    "Message",
    "Ping",
    "PingResponse",
    "Put",
    "PutResponse",
    "Query",
    "QueryBody",
    "Response",
    "ResponseBody",
    "SampleInfohashes",
    "SampleInfohashesResponse",
    "decode_message",
    "decode_response",
    "encode_error",
    "encode_query",
    "encode_response",
    "frame_response",
    "ip_head",
    "message_from",
    "reply_tail",
]

MAX_SEQ = 0x7FFFFFFFFFFFFFFF


class MalformedMessage(DecodeError):
    """A datagram that is not a valid KRPC message.

    ``t`` is the transaction id when one could be read and ``is_query`` tells whether the
    sender asked something: only then is an error reply (``code``: 203 or 204) due.
    """

    def __init__(
        self,
        reason: str,
        *,
        t: bytes | None = None,
        is_query: bool = False,
        code: int = KRPCError.PROTOCOL,
        sender_id: bytes | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.t = t
        self.is_query = is_query
        self.code = code
        self.sender_id = sender_id


# --------------------------------------------------------------------------- queries


@dataclass(slots=True)
class Ping:
    id: bytes
    method = b"ping"

    def args(self) -> dict[bytes, Any]:
        return {b"id": self.id}


@dataclass(slots=True)
class FindNode:
    id: bytes
    target: bytes
    want: tuple[bytes, ...] | None = None
    method = b"find_node"

    def args(self) -> dict[bytes, Any]:
        a: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.want is not None:
            a[b"want"] = list(self.want)
        return a


@dataclass(slots=True)
class GetPeers:
    id: bytes
    info_hash: bytes
    want: tuple[bytes, ...] | None = None
    noseed: bool = False
    scrape: bool = False
    method = b"get_peers"

    def args(self) -> dict[bytes, Any]:
        a: dict[bytes, Any] = {b"id": self.id, b"info_hash": self.info_hash}
        if self.want is not None:
            a[b"want"] = list(self.want)
        if self.noseed:
            a[b"noseed"] = 1
        if self.scrape:
            a[b"scrape"] = 1
        return a


@dataclass(slots=True)
class AnnouncePeer:
    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False
    seed: bool | None = None
    method = b"announce_peer"

    def args(self) -> dict[bytes, Any]:
        # Always send `port`: libtorrent rejects an announce without it, even with
        # implied_port=1 (BEP 5 "announce_peer").
        a: dict[bytes, Any] = {
            b"id": self.id,
            b"info_hash": self.info_hash,
            b"port": self.port,
            b"token": self.token,
        }
        if self.implied_port:
            a[b"implied_port"] = 1
        if self.seed is not None:
            a[b"seed"] = int(self.seed)
        return a


@dataclass(slots=True)
class Get:
    id: bytes
    target: bytes
    seq: int | None = None
    want: tuple[bytes, ...] | None = None
    method = b"get"

    def args(self) -> dict[bytes, Any]:
        a: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.seq is not None:
            a[b"seq"] = self.seq
        if self.want is not None:
            a[b"want"] = list(self.want)
        return a


@dataclass(slots=True)
class Put:
    """BEP 44 put. ``v`` is the exact bencoded value; mutable when ``k`` is set."""

    id: bytes
    token: bytes
    v: bytes
    k: bytes | None = None
    seq: int | None = None
    sig: bytes | None = None
    salt: bytes = b""
    cas: int | None = None
    method = b"put"

    @property
    def mutable(self) -> bool:
        return self.k is not None

    def args(self) -> dict[bytes, Any]:
        a: dict[bytes, Any] = {b"id": self.id, b"token": self.token, b"v": bdecode(self.v)}
        if self.k is not None:
            a[b"k"] = self.k
            a[b"seq"] = self.seq
            a[b"sig"] = self.sig
            if self.salt:
                a[b"salt"] = self.salt
            if self.cas is not None:
                a[b"cas"] = self.cas
        return a


@dataclass(slots=True)
class SampleInfohashes:
    id: bytes
    target: bytes
    want: tuple[bytes, ...] | None = None
    method = b"sample_infohashes"

    def args(self) -> dict[bytes, Any]:
        a: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.want is not None:
            a[b"want"] = list(self.want)
        return a


QueryBody = Ping | FindNode | GetPeers | AnnouncePeer | Get | Put | SampleInfohashes

# -------------------------------------------------------------------------- envelopes


@dataclass(slots=True)
class Query:
    t: bytes
    body: QueryBody
    version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    t: bytes
    code: int
    message: bytes
    version: bytes | None = None
    ip: Addr | None = None


Message = Query | Response | Error

# ---------------------------------------------------------------------------- encoding


def _envelope(t: bytes, y: bytes, version: bytes | None) -> dict[bytes, Any]:
    d: dict[bytes, Any] = {b"t": t, b"y": y}
    if version is not None:
        d[b"v"] = version
    return d


def encode_query(
    t: bytes, body: QueryBody, *, version: bytes | None = None, read_only: bool = False
) -> bytes:
    d = _envelope(t, b"q", version)
    d[b"q"] = body.method
    d[b"a"] = body.args()
    if read_only:
        d[b"ro"] = 1  # BEP 43: top level, on every query a read-only node sends
    return bencode(d)


def encode_response(
    t: bytes, body: ResponseBody, *, version: bytes | None = None, ip: Addr | None = None
) -> bytes:
    return frame_response(t, bencode(body.to_dict())[1:-1], version, ip)


def frame_response(t: bytes, r_items: bytes, version: bytes | None, ip: Addr | None) -> bytes:
    """A reply whose ``r`` dict is given as its bencoded items (keys sorted, without the
    enclosing ``d`` and ``e``): the envelope keys ``ip`` (BEP 42: the requester's address
    as we saw it), ``r``, ``t``, ``v``, ``y`` in their canonical order around it."""
    head = b"d1:rd" if ip is None else ip_head(ip)
    tail = _TAILS.get(version) or reply_tail(version)
    n = len(t)
    return b"".join((head, r_items, T_KEYS[n] if n < 64 else b"e1:t%d:" % n, t, tail))


T_KEYS = tuple(b"e1:t%d:" % n for n in range(64))
"""The end of a reply's ``r`` dict and its ``t`` key, by length of the transaction id."""
_TAILS: dict[bytes | None, bytes] = {None: b"1:y1:re"}


def reply_tail(version: bytes | None) -> bytes:
    """The ``v``/``y`` end of a reply (kept for a few versions: ours, mostly)."""
    tail = _TAILS.get(version)
    if tail is not None:
        return tail
    tail = b"1:y1:re" if version is None else b"1:v%d:%s1:y1:re" % (len(version), version)
    if len(_TAILS) < 8:
        _TAILS[version] = tail
    return tail


@lru_cache(maxsize=4096)
def ip_head(ip: Addr) -> bytes:
    """A reply's start up to its ``r`` dict, with the requester's address (BEP 42): the
    same few sources ask again and again (a flood of new ones only churns the cache)."""
    packed = encode_peer(ip)
    return b"d2:ip%d:%s1:rd" % (len(packed), packed)


def bstr(s: bytes) -> bytes:
    """A bencoded string."""
    return b"%d:%s" % (len(s), s)


def encode_error(
    t: bytes,
    code: int,
    message: str | bytes,
    *,
    version: bytes | None = None,
    ip: Addr | None = None,
) -> bytes:
    d = _envelope(t, b"e", version)
    d[b"e"] = [code, message.encode() if isinstance(message, str) else message]
    if ip is not None:
        d[b"ip"] = encode_peer(ip)
    return bencode(d)


# ---------------------------------------------------------------------------- decoding


def _opt_ip(d: dict[bytes, Any]) -> Addr | None:
    raw = d.get(b"ip")
    if isinstance(raw, bytes) and len(raw) in (6, 18):
        try:
            return decode_peer(raw)
        except DecodeError:
            return None
    return None


def _opt_version(d: dict[bytes, Any]) -> bytes | None:
    v = d.get(b"v")
    return v if isinstance(v, bytes) else None


def decode_message(data: bytes) -> Message:
    """Decode one datagram. Raises only :class:`MalformedMessage`."""
    try:
        d = bdecode(data)
    except DecodeError as exc:
        raise MalformedMessage(str(exc)) from None
    return message_from(d)


def message_from(d: object) -> Message:
    """The message a decoded datagram holds (``d``: what :func:`bdecode` gave, which the
    receive path has decoded already). Raises only :class:`MalformedMessage`."""
    if not isinstance(d, dict):
        raise MalformedMessage("top level is not a dict")
    t = d.get(b"t")
    y = d.get(b"y")
    if not isinstance(t, bytes):
        raise MalformedMessage("missing or invalid 't'")
    if y == b"q":
        a = d.get(b"a")
        fast = _common_query(d.get(b"q"), a) if type(a) is dict else None
        if fast is None:
            return _decode_query(d, t)
        v, ro = d.get(b"v"), d.get(b"ro")  # libtorrent: any non-zero ro is read-only
        return Query(t, fast, v if type(v) is bytes else None, isinstance(ro, int) and ro != 0)
    if y == b"r":
        r = d.get(b"r")
        if not isinstance(r, dict):
            raise MalformedMessage("response without 'r' dict", t=t)
        sid = r.get(b"id")
        if not isinstance(sid, bytes) or len(sid) != 20:
            raise MalformedMessage("response without a 20-byte 'id'", t=t)
        return Response(t, r, _opt_version(d), _opt_ip(d))
    if y == b"e":
        e = d.get(b"e")
        if (
            not isinstance(e, list)
            or len(e) < 2
            or not isinstance(e[0], int)
            or not isinstance(e[1], bytes)
        ):
            raise MalformedMessage("error without [code, message]", t=t)
        return Error(t, e[0], e[1], _opt_version(d), _opt_ip(d))
    raise MalformedMessage("missing or unknown 'y'", t=t)


class _Args:
    """Typed access to a query's ``a`` dict; every failure is a 203 for this query."""

    __slots__ = ("a", "t")

    def __init__(self, a: dict[bytes, Any], t: bytes) -> None:
        self.a = a
        self.t = t

    def fail(self, reason: str) -> MalformedMessage:
        sid = self.a.get(b"id")
        return MalformedMessage(
            reason,
            t=self.t,
            is_query=True,
            sender_id=sid if isinstance(sid, bytes) and len(sid) == 20 else None,
        )

    def id20(self, key: bytes) -> bytes:
        v = self.a.get(key)
        if v is None:
            raise self.fail(f"missing '{key.decode()}' key")
        if not isinstance(v, bytes) or len(v) != 20:
            raise self.fail(f"invalid value for '{key.decode()}'")
        return v

    def bytes_(self, key: bytes, *, max_len: int | None = None) -> bytes:
        v = self.a.get(key)
        if v is None:
            raise self.fail(f"missing '{key.decode()}' key")
        if not isinstance(v, bytes) or (max_len is not None and len(v) > max_len):
            raise self.fail(f"invalid value for '{key.decode()}'")
        return v

    def opt_int(self, key: bytes) -> int | None:
        v = self.a.get(key)
        if v is None:
            return None
        if not isinstance(v, int):
            raise self.fail(f"invalid value for '{key.decode()}'")
        return v

    def flag(self, key: bytes) -> bool:
        v = self.a.get(key)
        return isinstance(v, int) and v != 0

    def want(self) -> tuple[bytes, ...] | None:
        v = self.a.get(b"want")
        if v is None:
            return None
        if not isinstance(v, list):
            raise self.fail("invalid value for 'want'")
        # BEP 32: ignore any string other than n4/n6 (and any non-string)
        return tuple(x for x in v if isinstance(x, bytes))


def _decode_query(d: dict[bytes, Any], t: bytes) -> Query:
    q = d.get(b"q")
    ro = d.get(b"ro")
    read_only = isinstance(ro, int) and ro != 0  # libtorrent: any non-zero ro
    a = d.get(b"a")
    if not isinstance(q, bytes):
        raise MalformedMessage("missing 'q'", t=t, is_query=True)
    if not isinstance(a, dict):
        raise MalformedMessage("missing 'a' key", t=t, is_query=True)
    args = _Args(a, t)  # the common shapes were decoded by decode_message (_common_query)
    sid = args.id20(b"id")
    body: QueryBody
    if q == b"ping":
        body = Ping(sid)
    elif q == b"find_node":
        body = FindNode(sid, args.id20(b"target"), args.want())
    elif q == b"get_peers":
        body = GetPeers(
            sid, args.id20(b"info_hash"), args.want(), args.flag(b"noseed"), args.flag(b"scrape")
        )
    elif q == b"announce_peer":
        info_hash = args.id20(b"info_hash")
        token = args.bytes_(b"token")
        implied = args.flag(b"implied_port")
        port = args.opt_int(b"port")
        if port is None and not implied:
            raise args.fail("missing 'port' key")
        if not implied and not (port is not None and 0 < port < 65536):
            raise args.fail("invalid port")
        seed = args.opt_int(b"seed")
        body = AnnouncePeer(
            sid,
            info_hash,
            port if port is not None else 0,
            token,
            implied,
            None if seed is None else seed != 0,
        )
    elif q == b"get":
        seq = args.opt_int(b"seq")
        body = Get(sid, args.id20(b"target"), seq, args.want())
    elif q == b"put":
        body = _decode_put(args, sid)
    elif q == b"sample_infohashes":
        body = SampleInfohashes(sid, args.id20(b"target"), args.want())
    else:
        raise MalformedMessage(
            f"method unknown: {q[:32]!r}",
            t=t,
            is_query=True,
            code=KRPCError.METHOD_UNKNOWN,
            sender_id=sid,
        )
    return Query(t, body, _opt_version(d), read_only)


def _common_query(q: object, a: dict[bytes, Any]) -> QueryBody | None:
    """Ping, find_node and get_peers in their common shape (no ``want``, ``noseed`` or
    ``scrape``, well-formed ids), decoded without the generic checks; None for anything
    else, which :func:`_decode_query` then checks argument by argument."""
    sid = a.get(b"id")
    if type(sid) is not bytes or len(sid) != 20 or b"want" in a:
        return None
    if q == b"ping":
        return Ping(sid)
    if q == b"find_node":
        target = a.get(b"target")
        return FindNode(sid, target) if type(target) is bytes and len(target) == 20 else None
    if q == b"get_peers" and b"noseed" not in a and b"scrape" not in a:
        ih = a.get(b"info_hash")
        return GetPeers(sid, ih) if type(ih) is bytes and len(ih) == 20 else None
    return None


def _decode_put(args: _Args, sid: bytes) -> Put:
    token = args.bytes_(b"token")
    if b"v" not in args.a:
        raise args.fail("missing 'v' key")
    v = bencode(args.a[b"v"])  # canonical re-encoding == received bytes (strict decoder)
    k = args.a.get(b"k")
    if k is None:
        return Put(sid, token, v)
    if not isinstance(k, bytes) or len(k) != 32:
        raise args.fail("invalid value for 'k'")
    sig = args.a.get(b"sig")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise args.fail("invalid value for 'sig'")
    seq = args.opt_int(b"seq")
    if seq is None:
        raise args.fail("missing 'seq' key")
    salt = args.a.get(b"salt", b"")
    if not isinstance(salt, bytes):
        raise args.fail("invalid value for 'salt'")
    return Put(sid, token, v, k, seq, sig, salt, args.opt_int(b"cas"))
