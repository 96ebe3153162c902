"""KRPC replies (BEP 5, 33, 44, 51): one frozen dataclass per reply body, the
:class:`Response` envelope, and :func:`decode_response`.

Responses do not name their method, so :func:`~mldht.core.krpc.decode_message` returns a
:class:`Response` holding the raw ``r`` dict, and :func:`decode_response` parses it once
the pending transaction tells which query it answers. :mod:`mldht.core.krpc` re-exports
every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DecodeError
from .bencode import bdecode, bencode
from .compact import Addr, NodeInfo, decode_nodes, decode_peers, encode_nodes, encode_peer

__all__ = [
    "AnnounceResponse",
    "FindNodeResponse",
    "GetPeersResponse",
    "GetResponse",
    "PingResponse",
    "PutResponse",
    "Response",
    "ResponseBody",
    "SampleInfohashesResponse",
    "decode_response",
]

# ------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class PingResponse:
    id: bytes

    def to_dict(self) -> dict[bytes, Any]:
        return {b"id": self.id}


@dataclass(frozen=True, slots=True)
class AnnounceResponse(PingResponse):
    pass


@dataclass(frozen=True, slots=True)
class PutResponse(PingResponse):
    pass


def _node_values(
    r: dict[bytes, Any], nodes: tuple[NodeInfo, ...] | None, nodes6: tuple[NodeInfo, ...] | None
) -> None:
    if nodes is not None:
        r[b"nodes"] = encode_nodes(nodes)
    if nodes6 is not None:
        r[b"nodes6"] = encode_nodes(nodes6)


@dataclass(frozen=True, slots=True)
class FindNodeResponse:
    id: bytes
    nodes: tuple[NodeInfo, ...] | None = None
    nodes6: tuple[NodeInfo, ...] | None = None

    def to_dict(self) -> dict[bytes, Any]:
        r: dict[bytes, Any] = {b"id": self.id}
        _node_values(r, self.nodes, self.nodes6)
        return r


@dataclass(frozen=True, slots=True)
class GetPeersResponse:
    id: bytes
    token: bytes | None = None
    values: tuple[Addr, ...] | None = None
    nodes: tuple[NodeInfo, ...] | None = None
    nodes6: tuple[NodeInfo, ...] | None = None
    bf_seeds: bytes | None = None
    bf_peers: bytes | None = None

    @property
    def peers(self) -> tuple[Addr, ...]:
        return self.values or ()

    def to_dict(self) -> dict[bytes, Any]:
        r: dict[bytes, Any] = {b"id": self.id}
        if self.token is not None:
            r[b"token"] = self.token
        if self.values is not None:
            r[b"values"] = [encode_peer(p) for p in self.values]
        _node_values(r, self.nodes, self.nodes6)
        if self.bf_seeds is not None:
            r[b"BFsd"] = self.bf_seeds
        if self.bf_peers is not None:
            r[b"BFpe"] = self.bf_peers
        return r


@dataclass(frozen=True, slots=True)
class GetResponse:
    """BEP 44 get reply; ``v`` is the exact bencoded value when an item is present."""

    id: bytes
    token: bytes | None = None
    nodes: tuple[NodeInfo, ...] | None = None
    nodes6: tuple[NodeInfo, ...] | None = None
    v: bytes | None = None
    k: bytes | None = None
    seq: int | None = None
    sig: bytes | None = None

    def to_dict(self) -> dict[bytes, Any]:
        r: dict[bytes, Any] = {b"id": self.id}
        if self.token is not None:
            r[b"token"] = self.token
        _node_values(r, self.nodes, self.nodes6)
        if self.v is not None:
            r[b"v"] = bdecode(self.v)
        if self.k is not None:
            r[b"k"] = self.k
        if self.seq is not None:
            r[b"seq"] = self.seq
        if self.sig is not None:
            r[b"sig"] = self.sig
        return r


@dataclass(frozen=True, slots=True)
class SampleInfohashesResponse:
    id: bytes
    interval: int
    num: int
    samples: tuple[bytes, ...] = ()
    nodes: tuple[NodeInfo, ...] | None = None
    nodes6: tuple[NodeInfo, ...] | None = None
    supported: bool = True
    """False when the reply had no ``samples`` key: a node answering an unknown method
    find_node-style (libtorrent's forward compatibility), not BEP 51 support."""

    def to_dict(self) -> dict[bytes, Any]:
        r: dict[bytes, Any] = {
            b"id": self.id,
            b"interval": self.interval,
            b"num": self.num,
            b"samples": b"".join(self.samples),
        }
        _node_values(r, self.nodes, self.nodes6)
        return r


ResponseBody = (
    PingResponse | FindNodeResponse | GetPeersResponse | GetResponse | SampleInfohashesResponse
)


@dataclass(frozen=True, slots=True)
class Response:
    """A reply whose ``r`` dict is parsed later by :func:`decode_response`."""

    t: bytes
    r: dict[bytes, Any] = field(repr=False)
    version: bytes | None = None
    ip: Addr | None = None

    @property
    def sender_id(self) -> bytes:
        sid: bytes = self.r[b"id"]
        return sid


# -------------------------------------------------------------------- response parsing


def _nodes(r: dict[bytes, Any], key: bytes, ipv6: bool) -> tuple[NodeInfo, ...] | None:
    raw = r.get(key)
    if raw is None:
        return None
    if not isinstance(raw, bytes):
        raise DecodeError(f"'{key.decode()}' is not a string")
    size = 38 if ipv6 else 26
    # Be lenient with a trailing fragment (BEP 5 leaves it unsaid; libtorrent drops it).
    return tuple(decode_nodes(raw[: len(raw) - len(raw) % size], ipv6))


def _opt_bytes(r: dict[bytes, Any], key: bytes) -> bytes | None:
    v = r.get(key)
    if v is None:
        return None
    if not isinstance(v, bytes):
        raise DecodeError(f"'{key.decode()}' is not a string")
    return v


def decode_response(method: bytes, msg: Response) -> ResponseBody:
    """Parse ``msg.r`` as the reply to ``method``. Raises :class:`DecodeError`."""
    r = msg.r
    sid = msg.sender_id
    try:
        if method == b"ping":
            return PingResponse(sid)
        if method == b"announce_peer":
            return AnnounceResponse(sid)
        if method == b"put":
            return PutResponse(sid)
        nodes = _nodes(r, b"nodes", False)
        nodes6 = _nodes(r, b"nodes6", True)
        if method == b"find_node":
            return FindNodeResponse(sid, nodes, nodes6)
        if method == b"get_peers":
            values = r.get(b"values")
            peers = tuple(decode_peers(values)) if isinstance(values, list) else None
            return GetPeersResponse(
                sid,
                _opt_bytes(r, b"token"),
                peers,
                nodes,
                nodes6,
                _opt_bytes(r, b"BFsd"),
                _opt_bytes(r, b"BFpe"),
            )
        if method == b"get":
            seq = r.get(b"seq")
            if seq is not None and not isinstance(seq, int):
                raise DecodeError("'seq' is not an int")
            k, sig = _opt_bytes(r, b"k"), _opt_bytes(r, b"sig")
            if (k is not None and len(k) != 32) or (sig is not None and len(sig) != 64):
                raise DecodeError("'k' or 'sig' of the wrong length")
            return GetResponse(
                sid,
                _opt_bytes(r, b"token"),
                nodes,
                nodes6,
                bencode(r[b"v"]) if b"v" in r else None,
                k,
                seq,
                sig,
            )
        if method == b"sample_infohashes":
            supported = b"samples" in r
            samples = r.get(b"samples", b"")
            interval = r.get(b"interval", 0)
            num = r.get(b"num", 0)
            if (
                not isinstance(samples, bytes)
                or not isinstance(interval, int)
                or not isinstance(num, int)
            ):
                raise DecodeError("invalid sample_infohashes reply")
            samples = samples[: len(samples) - len(samples) % 20]
            return SampleInfohashesResponse(
                sid,
                interval,
                num,
                tuple(samples[i : i + 20] for i in range(0, len(samples), 20)),
                nodes,
                nodes6,
                supported,
            )
    except DecodeError:
        raise
    except Exception as exc:  # hostile input: never let anything else escape
        raise DecodeError(f"invalid {method.decode()} reply: {exc}") from None
    raise DecodeError(f"unknown method {method!r}")
