"""A DHT-only libtorrent session on one loopback address, driven from tests.

``LtNode`` wraps the ``libtorrent`` PyPI bindings (2.x). A background thread pumps the
session's alerts and copies what the tests need into plain records at once: an alert object
is valid only until the next ``pop_alerts()``, and touching one later crashes the process
(measured with libtorrent 2.1.1). Every method that waits has a bound. Methods are
thread-safe, so an anyio test can call them through ``anyio.to_thread.run_sync`` while
its own node keeps serving.

Facts this module relies on, measured with libtorrent 2.1.1:

* ``dht_put_mutable_item`` takes libtorrent's 64-byte expanded secret and signs a byte
  string only; it picks ``seq`` itself as (newest seq its get phase found) + 1, so callers
  cannot choose it (``put_mutable`` checks it against ``expect_seq`` instead).
* ``dht_get_peers_reply_alert`` is posted per reply that carries peers; no alert marks the
  end of a get_peers lookup or of an announce.
* ``dht_mutable_item_alert`` is posted with ``authoritative=False`` as items arrive and once
  with ``authoritative=True`` when the traversal ends.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mldht.core.bencode import BValue, bdecode, bencode
from mldht.core.compact import Addr, NodeInfo

# Typed as Any: the binding's bundled stubs reject calls it accepts (a dict of settings).
libtorrent: Any
try:
    import libtorrent as _libtorrent

    libtorrent = _libtorrent
except ImportError:  # pragma: no cover - conftest turns this into a skip (or a CI failure)
    libtorrent = None

__all__ = [
    "LtError",
    "LtNode",
    "MutableItem",
    "PutResult",
    "SampleResult",
    "ed25519_public_key",
    "libtorrent_missing_reason",
    "libtorrent_secret_key",
    "loopback_settings",
    "mutable_target",
]

_ALERT_BACKLOG = 20_000  # records kept for late waiters; a test makes far fewer


def libtorrent_missing_reason() -> str | None:
    """Why the libtorrent bindings cannot run here (``None`` when they can)."""
    if libtorrent is None:
        return "the libtorrent Python bindings are not installed (pip install libtorrent)"
    return None


class LtError(Exception):
    """The libtorrent session failed to do what was asked (not a timeout of a lookup)."""


def libtorrent_secret_key(seed: bytes) -> bytes:
    """libtorrent's 64-byte ed25519 secret for a 32-byte RFC 8032 seed.

    It is the expanded key of orlp/ed25519: the clamped scalar (first half of SHA-512 of
    the seed) followed by the nonce prefix (second half); BEP 44 "Test vectors".
    """
    if len(seed) != 32:
        raise ValueError("ed25519 seed must be 32 bytes")
    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return bytes(digest)


def ed25519_public_key(seed: bytes) -> bytes:
    """The 32-byte ed25519 public key of a 32-byte seed (RFC 8032, as libtorrent derives)."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def mutable_target(pubkey: bytes, salt: bytes = b"") -> bytes:
    """BEP 44 target of a mutable item: SHA-1(k ‖ salt)."""
    return hashlib.sha1(pubkey + salt).digest()


def loopback_settings(host: str, port: int) -> dict[str, Any]:
    """Settings for a DHT-only session on ``host:port`` that tolerates a loopback network.

    Every relaxation is one found necessary: no public routers, no IP-diversity
    rules (all nodes share 127/8), no rate limits that ban a busy test peer for 5 minutes.
    """
    cat = libtorrent.alert.category_t
    return {
        "listen_interfaces": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        # 0 would mean "answer nothing" and far larger values overflow an int inside.
        "dht_upload_rate_limit": 50_000_000,
        "dht_block_ratelimit": 1_000_000,
        "dht_sample_infohashes_interval": 0,
        "alert_mask": (
            cat.dht_notification
            | cat.dht_operation_notification
            | cat.status_notification
            | cat.error_notification
            | cat.stats_notification
        ),
        "alert_queue_size": 10_000,
    }


@dataclass(frozen=True, slots=True)
class _Record:
    """A plain copy of one alert."""

    kind: str
    data: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class PutResult:
    """Outcome of a BEP 44 put: how many nodes stored it, and what was stored."""

    target: bytes
    num_success: int
    seq: int | None = None
    public_key: bytes | None = None
    salt: bytes = b""


@dataclass(frozen=True, slots=True)
class MutableItem:
    """A mutable item as libtorrent returned it (signature already checked by libtorrent)."""

    value: BValue
    seq: int
    public_key: bytes
    salt: bytes
    signature: bytes
    authoritative: bool


@dataclass(frozen=True, slots=True)
class SampleResult:
    """A BEP 51 ``sample_infohashes`` reply seen by libtorrent."""

    endpoint: Addr
    interval: int
    num_infohashes: int
    samples: list[bytes]
    nodes: list[NodeInfo]


def _addr(endpoint: Any) -> Addr:
    ip, port = endpoint
    return (str(ip), int(port))


def _nodes(nodes: Any) -> list[NodeInfo]:
    """The binding's ``[{'nid': sha1_hash, 'endpoint': (ip, port)}, ...]`` as NodeInfo."""
    return [NodeInfo(bytes(n["nid"].to_bytes()), _addr(n["endpoint"])) for n in nodes]


def _bvalue(entry: Any) -> BValue | None:
    """An item entry converted by the binding, as mldht's BValue; ``None`` if not found.

    The binding turns libtorrent's undefined entry (item not found) into ``b''``. An empty
    string cannot be a stored item (libtorrent answers such a put with 205), so ``b''``
    means "not found".
    """
    if entry is None or entry == b"":
        return None
    value: BValue = bdecode(bytes(libtorrent.bencode(entry)))
    return value


def _copy_alert(alert: Any) -> _Record:
    """Copy what tests use out of an alert, before the next pop_alerts() frees it."""
    kind = type(alert).__name__
    data: dict[str, Any] = {}
    if kind == "dht_get_peers_reply_alert":
        data = {
            "info_hash": bytes(alert.info_hash.to_bytes()),
            "peers": [_addr(p) for p in alert.peers()],
        }
    elif kind == "dht_immutable_item_alert":
        data = {"target": bytes(alert.target.to_bytes()), "item": _bvalue(alert.item)}
    elif kind == "dht_mutable_item_alert":
        data = {
            "key": bytes(alert.key),
            "salt": bytes(alert.salt),
            "seq": int(alert.seq),
            "signature": bytes(alert.signature),
            "authoritative": bool(alert.authoritative),
            "item": _bvalue(alert.item),
        }
    elif kind == "dht_put_alert":
        data = {
            "target": bytes(alert.target.to_bytes()),
            "public_key": bytes(alert.public_key),
            "salt": bytes(alert.salt),
            "seq": int(alert.seq),
            "num_success": int(alert.num_success),
        }
    elif kind == "dht_sample_infohashes_alert":
        data = {
            "endpoint": _addr(alert.endpoint),
            "interval": int(alert.interval.total_seconds()),  # a datetime.timedelta
            "num_infohashes": int(alert.num_infohashes),
            "samples": [bytes(s.to_bytes()) for s in alert.samples],
            "nodes": _nodes(alert.nodes),
        }
    elif kind == "dht_live_nodes_alert":
        data = {
            "node_id": bytes(alert.node_id.to_bytes()),
            "nodes": _nodes(alert.nodes),
        }
    elif kind == "dht_stats_alert":
        data = {
            "buckets": [
                (int(b["num_nodes"]), int(b["num_replacements"])) for b in alert.routing_table
            ],
        }
    elif kind in ("listen_succeeded_alert", "listen_failed_alert"):
        data = {
            "addr": (str(alert.address), int(alert.port)),
            "socket_type": str(alert.socket_type),
        }
    data["message"] = alert.message()
    return _Record(kind, data)


class LtNode:
    """A libtorrent session running only the DHT on ``host:port`` (loopback).

    Use as a context manager, or call :meth:`close`. ``settings`` override or extend
    :func:`loopback_settings`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: Mapping[str, Any] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if libtorrent is None:
            raise LtError("the libtorrent Python bindings are not installed")
        self.addr: Addr = (host, port)
        pack = loopback_settings(host, port)
        pack.update(settings or {})
        self._ses: Any = libtorrent.session(pack)
        self._cond = threading.Condition()
        self._records: list[_Record] = []
        self._base = 0  # index of _records[0] among all records ever seen
        self._closed = False
        self._pump_error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"lt-{host}:{port}", daemon=True)
        self._thread.start()
        try:
            self._await_listening(start_timeout)
            self.node_id: bytes = self._read_node_id(start_timeout)
        except BaseException:
            self.close()
            raise

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LtNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the alert pump and the session. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        # Dropping the last reference destroys the session (aborts it, closes its sockets).
        self._ses = None

    def _pump(self) -> None:
        ses = self._ses
        try:
            while True:
                with self._cond:
                    if self._closed:
                        return
                if not ses.wait_for_alert(100):
                    continue
                records = [_copy_alert(a) for a in ses.pop_alerts()]
                with self._cond:
                    self._records.extend(records)
                    extra = len(self._records) - _ALERT_BACKLOG
                    if extra > 0:
                        del self._records[:extra]
                        self._base += extra
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced to the next waiter, never swallowed
            with self._cond:
                self._pump_error = exc
                self._cond.notify_all()

    # --- alert matching ---------------------------------------------------------------

    def _mark(self) -> int:
        """Position after every record seen so far: alerts of a later request come after."""
        with self._cond:
            return self._base + len(self._records)

    def _collect(
        self,
        start: int,
        timeout: float,
        match: Callable[[_Record], bool],
        done: Callable[[list[_Record]], bool],
    ) -> list[_Record]:
        """Records from ``start`` on that ``match``, once ``done`` says so or at ``timeout``."""
        deadline = time.monotonic() + timeout
        found: list[_Record] = []
        pos = start
        with self._cond:
            while True:
                if self._pump_error is not None:
                    raise LtError(f"alert pump died: {self._pump_error!r}")
                if pos < self._base:  # trimmed before we looked: cannot happen in a test
                    pos = self._base
                for rec in self._records[pos - self._base :]:
                    if match(rec):
                        found.append(rec)
                pos = self._base + len(self._records)
                if done(found):
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return found
                self._cond.wait(left)

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Copies of the alerts kept so far (optionally of one kind): for diagnostics."""
        with self._cond:
            return [dict(r.data) for r in self._records if kind is None or r.kind == kind]

    def _await_listening(self, timeout: float) -> None:
        recs = self._collect(
            0,
            timeout,
            lambda r: r.kind in ("listen_succeeded_alert", "listen_failed_alert"),
            # The DHT rides on the UDP (uTP) socket: that is the one that matters.
            lambda found: any(
                r.kind == "listen_failed_alert" or r.data["socket_type"] == "udp" for r in found
            ),
        )
        for rec in recs:
            if rec.kind == "listen_failed_alert":
                raise LtError(f"libtorrent could not listen: {rec.data['message']}")
        if not any(r.data["socket_type"] == "udp" for r in recs):
            raise LtError(f"libtorrent did not report a UDP socket on {self.addr} in {timeout}s")

    def _read_node_id(self, timeout: float) -> bytes:
        # The id is in the saved session state: "node-id" holds id ‖ packed IP per
        # interface. (session.dht_state() says the same but is deprecated.)
        deadline = time.monotonic() + timeout
        while True:
            buf = bytes(libtorrent.write_session_params_buf(self._ses.session_state()))
            state: Any = bdecode(buf)
            ids = state.get(b"dht state", {}).get(b"node-id", [])
            if ids:
                return bytes(ids[0][:20])
            if time.monotonic() > deadline:
                raise LtError("libtorrent did not report its DHT node id")
            time.sleep(0.05)

    # --- routing table ----------------------------------------------------------------

    def add_node(self, addr: Addr) -> None:
        """Make ``addr`` a neighbour: libtorrent pings it (with get_peers) and adds it."""
        self._ses.add_dht_node(addr)

    def add_router(self, addr: Addr) -> None:
        """Use ``addr`` to start lookups only; libtorrent never puts a router in its table."""
        self._ses.add_dht_router(*addr)

    def routing_table(self, timeout: float = 5.0) -> list[NodeInfo]:
        """The live nodes of the routing table (replacement entries are not included)."""
        start = self._mark()
        self._ses.dht_live_nodes(libtorrent.sha1_hash(self.node_id))
        recs = self._collect(
            start, timeout, lambda r: r.kind == "dht_live_nodes_alert", lambda f: bool(f)
        )
        if not recs:
            raise LtError(f"no dht_live_nodes_alert within {timeout}s")
        nodes: list[NodeInfo] = recs[0].data["nodes"]
        return nodes

    def table_stats(self, timeout: float = 5.0) -> list[tuple[int, int]]:
        """Per bucket: (live nodes, replacement nodes), from ``post_dht_stats``."""
        start = self._mark()
        self._ses.post_dht_stats()
        recs = self._collect(
            start, timeout, lambda r: r.kind == "dht_stats_alert", lambda f: bool(f)
        )
        if not recs:
            raise LtError(f"no dht_stats_alert within {timeout}s")
        buckets: list[tuple[int, int]] = recs[0].data["buckets"]
        return buckets

    def wait_for_node(self, addr: Addr, timeout: float) -> NodeInfo | None:
        """Poll the routing table until ``addr`` is a live entry, or ``None`` at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.routing_table(timeout=max(0.5, deadline - time.monotonic())):
                if node.addr == addr:
                    return node
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    # --- BEP 5 ------------------------------------------------------------------------

    def get_peers(self, infohash: bytes, timeout: float, *, want: int = 1) -> list[Addr]:
        """Peers for ``infohash``: returns once ``want`` distinct peers arrived, else at timeout.

        libtorrent posts one alert per reply that carries peers and none at the end of
        the lookup, so an empty answer always costs the whole ``timeout``.
        """
        _check_len("infohash", infohash)
        start = self._mark()
        self._ses.dht_get_peers(libtorrent.sha1_hash(infohash))

        def distinct(found: list[_Record]) -> list[Addr]:
            seen: dict[Addr, None] = {}
            for rec in found:
                for peer in rec.data["peers"]:
                    seen.setdefault(peer, None)
            return list(seen)

        recs = self._collect(
            start,
            timeout,
            lambda r: r.kind == "dht_get_peers_reply_alert" and r.data["info_hash"] == infohash,
            lambda f: len(distinct(f)) >= want,
        )
        return distinct(recs)

    def announce(
        self, infohash: bytes, port: int, *, implied: bool = False, seed: bool = False
    ) -> None:
        """Start an announce traversal (get_peers, then announce_peer to the closest 8).

        No alert reports its end: check for the result on the receiving side.
        ``implied=True`` sends ``implied_port=1`` (the receiver uses the UDP source port).
        """
        _check_len("infohash", infohash)
        flags = 0
        if implied:
            flags |= int(libtorrent.announce_flags_t.implied_port)
        if seed:
            flags |= int(libtorrent.announce_flags_t.seed)
        self._ses.dht_announce(libtorrent.sha1_hash(infohash), port, flags)

    # --- BEP 44 -----------------------------------------------------------------------

    def put_immutable(self, value: BValue, timeout: float = 30.0) -> PutResult:
        """Store ``value`` (bytes = a byte string) and wait for the put traversal to end."""
        raw = bencode(value)
        target = hashlib.sha1(raw).digest()
        start = self._mark()
        got = bytes(self._ses.dht_put_immutable_item(_to_entry(value)).to_bytes())
        if got != target:  # libtorrent hashes its own encoding: they must agree
            raise LtError(f"libtorrent target {got.hex()} != SHA-1 of bencoding {target.hex()}")
        recs = self._collect(
            start,
            timeout,
            lambda r: r.kind == "dht_put_alert" and r.data["target"] == target,
            lambda f: bool(f),
        )
        if not recs:
            raise LtError(f"immutable put of {target.hex()} did not finish in {timeout}s")
        return PutResult(target=target, num_success=recs[0].data["num_success"])

    def get_immutable(self, target: bytes, timeout: float) -> BValue | None:
        """The immutable item under ``target``, or ``None`` (not found, or timeout)."""
        _check_len("target", target)
        start = self._mark()
        self._ses.dht_get_immutable_item(libtorrent.sha1_hash(target))
        recs = self._collect(
            start,
            timeout,
            lambda r: r.kind == "dht_immutable_item_alert" and r.data["target"] == target,
            lambda f: bool(f),
        )
        if not recs:
            return None
        item: BValue | None = recs[0].data["item"]
        return item

    def put_mutable(
        self,
        seed: bytes,
        salt: bytes,
        value: bytes,
        *,
        expect_seq: int | None = None,
        timeout: float = 40.0,
    ) -> PutResult:
        """Sign and store a mutable byte-string item under the key of ``seed`` (32 bytes).

        libtorrent's binding chooses ``seq`` as (newest seq found on the network) + 1 and
        only signs byte strings. With ``expect_seq`` the seq it used must equal it.
        """
        if not isinstance(value, bytes):
            raise TypeError("libtorrent's binding stores only byte-string mutable values")
        if len(salt) > 64:
            raise ValueError("salt longer than 64 bytes (BEP 44)")
        pubkey = ed25519_public_key(seed)
        start = self._mark()
        self._ses.dht_put_mutable_item(libtorrent_secret_key(seed), pubkey, value, salt)
        recs = self._collect(
            start,
            timeout,
            lambda r: (
                r.kind == "dht_put_alert"
                and r.data["public_key"] == pubkey
                and r.data["salt"] == salt
            ),
            lambda f: bool(f),
        )
        if not recs:
            raise LtError(f"mutable put did not finish in {timeout}s")
        data = recs[0].data
        result = PutResult(
            target=mutable_target(pubkey, salt),
            num_success=data["num_success"],
            seq=data["seq"],
            public_key=pubkey,
            salt=salt,
        )
        if expect_seq is not None and result.seq != expect_seq:
            raise LtError(f"libtorrent put seq {result.seq}, expected {expect_seq}")
        return result

    def get_mutable(
        self,
        pubkey: bytes,
        salt: bytes,
        timeout: float,
        *,
        min_seq: int | None = None,
    ) -> MutableItem | None:
        """The newest mutable item libtorrent finds for (``pubkey``, ``salt``).

        Returns as soon as an item with ``seq >= min_seq`` arrives; without ``min_seq``,
        when libtorrent posts its authoritative answer (end of the traversal). At timeout,
        the newest item seen so far, or ``None``.
        """
        if len(pubkey) != 32:
            raise ValueError("pubkey must be 32 bytes")
        start = self._mark()
        self._ses.dht_get_mutable_item(pubkey, salt)

        def items(found: list[_Record]) -> list[_Record]:
            return [r for r in found if r.data["item"] is not None]

        def done(found: list[_Record]) -> bool:
            if min_seq is not None:
                return any(r.data["seq"] >= min_seq for r in items(found))
            return any(r.data["authoritative"] for r in found)

        recs = self._collect(
            start,
            timeout,
            lambda r: (
                r.kind == "dht_mutable_item_alert"
                and r.data["key"] == pubkey
                and r.data["salt"] == salt
            ),
            done,
        )
        best = max(items(recs), key=lambda r: r.data["seq"], default=None)
        if best is None:
            return None
        d = best.data
        return MutableItem(
            value=d["item"],
            seq=d["seq"],
            public_key=d["key"],
            salt=d["salt"],
            signature=d["signature"],
            authoritative=any(r.data["authoritative"] for r in recs),
        )

    # --- BEP 51 -----------------------------------------------------------------------

    def sample_infohashes(self, addr: Addr, target: bytes, timeout: float) -> SampleResult | None:
        """Send one ``sample_infohashes`` query to ``addr``; its reply, or ``None``."""
        _check_len("target", target)
        start = self._mark()
        self._ses.dht_sample_infohashes(addr, libtorrent.sha1_hash(target))
        recs = self._collect(
            start,
            timeout,
            lambda r: r.kind == "dht_sample_infohashes_alert" and r.data["endpoint"] == addr,
            lambda f: bool(f),
        )
        if not recs:
            return None
        d = recs[0].data
        return SampleResult(
            endpoint=d["endpoint"],
            interval=d["interval"],
            num_infohashes=d["num_infohashes"],
            samples=d["samples"],
            nodes=d["nodes"],
        )


def _check_len(name: str, value: bytes) -> None:
    if len(value) != 20:
        raise ValueError(f"{name} must be 20 bytes, got {len(value)}")


def _to_entry(value: BValue) -> Any:
    """A BValue in the shape the binding converts to a libtorrent entry."""
    if isinstance(value, bytes | int):
        return value
    if isinstance(value, list):
        return [_to_entry(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_entry(v) for k, v in value.items()}
    raise TypeError(f"not a bencode value: {type(value).__name__}")
