"""BEP 44 items, the key/value API and BEP 46 on a :class:`~mldht.runtime.node.DHTNode`.

:class:`ItemAPI` is a mixin of :class:`DHTNode`: every method here runs over the node's
operation primitive (:meth:`DHTNode.operation`), so ``DHTNode`` keeps the public methods
the README documents while its module keeps only the I/O loop. The items this node put are
re-put about hourly (BEP 44 asks publishers to) by the core
(:class:`~mldht.core.republish.Republisher`, on the node's timer); the runtime registers
each put that succeeded and keeps the list in ``republish.json``. The value and key
conventions are in :mod:`mldht.runtime.items`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..core import bep44
from ..core.bencode import BValue
from ..core.events import Event, GetDone, Item, PutDone, RepublishStopped
from ..core.republish import REPUBLISH_INTERVAL
from ..errors import InvalidArgument, KRPCError, NotStored
from . import persist
from .items import (
    IDENTITY_FILE,
    as_id,
    as_infohash,
    as_public_key,
    as_salt,
    as_target,
    decode_value,
    encode_value,
    kv_salt,
    load_or_create_keypair,
)

if TYPE_CHECKING:
    from ..core.bep44 import KeyPair
    from ..core.node import NodeState
    from .operation import StartOp

__all__ = ["REPUBLISH_INTERVAL", "ItemAPI", "check_stored"]

log = logging.getLogger("mldht.node")

T = TypeVar("T")


def check_stored(done: PutDone, what: str) -> None:
    """Raise unless some node accepted the put: a put stored nowhere is a failure.

    :class:`KRPCError` when nodes refused it, with the code most of them answered (it
    says best why, e.g. 302: a newer seq exists) and every distinct reason in the
    message; :class:`NotStored` when no node answered at all.
    """
    if done.accepted > 0:
        return
    if done.errors:
        codes = [code for code, _ in done.errors]
        code = max(sorted(set(codes)), key=codes.count)
        reasons = "; ".join(sorted({f"{c} {message}" for c, message in done.errors}))
        raise KRPCError(code, f"every node refused the {what}: {reasons}")
    raise NotStored(f"no DHT node stored the {what} (none found, or none answered)")


class ItemAPI:
    """The BEP 44 / key-value / BEP 46 methods of :class:`~mldht.runtime.node.DHTNode`."""

    _state_dir: Path | None
    _keypair: KeyPair | None
    _republish_interval: float
    _state_obj: NodeState | None

    def _init_items(self, keypair: KeyPair | None, republish_interval: float) -> None:
        if not republish_interval > 0:
            raise InvalidArgument(f"republish_interval must be positive: {republish_interval!r}")
        self._keypair = keypair
        self._republish_interval = float(republish_interval)

    # provided by DHTNode
    async def _run(self, start: StartOp, *, lookup: bool = False, store: bool = False) -> Event:
        raise NotImplementedError

    def _core(self, call: Callable[[NodeState, float], T]) -> T:
        """``call(state, now)`` on the running core, then dispatch what it produced."""
        raise NotImplementedError

    def stored_item(self, target: bytes | str) -> Item | None:
        raise NotImplementedError

    @property
    def keypair(self) -> KeyPair:
        """The node's own key pair, which the key/value API signs with.

        Given to the constructor, or kept in ``<state_dir>/identity.key`` (created with
        mode 0600 on first use); without a state directory, a new key pair for this run
        only (its items cannot be updated by a later run).
        """
        if self._keypair is None:
            if self._state_dir is None:
                self._keypair = bep44.KeyPair.generate()
            else:
                path = self._state_dir / IDENTITY_FILE
                self._keypair, created = load_or_create_keypair(path)
                if created:
                    log.info("created the node's key pair in %s", path)
        return self._keypair

    async def get_item(
        self, target: bytes, *, salt: bytes = b"", mutable: bool | None = None
    ) -> Item | None:
        """BEP 44 get lookup: the valid item with ``target`` (highest seq), or None.

        Low level: the network's answer only, ``v`` still bencoded. Immutable items are
        checked against their hash and mutable ones against key, salt and signature;
        replies that fail are discarded.
        """
        tid = as_id(target)
        event = await self._run(
            lambda state, now: state.get_item(tid, now, salt=salt, mutable=mutable), lookup=True
        )
        assert isinstance(event, GetDone)
        return event.item

    async def put_item(
        self,
        v_bencoded: bytes,
        *,
        keypair: KeyPair | None = None,
        salt: bytes = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> PutDone:
        """BEP 44 put of an item given bencoded: mutable if ``keypair`` is given.

        Low level: returns the core's result (``accepted`` nodes, ``seq`` used, error
        replies) without raising when nobody stored it. ``seq=None``: one more than the
        newest seq found. An item at least one node accepted is republished every
        ``republish_interval`` while the node runs (mutable ones with the same seq).
        """
        done = await self._put(v_bencoded, keypair, salt, seq, cas)
        if done.accepted > 0:
            self._remember_publication(done, v_bencoded, keypair, salt)
        return done

    async def _put(
        self,
        v_bencoded: bytes,
        keypair: KeyPair | None,
        salt: bytes,
        seq: int | None,
        cas: int | None,
    ) -> PutDone:
        if seq is not None and not 0 <= seq <= bep44.MAX_SEQ:
            raise InvalidArgument(f"seq must be 0 to 2**63 - 1, got {seq}")

        def start(state: NodeState, now: float) -> int:
            try:
                if keypair is None:
                    return state.put_immutable(v_bencoded, now)
                return state.put_mutable(
                    v_bencoded, now, keypair=keypair, salt=salt, seq=seq, cas=cas
                )
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None

        event = await self._run(start, lookup=True, store=True)
        assert isinstance(event, PutDone)
        return event

    async def put_immutable(self, value: object) -> bytes:
        """Store ``value`` as an immutable item (BEP 44); returns its 20-byte target.

        ``value``: ``str`` (stored as UTF-8 bytes), ``bytes``, ``int``, ``list`` or
        ``dict``, at most 1000 bytes bencoded (:func:`~mldht.runtime.items.encode_value`).
        The target is the SHA-1 of the bencoded value. Raises :class:`KRPCError` if every
        node refused it, :class:`MldhtError` if none answered.
        """
        done = await self.put_item(encode_value(value))
        check_stored(done, "immutable item")
        return done.target

    async def get_immutable(self, target: bytes | str) -> BValue | None:
        """The immutable item with ``target`` (20 bytes or 40 hex), or None if not found.

        Values whose hash is not ``target`` are discarded. Strings come back as ``bytes``
        (bencode has no text type), ints as ``int``, lists and dicts (``bytes`` keys) as
        themselves. Our own store is looked at first.
        """
        tid = as_target(target)
        item = self.stored_item(tid)
        if item is None or item.k is not None:
            item = await self.get_item(tid, mutable=False)
        return None if item is None else decode_value(item.v)

    async def put_mutable(
        self,
        value: object,
        *,
        keypair: KeyPair,
        salt: bytes | str = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> int:
        """Store ``value`` as a mutable item signed by ``keypair``; returns the seq used.

        The target is SHA-1(public key ‖ salt); ``salt`` (``str`` as UTF-8) is at most
        64 bytes. ``seq=None``: one more than the newest seq found on the network (1 if
        none). ``cas``: BEP 44 compare-and-swap, refused (301) unless the stored seq is
        ``cas``. Raises :class:`KRPCError` (301, 302, ...) if every node refused it.
        """
        salt_b = as_salt(salt)
        done = await self.put_item(
            encode_value(value), keypair=keypair, salt=salt_b, seq=seq, cas=cas
        )
        check_stored(done, "mutable item")
        assert done.seq is not None
        return done.seq

    async def get_mutable(
        self, public_key: bytes | str, *, salt: bytes | str = b""
    ) -> tuple[BValue, int] | None:
        """``(value, seq)`` of the mutable item of ``public_key`` and ``salt``, or None.

        ``public_key``: 32 bytes or 64 hex digits. The item with the highest valid seq
        among the closest nodes (and our own store); replies whose key, salt or
        signature do not check out are discarded. Values come back as for
        :meth:`get_immutable` (strings as ``bytes``).
        """
        key = as_public_key(public_key)
        salt_b = as_salt(salt)
        target = bep44.mutable_target(key, salt_b)
        found = await self.get_item(target, salt=salt_b, mutable=True)
        local = self.stored_item(target)
        if (
            local is not None
            and local.seq is not None
            and (found is None or (found.seq or 0) < local.seq)
        ):
            found = local
        if found is None or found.seq is None:
            return None
        return decode_value(found.v), found.seq

    # ------------------------------------------------------------- key / value

    async def set(self, key: str | bytes, value: object) -> int:
        """Store ``value`` under ``key`` in the node's own namespace; returns the new seq.

        A mutable item signed by :attr:`keypair`, with the salt
        :func:`~mldht.runtime.items.kv_salt` derives from ``key`` (its bytes, or their
        SHA-1 when longer than 64 bytes). Each ``set`` writes the next seq. Values as for
        :meth:`put_immutable`; :meth:`get` returns strings as ``bytes``.
        """
        return await self.put_mutable(value, keypair=self.keypair, salt=kv_salt(key))

    async def get(self, key: str | bytes, owner: bytes | str | None = None) -> BValue | None:
        """The value stored under ``key`` by ``owner`` (a public key), or None.

        ``owner=None``: our own :attr:`keypair`. Byte strings, and so values stored as
        ``str``, come back as ``bytes``; ints, lists and dicts (``bytes`` keys) as such.
        """
        public_key = self.keypair.public_key if owner is None else as_public_key(owner)
        found = await self.get_mutable(public_key, salt=kv_salt(key))
        return None if found is None else found[0]

    # ------------------------------------------------------------------ BEP 46

    async def publish_torrent(
        self, infohash: bytes | str, keypair: KeyPair, salt: bytes | str = b""
    ) -> int:
        """BEP 46: point the mutable item of ``keypair`` and ``salt`` at ``infohash``.

        Puts ``{"ih": infohash}`` with the next seq, which it returns. Consumers follow
        it with :meth:`resolve_torrent` or a ``magnet:?xs=urn:btpk:`` link
        (:func:`mldht.core.bep44.btpk_magnet`).
        """
        value = bep44.torrent_item_value(as_infohash(infohash))
        return await self.put_mutable(value, keypair=keypair, salt=salt)

    async def resolve_torrent(
        self, public_key: bytes | str, salt: bytes | str = b""
    ) -> bytes | None:
        """BEP 46: the info-hash the item of ``public_key`` and ``salt`` points at.

        None if no item is found; :class:`DecodeError` if the item is not a torrent
        pointer (no 20-byte ``ih``).
        """
        found = await self.get_mutable(public_key, salt=salt)
        if found is None:
            return None
        return bep44.infohash_from_torrent_item(found[0])

    # --------------------------------------------------------------- republish

    @property
    def republishing(self) -> frozenset[bytes]:
        """Targets of the items this node re-puts every ``republish_interval``.

        With a state directory the list survives a restart (``republish.json``): every
        immutable item, and the mutable ones signed by the node's own :attr:`keypair`
        (their secret key is not saved there; items signed with other key pairs, whose
        secret the node must not write to disk, are republished by this run only).
        """
        state = self._state_obj
        return frozenset() if state is None else state.republishing

    def stop_republishing(self, target: bytes) -> bool:
        """Stop re-putting the item with ``target``; False if it was not republished."""
        state = self._state_obj
        if state is None or not state.stop_republishing(bytes(target)):
            return False
        self._save_publications()
        return True

    def _remember_publication(
        self, done: PutDone, v_bencoded: bytes, keypair: KeyPair | None, salt: bytes
    ) -> None:
        interval = self._republish_interval
        self._core(
            lambda state, now: state.add_publication(
                v_bencoded, now + interval, keypair=keypair, salt=salt, seq=done.seq
            )
        )
        self._save_publications()

    def _republish_stopped(self, event: RepublishStopped) -> None:
        """The core dropped a mutable item superseded by a newer seq: say so, save."""
        log.info(
            "stopped republishing %s: seq %d superseded by %d",
            event.target.hex(),
            event.seq,
            event.newer_seq,
        )
        self._save_publications()

    def _own_keypair(self) -> KeyPair | None:
        """The node's own key pair if it has one already (never creates identity.key)."""
        state_dir = self._state_dir
        if self._keypair is None and state_dir is not None and (state_dir / IDENTITY_FILE).exists():
            return self.keypair
        return self._keypair

    def _save_publications(self) -> None:
        """Save the republish list in the state directory (if any).

        Immutable items are saved whole; mutable ones only when signed by the node's own
        key pair (:attr:`keypair`), and then by its public key alone: no secret key is
        ever written there, so items signed with other key pairs are republished by this
        run only.
        """
        if self._state_dir is None or self._state_obj is None:
            return
        own = self._own_keypair()
        saved = [
            persist.SavedPublication(
                p.target,
                p.v_bencoded,
                p.salt,
                p.seq,
                None if p.keypair is None else p.keypair.public_key,
            )
            for p in self._state_obj.publications()
            if p.keypair is None or (own is not None and p.keypair.public_key == own.public_key)
        ]
        try:
            persist.save_publications(self._state_dir, saved)
        except OSError as exc:
            log.warning("could not save the republish list in %s: %s", self._state_dir, exc)

    def _load_publications(self, state: NodeState, now: float) -> None:
        """Hand the republish list a previous run saved to the core; each item is re-put
        as soon as the node has joined."""
        if self._state_dir is None:
            return
        count = 0
        for saved in persist.load_publications(self._state_dir):
            keypair = None
            if saved.public_key is not None:
                keypair = self._own_keypair()
                if keypair is None or keypair.public_key != saved.public_key:
                    log.info(
                        "not republishing %s: signed by a key pair this node does not hold",
                        saved.target.hex(),
                    )
                    continue
            try:
                pub = state.add_publication(
                    saved.v_bencoded, now, keypair=keypair, salt=saved.salt, seq=saved.seq
                )
            except InvalidArgument as exc:
                log.info("not republishing %s: %s", saved.target.hex(), exc)
                continue
            if pub.target != saved.target:  # pragma: no cover - persist checks targets
                state.stop_republishing(pub.target)
                continue
            count += 1
        if count:
            log.info("republishing %d saved items", count)
